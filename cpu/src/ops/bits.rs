//! Bit operations: BT, BTS, BTR, BTC, BSF, BSR, BSWAP, SETcc.

use crate::bus::Bus;
use crate::cpu::{mask, sext, Cpu};
use crate::decode::Insn;
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::flags::*;

/// Applies BT (0), BTS (1), BTR (2), BTC (3) to `v`: returns the new value if it changes.
fn apply(cpu: &mut Cpu, op: u64, v: u64, bit: u64) -> Option<u64> {
    let m = 1u64 << bit;
    cpu.set_flag(CF, v & m != 0);
    match op {
        0 => None,
        1 => Some(v | m),
        2 => Some(v & !m),
        _ => Some(v ^ m),
    }
}

pub(crate) fn bt_imm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bit = i.imm & (u64::from(size) * 8 - 1);
    let op = i.imm2;
    if op == 0 {
        let v = cpu.read_rm::<MEM>(bus, i, size)?;
        apply(cpu, 0, v, bit);
        return Ok(());
    }
    cpu.modify_rm::<MEM>(bus, i, size, |c, v| apply(c, op, v, bit))
}

/// BT* r/m, r: with a memory operand the bit offset is signed and may reach outside the
/// addressed operand.
pub(crate) fn bt_r<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bits = u64::from(size) * 8;
    let off = cpu.reg(i.r1, size);
    let op = i.imm2;
    if !MEM {
        let bit = off & (bits - 1);
        return cpu.modify_rm::<false>(bus, i, size, |c, v| apply(c, op, v, bit));
    }
    let soff = sext(off, size) as i64;
    let byte_off = (soff >> (bits.trailing_zeros())) * i64::from(size);
    let bit = (soff as u64) & (bits - 1);
    let ea = mask(cpu.ea(i).wrapping_add(byte_off as u64), i.asz);
    let lin = cpu.lin(i.seg as usize, ea, size, if op == 0 { Access::Read } else { Access::Write })?;
    let v = if op == 0 { cpu.read(bus, lin, size)? } else { cpu.read_for_write(bus, lin, size)? };
    if let Some(n) = apply(cpu, op, v, bit) {
        cpu.write(bus, lin, size, n)?;
    }
    Ok(())
}

fn read_src<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<u64, Fault> {
    if MEM {
        cpu.read_rm::<true>(bus, i, i.osz)
    } else {
        Ok(cpu.reg(i.r1, i.osz))
    }
}

pub(crate) fn bsf<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = read_src::<MEM>(cpu, bus, i)?;
    if v == 0 {
        cpu.set_flag(ZF, true);
    } else {
        cpu.set_flag(ZF, false);
        cpu.set_reg(i.r0, i.osz, u64::from(v.trailing_zeros()));
    }
    Ok(())
}

pub(crate) fn bsr<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = read_src::<MEM>(cpu, bus, i)?;
    if v == 0 {
        cpu.set_flag(ZF, true);
    } else {
        let idx = 63 - u64::from(v.leading_zeros());
        cpu.set_flag(ZF, false);
        cpu.set_reg(i.r0, i.osz, idx);
    }
    Ok(())
}

pub(crate) fn bswap(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.reg(i.r0, i.osz);
    let r = match i.osz {
        8 => v.swap_bytes(),
        4 => u64::from((v as u32).swap_bytes()),
        // BSWAP of a 16-bit register is undefined; processors clear it.
        _ => 0,
    };
    cpu.set_reg(i.r0, i.osz, r);
    Ok(())
}

pub(crate) fn setcc<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = u64::from(cpu.cond(i.imm2 as u8));
    cpu.write_rm::<MEM>(bus, i, 1, v)
}
