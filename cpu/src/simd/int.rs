//! Packed integer arithmetic on MMX and XMM registers: add/subtract (wrapping and
//! saturating), logic (with the bitwise float forms ANDPS...XORPD), compares, multiplies,
//! averages, minimum/maximum, sums of absolute differences (PSADBW, MPSADBW), the SSSE3
//! sign/absolute/horizontal operations, shifts, PTEST, PHMINPOSUW and PCLMULQDQ.

use super::{binary, by_mem, lanes, pick, Form, X};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::flags::{AF, CF, OF, PF, SF, ZF};
use iced_x86::Mnemonic as M;
use lanes::{map16, map32, map64, map8};

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    let (mmx, mem) = (f.mmx, f.mem);
    Some(match f.m {
        M::Paddb => pick!(paddb, mmx, mem),
        M::Paddw => pick!(paddw, mmx, mem),
        M::Paddd => pick!(paddd, mmx, mem),
        M::Paddq => pick!(paddq, mmx, mem),
        M::Psubb => pick!(psubb, mmx, mem),
        M::Psubw => pick!(psubw, mmx, mem),
        M::Psubd => pick!(psubd, mmx, mem),
        M::Psubq => pick!(psubq, mmx, mem),
        M::Paddsb => pick!(paddsb, mmx, mem),
        M::Paddsw => pick!(paddsw, mmx, mem),
        M::Psubsb => pick!(psubsb, mmx, mem),
        M::Psubsw => pick!(psubsw, mmx, mem),
        M::Paddusb => pick!(paddusb, mmx, mem),
        M::Paddusw => pick!(paddusw, mmx, mem),
        M::Psubusb => pick!(psubusb, mmx, mem),
        M::Psubusw => pick!(psubusw, mmx, mem),
        M::Pand | M::Andps | M::Andpd => pick!(pand, mmx, mem),
        M::Pandn | M::Andnps | M::Andnpd => pick!(pandn, mmx, mem),
        M::Por | M::Orps | M::Orpd => pick!(por, mmx, mem),
        M::Pxor | M::Xorps | M::Xorpd => pick!(pxor, mmx, mem),
        M::Pcmpeqb => pick!(pcmpeqb, mmx, mem),
        M::Pcmpeqw => pick!(pcmpeqw, mmx, mem),
        M::Pcmpeqd => pick!(pcmpeqd, mmx, mem),
        M::Pcmpeqq => pick!(pcmpeqq, mmx, mem),
        M::Pcmpgtb => pick!(pcmpgtb, mmx, mem),
        M::Pcmpgtw => pick!(pcmpgtw, mmx, mem),
        M::Pcmpgtd => pick!(pcmpgtd, mmx, mem),
        M::Pcmpgtq => pick!(pcmpgtq, mmx, mem),
        M::Pmullw => pick!(pmullw, mmx, mem),
        M::Pmulhw => pick!(pmulhw, mmx, mem),
        M::Pmulhuw => pick!(pmulhuw, mmx, mem),
        M::Pmulhrsw => pick!(pmulhrsw, mmx, mem),
        M::Pmuludq => pick!(pmuludq, mmx, mem),
        M::Pmuldq => pick!(pmuldq, mmx, mem),
        M::Pmulld => pick!(pmulld, mmx, mem),
        M::Pmaddwd => pick!(pmaddwd, mmx, mem),
        M::Pmaddubsw => pick!(pmaddubsw, mmx, mem),
        M::Pavgb => pick!(pavgb, mmx, mem),
        M::Pavgw => pick!(pavgw, mmx, mem),
        M::Pminub => pick!(pminub, mmx, mem),
        M::Pmaxub => pick!(pmaxub, mmx, mem),
        M::Pminsw => pick!(pminsw, mmx, mem),
        M::Pmaxsw => pick!(pmaxsw, mmx, mem),
        M::Pminsb => pick!(pminsb, mmx, mem),
        M::Pmaxsb => pick!(pmaxsb, mmx, mem),
        M::Pminuw => pick!(pminuw, mmx, mem),
        M::Pmaxuw => pick!(pmaxuw, mmx, mem),
        M::Pminsd => pick!(pminsd, mmx, mem),
        M::Pmaxsd => pick!(pmaxsd, mmx, mem),
        M::Pminud => pick!(pminud, mmx, mem),
        M::Pmaxud => pick!(pmaxud, mmx, mem),
        M::Psadbw => pick!(psadbw, mmx, mem),
        M::Pabsb => pick!(pabsb, mmx, mem),
        M::Pabsw => pick!(pabsw, mmx, mem),
        M::Pabsd => pick!(pabsd, mmx, mem),
        M::Psignb => pick!(psignb, mmx, mem),
        M::Psignw => pick!(psignw, mmx, mem),
        M::Psignd => pick!(psignd, mmx, mem),
        M::Phaddw => pick!(phaddw, mmx, mem),
        M::Phaddd => pick!(phaddd, mmx, mem),
        M::Phaddsw => pick!(phaddsw, mmx, mem),
        M::Phsubw => pick!(phsubw, mmx, mem),
        M::Phsubd => pick!(phsubd, mmx, mem),
        M::Phsubsw => pick!(phsubsw, mmx, mem),
        M::Mpsadbw => pick!(mpsadbw, mmx, mem),
        M::Pclmulqdq => pick!(pclmulqdq, mmx, mem),
        M::Phminposuw => by_mem!(phminposuw, mem),
        M::Ptest => by_mem!(ptest, mem),
        M::Psrlw | M::Psrld | M::Psrlq | M::Psraw | M::Psrad | M::Psllw | M::Pslld | M::Psllq => {
            let (kind, lane) = match f.m {
                M::Psrlw => (SRL, 2),
                M::Psrld => (SRL, 4),
                M::Psrlq => (SRL, 8),
                M::Psraw => (SRA, 2),
                M::Psrad => (SRA, 4),
                M::Psllw => (SLL, 2),
                M::Pslld => (SLL, 4),
                _ => (SLL, 8),
            };
            *sub = kind | (lane << 8);
            if f.imm1 {
                if mmx {
                    shift_imm::<true> as Handler
                } else {
                    shift_imm::<false> as Handler
                }
            } else {
                pick!(shift, mmx, mem)
            }
        }
        M::Psrldq | M::Pslldq => {
            *sub = u64::from(f.m == M::Pslldq);
            shift_bytes as Handler
        }
        _ => return None,
    })
}

