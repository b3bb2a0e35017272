//! MUL, IMUL (one, two and three operands), DIV, IDIV.

use crate::bus::Bus;
use crate::cpu::{mask, sext, Cpu};
use crate::decode::Insn;
use crate::fault::Fault;
use crate::state::reg;

const RAX: u8 = reg::RAX as u8;
const RDX: u8 = reg::RDX as u8;

/// Flags after a multiplication: CF = OF = `overflow`; SF, ZF, PF from the low half as
/// current processors leave them; AF clear.
#[inline]
fn mul_flags(cpu: &mut Cpu, low: u64, size: u8, overflow: bool) {
    cpu.set_lazy_result(size, low, overflow, overflow);
}

/// Stores a double-width product or dividend pair: AX for bytes, DX:AX / EDX:EAX / RDX:RAX.
fn store_pair(cpu: &mut Cpu, size: u8, lo: u64, hi: u64) {
    if size == 1 {
        cpu.set_reg(RAX, 2, (lo & 0xFF) | ((hi & 0xFF) << 8));
    } else {
        cpu.set_reg(RAX, size, lo);
        cpu.set_reg(RDX, size, hi);
    }
}

fn load_pair(cpu: &Cpu, size: u8) -> u128 {
    if size == 1 {
        u128::from(cpu.reg(RAX, 2))
    } else {
        u128::from(cpu.reg(RAX, size)) | (u128::from(cpu.reg(RDX, size)) << (u32::from(size) * 8))
    }
}

pub(crate) fn mul<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bits = u32::from(size) * 8;
    let src = cpu.read_rm::<MEM>(bus, i, size)?;
    let p = u128::from(cpu.reg(RAX, size)) * u128::from(src);
    let (lo, hi) = (mask(p as u64, size), mask((p >> bits) as u64, size));
    store_pair(cpu, size, lo, hi);
    mul_flags(cpu, lo, size, hi != 0);
    Ok(())
}

pub(crate) fn imul1<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bits = u32::from(size) * 8;
    let src = sext(cpu.read_rm::<MEM>(bus, i, size)?, size) as i64 as i128;
    let a = sext(cpu.reg(RAX, size), size) as i64 as i128;
    let p = a * src;
    let (lo, hi) = (mask(p as u64, size), mask((p >> bits) as u64, size));
    store_pair(cpu, size, lo, hi);
    mul_flags(cpu, lo, size, sext(lo, size) as i64 as i128 != p);
    Ok(())
}

/// `a * b` truncated to `S` bytes, with CF = OF = "the signed product did not fit".
#[inline(always)]
fn imul_trunc<const S: u8>(cpu: &mut Cpu, a: u64, b: u64) -> u64 {
    let (lo, overflow) = match S {
        1 => {
            let (r, o) = (a as i8).overflowing_mul(b as i8);
            (u64::from(r as u8), o)
        }
        2 => {
            let (r, o) = (a as i16).overflowing_mul(b as i16);
            (u64::from(r as u16), o)
        }
        4 => {
            let (r, o) = (a as i32).overflowing_mul(b as i32);
            (u64::from(r as u32), o)
        }
        _ => {
            let (r, o) = (a as i64).overflowing_mul(b as i64);
            (r as u64, o)
        }
    };
    mul_flags(cpu, lo, S, overflow);
    lo
}

/// IMUL r, r/m.
pub(crate) fn imul2<const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let b = if MEM { cpu.read_rm::<true>(bus, i, S)? } else { cpu.reg(i.r1, S) };
    let a = cpu.reg(i.r0, S);
    let r = imul_trunc::<S>(cpu, a, b);
    cpu.set_reg(i.r0, S, r);
    Ok(())
}

/// IMUL r, r/m, imm.
pub(crate) fn imul3<const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let a = if MEM { cpu.read_rm::<true>(bus, i, S)? } else { cpu.reg(i.r1, S) };
    let r = imul_trunc::<S>(cpu, a, i.imm);
    cpu.set_reg(i.r0, S, r);
    Ok(())
}

pub(crate) fn div<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let d = u128::from(cpu.read_rm::<MEM>(bus, i, size)?);
    if d == 0 {
        return Err(Fault::de());
    }
    let n = load_pair(cpu, size);
    let q = n / d;
    if q > u128::from(mask(u64::MAX, size)) {
        return Err(Fault::de());
    }
    store_pair(cpu, size, q as u64, (n % d) as u64);
    Ok(())
}

pub(crate) fn idiv<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let bits = u32::from(size) * 8;
    let d = sext(cpu.read_rm::<MEM>(bus, i, size)?, size) as i64 as i128;
    if d == 0 {
        return Err(Fault::de());
    }
    let raw = load_pair(cpu, size);
    // Sign-extend the 2*bits-wide dividend.
    let n = ((raw << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
    let q = n.wrapping_div(d);
    let r = n.wrapping_rem(d);
    let lim = 1i128 << (bits - 1);
    if q >= lim || q < -lim {
        return Err(Fault::de());
    }
    store_pair(cpu, size, mask(q as u64, size), mask(r as u64, size));
    Ok(())
}
