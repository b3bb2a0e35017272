//! Conversions: integer to float (CVTDQ2PS/PD, CVTPI2PS/PD, CVTSI2SS/SD), float to integer
//! rounding by MXCSR or truncating (CVT[T]PS2DQ, CVT[T]PD2DQ, CVT[T]PS2PI, CVT[T]PD2PI,
//! CVT[T]SS2SI, CVT[T]SD2SI: the integer indefinite on NaN or overflow), and between single
//! and double (CVTPS2PD, CVTPD2PS, CVTSS2SD, CVTSD2SS).

use super::fp::{elems, pack};
use super::softfloat::{self as sf, F32, F64, RZ};
use super::{by_mem, lanes, Form};
use crate::bus::Bus;
use crate::cpu::{sext, Cpu};
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use iced_x86::Code;

// `imm2` bits.
/// Double precision (the float side of the conversion).
const DBL: u64 = 1;
/// Truncate instead of rounding by MXCSR.RC.
const TRUNC: u64 = 2;
/// The integer side is an MMX register (or the m64 of an MMX form).
const MMX: u64 = 4;
/// Packed (else scalar).
const PACKED: u64 = 8;
/// Bits 8-15: a general register's size in bytes.
const SIZE_SHIFT: u64 = 8;

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    use Code as C;
    let mem = f.mem;
    let (s, h): (u64, Handler) = match f.code {
        C::Cvtdq2ps_xmm_xmmm128 => (PACKED, by_mem!(int_to_float, mem)),
        C::Cvtdq2pd_xmm_xmmm64 => (PACKED | DBL, by_mem!(int_to_float, mem)),
        C::Cvtpi2ps_xmm_mmm64 => (PACKED | MMX, by_mem!(int_to_float, mem)),
        C::Cvtpi2pd_xmm_mmm64 => (PACKED | MMX | DBL, by_mem!(int_to_float, mem)),
        C::Cvtps2dq_xmm_xmmm128 => (PACKED, by_mem!(float_to_int, mem)),
        C::Cvttps2dq_xmm_xmmm128 => (PACKED | TRUNC, by_mem!(float_to_int, mem)),
        C::Cvtpd2dq_xmm_xmmm128 => (PACKED | DBL, by_mem!(float_to_int, mem)),
        C::Cvttpd2dq_xmm_xmmm128 => (PACKED | DBL | TRUNC, by_mem!(float_to_int, mem)),
        C::Cvtps2pi_mm_xmmm64 => (PACKED | MMX, by_mem!(float_to_int, mem)),
        C::Cvttps2pi_mm_xmmm64 => (PACKED | MMX | TRUNC, by_mem!(float_to_int, mem)),
        C::Cvtpd2pi_mm_xmmm128 => (PACKED | MMX | DBL, by_mem!(float_to_int, mem)),
        C::Cvttpd2pi_mm_xmmm128 => (PACKED | MMX | DBL | TRUNC, by_mem!(float_to_int, mem)),
        C::Cvtsi2ss_xmm_rm32 => (4 << SIZE_SHIFT, by_mem!(cvtsi2s, mem)),
        C::Cvtsi2ss_xmm_rm64 => (8 << SIZE_SHIFT, by_mem!(cvtsi2s, mem)),
        C::Cvtsi2sd_xmm_rm32 => (DBL | (4 << SIZE_SHIFT), by_mem!(cvtsi2s, mem)),
        C::Cvtsi2sd_xmm_rm64 => (DBL | (8 << SIZE_SHIFT), by_mem!(cvtsi2s, mem)),
        C::Cvtss2si_r32_xmmm32 => (4 << SIZE_SHIFT, by_mem!(cvts2si, mem)),
        C::Cvtss2si_r64_xmmm32 => (8 << SIZE_SHIFT, by_mem!(cvts2si, mem)),
        C::Cvttss2si_r32_xmmm32 => (TRUNC | (4 << SIZE_SHIFT), by_mem!(cvts2si, mem)),
        C::Cvttss2si_r64_xmmm32 => (TRUNC | (8 << SIZE_SHIFT), by_mem!(cvts2si, mem)),
        C::Cvtsd2si_r32_xmmm64 => (DBL | (4 << SIZE_SHIFT), by_mem!(cvts2si, mem)),
        C::Cvtsd2si_r64_xmmm64 => (DBL | (8 << SIZE_SHIFT), by_mem!(cvts2si, mem)),
        C::Cvttsd2si_r32_xmmm64 => (DBL | TRUNC | (4 << SIZE_SHIFT), by_mem!(cvts2si, mem)),
        C::Cvttsd2si_r64_xmmm64 => (DBL | TRUNC | (8 << SIZE_SHIFT), by_mem!(cvts2si, mem)),
        // For the single/double conversions DBL names the source format.
        C::Cvtps2pd_xmm_xmmm64 => (PACKED, by_mem!(float_to_float, mem)),
        C::Cvtpd2ps_xmm_xmmm128 => (PACKED | DBL, by_mem!(float_to_float, mem)),
        C::Cvtss2sd_xmm_xmmm32 => (0, by_mem!(float_to_float, mem)),
        C::Cvtsd2ss_xmm_xmmm64 => (DBL, by_mem!(float_to_float, mem)),
        _ => return None,
    };
    *sub = s;
    Some(h)
}