/// Defines a two-operand handler from its lane function `|a, b, w, imm|` (a = destination,
/// b = source, w = width in bytes).
macro_rules! binop {
    ($(#[$doc:meta])* $name:ident, |$a:pat_param, $b:pat_param, $w:pat_param, $imm:pat_param| $body:expr) => {
        $(#[$doc])*
        pub(super) fn $name<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
            let imm8 = i.imm as u8;
            binary::<MMX, MEM>(cpu, bus, i, |$a, $b, $w| {
                let $imm = imm8;
                $body
            })
        }
    };
}
pub(super) use binop;

#[inline(always)]
fn sat_i8(v: i32) -> u8 {
    v.clamp(-128, 127) as i8 as u8
}
#[inline(always)]
pub(super) fn sat_i16(v: i32) -> u16 {
    v.clamp(-32768, 32767) as i16 as u16
}
#[inline(always)]
pub(super) fn sat_u16(v: i32) -> u16 {
    v.clamp(0, 65535) as u16
}
#[inline(always)]
fn s8(v: u8) -> i32 {
    i32::from(v as i8)
}
#[inline(always)]
fn s16(v: u16) -> i32 {
    i32::from(v as i16)
}
#[inline(always)]
fn mask_if(c: bool) -> u64 {
    if c {
        u64::MAX
    } else {
        0
    }
}

binop!(paddb, |a, b, w, _| map8(a, b, w, u8::wrapping_add));
binop!(paddw, |a, b, w, _| map16(a, b, w, u16::wrapping_add));
binop!(paddd, |a, b, w, _| map32(a, b, w, u32::wrapping_add));
binop!(paddq, |a, b, w, _| map64(a, b, w, u64::wrapping_add));
binop!(psubb, |a, b, w, _| map8(a, b, w, u8::wrapping_sub));
binop!(psubw, |a, b, w, _| map16(a, b, w, u16::wrapping_sub));
binop!(psubd, |a, b, w, _| map32(a, b, w, u32::wrapping_sub));
binop!(psubq, |a, b, w, _| map64(a, b, w, u64::wrapping_sub));
binop!(paddsb, |a, b, w, _| map8(a, b, w, |x, y| sat_i8(s8(x) + s8(y))));
binop!(paddsw, |a, b, w, _| map16(a, b, w, |x, y| sat_i16(s16(x) + s16(y))));
binop!(psubsb, |a, b, w, _| map8(a, b, w, |x, y| sat_i8(s8(x) - s8(y))));
binop!(psubsw, |a, b, w, _| map16(a, b, w, |x, y| sat_i16(s16(x) - s16(y))));
binop!(paddusb, |a, b, w, _| map8(a, b, w, u8::saturating_add));
binop!(paddusw, |a, b, w, _| map16(a, b, w, u16::saturating_add));
binop!(psubusb, |a, b, w, _| map8(a, b, w, u8::saturating_sub));
binop!(psubusw, |a, b, w, _| map16(a, b, w, u16::saturating_sub));
binop!(pand, |a, b, w, _| map64(a, b, w, |x, y| x & y));
binop!(pandn, |a, b, w, _| map64(a, b, w, |x, y| !x & y));
binop!(por, |a, b, w, _| map64(a, b, w, |x, y| x | y));
binop!(pxor, |a, b, w, _| map64(a, b, w, |x, y| x ^ y));
binop!(pcmpeqb, |a, b, w, _| map8(a, b, w, |x, y| mask_if(x == y) as u8));
binop!(pcmpeqw, |a, b, w, _| map16(a, b, w, |x, y| mask_if(x == y) as u16));
binop!(pcmpeqd, |a, b, w, _| map32(a, b, w, |x, y| mask_if(x == y) as u32));
binop!(pcmpeqq, |a, b, w, _| map64(a, b, w, |x, y| mask_if(x == y)));
binop!(pcmpgtb, |a, b, w, _| map8(a, b, w, |x, y| mask_if(s8(x) > s8(y)) as u8));
binop!(pcmpgtw, |a, b, w, _| map16(a, b, w, |x, y| mask_if(s16(x) > s16(y)) as u16));
binop!(pcmpgtd, |a, b, w, _| map32(a, b, w, |x, y| mask_if(x as i32 > y as i32) as u32));
binop!(pcmpgtq, |a, b, w, _| map64(a, b, w, |x, y| mask_if(x as i64 > y as i64)));
binop!(pmullw, |a, b, w, _| map16(a, b, w, |x, y| x.wrapping_mul(y)));
binop!(pmulhw, |a, b, w, _| map16(a, b, w, |x, y| ((s16(x) * s16(y)) >> 16) as u16));
binop!(pmulhuw, |a, b, w, _| map16(a, b, w, |x, y| ((u32::from(x) * u32::from(y)) >> 16) as u16));
binop!(pmulhrsw, |a, b, w, _| map16(a, b, w, |x, y| ((((s16(x) * s16(y)) >> 14) + 1) >> 1) as u16));
binop!(pmuludq, |a, b, w, _| map64(a, b, w, |x, y| (x & 0xFFFF_FFFF) * (y & 0xFFFF_FFFF)));
binop!(pmuldq, |a, b, w, _| map64(a, b, w, |x, y| (i64::from(x as i32) * i64::from(y as i32)) as u64));
binop!(pmulld, |a, b, w, _| map32(a, b, w, u32::wrapping_mul));
binop!(
    /// Pairs of signed word products summed into doublewords (0x8000 * 0x8000 twice wraps to
    /// 0x80000000, as on hardware).
    pmaddwd,
    |a, b, w, _| map32(a, b, w, |x, y| {
        let p0 = s16(x as u16) * s16(y as u16);
        let p1 = s16((x >> 16) as u16) * s16((y >> 16) as u16);
        p0.wrapping_add(p1) as u32
    })
);
binop!(
    /// Unsigned bytes of the destination times signed bytes of the source, pairs summed with
    /// signed saturation.
    pmaddubsw,
    |a, b, w, _| map16(a, b, w, |x, y| {
        let p0 = i32::from(x as u8) * s8(y as u8);
        let p1 = i32::from((x >> 8) as u8) * s8((y >> 8) as u8);
        sat_i16(p0 + p1)
    })
);
binop!(pavgb, |a, b, w, _| map8(a, b, w, |x, y| ((u16::from(x) + u16::from(y) + 1) >> 1) as u8));
binop!(pavgw, |a, b, w, _| map16(a, b, w, |x, y| ((u32::from(x) + u32::from(y) + 1) >> 1) as u16));
binop!(pminub, |a, b, w, _| map8(a, b, w, u8::min));
binop!(pmaxub, |a, b, w, _| map8(a, b, w, u8::max));
binop!(pminsw, |a, b, w, _| map16(a, b, w, |x, y| (x as i16).min(y as i16) as u16));
binop!(pmaxsw, |a, b, w, _| map16(a, b, w, |x, y| (x as i16).max(y as i16) as u16));
binop!(pminsb, |a, b, w, _| map8(a, b, w, |x, y| (x as i8).min(y as i8) as u8));
binop!(pmaxsb, |a, b, w, _| map8(a, b, w, |x, y| (x as i8).max(y as i8) as u8));
binop!(pminuw, |a, b, w, _| map16(a, b, w, u16::min));
binop!(pmaxuw, |a, b, w, _| map16(a, b, w, u16::max));
binop!(pminsd, |a, b, w, _| map32(a, b, w, |x, y| (x as i32).min(y as i32) as u32));
binop!(pmaxsd, |a, b, w, _| map32(a, b, w, |x, y| (x as i32).max(y as i32) as u32));
binop!(pminud, |a, b, w, _| map32(a, b, w, u32::min));
binop!(pmaxud, |a, b, w, _| map32(a, b, w, u32::max));
binop!(
    /// Per quadword: the sum of absolute byte differences in its low word.
    psadbw,
    |a, b, w, _| map64(a, b, w, |x, y| (0..8).map(|k| u64::from(((x >> (8 * k)) as u8).abs_diff((y >> (8 * k)) as u8))).sum())
);
binop!(pabsb, |a, b, w, _| map8(a, b, w, |_, y| (y as i8).unsigned_abs()));
binop!(pabsw, |a, b, w, _| map16(a, b, w, |_, y| (y as i16).unsigned_abs()));
binop!(pabsd, |a, b, w, _| map32(a, b, w, |_, y| (y as i32).unsigned_abs()));
binop!(psignb, |a, b, w, _| map8(a, b, w, |x, y| match (y as i8).signum() {
    -1 => x.wrapping_neg(),
    0 => 0,
    _ => x,
}));
binop!(psignw, |a, b, w, _| map16(a, b, w, |x, y| match (y as i16).signum() {
    -1 => x.wrapping_neg(),
    0 => 0,
    _ => x,
}));
binop!(psignd, |a, b, w, _| map32(a, b, w, |x, y| match (y as i32).signum() {
    -1 => x.wrapping_neg(),
    0 => 0,
    _ => x,
}));

/// Horizontal word operation: adjacent pairs of the destination, then of the source.
#[inline(always)]
fn horizontal16(a: X, b: X, w: usize, f: impl Fn(u16, u16) -> u16) -> X {
    let (a, b) = (lanes::w(a), lanes::w(b));
    let n = w / 2;
    let h = n / 2;
    lanes::from_w(std::array::from_fn(|k| {
        if k >= n {
            0
        } else if k < h {
            f(a[2 * k], a[2 * k + 1])
        } else {
            f(b[2 * (k - h)], b[2 * (k - h) + 1])
        }
    }))
}

#[inline(always)]
fn horizontal32(a: X, b: X, w: usize, f: impl Fn(u32, u32) -> u32) -> X {
    let (a, b) = (lanes::d(a), lanes::d(b));
    let n = w / 4;
    let h = n / 2;
    lanes::from_d(std::array::from_fn(|k| {
        if k >= n {
            0
        } else if k < h {
            f(a[2 * k], a[2 * k + 1])
        } else {
            f(b[2 * (k - h)], b[2 * (k - h) + 1])
        }
    }))
}

binop!(phaddw, |a, b, w, _| horizontal16(a, b, w, u16::wrapping_add));
binop!(phaddd, |a, b, w, _| horizontal32(a, b, w, u32::wrapping_add));
binop!(phaddsw, |a, b, w, _| horizontal16(a, b, w, |x, y| sat_i16(s16(x) + s16(y))));
binop!(phsubw, |a, b, w, _| horizontal16(a, b, w, u16::wrapping_sub));
binop!(phsubd, |a, b, w, _| horizontal32(a, b, w, u32::wrapping_sub));
binop!(phsubsw, |a, b, w, _| horizontal16(a, b, w, |x, y| sat_i16(s16(x) - s16(y))));
binop!(
    /// Eight sums of absolute differences between a 4-byte block of the source (imm8 bits
    /// 1:0) and sliding 4-byte windows of the destination (starting at imm8 bit 2 * 4).
    mpsadbw,
    |a, b, _, imm| {
        let (a, b) = (lanes::b(a), lanes::b(b));
        let (so, dof) = (usize::from(imm & 3) * 4, usize::from((imm >> 2) & 1) * 4);
        lanes::from_w(std::array::from_fn(|j| (0..4).map(|k| u16::from(a[dof + j + k].abs_diff(b[so + k]))).sum()))
    }
);
binop!(
    /// Carry-less multiply of the quadwords imm8 bit 0 (destination) and bit 4 (source) pick.
    pclmulqdq,
    |a, b, _, imm| {
        let x = a[usize::from(imm & 1)];
        let y = b[usize::from((imm >> 4) & 1)];
        let mut r = 0u128;
        for k in 0..64 {
            if y >> k & 1 != 0 {
                r ^= u128::from(x) << k;
            }
        }
        lanes::from128(r)
    }
);

/// PHMINPOSUW xmm, xmm/m128: the smallest unsigned word and its index.
fn phminposuw<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = lanes::w(cpu.src_x::<MEM>(bus, i)?);
    let (mut idx, mut min) = (0usize, s[0]);
    for (k, &v) in s.iter().enumerate().skip(1) {
        if v < min {
            min = v;
            idx = k;
        }
    }
    cpu.set_xmm(i.r0, [u64::from(min) | ((idx as u64) << 16), 0]);
    Ok(())
}

