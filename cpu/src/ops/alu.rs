//! ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST, INC, DEC, NEG, NOT, XADD, CMPXCHG.

use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::flags::FlagOp;
use crate::mem::{read_host, write_host, Access};
use crate::state::reg;
use iced_x86::Mnemonic;

pub(crate) const ADD: u8 = 0;
pub(crate) const OR: u8 = 1;
pub(crate) const ADC: u8 = 2;
pub(crate) const SBB: u8 = 3;
pub(crate) const AND: u8 = 4;
pub(crate) const SUB: u8 = 5;
pub(crate) const XOR: u8 = 6;
pub(crate) const CMP: u8 = 7;
pub(crate) const TEST: u8 = 8;

pub(crate) fn op_of(m: Mnemonic) -> u8 {
    match m {
        Mnemonic::Add => ADD,
        Mnemonic::Or => OR,
        Mnemonic::Adc => ADC,
        Mnemonic::Sbb => SBB,
        Mnemonic::And => AND,
        Mnemonic::Sub => SUB,
        Mnemonic::Xor => XOR,
        _ => CMP,
    }
}

/// Computes `a OP b` at `size`, recording the flags. CMP and TEST compute like SUB and AND.
#[inline(always)]
fn compute<const OP: u8>(cpu: &mut Cpu, a: u64, b: u64, size: u8) -> u64 {
    let (r, op) = match OP {
        ADD => (a.wrapping_add(b), FlagOp::Add),
        ADC => {
            if cpu.cf() {
                (a.wrapping_add(b).wrapping_add(1), FlagOp::AdcCarry)
            } else {
                (a.wrapping_add(b), FlagOp::Add)
            }
        }
        SUB | CMP => (a.wrapping_sub(b), FlagOp::Sub),
        SBB => {
            if cpu.cf() {
                (a.wrapping_sub(b).wrapping_sub(1), FlagOp::SbbBorrow)
            } else {
                (a.wrapping_sub(b), FlagOp::Sub)
            }
        }
        AND | TEST => (a & b, FlagOp::Logic),
        OR => (a | b, FlagOp::Logic),
        _ => (a ^ b, FlagOp::Logic),
    };
    let r = mask(r, size);
    cpu.set_lazy(op, size, a, b, r);
    r
}

const fn writes(op: u8) -> bool {
    op != CMP && op != TEST
}

/// `a OP b` with the memory operand as destination (or source, for CMP and TEST) through the
/// host pointer, when the TLB allows it (`Cpu::mem_host`); otherwise what `mem_host` found
/// for the full path.
#[inline(always)]
fn mem_fast<const OP: u8, const S: u8>(cpu: &mut Cpu, i: &Insn, b: u64) -> Result<(), Option<u64>> {
    let h = cpu.mem_host(i, S, acc(OP))?;
    let a = read_host(h, S);
    let r = compute::<OP>(cpu, a, b, S);
    if writes(OP) {
        write_host(h, S, r);
    }
    Ok(())
}

const fn acc(op: u8) -> Access {
    if writes(op) {
        Access::Write
    } else {
        Access::Read
    }
}

/// `a OP b` with the memory operand at `lin` (or found again), every case.
#[inline(always)]
fn mem_full<const OP: u8, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>, b: u64) -> Result<(), Fault> {
    let lin = cpu.mem_lin_from(i, lin, S, acc(OP))?;
    if writes(OP) {
        cpu.modify_mem(bus, lin, S, |c, a| Some(compute::<OP>(c, a, b, S)))
    } else {
        let a = cpu.read(bus, lin, S)?;
        compute::<OP>(cpu, a, b, S);
        Ok(())
    }
}

#[inline]
pub(crate) fn rm_r<const OP: u8, const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let b = cpu.reg(i.r1, S);
    if MEM {
        return match mem_fast::<OP, S>(cpu, i, b) {
            Ok(()) => Ok(()),
            Err(lin) => rm_r_full::<OP, S>(cpu, bus, i, lin),
        };
    }
    if writes(OP) {
        cpu.modify_rm::<false>(bus, i, S, |c, a| Some(compute::<OP>(c, a, b, S)))
    } else {
        let a = cpu.reg(i.r0, S);
        compute::<OP>(cpu, a, b, S);
        Ok(())
    }
}

/// `rm_r` with a memory operand, every case.
#[inline(never)]
fn rm_r_full<const OP: u8, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>) -> Result<(), Fault> {
    let b = cpu.reg(i.r1, S);
    mem_full::<OP, S>(cpu, bus, i, lin, b)
}

#[inline]
pub(crate) fn r_m<const OP: u8, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let b = match cpu.mem_host(i, S, Access::Read) {
        Ok(h) => read_host(h, S),
        Err(lin) => return r_m_full::<OP, S>(cpu, bus, i, lin),
    };
    let a = cpu.reg(i.r0, S);
    let r = compute::<OP>(cpu, a, b, S);
    if writes(OP) {
        cpu.set_reg(i.r0, S, r);
    }
    Ok(())
}

