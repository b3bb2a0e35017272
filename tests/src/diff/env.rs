//! The long-mode environment every case runs in, identical for both backends: the same
//! physical memory image (page tables, GDT, IDT, TSS, exception stubs) and the same
//! `CpuState`, with the case's code and data written into their pages.
//!
//! Physical memory (identity-mapped, 4 KiB pages; every other page is not present):
//!
//! | address | what | page bits |
//! |---|---|---|
//! | 0x1000-0x4FFF | PML4, PDPT, PD, PT (0-2 MiB) | supervisor, RW |
//! | 0x5000 | GDT | supervisor, RW |
//! | 0x6000 | IDT: 256 interrupt gates to `STUBS + vector` | supervisor, RW |
//! | 0x7000 | 64-bit TSS (RSP0 = `KSTACK_TOP`, no I/O bitmap) | supervisor, RW |
//! | 0x8000 | 256 bytes of HLT: the stub of vector v is the byte at 0x8000 + v | supervisor, RO |
//! | 0x9000 | ring-0 stack (the exception frame lands at its top) | supervisor, RW |
//! | 0x10000 | the case's code, then HLT to the end of the page | user, RO |
//! | 0x20000-0x21FFF | the case's data, and its stack | user, RW, NX |
//!
//! The pages around code and data are not present, so an address that escapes faults. The
//! case runs at CPL 3 with IOPL 0 and IF clear; it ends with UD2, whose #UD (like any other
//! exception) enters ring 0 through the IDT onto the TSS stack, where the stub's HLT stops
//! the CPU: the interpreter returns `Stop::Halted`, KVM exits with KVM_EXIT_HLT. The vector is
//! `RIP - 1 - STUBS`; the user state is in the frame at `KSTACK_TOP` and in the registers,
//! which the stub does not touch. Ring-0 work is one HLT, because a paravirtual KVM
//! emulates ring 0 slowly.

use cpu::state::{flags, sreg, DescriptorTable, Segment};
use cpu::CpuState;

pub const PML4: u64 = 0x1000;
pub const GDT: u64 = 0x5000;
pub const IDT: u64 = 0x6000;
pub const TSS: u64 = 0x7000;
pub const STUBS: u64 = 0x8000;
pub const KSTACK: u64 = 0x9000;
pub const KSTACK_TOP: u64 = 0xA000;
/// The bytes below `KSTACK_TOP` compared after each case (the frame and a margin).
pub const KSTACK_COMPARED: u64 = 0x40;
pub const CODE: u64 = 0x10000;
pub const CODE_SIZE: u64 = 0x1000;
pub const DATA: u64 = 0x20000;
pub const DATA_SIZE: u64 = 0x2000;
/// Physical memory the image covers (the interpreter's flat RAM).
pub const IMAGE_SIZE: usize = 0x30000;
/// Guest RAM of the KVM machine (Machine wants at least 1 MiB).
pub const MACHINE_RAM: u64 = 2 << 20;

/// Selectors.
pub const KCODE: u16 = 0x08;
pub const KDATA: u16 = 0x10;
pub const UDATA: u16 = 0x23;
pub const UCODE: u16 = 0x2B;
pub const TSS_SEL: u16 = 0x30;

/// Vectors whose gates ring 3 may use with INT n (all others are DPL 0: INT n there is #GP).
pub const USER_VECTORS: [u8; 2] = [0x80, 0x81];

pub const CR0: u64 = 0x8001_0033; // PG WP NE ET MP PE
pub const CR4: u64 = 0x0000_0620; // OSXMMEXCPT OSFXSR PAE
pub const EFER: u64 = 0xD00; // NXE LMA LME

/// The RFLAGS bits a case starts with at random (the rest: bit 1 set, IF/TF/IOPL/NT/AC
/// clear). AC stays clear: a paravirtual KVM (PVM) runs ring 3 natively under the host's
/// CR0.AM = 1, so AC = 1 raises #AC on unaligned accesses although the guest's CR0.AM is 0.
pub const RANDOM_FLAGS: u64 = flags::ARITH | flags::DF | flags::ID;
/// Always set: bit 1 and IF. IF is set because a paravirtual KVM runs ring 3 natively with
/// the host's IF = 1, which PUSHF would show whatever the guest's IF is. No interrupt can
/// come: the machine's 8259A has every line masked and nothing runs its timers.
pub const FIXED_FLAGS: u64 = flags::FIXED1 | flags::IF;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 0x20;
const D: u64 = 0x40;
const NX: u64 = 1 << 63;

