//! Transcendental instructions: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1.
//!
//! Kernels run in the 111-bit `W` format (series evaluated there, constants to 128 bits), so a
//! result carries about 100 correct bits before its one rounding to the register by the
//! rounding control: correctly rounded except when the exact value lies within about 2^-100
//! (relative) of a rounding boundary. Where the result is its argument plus a tiny correction
//! (sin x, tan x, atan x for small x), the two parts are summed toward zero with a sticky bit,
//! so directed rounding and the inexact flag stay right even when the correction is far below
//! the last bit. Arguments of FSIN, FCOS, FSINCOS and FPTAN are reduced modulo π/2 exactly,
//! with the 66-bit π the hardware uses (SDM vol. 1, 8.3.10), so large arguments give what the
//! hardware gives; |x| ≥ 2^63 sets C2 and leaves the operand alone.

use super::f80::{
    self, class, denormal_flag, inexact, inf, is_nan, propagate_nan1, propagate_nan2, sign, to_w, unpack, w_const, w_int, zero,
    Class, Exact, Unpacked, W, INDEFINITE,
};
use super::{exc, round_full, sw, Outcome};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::F80;
use iced_x86::Code;
use rustc_apfloat::{Float, Round};
use std::cmp::Ordering;

/// Constants as 128-bit significands (rounded to nearest) and exponents: value = sig ×
/// 2^(exp − 127).
pub(crate) mod consts {
    pub(crate) const PI: (u128, i32) = (0xC90FDAA22168C234C4C6628B80DC1CD1, 1);
    pub(crate) const LN2: (u128, i32) = (0xB17217F7D1CF79ABC9E3B39803F2F6AF, -1);
    pub(crate) const LOG2E: (u128, i32) = (0xB8AA3B295C17F0BBBE87FED0691D3E89, 0);
    pub(crate) const LOG2_10: (u128, i32) = (0xD49A784BCD1B8AFE492BF6FF4DAFDB4D, 1);
    pub(crate) const LOG10_2: (u128, i32) = (0x9A209A84FBCFF7988F8959AC0B7C9178, -2);
    /// atan(k/8) for k = 1..8.
    pub(crate) const ATAN_K8: [(u128, i32); 8] = [
        (0xFEADD4D5617B6E32C897989F3E888EF8, -4),
        (0xFADBAFC96406EB156DC79EF5F7A217E6, -3),
        (0xB7B0CA0F26F784738AA32122DCFE4483, -2),
        (0xED63382B0DDA7B456FE445ECBC3A8D03, -2),
        (0x8F005D5EF7F59F9B5C835E1665C43748, -1),
        (0xA4BC7D1934F7092419A87F2A457DAC9F, -1),
        (0xB8053E2BC2319E73CB2DA55210A4443D, -1),
        (0xC90FDAA22168C234C4C6628B80DC1CD1, -1),
    ];
    /// The hardware's 66-bit π, as π × 2^64 (SDM: 0.C90FDAA2 2168C234 C × 2^2).
    pub(crate) const PI66_X64: u128 = 0x3_243F_6A88_85A3_08D3;
}

const RN: Round = Round::NearestTiesToEven;

fn add(a: W, b: W) -> W {
    a.add_r(b, RN).value
}
fn sub(a: W, b: W) -> W {
    a.sub_r(b, RN).value
}
fn mul(a: W, b: W) -> W {
    a.mul_r(b, RN).value
}
fn div(a: W, b: W) -> W {
    a.div_r(b, RN).value
}

const SIN: u64 = 0;
const COS: u64 = 1;
const SINCOS: u64 = 2;
const TAN: u64 = 3;
const ATAN: u64 = 4;
const F2XM1: u64 = 5;
const YL2X: u64 = 6;
const YL2XP1: u64 = 7;

pub(super) fn select(i: &mut Insn, code: Code) -> Option<Handler> {
    use Code as C;
    let (op, h): (u64, Handler) = match code {
        C::Fsin => (SIN, ftrig),
        C::Fcos => (COS, ftrig),
        C::Fsincos => (SINCOS, ftrig_push),
        C::Fptan => (TAN, ftrig_push),
        C::Fpatan => (ATAN, fbinary),
        C::F2xm1 => (F2XM1, f2xm1),
        C::Fyl2x => (YL2X, fbinary),
        C::Fyl2xp1 => (YL2XP1, fbinary),
        _ => return None,
    };
    i.imm = op;
    Some(h)
}

