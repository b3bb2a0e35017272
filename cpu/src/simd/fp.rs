//! Packed and scalar floating-point arithmetic: ADD/SUB/MUL/DIV/MIN/MAX/SQRT (PS, PD, SS,
//! SD), compares (CMPccPS/PD/SS/SD, COMISS/D, UCOMISS/D), the SSE3 horizontal and
//! alternating forms (HADD, HSUB, ADDSUB), DPPS/DPPD, ROUNDPS/PD/SS/SD and the approximations
//! RCPPS/SS and RSQRTPS/SS. Every element goes through `softfloat.rs` under MXCSR.

use super::softfloat::{self as sf, Env, Fmt, Order, F32, F64};
use super::{approx, by_mem, lanes, Form, X};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::flags::{AF, CF, OF, PF, SF, ZF};
use iced_x86::{Code, Mnemonic as M};

/// `imm2` bits for the arithmetic handlers.
const DBL: u64 = 1;
const PACKED: u64 = 2;

const ADD: u8 = 0;
const SUB: u8 = 1;
const MUL: u8 = 2;
const DIV: u8 = 3;
const MIN: u8 = 4;
const MAX: u8 = 5;
const SQRT: u8 = 6;
const RCP: u8 = 7;
const RSQRT: u8 = 8;

/// `imm2` values for `horizontal`.
const HADD: u64 = 0;
const HSUB: u64 = 4;
const ADDSUB: u64 = 8;

pub(super) fn select(f: &Form, sub: &mut u64) -> Option<Handler> {
    let mem = f.mem;
    // Which of the four forms: packed single/double, scalar single/double.
    let shape = |ps: M, pd: M, ss: M, sd: M| -> Option<u64> {
        if f.m == ps {
            Some(PACKED)
        } else if f.m == pd {
            Some(PACKED | DBL)
        } else if f.m == ss {
            Some(0)
        } else if f.m == sd {
            Some(DBL)
        } else {
            None
        }
    };
    macro_rules! arith_op {
        ($op:expr) => {
            if mem {
                arith::<{ $op }, true> as Handler
            } else {
                arith::<{ $op }, false> as Handler
            }
        };
    }
    let table: [(M, M, M, M, Handler, Handler); 7] = [
        (M::Addps, M::Addpd, M::Addss, M::Addsd, arith::<ADD, false>, arith::<ADD, true>),
        (M::Subps, M::Subpd, M::Subss, M::Subsd, arith::<SUB, false>, arith::<SUB, true>),
        (M::Mulps, M::Mulpd, M::Mulss, M::Mulsd, arith::<MUL, false>, arith::<MUL, true>),
        (M::Divps, M::Divpd, M::Divss, M::Divsd, arith::<DIV, false>, arith::<DIV, true>),
        (M::Minps, M::Minpd, M::Minss, M::Minsd, arith::<MIN, false>, arith::<MIN, true>),
        (M::Maxps, M::Maxpd, M::Maxss, M::Maxsd, arith::<MAX, false>, arith::<MAX, true>),
        (M::Sqrtps, M::Sqrtpd, M::Sqrtss, M::Sqrtsd, arith::<SQRT, false>, arith::<SQRT, true>),
    ];
    for (ps, pd, ss, sd, reg_h, mem_h) in table {
        if let Some(s) = shape(ps, pd, ss, sd) {
            *sub = s;
            return Some(if mem { mem_h } else { reg_h });
        }
    }
    // (CMPSD is also the string instruction's mnemonic.)
    let cmp_form = f.m != M::Cmpsd || f.code == Code::Cmpsd_xmm_xmmm64_imm8;
    if let Some(s) = shape(M::Cmpps, M::Cmppd, M::Cmpss, M::Cmpsd).filter(|_| cmp_form) {
        *sub = s;
        return Some(by_mem!(cmp, mem));
    }
    if let Some(s) = shape(M::Roundps, M::Roundpd, M::Roundss, M::Roundsd) {
        *sub = s;
        return Some(by_mem!(round, mem));
    }
    Some(match f.m {
        M::Rcpps | M::Rcpss => {
            *sub = if f.m == M::Rcpps { PACKED } else { 0 };
            arith_op!(RCP)
        }
        M::Rsqrtps | M::Rsqrtss => {
            *sub = if f.m == M::Rsqrtps { PACKED } else { 0 };
            arith_op!(RSQRT)
        }
        M::Comiss | M::Ucomiss | M::Comisd | M::Ucomisd => {
            *sub = u64::from(matches!(f.m, M::Comisd | M::Ucomisd)) | (u64::from(matches!(f.m, M::Comiss | M::Comisd)) << 1);
            by_mem!(comis, mem)
        }
        M::Haddps | M::Haddpd | M::Hsubps | M::Hsubpd | M::Addsubps | M::Addsubpd => {
            let dbl = u64::from(matches!(f.m, M::Haddpd | M::Hsubpd | M::Addsubpd));
            *sub = dbl
                | match f.m {
                    M::Haddps | M::Haddpd => HADD,
                    M::Hsubps | M::Hsubpd => HSUB,
                    _ => ADDSUB,
                };
            by_mem!(horizontal, mem)
        }
        M::Dpps => by_mem!(dpps, mem),
        M::Dppd => by_mem!(dppd, mem),
        _ => return None,
    })
}