/// `r_m`, every case.
#[inline(never)]
fn r_m_full<const OP: u8, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>) -> Result<(), Fault> {
    let lin = cpu.mem_lin_from(i, lin, S, Access::Read)?;
    let b = cpu.read(bus, lin, S)?;
    let a = cpu.reg(i.r0, S);
    let r = compute::<OP>(cpu, a, b, S);
    if writes(OP) {
        cpu.set_reg(i.r0, S, r);
    }
    Ok(())
}

#[inline]
pub(crate) fn rm_imm<const OP: u8, const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let b = mask(i.imm, S);
    if MEM {
        return match mem_fast::<OP, S>(cpu, i, b) {
            Ok(()) => Ok(()),
            Err(lin) => rm_imm_full::<OP, S>(cpu, bus, i, lin),
        };
    }
    if writes(OP) {
        cpu.modify_rm::<false>(bus, i, S, |c, a| Some(compute::<OP>(c, a, b, S)))
    } else {
        let a = cpu.reg(i.r0, S);
        compute::<OP>(cpu, a, b, S);
        Ok(())
    }
}

/// `rm_imm` with a memory operand, every case.
#[inline(never)]
fn rm_imm_full<const OP: u8, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn, lin: Option<u64>) -> Result<(), Fault> {
    mem_full::<OP, S>(cpu, bus, i, lin, mask(i.imm, S))
}

/// The instance of `$f::<OP, [MEM,] S>` for a run-time operation and operand size.
macro_rules! table {
    ($f:ident, $op:expr, $size:expr $(, $mem:tt)?) => {
        match $op {
            ADD => crate::decode::sized!($size, $f $(, $mem)?; ADD),
            OR => crate::decode::sized!($size, $f $(, $mem)?; OR),
            ADC => crate::decode::sized!($size, $f $(, $mem)?; ADC),
            SBB => crate::decode::sized!($size, $f $(, $mem)?; SBB),
            AND => crate::decode::sized!($size, $f $(, $mem)?; AND),
            SUB => crate::decode::sized!($size, $f $(, $mem)?; SUB),
            XOR => crate::decode::sized!($size, $f $(, $mem)?; XOR),
            CMP => crate::decode::sized!($size, $f $(, $mem)?; CMP),
            _ => crate::decode::sized!($size, $f $(, $mem)?; TEST),
        }
    };
}

pub(crate) fn rm_r_handler(op: u8, mem: bool, size: u8) -> Handler {
    if mem {
        table!(rm_r, op, size, true)
    } else {
        table!(rm_r, op, size, false)
    }
}

pub(crate) fn r_m_handler(op: u8, size: u8) -> Handler {
    table!(r_m, op, size)
}

pub(crate) fn rm_imm_handler(op: u8, mem: bool, size: u8) -> Handler {
    if mem {
        table!(rm_imm, op, size, true)
    } else {
        table!(rm_imm, op, size, false)
    }
}

#[inline]
pub(crate) fn inc<const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.modify_rm::<MEM>(bus, i, S, |c, a| {
        let r = mask(a.wrapping_add(1), S);
        c.set_lazy(FlagOp::Inc, S, a, 1, r);
        Some(r)
    })
}

#[inline]
pub(crate) fn dec<const MEM: bool, const S: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.modify_rm::<MEM>(bus, i, S, |c, a| {
        let r = mask(a.wrapping_sub(1), S);
        c.set_lazy(FlagOp::Dec, S, a, 1, r);
        Some(r)
    })
}

pub(crate) fn neg<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    cpu.modify_rm::<MEM>(bus, i, size, |c, b| {
        let r = mask(0u64.wrapping_sub(b), size);
        c.set_lazy(FlagOp::Sub, size, 0, b, r);
        Some(r)
    })
}

pub(crate) fn not<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    cpu.modify_rm::<MEM>(bus, i, size, |_, a| Some(mask(!a, size)))
}

pub(crate) fn xadd<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let src = cpu.reg(i.r1, size);
    if !MEM {
        // SRC takes the old destination first, then the destination takes the sum, so
        // XADD r, r with one register leaves the sum.
        let old = cpu.reg(i.r0, size);
        let sum = compute::<ADD>(cpu, old, src, size);
        cpu.set_reg(i.r1, size, old);
        cpu.set_reg(i.r0, size, sum);
        return Ok(());
    }
    let mut old = 0;
    cpu.modify_rm::<MEM>(bus, i, size, |c, a| {
        old = a;
        Some(compute::<ADD>(c, a, src, size))
    })?;
    cpu.set_reg(i.r1, size, old);
    Ok(())
}

pub(crate) fn cmpxchg<const MEM: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    let size = i.osz;
    let src = cpu.reg(i.r1, size);
    let acc = cpu.reg(reg::RAX as u8, size);
    let mut loaded = 0;
    // The destination is always written (with its own value on a mismatch), as the bus
    // cycle of a locked compare-exchange does.
    cpu.modify_rm::<MEM>(bus, i, size, |c, d| {
        loaded = d;
        compute::<CMP>(c, acc, d, size);
        // A memory destination is written back either way (the locked cycle); a register
        // destination only when the compare succeeds.
        if acc == d {
            Some(src)
        } else if MEM {
            Some(d)
        } else {
            None
        }
    })?;
    if acc != loaded {
        cpu.set_reg(reg::RAX as u8, size, loaded);
    }
    Ok(())
}
