//! Shifts and rotates: ROL, ROR, RCL, RCR, SHL/SAL, SHR, SAR (by 1, CL or an immediate), and
//! the double shifts SHLD, SHRD. Flags follow the SDM; where it calls OF undefined (counts
//! above one) the value is what the one-bit formula gives, as most processors do.

use crate::bus::Bus;
use crate::cpu::{mask, sext, sign_bit, Cpu};
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::reg;
use iced_x86::Mnemonic;

const ROL: u64 = 0;
const ROR: u64 = 1;
const RCL: u64 = 2;
const RCR: u64 = 3;
const SHL: u64 = 4;
const SHR: u64 = 5;
const SAR: u64 = 7;

pub(crate) fn op_of(m: Mnemonic) -> u64 {
    match m {
        Mnemonic::Rol => ROL,
        Mnemonic::Ror => ROR,
        Mnemonic::Rcl => RCL,
        Mnemonic::Rcr => RCR,
        Mnemonic::Shl | Mnemonic::Sal => SHL,
        Mnemonic::Shr => SHR,
        _ => SAR,
    }
}

/// Computes one shift or rotate. Returns the result, or `None` if nothing changes.
#[inline(always)]
fn compute(cpu: &mut Cpu, op: u64, v: u64, count: u64, size: u8) -> Option<u64> {
    let bits = u64::from(size) * 8;
    let c = count & if size == 8 { 0x3F } else { 0x1F };
    if c == 0 {
        return None;
    }
    let sb = sign_bit(size);
    let v = mask(v, size);
    let cf_in = cpu.cf();
    let (r, cf, of, szp) = match op {
        ROL => {
            let r = rotate_left(v, c % bits, size);
            let cf = r & 1 != 0;
            (r, cf, (r & sb != 0) != cf, None)
        }
        ROR => {
            let r = rotate_left(v, (bits - c % bits) % bits, size);
            let cf = r & sb != 0;
            (r, cf, ((r ^ (r << 1)) & sb) != 0, None)
        }
        RCL => {
            let k = if size <= 2 { c % (bits + 1) } else { c };
            if k == 0 {
                return None;
            }
            let wide = u128::from(v) | (u128::from(cf_in) << bits);
            let total = bits as u32 + 1;
            let rot = ((wide << k) | (wide >> (u64::from(total) - k))) & ((1u128 << total) - 1);
            let r = mask(rot as u64, size);
            let cf = (rot >> bits) & 1 != 0;
            (r, cf, (r & sb != 0) != cf, None)
        }
        RCR => {
            let k = if size <= 2 { c % (bits + 1) } else { c };
            if k == 0 {
                return None;
            }
            let wide = u128::from(v) | (u128::from(cf_in) << bits);
            let total = bits as u32 + 1;
            let rot = ((wide >> k) | (wide << (u64::from(total) - k))) & ((1u128 << total) - 1);
            let r = mask(rot as u64, size);
            let cf = (rot >> bits) & 1 != 0;
            (r, cf, ((r ^ (r << 1)) & sb) != 0, None)
        }
        SHL => {
            let r = if c >= bits { 0 } else { mask(v << c, size) };
            let cf = c <= bits && (v >> (bits - c)) & 1 != 0;
            (r, cf, (r & sb != 0) != cf, Some(r))
        }
        SHR => {
            let r = if c >= bits { 0 } else { v >> c };
            let cf = c <= bits && (v >> (c - 1)) & 1 != 0;
            let of = if c == 1 { v & sb != 0 } else { ((r ^ (r << 1)) & sb) != 0 };
            (r, cf, of, Some(r))
        }
        _ => {
            let s = sext(v, size) as i64;
            let r = mask((s >> c.min(63)) as u64, size);
            let cf = (s >> (c - 1).min(63)) & 1 != 0;
            (r, cf, false, Some(r))
        }
    };
    match szp {
        // Shifts set SF, ZF, PF from the result; AF is undefined and left clear.
        Some(r) => cpu.set_lazy_result(size, r, cf, of),
        // Rotates touch only CF and OF.
        None => cpu.set_cf_of(cf, of),
    }
    Some(r)
}

/// `v` (of `size` bytes) rotated left by `k` (below the width): the host's rotate.
#[inline(always)]
fn rotate_left(v: u64, k: u64, size: u8) -> u64 {
    let k = k as u32;
    match size {
        1 => u64::from((v as u8).rotate_left(k)),
        2 => u64::from((v as u16).rotate_left(k)),
        4 => u64::from((v as u32).rotate_left(k)),
        _ => v.rotate_left(k),
    }
}

/// A 32-bit register destination is written (its upper half cleared) even when the count
/// masks to zero and nothing else changes; memory is left alone then.
#[inline(always)]
fn keep_or_write<const MEM: bool>(r: Option<u64>, v: u64, size: u8) -> Option<u64> {
    if r.is_none() && !MEM && size == 4 {
        Some(v)
    } else {
        r
    }
}

pub(crate) fn shift_imm<const OP: u64, const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let count = i.imm & 0xFF;
    cpu.modify_rm::<MEM>(bus, i, S, |c, v| keep_or_write::<MEM>(compute(c, OP, v, count, S), v, S))
}

