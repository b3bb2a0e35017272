//! Loads, stores and register moves: FLD/FST/FSTP (m32, m64, m80, ST(i)), FILD, FIST, FISTP,
//! FISTTP, FBLD, FBSTP, the constants (FLDZ, FLD1, FLDPI, FLDL2T, FLDL2E, FLDLG2, FLDLN2), FXCH,
//! FCMOVcc, FFREE, FFREEP, FINCSTP, FDECSTP (Intel SDM vol. 2; conversions per vol. 1, 4.8).

use super::arith::from_int;
use super::f80::{
    self, class, from_double, from_single, round, round_sig, sign, to_ieee_mem, unpack, zero, Class, Exact,
    INDEFINITE,
};
use super::{exc, kind, rc, sw};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::F80;
use iced_x86::Code;

const POP: u64 = 0x10;
/// FISTTP: truncate whatever the rounding control says.
const TRUNC: u64 = 0x20;

pub(super) fn select(i: &mut Insn, code: Code) -> Option<Handler> {
    use Code as C;
    let load = |i: &mut Insn, k: u8| {
        i.imm = u64::from(k) << 8;
        fld_mem as Handler
    };
    let store = |i: &mut Insn, k: u8, flags: u64| {
        i.imm = (u64::from(k) << 8) | flags;
        fst_mem as Handler
    };
    let constant = |i: &mut Insn, n: u64| {
        i.imm = n;
        fld_const as Handler
    };
    let fcmov = |i: &mut Insn, cc: u64| {
        i.imm = cc;
        fcmov as Handler
    };
    Some(match code {
        C::Fld_m32fp => load(i, kind::M32FP),
        C::Fld_m64fp => load(i, kind::M64FP),
        C::Fld_m80fp => load(i, kind::M80FP),
        C::Fild_m16int => load(i, kind::M16INT),
        C::Fild_m32int => load(i, kind::M32INT),
        C::Fild_m64int => load(i, kind::M64INT),
        C::Fbld_m80bcd => load(i, kind::M80BCD),
        C::Fst_m32fp => store(i, kind::M32FP, 0),
        C::Fst_m64fp => store(i, kind::M64FP, 0),
        C::Fstp_m32fp => store(i, kind::M32FP, POP),
        C::Fstp_m64fp => store(i, kind::M64FP, POP),
        C::Fstp_m80fp => store(i, kind::M80FP, POP),
        C::Fist_m16int => store(i, kind::M16INT, 0),
        C::Fist_m32int => store(i, kind::M32INT, 0),
        C::Fistp_m16int => store(i, kind::M16INT, POP),
        C::Fistp_m32int => store(i, kind::M32INT, POP),
        C::Fistp_m64int => store(i, kind::M64INT, POP),
        C::Fisttp_m16int => store(i, kind::M16INT, POP | TRUNC),
        C::Fisttp_m32int => store(i, kind::M32INT, POP | TRUNC),
        C::Fisttp_m64int => store(i, kind::M64INT, POP | TRUNC),
        C::Fbstp_m80bcd => store(i, kind::M80BCD, POP),
        C::Fld_sti => fld_st as Handler,
        C::Fst_sti => {
            i.imm = 0;
            fst_st as Handler
        }
        C::Fstp_sti | C::Fstpnce_sti | C::Fstp_sti_DFD0 | C::Fstp_sti_DFD8 => {
            i.imm = POP;
            fst_st as Handler
        }
        C::Fxch_st0_sti | C::Fxch_st0_sti_DDC8 | C::Fxch_st0_sti_DFC8 => fxch as Handler,
        C::Ffree_sti => {
            i.imm = 0;
            ffree as Handler
        }
        C::Ffreep_sti => {
            i.imm = POP;
            ffree as Handler
        }
        C::Fincstp => {
            i.imm = 1;
            fstp_adjust as Handler
        }
        C::Fdecstp => {
            i.imm = 7;
            fstp_adjust as Handler
        }
        C::Fldz => constant(i, 0),
        C::Fld1 => constant(i, 1),
        C::Fldpi => constant(i, 2),
        C::Fldl2t => constant(i, 3),
        C::Fldl2e => constant(i, 4),
        C::Fldlg2 => constant(i, 5),
        C::Fldln2 => constant(i, 6),
        // Condition codes as `Cpu::cond` numbers them: B, AE (NB), E, NE, BE, A (NBE), P (U),
        // NP (NU).
        C::Fcmovb_st0_sti => fcmov(i, 2),
        C::Fcmovnb_st0_sti => fcmov(i, 3),
        C::Fcmove_st0_sti => fcmov(i, 4),
        C::Fcmovne_st0_sti => fcmov(i, 5),
        C::Fcmovbe_st0_sti => fcmov(i, 6),
        C::Fcmovnbe_st0_sti => fcmov(i, 7),
        C::Fcmovu_st0_sti => fcmov(i, 10),
        C::Fcmovnu_st0_sti => fcmov(i, 11),
        _ => return None,
    })
}

