//! IEEE 754 binary32 and binary64 arithmetic exactly as SSE computes it (Intel SDM vol. 1,
//! 4.8-4.9 and 11.5): the four MXCSR rounding modes, DAZ and FTZ, tininess detected after
//! rounding, the six exception flags, and x86's NaN rules (the first operand's NaN wins, SNaNs
//! are quieted, invalid operations give the negative default NaN).
//!
//! Values travel as raw bits in a `u64` together with their format. Every result is computed
//! exactly (or with a sticky bit far below the rounding point) in integers and rounded once by
//! `round_pack`, so no host floating point is involved.

/// MXCSR bits.
pub(crate) mod mx {
    pub const IE: u32 = 0x01;
    pub const DE: u32 = 0x02;
    pub const ZE: u32 = 0x04;
    pub const OE: u32 = 0x08;
    pub const UE: u32 = 0x10;
    pub const PE: u32 = 0x20;
    pub const FLAGS: u32 = 0x3F;
    /// The exceptions detected before computing a result (they stop it when unmasked).
    pub const PRE: u32 = IE | DE | ZE;
    pub const DAZ: u32 = 0x40;
    /// Exception masks: the flags shifted left by this.
    pub const MASK_SHIFT: u32 = 7;
    pub const UM: u32 = UE << MASK_SHIFT;
    pub const RC_SHIFT: u32 = 13;
    pub const FTZ: u32 = 0x8000;
    /// The bits of MXCSR that exist (MXCSR_MASK as FXSAVE reports it).
    pub const WRITABLE: u32 = 0xFFFF;
    pub const DEFAULT: u32 = 0x1F80;
}

/// Rounding modes, as MXCSR.RC and ROUNDPS's immediate encode them.
pub(crate) const RNE: u8 = 0;
pub(crate) const RDOWN: u8 = 1;
pub(crate) const RUP: u8 = 2;
pub(crate) const RZ: u8 = 3;

/// A binary floating-point format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fmt {
    /// Fraction bits (without the implicit integer bit).
    pub man: u32,
    /// Exponent bits.
    pub ebits: u32,
}

pub(crate) const F32: Fmt = Fmt { man: 23, ebits: 8 };
pub(crate) const F64: Fmt = Fmt { man: 52, ebits: 11 };

impl Fmt {
    #[inline]
    pub(crate) fn width(self) -> u32 {
        1 + self.ebits + self.man
    }
    #[inline]
    fn bias(self) -> i32 {
        (1 << (self.ebits - 1)) - 1
    }
    #[inline]
    fn emin(self) -> i32 {
        1 - self.bias()
    }
    #[inline]
    fn emax(self) -> i32 {
        self.bias()
    }
    #[inline]
    fn exp_ones(self) -> u64 {
        (1 << self.ebits) - 1
    }
    #[inline]
    pub(crate) fn sign_bit(self) -> u64 {
        1 << (self.width() - 1)
    }
    #[inline]
    fn frac_mask(self) -> u64 {
        (1 << self.man) - 1
    }
    #[inline]
    fn quiet_bit(self) -> u64 {
        1 << (self.man - 1)
    }
    #[inline]
    fn exp_field(self, v: u64) -> u64 {
        (v >> self.man) & self.exp_ones()
    }
    #[inline]
    pub(crate) fn sign(self, v: u64) -> bool {
        v & self.sign_bit() != 0
    }
    #[inline]
    pub(crate) fn is_nan(self, v: u64) -> bool {
        self.exp_field(v) == self.exp_ones() && v & self.frac_mask() != 0
    }
    #[inline]
    pub(crate) fn is_snan(self, v: u64) -> bool {
        self.is_nan(v) && v & self.quiet_bit() == 0
    }
    #[inline]
    pub(crate) fn is_inf(self, v: u64) -> bool {
        self.exp_field(v) == self.exp_ones() && v & self.frac_mask() == 0
    }
    #[inline]
    pub(crate) fn is_zero(self, v: u64) -> bool {
        v & !self.sign_bit() == 0
    }
    #[inline]
    pub(crate) fn is_denormal(self, v: u64) -> bool {
        self.exp_field(v) == 0 && v & self.frac_mask() != 0
    }
    #[inline]
    pub(crate) fn quiet(self, v: u64) -> u64 {
        v | self.quiet_bit()
    }
    /// The QNaN indefinite: negative, quiet, no payload.
    #[inline]
    pub(crate) fn default_nan(self) -> u64 {
        self.sign_bit() | (self.exp_ones() << self.man) | self.quiet_bit()
    }
    #[inline]
    pub(crate) fn inf(self, sign: bool) -> u64 {
        self.signed(sign, self.exp_ones() << self.man)
    }
    #[inline]
    pub(crate) fn zero(self, sign: bool) -> u64 {
        self.signed(sign, 0)
    }
    #[inline]
    fn max_finite(self, sign: bool) -> u64 {
        self.signed(sign, ((self.exp_ones() - 1) << self.man) | self.frac_mask())
    }
    #[inline]
    fn signed(self, sign: bool, mag: u64) -> u64 {
        if sign {
            mag | self.sign_bit()
        } else {
            mag
        }
    }
    #[inline]
    pub(crate) fn abs(self, v: u64) -> u64 {
        v & !self.sign_bit()
    }
    /// The significand and exponent of a finite value: value = sig * 2^exp.
    #[inline]
    fn unpack(self, v: u64) -> (u64, i32) {
        let e = self.exp_field(v) as i32;
        let f = v & self.frac_mask();
        if e == 0 {
            (f, self.emin() - self.man as i32)
        } else {
            (f | (1 << self.man), e - self.bias() - self.man as i32)
        }
    }
    /// As `unpack`, with the significand shifted so its leading one is bit `man`.
    #[inline]
    fn unpack_norm(self, v: u64) -> (u64, i32) {
        let (s, e) = self.unpack(v);
        let sh = s.leading_zeros() as i32 - (63 - self.man as i32);
        (s << sh, e - sh)
    }
}

