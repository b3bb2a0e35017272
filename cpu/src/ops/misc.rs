//! Flag instructions, HLT, and the system instructions real mode can reach: control and
//! debug register moves, LGDT/LIDT/SGDT/SIDT, SMSW/LMSW, CLTS, CPUID, RDTSC, RDMSR/WRMSR.

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::flags::*;
use crate::paging::{CR0_PG, CR4_PAE, CR4_PGE, EFER_NXE, MAX_PHYS_BITS};
use crate::state::reg;

pub(crate) const EFER_LME: u64 = 1 << 8;
pub(crate) const EFER_LMA: u64 = 1 << 10;

const RAX: u8 = reg::RAX as u8;

pub(crate) fn hlt(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    cpu.s.halted = true;
    cpu.stop_block();
    Ok(())
}

/// PAUSE: a NOP, unless other processors are time-sliced with this one (see
/// `Cpu::set_yield_on_pause`): then the spinning processor gives way.
pub(crate) fn pause(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.yield_on_pause {
        cpu.stop_block();
        if cpu.stop.is_none() {
            cpu.stop = Some(crate::cpu::Stop::Yield);
        }
    }
    Ok(())
}

/// CLC (0), STC (1), CMC (2), CLD (3), STD (4), CLI (5).
pub(crate) fn flag_op(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    match i.imm2 {
        0 => cpu.set_flag(CF, false),
        1 => cpu.set_flag(CF, true),
        2 => {
            let cf = cpu.cf();
            cpu.set_flag(CF, !cf);
        }
        3 => cpu.s.rflags &= !DF,
        4 => cpu.s.rflags |= DF,
        _ => {
            cpu.require_iopl()?;
            cpu.s.rflags &= !IF;
        }
    }
    Ok(())
}

/// STI: interrupts are recognised only after the next instruction.
pub(crate) fn sti(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_iopl()?;
    if cpu.s.rflags & IF == 0 {
        cpu.s.pending.interrupt_shadow = true;
        // The block ends here, and the next runs one instruction before interrupts are
        // looked at (`sti ; nop ; cli` is a window a waiting interrupt must get through).
        cpu.stop_block();
    }
    cpu.s.rflags |= IF;
    Ok(())
}

/// STAC (`imm2` 1) / CLAC: set or clear EFLAGS.AC at CPL 0 (SMAP's override).
pub(crate) fn stac_clac(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if cpu.protected() && cpu.cpl() != 0 {
        return Err(Fault::ud());
    }
    cpu.set_flag(AC, i.imm2 == 1);
    Ok(())
}

pub(crate) fn lahf(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let f = (cpu.rflags() & (SF | ZF | AF | PF | CF)) | FIXED1;
    cpu.set_reg(16, 1, f);
    Ok(())
}

pub(crate) fn sahf(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let ah = cpu.reg(16, 1);
    cpu.set_status(SF | ZF | AF | PF | CF, ah);
    Ok(())
}

/// SALC (undocumented D6): AL = CF ? 0xFF : 0.
pub(crate) fn salc(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let v = if cpu.cf() { 0xFF } else { 0 };
    cpu.set_reg(RAX, 1, v);
    Ok(())
}

/// MOV CRn, r32/r64.
pub(crate) fn mov_cr_r(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let w = if cpu.bits == 64 { 8 } else { 4 };
    let v = cpu.reg(i.r1, w);
    match i.r0 {
        0 => cpu.write_cr0(v)?,
        2 => cpu.s.cr2 = v,
        3 => cpu.write_cr3(bus, v)?,
        4 => cpu.write_cr4(v)?,
        8 if cpu.bits == 64 => {
            if v > 15 {
                return Err(Fault::gp(0));
            }
            cpu.s.cr8 = v;
            bus.set_tpr((v << 4) as u8);
        }
        _ => return Err(Fault::ud()),
    }
    Ok(())
}

