//! The bridge between the x87's 80-bit registers and soft-float arithmetic.
//!
//! Exact work (add, subtract, multiply, divide, and the transcendental kernels) is done by
//! `rustc_apfloat` (the Rust port of LLVM's APFloat) in a 111-bit format with a 17-bit exponent,
//! `W`, wide enough that no operation on extended operands overflows or underflows in it.
//! Computed toward zero, with its inexact flag kept as a sticky bit, a `W` result is a
//! round-to-odd value, which rounds correctly once more to 64, 53 or 24 bits (Boldo and
//! Melquiond). That last rounding is done here, the x87 way (Intel SDM vol. 1, 4.9 and 8.5):
//! precision control with the extended exponent range, tininess after rounding, masked responses
//! for overflow and underflow, the biased results of unmasked ones, and C1 for "rounded up".

use super::exc::{DE, IE, OE, PE, UE};
use crate::state::F80;
use rustc_apfloat::ieee::{IeeeFloat, Semantics};
use rustc_apfloat::{Float, Round, Status};

/// 111-bit significand, 17-bit exponent: the working format.
pub(crate) struct WideS;

impl Semantics for WideS {
    const BITS: usize = 128;
    const EXP_BITS: usize = 17;
}

pub(crate) type W = IeeeFloat<WideS>;

const W_FRAC_BITS: u32 = 110;
const W_BIAS: i32 = 65535;

/// The QNaN floating-point indefinite.
pub(crate) const INDEFINITE: F80 = F80 { signif: 0xC000_0000_0000_0000, sign_exp: 0xFFFF };
pub(crate) const QUIET_BIT: u64 = 1 << 62;
pub(crate) const INT_BIT: u64 = 1 << 63;
/// The exponent adjustment of the results of unmasked overflow and underflow (SDM 8.5.3).
const BIAS_ADJUST: i32 = 24576;

/// Rounding control, FCW bits 10-11.
pub(crate) const RC_NEAREST: u8 = 0;
pub(crate) const RC_DOWN: u8 = 1;
pub(crate) const RC_UP: u8 = 2;
pub(crate) const RC_ZERO: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    Zero,
    /// A denormal or pseudo-denormal (exponent 0, integer bit set): a finite value that raises
    /// the denormal-operand exception when used.
    Denormal,
    Normal,
    Inf,
    QNaN,
    SNaN,
    /// Pseudo-NaN, pseudo-infinity, unnormal: invalid operands since the 387.
    Unsupported,
}

pub(crate) fn class(v: F80) -> Class {
    let e = v.sign_exp & 0x7FFF;
    let j = v.signif & INT_BIT != 0;
    match e {
        0 if v.signif == 0 => Class::Zero,
        0 => Class::Denormal,
        0x7FFF if !j => Class::Unsupported,
        0x7FFF if v.signif << 1 == 0 => Class::Inf,
        0x7FFF if v.signif & QUIET_BIT != 0 => Class::QNaN,
        0x7FFF => Class::SNaN,
        _ if !j => Class::Unsupported,
        _ => Class::Normal,
    }
}

pub(crate) fn sign(v: F80) -> bool {
    v.sign_exp & 0x8000 != 0
}

pub(crate) fn is_nan(c: Class) -> bool {
    matches!(c, Class::QNaN | Class::SNaN)
}

pub(crate) fn zero(sign: bool) -> F80 {
    F80 { signif: 0, sign_exp: if sign { 0x8000 } else { 0 } }
}

pub(crate) fn inf(sign: bool) -> F80 {
    F80 { signif: INT_BIT, sign_exp: if sign { 0xFFFF } else { 0x7FFF } }
}

pub(crate) fn with_sign(v: F80, sign: bool) -> F80 {
    F80 { signif: v.signif, sign_exp: (v.sign_exp & 0x7FFF) | if sign { 0x8000 } else { 0 } }
}

pub(crate) fn quiet(v: F80) -> F80 {
    F80 { signif: v.signif | QUIET_BIT, ..v }
}

/// One operand that is a NaN: it, quieted, with IE if it was signaling.
pub(crate) fn propagate_nan1(a: F80) -> (F80, u16) {
    (quiet(a), if class(a) == Class::SNaN { IE } else { 0 })
}

