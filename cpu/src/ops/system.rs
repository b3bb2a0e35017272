//! Protected-mode system instructions: LLDT, LTR, SLDT, STR, LAR, LSL, VERR, VERW, ARPL, and
//! the privilege rules of the instructions only ring 0 (or IOPL) may use.

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::Insn;
use crate::fault::Fault;
use crate::seg::{attr, Descriptor};
use crate::state::{flags, Segment};

impl Cpu {
    /// Instructions for ring 0 only: #GP(0) elsewhere (and in virtual-8086 mode).
    #[inline]
    pub(crate) fn require_cpl0(&self) -> Result<(), Fault> {
        if self.protected() && (self.vm86() || self.cpl() != 0) {
            return Err(Fault::gp(0));
        }
        Ok(())
    }

    /// CLI/STI and friends: allowed when CPL <= IOPL (in virtual-8086 mode when IOPL is 3).
    #[inline]
    pub(crate) fn require_iopl(&self) -> Result<(), Fault> {
        if self.protected() && self.cpl() > self.iopl() {
            return Err(Fault::gp(0));
        }
        Ok(())
    }
}

/// Reads the 16-bit selector operand of LLDT/LTR/LAR/LSL/VERR/VERW.
fn selector_operand<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<u16, Fault> {
    if MEM {
        Ok(cpu.read_rm::<true>(bus, i, 2)? as u16)
    } else {
        // LAR/LSL name the destination first: the selector is the second register.
        let r = if i.r1 != crate::decode::NONE { i.r1 } else { i.r0 };
        Ok(cpu.reg(r, 2) as u16)
    }
}

fn not_in_real_mode(cpu: &Cpu) -> Result<(), Fault> {
    if !cpu.protected() || cpu.vm86() {
        return Err(Fault::ud());
    }
    Ok(())
}

pub(crate) fn lldt<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    not_in_real_mode(cpu)?;
    cpu.require_cpl0()?;
    let sel = selector_operand::<MEM>(cpu, bus, i)?;
    let err = u32::from(sel & 0xFFFC);
    if sel & 0xFFFC == 0 {
        cpu.s.ldtr = Segment { selector: sel, base: 0, limit: 0, attr: 0 };
        return Ok(());
    }
    if sel & 4 != 0 {
        return Err(Fault::gp(err));
    }
    let (addr, d) = cpu.read_descriptor(bus, sel)?;
    if d.is_segment() || d.system_type() != 2 {
        return Err(Fault::gp(err));
    }
    if !d.present() {
        return Err(Fault::np(err));
    }
    let mut seg = d.segment(sel);
    if cpu.long_mode() {
        seg.base |= (cpu.read_sys(bus, addr + 8, 4)? & 0xFFFF_FFFF) << 32;
    }
    cpu.s.ldtr = seg;
    Ok(())
}

pub(crate) fn ltr<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    not_in_real_mode(cpu)?;
    cpu.require_cpl0()?;
    let sel = selector_operand::<MEM>(cpu, bus, i)?;
    let err = u32::from(sel & 0xFFFC);
    if sel & 0xFFFC == 0 || sel & 4 != 0 {
        return Err(Fault::gp(err));
    }
    let (addr, d) = cpu.read_descriptor(bus, sel)?;
    let ok = !d.is_segment() && if cpu.long_mode() { d.system_type() == 9 } else { matches!(d.system_type(), 1 | 9) };
    if !ok {
        return Err(Fault::gp(err));
    }
    if !d.present() {
        return Err(Fault::np(err));
    }
    let mut seg = d.segment(sel);
    if cpu.long_mode() {
        seg.base |= (cpu.read_sys(bus, addr + 8, 4)? & 0xFFFF_FFFF) << 32;
    }
    // Mark the TSS busy, in the descriptor and in the cache.
    let b = cpu.read_sys(bus, addr + 5, 1)?;
    cpu.write_sys(bus, addr + 5, 1, b | 2)?;
    seg.attr |= 2;
    cpu.s.tr = seg;
    Ok(())
}

/// SLDT (`imm2` 0) / STR (1): a register destination gets the selector zero-extended.
pub(crate) fn store_selector<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    not_in_real_mode(cpu)?;
    let sel = u64::from(if i.imm2 == 1 { cpu.s.tr.selector } else { cpu.s.ldtr.selector });
    if MEM {
        cpu.write_rm::<true>(bus, i, 2, sel)
    } else {
        cpu.set_reg(i.r0, i.osz.max(2), sel);
        Ok(())
    }
}

/// The descriptor LAR/LSL/VERR/VERW look at, if it is visible at the current CPL and RPL
/// (`None` sets ZF = 0 and changes nothing else).
fn visible_descriptor(cpu: &mut Cpu, bus: &mut dyn Bus, sel: u16, system_ok: &[u8]) -> Result<Option<Descriptor>, Fault> {
    if sel & 0xFFFC == 0 {
        return Ok(None);
    }
    let Ok((_, d)) = cpu.read_descriptor(bus, sel) else {
        return Ok(None);
    };
    if d.is_segment() {
        if !d.conforming() && (cpu.cpl() > d.dpl() || (sel & 3) as u8 > d.dpl()) {
            return Ok(None);
        }
    } else if !system_ok.contains(&d.system_type()) || cpu.cpl() > d.dpl() || (sel & 3) as u8 > d.dpl() {
        return Ok(None);
    }
    Ok(Some(d))
}

/// LAR (`imm2` 0) / LSL (1).
pub(crate) fn lar_lsl<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    not_in_real_mode(cpu)?;
    let sel = selector_operand::<MEM>(cpu, bus, i)?;
    let lsl = i.imm2 == 1;
    let allowed: &[u8] = if cpu.long_mode() {
        if lsl {
            &[2, 9, 11]
        } else {
            &[2, 9, 11, 12]
        }
    } else if lsl {
        &[1, 2, 3, 9, 11]
    } else {
        &[1, 2, 3, 4, 5, 9, 11, 12]
    };
    match visible_descriptor(cpu, bus, sel, allowed)? {
        None => cpu.set_flag(flags::ZF, false),
        Some(d) => {
            let v = if lsl { u64::from(d.limit()) } else { (d.0 >> 32) & 0x00F0_FF00 };
            cpu.set_reg(i.r0, i.osz, v);
            cpu.set_flag(flags::ZF, true);
        }
    }
    Ok(())
}

/// VERR (`imm2` 0) / VERW (1).
pub(crate) fn verr_verw<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    not_in_real_mode(cpu)?;
    let sel = selector_operand::<MEM>(cpu, bus, i)?;
    let ok = match visible_descriptor(cpu, bus, sel, &[])? {
        Some(d) if i.imm2 == 1 => d.is_data() && d.attr() & attr::RW != 0,
        Some(d) => d.is_data() || d.attr() & attr::RW != 0,
        None => false,
    };
    cpu.set_flag(flags::ZF, ok);
    Ok(())
}

/// ARPL r/m16, r16: raises the RPL of the destination selector to the source's.
pub(crate) fn arpl<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    not_in_real_mode(cpu)?;
    let src = cpu.reg(i.r1, 2);
    let mut adjusted = false;
    cpu.modify_rm::<MEM>(bus, i, 2, |_, d| {
        if d & 3 < src & 3 {
            adjusted = true;
            Some((d & !3) | (src & 3))
        } else {
            None
        }
    })?;
    cpu.set_flag(flags::ZF, adjusted);
    Ok(())
}
