//! The processor state a directly booted kernel starts in ([`machine::firmware::boot`]
//! describes it without knowing the CPU crate): flat segments from the loader's GDT, 32-bit
//! protected mode or 64-bit long mode with the loader's page tables, interrupts off, and the
//! MTRRs as SeaBIOS programs them (fixed ranges: RAM write-back, the VGA window uncached,
//! the ROM area write-protected; 3.5-4 GiB uncached; everything else write-back).

use cpu::state::{flags, sreg, DescriptorTable, Segment};
use cpu::CpuState;
use machine::firmware::boot::{EntryMode, EntryState};

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Flat 4 GiB descriptors' hidden parts: present, DPL 0, accessed, granularity 4 KiB.
const CODE32: u16 = 0xC09B;
const CODE64: u16 = 0xA09B;
const DATA: u16 = 0xC093;

/// The MTRRs SeaBIOS leaves (`src/fw/mtrr.c`), by MSR number.
fn bios_mtrrs() -> std::collections::BTreeMap<u32, u64> {
    const WB: u64 = 0x06;
    const WP: u64 = 0x05;
    const UC: u64 = 0x00;
    let all = |t: u64| t * 0x0101_0101_0101_0101;
    // The variable range covers 0xE0000000-0xFFFFFFFF, with the mask sized for 40
    // physical address bits (the interpreter's CPUID; wider hosts only see it repeat above
    // 1 TiB).
    let hole: u64 = 0xE000_0000;
    let mask = (!(0x1_0000_0000 - hole - 1)) & ((1 << 40) - 1) & !0xFFF;
    let mut m = std::collections::BTreeMap::new();
    m.insert(0x250, all(WB)); // 0x00000-0x7FFFF
    m.insert(0x258, all(WB)); // 0x80000-0x9FFFF
    m.insert(0x259, all(UC)); // 0xA0000-0xBFFFF
    for n in 0x268..=0x26F {
        m.insert(n, all(WP)); // 0xC0000-0xFFFFF
    }
    m.insert(0x200, hole | UC);
    m.insert(0x201, mask | 0x800);
    m.insert(0x2FF, 0xC00 | WB); // MTRRs and fixed ranges enabled, default write-back
    m
}

/// The CPU state `e` describes; everything it does not mention is as after reset.
pub fn entry_cpu_state(e: &EntryState) -> CpuState {
    let mut s = CpuState::default();
    let long = matches!(e.mode, EntryMode::Long64 { .. });
    let code = Segment { selector: e.code_selector, base: 0, limit: 0xFFFF_FFFF, attr: if long { CODE64 } else { CODE32 } };
    let data = Segment { selector: e.data_selector, base: 0, limit: 0xFFFF_FFFF, attr: DATA };
    for (i, seg) in s.seg.iter_mut().enumerate() {
        *seg = if i == sreg::CS { code } else { data };
    }
    s.gdtr = DescriptorTable { base: e.gdt_base, limit: e.gdt_limit };
    s.idtr = DescriptorTable { base: 0, limit: 0 };
    s.cr0 = CR0_PE | CR0_ET | CR0_NE;
    if let EntryMode::Long64 { cr3 } = e.mode {
        s.cr0 |= CR0_PG;
        s.cr3 = cr3;
        s.cr4 = CR4_PAE;
        s.efer = EFER_LME | EFER_LMA;
    }
    s.rip = e.rip;
    s.rflags = flags::FIXED1;
    s.gpr[cpu::state::reg::RAX] = e.rax;
    s.gpr[cpu::state::reg::RBX] = e.rbx;
    s.gpr[cpu::state::reg::RSI] = e.rsi;
    s.gpr[cpu::state::reg::RSP] = e.rsp;
    s.msr.mtrr = bios_mtrrs();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mode: EntryMode) -> EntryState {
        EntryState {
            mode,
            rip: 0x10_0200,
            rax: 1,
            rbx: 2,
            rsi: 0x7000,
            rsp: 0x7000,
            gdt_base: 0x1000,
            gdt_limit: 31,
            code_selector: 0x10,
            data_selector: 0x18,
        }
    }

    #[test]
    fn long_mode_entry() {
        let s = entry_cpu_state(&entry(EntryMode::Long64 { cr3: 0x9000 }));
        assert_eq!((s.cr0 & CR0_PG, s.cr3, s.efer), (CR0_PG, 0x9000, EFER_LME | EFER_LMA));
        assert_eq!(s.seg[sreg::CS].attr, CODE64);
        assert_eq!(s.seg[sreg::SS].selector, 0x18);
        assert_eq!(s.rflags & flags::IF, 0);
        assert_eq!(s.gpr[cpu::state::reg::RSI], 0x7000);
    }

    #[test]
    fn protected_mode_entry_and_mtrrs() {
        let s = entry_cpu_state(&entry(EntryMode::Protected32));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!(s.efer, 0);
        assert_eq!(s.seg[sreg::CS].attr, CODE32);
        assert_eq!((s.gpr[0], s.gpr[3]), (1, 2));
        assert_eq!(s.msr.mtrr[&0x201], 0xFF_E000_0800);
        assert_eq!(s.msr.mtrr[&0x2FF], 0xC06);
    }
}