/// The MXCSR controls an operation runs under, and the exception flags it raised.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env {
    pub rc: u8,
    pub daz: bool,
    pub ftz: bool,
    /// Underflow masked: an exact tiny result is then no underflow, and FTZ applies.
    pub um: bool,
    pub flags: u32,
}

impl Env {
    pub(crate) fn new(mxcsr: u32) -> Env {
        Env {
            rc: ((mxcsr >> mx::RC_SHIFT) & 3) as u8,
            daz: mxcsr & mx::DAZ != 0,
            ftz: mxcsr & mx::FTZ != 0,
            um: mxcsr & mx::UM != 0,
            flags: 0,
        }
    }

    /// An operand as the arithmetic sees it: a denormal is zero under DAZ, else it raises DE.
    #[inline]
    fn input(&mut self, f: Fmt, v: u64) -> u64 {
        if f.is_denormal(v) {
            if self.daz {
                return v & f.sign_bit();
            }
            self.flags |= mx::DE;
        }
        v
    }

    /// An operand with DAZ applied and no DE raised (instructions that do not report DE).
    #[inline]
    fn input_quiet(&self, f: Fmt, v: u64) -> u64 {
        if self.daz && f.is_denormal(v) {
            v & f.sign_bit()
        } else {
            v
        }
    }

    /// Raises DE for an operand still denormal after `input_quiet`.
    #[inline]
    fn denormal(&mut self, f: Fmt, v: u64) {
        if f.is_denormal(v) {
            self.flags |= mx::DE;
        }
    }

    /// The result of a NaN operand among `a` and `b` (the first NaN wins, quieted), raising IE
    /// for an SNaN, or `None` if neither is a NaN.
    #[inline]
    fn nan2(&mut self, f: Fmt, a: u64, b: u64) -> Option<u64> {
        let (an, bn) = (f.is_nan(a), f.is_nan(b));
        if !an && !bn {
            return None;
        }
        if f.is_snan(a) || f.is_snan(b) {
            self.flags |= mx::IE;
        }
        Some(f.quiet(if an { a } else { b }))
    }

    #[inline]
    fn invalid(&mut self, f: Fmt) -> u64 {
        self.flags |= mx::IE;
        f.default_nan()
    }
}

/// Shifts `sig` right by `shift` bits, rounding the discarded bits by `rc` (for a value of
/// sign `sign`). Returns the rounded quotient (which may have gained a bit) and whether
/// anything was discarded.
#[inline]
fn round_shift(sig: u128, shift: u32, sign: bool, rc: u8) -> (u128, bool) {
    if shift == 0 {
        return (sig, false);
    }
    let (q, rem, half) = if shift >= 128 {
        // Everything is discarded; the value is below half an LSB unless shift == 128 and
        // the top bit is set, which callers never produce (significands stay below 2^127).
        (0u128, sig, if shift == 128 { 1u128 << 127 } else { u128::MAX })
    } else {
        (sig >> shift, sig & ((1u128 << shift) - 1), 1u128 << (shift - 1))
    };
    if rem == 0 {
        return (q, false);
    }
    let up = match rc {
        RNE => rem > half || (rem == half && q & 1 == 1),
        RDOWN => sign,
        RUP => !sign,
        _ => false,
    };
    (q + u128::from(up), true)
}

/// Rounds the exact value (-1)^sign * sig * 2^exp to format `f` under `env` and packs it,
/// raising PE, UE and OE as x86 does (tininess after rounding; FTZ flushes tiny results to
/// zero with UE and PE when underflow is masked). `sig` may carry a sticky bit in bit 0 as long
/// as it has at least two more significant bits than the format's precision.
pub(crate) fn round_pack(env: &mut Env, f: Fmt, sign: bool, exp: i32, sig: u128) -> u64 {
    if sig == 0 {
        return f.zero(sign);
    }
    let p = f.man + 1;
    let n = 128 - sig.leading_zeros();
    let e = exp + n as i32 - 1;
    let emin = f.emin();
    let tiny = if e < emin - 1 {
        true
    } else if e == emin - 1 {
        // Tiny unless rounding to full precision with an unbounded exponent carries up to
        // 2^emin.
        let (q, _) = if n > p { round_shift(sig, n - p, sign, env.rc) } else { (sig << (p - n), false) };
        q >> p == 0
    } else {
        false
    };
    if tiny && env.ftz && env.um {
        env.flags |= mx::UE | mx::PE;
        return f.zero(sign);
    }
    let (bits, inexact) = if e >= emin {
        let (mut q, inexact) = if n > p { round_shift(sig, n - p, sign, env.rc) } else { (sig << (p - n), false) };
        let mut e = e;
        if q >> p != 0 {
            q >>= 1;
            e += 1;
        }
        if e > f.emax() {
            env.flags |= mx::OE | mx::PE;
            let to_inf = match env.rc {
                RNE => true,
                RDOWN => sign,
                RUP => !sign,
                _ => false,
            };
            return if to_inf { f.inf(sign) } else { f.max_finite(sign) };
        }
        (((e + f.bias()) as u64) << f.man | (q as u64 & f.frac_mask()), inexact)
    } else {
        // Subnormal: the LSB weighs 2^(emin - man). A carry into bit `man` makes the smallest
        // normal, which the packing below encodes correctly.
        let shift = emin - f.man as i32 - exp;
        let (q, inexact) = if shift > 0 { round_shift(sig, shift as u32, sign, env.rc) } else { (sig << (-shift) as u32, false) };
        (q as u64, inexact)
    };
    if inexact {
        env.flags |= mx::PE;
    }
    if tiny && (inexact || !env.um) {
        env.flags |= mx::UE;
    }
    f.signed(sign, bits)
}