/// MOV r32/r64, CRn.
pub(crate) fn mov_r_cr(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let w = if cpu.bits == 64 { 8 } else { 4 };
    let v = match i.r1 {
        0 => cpu.s.cr0,
        2 => cpu.s.cr2,
        3 => cpu.s.cr3,
        4 => cpu.s.cr4,
        8 if cpu.bits == 64 => bus.tpr().map_or(cpu.s.cr8, |t| u64::from(t >> 4)),
        _ => return Err(Fault::ud()),
    };
    cpu.set_reg(i.r0, w, v);
    Ok(())
}

/// INVD, WBINVD: no caches to manage, but ring 0 only.
pub(crate) fn cache_control(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()
}

pub(crate) fn invlpg(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    match cpu.mem_lin(i, 1, crate::mem::Access::Read).ok() {
        // The TLB's entries are 4 KiB pieces even of large pages: it drops every piece of the
        // page's surroundings as large as the largest page it holds (`Tlb::invalidate`), and
        // the blocks found by linear address if code came through those pages.
        Some(lin) => {
            let (first, last) = cpu.tlb.invalidate(lin);
            cpu.blocks.pages_unmapped(first, last);
        }
        // An address outside its segment (INVLPG does not fault on it): everything.
        None => cpu.flush_tlb(),
    }
    Ok(())
}

/// Debug register index in `CpuState::dr`. DR4 and DR5 alias DR6 and DR7 while CR4.DE is
/// clear; with it set they are undefined (#UD).
fn dr_slot(cpu: &Cpu, n: u8) -> Result<usize, Fault> {
    match n {
        0..=3 => Ok(n as usize),
        6 => Ok(4),
        7 => Ok(5),
        4 | 5 if cpu.s.cr4 & 8 == 0 => Ok(n as usize),
        _ => Err(Fault::ud()),
    }
}

pub(crate) fn mov_dr_r(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let slot = dr_slot(cpu, i.r0)?;
    cpu.general_detect()?;
    let w = if cpu.bits == 64 { 8 } else { 4 };
    let v = cpu.reg(i.r1, w);
    if slot >= 4 && v >> 32 != 0 {
        return Err(Fault::gp(0));
    }
    cpu.s.dr[slot] = match slot {
        4 => (v | 0xFFFF_0FF0) & !0x1000,
        5 => (v | 0x400) & !0xD800,
        _ => v,
    };
    if slot == 5 {
        cpu.refresh_breakpoints();
    }
    Ok(())
}

pub(crate) fn mov_r_dr(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let slot = dr_slot(cpu, i.r1)?;
    cpu.general_detect()?;
    let w = if cpu.bits == 64 { 8 } else { 4 };
    let v = cpu.s.dr[slot];
    cpu.set_reg(i.r0, w, v);
    Ok(())
}

/// LGDT (`imm2` 0) / LIDT (1): limit, then base (24 bits with a 16-bit operand size).
pub(crate) fn load_table(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let ea = cpu.ea(i);
    let limit = cpu.read_seg(bus, i.seg as usize, ea, 2)?;
    let wide = if cpu.bits == 64 { 8 } else { 4 };
    let mut base = cpu.read_seg(bus, i.seg as usize, crate::cpu::mask(ea + 2, i.asz), wide)?;
    if i.osz == 2 && cpu.bits != 64 {
        base &= 0x00FF_FFFF;
    }
    let t = crate::state::DescriptorTable { base, limit: limit as u16 };
    if i.imm2 == 1 {
        cpu.s.idtr = t;
    } else {
        cpu.s.gdtr = t;
    }
    Ok(())
}

/// SGDT (`imm2` 0) / SIDT (1).
pub(crate) fn store_table(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let t = if i.imm2 == 1 { cpu.s.idtr } else { cpu.s.gdtr };
    let ea = cpu.ea(i);
    let wide = if cpu.bits == 64 { 8 } else { 4 };
    let lin = cpu.lin(i.seg as usize, ea, 2 + wide, Access::Write)?;
    cpu.write(bus, lin, 2, u64::from(t.limit))?;
    cpu.write_seg(bus, i.seg as usize, crate::cpu::mask(ea + 2, i.asz), wide, t.base)
}

pub(crate) fn smsw<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.s.cr0;
    if MEM {
        cpu.write_rm::<true>(bus, i, 2, v & 0xFFFF)
    } else {
        cpu.set_reg(i.r0, i.osz, v);
        Ok(())
    }
}