/// PTEST: ZF = (dst AND src) == 0, CF = (NOT dst AND src) == 0; AF, OF, PF, SF cleared.
fn ptest<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = cpu.src_x::<MEM>(bus, i)?;
    let d = cpu.xmm(i.r0);
    let zf = (d[0] & s[0]) | (d[1] & s[1]) == 0;
    let cf = (!d[0] & s[0]) | (!d[1] & s[1]) == 0;
    let f = if zf { ZF } else { 0 } | if cf { CF } else { 0 };
    cpu.set_status(ZF | CF | AF | OF | PF | SF, f);
    Ok(())
}

const SRL: u64 = 0;
const SRA: u64 = 1;
const SLL: u64 = 2;

/// Shifts each lane (`imm2` bits 8+: lane size in bytes; bits 0-1: SRL, SRA, SLL) by
/// `count`; logical shifts past the lane width give zero, arithmetic ones the sign.
fn shift_lanes(v: X, count: u64, kind: u64, w: usize) -> X {
    let lane = (kind >> 8) as u32;
    let bits = lane * 8;
    let op = kind & 3;
    let one = |x: u64| -> u64 {
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        if count >= u64::from(bits) {
            return if op == SRA && (x >> (bits - 1)) & 1 != 0 { mask } else { 0 };
        }
        let c = count as u32;
        match op {
            SRL => x >> c,
            SLL => (x << c) & mask,
            _ => {
                let sx = ((x << (64 - bits)) as i64) >> (64 - bits);
                (sx >> c) as u64 & mask
            }
        }
    };
    let zero = [0, 0];
    match lane {
        2 => map16(v, zero, w, |x, _| one(u64::from(x)) as u16),
        4 => map32(v, zero, w, |x, _| one(u64::from(x)) as u32),
        _ => map64(v, zero, w, |x, _| one(x)),
    }
}