/// a + b (or a - b with `sub`).
pub(crate) fn add(env: &mut Env, f: Fmt, a: u64, b: u64, sub: bool) -> u64 {
    if let Some(n) = env.nan2(f, a, b) {
        return n;
    }
    let a = env.input(f, a);
    let b = env.input(f, b) ^ if sub { f.sign_bit() } else { 0 };
    let (sa, sb) = (f.sign(a), f.sign(b));
    match (f.is_inf(a), f.is_inf(b)) {
        (true, true) => return if sa == sb { a } else { env.invalid(f) },
        (true, false) => return a,
        (false, true) => return b,
        _ => {}
    }
    if f.is_zero(a) && f.is_zero(b) {
        return f.zero(if sa == sb { sa } else { env.rc == RDOWN });
    }
    let (ma, ea) = f.unpack(a);
    let (mb, eb) = f.unpack(b);
    // Put the operand with the larger exponent first and align the other to it, keeping 64
    // guard bits and jamming what falls off into a sticky bit.
    let ((ma, ea, sa), (mb, eb, sb)) = if ea >= eb { ((ma, ea, sa), (mb, eb, sb)) } else { ((mb, eb, sb), (ma, ea, sa)) };
    let big = u128::from(ma) << 64;
    let d = (ea - eb) as u32;
    let small = {
        let s = u128::from(mb) << 64;
        if d == 0 {
            s
        } else if d >= 127 {
            u128::from(s != 0)
        } else {
            (s >> d) | u128::from(s & ((1u128 << d) - 1) != 0)
        }
    };
    let exp = ea - 64;
    if sa == sb {
        return round_pack(env, f, sa, exp, big + small);
    }
    if big == small {
        return f.zero(env.rc == RDOWN);
    }
    if big > small {
        round_pack(env, f, sa, exp, big - small)
    } else {
        round_pack(env, f, sb, exp, small - big)
    }
}

pub(crate) fn mul(env: &mut Env, f: Fmt, a: u64, b: u64) -> u64 {
    if let Some(n) = env.nan2(f, a, b) {
        return n;
    }
    let a = env.input(f, a);
    let b = env.input(f, b);
    let sign = f.sign(a) != f.sign(b);
    if f.is_inf(a) || f.is_inf(b) {
        if f.is_zero(a) || f.is_zero(b) {
            return env.invalid(f);
        }
        return f.inf(sign);
    }
    if f.is_zero(a) || f.is_zero(b) {
        return f.zero(sign);
    }
    let (ma, ea) = f.unpack(a);
    let (mb, eb) = f.unpack(b);
    round_pack(env, f, sign, ea + eb, u128::from(ma) * u128::from(mb))
}

pub(crate) fn div(env: &mut Env, f: Fmt, a: u64, b: u64) -> u64 {
    if let Some(n) = env.nan2(f, a, b) {
        return n;
    }
    let a = env.input_quiet(f, a);
    let b = env.input_quiet(f, b);
    let sign = f.sign(a) != f.sign(b);
    if f.is_zero(b) && !f.is_inf(a) {
        // Division by zero takes priority over a denormal dividend.
        if f.is_zero(a) {
            return env.invalid(f);
        }
        env.flags |= mx::ZE;
        return f.inf(sign);
    }
    env.denormal(f, a);
    env.denormal(f, b);
    match (f.is_inf(a), f.is_inf(b)) {
        (true, true) => return env.invalid(f),
        (true, false) => return f.inf(sign),
        (false, true) => return f.zero(sign),
        _ => {}
    }
    if f.is_zero(a) {
        return f.zero(sign);
    }
    let (ma, ea) = f.unpack_norm(a);
    let (mb, eb) = f.unpack_norm(b);
    let num = u128::from(ma) << 72;
    let den = u128::from(mb);
    let q = (num / den) | u128::from(num % den != 0);
    round_pack(env, f, sign, ea - eb - 72, q)
}