/// The elements of a register in format `dbl`: four singles or two doubles.
#[inline(always)]
pub(super) fn elems(v: X, dbl: bool) -> [u64; 4] {
    if dbl {
        [v[0], v[1], 0, 0]
    } else {
        lanes::d(v).map(u64::from)
    }
}

#[inline(always)]
pub(super) fn pack(e: [u64; 4], dbl: bool) -> X {
    if dbl {
        [e[0], e[1]]
    } else {
        lanes::from_d(e.map(|x| x as u32))
    }
}

#[inline(always)]
fn fmt(dbl: bool) -> Fmt {
    if dbl {
        F64
    } else {
        F32
    }
}

/// Elements computed: all of a packed form, the low one of a scalar form.
#[inline(always)]
fn count(sub: u64) -> usize {
    match (sub & PACKED != 0, sub & DBL != 0) {
        (true, true) => 2,
        (true, false) => 4,
        _ => 1,
    }
}

/// dst = dst OP src element-wise (SQRT, RCP, RSQRT: OP src); scalar forms keep the upper
/// elements of the destination.
fn arith<const OP: u8, const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let dbl = i.imm2 & DBL != 0;
    let b = elems(cpu.src_x::<MEM>(bus, i)?, dbl);
    let a = elems(cpu.xmm(i.r0), dbl);
    let f = fmt(dbl);
    let mut env = cpu.fp_env();
    let mut r = a;
    for k in 0..count(i.imm2) {
        r[k] = match OP {
            ADD => sf::add(&mut env, f, a[k], b[k], false),
            SUB => sf::add(&mut env, f, a[k], b[k], true),
            MUL => sf::mul(&mut env, f, a[k], b[k]),
            DIV => sf::div(&mut env, f, a[k], b[k]),
            MIN => sf::min_max(&mut env, f, a[k], b[k], false),
            MAX => sf::min_max(&mut env, f, a[k], b[k], true),
            SQRT => sf::sqrt(&mut env, f, b[k]),
            RCP => u64::from(approx::rcp(b[k] as u32)),
            _ => u64::from(approx::rsqrt(b[k] as u32)),
        };
    }
    cpu.sse_exceptions(env.flags)?;
    cpu.set_xmm(i.r0, pack(r, dbl));
    Ok(())
}

/// The compare predicates 0-7: EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD. LT, LE, NLT and NLE
/// signal on QNaNs too.
fn predicate(env: &mut Env, f: Fmt, a: u64, b: u64, p: u8) -> bool {
    let signaling = matches!(p & 3, 1 | 2);
    let o = sf::compare(env, f, a, b, signaling);
    let t = match p & 3 {
        0 => o == Order::Equal,
        1 => o == Order::Less,
        2 => matches!(o, Order::Less | Order::Equal),
        _ => o == Order::Unordered,
    };
    t != (p & 4 != 0)
}

/// CMPPS/CMPPD/CMPSS/CMPSD xmm, xmm/m, imm8 (bits 2:0 the predicate).
fn cmp<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let dbl = i.imm2 & DBL != 0;
    let b = elems(cpu.src_x::<MEM>(bus, i)?, dbl);
    let a = elems(cpu.xmm(i.r0), dbl);
    let f = fmt(dbl);
    let ones = if dbl { u64::MAX } else { 0xFFFF_FFFF };
    let mut env = cpu.fp_env();
    let mut r = a;
    for k in 0..count(i.imm2) {
        r[k] = if predicate(&mut env, f, a[k], b[k], (i.imm & 7) as u8) { ones } else { 0 };
    }
    cpu.sse_exceptions(env.flags)?;
    cpu.set_xmm(i.r0, pack(r, dbl));
    Ok(())
}

