//! Rearranging lanes: packs with saturation, unpacks (PUNPCK*, UNPCK*PS/PD), shuffles
//! (SHUFPS/PD, PSHUFD/HW/LW/W, PSHUFB), PALIGNR, blends (immediate and XMM0-controlled),
//! inserts and extracts (PINSR*, PEXTR*, INSERTPS, EXTRACTPS), and the sign/zero extensions
//! PMOVSX*/PMOVZX*.

use super::int::{binop, sat_i16, sat_u16};
use super::{binary, by_mem, lanes, pick, Form, X};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use iced_x86::{Code, Mnemonic as M};

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    use Code as C;
    let (mmx, mem) = (f.mmx, f.mem);
    Some(match f.m {
        M::Packsswb => pick!(packsswb, mmx, mem),
        M::Packssdw => pick!(packssdw, mmx, mem),
        M::Packuswb => pick!(packuswb, mmx, mem),
        M::Packusdw => pick!(packusdw, mmx, mem),
        M::Punpcklbw => pick!(punpcklbw, mmx, mem),
        M::Punpcklwd => pick!(punpcklwd, mmx, mem),
        M::Punpckldq | M::Unpcklps => pick!(punpckldq, mmx, mem),
        M::Punpcklqdq | M::Unpcklpd => pick!(punpcklqdq, mmx, mem),
        M::Punpckhbw => pick!(punpckhbw, mmx, mem),
        M::Punpckhwd => pick!(punpckhwd, mmx, mem),
        M::Punpckhdq | M::Unpckhps => pick!(punpckhdq, mmx, mem),
        M::Punpckhqdq | M::Unpckhpd => pick!(punpckhqdq, mmx, mem),
        M::Shufps => pick!(shufps, mmx, mem),
        M::Shufpd => pick!(shufpd, mmx, mem),
        M::Pshufd => pick!(pshufd, mmx, mem),
        M::Pshufhw => pick!(pshufhw, mmx, mem),
        M::Pshuflw => pick!(pshuflw, mmx, mem),
        M::Pshufw => pick!(pshufw, mmx, mem),
        M::Pshufb => pick!(pshufb, mmx, mem),
        M::Palignr => pick!(palignr, mmx, mem),
        M::Pblendw => pick!(pblendw, mmx, mem),
        M::Blendps => pick!(blendps, mmx, mem),
        M::Blendpd => pick!(blendpd, mmx, mem),
        M::Pblendvb => pick!(pblendvb, mmx, mem),
        M::Blendvps => pick!(blendvps, mmx, mem),
        M::Blendvpd => pick!(blendvpd, mmx, mem),
        M::Insertps => by_mem!(insertps, mem),
        M::Pinsrb | M::Pinsrw | M::Pinsrd | M::Pinsrq => {
            // Lane size in bytes; the source register's size comes from the code.
            *sub = match f.m {
                M::Pinsrb => 1,
                M::Pinsrw => 2,
                M::Pinsrd => 4,
                _ => 8,
            };
            if matches!(f.code, C::Pinsrq_xmm_rm64_imm8) {
                *sub |= 8 << 8;
            } else {
                *sub |= 4 << 8;
            }
            pick!(pinsr, mmx, mem)
        }
        M::Pextrb | M::Pextrw | M::Pextrd | M::Pextrq | M::Extractps => {
            *sub = match f.m {
                M::Pextrb => 1,
                M::Pextrw => 2,
                M::Pextrq => 8,
                _ => 4,
            };
            let r64 = matches!(
                f.code,
                C::Pextrb_r64m8_xmm_imm8 | C::Pextrw_r64m16_xmm_imm8 | C::Pextrw_r64_mm_imm8 | C::Pextrw_r64_xmm_imm8 | C::Pextrq_rm64_xmm_imm8 | C::Extractps_r64m32_xmm_imm8
            );
            *sub |= if r64 { 8 << 8 } else { 4 << 8 };
            pick!(pextr, mmx, mem)
        }
        M::Pmovsxbw | M::Pmovsxbd | M::Pmovsxbq | M::Pmovsxwd | M::Pmovsxwq | M::Pmovsxdq | M::Pmovzxbw | M::Pmovzxbd | M::Pmovzxbq | M::Pmovzxwd | M::Pmovzxwq | M::Pmovzxdq => {
            let (from, to) = match f.m {
                M::Pmovsxbw | M::Pmovzxbw => (1, 2),
                M::Pmovsxbd | M::Pmovzxbd => (1, 4),
                M::Pmovsxbq | M::Pmovzxbq => (1, 8),
                M::Pmovsxwd | M::Pmovzxwd => (2, 4),
                M::Pmovsxwq | M::Pmovzxwq => (2, 8),
                _ => (4, 8),
            };
            let signed = matches!(f.m, M::Pmovsxbw | M::Pmovsxbd | M::Pmovsxbq | M::Pmovsxwd | M::Pmovsxwq | M::Pmovsxdq);
            *sub = from | (to << 8) | (u64::from(signed) << 16);
            by_mem!(pmovx, mem)
        }
        _ => return None,
    })
}