/// LMSW: loads CR0 bits 0-3; PE can be set but not cleared.
pub(crate) fn lmsw<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let v = cpu.read_rm::<MEM>(bus, i, 2)?;
    let new = (cpu.s.cr0 & !0xE) | (v & 0xF) | (cpu.s.cr0 & 1);
    cpu.write_cr0(new)
}

pub(crate) fn clts(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    cpu.s.cr0 &= !8;
    Ok(())
}

/// CPUID: see `cpuid.rs`.
pub(crate) fn cpuid(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let leaf = cpu.reg(RAX, 4) as u32;
    let sub = cpu.reg(reg::RCX as u8, 4) as u32;
    let [a, b, c, d] = cpu.cpuid_leaf(leaf, sub);
    cpu.set_reg(RAX, 4, u64::from(a));
    cpu.set_reg(reg::RBX as u8, 4, u64::from(b));
    cpu.set_reg(reg::RCX as u8, 4, u64::from(c));
    cpu.set_reg(reg::RDX as u8, 4, u64::from(d));
    Ok(())
}

/// RDPMC: there are no performance counters (CPUID leaf 0xA reports none), so every counter
/// number is invalid: #GP(0), as for a CPL > 0 read with CR4.PCE clear.
pub(crate) fn rdpmc(_cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    Err(Fault::gp(0))
}

pub(crate) fn rdtsc(cpu: &mut Cpu, bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.s.cr4 & 4 != 0 && cpu.protected() && cpu.cpl() != 0 {
        // CR4.TSD: RDTSC only at CPL 0.
        return Err(Fault::gp(0));
    }
    let t = cpu.tsc_now(bus);
    cpu.set_reg(RAX, 4, t & 0xFFFF_FFFF);
    cpu.set_reg(reg::RDX as u8, 4, t >> 32);
    Ok(())
}

pub(crate) fn rdmsr(cpu: &mut Cpu, bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let n = cpu.reg(reg::RCX as u8, 4) as u32;
    let v = match n {
        crate::msr::TSC => Some(cpu.tsc_now(bus)),
        _ => bus.msr_read(n).or_else(|| cpu.read_msr(n)),
    };
    let Some(v) = v else {
        tracing::debug!("RDMSR of unknown MSR {n:#x}: #GP");
        return Err(Fault::gp(0));
    };
    cpu.set_reg(RAX, 4, v & 0xFFFF_FFFF);
    cpu.set_reg(reg::RDX as u8, 4, v >> 32);
    Ok(())
}

pub(crate) fn wrmsr(cpu: &mut Cpu, bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let v = cpu.reg(RAX, 4) | (cpu.reg(reg::RDX as u8, 4) << 32);
    let n = cpu.reg(reg::RCX as u8, 4) as u32;
    if n == crate::msr::TSC {
        cpu.set_tsc(bus, v);
        return Ok(());
    }
    if n == crate::msr::TSC_DEADLINE && cpu.config.tsc_deadline {
        // The TSC counts virtual nanoseconds: the deadline is as far ahead in time as it is
        // ahead of the TSC now. 0 disarms; a value already passed fires at once.
        let at = match (v, bus.time_ns(cpu.run_retired)) {
            (0, _) | (_, None) => None,
            (v, Some(now)) => Some(now.saturating_add(v.saturating_sub(cpu.tsc_now(bus)))),
        };
        bus.set_tsc_deadline(at);
        cpu.s.msr.tsc_deadline = v;
        if bus.wants_stop() {
            // The board's next deadline moved: let the run loop see it.
            cpu.stop_for_bus();
        }
        return Ok(());
    }
    match bus.msr_write(n, v) {
        Some(true) => {
            if n == crate::msr::APIC_BASE {
                // Mirrored for snapshots and the KVM backend.
                cpu.s.apic_base = v;
            }
            Ok(())
        }
        Some(false) => Err(Fault::gp(0)),
        None if n == crate::pvclock::KVM_SYSTEM_TIME_NEW => {
            let old = cpu.s.msr.kvm_system_time;
            cpu.write_msr(n, v)?;
            // A new registration goes on from the old structure's time, else starts at the
            // TSC's (nanoseconds of virtual time).
            let fresh = cpu.tsc_now(bus);
            cpu.update_pvclock(bus, old, fresh);
            Ok(())
        }
        None => cpu.write_msr(n, v),
    }
}