/// Two operands, at least one a NaN (SDM table 4-7 for the x87): an SNaN raises IE; a QNaN
/// wins over an SNaN; between two NaNs of the same kind the larger significand wins, and on a
/// tie the positive one.
pub(crate) fn propagate_nan2(a: F80, b: F80) -> (F80, u16) {
    let (ca, cb) = (class(a), class(b));
    let flags = if ca == Class::SNaN || cb == Class::SNaN { IE } else { 0 };
    let (qa, qb) = (quiet(a), quiet(b));
    let v = match (is_nan(ca), is_nan(cb)) {
        (true, false) => qa,
        (false, _) => qb,
        (true, true) => {
            if ca == Class::QNaN && cb == Class::SNaN {
                qa
            } else if ca == Class::SNaN && cb == Class::QNaN {
                qb
            } else if qa.signif != qb.signif {
                if qa.signif > qb.signif {
                    qa
                } else {
                    qb
                }
            } else if qa.sign_exp <= qb.sign_exp {
                qa
            } else {
                qb
            }
        }
    };
    (v, flags)
}

/// A finite nonzero value: value = sig × 2^(exp − 63), sig normalized (bit 63 set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unpacked {
    pub sign: bool,
    pub exp: i32,
    pub sig: u64,
}

/// Unpacks a normal or denormal register value (pseudo-denormals read as exponent −16382).
pub(crate) fn unpack(v: F80) -> Unpacked {
    let e = i32::from(v.sign_exp & 0x7FFF);
    let sign = sign(v);
    if e == 0 {
        let lz = v.signif.leading_zeros();
        Unpacked { sign, exp: -16382 - lz as i32, sig: v.signif << lz }
    } else {
        Unpacked { sign, exp: e - 16383, sig: v.signif }
    }
}

/// A value that is exact, or whose bits below `sig` are nonzero where `sticky` says so:
/// value = (sig + sticky·ε) × 2^(exp − 127), sig normalized (bit 127 set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exact {
    pub sign: bool,
    pub exp: i32,
    pub sig: u128,
    pub sticky: bool,
}

impl Exact {
    pub(crate) fn from_unpacked(u: Unpacked) -> Exact {
        Exact { sign: u.sign, exp: u.exp, sig: u128::from(u.sig) << 64, sticky: false }
    }

    /// Normalizes a nonzero integer significand: value = sig × 2^(exp − 127) before
    /// normalization.
    pub(crate) fn normalize(sign: bool, exp: i32, sig: u128, sticky: bool) -> Exact {
        let lz = sig.leading_zeros();
        Exact { sign, exp: exp - lz as i32, sig: sig << lz, sticky }
    }

    /// A `W` value, nonzero and finite; `inexact` is the sticky bit of the operation that
    /// produced it.
    pub(crate) fn from_w(w: W, inexact: bool) -> Option<Exact> {
        if !w.is_finite_non_zero() {
            return None;
        }
        let bits = w.to_bits();
        let sign = bits >> 127 != 0;
        let be = ((bits >> W_FRAC_BITS) & 0x1_FFFF) as i32;
        let frac = bits & ((1u128 << W_FRAC_BITS) - 1);
        if be == 0 {
            // Below 2^-65534: nothing the x87 computes gets there; flush as a tiny value.
            return Some(Exact { sign, exp: -65534, sig: 1 << 127, sticky: true });
        }
        let sig = (frac | (1u128 << W_FRAC_BITS)) << (127 - W_FRAC_BITS);
        Some(Exact { sign, exp: be - W_BIAS, sig, sticky: inexact })
    }
}

/// An extended finite nonzero value in `W`, exactly.
pub(crate) fn to_w(u: Unpacked) -> W {
    let frac = u128::from(u.sig & !INT_BIT) << (W_FRAC_BITS - 63);
    let be = (u.exp + W_BIAS) as u128;
    W::from_bits((u128::from(u.sign) << 127) | (be << W_FRAC_BITS) | frac)
}

/// A constant given as its 128 leading significand bits and exponent, in `W`.
pub(crate) fn w_const(c: (u128, i32)) -> W {
    w_from_sig(false, c.0, c.1)
}