/// hi + lo rounded to the register. `exact_possible`: the true result may be exactly hi + lo
/// (otherwise it is known to be irrational, and inexact whatever the working bits show).
fn finish(hi: W, lo: W, exact_possible: bool, fcw: u16, flags: u16) -> Outcome {
    let s = hi.add_r(lo, Round::TowardZero);
    match Exact::from_w(s.value, inexact(s.status) || !exact_possible) {
        Some(x) => round_full(x, fcw, flags),
        None => Outcome::exact(zero(false), flags),
    }
}

fn neg_if(v: (W, W), n: bool) -> (W, W) {
    if n {
        (-v.0, -v.1)
    } else {
        v
    }
}

/// |x| = k·(π66/2) + r with |r| ≤ π66/4, exactly: (r, k mod 4).
fn reduce(u: Unpacked) -> (W, u32) {
    let ax = to_w(Unpacked { sign: false, ..u });
    if u.exp < -1 {
        return (ax, 0);
    }
    // |x|·2^65 = sig·2^(exp+2); divide by P = π66·2^64 = (π66/2)·2^65.
    let p = consts::PI66_X64;
    let mut r = u128::from(u.sig);
    let mut q = 0u32;
    for _ in 0..(u.exp + 2) {
        r <<= 1;
        q = q.wrapping_shl(1);
        if r >= p {
            r -= p;
            q |= 1;
        }
    }
    let mut neg = false;
    if r << 1 > p {
        r = p - r;
        q = q.wrapping_add(1);
        neg = true;
    }
    let rw = W::from_u128(r).value.scalbn(-65);
    (if neg { -rw } else { rw }, q & 3)
}

/// Series coefficients, computed once: reciprocals of small integers in `W`.
struct Coefficients {
    /// 1 / (2k(2k + 1)) for sin, 1 / ((2k − 1)2k) for cos, k = 0..=16.
    sin: [W; 17],
    cos: [W; 17],
    /// 1 / j for expm1, j = 0..=14.
    exp: [W; 15],
    /// 1 / (2j + 1) for atanh, j = 0..=24; (−1)^j / (2j + 1) for atan, j = 0..=16.
    atanh: [W; 25],
    atan: [W; 17],
}

fn coefficients() -> &'static Coefficients {
    static C: std::sync::OnceLock<Coefficients> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let inv = |n: i64| if n == 0 { W::ZERO } else { div(w_int(1), w_int(n)) };
        Coefficients {
            sin: std::array::from_fn(|k| inv(2 * k as i64 * (2 * k as i64 + 1))),
            cos: std::array::from_fn(|k| inv((2 * k as i64 - 1).max(0) * 2 * k as i64)),
            exp: std::array::from_fn(|j| inv(j as i64)),
            atanh: std::array::from_fn(|j| inv(2 * j as i64 + 1)),
            atan: std::array::from_fn(|j| {
                let c = inv(2 * j as i64 + 1);
                if j % 2 == 1 {
                    -c
                } else {
                    c
                }
            }),
        }
    })
}

/// sin(r) − r for |r| ≤ π/4.
fn sin_lo(r: W) -> W {
    let c = coefficients();
    let z = mul(r, r);
    let mut t = w_int(1);
    for k in (2..=16).rev() {
        t = sub(w_int(1), mul(mul(z, c.sin[k]), t));
    }
    -mul(mul(mul(r, z), t), c.sin[1])
}

/// cos(r) − 1 for |r| ≤ π/4.
fn cos_lo(r: W) -> W {
    let c = coefficients();
    let z = mul(r, r);
    let mut u = w_int(1);
    for k in (2..=16).rev() {
        u = sub(w_int(1), mul(mul(z, c.cos[k]), u));
    }
    -mul(z.scalbn(-1), u)
}

/// sin, cos or tan of a finite nonzero x with |x| < 2^63, as (hi, lo).
fn trig_parts(x: F80, which: u64) -> (W, W) {
    let u = unpack(x);
    let (r, k) = reduce(u);
    let one = w_int(1);
    let s = (r, sin_lo(r));
    let c = (one, cos_lo(r));
    let zero_w = W::ZERO;
    match which {
        SIN => {
            let v = match k {
                0 => s,
                1 => c,
                2 => neg_if(s, true),
                _ => neg_if(c, true),
            };
            neg_if(v, u.sign)
        }
        COS => match k {
            0 => c,
            1 => neg_if(s, true),
            2 => neg_if(c, true),
            _ => s,
        },
        _ => {
            let v = if k & 1 == 0 {
                // tan r − r = (sin r − r − r·(cos r − 1)) / cos r
                let lo = div(sub(s.1, mul(r, c.1)), add(one, c.1));
                (r, lo)
            } else {
                (-div(add(one, c.1), add(r, s.1)), zero_w)
            };
            neg_if(v, u.sign)
        }
    }
}