/// CVTDQ2PS, CVTDQ2PD, CVTPI2PS (the upper two singles kept), CVTPI2PD.
fn int_to_float<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let from_mm = i.imm2 & MMX != 0 && !MEM;
    if from_mm {
        cpu.sse_mmx_ready()?;
    } else {
        cpu.sse_ready()?;
    }
    let src = if from_mm { [cpu.mm(i.r1), 0] } else { cpu.src_x::<MEM>(bus, i)? };
    let dbl = i.imm2 & DBL != 0;
    let ints = lanes::d(src);
    let n = if dbl || i.imm2 & MMX != 0 { 2 } else { 4 };
    let f = if dbl { F64 } else { F32 };
    let mut env = cpu.fp_env();
    let mut r = if i.imm2 & MMX != 0 && !dbl { elems(cpu.xmm(i.r0), false) } else { [0; 4] };
    for k in 0..n {
        r[k] = sf::from_int(&mut env, f, i64::from(ints[k] as i32));
    }
    cpu.sse_exceptions(env.flags)?;
    if from_mm {
        cpu.mmx_enter();
    }
    cpu.set_xmm(i.r0, pack(r, dbl));
    Ok(())
}

/// CVT[T]PS2DQ, CVT[T]PD2DQ (upper quadword cleared), CVT[T]PS2PI, CVT[T]PD2PI.
fn float_to_int<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let to_mm = i.imm2 & MMX != 0;
    if to_mm {
        cpu.sse_mmx_ready()?;
    } else {
        cpu.sse_ready()?;
    }
    let dbl = i.imm2 & DBL != 0;
    let src = elems(cpu.src_x::<MEM>(bus, i)?, dbl);
    let n = if dbl || to_mm { 2 } else { 4 };
    let f = if dbl { F64 } else { F32 };
    let mut env = cpu.fp_env();
    let rc = if i.imm2 & TRUNC != 0 { RZ } else { env.rc };
    let mut r = [0u32; 4];
    for k in 0..n {
        r[k] = sf::to_int(&mut env, f, src[k], 32, rc) as u32;
    }
    cpu.sse_exceptions(env.flags)?;
    let v = lanes::from_d(r);
    if to_mm {
        cpu.mmx_enter();
        cpu.set_mm(i.r0, v[0]);
    } else {
        cpu.set_xmm(i.r0, v);
    }
    Ok(())
}

/// CVTSI2SS/CVTSI2SD xmm, r/m32/64: the low element only.
fn cvtsi2s<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let size = (i.imm2 >> SIZE_SHIFT) as u8;
    let v = if MEM { cpu.load_m(bus, i)?[0] } else { cpu.reg(i.r1, size) };
    let v = sext(v, size) as i64;
    let dbl = i.imm2 & DBL != 0;
    let mut env = cpu.fp_env();
    let x = sf::from_int(&mut env, if dbl { F64 } else { F32 }, v);
    cpu.sse_exceptions(env.flags)?;
    let mut d = elems(cpu.xmm(i.r0), dbl);
    d[0] = x;
    cpu.set_xmm(i.r0, pack(d, dbl));
    Ok(())
}

/// CVT[T]SS2SI / CVT[T]SD2SI r32/r64, xmm/m32/m64.
fn cvts2si<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let size = (i.imm2 >> SIZE_SHIFT) as u8;
    let dbl = i.imm2 & DBL != 0;
    let s = cpu.src_x::<MEM>(bus, i)?[0];
    let s = if dbl { s } else { s & 0xFFFF_FFFF };
    let mut env = cpu.fp_env();
    let rc = if i.imm2 & TRUNC != 0 { RZ } else { env.rc };
    let v = sf::to_int(&mut env, if dbl { F64 } else { F32 }, s, u32::from(size) * 8, rc);
    cpu.sse_exceptions(env.flags)?;
    cpu.set_reg(i.r0, size, v);
    Ok(())
}

/// CVTPS2PD, CVTPD2PS (upper quadword cleared), CVTSS2SD, CVTSD2SS (scalars keep the rest
/// of the destination). `imm2` DBL names the source format.
fn float_to_float<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let from_dbl = i.imm2 & DBL != 0;
    let (from, to) = if from_dbl { (F64, F32) } else { (F32, F64) };
    let src = elems(cpu.src_x::<MEM>(bus, i)?, from_dbl);
    let packed = i.imm2 & PACKED != 0;
    let mut env = cpu.fp_env();
    let mut r = if packed { [0; 4] } else { elems(cpu.xmm(i.r0), !from_dbl) };
    for k in 0..if packed { 2 } else { 1 } {
        r[k] = sf::convert(&mut env, from, to, src[k]);
    }
    cpu.sse_exceptions(env.flags)?;
    cpu.set_xmm(i.r0, pack(r, !from_dbl));
    Ok(())
}
