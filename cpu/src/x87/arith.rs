//! Arithmetic: FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR in their register, popping, real and integer
//! memory forms, FSQRT, FPREM, FPREM1, FRNDINT, FSCALE, FXTRACT, FCHS, FABS (Intel SDM vol. 2
//! instruction pages; special-value tables there).

use super::f80::{
    self, class, denormal_flag, inf, is_nan, propagate_nan1, propagate_nan2, round_sig, sign, to_w,
    unpack, with_sign, zero, Class, Exact, Unpacked, INDEFINITE,
};
use super::{exc, kind, rc, round_full, round_pc, sw, Outcome};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::F80;
use iced_x86::Code;
use rustc_apfloat::{Float, Round};

pub(crate) const ADD: u8 = 0;
pub(crate) const MUL: u8 = 1;
pub(crate) const SUB: u8 = 2;
pub(crate) const SUBR: u8 = 3;
pub(crate) const DIV: u8 = 4;
pub(crate) const DIVR: u8 = 5;
/// `Insn::imm` flags of the register forms.
const POP: u64 = 0x10;
const TO_STI: u64 = 0x20;

pub(super) fn select(i: &mut Insn, code: Code) -> Option<Handler> {
    use Code as C;
    let reg = |i: &mut Insn, op: u8, flags: u64| {
        i.imm = u64::from(op) | flags;
        arith_st as Handler
    };
    let mem = |i: &mut Insn, op: u8, k: u8| {
        i.imm = u64::from(op) | (u64::from(k) << 8);
        arith_mem as Handler
    };
    Some(match code {
        C::Fadd_st0_sti => reg(i, ADD, 0),
        C::Fmul_st0_sti => reg(i, MUL, 0),
        C::Fsub_st0_sti => reg(i, SUB, 0),
        C::Fsubr_st0_sti => reg(i, SUBR, 0),
        C::Fdiv_st0_sti => reg(i, DIV, 0),
        C::Fdivr_st0_sti => reg(i, DIVR, 0),
        C::Fadd_sti_st0 => reg(i, ADD, TO_STI),
        C::Fmul_sti_st0 => reg(i, MUL, TO_STI),
        C::Fsub_sti_st0 => reg(i, SUB, TO_STI),
        C::Fsubr_sti_st0 => reg(i, SUBR, TO_STI),
        C::Fdiv_sti_st0 => reg(i, DIV, TO_STI),
        C::Fdivr_sti_st0 => reg(i, DIVR, TO_STI),
        C::Faddp_sti_st0 => reg(i, ADD, TO_STI | POP),
        C::Fmulp_sti_st0 => reg(i, MUL, TO_STI | POP),
        C::Fsubp_sti_st0 => reg(i, SUB, TO_STI | POP),
        C::Fsubrp_sti_st0 => reg(i, SUBR, TO_STI | POP),
        C::Fdivp_sti_st0 => reg(i, DIV, TO_STI | POP),
        C::Fdivrp_sti_st0 => reg(i, DIVR, TO_STI | POP),
        C::Fadd_m32fp => mem(i, ADD, kind::M32FP),
        C::Fmul_m32fp => mem(i, MUL, kind::M32FP),
        C::Fsub_m32fp => mem(i, SUB, kind::M32FP),
        C::Fsubr_m32fp => mem(i, SUBR, kind::M32FP),
        C::Fdiv_m32fp => mem(i, DIV, kind::M32FP),
        C::Fdivr_m32fp => mem(i, DIVR, kind::M32FP),
        C::Fadd_m64fp => mem(i, ADD, kind::M64FP),
        C::Fmul_m64fp => mem(i, MUL, kind::M64FP),
        C::Fsub_m64fp => mem(i, SUB, kind::M64FP),
        C::Fsubr_m64fp => mem(i, SUBR, kind::M64FP),
        C::Fdiv_m64fp => mem(i, DIV, kind::M64FP),
        C::Fdivr_m64fp => mem(i, DIVR, kind::M64FP),
        C::Fiadd_m16int => mem(i, ADD, kind::M16INT),
        C::Fimul_m16int => mem(i, MUL, kind::M16INT),
        C::Fisub_m16int => mem(i, SUB, kind::M16INT),
        C::Fisubr_m16int => mem(i, SUBR, kind::M16INT),
        C::Fidiv_m16int => mem(i, DIV, kind::M16INT),
        C::Fidivr_m16int => mem(i, DIVR, kind::M16INT),
        C::Fiadd_m32int => mem(i, ADD, kind::M32INT),
        C::Fimul_m32int => mem(i, MUL, kind::M32INT),
        C::Fisub_m32int => mem(i, SUB, kind::M32INT),
        C::Fisubr_m32int => mem(i, SUBR, kind::M32INT),
        C::Fidiv_m32int => mem(i, DIV, kind::M32INT),
        C::Fidivr_m32int => mem(i, DIVR, kind::M32INT),
        C::Fsqrt => fsqrt as Handler,
        C::Fprem => {
            i.imm = 0;
            fprem as Handler
        }
        C::Fprem1 => {
            i.imm = 1;
            fprem as Handler
        }
        C::Frndint => frndint as Handler,
        C::Fscale => fscale as Handler,
        C::Fxtract => fxtract as Handler,
        C::Fchs => {
            i.imm = 0;
            fsign as Handler
        }
        C::Fabs => {
            i.imm = 1;
            fsign as Handler
        }
        _ => return None,
    })
}