/// Packs the lanes of the destination, then of the source, each narrowed by `f`.
#[inline(always)]
fn pack16(a: X, b: X, w: usize, f: impl Fn(u16) -> u8) -> X {
    let (a, b) = (lanes::w(a), lanes::w(b));
    let n = w / 2;
    lanes::from_b(std::array::from_fn(|k| if k >= w { 0 } else if k < n { f(a[k]) } else { f(b[k - n]) }))
}

#[inline(always)]
fn pack32(a: X, b: X, w: usize, f: impl Fn(u32) -> u16) -> X {
    let (a, b) = (lanes::d(a), lanes::d(b));
    let n = w / 4;
    lanes::from_w(std::array::from_fn(|k| if k >= w / 2 { 0 } else if k < n { f(a[k]) } else { f(b[k - n]) }))
}

binop!(packsswb, |a, b, w, _| pack16(a, b, w, |x| (x as i16).clamp(-128, 127) as i8 as u8));
binop!(packuswb, |a, b, w, _| pack16(a, b, w, |x| (x as i16).clamp(0, 255) as u8));
binop!(packssdw, |a, b, w, _| pack32(a, b, w, |x| sat_i16(x as i32)));
binop!(packusdw, |a, b, w, _| pack32(a, b, w, |x| sat_u16(x as i32)));

/// Interleaves `size`-byte lanes of the low (`high` false) or high halves of the destination
/// and source.
#[inline(always)]
fn unpack(a: X, b: X, w: usize, size: usize, high: bool) -> X {
    let (a, b) = (lanes::b(a), lanes::b(b));
    let base = if high { w / 2 } else { 0 };
    lanes::from_b(std::array::from_fn(|k| {
        if k >= w {
            return 0;
        }
        let (lane, byte) = (k / size, k % size);
        let src = base + (lane / 2) * size + byte;
        if lane % 2 == 0 {
            a[src]
        } else {
            b[src]
        }
    }))
}

binop!(punpcklbw, |a, b, w, _| unpack(a, b, w, 1, false));
binop!(punpcklwd, |a, b, w, _| unpack(a, b, w, 2, false));
binop!(punpckldq, |a, b, w, _| unpack(a, b, w, 4, false));
binop!(punpcklqdq, |a, b, w, _| unpack(a, b, w, 8, false));
binop!(punpckhbw, |a, b, w, _| unpack(a, b, w, 1, true));
binop!(punpckhwd, |a, b, w, _| unpack(a, b, w, 2, true));
binop!(punpckhdq, |a, b, w, _| unpack(a, b, w, 4, true));
binop!(punpckhqdq, |a, b, w, _| unpack(a, b, w, 8, true));