/// Integer square root (the floor) of a u128 below 2^126, and whether it was exact. The host's
/// double square root is within a few thousand units of it; one Newton step in integers
/// brings that within one, and the compares below settle the floor.
fn isqrt(v: u128) -> (u128, bool) {
    debug_assert!(v < 1 << 126);
    if v == 0 {
        return (0, true);
    }
    let x = ((v as f64).sqrt() as u128).max(1);
    // Newton's step from any positive guess lands at or above the floor (AM-GM).
    let mut x = (x + v / x) / 2;
    while x * x > v {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= v {
        x += 1;
    }
    (x, x * x == v)
}

pub(crate) fn sqrt(env: &mut Env, f: Fmt, a: u64) -> u64 {
    if f.is_nan(a) {
        if f.is_snan(a) {
            env.flags |= mx::IE;
        }
        return f.quiet(a);
    }
    let a = env.input_quiet(f, a);
    if f.is_zero(a) {
        return a;
    }
    if f.sign(a) {
        // Invalid takes priority over a denormal operand.
        return env.invalid(f);
    }
    env.denormal(f, a);
    if f.is_inf(a) {
        return a;
    }
    let (mut m, mut e) = f.unpack_norm(a);
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    let (r, exact) = isqrt(u128::from(m) << 70);
    round_pack(env, f, false, (e - 70) / 2, r | u128::from(!exact))
}

/// Converts between the two formats (either direction).
pub(crate) fn convert(env: &mut Env, from: Fmt, to: Fmt, a: u64) -> u64 {
    let sign = from.sign(a);
    if from.is_nan(a) {
        if from.is_snan(a) {
            env.flags |= mx::IE;
        }
        // The payload keeps its top bits.
        let frac = a & from.frac_mask();
        let frac = if to.man >= from.man { frac << (to.man - from.man) } else { frac >> (from.man - to.man) };
        return to.quiet(to.signed(sign, (to.exp_ones() << to.man) | frac));
    }
    let a = env.input(from, a);
    if from.is_inf(a) {
        return to.inf(sign);
    }
    if from.is_zero(a) {
        return to.zero(sign);
    }
    let (m, e) = from.unpack(a);
    round_pack(env, to, sign, e, u128::from(m))
}

/// Converts a signed integer to format `f`.
pub(crate) fn from_int(env: &mut Env, f: Fmt, v: i64) -> u64 {
    round_pack(env, f, v < 0, 0, u128::from(v.unsigned_abs()))
}

/// Converts to a signed integer of `bits` (32 or 64) bits, rounding by `rc` (`RZ` for the
/// truncating forms). NaNs and values out of range raise IE and give the integer indefinite
/// (the most negative value); DE is never raised.
pub(crate) fn to_int(env: &mut Env, f: Fmt, a: u64, bits: u32, rc: u8) -> u64 {
    let indefinite = 1u64 << (bits - 1);
    if f.is_nan(a) || f.is_inf(a) {
        env.flags |= mx::IE;
        return indefinite;
    }
    let a = env.input_quiet(f, a);
    if f.is_zero(a) {
        return 0;
    }
    let sign = f.sign(a);
    let (m, e) = f.unpack(a);
    let (mag, inexact) = if e >= 0 {
        if e > 64 {
            env.flags |= mx::IE;
            return indefinite;
        }
        (u128::from(m) << e, false)
    } else {
        round_shift(u128::from(m), (-e) as u32, sign, rc)
    };
    let limit = if sign { 1u128 << (bits - 1) } else { (1u128 << (bits - 1)) - 1 };
    if mag > limit {
        env.flags |= mx::IE;
        return indefinite;
    }
    if inexact {
        env.flags |= mx::PE;
    }
    let v = if sign { (mag as u64).wrapping_neg() } else { mag as u64 };
    if bits == 32 {
        v & 0xFFFF_FFFF
    } else {
        v
    }
}

/// Rounds to an integral value in the same format (ROUNDPS and friends): SNaNs raise IE, and
/// PE is raised for an inexact result unless `suppress_pe`. Denormals raise no DE.
pub(crate) fn round_int(env: &mut Env, f: Fmt, a: u64, rc: u8, suppress_pe: bool) -> u64 {
    if f.is_nan(a) {
        if f.is_snan(a) {
            env.flags |= mx::IE;
        }
        return f.quiet(a);
    }
    let a = env.input_quiet(f, a);
    if f.is_inf(a) || f.is_zero(a) {
        return a;
    }
    let sign = f.sign(a);
    let (m, e) = f.unpack(a);
    if e >= 0 {
        return a;
    }
    let (q, inexact) = round_shift(u128::from(m), (-e) as u32, sign, rc);
    if inexact && !suppress_pe {
        env.flags |= mx::PE;
    }
    // An integer of at most man + 1 bits: exact in the format.
    let mut quiet = Env { flags: 0, ..*env };
    round_pack(&mut quiet, f, sign, 0, q)
}

/// How two values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    Less,
    Equal,
    Greater,
    Unordered,
}

/// Compares `a` with `b`. `signaling`: a QNaN raises IE too (an SNaN always does). Denormals
/// raise DE (or are zero under DAZ).
pub(crate) fn compare(env: &mut Env, f: Fmt, a: u64, b: u64, signaling: bool) -> Order {
    if f.is_nan(a) || f.is_nan(b) {
        if signaling || f.is_snan(a) || f.is_snan(b) {
            env.flags |= mx::IE;
        }
        return Order::Unordered;
    }
    let a = env.input(f, a);
    let b = env.input(f, b);
    order(f, a, b)
}

/// The order of two non-NaN values.
fn order(f: Fmt, a: u64, b: u64) -> Order {
    if f.is_zero(a) && f.is_zero(b) {
        return Order::Equal;
    }
    // Sign-magnitude to a monotonic integer key.
    let key = |v: u64| -> i128 {
        let m = i128::from(f.abs(v));
        if f.sign(v) {
            -m
        } else {
            m
        }
    };
    match key(a).cmp(&key(b)) {
        std::cmp::Ordering::Less => Order::Less,
        std::cmp::Ordering::Equal => Order::Equal,
        std::cmp::Ordering::Greater => Order::Greater,
    }
}