/// FSIN, FCOS, FPTAN's tangent: `None` when |x| ≥ 2^63 (C2: the operand is left alone).
pub(crate) fn trig(x: F80, which: u64, fcw: u16) -> Option<Outcome> {
    let c = class(x);
    let o = match c {
        Class::Unsupported | Class::Inf => Outcome::invalid(),
        Class::QNaN | Class::SNaN => {
            let (v, f) = propagate_nan1(x);
            Outcome::exact(v, f)
        }
        Class::Zero if which == COS => Outcome::exact(F80 { signif: f80::INT_BIT, sign_exp: 0x3FFF }, 0),
        Class::Zero => Outcome::exact(x, 0),
        _ => {
            if unpack(x).exp >= 63 {
                return None;
            }
            let (hi, lo) = trig_parts(x, which);
            finish(hi, lo, false, fcw, denormal_flag(&[c]))
        }
    };
    Some(o.gate(fcw))
}

fn ftrig(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    match trig(cpu.st(0), i.imm, cpu.fcw()) {
        None => cpu.set_cc(sw::C2, sw::C2),
        Some(o) => {
            cpu.set_cc(sw::C2, 0);
            cpu.fpu_store_outcome(o, 0, false);
        }
    }
    Ok(())
}

/// FSINCOS (ST(0) ← sin, push cos) and FPTAN (ST(0) ← tan, push 1).
fn ftrig_push(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) || !cpu.st_empty(7) {
        let masked = if cpu.st_empty(0) { cpu.stack_underflow() } else { cpu.stack_overflow() };
        if masked {
            cpu.set_st(0, INDEFINITE);
            cpu.fpu_push(INDEFINITE);
        }
        return Ok(());
    }
    let fcw = cpu.fcw();
    let x = cpu.st(0);
    let first = if i.imm == SINCOS { trig(x, SIN, fcw) } else { trig(x, TAN, fcw) };
    let Some(first) = first else {
        cpu.set_cc(sw::C2, sw::C2);
        return Ok(());
    };
    cpu.set_cc(sw::C2, 0);
    let second = if !is_finite_or_zero(class(x)) {
        // NaN or invalid: both results are the first one.
        first
    } else if i.imm == SINCOS {
        trig(x, COS, fcw).unwrap_or(first)
    } else {
        Outcome::exact(F80 { signif: f80::INT_BIT, sign_exp: 0x3FFF }, 0)
    };
    let flags = first.flags | second.flags;
    cpu.fpu_raise(flags);
    cpu.set_cc(sw::C1, if first.up || second.up { sw::C1 } else { 0 });
    if let (Some(a), Some(b)) = (first.value, second.value) {
        cpu.set_st(0, a);
        cpu.fpu_push(b);
    }
    Ok(())
}

fn is_finite_or_zero(c: Class) -> bool {
    matches!(c, Class::Normal | Class::Denormal | Class::Zero)
}

/// expm1(t) for |t| ≤ 0.35: series on t/2^k, then k doublings expm1(2u) = expm1(u)·(expm1(u) + 2).
fn expm1(t: W) -> W {
    if t.is_zero() {
        return t;
    }
    let k = (t.ilogb() + 9).max(0);
    let tr = t.scalbn(-k);
    let c = coefficients();
    let mut v = w_int(1);
    for j in (2..=14).rev() {
        v = add(w_int(1), mul(mul(tr, c.exp[j]), v));
    }
    let mut e = mul(tr, v);
    for _ in 0..k {
        e = mul(e, add(e, w_int(2)));
    }
    e
}

/// F2XM1: 2^x − 1 (defined for |x| ≤ 1; computed the same way beyond).
pub(crate) fn exp2m1(x: F80, fcw: u16) -> Outcome {
    let c = class(x);
    let o = match c {
        Class::Unsupported => Outcome::invalid(),
        Class::QNaN | Class::SNaN => {
            let (v, f) = propagate_nan1(x);
            Outcome::exact(v, f)
        }
        Class::Zero => Outcome::exact(x, 0),
        Class::Inf if sign(x) => Outcome::exact(F80 { signif: f80::INT_BIT, sign_exp: 0xBFFF }, 0),
        Class::Inf => Outcome::exact(x, 0),
        _ => {
            let de = denormal_flag(&[c]);
            let u = unpack(x);
            if u.exp >= 15 {
                if u.sign {
                    // −1 + 2^x, with 2^x far below the last bit.
                    finish(w_int(-1), W::SMALLEST, false, fcw, de)
                } else {
                    round_full(Exact { sign: false, exp: 1 << 16, sig: 1 << 127, sticky: true }, fcw, de)
                }
            } else {
                let xw = to_w(u);
                let n = xw.round_to_integral(RN).value;
                let f = sub(xw, n);
                let ni = n.to_i128(32).value as i32;
                let m = expm1(mul(f, w_const(consts::LN2)));
                if ni == 0 {
                    finish(m, W::ZERO, false, fcw, de)
                } else {
                    let hi = sub(W::from_u128(1).value.scalbn(ni), w_int(1));
                    finish(hi, m.scalbn(ni), f.is_zero(), fcw, de)
                }
            }
        }
    };
    o.gate(fcw)
}