binop!(shufps, |a, b, _, imm| {
    let (a, b) = (lanes::d(a), lanes::d(b));
    let s = |k: u32| usize::from((imm >> (2 * k)) & 3);
    lanes::from_d([a[s(0)], a[s(1)], b[s(2)], b[s(3)]])
});
binop!(shufpd, |a, b, _, imm| [a[usize::from(imm & 1)], b[usize::from((imm >> 1) & 1)]]);
binop!(pshufd, |_, b, _, imm| {
    let b = lanes::d(b);
    lanes::from_d(std::array::from_fn(|k| b[usize::from((imm >> (2 * k)) & 3)]))
});
binop!(pshufhw, |_, b, _, imm| {
    let s = lanes::w(b);
    lanes::from_w(std::array::from_fn(|k| if k < 4 { s[k] } else { s[4 + usize::from((imm >> (2 * (k - 4))) & 3)] }))
});
binop!(pshuflw, |_, b, _, imm| {
    let s = lanes::w(b);
    lanes::from_w(std::array::from_fn(|k| if k >= 4 { s[k] } else { s[usize::from((imm >> (2 * k)) & 3)] }))
});
binop!(pshufw, |_, b, _, imm| {
    let s = lanes::w(b);
    lanes::from_w(std::array::from_fn(|k| if k >= 4 { 0 } else { s[usize::from((imm >> (2 * k)) & 3)] }))
});
binop!(pshufb, |a, b, w, _| {
    let (a, b) = (lanes::b(a), lanes::b(b));
    lanes::from_b(std::array::from_fn(|k| if k >= w || b[k] & 0x80 != 0 { 0 } else { a[usize::from(b[k]) & (w - 1)] }))
});
binop!(
    /// The destination:source concatenation shifted right by imm8 bytes.
    palignr,
    |a, b, w, imm| {
        let (a, b) = (lanes::b(a), lanes::b(b));
        let n = usize::from(imm);
        lanes::from_b(std::array::from_fn(|k| {
            if k >= w {
                return 0;
            }
            let s = k + n;
            if s < w {
                b[s]
            } else if s < 2 * w {
                a[s - w]
            } else {
                0
            }
        }))
    }
);
binop!(pblendw, |a, b, _, imm| {
    let (a, b) = (lanes::w(a), lanes::w(b));
    lanes::from_w(std::array::from_fn(|k| if imm >> k & 1 != 0 { b[k] } else { a[k] }))
});
binop!(blendps, |a, b, _, imm| {
    let (a, b) = (lanes::d(a), lanes::d(b));
    lanes::from_d(std::array::from_fn(|k| if imm >> k & 1 != 0 { b[k] } else { a[k] }))
});
binop!(blendpd, |a, b, _, imm| std::array::from_fn(|k| if imm >> k & 1 != 0 { b[k] } else { a[k] }));

/// The variable blends take their mask from the sign bits of XMM0's lanes.
fn pblendvb<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let m = lanes::b(cpu.xmm(0));
    binary::<MMX, MEM>(cpu, bus, i, |a, b, _| {
        let (a, b) = (lanes::b(a), lanes::b(b));
        lanes::from_b(std::array::from_fn(|k| if m[k] & 0x80 != 0 { b[k] } else { a[k] }))
    })
}

fn blendvps<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let m = lanes::d(cpu.xmm(0));
    binary::<MMX, MEM>(cpu, bus, i, |a, b, _| {
        let (a, b) = (lanes::d(a), lanes::d(b));
        lanes::from_d(std::array::from_fn(|k| if m[k] >> 31 != 0 { b[k] } else { a[k] }))
    })
}

fn blendvpd<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let m = cpu.xmm(0);
    binary::<MMX, MEM>(cpu, bus, i, |a, b, _| std::array::from_fn(|k| if m[k] >> 63 != 0 { b[k] } else { a[k] }))
}

/// INSERTPS xmm, xmm/m32, imm8: the source element (imm8 bits 7:6 of a register, or the
/// m32) goes to element imm8 bits 5:4; imm8 bits 3:0 then zero elements.
fn insertps<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let imm = i.imm as u8;
    let v = if MEM { cpu.load_m(bus, i)?[0] as u32 } else { lanes::d(cpu.xmm(i.r1))[usize::from(imm >> 6)] };
    let mut d = lanes::d(cpu.xmm(i.r0));
    d[usize::from((imm >> 4) & 3)] = v;
    for (k, x) in d.iter_mut().enumerate() {
        if imm >> k & 1 != 0 {
            *x = 0;
        }
    }
    cpu.set_xmm(i.r0, lanes::from_d(d));
    Ok(())
}