impl Cpu {
    /// Reads a memory operand of kind `k` as a register value, with the flags its conversion
    /// raises (SNaN: IE; denormal single or double: DE).
    pub(crate) fn fpu_read_operand(&mut self, bus: &mut dyn Bus, i: &Insn, k: u8) -> Result<(F80, u16), Fault> {
        Ok(match k {
            kind::M32FP => from_single(self.fpu_read(bus, i, 0, 4)? as u32),
            kind::M64FP => from_double(self.fpu_read(bus, i, 0, 8)?),
            kind::M16INT => (from_int(i64::from(self.fpu_read(bus, i, 0, 2)? as u16 as i16)), 0),
            kind::M32INT => (from_int(i64::from(self.fpu_read(bus, i, 0, 4)? as u32 as i32)), 0),
            kind::M64INT => (from_int(self.fpu_read(bus, i, 0, 8)? as i64), 0),
            _ => {
                self.fpu_check_read(i, 10)?;
                let lo = self.fpu_read(bus, i, 0, 8)?;
                let hi = self.fpu_read(bus, i, 8, 2)? as u16;
                if k == kind::M80BCD {
                    (from_bcd(lo, hi), 0)
                } else {
                    (F80 { signif: lo, sign_exp: hi }, 0)
                }
            }
        })
    }

    /// Writes a memory operand of kind `k`: `lo` holds the first eight bytes, `hi` the rest of
    /// an 80-bit operand.
    fn fpu_write_operand(&mut self, bus: &mut dyn Bus, i: &Insn, k: u8, lo: u64, hi: u16) -> Result<(), Fault> {
        match k {
            kind::M32FP | kind::M32INT => self.fpu_write(bus, i, 0, 4, lo),
            kind::M64FP | kind::M64INT => self.fpu_write(bus, i, 0, 8, lo),
            kind::M16INT => self.fpu_write(bus, i, 0, 2, lo),
            _ => {
                self.fpu_check_write(i, 10)?;
                self.fpu_write(bus, i, 0, 8, lo)?;
                self.fpu_write(bus, i, 8, 2, u64::from(hi))
            }
        }
    }
}

/// Packed BCD: 18 digits, two per byte from the least significant, sign in bit 7 of byte 9.
/// Digits above 9 are taken at face value (the result is undefined on hardware).
pub(crate) fn from_bcd(lo: u64, hi: u16) -> F80 {
    let mut v: i64 = 0;
    for k in (0..18).rev() {
        let bits = if k < 16 { lo >> (4 * k) } else { u64::from(hi) >> (4 * (k - 16)) };
        v = v.wrapping_mul(10).wrapping_add((bits & 0xF) as i64);
    }
    let neg = hi & 0x8000 != 0;
    let r = from_int(v);
    if neg {
        F80 { sign_exp: r.sign_exp | 0x8000, ..r }
    } else {
        r
    }
}

/// The memory image of the indefinite for each kind: (low 8 bytes, high 2 bytes).
fn indefinite(k: u8) -> (u64, u16) {
    match k {
        kind::M32FP => (0xFFC0_0000, 0),
        kind::M64FP => (0xFFF8_0000_0000_0000, 0),
        kind::M16INT => (0x8000, 0),
        kind::M32INT => (0x8000_0000, 0),
        kind::M64INT => (0x8000_0000_0000_0000, 0),
        kind::M80BCD => (0xC000_0000_0000_0000, 0xFFFF),
        _ => (INDEFINITE.signif, INDEFINITE.sign_exp),
    }
}