/// The memory image with everything but the case's code and data: page tables, GDT, IDT,
/// TSS, stubs. Accessed and dirty bits are preset everywhere, so neither CPU writes the
/// tables while running (a write there would be one more thing that can differ).
pub fn base_image() -> Vec<u8> {
    let mut m = vec![0u8; IMAGE_SIZE];
    let mut put = |a: u64, v: u64| m[a as usize..a as usize + 8].copy_from_slice(&v.to_le_bytes());
    let table = P | RW | US | A;
    put(PML4, 0x2000 | table);
    put(0x2000, 0x3000 | table);
    put(0x3000, 0x4000 | table);
    let pte = |page: u64, bits: u64| (0x4000 + (page >> 12) * 8, page | bits | P | A | D);
    let mut ptes = Vec::new();
    for page in [0x1000, 0x2000, 0x3000, 0x4000, GDT, IDT, TSS, KSTACK] {
        ptes.push(pte(page, RW | NX));
    }
    ptes.push(pte(STUBS, 0));
    ptes.push(pte(CODE, US));
    for page in (DATA..DATA + DATA_SIZE).step_by(0x1000) {
        ptes.push(pte(page, US | RW | NX));
    }
    for (a, v) in ptes {
        put(a, v);
    }
    // GDT. Index 3 is a 32-bit ring-3 code segment (unused: SYSRET's layout).
    let gdt: [(u64, u64); 6] = [
        (1, 0x00AF_9B00_0000_FFFF), // 0x08 ring 0 code, 64-bit
        (2, 0x00CF_9300_0000_FFFF), // 0x10 ring 0 data
        (3, 0x00CF_FB00_0000_FFFF), // 0x1B ring 3 code, 32-bit
        (4, 0x00CF_F300_0000_FFFF), // 0x23 ring 3 data
        (5, 0x00AF_FB00_0000_FFFF), // 0x2B ring 3 code, 64-bit
        (6, tss_low()),             // 0x30 TSS (busy), upper half at index 7 is 0
    ];
    for (i, d) in gdt {
        put(GDT + 8 * i, d);
    }
    for v in 0..256u64 {
        let handler = STUBS + v;
        let dpl = if USER_VECTORS.contains(&(v as u8)) { 3 } else { 0 };
        let kind = 0x8E | (dpl << 5); // present, interrupt gate
        let lo = (handler & 0xFFFF) | (u64::from(KCODE) << 16) | (kind << 40) | ((handler >> 16) & 0xFFFF) << 48;
        put(IDT + 16 * v, lo);
        put(IDT + 16 * v + 8, handler >> 32);
    }
    // TSS: RSP0; the I/O map base points past the limit (no bitmap: ring-3 port I/O is #GP).
    put(TSS + 4, KSTACK_TOP);
    m[(TSS + 0x66) as usize..(TSS + 0x68) as usize].copy_from_slice(&0x68u16.to_le_bytes());
    for b in &mut m[STUBS as usize..STUBS as usize + 256] {
        *b = 0xF4;
    }
    m
}

fn tss_low() -> u64 {
    let (base, limit) = (TSS, 0x67u64);
    (limit & 0xFFFF) | (base & 0xFF_FFFF) << 16 | 0x8B << 40 | ((limit >> 16) & 0xF) << 48 | ((base >> 24) & 0xFF) << 56
}

/// The CPU state a case starts from, before its registers and flags are filled in: CPL 3 in
/// 64-bit mode at `CODE`, everything else as `base_image` expects.
pub fn user_state() -> CpuState {
    let mut s = CpuState::default();
    let data = Segment { selector: UDATA, base: 0, limit: 0xFFFF_FFFF, attr: 0xC0F3 };
    s.seg = [data; 6];
    s.seg[sreg::CS] = Segment { selector: UCODE, base: 0, limit: 0xFFFF_FFFF, attr: 0xA0FB };
    s.ldtr = Segment { selector: 0, base: 0, limit: 0, attr: 0x82 };
    s.tr = Segment { selector: TSS_SEL, base: TSS, limit: 0x67, attr: 0x8B };
    s.gdtr = DescriptorTable { base: GDT, limit: 8 * 8 - 1 };
    s.idtr = DescriptorTable { base: IDT, limit: 256 * 16 - 1 };
    s.cr0 = CR0;
    s.cr3 = PML4;
    s.cr4 = CR4;
    s.efer = EFER;
    s.rip = CODE;
    s.rflags = FIXED_FLAGS;
    s
}

/// Where the run stopped, read from a final state: the vector whose stub halted (`None` if
/// the CPU is not halted in a stub).
pub fn vector_of(s: &CpuState) -> Option<u8> {
    let at = s.rip.wrapping_sub(1);
    (s.halted && (STUBS..STUBS + 256).contains(&at)).then(|| (at - STUBS) as u8)
}

/// Exceptions that push an error code (SDM vol. 3, table 6-1).
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}