/// sig × 2^(exp − 127) in `W` (rounded to nearest).
pub(crate) fn w_from_sig(sign: bool, sig: u128, exp: i32) -> W {
    let v = W::from_u128_r(sig, Round::NearestTiesToEven).value.scalbn(exp - 127);
    if sign {
        -v
    } else {
        v
    }
}

pub(crate) fn w_int(n: i64) -> W {
    W::from_i128(i128::from(n)).value
}

pub(crate) fn inexact(s: Status) -> bool {
    s.contains(Status::INEXACT)
}

/// A destination format: precision in bits and the normal exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Format {
    pub prec: u32,
    pub emin: i32,
    pub emax: i32,
    /// A register destination: unmasked overflow and underflow deliver a biased result.
    pub reg: bool,
}

pub(crate) const EXT: Format = Format { prec: 64, emin: -16382, emax: 16383, reg: true };
pub(crate) const SINGLE: Format = Format { prec: 24, emin: -126, emax: 127, reg: false };
pub(crate) const DOUBLE: Format = Format { prec: 53, emin: -1022, emax: 1023, reg: false };

/// The register format under precision control (FCW bits 8-9; the reserved 01 acts as 11).
pub(crate) fn ext_format(fcw: u16) -> Format {
    match (fcw >> 8) & 3 {
        0 => Format { prec: 24, ..EXT },
        2 => Format { prec: 53, ..EXT },
        _ => EXT,
    }
}

/// A rounded result: `Inf`, zero (`sig` 0), a denormal (`exp == emin`, bit 63 clear) or a
/// normal (bit 63 set); the significand holds the format's precision in its top bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rounded {
    pub sign: bool,
    pub exp: i32,
    pub sig: u64,
    pub inf: bool,
    /// Exception flags raised by the rounding (OE, UE, PE).
    pub flags: u16,
    /// The magnitude was increased (C1 after an inexact result).
    pub up: bool,
}

/// Drops the low `drop` bits of `sig` (plus the sticky bits below it), rounding as `rc` says.
/// Returns the kept bits, whether anything nonzero was dropped, and whether the kept value
/// was incremented.
pub(crate) fn round_sig(sig: u128, sticky: bool, drop: u32, rc: u8, sign: bool) -> (u128, bool, bool) {
    let (kept, above_half, exactly_half, any) = if drop == 0 {
        (sig, false, false, sticky)
    } else if drop > 128 {
        (0, false, false, sig != 0 || sticky)
    } else if drop == 128 {
        let half = sig >> 127 != 0;
        let rest = sig << 1 != 0 || sticky;
        (0, half && rest, half && !rest, sig != 0 || sticky)
    } else {
        let rem = sig & ((1u128 << drop) - 1);
        let half = 1u128 << (drop - 1);
        (sig >> drop, rem > half || (rem == half && sticky), rem == half && !sticky, rem != 0 || sticky)
    };
    let inc = any
        && match rc {
            RC_NEAREST => above_half || (exactly_half && kept & 1 == 1),
            RC_DOWN => sign,
            RC_UP => !sign,
            _ => false,
        };
    (kept + u128::from(inc), any, inc)
}

/// Rounds `x` to `f` with rounding control `rc`, given the exception masks (FCW bits 0-5).
pub(crate) fn round(x: Exact, f: Format, rc: u8, masks: u16) -> Rounded {
    let drop = 128 - f.prec;
    let (mut k, inexact, up) = round_sig(x.sig, x.sticky, drop, rc, x.sign);
    let mut e = x.exp;
    if k >> f.prec != 0 {
        k >>= 1;
        e += 1;
    }
    let normal = |exp: i32, k: u128, flags: u16, up: bool| Rounded {
        sign: x.sign,
        exp,
        sig: (k << (64 - f.prec)) as u64,
        inf: false,
        flags,
        up,
    };
    let pe = if inexact { PE } else { 0 };
    if e > f.emax {
        if f.reg && masks & OE == 0 {
            return normal(e - BIAS_ADJUST, k, OE | pe, up);
        }
        let to_inf = match rc {
            RC_NEAREST => true,
            RC_DOWN => x.sign,
            RC_UP => !x.sign,
            _ => false,
        };
        if to_inf {
            return Rounded { sign: x.sign, exp: f.emax + 1, sig: INT_BIT, inf: true, flags: OE | PE, up: true };
        }
        return normal(f.emax, (1u128 << f.prec) - 1, OE | PE, false);
    }
    if e < f.emin {
        if masks & UE == 0 {
            // Unmasked: underflow whenever the result is tiny, exact or not.
            return normal(e + BIAS_ADJUST, k, UE | pe, up);
        }
        let shift = (f.emin - x.exp) as u32;
        let (k, inexact, up) = round_sig(x.sig, x.sticky, drop.saturating_add(shift), rc, x.sign);
        let flags = if inexact { UE | PE } else { 0 };
        return Rounded { sign: x.sign, exp: f.emin, sig: (k << (64 - f.prec)) as u64, inf: false, flags, up };
    }
    normal(e, k, pe, up)
}