/// A register value rounded to an integer of `bits` bits (`rc` rounding). IE when it is a
/// NaN, infinite, unsupported or out of range.
pub(crate) fn to_int(v: F80, bits: u32, rc: u8) -> Result<(i128, u16, bool), u16> {
    match class(v) {
        Class::Zero => Ok((0, 0, false)),
        Class::Normal | Class::Denormal => {
            let u = unpack(v);
            if u.exp >= 64 {
                return Err(exc::IE);
            }
            let drop = if u.exp >= 63 { 0 } else { (63 - u.exp) as u32 };
            let (k, inexact, up) = round_sig(u128::from(u.sig), false, drop, rc, u.sign);
            let limit = 1u128 << (bits - 1);
            if (u.sign && k > limit) || (!u.sign && k >= limit) {
                return Err(exc::IE);
            }
            let n = if u.sign { -(k as i128) } else { k as i128 };
            Ok((n, if inexact { exc::PE } else { 0 }, up))
        }
        _ => Err(exc::IE),
    }
}

/// FBSTP's conversion: the value rounded to an integer of at most 18 decimal digits.
fn to_bcd(v: F80, rc: u8) -> Result<(u64, u16, u16, bool), u16> {
    let (n, flags, up) = to_int(v, 64, rc)?;
    let mut m = n.unsigned_abs();
    if m >= 1_000_000_000_000_000_000 {
        return Err(exc::IE);
    }
    let (mut lo, mut hi) = (0u64, 0u16);
    for k in 0..18 {
        let d = (m % 10) as u64;
        m /= 10;
        if k < 16 {
            lo |= d << (4 * k);
        } else {
            hi |= (d as u16) << (4 * (k - 16));
        }
    }
    if sign(v) {
        hi |= 0x8000;
    }
    Ok((lo, hi, flags, up))
}

fn fld_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let k = ((i.imm >> 8) & 0xF) as u8;
    let (v, flags) = cpu.fpu_read_operand(bus, i, k)?;
    if !cpu.st_empty(7) {
        if cpu.stack_overflow() {
            cpu.fpu_push(INDEFINITE);
        }
        return Ok(());
    }
    cpu.set_cc(sw::C1, 0);
    cpu.fpu_raise(flags);
    if !cpu.fpu_unmasked(flags) {
        cpu.fpu_push(v);
    }
    Ok(())
}

fn fld_st(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    cpu.set_cc(sw::C1, 0);
    if !cpu.st_empty(7) {
        if cpu.stack_overflow() {
            cpu.fpu_push(INDEFINITE);
        }
        return Ok(());
    }
    let v = if cpu.st_empty(i.r0) {
        if !cpu.stack_underflow() {
            return Ok(());
        }
        INDEFINITE
    } else {
        cpu.st(i.r0)
    };
    cpu.fpu_push(v);
    Ok(())
}

/// The constants as 128-bit significands and exponents, rounded by the rounding control when
/// loaded (as the hardware's 66-bit internal constants round).
const CONSTANTS: [(u128, i32); 5] = [
    transcend_consts::PI,
    transcend_consts::LOG2_10,
    transcend_consts::LOG2E,
    transcend_consts::LOG10_2,
    transcend_consts::LN2,
];

use super::transcend::consts as transcend_consts;

pub(crate) fn constant(n: u64, rc: u8) -> F80 {
    match n {
        0 => zero(false),
        1 => F80 { signif: f80::INT_BIT, sign_exp: 0x3FFF },
        _ => {
            let (sig, exp) = CONSTANTS[(n - 2) as usize];
            round(Exact { sign: false, exp, sig, sticky: false }, f80::EXT, rc, exc::ALL).to_f80()
        }
    }
}

fn fld_const(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if !cpu.st_empty(7) {
        if cpu.stack_overflow() {
            cpu.fpu_push(INDEFINITE);
        }
        return Ok(());
    }
    cpu.set_cc(sw::C1, 0);
    let v = constant(i.imm, rc(cpu.fcw()));
    cpu.fpu_push(v);
    Ok(())
}