/// PSRLW...PSLLQ mm/xmm, mm/m64 or xmm/m128: the count is the source's low quadword.
fn shift<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let kind = i.imm2;
    binary::<MMX, MEM>(cpu, bus, i, |a, b, w| shift_lanes(a, b[0], kind, w))
}

/// The shift-by-immediate forms (operand 0 is the register shifted).
fn shift_imm<const MMX: bool>(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let count = i.imm & 0xFF;
    if MMX {
        cpu.mmx_ready()?;
        let r = shift_lanes([cpu.mm(i.r0), 0], count, i.imm2, 8);
        cpu.mmx_enter();
        cpu.set_mm(i.r0, r[0]);
    } else {
        cpu.sse_ready()?;
        let r = shift_lanes(cpu.xmm(i.r0), count, i.imm2, 16);
        cpu.set_xmm(i.r0, r);
    }
    Ok(())
}

/// PSRLDQ (`imm2` 0) / PSLLDQ (1) xmm, imm8: whole-register byte shifts.
fn shift_bytes(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = lanes::to128(cpu.xmm(i.r0));
    let n = (i.imm & 0xFF) as u32;
    let r = if n > 15 {
        0
    } else if i.imm2 == 1 {
        v << (8 * n)
    } else {
        v >> (8 * n)
    };
    cpu.set_xmm(i.r0, lanes::from128(r));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_ops() {
        // PADDSW saturates; PADDUSB too.
        let a = lanes::from_w([0x7FFF, 0x8000, 1, 0xFFFF, 0, 0, 0, 0]);
        let b = lanes::from_w([1, 0xFFFF, 2, 0xFFFF, 0, 0, 0, 0]);
        assert_eq!(lanes::w(map16(a, b, 16, |x, y| sat_i16(s16(x) + s16(y))))[..4], [0x7FFF, 0x8000, 3, 0xFFFE]);
        // PMADDWD's one overflow case.
        let a = lanes::from_w([0x8000, 0x8000, 0, 0, 0, 0, 0, 0]);
        let r = map32(a, a, 16, |x, y| (s16(x as u16) * s16(y as u16)).wrapping_add(s16((x >> 16) as u16) * s16((y >> 16) as u16)) as u32);
        assert_eq!(lanes::d(r)[0], 0x8000_0000);
        // PSRAW by more than 15 fills with the sign.
        let v = lanes::from_w([0x8000, 0x7FFF, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lanes::w(shift_lanes(v, 100, SRA | (2 << 8), 16))[..2], [0xFFFF, 0]);
        assert_eq!(lanes::w(shift_lanes(v, 4, SLL | (2 << 8), 16))[..2], [0, 0xFFF0]);
        // PHADDW on MMX width: a0+a1, a2+a3, b0+b1, b2+b3.
        let a = lanes::from_w([1, 2, 3, 4, 0, 0, 0, 0]);
        let b = lanes::from_w([10, 20, 30, 40, 0, 0, 0, 0]);
        assert_eq!(lanes::w(horizontal16(a, b, 8, u16::wrapping_add))[..4], [3, 7, 30, 70]);
    }
}