pub(crate) fn shift_cl<const OP: u64, const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let count = cpu.s.gpr[reg::RCX] & 0xFF;
    cpu.modify_rm::<MEM>(bus, i, S, |c, v| keep_or_write::<MEM>(compute(c, OP, v, count, S), v, S))
}

/// The handler for shift or rotate `op` by an immediate (or 1) or by CL, for a register or
/// memory operand of `size` bytes.
pub(crate) fn handler(op: u64, by_cl: bool, mem: bool, size: u8) -> Handler {
    macro_rules! ops {
        ($f:ident, $mem:tt) => {
            match op {
                ROL => crate::decode::sized!(size, $f, $mem; ROL),
                ROR => crate::decode::sized!(size, $f, $mem; ROR),
                RCL => crate::decode::sized!(size, $f, $mem; RCL),
                RCR => crate::decode::sized!(size, $f, $mem; RCR),
                SHL => crate::decode::sized!(size, $f, $mem; SHL),
                SHR => crate::decode::sized!(size, $f, $mem; SHR),
                _ => crate::decode::sized!(size, $f, $mem; SAR),
            }
        };
    }
    match (by_cl, mem) {
        (false, false) => ops!(shift_imm, false),
        (false, true) => ops!(shift_imm, true),
        (true, false) => ops!(shift_cl, false),
        (true, true) => ops!(shift_cl, true),
    }
}

/// SHLD (`right` false) or SHRD by `count`.
fn double(cpu: &mut Cpu, dst: u64, src: u64, count: u64, size: u8, right: bool) -> Option<u64> {
    let c = count & if size == 8 { 0x3F } else { 0x1F };
    if c == 0 {
        return None;
    }
    let bits = u64::from(size) * 8;
    let sb = sign_bit(size);
    let (dst, src) = (mask(dst, size), mask(src, size));
    // Work on the 2*bits-wide concatenation; counts beyond the width (16-bit operands) keep
    // pulling bits from the concatenation, as Intel processors do.
    let (r, cf) = if !right {
        let wide = (u128::from(dst) << bits) | u128::from(src);
        let wide = if size == 2 { wide | (u128::from(dst) << 32) } else { wide };
        let shifted = wide << c;
        (mask((shifted >> bits) as u64, size), (wide >> (2 * bits - c).min(127)) & 1 != 0 && c <= 2 * bits)
    } else {
        let wide = (u128::from(src) << bits) | u128::from(dst);
        let wide = if size == 2 { wide | (u128::from(src) << 32) } else { wide };
        (mask((wide >> c) as u64, size), (wide >> (c - 1)) & 1 != 0)
    };
    let of = (r ^ dst) & sb != 0;
    cpu.set_lazy_result(size, r, cf, of);
    Some(r)
}

pub(crate) fn shxd_imm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let src = cpu.reg(i.r1, i.osz);
    let (count, size, right) = (i.imm & 0xFF, i.osz, i.imm2 != 0);
    cpu.modify_rm::<MEM>(bus, i, size, |c, v| keep_or_write::<MEM>(double(c, v, src, count, size, right), v, size))
}

pub(crate) fn shxd_cl<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let src = cpu.reg(i.r1, i.osz);
    let (count, size, right) = (cpu.s.gpr[reg::RCX] & 0xFF, i.osz, i.imm2 != 0);
    cpu.modify_rm::<MEM>(bus, i, size, |c, v| keep_or_write::<MEM>(double(c, v, src, count, size, right), v, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::flags::*;

    #[test]
    fn rotate_through_carry_8bit() {
        let mut c = Cpu::new();
        c.set_flag(CF, true);
        assert_eq!(compute(&mut c, RCL, 0x80, 1, 1), Some(0x01));
        assert!(c.cf());
        assert_eq!(compute(&mut c, RCR, 0x01, 1, 1), Some(0x80));
        assert!(c.cf());
        // RCL by 9 on a byte is a full turn through CF: nothing changes.
        assert_eq!(compute(&mut c, RCL, 0x5A, 9, 1), None);
    }

    #[test]
    fn shifts_set_carry_from_last_bit_out() {
        let mut c = Cpu::new();
        assert_eq!(compute(&mut c, SHL, 0x81, 1, 1), Some(0x02));
        assert!(c.cf() && c.of());
        // -128 >> 7: the last bit out is bit 6, clear.
        assert_eq!(compute(&mut c, SAR, 0x80, 7, 1), Some(0xFF));
        assert!(!c.cf());
        assert_eq!(compute(&mut c, SAR, 0xC0, 7, 1), Some(0xFF));
        assert!(c.cf());
        assert_eq!(compute(&mut c, SHR, 0x8000, 16, 2), Some(0));
        assert!(c.cf() && c.zf());
    }

    #[test]
    fn double_shifts() {
        let mut c = Cpu::new();
        assert_eq!(double(&mut c, 0x1234, 0xABCD, 4, 2, false), Some(0x234A));
        assert_eq!(double(&mut c, 0x1234, 0xABCD, 4, 2, true), Some(0xD123));
        assert_eq!(double(&mut c, 0x8000_0000, 0, 1, 4, false), Some(0));
        assert!(c.cf() && c.zf());
    }
}