/// COMISS/COMISD (`imm2` bit 1: QNaNs signal too) and UCOMISS/UCOMISD: ZF, PF, CF from the
/// comparison (all three when unordered); OF, SF, AF cleared.
fn comis<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let dbl = i.imm2 & DBL != 0;
    let b = cpu.src_x::<MEM>(bus, i)?[0];
    let a = cpu.xmm(i.r0)[0];
    let (a, b) = if dbl { (a, b) } else { (a & 0xFFFF_FFFF, b & 0xFFFF_FFFF) };
    let mut env = cpu.fp_env();
    let o = sf::compare(&mut env, fmt(dbl), a, b, i.imm2 & 2 != 0);
    cpu.sse_exceptions(env.flags)?;
    let fl = match o {
        Order::Unordered => ZF | PF | CF,
        Order::Less => CF,
        Order::Equal => ZF,
        Order::Greater => 0,
    };
    cpu.set_status(ZF | PF | CF | OF | SF | AF, fl);
    Ok(())
}

/// HADDPS/PD, HSUBPS/PD (adjacent pairs of the destination, then of the source) and
/// ADDSUBPS/PD (subtract in even elements, add in odd ones).
fn horizontal<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let dbl = i.imm2 & DBL != 0;
    let b = elems(cpu.src_x::<MEM>(bus, i)?, dbl);
    let a = elems(cpu.xmm(i.r0), dbl);
    let f = fmt(dbl);
    let n = if dbl { 2 } else { 4 };
    let mut env = cpu.fp_env();
    let mut r = [0u64; 4];
    let op = i.imm2 & !DBL;
    for k in 0..n {
        r[k] = if op == ADDSUB {
            sf::add(&mut env, f, a[k], b[k], k % 2 == 0)
        } else {
            let (src, j) = if k < n / 2 { (&a, 2 * k) } else { (&b, 2 * (k - n / 2)) };
            sf::add(&mut env, f, src[j], src[j + 1], op == HSUB)
        };
    }
    cpu.sse_exceptions(env.flags)?;
    cpu.set_xmm(i.r0, pack(r, dbl));
    Ok(())
}

/// DPPS: products of the elements imm8 bits 7:4 select (others +0.0), summed pairwise and
/// then across, each step rounded, the sum written to the elements imm8 bits 3:0 select
/// (others zero). Every element computes its own sum, as hardware does: element k adds
/// u[k] + u[k^2] with u[k] = p[k^1] + p[k], which decides which NaN each one returns.
fn dpps<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let b = elems(cpu.src_x::<MEM>(bus, i)?, false);
    let a = elems(cpu.xmm(i.r0), false);
    let imm = i.imm as u8;
    let mut env = cpu.fp_env();
    let p: [u64; 4] = std::array::from_fn(|k| if imm >> (4 + k) & 1 != 0 { sf::mul(&mut env, F32, a[k], b[k]) } else { 0 });
    let u: [u64; 4] = std::array::from_fn(|k| sf::add(&mut env, F32, p[k ^ 1], p[k], false));
    let s: [u64; 4] = std::array::from_fn(|k| sf::add(&mut env, F32, u[k], u[k ^ 2], false));
    cpu.sse_exceptions(env.flags)?;
    let r = std::array::from_fn(|k| if imm >> k & 1 != 0 { s[k] } else { 0 });
    cpu.set_xmm(i.r0, pack(r, false));
    Ok(())
}

/// DPPD: as DPPS for two doubles.
fn dppd<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let b = cpu.src_x::<MEM>(bus, i)?;
    let a = cpu.xmm(i.r0);
    let imm = i.imm as u8;
    let mut env = cpu.fp_env();
    let p: [u64; 2] = std::array::from_fn(|k| if imm >> (4 + k) & 1 != 0 { sf::mul(&mut env, F64, a[k], b[k]) } else { 0 });
    // Each element adds its own product first (which NaN it returns).
    let s: [u64; 2] = std::array::from_fn(|k| sf::add(&mut env, F64, p[k], p[k ^ 1], false));
    cpu.sse_exceptions(env.flags)?;
    cpu.set_xmm(i.r0, std::array::from_fn(|k| if imm >> k & 1 != 0 { s[k] } else { 0 }));
    Ok(())
}

/// ROUNDPS/PD/SS/SD: imm8 bits 1:0 the rounding mode unless bit 2 asks for MXCSR's; bit 3
/// suppresses the precision exception.
fn round<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.sse_ready()?;
    let dbl = i.imm2 & DBL != 0;
    let b = elems(cpu.src_x::<MEM>(bus, i)?, dbl);
    let a = elems(cpu.xmm(i.r0), dbl);
    let f = fmt(dbl);
    let mut env = cpu.fp_env();
    let imm = i.imm as u8;
    let rc = if imm & 4 != 0 { env.rc } else { imm & 3 };
    let mut r = a;
    for k in 0..count(i.imm2) {
        r[k] = sf::round_int(&mut env, f, b[k], rc, imm & 8 != 0);
    }
    cpu.sse_exceptions(env.flags)?;
    cpu.set_xmm(i.r0, pack(r, dbl));
    Ok(())
}
