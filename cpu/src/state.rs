//! The architectural state of one x86 processor as plain data: what a snapshot stores, what
//! moves between the interpreter and KVM, what the debugger shows and what differential tests
//! compare. No host pointers, no caches: everything here is what the guest could observe.

use serde::{Deserialize, Serialize};

/// Version of the serialized `CpuState` record; bump on any incompatible change.
pub const CPU_STATE_VERSION: u32 = 1;

/// General register numbers, in the encoding order of the instruction set.
pub mod reg {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// Segment register numbers, in the encoding order of the instruction set.
pub mod sreg {
    pub const ES: usize = 0;
    pub const CS: usize = 1;
    pub const SS: usize = 2;
    pub const DS: usize = 3;
    pub const FS: usize = 4;
    pub const GS: usize = 5;
    pub const NAMES: [&str; 6] = ["es", "cs", "ss", "ds", "fs", "gs"];
}

/// RFLAGS bits.
pub mod flags {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six status flags that arithmetic computes.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// A segment register: the visible selector and the hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    /// Descriptor attribute bits in the layout of bits 40..55 of a descriptor shifted down by
    /// 40: type (0-3), S (4), DPL (5-6), P (7), AVL (12), L (13), D/B (14), G (15).
    pub attr: u16,
}

impl Segment {
    /// A segment as real mode leaves it: base = selector * 16, 64 KiB limit, present,
    /// read/write data (code segments are given `attr_code`).
    pub fn real_mode(selector: u16) -> Segment {
        Segment { selector, base: u64::from(selector) << 4, limit: 0xFFFF, attr: 0x93 }
    }
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// Events that are architecturally pending but not yet delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEvents {
    /// The instruction just executed was MOV SS, POP SS or STI: interrupts are held off for
    /// one more instruction.
    pub interrupt_shadow: bool,
    /// An NMI is waiting to be delivered.
    pub nmi: bool,
    /// An NMI handler is running: further NMIs wait for its IRET.
    #[serde(default)]
    pub nmi_blocked: bool,
}

/// The architectural state of one processor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuState {
    pub version: u32,
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8 .. R15.
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS.
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    /// DR0-DR3, then DR6 and DR7.
    pub dr: [u64; 6],
    pub tsc: u64,
    pub apic_base: u64,
    /// Model-specific registers the processor implements, other than those above and the
    /// FS/GS bases (which live in `seg`).
    pub msr: Msrs,
    /// x87 FPU (and MMX, which aliases its registers).
    pub fpu: FpuState,
    /// SSE: XMM0-XMM15 and MXCSR.
    pub sse: SseState,
    /// XCR0 (XSETBV): which state components XSAVE manages.
    pub xcr0: u64,
    pub halted: bool,
    /// An application processor after INIT (or power-on): it executes nothing and takes no
    /// interrupt until a STARTUP IPI gives it a start address (SDM 3A 10.4 / 8.4).
    #[serde(default)]
    pub wait_for_sipi: bool,
    pub pending: PendingEvents,
}

/// An 80-bit extended-precision value as the x87 holds it: a 64-bit significand with an
/// explicit integer bit, and sign plus 15-bit biased exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct F80 {
    pub signif: u64,
    pub sign_exp: u16,
}

/// x87 state as FXSAVE lays it out, with the full (two bits per register) tag word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FpuState {
    pub fcw: u16,
    /// Status word, TOP in bits 11-13.
    pub fsw: u16,
    /// Tag word: two bits per physical register (00 valid, 01 zero, 10 special, 11 empty).
    pub ftw: u16,
    /// Last non-control instruction's opcode (11 bits), instruction and operand pointers.
    pub fop: u16,
    pub fip: u64,
    pub fcs: u16,
    pub fdp: u64,
    pub fds: u16,
    /// Physical registers R0-R7 (ST(i) is R((TOP + i) mod 8)); MMX registers alias their
    /// significands.
    pub regs: [F80; 8],
}