impl Cpu {
    /// Writes CR0: PG needs PE; turning paging on with EFER.LME set enters IA-32e mode
    /// (which needs CR4.PAE).
    pub(crate) fn write_cr0(&mut self, v: u64) -> Result<(), Fault> {
        if v >> 32 != 0 {
            return Err(Fault::gp(0));
        }
        let v = (v & 0xE005_003F) | 0x10;
        if v & CR0_PG != 0 && v & 1 == 0 {
            return Err(Fault::gp(0));
        }
        let pg_on = v & CR0_PG != 0 && self.s.cr0 & CR0_PG == 0;
        let pg_off = v & CR0_PG == 0 && self.s.cr0 & CR0_PG != 0;
        if pg_on && self.s.efer & EFER_LME != 0 {
            if self.s.cr4 & CR4_PAE == 0 {
                return Err(Fault::gp(0));
            }
            self.s.efer |= EFER_LMA;
        }
        if pg_off && self.long_mode() {
            if self.bits == 64 {
                return Err(Fault::gp(0));
            }
            self.s.efer &= !EFER_LMA;
        }
        self.s.cr0 = v;
        self.flush_tlb();
        // Segment checks and code size depend on the mode.
        self.update_mode();
        self.stop_block();
        Ok(())
    }

    fn check_pdptes(&mut self, bus: &mut dyn Bus, cr3: u64) -> Result<(), Fault> {
        let rsvd = 0x1E6 | !((1u64 << MAX_PHYS_BITS) - 1);
        for k in 0..4 {
            let e = self.phys_read(bus, (cr3 & 0xFFFF_FFE0) + 8 * k, 8);
            if e & 1 != 0 && e & rsvd != 0 {
                return Err(Fault::gp(0));
            }
        }
        Ok(())
    }

    pub(crate) fn write_cr3(&mut self, bus: &mut dyn Bus, v: u64) -> Result<(), Fault> {
        // With PCIDs, bit 63 asks to keep the TLB; flushing anyway is always safe.
        let v = v & !(1u64 << 63);
        if self.long_mode() && v >> MAX_PHYS_BITS != 0 {
            return Err(Fault::gp(0));
        }
        if self.paging() && self.s.cr4 & CR4_PAE != 0 && !self.long_mode() {
            // PAE loads the four PDPTEs with CR3: a present one with reserved bits is #GP(0).
            self.check_pdptes(bus, v)?;
        }
        self.s.cr3 = v;
        if self.s.cr4 & CR4_PGE != 0 {
            self.tlb.flush_nonglobal();
            self.blocks.forget_recent();
        } else {
            self.flush_tlb();
        }
        Ok(())
    }

    pub(crate) fn write_cr4(&mut self, v: u64) -> Result<(), Fault> {
        // VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT UMIP FSGSBASE PCIDE OSXSAVE
        // SMEP SMAP.
        const KNOWN: u64 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21);
        if v & !KNOWN != 0 || (self.long_mode() && v & CR4_PAE == 0) {
            return Err(Fault::gp(0));
        }
        self.s.cr4 = v;
        self.refresh_breakpoints();
        Ok(())
    }

    /// WRMSR to IA32_EFER: SCE, LME, NXE are writable; LMA follows CR0.PG and LME.
    pub(crate) fn write_efer(&mut self, v: u64) -> Result<(), Fault> {
        const WRITABLE: u64 = 1 | EFER_LME | EFER_NXE;
        if v & !(WRITABLE | EFER_LMA) != 0 {
            return Err(Fault::gp(0));
        }
        if self.paging() && (v ^ self.s.efer) & EFER_LME != 0 {
            return Err(Fault::gp(0));
        }
        self.s.efer = (self.s.efer & EFER_LMA) | (v & WRITABLE);
        self.flush_tlb();
        Ok(())
    }
}