/// `dst OP src` for one of the six operations (the reversed ones swap the operands).
pub(crate) fn compute(dst: F80, src: F80, op: u8, fcw: u16) -> Outcome {
    match op {
        ADD => binop(dst, src, ADD, fcw),
        MUL => binop(dst, src, MUL, fcw),
        SUB => binop(dst, src, SUB, fcw),
        SUBR => binop(src, dst, SUB, fcw),
        DIV => binop(dst, src, DIV, fcw),
        _ => binop(src, dst, DIV, fcw),
    }
}

/// a + b, a − b, a × b or a ÷ b, rounded to a register under precision and rounding control.
pub(crate) fn binop(a: F80, b: F80, op: u8, fcw: u16) -> Outcome {
    let (ca, cb) = (class(a), class(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Outcome::invalid().gate(fcw);
    }
    if is_nan(ca) || is_nan(cb) {
        let (v, f) = propagate_nan2(a, b);
        return Outcome::exact(v, f).gate(fcw);
    }
    let de = denormal_flag(&[ca, cb]);
    let (sa, sb) = (sign(a), sign(b));
    let toward_zero = Round::TowardZero;
    let finish = |r: rustc_apfloat::StatusAnd<f80::W>| match Exact::from_w(r.value, f80::inexact(r.status)) {
        Some(x) => round_pc(x, fcw, de),
        // Exact cancellation: +0, or −0 when rounding down.
        None => Outcome::exact(zero(rc(fcw) == f80::RC_DOWN), de),
    };
    let mut o = match op {
        ADD | SUB => {
            let sb = sb ^ (op == SUB);
            match (ca, cb) {
                (Class::Inf, Class::Inf) if sa != sb => Outcome::invalid(),
                (Class::Inf, _) => Outcome::exact(inf(sa), de),
                (_, Class::Inf) => Outcome::exact(inf(sb), de),
                (Class::Zero, Class::Zero) => Outcome::exact(zero(if sa == sb { sa } else { rc(fcw) == f80::RC_DOWN }), 0),
                (Class::Zero, _) => round_pc(Exact::from_unpacked(Unpacked { sign: sb, ..unpack(b) }), fcw, de),
                (_, Class::Zero) => round_pc(Exact::from_unpacked(unpack(a)), fcw, de),
                _ => {
                    let ub = Unpacked { sign: sb, ..unpack(b) };
                    finish(to_w(unpack(a)).add_r(to_w(ub), toward_zero))
                }
            }
        }
        MUL => {
            let s = sa ^ sb;
            match (ca, cb) {
                (Class::Inf, Class::Zero) | (Class::Zero, Class::Inf) => Outcome::invalid(),
                (Class::Inf, _) | (_, Class::Inf) => Outcome::exact(inf(s), de),
                (Class::Zero, _) | (_, Class::Zero) => Outcome::exact(zero(s), de),
                _ => finish(to_w(unpack(a)).mul_r(to_w(unpack(b)), toward_zero)),
            }
        }
        _ => {
            let s = sa ^ sb;
            match (ca, cb) {
                (Class::Inf, Class::Inf) | (Class::Zero, Class::Zero) => Outcome::invalid(),
                (Class::Inf, _) => Outcome::exact(inf(s), de),
                (_, Class::Inf) => Outcome::exact(zero(s), de),
                (_, Class::Zero) => Outcome::exact(inf(s), de | exc::ZE),
                (Class::Zero, _) => Outcome::exact(zero(s), de),
                _ => finish(to_w(unpack(a)).div_r(to_w(unpack(b)), toward_zero)),
            }
        }
    };
    o.flags |= de;
    o.gate(fcw)
}

/// An integer as a register value (exact).
pub(crate) fn from_int(v: i64) -> F80 {
    if v == 0 {
        return zero(false);
    }
    let m = v.unsigned_abs();
    let lz = m.leading_zeros();
    F80 { signif: m << lz, sign_exp: (if v < 0 { 0x8000 } else { 0 }) | (16383 + 63 - lz) as u16 }
}

/// Register forms: ST(0) OP ST(i) into ST(0), or ST(i) OP ST(0) into ST(i), popping or not.
fn arith_st(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let op = (i.imm & 7) as u8;
    let pop = i.imm & POP != 0;
    let (d, s) = if i.imm & TO_STI != 0 { (i.r0, 0) } else { (0, i.r0) };
    if cpu.st_empty(d) || cpu.st_empty(s) {
        if cpu.stack_underflow() {
            cpu.set_st(d, INDEFINITE);
            if pop {
                cpu.fpu_pop();
            }
        }
        return Ok(());
    }
    let o = compute(cpu.st(d), cpu.st(s), op, cpu.fcw());
    cpu.fpu_store_outcome(o, d, pop);
    Ok(())
}

/// Memory forms: ST(0) OP m32fp/m64fp/m16int/m32int into ST(0).
fn arith_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let op = (i.imm & 7) as u8;
    let k = ((i.imm >> 8) & 0xF) as u8;
    let (src, mflags) = cpu.fpu_read_operand(bus, i, k)?;
    if cpu.st_empty(0) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let fcw = cpu.fcw();
    let mut o = compute(cpu.st(0), src, op, fcw);
    o.flags |= mflags;
    cpu.fpu_store_outcome(o.gate(fcw), 0, false);
    Ok(())
}

