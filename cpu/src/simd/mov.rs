//! Data movement: whole registers (MOVAPS, MOVDQU, LDDQU, the non-temporal stores), scalars
//! and halves (MOVSS/SD, MOVLPS/HPS, MOVHLPS/LHPS), MOVD/MOVQ between MMX, XMM and general
//! registers, duplicating loads (MOVDDUP, MOVSHDUP, MOVSLDUP), sign masks (MOVMSKPS/PD,
//! PMOVMSKB) and the byte-masked stores MASKMOVQ/MASKMOVDQU.

use super::{by_mem, lanes, Form};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::mem::Access;
use iced_x86::Code;

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    use Code as C;
    let mem = f.mem;
    Some(match f.code {
        C::Movaps_xmm_xmmm128
        | C::Movapd_xmm_xmmm128
        | C::Movups_xmm_xmmm128
        | C::Movupd_xmm_xmmm128
        | C::Movdqa_xmm_xmmm128
        | C::Movdqu_xmm_xmmm128
        | C::Lddqu_xmm_m128
        | C::Movntdqa_xmm_m128 => by_mem!(mov_x, mem),
        C::Movaps_xmmm128_xmm | C::Movapd_xmmm128_xmm | C::Movups_xmmm128_xmm | C::Movupd_xmmm128_xmm | C::Movdqa_xmmm128_xmm | C::Movdqu_xmmm128_xmm => {
            if mem {
                store_x as Handler
            } else {
                mov_x::<false> as Handler
            }
        }
        C::Movntps_m128_xmm | C::Movntpd_m128_xmm | C::Movntdq_m128_xmm if mem => store_x as Handler,
        C::Movss_xmm_xmmm32 | C::Movss_xmmm32_xmm | C::Movsd_xmm_xmmm64 | C::Movsd_xmmm64_xmm => {
            *sub = if matches!(f.code, C::Movss_xmm_xmmm32 | C::Movss_xmmm32_xmm) { 4 } else { 8 };
            match (mem, matches!(f.code, C::Movss_xmmm32_xmm | C::Movsd_xmmm64_xmm)) {
                (true, true) => store_low as Handler,
                (true, false) => load_scalar as Handler,
                (false, _) => merge_scalar as Handler,
            }
        }
        C::Movlps_xmm_m64 | C::Movlpd_xmm_m64 if mem => load_low as Handler,
        C::Movhps_xmm_m64 | C::Movhpd_xmm_m64 if mem => load_high as Handler,
        C::Movlps_m64_xmm | C::Movlpd_m64_xmm if mem => store_low as Handler,
        C::Movhps_m64_xmm | C::Movhpd_m64_xmm if mem => store_high as Handler,
        C::Movhlps_xmm_xmm => movhlps as Handler,
        C::Movlhps_xmm_xmm => movlhps as Handler,
        C::Movddup_xmm_xmmm64 => by_mem!(movddup, mem),
        C::Movshdup_xmm_xmmm128 => {
            *sub = 1;
            by_mem!(movsxdup, mem)
        }
        C::Movsldup_xmm_xmmm128 => by_mem!(movsxdup, mem),
        C::Movd_mm_rm32 | C::Movq_mm_rm64 => {
            *sub = if f.code == C::Movd_mm_rm32 { 4 } else { 8 };
            by_mem!(movd_to_mm, mem)
        }
        C::Movd_xmm_rm32 | C::Movq_xmm_rm64 => {
            *sub = if f.code == C::Movd_xmm_rm32 { 4 } else { 8 };
            by_mem!(movd_to_x, mem)
        }
        C::Movd_rm32_mm | C::Movq_rm64_mm => {
            *sub = if f.code == C::Movd_rm32_mm { 4 } else { 8 };
            by_mem!(movd_from_mm, mem)
        }
        C::Movd_rm32_xmm | C::Movq_rm64_xmm => {
            *sub = if f.code == C::Movd_rm32_xmm { 4 } else { 8 };
            by_mem!(movd_from_x, mem)
        }
        C::Movq_mm_mmm64 => by_mem!(movq_mm, mem),
        C::Movq_mmm64_mm | C::Movntq_m64_mm => {
            if mem {
                store_mm as Handler
            } else {
                movq_mm::<false> as Handler
            }
        }
        C::Movq_xmm_xmmm64 => by_mem!(movq_x, mem),
        C::Movq_xmmm64_xmm => {
            if mem {
                store_low as Handler
            } else {
                movq_x::<false> as Handler
            }
        }
        C::Movq2dq_xmm_mm => movq2dq as Handler,
        C::Movdq2q_mm_xmm => movdq2q as Handler,
        C::Movnti_m32_r32 | C::Movnti_m64_r64 if mem => movnti as Handler,
        C::Movmskps_r32_xmm | C::Movmskps_r64_xmm => movmskps as Handler,
        C::Movmskpd_r32_xmm | C::Movmskpd_r64_xmm => movmskpd as Handler,
        C::Pmovmskb_r32_mm | C::Pmovmskb_r64_mm => pmovmskb::<true> as Handler,
        C::Pmovmskb_r32_xmm | C::Pmovmskb_r64_xmm => pmovmskb::<false> as Handler,
        C::Maskmovq_rDI_mm_mm => maskmov::<true> as Handler,
        C::Maskmovdqu_rDI_xmm_xmm => maskmov::<false> as Handler,
        _ => return None,
    })
}

