//! Interpreter bugs found by this test and not fixed yet. Each has an id; while it is listed
//! here the generator avoids the instruction form or the operand values that show it (see
//! `gen.rs`, `avoid`), so the suite stays green on everything else. `difftest
//! --include-known-bad` generates them again: the way to check a fix (then delete the entry
//! and its avoidance).
//!
//! Each entry says what the real CPU does (KVM on this host, which runs ring 3 natively) and
//! what the interpreter does, with a minimal reproducer.

pub struct KnownBad {
    pub id: &'static str,
    pub what: &'static str,
}

pub const KNOWN_BAD: &[KnownBad] = &[
    KnownBad {
        id: "crc32-rm16",
        what: "CRC32 r32, r/m16 (66 F2 0F 38 F1 /r), e.g. 66 f2 44 0f 38 f1 fa = crc32 r15d, dx with \
               r15=0x15, rdx=0x2cb274347fffffff: hardware r15 = 0x6c737ff8, interpreter r15 = 0x7ff8. The \
               interpreter writes the destination as a 16-bit register (the 66 prefix sizes only the \
               source): bits 31:16 of the CRC are lost and bits 63:16 of the register kept instead of \
               zeroed.",
    },
    KnownBad {
        id: "xadd-same-register",
        what: "XADD r, r with the same register for both operands, e.g. 0f c0 c0 = xadd al, al with \
               al=0x09: hardware al = 0x12 (the sum is written last), interpreter al = 0x09 (the old \
               value is written last). All sizes.",
    },
    KnownBad {
        id: "cmpxchg-r32-unequal",
        what: "CMPXCHG r32, r32 with a register destination when EAX differs from it, e.g. 0f b1 d5 = \
               cmpxchg ebp, edx with rax=0xa6e8dae8034a2831, rbp=0x7594949cbb6d8bb5: hardware leaves \
               RBP = 0x7594949cbb6d8bb5 (the destination is not written, its upper half stays) and loads \
               RAX = 0xbb6d8bb5; the interpreter writes RBP = 0xbb6d8bb5 (zero-extended).",
    },
    KnownBad {
        id: "shift32-count0",
        what: "Shifts and rotates (SHL SAL SHR SAR ROL ROR RCL RCR SHLD SHRD) of a 32-bit register by a \
               count that masks to 0, e.g. b9 00 00 00 00 / d3 c3 = mov ecx, 0 / rol ebx, cl, or \
               41 c1 fe 00 = sar r14d, 0: hardware zero-extends the 32-bit result into bits 63:32 (as \
               for any 32-bit register write), the interpreter leaves the register untouched. Flags \
               agree (unchanged).",
    },
    KnownBad {
        id: "btx-pf-write",
        what: "BTS/BTR/BTC m, r (with or without LOCK) whose bit offset reaches an unmapped page, e.g. \
               43 0f ab 84 85 57 ff ff ff = bts [r13+r8*4-0xa9], eax with eax=0x8a3daa59: both raise \
               #PF with the same CR2, but the error code is 6 (write, user) on hardware and 4 (read, \
               user) in the interpreter: a read-modify-write destination faults as a write.",
    },
    KnownBad {
        id: "cmpxchg16b-alignment",
        what: "CMPXCHG16B m128 checks 16-byte alignment of the effective address instead of the linear \
               address: with an FS/GS base that is not a multiple of 16 the verdicts differ. E.g. \
               65 49 0f c7 4c 58 7a = cmpxchg16b gs:[r8+rbx*2+0x7a] with gs.base=0xc9, r8=0x21160, \
               rbx=0x13 (offset 0x211a0 aligned, linear 0x21269 not): hardware #GP(0), the interpreter \
               performs the compare-exchange; and with gs:[...+0x71] (offset 0x21197, linear 0x21260) \
               hardware performs it and the interpreter raises #GP(0).",
    },
    KnownBad {
        id: "outs-permission-order",
        what: "OUTSB/OUTSW/OUTSD at CPL 3 with IOPL 0 and no I/O bitmap, with RSI pointing at an \
               unmapped page, e.g. 6e = outsb dx, [rsi]: hardware raises #GP(0) (the I/O permission \
               check comes first), the interpreter raises #PF (error 4) from reading the source first.",
    },
    KnownBad {
        id: "rdpmc",
        what: "RDPMC (0f 33) at CPL 3 with CR4.PCE = 0: hardware #GP(0), the interpreter #UD (not \
               implemented).",
    },
    KnownBad {
        id: "rmw-fault-flags",
        what: "An arithmetic read-modify-write on memory whose read succeeds and whose write faults \
               (a read-only page) leaves RFLAGS as the instruction would have set them: \
               48 bc 00 08 01 00 00 00 00 00 / d1 e1 / 48 01 44 24 7d = mov rsp, 0x10800 / shl ecx, 1 / \
               add [rsp+0x7d], rax (0x1087d is on the read-only code page) with rcx=0x8000, \
               rax=0x100000000: both raise #PF (error 7, CR2 0x1087d), but the pushed RFLAGS is 0x206 \
               (PF from the SHL) on hardware and 0x282 (the ADD's SF) in the interpreter. Same for SUB, \
               LOCK SUB, INC, SUB imm; a faulting MOV store is fine. The generator met it after a \
               16-bit ENTER/LEAVE pair had moved RSP (RBP truncated to 16 bits) onto the code page.",
    },
    KnownBad {
        id: "rep-a32-ecx0",
        what: "A REP-prefixed string instruction with 32-bit addressing (67) and ECX = 0 but RCX[63:32] \
               not 0, e.g. 48 b9 00 00 00 00 de ae e7 13 / 67 f3 a4 = mov rcx, 0x13e7aede00000000 / rep \
               movsb [edi], [esi]: hardware leaves RCX = 0 (ECX is written back, zero-extending, even \
               with no iteration), the interpreter leaves RCX as it was. All string instructions.",
    },
    KnownBad {
        id: "noncanonical-branch",
        what: "Near JMP/CALL/RET to a non-canonical address. 48 b8 00 00 00 00 00 00 00 80 / ff e0 = \
               mov rax, 0x8000000000000000 / jmp rax: hardware raises #GP(0) at the JMP (pushed RIP = \
               0x1000a, the JMP); the interpreter jumps and faults on the fetch (pushed RIP = \
               0x8000000000000000). With ff d0 (call rax) the interpreter has also pushed the return \
               address (RSP 8 lower); with RET (return address 0xf7e300c3c74a6ab6 on the stack) it has \
               popped it. Found through CALL templates whose body overwrote the return address; the \
               generator has no indirect branches, so avoided by keeping memory writes out of CALL \
               templates.",
    },
];

/// Looks an id up (panics on a typo: the ids are used in code).
pub fn known(id: &str) -> &'static KnownBad {
    KNOWN_BAD.iter().find(|k| k.id == id).unwrap_or_else(|| panic!("no known-bad entry {id}"))
}