/// Runs `f` on ST(0) and stores its outcome there (stack underflow: the indefinite).
fn unary(cpu: &mut Cpu, f: impl FnOnce(F80, u16) -> Outcome) {
    if cpu.st_empty(0) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return;
    }
    let o = f(cpu.st(0), cpu.fcw());
    cpu.fpu_store_outcome(o, 0, false);
}

fn fsqrt(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    unary(cpu, sqrt);
    Ok(())
}

pub(crate) fn sqrt(a: F80, fcw: u16) -> Outcome {
    let c = class(a);
    let o = match c {
        Class::Unsupported => Outcome::invalid(),
        Class::QNaN | Class::SNaN => {
            let (v, f) = propagate_nan1(a);
            Outcome::exact(v, f)
        }
        Class::Zero => Outcome::exact(a, 0),
        _ if sign(a) => Outcome::invalid(),
        Class::Inf => Outcome::exact(a, 0),
        _ => {
            let u = unpack(a);
            round_pc(sqrt_exact(u), fcw, denormal_flag(&[c]))
        }
    };
    o.gate(fcw)
}

/// The square root of a positive finite value, to 69 bits plus a sticky bit (digit by digit).
pub(crate) fn sqrt_exact(u: Unpacked) -> Exact {
    let mut e2 = u.exp - 63;
    let mut m = u128::from(u.sig);
    if e2 & 1 != 0 {
        m <<= 1;
        e2 -= 1;
    }
    const EXTRA_PAIRS: i32 = 36;
    let (mut rem, mut root) = (0u128, 0u128);
    for j in (0..33 + EXTRA_PAIRS).rev() {
        let pair = if j >= EXTRA_PAIRS { (m >> (2 * (j - EXTRA_PAIRS))) & 3 } else { 0 };
        rem = (rem << 2) | pair;
        let trial = (root << 2) | 1;
        root <<= 1;
        if rem >= trial {
            rem -= trial;
            root |= 1;
        }
    }
    Exact::normalize(false, e2 / 2 - EXTRA_PAIRS + 127, root, rem != 0)
}

fn fprem(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) || cpu.st_empty(1) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let fcw = cpu.fcw();
    let (o, cc) = remainder(cpu.st(0), cpu.st(1), i.imm == 1, fcw);
    if o.value.is_some() {
        cpu.set_cc(sw::C0 | sw::C2 | sw::C3, cc);
    }
    cpu.fpu_store_outcome(o, 0, false);
    if o.value.is_some() {
        cpu.set_cc(sw::C1, cc);
    }
    Ok(())
}