impl Default for FpuState {
    /// The state FNINIT leaves (and what power-on leaves, apart from FCW 0x0040 on some
    /// processors: FNINIT's 0x037F is what software sees after a BIOS).
    fn default() -> Self {
        FpuState { fcw: 0x037F, fsw: 0, ftw: 0xFFFF, fop: 0, fip: 0, fcs: 0, fds: 0, fdp: 0, regs: [F80::default(); 8] }
    }
}

/// SSE registers. Each XMM register is two little-endian quadwords, low first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SseState {
    pub xmm: [[u64; 2]; 16],
    pub mxcsr: u32,
}

impl Default for SseState {
    fn default() -> Self {
        SseState { xmm: [[0; 2]; 16], mxcsr: 0x1F80 }
    }
}

/// The model-specific registers operating systems program, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Msrs {
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub fmask: u64,
    pub kernel_gs_base: u64,
    pub tsc_aux: u64,
    pub pat: u64,
    pub misc_enable: u64,
    /// IA32_TSC_DEADLINE as last written (the local APIC holds the armed deadline).
    #[serde(default)]
    pub tsc_deadline: u64,
    /// MSR_KVM_SYSTEM_TIME_NEW: where the guest keeps KVM's paravirtual clock (bit 0:
    /// enabled). Registered under KVM; the interpreter keeps the structure telling the time
    /// after a hand-over (`pvclock`).
    #[serde(default)]
    pub kvm_system_time: u64,
    /// MTRRs: the default type (0x2FF), fixed ranges and variable base/mask pairs, by MSR
    /// number.
    pub mtrr: std::collections::BTreeMap<u32, u64>,
}

impl Msrs {
    /// Power-on values.
    pub fn reset() -> Msrs {
        Msrs { pat: 0x0007_0406_0007_0406, misc_enable: 1, ..Msrs::default() }
    }
}

impl Default for CpuState {
    /// The state after RESET: real mode, CS:IP = F000:FFF0 with CS base FFFF0000, as a 386+
    /// starts, so the first fetch hits the top of the 4 GiB space where the BIOS is mapped.
    fn default() -> Self {
        let mut seg = [Segment::real_mode(0); 6];
        seg[sreg::CS] = Segment { selector: 0xF000, base: 0xFFFF_0000, limit: 0xFFFF, attr: 0x9B };
        CpuState {
            version: CPU_STATE_VERSION,
            gpr: [0; 16],
            rip: 0xFFF0,
            rflags: flags::FIXED1,
            seg,
            ldtr: Segment { selector: 0, base: 0, limit: 0xFFFF, attr: 0x82 },
            tr: Segment { selector: 0, base: 0, limit: 0xFFFF, attr: 0x8B },
            gdtr: DescriptorTable { base: 0, limit: 0xFFFF },
            idtr: DescriptorTable { base: 0, limit: 0x3FF },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            dr: [0, 0, 0, 0, 0xFFFF_0FF0, 0x400],
            tsc: 0,
            apic_base: 0xFEE0_0900,
            msr: Msrs::reset(),
            fpu: FpuState::default(),
            sse: SseState::default(),
            xcr0: 1,
            halted: false,
            wait_for_sipi: false,
            pending: PendingEvents::default(),
        }
    }
}

impl CpuState {
    /// A real-mode state with every segment at `selector` and IP at `ip`, used by tests and by
    /// direct boot of real-mode images.
    pub fn real_mode_at(cs: u16, ip: u16) -> CpuState {
        let mut s = CpuState::default();
        for r in s.seg.iter_mut() {
            *r = Segment::real_mode(0);
        }
        s.seg[sreg::CS] = Segment { attr: 0x9B, ..Segment::real_mode(cs) };
        s.rip = u64::from(ip);
        s
    }