/// MINPS/MAXPS on one element: a NaN in either operand (QNaN too) raises IE and returns the
/// second operand, as do two zeros; otherwise the smaller (larger) of the two.
pub(crate) fn min_max(env: &mut Env, f: Fmt, a: u64, b: u64, max: bool) -> u64 {
    // DAZ applies even to the operand returned beside a NaN; DE is not raised then.
    let a = env.input_quiet(f, a);
    let b = env.input_quiet(f, b);
    if f.is_nan(a) || f.is_nan(b) {
        env.flags |= mx::IE;
        return b;
    }
    env.denormal(f, a);
    env.denormal(f, b);
    let pick_a = match order(f, a, b) {
        Order::Less => !max,
        Order::Greater => max,
        _ => false,
    };
    if pick_a && !(f.is_zero(a) && f.is_zero(b)) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(rc: u8) -> Env {
        Env::new(mx::DEFAULT | (u32::from(rc) << mx::RC_SHIFT))
    }

    #[test]
    fn sdm_style_vectors() {
        let mut e = env(RNE);
        // 1.5 + 2.25 = 3.75
        assert_eq!(add(&mut e, F32, 0x3FC0_0000, 0x4010_0000, false), 0x4070_0000);
        assert_eq!(e.flags, 0);
        // 1/3 in single precision: 0x3EAAAAAB, inexact.
        assert_eq!(div(&mut e, F32, 0x3F80_0000, 0x4040_0000), 0x3EAA_AAAB);
        assert_eq!(e.flags, mx::PE);
        // Toward zero: 0x3EAAAAAA.
        let mut e = env(RZ);
        assert_eq!(div(&mut e, F32, 0x3F80_0000, 0x4040_0000), 0x3EAA_AAAA);
        // sqrt(2) double: 0x3FF6A09E667F3BCD.
        let mut e = env(RNE);
        assert_eq!(sqrt(&mut e, F64, 0x4000_0000_0000_0000), 0x3FF6_A09E_667F_3BCD);
        // inf - inf: QNaN indefinite with IE.
        let mut e = env(RNE);
        assert_eq!(add(&mut e, F32, 0x7F80_0000, 0x7F80_0000, true), 0xFFC0_0000);
        assert_eq!(e.flags, mx::IE);
        // SNaN + QNaN: the first operand's NaN, quieted.
        let mut e = env(RNE);
        assert_eq!(add(&mut e, F32, 0x7F80_0001, 0xFFC0_1234, false), 0x7FC0_0001);
        assert_eq!(e.flags, mx::IE);
        // 1/0: +inf with ZE.
        let mut e = env(RNE);
        assert_eq!(div(&mut e, F64, 0x3FF0_0000_0000_0000, 0), 0x7FF0_0000_0000_0000);
        assert_eq!(e.flags, mx::ZE);
        // max * 2 rounds to +inf (nearest) or max (toward zero).
        let mut e = env(RNE);
        assert_eq!(mul(&mut e, F32, 0x7F7F_FFFF, 0x4000_0000), 0x7F80_0000);
        assert_eq!(e.flags, mx::OE | mx::PE);
        let mut e = env(RZ);
        assert_eq!(mul(&mut e, F32, 0x7F7F_FFFF, 0x4000_0000), 0x7F7F_FFFF);
        // Smallest normal / 2: a denormal, exact, so no UE while masked.
        let mut e = env(RNE);
        assert_eq!(mul(&mut e, F32, 0x0080_0000, 0x3F00_0000), 0x0040_0000);
        assert_eq!(e.flags, 0);
        // ... and flushed to zero under FTZ.
        let mut e = Env::new(mx::DEFAULT | mx::FTZ);
        assert_eq!(mul(&mut e, F32, 0x0080_0000, 0x3F00_0000), 0);
        assert_eq!(e.flags, mx::UE | mx::PE);
    }

    #[test]
    fn integer_conversions() {
        let mut e = env(RNE);
        assert_eq!(to_int(&mut e, F32, 0x4F00_0000, 32, RNE), 0x8000_0000, "2^31 overflows");
        assert_eq!(e.flags, mx::IE);
        let mut e = env(RNE);
        assert_eq!(to_int(&mut e, F32, 0xCF00_0000, 32, RNE), 0x8000_0000, "-2^31 fits");
        assert_eq!(e.flags, 0);
        let mut e = env(RNE);
        assert_eq!(to_int(&mut e, F64, 0x4004_0000_0000_0000, 32, RNE), 2, "2.5 to even");
        assert_eq!(to_int(&mut e, F64, 0x4004_0000_0000_0000, 32, RZ), 2);
        assert_eq!(to_int(&mut e, F64, 0xC004_0000_0000_0000, 32, RDOWN), 0xFFFF_FFFD);
        assert_eq!(e.flags, mx::PE);
        let mut e = env(RNE);
        assert_eq!(to_int(&mut e, F64, 0x7FF8_0000_0000_0000, 64, RZ), 0x8000_0000_0000_0000);
        assert_eq!(from_int(&mut e, F32, 16_777_217), 0x4B80_0000, "2^24 + 1 rounds to even");
        assert_eq!(e.flags, mx::IE | mx::PE);
    }

    #[test]
    fn round_to_integral() {
        let mut e = env(RNE);
        assert_eq!(round_int(&mut e, F32, 0x3FC0_0000, RNE, false), 0x4000_0000, "1.5 -> 2");
        assert_eq!(round_int(&mut e, F32, 0xBF00_0000, RNE, false), 0x8000_0000, "-0.5 -> -0");
        assert_eq!(round_int(&mut e, F32, 0xBF00_0000, RDOWN, true), 0xBF80_0000, "-0.5 -> -1");
        assert_eq!(e.flags, mx::PE);
    }
}