fn f2xm1(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) {
        if cpu.stack_underflow() {
            cpu.set_st(0, INDEFINITE);
        }
        return Ok(());
    }
    let o = exp2m1(cpu.st(0), cpu.fcw());
    cpu.fpu_store_outcome(o, 0, false);
    Ok(())
}

/// 2·atanh(s)·log2(e) = log2((1 + s)/(1 − s)) for |s| ≤ 0.18.
fn log2_atanh(s: W) -> W {
    let c = coefficients();
    let z = mul(s, s);
    let mut a = W::ZERO;
    for j in (0..=24).rev() {
        a = add(c.atanh[j], mul(z, a));
    }
    mul(mul(s, a), mul(w_int(2), w_const(consts::LOG2E)))
}

/// log2 of a positive finite value: (value, exact).
fn log2_w(w: W) -> (W, bool) {
    let mut n = w.ilogb();
    let mut m = w.scalbn(-n);
    if mul(m, m).partial_cmp(&w_int(2)) == Some(Ordering::Greater) {
        m = m.scalbn(-1);
        n += 1;
    }
    let one = w_int(1);
    if m.partial_cmp(&one) == Some(Ordering::Equal) {
        return (w_int(i64::from(n)), true);
    }
    let s = div(sub(m, one), add(m, one));
    (add(w_int(i64::from(n)), log2_atanh(s)), false)
}

/// The logarithm part of FYL2X (log2 x) or FYL2XP1 (log2(1 + x)) as a value class: a special
/// register value, or a finite nonzero `W` (and whether it is exact).
enum Log {
    Special(F80, u16),
    Finite(W, bool),
    Invalid,
}

fn log_part(x: F80, plus1: bool) -> Log {
    let c = class(x);
    let s = sign(x);
    match c {
        Class::Zero if plus1 => Log::Special(x, 0),
        Class::Zero => Log::Special(inf(true), exc::ZE),
        Class::Inf if s => Log::Invalid,
        Class::Inf => Log::Special(x, 0),
        _ => {
            let u = unpack(x);
            let xw = to_w(u);
            if plus1 {
                let one = w_int(1);
                match xw.partial_cmp(&-one) {
                    Some(Ordering::Less) => return Log::Invalid,
                    Some(Ordering::Equal) => return Log::Special(inf(true), exc::ZE),
                    _ => {}
                }
                // Close to zero: log2(1 + x) = 2·atanh(x / (2 + x))·log2(e), exact in relative
                // terms however small x is.
                if u.exp < -2 {
                    return Log::Finite(log2_atanh(div(xw, add(w_int(2), xw))), false);
                }
                let (l, exact) = log2_w(add(one, xw));
                return if l.is_zero() { Log::Special(zero(false), 0) } else { Log::Finite(l, exact) };
            }
            if s {
                return Log::Invalid;
            }
            let (l, exact) = log2_w(xw);
            if l.is_zero() {
                Log::Special(zero(false), 0)
            } else {
                Log::Finite(l, exact)
            }
        }
    }
}

/// y × log2(x) (FYL2X) or y × log2(x + 1) (FYL2XP1).
pub(crate) fn ylog2(y: F80, x: F80, plus1: bool, fcw: u16) -> Outcome {
    let (cy, cx) = (class(y), class(x));
    if cy == Class::Unsupported || cx == Class::Unsupported {
        return Outcome::invalid().gate(fcw);
    }
    if is_nan(cy) || is_nan(cx) {
        let (v, f) = propagate_nan2(x, y);
        return Outcome::exact(v, f).gate(fcw);
    }
    let de = denormal_flag(&[cy, cx]);
    let sy = sign(y);
    let o = match log_part(x, plus1) {
        Log::Invalid => Outcome::invalid(),
        Log::Special(l, zf) => {
            let (cl, sl) = (class(l), sign(l));
            match (cy, cl) {
                (Class::Zero, Class::Inf) | (Class::Inf, Class::Zero) => Outcome::invalid(),
                (Class::Inf, _) | (_, Class::Inf) => {
                    // A zero-divide only when a finite nonzero y meets log(0).
                    let zf = if cy == Class::Inf { 0 } else { zf };
                    Outcome::exact(inf(sy != sl), de | zf)
                }
                _ => Outcome::exact(zero(sy != sl), de),
            }
        }
        Log::Finite(l, exact) => {
            let sl = l.is_negative();
            match cy {
                Class::Zero => Outcome::exact(zero(sy != sl), de),
                Class::Inf => Outcome::exact(inf(sy != sl), de),
                _ => {
                    let p = to_w(unpack(y)).mul_r(l, Round::TowardZero);
                    match Exact::from_w(p.value, inexact(p.status) || !exact) {
                        Some(e) => round_full(e, fcw, de),
                        None => Outcome::exact(zero(false), de),
                    }
                }
            }
        }
    };
    o.gate(fcw)
}