    /// The state an INIT (INIT IPI, or power-on of an application processor) leaves:
    /// the RESET state, except that the x87/SSE registers, the MSRs, the TSC and the local
    /// APIC base stay as they were (SDM 3A table 10-1, "INIT" column). `wait_for_sipi` is
    /// left for the caller: an application processor waits for a STARTUP IPI, the bootstrap
    /// processor restarts at the reset vector.
    pub fn after_init(&self) -> CpuState {
        CpuState {
            tsc: self.tsc,
            apic_base: self.apic_base,
            // KVM turns the paravirtual clock off at INIT (kvmclock_reset).
            msr: Msrs { kvm_system_time: 0, ..self.msr.clone() },
            fpu: self.fpu.clone(),
            sse: self.sse.clone(),
            xcr0: self.xcr0,
            ..CpuState::default()
        }
    }

    /// A STARTUP IPI with `vector` reached a processor waiting for one: it starts in real
    /// mode at `vector`:0000 (physical address `vector` * 4 KiB). Ignored otherwise, as the
    /// hardware does.
    pub fn startup(&mut self, vector: u8) {
        if !self.wait_for_sipi {
            return;
        }
        self.wait_for_sipi = false;
        self.halted = false;
        let cs = u16::from(vector) << 8;
        self.seg[sreg::CS] = Segment { selector: cs, base: u64::from(cs) << 4, limit: 0xFFFF, attr: 0x9B };
        self.rip = 0;
    }

    /// One line per register group, for fault reports and `--timeout` dumps.
    pub fn report(&self) -> String {
        let g = &self.gpr;
        let mut out = String::new();
        out += &format!(
            "rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}\n",
            g[reg::RAX], g[reg::RBX], g[reg::RCX], g[reg::RDX]
        );
        out += &format!(
            "rsi={:016x} rdi={:016x} rbp={:016x} rsp={:016x}\n",
            g[reg::RSI], g[reg::RDI], g[reg::RBP], g[reg::RSP]
        );
        out += &format!(
            "r8 ={:016x} r9 ={:016x} r10={:016x} r11={:016x}\n",
            g[8], g[9], g[10], g[11]
        );
        out += &format!(
            "r12={:016x} r13={:016x} r14={:016x} r15={:016x}\n",
            g[12], g[13], g[14], g[15]
        );
        out += &format!("rip={:016x} rflags={:08x} [{}]\n", self.rip, self.rflags, flag_names(self.rflags));
        for (i, s) in self.seg.iter().enumerate() {
            out += &format!(
                "{}={:04x} base={:016x} limit={:08x} attr={:04x}\n",
                sreg::NAMES[i], s.selector, s.base, s.limit, s.attr
            );
        }
        out += &format!(
            "gdt={:016x}/{:04x} idt={:016x}/{:04x}\n",
            self.gdtr.base, self.gdtr.limit, self.idtr.base, self.idtr.limit
        );
        out += &format!(
            "cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}{}\n",
            self.cr0,
            self.cr2,
            self.cr3,
            self.cr4,
            self.efer,
            if self.wait_for_sipi {
                " (waiting for SIPI)"
            } else if self.halted {
                " (halted)"
            } else {
                ""
            }
        );
        out
    }
}

fn flag_names(f: u64) -> String {
    const NAMES: [(u64, &str); 9] = [
        (flags::OF, "OF"),
        (flags::DF, "DF"),
        (flags::IF, "IF"),
        (flags::TF, "TF"),
        (flags::SF, "SF"),
        (flags::ZF, "ZF"),
        (flags::AF, "AF"),
        (flags::PF, "PF"),
        (flags::CF, "CF"),
    ];
    NAMES.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_state_fetches_from_top_of_4g() {
        let s = CpuState::default();
        assert_eq!(s.seg[sreg::CS].base + s.rip, 0xFFFF_FFF0);
    }

    #[test]
    fn serde_round_trip() {
        let mut s = CpuState::real_mode_at(0x1234, 0x5678);
        s.gpr[3] = 0xDEAD_BEEF;
        s.pending.interrupt_shadow = true;
        let text = serde_json::to_string(&s).unwrap();
        let back: CpuState = serde_json::from_str(&text).unwrap();
        assert_eq!(s, back);
    }
}