impl Rounded {
    pub(crate) fn to_f80(self) -> F80 {
        let s = if self.sign { 0x8000 } else { 0 };
        if self.inf {
            return F80 { signif: INT_BIT, sign_exp: s | 0x7FFF };
        }
        if self.sig & INT_BIT == 0 {
            return F80 { signif: self.sig, sign_exp: s };
        }
        // Biased results of unmasked overflow/underflow stay in range: callers bound the
        // exponents they produce well inside ±(16383 + 24576).
        let be = (self.exp + 16383).clamp(1, 0x7FFE) as u16;
        F80 { signif: self.sig, sign_exp: s | be }
    }

    /// Packs into an IEEE interchange format with `frac` fraction bits and exponent bias
    /// `bias` (single: 23, 127; double: 52, 1023).
    fn to_ieee(self, frac: u32, bias: i32) -> u64 {
        let exp_bits = if bias == 127 { 8 } else { 11 };
        let s = u64::from(self.sign) << (frac + exp_bits);
        let max_be = (1u64 << exp_bits) - 1;
        if self.inf {
            return s | (max_be << frac);
        }
        let f = self.sig >> (63 - frac);
        if self.sig & INT_BIT == 0 {
            return s | f;
        }
        s | (((self.exp + bias) as u64) << frac) | (f & ((1 << frac) - 1))
    }

    pub(crate) fn to_single(self) -> u32 {
        self.to_ieee(23, 127) as u32
    }

    pub(crate) fn to_double(self) -> u64 {
        self.to_ieee(52, 1023)
    }
}

/// A register value from a memory single (SDM 8.2: exact; SNaN → IE and quieted; denormal →
/// DE).
pub(crate) fn from_single(b: u32) -> (F80, u16) {
    let sign = b >> 31 != 0;
    let e = ((b >> 23) & 0xFF) as i32;
    let f = u64::from(b & 0x7F_FFFF);
    from_ieee(sign, e, f, 23, 127, 0xFF)
}

pub(crate) fn from_double(b: u64) -> (F80, u16) {
    let sign = b >> 63 != 0;
    let e = ((b >> 52) & 0x7FF) as i32;
    let f = b & ((1 << 52) - 1);
    from_ieee(sign, e, f, 52, 1023, 0x7FF)
}

fn from_ieee(sign: bool, e: i32, f: u64, frac: u32, bias: i32, max_e: i32) -> (F80, u16) {
    let s = if sign { 0x8000u16 } else { 0 };
    if e == max_e {
        let signif = INT_BIT | (f << (63 - frac));
        let v = F80 { signif, sign_exp: s | 0x7FFF };
        return if f != 0 && signif & QUIET_BIT == 0 { (quiet(v), IE) } else { (v, 0) };
    }
    if e == 0 {
        if f == 0 {
            return (zero(sign), 0);
        }
        let lz = f.leading_zeros();
        // value = f × 2^(1 − bias − frac); normalized: bit 63 set.
        let exp = (1 - bias) - (lz as i32 - (63 - frac as i32));
        let v = F80 { signif: f << lz, sign_exp: s | (exp + 16383) as u16 };
        return (v, DE);
    }
    (F80 { signif: INT_BIT | (f << (63 - frac)), sign_exp: s | (e - bias + 16383) as u16 }, 0)
}