/// PINSRB/W/D/Q: `imm2` bits 0-7 the lane size, bits 8-15 the source register's size.
fn pinsr<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = (i.imm2 & 0xFF) as usize;
    let v = if MEM {
        if MMX {
            cpu.mmx_ready()?;
        } else {
            cpu.sse_ready()?;
        }
        cpu.load_m(bus, i)?[0]
    } else {
        if MMX {
            cpu.mmx_ready()?;
        } else {
            cpu.sse_ready()?;
        }
        cpu.reg(i.r1, ((i.imm2 >> 8) & 0xFF) as u8)
    };
    let w = if MMX { 8 } else { 16 };
    let n = w / size;
    let k = (i.imm as usize) % n;
    let d = if MMX { [cpu.mm(i.r0), 0] } else { cpu.xmm(i.r0) };
    let mut b = lanes::b(d);
    b[k * size..(k + 1) * size].copy_from_slice(&v.to_le_bytes()[..size]);
    let r = lanes::from_b(b);
    if MMX {
        cpu.mmx_enter();
        cpu.set_mm(i.r0, r[0]);
    } else {
        cpu.set_xmm(i.r0, r);
    }
    Ok(())
}

/// PEXTRB/W/D/Q and EXTRACTPS: `imm2` bits 0-7 the lane size, bits 8-15 the destination
/// register's size (the lane is zero-extended into it).
fn pextr<const MMX: bool, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = (i.imm2 & 0xFF) as usize;
    let (v, w) = if MMX {
        cpu.mmx_ready()?;
        ([cpu.mm(i.r1), 0], 8)
    } else {
        cpu.sse_ready()?;
        (cpu.xmm(i.r1), 16)
    };
    let k = (i.imm as usize) % (w / size);
    let b = lanes::b(v);
    let mut out = [0u8; 8];
    out[..size].copy_from_slice(&b[k * size..(k + 1) * size]);
    let x = u64::from_le_bytes(out);
    if MEM {
        cpu.store_m(bus, i, [x, 0])?;
    } else {
        cpu.set_reg(i.r0, ((i.imm2 >> 8) & 0xFF) as u8, x);
    }
    if MMX {
        cpu.mmx_enter();
    }
    Ok(())
}

/// PMOVSX*/PMOVZX*: `imm2` bits 0-7 the source lane size, 8-15 the destination's, bit 16
/// signed.
fn pmovx<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = lanes::b(cpu.src_x::<MEM>(bus, i)?);
    let from = (i.imm2 & 0xFF) as usize;
    let to = ((i.imm2 >> 8) & 0xFF) as usize;
    let signed = i.imm2 >> 16 != 0;
    let mut out = [0u8; 16];
    for k in 0..16 / to {
        let mut x = 0u64;
        for j in 0..from {
            x |= u64::from(s[k * from + j]) << (8 * j);
        }
        if signed {
            let sh = 64 - 8 * from as u32;
            x = (((x << sh) as i64) >> sh) as u64;
        }
        out[k * to..(k + 1) * to].copy_from_slice(&x.to_le_bytes()[..to]);
    }
    cpu.set_xmm(i.r0, lanes::from_b(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_and_pack() {
        let a = lanes::from_b(std::array::from_fn(|k| k as u8));
        let b = lanes::from_b(std::array::from_fn(|k| 0x80 + k as u8));
        assert_eq!(lanes::b(unpack(a, b, 16, 1, false))[..4], [0, 0x80, 1, 0x81]);
        assert_eq!(lanes::b(unpack(a, b, 8, 2, true))[..8], [4, 5, 0x84, 0x85, 6, 7, 0x86, 0x87]);
        let words = lanes::from_w([0x100, 0xFF80, 5, 0x7F, 0, 0, 0, 0]);
        let r = pack16(words, words, 8, |x| (x as i16).clamp(-128, 127) as i8 as u8);
        assert_eq!(lanes::b(r)[..8], [0x7F, 0x80, 5, 0x7F, 0x7F, 0x80, 5, 0x7F]);
    }
}