fn fst_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let k = ((i.imm >> 8) & 0xF) as u8;
    let pop = i.imm & POP != 0;
    if cpu.st_empty(0) {
        // Stack underflow: the masked response stores the indefinite.
        let unmasked = cpu.fpu_unmasked(exc::IE);
        if !unmasked {
            let (lo, hi) = indefinite(k);
            cpu.fpu_write_operand(bus, i, k, lo, hi)?;
        }
        cpu.stack_underflow();
        if !unmasked && pop {
            cpu.fpu_pop();
        }
        return Ok(());
    }
    let v = cpu.st(0);
    let fcw = cpu.fcw();
    let rcv = if i.imm & TRUNC != 0 { f80::RC_ZERO } else { rc(fcw) };
    let (lo, hi, flags, up) = match k {
        kind::M32FP => {
            let (b, f, up) = to_ieee_mem(v, f80::SINGLE, rcv, fcw & exc::ALL);
            (b, 0, f, up)
        }
        kind::M64FP => {
            let (b, f, up) = to_ieee_mem(v, f80::DOUBLE, rcv, fcw & exc::ALL);
            (b, 0, f, up)
        }
        kind::M80FP => (v.signif, v.sign_exp, 0, false),
        kind::M80BCD => match to_bcd(v, rcv) {
            Ok((lo, hi, f, up)) => (lo, hi, f, up),
            Err(f) => {
                let (lo, hi) = indefinite(k);
                (lo, hi, f, false)
            }
        },
        _ => {
            let bits = match k {
                kind::M16INT => 16,
                kind::M32INT => 32,
                _ => 64,
            };
            match to_int(v, bits, rcv) {
                Ok((n, f, up)) => (n as u64, 0, f, up),
                Err(f) => {
                    let (lo, hi) = indefinite(k);
                    (lo, hi, f, false)
                }
            }
        }
    };
    // Unmasked invalid, overflow or underflow: nothing is stored and nothing popped.
    if cpu.fpu_unmasked(flags & (exc::IE | exc::OE | exc::UE)) {
        cpu.fpu_raise(flags);
        cpu.set_cc(sw::C1, if up { sw::C1 } else { 0 });
        return Ok(());
    }
    cpu.fpu_write_operand(bus, i, k, lo, hi)?;
    cpu.fpu_raise(flags);
    cpu.set_cc(sw::C1, if up { sw::C1 } else { 0 });
    if pop {
        cpu.fpu_pop();
    }
    Ok(())
}

fn fst_st(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let pop = i.imm & POP != 0;
    if cpu.st_empty(0) {
        if cpu.stack_underflow() {
            cpu.set_st(i.r0, INDEFINITE);
            if pop {
                cpu.fpu_pop();
            }
        }
        return Ok(());
    }
    cpu.set_cc(sw::C1, 0);
    let v = cpu.st(0);
    cpu.set_st(i.r0, v);
    if pop {
        cpu.fpu_pop();
    }
    Ok(())
}

fn fxch(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let (e0, ei) = (cpu.st_empty(0), cpu.st_empty(i.r0));
    let (mut a, mut b) = (cpu.st(0), cpu.st(i.r0));
    if e0 || ei {
        if !cpu.stack_underflow() {
            return Ok(());
        }
        if e0 {
            a = INDEFINITE;
        }
        if ei {
            b = INDEFINITE;
        }
    }
    cpu.set_cc(sw::C1, 0);
    cpu.set_st(0, b);
    cpu.set_st(i.r0, a);
    Ok(())
}

fn fcmov(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) || cpu.st_empty(i.r0) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    cpu.set_cc(sw::C1, 0);
    if cpu.cond(i.imm as u8) {
        let v = cpu.st(i.r0);
        cpu.set_st(0, v);
    }
    Ok(())
}

fn ffree(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let p = cpu.st_phys(i.r0);
    cpu.set_phys_tag(p, 3);
    if i.imm & POP != 0 {
        cpu.fpu_pop();
    }
    Ok(())
}

/// FINCSTP (`imm` 1) and FDECSTP (7): TOP moves, tags stay.
fn fstp_adjust(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let t = cpu.fpu_top() + i.imm as usize;
    cpu.set_fpu_top(t);
    cpu.set_cc(sw::C1, 0);
    Ok(())
}

