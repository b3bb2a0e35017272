//! Data movement: MOV (general, immediate and segment forms), MOVZX, MOVSX, LEA, XCHG, XLAT,
//! LDS/LES/LSS/LFS/LGS, CBW/CWDE/CDQE, CWD/CDQ/CQO, CMOVcc.

use crate::bus::Bus;
use crate::cpu::{mask, sext, Cpu};
use crate::decode::Insn;
use crate::fault::Fault;
use crate::mem::{read_host, write_host, Access};
use crate::state::{reg, sreg};

/// MOV r/m, r; `K`: how the memory operand's address is formed (`ops::ea_kind`).
pub(crate) fn mov_rm_r<const K: u8, const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.reg(i.r1, S);
    if MEM {
        return match cpu.mem_host_k::<K>(i, S, Access::Write) {
            Ok(h) => {
                write_host(h, S, v);
                Ok(())
            }
            Err(lin) => mov_rm_r_slow::<S>(cpu, bus, i, lin),
        };
    }
    cpu.write_rm::<MEM>(bus, i, S, v)
}

#[inline(never)]
fn mov_rm_r_slow<const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>) -> Result<(), Fault> {
    let v = cpu.reg(i.r1, S);
    let lin = cpu.mem_lin_from(i, lin, S, Access::Write)?;
    cpu.write(bus, lin, S, v)
}

/// MOV r, m; `K`: how the memory operand's address is formed (`ops::ea_kind`).
pub(crate) fn mov_r_m<const K: u8, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    match cpu.mem_host_k::<K>(i, S, Access::Read) {
        Ok(h) => {
            let v = read_host(h, S);
            cpu.set_reg(i.r0, S, v);
            Ok(())
        }
        Err(lin) => mov_r_m_slow::<S>(cpu, bus, i, lin),
    }
}

#[inline(never)]
fn mov_r_m_slow<const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>) -> Result<(), Fault> {
    let lin = cpu.mem_lin_from(i, lin, S, Access::Read)?;
    let v = cpu.read(bus, lin, S)?;
    cpu.set_reg(i.r0, S, v);
    Ok(())
}

pub(crate) fn mov_rm_imm<const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if MEM {
        return match cpu.mem_host(i, S, Access::Write) {
            Ok(h) => {
                write_host(h, S, mask(i.imm, S));
                Ok(())
            }
            Err(lin) => mov_rm_imm_slow::<S>(cpu, bus, i, lin),
        };
    }
    cpu.write_rm::<MEM>(bus, i, S, mask(i.imm, S))
}

#[inline(never)]
fn mov_rm_imm_slow<const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>) -> Result<(), Fault> {
    let lin = cpu.mem_lin_from(i, lin, S, Access::Write)?;
    cpu.write(bus, lin, S, mask(i.imm, S))
}

/// MOV Sreg, r/m16. MOV CS is undefined.
pub(crate) fn mov_sreg_rm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if i.r0 as usize == sreg::CS || i.r0 > 5 {
        return Err(Fault::ud());
    }
    let sel = if MEM {
        let lin = cpu.mem_lin(i, 2, Access::Read)?;
        cpu.read(bus, lin, 2)?
    } else {
        cpu.reg(i.r1, 2)
    };
    cpu.load_seg(bus, i.r0 as usize, sel as u16)?;
    if i.r0 as usize == sreg::SS {
        cpu.s.pending.interrupt_shadow = true;
        cpu.attention = true;
        cpu.ss_shadow = true;
    }
    Ok(())
}

/// MOV r/m, Sreg: a register destination gets the selector zero-extended to the operand
/// size; a memory destination is always written as 16 bits.
pub(crate) fn mov_rm_sreg<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    if i.r1 > 5 {
        return Err(Fault::ud());
    }
    let sel = u64::from(cpu.s.seg[i.r1 as usize].selector);
    if MEM {
        cpu.write_rm::<true>(bus, i, 2, sel)
    } else {
        cpu.set_reg(i.r0, i.osz.max(2), sel);
        Ok(())
    }
}

/// Reads the source of MOVZX/MOVSX/CMOV: register `r1` or memory.
fn read_src<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, size: u8) -> Result<u64, Fault> {
    if MEM {
        let lin = cpu.mem_lin(i, size, Access::Read)?;
        cpu.read(bus, lin, size)
    } else {
        Ok(cpu.reg(i.r1, size))
    }
}

pub(crate) fn movzx<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = read_src::<MEM>(cpu, bus, i, i.imm2 as u8)?;
    cpu.set_reg(i.r0, i.osz, v);
    Ok(())
}

pub(crate) fn movsx<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = read_src::<MEM>(cpu, bus, i, i.imm2 as u8)?;
    cpu.set_reg(i.r0, i.osz, sext(v, i.imm2 as u8));
    Ok(())
}

pub(crate) fn cmov<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = read_src::<MEM>(cpu, bus, i, i.osz)?;
    if cpu.cond(i.imm2 as u8) {
        cpu.set_reg(i.r0, i.osz, v);
    } else if i.osz == 4 {
        // A 32-bit destination is written (upper half cleared) even when the move is not made.
        let old = cpu.reg(i.r0, 4);
        cpu.set_reg(i.r0, 4, old);
    }
    Ok(())
}

pub(crate) fn lea<const S: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let a = cpu.ea(i);
    cpu.set_reg(i.r0, S, a);
    Ok(())
}

pub(crate) fn xchg<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let b = cpu.reg(i.r1, size);
    if MEM {
        let mut old = 0;
        cpu.modify_rm::<true>(bus, i, size, |_, a| {
            old = a;
            Some(b)
        })?;
        cpu.set_reg(i.r1, size, old);
    } else {
        let a = cpu.reg(i.r0, size);
        cpu.set_reg(i.r0, size, b);
        cpu.set_reg(i.r1, size, a);
    }
    Ok(())
}

/// XLAT: AL = [seg:(E)BX + AL].
pub(crate) fn xlat(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let off = mask(cpu.s.gpr[reg::RBX].wrapping_add(cpu.s.gpr[reg::RAX] & 0xFF), i.asz);
    let v = cpu.read_seg(bus, i.seg as usize, off, 1)?;
    cpu.set_reg(reg::RAX as u8, 1, v);
    Ok(())
}

/// LDS/LES/LSS/LFS/LGS r, m16:16/m16:32: `r1` names the segment register.
pub(crate) fn load_far_pointer(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let off_ea = cpu.ea(i);
    let off = cpu.read_seg(bus, i.seg as usize, off_ea, i.osz)?;
    let sel = cpu.read_seg(bus, i.seg as usize, mask(off_ea.wrapping_add(u64::from(i.osz)), i.asz), 2)?;
    cpu.load_seg(bus, i.r1 as usize, sel as u16)?;
    cpu.set_reg(i.r0, i.osz, off);
    // LSS loads SS and the stack pointer together: unlike MOV SS and POP SS it opens no
    // interrupt shadow (SDM vol. 2, MOV and POP; Bochs does the same).
    Ok(())
}

pub(crate) fn cbw(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let half = i.osz / 2;
    let v = sext(cpu.reg(reg::RAX as u8, half), half);
    cpu.set_reg(reg::RAX as u8, i.osz, v);
    Ok(())
}

pub(crate) fn cwd(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = sext(cpu.reg(reg::RAX as u8, i.osz), i.osz);
    let hi = if v >> 63 != 0 { u64::MAX } else { 0 };
    cpu.set_reg(reg::RDX as u8, i.osz, hi);
    Ok(())
}