/// A register value rounded to a memory single or double (FST m32/m64): NaNs keep their
/// leading fraction bits (an SNaN raises IE and is quieted), unsupported encodings store the
/// indefinite. Returns the bits and the flags and C1 (rounded up).
pub(crate) fn to_ieee_mem(v: F80, f: Format, rc: u8, masks: u16) -> (u64, u16, bool) {
    let double = f.prec == 53;
    let (frac, exp_bits) = if double { (52u32, 11u32) } else { (23, 8) };
    let s = u64::from(sign(v)) << (frac + exp_bits);
    let max = ((1u64 << exp_bits) - 1) << frac;
    match class(v) {
        Class::Zero => (s, 0, false),
        Class::Inf => (s | max, 0, false),
        Class::QNaN | Class::SNaN => {
            let (q, flags) = propagate_nan1(v);
            let f = (q.signif << 1) >> (64 - frac);
            (s | max | f, flags, false)
        }
        Class::Unsupported => {
            let q = (1u64 << (frac - 1)) | max | (1u64 << (frac + exp_bits));
            (q, IE, false)
        }
        Class::Normal | Class::Denormal => {
            let r = round(Exact::from_unpacked(unpack(v)), f, rc, masks);
            let bits = if double { r.to_double() } else { u64::from(r.to_single()) };
            (bits, r.flags, r.up)
        }
    }
}

/// The tag a register's contents earn (00 valid, 01 zero, 10 special).
pub(crate) fn tag_of(v: F80) -> u16 {
    match class(v) {
        Class::Normal => 0,
        Class::Zero => 1,
        _ => 2,
    }
}