/// Bit-exactness against the host processor: random and special operands under every rounding
/// mode with and without DAZ and FTZ, all exceptions masked.
#[cfg(all(test, target_arch = "x86_64"))]
mod host {
    use super::*;
    use std::arch::asm;

    macro_rules! host_bin {
        ($name:ident, $insn:literal, $mov:literal) => {
            fn $name(a: u64, b: u64, csr: u32) -> (u64, u32) {
                let mut st = [csr, 0u32];
                let r: u64;
                // SAFETY: loads MXCSR with all exceptions masked, runs one SSE instruction on
                // registers, and restores the caller's MXCSR. The result is `out`, not
                // `lateout`: `p` is used after it is written, so they must not share a register
                // (in release builds they did, and the last STMXCSR wrote through the result).
                unsafe {
                    asm!(
                        "stmxcsr [{p} + 4]",
                        "ldmxcsr [{p}]",
                        concat!($mov, " {x}, {a}"),
                        concat!($mov, " {y}, {b}"),
                        concat!($insn, " {x}, {y}"),
                        concat!($mov, " {r}, {x}"),
                        "stmxcsr [{p}]",
                        "ldmxcsr [{p} + 4]",
                        p = in(reg) st.as_mut_ptr(),
                        a = in(reg) a,
                        b = in(reg) b,
                        r = out(reg) r,
                        x = out(xmm_reg) _,
                        y = out(xmm_reg) _,
                    );
                }
                (r, st[0])
            }
        };
    }
    host_bin!(h_addss, "addss", "movq");
    host_bin!(h_subss, "subss", "movq");
    host_bin!(h_mulss, "mulss", "movq");
    host_bin!(h_divss, "divss", "movq");
    host_bin!(h_minss, "minss", "movq");
    host_bin!(h_maxss, "maxss", "movq");
    host_bin!(h_sqrtss, "sqrtss", "movq");
    host_bin!(h_addsd, "addsd", "movq");
    host_bin!(h_subsd, "subsd", "movq");
    host_bin!(h_mulsd, "mulsd", "movq");
    host_bin!(h_divsd, "divsd", "movq");
    host_bin!(h_minsd, "minsd", "movq");
    host_bin!(h_maxsd, "maxsd", "movq");
    host_bin!(h_sqrtsd, "sqrtsd", "movq");
    host_bin!(h_cvtss2sd, "cvtss2sd", "movq");
    host_bin!(h_cvtsd2ss, "cvtsd2ss", "movq");

    macro_rules! host_to_int {
        ($name:ident, $insn:literal, $dst:literal) => {
            fn $name(a: u64, csr: u32) -> (u64, u32) {
                let mut st = [csr, 0u32];
                let mut r: u64 = 0;
                // SAFETY: as in `host_bin`.
                unsafe {
                    asm!(
                        "stmxcsr [{p} + 4]",
                        "ldmxcsr [{p}]",
                        "movq {x}, {a}",
                        concat!($insn, " ", $dst, ", {x}"),
                        "stmxcsr [{p}]",
                        "ldmxcsr [{p} + 4]",
                        p = in(reg) st.as_mut_ptr(),
                        a = in(reg) a,
                        r = inout(reg) r,
                        x = out(xmm_reg) _,
                    );
                }
                (r, st[0])
            }
        };
    }
    host_to_int!(h_cvtss2si32, "cvtss2si", "{r:e}");
    host_to_int!(h_cvttss2si32, "cvttss2si", "{r:e}");
    host_to_int!(h_cvtsd2si64, "cvtsd2si", "{r}");
    host_to_int!(h_cvttsd2si64, "cvttsd2si", "{r}");
    host_to_int!(h_cvtsd2si32, "cvtsd2si", "{r:e}");
    host_to_int!(h_cvtss2si64, "cvtss2si", "{r}");

    macro_rules! host_from_int {
        ($name:ident, $insn:literal, $src:literal) => {
            fn $name(v: u64, csr: u32) -> (u64, u32) {
                let mut st = [csr, 0u32];
                let r: u64;
                // SAFETY: as in `host_bin`.
                unsafe {
                    asm!(
                        "stmxcsr [{p} + 4]",
                        "ldmxcsr [{p}]",
                        "xorps {x}, {x}",
                        concat!($insn, " {x}, ", $src),
                        "movq {r}, {x}",
                        "stmxcsr [{p}]",
                        "ldmxcsr [{p} + 4]",
                        p = in(reg) st.as_mut_ptr(),
                        v = in(reg) v,
                        r = out(reg) r,
                        x = out(xmm_reg) _,
                    );
                }
                (r, st[0])
            }
        };
    }
    host_from_int!(h_cvtsi2ss64, "cvtsi2ss", "{v}");
    host_from_int!(h_cvtsi2sd64, "cvtsi2sd", "{v}");
    host_from_int!(h_cvtsi2ss32, "cvtsi2ss", "{v:e}");