/// MOVAPS/MOVUPS/MOVAPD/MOVUPD/MOVDQA/MOVDQU/LDDQU/MOVNTDQA xmm, xmm/m128.
fn mov_x<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.src_x::<MEM>(bus, i)?;
    cpu.set_xmm(i.r0, v);
    Ok(())
}

/// The store forms: m128 = xmm (operand 1).
fn store_x(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.xmm(i.r1);
    cpu.store_m(bus, i, v)
}

/// MOVSS/MOVSD xmm, m32/m64: the upper part of the register is cleared.
fn load_scalar(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.load_m(bus, i)?;
    cpu.set_xmm(i.r0, v);
    Ok(())
}

/// MOVSS/MOVSD between registers: only the low element (`imm2` bytes) moves.
fn merge_scalar(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = cpu.xmm(i.r1);
    let mut d = cpu.xmm(i.r0);
    d[0] = if i.imm2 == 4 { (d[0] & !0xFFFF_FFFF) | (s[0] & 0xFFFF_FFFF) } else { s[0] };
    cpu.set_xmm(i.r0, d);
    Ok(())
}

/// Stores the low `osz` bytes of operand 1 (MOVSS, MOVSD, MOVLPS, MOVLPD, MOVQ m64, xmm).
fn store_low(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.xmm(i.r1);
    cpu.store_m(bus, i, v)
}

/// MOVHPS/MOVHPD m64, xmm.
fn store_high(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.xmm(i.r1);
    cpu.store_m(bus, i, [v[1], 0])
}

/// MOVLPS/MOVLPD xmm, m64.
fn load_low(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let m = cpu.load_m(bus, i)?;
    let mut d = cpu.xmm(i.r0);
    d[0] = m[0];
    cpu.set_xmm(i.r0, d);
    Ok(())
}

/// MOVHPS/MOVHPD xmm, m64.
fn load_high(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let m = cpu.load_m(bus, i)?;
    let mut d = cpu.xmm(i.r0);
    d[1] = m[0];
    cpu.set_xmm(i.r0, d);
    Ok(())
}

fn movhlps(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = cpu.xmm(i.r1);
    let mut d = cpu.xmm(i.r0);
    d[0] = s[1];
    cpu.set_xmm(i.r0, d);
    Ok(())
}

fn movlhps(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = cpu.xmm(i.r1);
    let mut d = cpu.xmm(i.r0);
    d[1] = s[0];
    cpu.set_xmm(i.r0, d);
    Ok(())
}

fn movddup<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = cpu.src_x::<MEM>(bus, i)?;
    cpu.set_xmm(i.r0, [s[0], s[0]]);
    Ok(())
}

/// MOVSLDUP (`imm2` 0: even elements) / MOVSHDUP (1: odd elements), each duplicated.
fn movsxdup<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = lanes::d(cpu.src_x::<MEM>(bus, i)?);
    let k = i.imm2 as usize;
    cpu.set_xmm(i.r0, lanes::from_d([s[k], s[k], s[2 + k], s[2 + k]]));
    Ok(())
}

/// A general-register or memory source of `imm2` bytes, zero-extended.
fn gpr_src<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<u64, Fault> {
    if MEM {
        Ok(cpu.load_m(bus, i)?[0])
    } else {
        Ok(cpu.reg(i.r1, i.imm2 as u8))
    }
}

/// Writes a general register (`imm2` bytes: a 32-bit write clears the upper half) or memory.
fn gpr_dst<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, v: u64) -> Result<(), Fault> {
    if MEM {
        cpu.store_m(bus, i, [v, 0])
    } else {
        cpu.set_reg(i.r0, i.imm2 as u8, v);
        Ok(())
    }
}

/// MOVD/MOVQ mm, r/m32/64.
fn movd_to_mm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.mmx_ready()?;
    let v = gpr_src::<MEM>(cpu, bus, i)?;
    cpu.mmx_enter();
    cpu.set_mm(i.r0, v);
    Ok(())
}