/// FPREM (quotient truncated) or FPREM1 (IEEE: quotient rounded to nearest) of a by b: the
/// (partial) remainder and the condition codes: C2 for an incomplete reduction, else the low
/// quotient bits in C0 (Q2), C3 (Q1), C1 (Q0). An exponent difference of 64 or more is reduced
/// by 32 to 63 per execution (as Bochs, following hardware: 32 | (difference mod 32)).
pub(crate) fn remainder(a: F80, b: F80, ieee: bool, fcw: u16) -> (Outcome, u16) {
    let (ca, cb) = (class(a), class(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return (Outcome::invalid().gate(fcw), 0);
    }
    if is_nan(ca) || is_nan(cb) {
        let (v, f) = propagate_nan2(a, b);
        return (Outcome::exact(v, f).gate(fcw), 0);
    }
    if ca == Class::Inf || cb == Class::Zero {
        return (Outcome::invalid().gate(fcw), 0);
    }
    let de = denormal_flag(&[ca, cb]);
    if cb == Class::Inf || ca == Class::Zero {
        return (Outcome::exact(a, de).gate(fcw), 0);
    }
    let (ua, ub) = (unpack(a), unpack(b));
    let d = ua.exp - ub.exp;
    let cc_of = |q: u64| {
        (if q & 4 != 0 { sw::C0 } else { 0 }) | (if q & 2 != 0 { sw::C3 } else { 0 }) | (if q & 1 != 0 { sw::C1 } else { 0 })
    };
    let make = |sign: bool, r: u64, exp: i32| -> Outcome {
        if r == 0 {
            Outcome::exact(zero(sign), de)
        } else {
            round_full(Exact::normalize(sign, exp + 64, u128::from(r), false), fcw, de)
        }
    };
    if d >= 64 {
        let n = ((d & 31) | 32) as u32;
        let (_, r) = long_div(ua.sig, ub.sig, n);
        return (make(ua.sign, r, ua.exp - n as i32).gate(fcw), sw::C2);
    }
    if d < 0 {
        if !ieee || d < -1 || ua.sig <= ub.sig {
            return (Outcome::exact(a, de).gate(fcw), 0);
        }
        // |a| > |b|/2: the quotient rounds to 1 and the remainder is |b| − |a|.
        let r = (u128::from(ub.sig) << 1) - u128::from(ua.sig);
        let o = round_full(Exact::normalize(!ua.sign, ua.exp + 64, r, false), fcw, de);
        return (o.gate(fcw), sw::C1);
    }
    let (mut q, mut r) = long_div(ua.sig, ub.sig, d as u32);
    let mut s = ua.sign;
    if ieee {
        let twice = u128::from(r) << 1;
        let half_b = u128::from(ub.sig);
        if twice > half_b || (twice == half_b && q & 1 == 1) {
            r = ub.sig - r;
            q = q.wrapping_add(1);
            s = !s;
        }
    }
    (make(s, r, ub.exp).gate(fcw), cc_of(q))
}

/// (a << shift) divided by b, both with bit 63 set: the low 64 quotient bits and the remainder.
fn long_div(a: u64, b: u64, shift: u32) -> (u64, u64) {
    let b = u128::from(b);
    let mut r = u128::from(a);
    let mut q = 0u64;
    if r >= b {
        r -= b;
        q = 1;
    }
    for _ in 0..shift {
        r <<= 1;
        q = q.wrapping_shl(1);
        if r >= b {
            r -= b;
            q |= 1;
        }
    }
    (q, r as u64)
}

fn frndint(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    unary(cpu, round_to_int);
    Ok(())
}

/// FRNDINT: to an integer by the rounding control (precision control does not apply).
pub(crate) fn round_to_int(a: F80, fcw: u16) -> Outcome {
    let c = class(a);
    let o = match c {
        Class::Unsupported => Outcome::invalid(),
        Class::QNaN | Class::SNaN => {
            let (v, f) = propagate_nan1(a);
            Outcome::exact(v, f)
        }
        Class::Zero | Class::Inf => Outcome::exact(a, 0),
        _ => {
            let de = denormal_flag(&[c]);
            let u = unpack(a);
            if u.exp >= 63 {
                Outcome::exact(a, de)
            } else {
                let (k, inexact, up) = round_sig(u128::from(u.sig), false, (63 - u.exp) as u32, rc(fcw), u.sign);
                let flags = de | if inexact { exc::PE } else { 0 };
                let v = if k == 0 { zero(u.sign) } else { Exact::normalize(u.sign, 127, k, false).to_f80_exact() };
                Outcome { value: Some(v), flags, up }
            }
        }
    };
    o.gate(fcw)
}

impl Exact {
    /// An exact value known to fit a register as a normal number.
    pub(crate) fn to_f80_exact(self) -> F80 {
        F80 {
            signif: (self.sig >> 64) as u64,
            sign_exp: (if self.sign { 0x8000 } else { 0 }) | (self.exp + 16383).clamp(1, 0x7FFE) as u16,
        }
    }
}

fn fscale(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) || cpu.st_empty(1) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let o = scale(cpu.st(0), cpu.st(1), cpu.fcw());
    cpu.fpu_store_outcome(o, 0, false);
    Ok(())
}