    macro_rules! host_round {
        ($name:ident, $insn:literal) => {
            fn $name(a: u64, csr: u32, imm: u8) -> (u64, u32) {
                macro_rules! one {
                    ($imm:literal) => {{
                        let mut st = [csr, 0u32];
                        let r: u64;
                        // SAFETY: as in `host_bin`.
                        unsafe {
                            asm!(
                                "stmxcsr [{p} + 4]",
                                "ldmxcsr [{p}]",
                                "movq {x}, {a}",
                                concat!($insn, " {x}, {x}, ", $imm),
                                "movq {r}, {x}",
                                "stmxcsr [{p}]",
                                "ldmxcsr [{p} + 4]",
                                p = in(reg) st.as_mut_ptr(),
                                a = in(reg) a,
                                r = out(reg) r,
                                x = out(xmm_reg) _,
                            );
                        }
                        (r, st[0])
                    }};
                }
                match imm & 0xF {
                    0 => one!("0"),
                    1 => one!("1"),
                    2 => one!("2"),
                    3 => one!("3"),
                    4 => one!("4"),
                    8 => one!("8"),
                    9 => one!("9"),
                    10 => one!("10"),
                    11 => one!("11"),
                    _ => one!("12"),
                }
            }
        };
    }
    host_round!(h_roundss, "roundss");
    host_round!(h_roundsd, "roundsd");

    /// xorshift64*, deterministic.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// An operand biased toward the interesting cases: zeros, denormals, infinities, NaNs,
    /// exponents near the edges, significands near all-ones.
    fn operand(r: &mut Rng, f: Fmt) -> u64 {
        let x = r.next();
        let sign = if x & 1 != 0 { f.sign_bit() } else { 0 };
        let frac = match (x >> 1) & 7 {
            0 => 0,
            1 => f.frac_mask(),
            2 => 1,
            3 => f.frac_mask() - (r.next() & 7),
            _ => r.next() & f.frac_mask(),
        };
        let ones = f.exp_ones();
        let exp = match (x >> 4) & 15 {
            0 => 0,
            1 => ones,
            2 => 1,
            3 => ones - 1,
            4 => 1 + (r.next() % 30),
            5 => ones - 1 - (r.next() % 30),
            6 => f.bias() as u64 + (r.next() % 5),
            7 => f.bias() as u64 - (r.next() % 5),
            _ => r.next() % (ones + 1),
        };
        sign | (exp << f.man) | frac
    }

    fn csrs() -> Vec<u32> {
        let mut v = Vec::new();
        for rc in 0..4u32 {
            for extra in [0, mx::DAZ, mx::FTZ, mx::DAZ | mx::FTZ] {
                v.push(mx::DEFAULT | (rc << mx::RC_SHIFT) | extra);
            }
        }
        v
    }

    fn check_bin(name: &str, f: Fmt, host: fn(u64, u64, u32) -> (u64, u32), mine: fn(&mut Env, u64, u64) -> u64, n: usize) {
        let mut r = Rng(0x1234_5678_9ABC_DEF1 ^ name.len() as u64);
        let mut bad = Vec::new();
        for csr in csrs() {
            for _ in 0..n {
                let (a, b) = (operand(&mut r, f), operand(&mut r, f));
                let (hv, hc) = host(a, b, csr);
                let mut e = Env::new(csr);
                let v = mine(&mut e, a, b);
                let mask = if f == F32 { 0xFFFF_FFFF } else { u64::MAX };
                if (v, e.flags) != (hv & mask, hc & mx::FLAGS) {
                    bad.push(format!("{name} {a:#x} {b:#x} mxcsr {csr:#x}: mine {v:#x}/{:#x} host {:#x}/{:#x}", e.flags, hv & mask, hc & mx::FLAGS));
                }
            }
        }
        report(bad);
    }

    fn report(bad: Vec<String>) {
        if !bad.is_empty() {
            panic!("{} mismatches, first:\n{}", bad.len(), bad.iter().take(12).cloned().collect::<Vec<_>>().join("\n"));
        }
    }

    const N: usize = 20_000;

    #[test]
    fn single_arithmetic_matches_host() {
        check_bin("addss", F32, h_addss, |e, a, b| add(e, F32, a, b, false), N);
        check_bin("subss", F32, h_subss, |e, a, b| add(e, F32, a, b, true), N);
        check_bin("mulss", F32, h_mulss, |e, a, b| mul(e, F32, a, b), N);
        check_bin("divss", F32, h_divss, |e, a, b| div(e, F32, a, b), N);
        check_bin("sqrtss", F32, h_sqrtss, |e, _, b| sqrt(e, F32, b), N);
        check_bin("minss", F32, h_minss, |e, a, b| min_max(e, F32, a, b, false), N);
        check_bin("maxss", F32, h_maxss, |e, a, b| min_max(e, F32, a, b, true), N);
    }

    #[test]
    fn double_arithmetic_matches_host() {
        check_bin("addsd", F64, h_addsd, |e, a, b| add(e, F64, a, b, false), N);
        check_bin("subsd", F64, h_subsd, |e, a, b| add(e, F64, a, b, true), N);
        check_bin("mulsd", F64, h_mulsd, |e, a, b| mul(e, F64, a, b), N);
        check_bin("divsd", F64, h_divsd, |e, a, b| div(e, F64, a, b), N);
        check_bin("sqrtsd", F64, h_sqrtsd, |e, _, b| sqrt(e, F64, b), N);
        check_bin("minsd", F64, h_minsd, |e, a, b| min_max(e, F64, a, b, false), N);
        check_bin("maxsd", F64, h_maxsd, |e, a, b| min_max(e, F64, a, b, true), N);
    }

