//! Flag instructions, HLT, and the system instructions real mode can reach: control and
//! debug register moves, LGDT/LIDT/SGDT/SIDT, SMSW/LMSW, CLTS, CPUID, RDTSC, RDMSR/WRMSR.

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::flags::*;
use crate::state::reg;

const RAX: u8 = reg::RAX as u8;

pub(crate) fn hlt(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    cpu.s.halted = true;
    cpu.end_block = true;
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
    }
    cpu.s.rflags |= IF;
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

/// MOV CRn, r32.
pub(crate) fn mov_cr_r(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let v = cpu.reg(i.r1, 4);
    match i.r0 {
        0 => cpu.write_cr0(v)?,
        2 => cpu.s.cr2 = v,
        3 => {
            cpu.s.cr3 = v;
            cpu.flush_tlb();
        }
        4 => {
            cpu.s.cr4 = v;
            cpu.flush_tlb();
        }
        _ => return Err(Fault::ud()),
    }
    Ok(())
}

/// MOV r32, CRn.
pub(crate) fn mov_r_cr(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let v = match i.r1 {
        0 => cpu.s.cr0,
        2 => cpu.s.cr2,
        3 => cpu.s.cr3,
        4 => cpu.s.cr4,
        _ => return Err(Fault::ud()),
    };
    cpu.set_reg(i.r0, 4, v);
    Ok(())
}

/// Debug register index in `CpuState::dr`: DR4 and DR5 alias DR6 and DR7 (CR4.DE clear).
fn dr_slot(n: u8) -> Option<usize> {
    match n {
        0..=3 => Some(n as usize),
        4 | 6 => Some(4),
        5 | 7 => Some(5),
        _ => None,
    }
}

pub(crate) fn mov_dr_r(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let slot = dr_slot(i.r0).ok_or(Fault::ud())?;
    let v = cpu.reg(i.r1, 4);
    cpu.s.dr[slot] = match slot {
        4 => v | 0xFFFF_0FF0,
        5 => (v | 0x400) & !0x2000,
        _ => v,
    };
    Ok(())
}

pub(crate) fn mov_r_dr(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let slot = dr_slot(i.r1).ok_or(Fault::ud())?;
    let v = cpu.s.dr[slot];
    cpu.set_reg(i.r0, 4, v);
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

/// CPUID: reports a processor without an FPU or any extension beyond what is implemented.
pub(crate) fn cpuid(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let leaf = cpu.reg(RAX, 4);
    let (a, b, c, d) = match leaf {
        // "GenuineIntel": the vendor most software knows how to handle.
        0 => (1, 0x756E_6547, 0x6C65_746E, 0x4965_6E69),
        // Family 4 (486) model 0. EDX: TSC (bit 4), MSR (bit 5).
        1 => (0x400, 0, 0, (1 << 4) | (1 << 5)),
        _ => (0, 0, 0, 0),
    };
    cpu.set_reg(RAX, 4, a);
    cpu.set_reg(reg::RBX as u8, 4, b);
    cpu.set_reg(reg::RCX as u8, 4, c);
    cpu.set_reg(reg::RDX as u8, 4, d);
    Ok(())
}

pub(crate) fn rdtsc(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    let t = cpu.tsc();
    cpu.set_reg(RAX, 4, t & 0xFFFF_FFFF);
    cpu.set_reg(reg::RDX as u8, 4, t >> 32);
    Ok(())
}

const MSR_TSC: u64 = 0x10;
const MSR_APIC_BASE: u64 = 0x1B;

pub(crate) fn rdmsr(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let v = match cpu.reg(reg::RCX as u8, 4) {
        MSR_TSC => cpu.tsc(),
        MSR_APIC_BASE => cpu.s.apic_base,
        _ => return Err(Fault::gp(0)),
    };
    cpu.set_reg(RAX, 4, v & 0xFFFF_FFFF);
    cpu.set_reg(reg::RDX as u8, 4, v >> 32);
    Ok(())
}

pub(crate) fn wrmsr(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    cpu.require_cpl0()?;
    let v = cpu.reg(RAX, 4) | (cpu.reg(reg::RDX as u8, 4) << 32);
    match cpu.reg(reg::RCX as u8, 4) {
        MSR_TSC => cpu.set_tsc(v),
        MSR_APIC_BASE => cpu.s.apic_base = v,
        _ => return Err(Fault::gp(0)),
    }
    Ok(())
}

impl Cpu {
    /// Writes CR0. Entering protected mode is refused with a clear shutdown reason until the
    /// protected-mode work lands, rather than running protected-mode code with real-mode rules.
    pub(crate) fn write_cr0(&mut self, v: u64) -> Result<(), Fault> {
        let v = (v & 0xE005_003F) | 0x10;
        if v & (1 << 31) != 0 && v & 1 == 0 {
            return Err(Fault::gp(0));
        }
        if v & (1 << 31) != 0 && self.s.cr0 & (1 << 31) == 0 {
            self.shutdown("the guest enabled paging, which this interpreter does not run yet".into());
            return Ok(());
        }
        self.s.cr0 = v;
        self.flush_tlb();
        // Segment checks depend on the mode.
        self.update_mode();
        self.end_block = true;
        Ok(())
    }
}