/// DE if either value is a denormal.
pub(crate) fn denormal_flag(c: &[Class]) -> u16 {
    if c.contains(&Class::Denormal) {
        DE
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(signif: u64, sign_exp: u16) -> F80 {
        F80 { signif, sign_exp }
    }

    #[test]
    fn classes() {
        assert_eq!(class(f(0, 0)), Class::Zero);
        assert_eq!(class(f(1, 0)), Class::Denormal);
        assert_eq!(class(f(INT_BIT, 0)), Class::Denormal, "pseudo-denormal");
        assert_eq!(class(f(INT_BIT, 0x3FFF)), Class::Normal);
        assert_eq!(class(f(0x4000_0000_0000_0000, 0x3FFF)), Class::Unsupported, "unnormal");
        assert_eq!(class(f(INT_BIT, 0x7FFF)), Class::Inf);
        assert_eq!(class(f(0, 0x7FFF)), Class::Unsupported, "pseudo-infinity");
        assert_eq!(class(f(1, 0x7FFF)), Class::Unsupported, "pseudo-NaN");
        assert_eq!(class(INDEFINITE), Class::QNaN);
        assert_eq!(class(f(INT_BIT | 1, 0x7FFF)), Class::SNaN);
    }

    #[test]
    fn w_round_trip_and_round_to_extended() {
        let u = Unpacked { sign: true, exp: -3, sig: 0xDEAD_BEEF_0123_4567 };
        let x = Exact::from_w(to_w(u), false).unwrap();
        assert_eq!(x, Exact::from_unpacked(u));
        let r = round(x, EXT, RC_NEAREST, 0x3F);
        assert_eq!((r.sign, r.exp, r.sig, r.flags), (true, -3, 0xDEAD_BEEF_0123_4567, 0));
    }

    #[test]
    fn one_third_in_every_precision() {
        let q = w_int(1).div_r(w_int(3), Round::TowardZero);
        let x = Exact::from_w(q.value, inexact(q.status)).unwrap();
        let r = round(x, EXT, RC_NEAREST, 0x3F);
        assert_eq!((r.exp, r.sig, r.flags, r.up), (-2, 0xAAAA_AAAA_AAAA_AAAB, PE, true));
        let r = round(x, EXT, RC_ZERO, 0x3F);
        assert_eq!((r.sig, r.up), (0xAAAA_AAAA_AAAA_AAAA, false));
        let r = round(x, ext_format(0x037F & !0x300), RC_NEAREST, 0x3F);
        assert_eq!(r.sig, 0xAAAA_AB00_0000_0000, "PC = single");
        let r = round(x, ext_format(0x027F), RC_NEAREST, 0x3F);
        assert_eq!(r.sig, 0xAAAA_AAAA_AAAA_A800, "PC = double");
    }

    #[test]
    fn overflow_and_underflow_responses() {
        let big = Exact { sign: false, exp: 16384, sig: 1 << 127, sticky: false };
        let r = round(big, EXT, RC_NEAREST, 0x3F);
        assert!(r.inf && r.flags == OE | PE);
        let r = round(big, EXT, RC_ZERO, 0x3F);
        assert_eq!((r.inf, r.exp, r.sig), (false, 16383, u64::MAX));
        let r = round(big, EXT, RC_NEAREST, 0x3F & !OE);
        assert_eq!((r.exp, r.flags), (16384 - 24576, OE));
        // 2^-16400 is a denormal: exact, so no underflow when masked.
        let tiny = Exact { sign: false, exp: -16400, sig: 1 << 127, sticky: false };
        let r = round(tiny, EXT, RC_NEAREST, 0x3F);
        assert_eq!((r.exp, r.sig, r.flags), (-16382, 1 << (63 - 18), 0));
        assert_eq!(r.to_f80(), f(1 << 45, 0));
        let r = round(tiny, EXT, RC_NEAREST, 0x3F & !UE);
        assert_eq!((r.exp, r.flags), (-16400 + 24576, UE));
        // Below half the smallest denormal: zero, or the smallest denormal rounding up.
        let t = Exact { sign: false, exp: -16500, sig: 1 << 127, sticky: false };
        assert_eq!(round(t, EXT, RC_NEAREST, 0x3F).sig, 0);
        assert_eq!(round(t, EXT, RC_UP, 0x3F).sig, 1);
        assert_eq!(round(t, EXT, RC_UP, 0x3F).flags, UE | PE);
    }

    #[test]
    fn single_and_double_memory_formats() {
        let one_third = {
            let q = w_int(1).div_r(w_int(3), Round::TowardZero);
            Exact::from_w(q.value, true).unwrap()
        };
        assert_eq!(round(one_third, SINGLE, RC_NEAREST, 0x3F).to_single(), 0x3EAA_AAAB);
        assert_eq!(round(one_third, DOUBLE, RC_NEAREST, 0x3F).to_double(), 0x3FD5_5555_5555_5555);
        for bits in [0x3F80_0000u32, 0x0000_0001, 0x807F_FFFF, 0x7F7F_FFFF, 0xC2F6_E979] {
            let (v, _) = from_single(bits);
            let (back, flags, _) = to_ieee_mem(v, SINGLE, RC_NEAREST, 0x3F);
            assert_eq!((back as u32, flags), (bits, 0), "{bits:#x}");
        }
        for bits in [0x3FF0_0000_0000_0000u64, 1, 0x800F_FFFF_FFFF_FFFF, 0x7FEF_FFFF_FFFF_FFFF] {
            let (v, _) = from_double(bits);
            let (back, flags, _) = to_ieee_mem(v, DOUBLE, RC_NEAREST, 0x3F);
            assert_eq!((back, flags), (bits, 0), "{bits:#x}");
        }
        assert_eq!(from_single(0x7F80_0001).1, IE);
        assert_eq!(from_single(0x0000_0001).1, DE);
        let (v, _) = from_single(0x0000_0001);
        assert_eq!(v, f(INT_BIT, (16383 - 149) as u16));
    }

    #[test]
    fn nan_rules() {
        let q1 = f(0xC000_0000_0000_0001, 0x7FFF);
        let q2 = f(0xC000_0000_0000_0002, 0xFFFF);
        let s3 = f(0x8000_0000_0000_0003, 0x7FFF);
        assert_eq!(propagate_nan2(q1, q2), (q2, 0), "larger significand");
        assert_eq!(propagate_nan2(s3, q1), (q1, IE), "QNaN over SNaN");
        assert_eq!(propagate_nan2(s3, f(INT_BIT, 0x3FFF)), (quiet(s3), IE));
        let q2p = with_sign(q2, false);
        assert_eq!(propagate_nan2(q2, q2p).0, q2p, "tie: the positive one");
    }
}