    fn check_un(name: &str, f: Fmt, host: impl Fn(u64, u32) -> (u64, u32), mine: impl Fn(&mut Env, u64) -> u64, mask: u64) {
        let mut r = Rng(0xDEAD_BEEF_0000_0001 ^ name.len() as u64);
        let mut bad = Vec::new();
        for csr in csrs() {
            for _ in 0..N {
                let a = operand(&mut r, f);
                let (hv, hc) = host(a, csr);
                let mut e = Env::new(csr);
                let v = mine(&mut e, a);
                if (v, e.flags) != (hv & mask, hc & mx::FLAGS) {
                    bad.push(format!("{name} {a:#x} mxcsr {csr:#x}: mine {v:#x}/{:#x} host {:#x}/{:#x}", e.flags, hv & mask, hc & mx::FLAGS));
                }
            }
        }
        report(bad);
    }

    #[test]
    fn conversions_match_host() {
        let rc = |csr: u32| ((csr >> mx::RC_SHIFT) & 3) as u8;
        check_un("cvtss2sd", F32, |a, c| h_cvtss2sd(0, a, c), |e, a| convert(e, F32, F64, a), u64::MAX);
        check_un("cvtsd2ss", F64, |a, c| h_cvtsd2ss(0, a, c), |e, a| convert(e, F64, F32, a), 0xFFFF_FFFF);
        check_un("cvtss2si", F32, h_cvtss2si32, |e, a| to_int(e, F32, a, 32, e.rc), 0xFFFF_FFFF);
        check_un("cvttss2si", F32, h_cvttss2si32, |e, a| to_int(e, F32, a, 32, RZ), 0xFFFF_FFFF);
        check_un("cvtss2si64", F32, h_cvtss2si64, |e, a| to_int(e, F32, a, 64, e.rc), u64::MAX);
        check_un("cvtsd2si64", F64, h_cvtsd2si64, |e, a| to_int(e, F64, a, 64, e.rc), u64::MAX);
        check_un("cvttsd2si64", F64, h_cvttsd2si64, |e, a| to_int(e, F64, a, 64, RZ), u64::MAX);
        check_un("cvtsd2si32", F64, h_cvtsd2si32, |e, a| to_int(e, F64, a, 32, e.rc), 0xFFFF_FFFF);
        let _ = rc;
        let mut r = Rng(77);
        for csr in csrs() {
            for _ in 0..N {
                let v = match r.next() % 4 {
                    0 => r.next(),
                    1 => r.next() >> (r.next() % 64),
                    2 => (r.next() >> (r.next() % 64)).wrapping_neg(),
                    _ => r.next() & 0xFFFF_FFFF,
                };
                for (name, h, f, bits) in [
                    ("cvtsi2ss64", h_cvtsi2ss64 as fn(u64, u32) -> (u64, u32), F32, 64),
                    ("cvtsi2sd64", h_cvtsi2sd64, F64, 64),
                    ("cvtsi2ss32", h_cvtsi2ss32, F32, 32),
                ] {
                    let (hv, hc) = h(v, csr);
                    let mut e = Env::new(csr);
                    let iv = if bits == 32 { i64::from(v as i32) } else { v as i64 };
                    let mine = from_int(&mut e, f, iv);
                    let mask = if f == F32 { 0xFFFF_FFFF } else { u64::MAX };
                    assert_eq!((mine, e.flags), (hv & mask, hc & mx::FLAGS), "{name} {v:#x} mxcsr {csr:#x}");
                }
            }
        }
    }

    #[test]
    fn round_matches_host() {
        for imm in [0u8, 1, 2, 3, 4, 8, 9, 10, 11, 12] {
            let rc_of = move |e: &Env| if imm & 4 != 0 { e.rc } else { imm & 3 };
            check_un("roundss", F32, |a, c| h_roundss(a, c, imm), |e, a| {
                let rc = rc_of(e);
                round_int(e, F32, a, rc, imm & 8 != 0)
            }, 0xFFFF_FFFF);
            check_un("roundsd", F64, |a, c| h_roundsd(a, c, imm), |e, a| {
                let rc = rc_of(e);
                round_int(e, F64, a, rc, imm & 8 != 0)
            }, u64::MAX);
        }
    }

    #[test]
    fn integer_square_roots_are_floors() {
        // The digit-by-digit method, one bit pair at a time.
        fn slow(v: u128) -> (u128, bool) {
            let (mut rem, mut root, mut bit) = (v, 0u128, 1u128 << 124);
            while bit != 0 {
                if rem >= root + bit {
                    rem -= root + bit;
                    root = (root >> 1) + bit;
                } else {
                    root >>= 1;
                }
                bit >>= 2;
            }
            (root, rem == 0)
        }
        let mut x = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834u128;
        let mut vals = vec![0, 1, 2, 3, 4, 15, 16, 17, (1 << 124) - 1, 1 << 124, (1u128 << 125) + 12345];
        for r in [3u128, 0xFFFF_FFFF, (1 << 62) - 1, 0x2_0000_0000_0001] {
            vals.extend([r * r - 1, r * r, r * r + 1]);
        }
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.push(x >> (2 + (x % 100) as u32));
        }
        for v in vals {
            assert_eq!(isqrt(v), slow(v), "{v:#x}");
        }
    }
}