/// atan(t) − t for |t| ≤ 1/16.
fn atan_lo(t: W) -> W {
    let c = coefficients();
    let z = mul(t, t);
    let mut acc = W::ZERO;
    for j in (1..=16).rev() {
        acc = add(c.atan[j], mul(z, acc));
    }
    mul(mul(t, z), acc)
}

/// FPATAN: the angle of (x, y), in (−π, π], with the signs of zeros and infinities per the
/// SDM table.
pub(crate) fn atan2(y: F80, x: F80, fcw: u16) -> Outcome {
    let (cy, cx) = (class(y), class(x));
    if cy == Class::Unsupported || cx == Class::Unsupported {
        return Outcome::invalid().gate(fcw);
    }
    if is_nan(cy) || is_nan(cx) {
        let (v, f) = propagate_nan2(x, y);
        return Outcome::exact(v, f).gate(fcw);
    }
    let de = denormal_flag(&[cy, cx]);
    let (sy, sx) = (sign(y), sign(x));
    let pi = w_const(consts::PI);
    let half_pi = pi.scalbn(-1);
    let quarter_pi = pi.scalbn(-2);
    let angle = |w: W| -> Outcome { finish(if sy { -w } else { w }, W::ZERO, false, fcw, de) };
    let o = match (cy, cx) {
        (Class::Zero, _) if !sx => Outcome::exact(y, de),
        (Class::Zero, _) => angle(pi),
        (Class::Inf, Class::Inf) if !sx => angle(quarter_pi),
        (Class::Inf, Class::Inf) => angle(mul(w_int(3), quarter_pi)),
        (Class::Inf, _) | (_, Class::Zero) => angle(half_pi),
        (_, Class::Inf) if !sx => Outcome::exact(zero(sy), de),
        (_, Class::Inf) => angle(pi),
        _ => {
            let ay = to_w(Unpacked { sign: false, ..unpack(y) });
            let ax = to_w(Unpacked { sign: false, ..unpack(x) });
            let swap = ay.partial_cmp(&ax) == Some(Ordering::Greater);
            let r = if swap { div(ax, ay) } else { div(ay, ax) };
            let k = mul(r, w_int(8)).round_to_integral(RN).value.to_i128(8).value.clamp(0, 8) as usize;
            let (hi, lo) = if k == 0 {
                (r, atan_lo(r))
            } else {
                let ck = div(w_int(k as i64), w_int(8));
                let t = div(sub(r, ck), add(w_int(1), mul(r, ck)));
                (add(w_const(consts::ATAN_K8[k - 1]), add(t, atan_lo(t))), W::ZERO)
            };
            let (hi, lo) = if swap { (sub(half_pi, add(hi, lo)), W::ZERO) } else { (hi, lo) };
            let (hi, lo) = if sx { (sub(pi, add(hi, lo)), W::ZERO) } else { (hi, lo) };
            let (hi, lo) = neg_if((hi, lo), sy);
            finish(hi, lo, false, fcw, de)
        }
    };
    o.gate(fcw)
}

/// FPATAN, FYL2X, FYL2XP1: ST(1) ← f(ST(1), ST(0)), then pop.
fn fbinary(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) || cpu.st_empty(1) {
        if cpu.stack_underflow() {
            cpu.set_st(1, INDEFINITE);
            cpu.fpu_pop();
        }
        return Ok(());
    }
    let (x, y, fcw) = (cpu.st(0), cpu.st(1), cpu.fcw());
    let o = match i.imm {
        ATAN => atan2(y, x, fcw),
        YL2X => ylog2(y, x, false, fcw),
        _ => ylog2(y, x, true, fcw),
    };
    cpu.fpu_store_outcome(o, 1, true);
    Ok(())
}