/// MOVD/MOVQ xmm, r/m32/64: zero-extended to 128 bits.
fn movd_to_x<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = gpr_src::<MEM>(cpu, bus, i)?;
    cpu.set_xmm(i.r0, [v, 0]);
    Ok(())
}

/// MOVD/MOVQ r/m32/64, mm.
fn movd_from_mm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.mmx_ready()?;
    let v = cpu.mm(i.r1);
    gpr_dst::<MEM>(cpu, bus, i, v)?;
    cpu.mmx_enter();
    Ok(())
}

/// MOVD/MOVQ r/m32/64, xmm.
fn movd_from_x<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.xmm(i.r1)[0];
    gpr_dst::<MEM>(cpu, bus, i, v)
}

/// MOVQ mm, mm/m64.
fn movq_mm<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.mmx_ready()?;
    let v = cpu.src_mm::<MEM>(bus, i)?;
    cpu.mmx_enter();
    cpu.set_mm(i.r0, v);
    Ok(())
}

/// MOVQ/MOVNTQ m64, mm.
fn store_mm(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.mmx_ready()?;
    let v = cpu.mm(i.r1);
    cpu.store_m(bus, i, [v, 0])?;
    cpu.mmx_enter();
    Ok(())
}

/// MOVQ xmm, xmm/m64: the upper quadword is cleared.
fn movq_x<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let v = cpu.src_x::<MEM>(bus, i)?;
    cpu.set_xmm(i.r0, [v[0], 0]);
    Ok(())
}

fn movq2dq(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_mmx_ready()?;
    let v = cpu.mm(i.r1);
    cpu.mmx_enter();
    cpu.set_xmm(i.r0, [v, 0]);
    Ok(())
}

fn movdq2q(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_mmx_ready()?;
    let v = cpu.xmm(i.r1)[0];
    cpu.mmx_enter();
    cpu.set_mm(i.r0, v);
    Ok(())
}

/// MOVNTI m32/m64, r32/r64: a general-register store, so no SSE state checks.
fn movnti(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let v = cpu.reg(i.r1, i.osz);
    cpu.store_m(bus, i, [v, 0])
}

fn movmskps(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = lanes::d(cpu.xmm(i.r1));
    let m = s.iter().enumerate().fold(0u64, |m, (k, v)| m | (u64::from(v >> 31) << k));
    cpu.set_reg(i.r0, 8, m);
    Ok(())
}

fn movmskpd(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let s = cpu.xmm(i.r1);
    cpu.set_reg(i.r0, 8, (s[0] >> 63) | ((s[1] >> 63) << 1));
    Ok(())
}

fn pmovmskb<const MMX: bool>(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let (v, n) = if MMX {
        cpu.mmx_ready()?;
        ([cpu.mm(i.r1), 0], 8)
    } else {
        cpu.sse_ready()?;
        (cpu.xmm(i.r1), 16)
    };
    let b = lanes::b(v);
    let m = (0..n).fold(0u64, |m, k| m | (u64::from(b[k] >> 7) << k));
    if MMX {
        cpu.mmx_enter();
    }
    cpu.set_reg(i.r0, 8, m);
    Ok(())
}

/// MASKMOVQ / MASKMOVDQU: stores the bytes of operand 1 whose mask byte (operand 2) has its
/// top bit set to DS:rDI (segment overridable), checking the whole destination first.
fn maskmov<const MMX: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let (data, mask, n) = if MMX {
        cpu.mmx_ready()?;
        ([cpu.mm(i.opr[1]), 0], [cpu.mm(i.opr[2]), 0], 8u8)
    } else {
        cpu.sse_ready()?;
        (cpu.xmm(i.opr[1]), cpu.xmm(i.opr[2]), 16u8)
    };
    let (data, mask) = (lanes::b(data), lanes::b(mask));
    let off = cpu.reg(crate::state::reg::RDI as u8, i.asz);
    if mask[..usize::from(n)].iter().any(|m| m & 0x80 != 0) {
        let lin = cpu.lin(i.seg as usize, off, n, Access::Write)?;
        let user = cpu.cpl() == 3;
        cpu.translate(bus, lin, Access::Write, user)?;
        cpu.translate(bus, cpu.wrap_lin(lin + u64::from(n) - 1), Access::Write, user)?;
        for k in 0..usize::from(n) {
            if mask[k] & 0x80 != 0 {
                cpu.write(bus, cpu.wrap_lin(lin + k as u64), 1, u64::from(data[k]))?;
            }
        }
    }
    if MMX {
        cpu.mmx_enter();
    }
    Ok(())
}