/// FSCALE: a × 2^trunc(b).
pub(crate) fn scale(a: F80, b: F80, fcw: u16) -> Outcome {
    let (ca, cb) = (class(a), class(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Outcome::invalid().gate(fcw);
    }
    if is_nan(ca) || is_nan(cb) {
        let (v, f) = propagate_nan2(a, b);
        return Outcome::exact(v, f).gate(fcw);
    }
    let de = denormal_flag(&[ca, cb]);
    let sa = sign(a);
    let o = match (ca, cb) {
        (Class::Zero, Class::Inf) if !sign(b) => Outcome::invalid(),
        (Class::Inf, Class::Inf) if sign(b) => Outcome::invalid(),
        (_, Class::Inf) if !sign(b) => Outcome::exact(inf(sa), de),
        (_, Class::Inf) => Outcome::exact(zero(sa), de),
        (Class::Zero | Class::Inf, _) => Outcome::exact(a, de),
        (_, Class::Zero) => Outcome::exact(a, de),
        _ => {
            let ub = unpack(b);
            // Beyond ±2^20 every result overflows or underflows the same way.
            let n = if ub.exp >= 20 {
                1 << 20
            } else if ub.exp < 0 {
                0
            } else {
                (ub.sig >> (63 - ub.exp)) as i32
            };
            let n = if ub.sign { -n } else { n };
            let ua = unpack(a);
            if n == 0 {
                Outcome::exact(a, de)
            } else {
                round_full(Exact::from_unpacked(Unpacked { exp: ua.exp + n, ..ua }), fcw, de)
            }
        }
    };
    o.gate(fcw)
}

fn fxtract(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) || !cpu.st_empty(7) {
        let masked = if cpu.st_empty(0) { cpu.stack_underflow() } else { cpu.stack_overflow() };
        if masked {
            cpu.set_st(0, INDEFINITE);
            cpu.fpu_push(INDEFINITE);
        }
        return Ok(());
    }
    let (exp, sig, flags) = extract(cpu.st(0));
    cpu.set_cc(sw::C1, 0);
    cpu.fpu_raise(flags);
    if cpu.fpu_unmasked(flags & (exc::IE | exc::DE | exc::ZE)) {
        return Ok(());
    }
    cpu.set_st(0, exp);
    cpu.fpu_push(sig);
    Ok(())
}

/// FXTRACT: (exponent, significand, flags).
pub(crate) fn extract(a: F80) -> (F80, F80, u16) {
    let c = class(a);
    match c {
        Class::Unsupported => (INDEFINITE, INDEFINITE, exc::IE),
        Class::QNaN | Class::SNaN => {
            let (v, f) = propagate_nan1(a);
            (v, v, f)
        }
        Class::Zero => (inf(true), a, exc::ZE),
        Class::Inf => (inf(false), a, 0),
        _ => {
            let u = unpack(a);
            let sig = F80 { signif: u.sig, sign_exp: (if u.sign { 0x8000 } else { 0 }) | 0x3FFF };
            (from_int(i64::from(u.exp)), sig, denormal_flag(&[c]))
        }
    }
}

/// FCHS (`imm` 0) and FABS (1): the sign bit only, whatever the value holds.
fn fsign(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let v = cpu.st(0);
    let s = if i.imm == 0 { !sign(v) } else { false };
    cpu.set_cc(sw::C1, 0);
    cpu.set_st(0, with_sign(v, s));
    Ok(())
}
