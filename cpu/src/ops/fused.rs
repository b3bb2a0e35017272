//! Macro-op fusion at decode time: a compare, a test or register arithmetic followed by a Jcc
//! (`cmp eax, ebx; jb`, `dec ecx; jnz`), or by the JMP of a trace, runs as one block entry, so
//! the pair costs one dispatch. The first instruction runs as its own handler would (flags recorded lazily as
//! always, since code after the branch may read them); the Jcc then tests its condition.
//!
//! Only pairs whose first instruction writes no memory are fused (a write could hit the Jcc's
//! own bytes, which must then end the block before the Jcc runs), and only Jccs of the code
//! size (the target wraps as `ip_mask` says). The block keeps the unfused instructions for
//! single-stepping and breakpoints (`Block::plain`). A Jcc whose target lies outside CS
//! faults with the first instruction retired: the handler says so in `Cpu::fused_partial`,
//! and the run loop points RIP at the Jcc.

use super::alu::{self, ADD, AND, CMP, SUB, TEST};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use iced_x86::{Instruction, Mnemonic, OpKind};

/// The Jcc half: the condition pair `CC2` (`cc >> 1`, a constant, so that the condition
/// folds into the flag computation just made), its sense from `i.cc` bit 0, and the
/// displacement in `i.imm2`, relative to the end of the pair.
/// `CC2` = `TRACE`: the JMP of a trace (see `branch::jmp_on`), which leaves the block only
/// when the target wraps.
#[inline(always)]
fn jcc<const CC2: u8>(cpu: &mut Cpu, i: &Insn) -> Result<(), Fault> {
    if CC2 == TRACE {
        let t = cpu.s.rip.wrapping_add(i.imm2);
        let tm = t & i.ip_mask;
        if cpu.check_near_target(tm).is_err() {
            cpu.fused_partial = true;
            return Err(Fault::gp(0));
        }
        cpu.s.rip = tm;
        if tm != t {
            cpu.side_exit();
        }
        return Ok(());
    }
    if cpu.cond(CC2 << 1) ^ (i.cc & 1 != 0) {
        let t = cpu.s.rip.wrapping_add(i.imm2) & i.ip_mask;
        if cpu.check_near_target(t).is_err() {
            cpu.fused_partial = true;
            return Err(Fault::gp(0));
        }
        cpu.s.rip = t;
        cpu.side_exit();
    }
    Ok(())
}

fn rr<const OP: u8, const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::rm_r::<OP, false, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

fn ri<const OP: u8, const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::rm_imm::<OP, false, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

/// A register destination and a memory source (`cmp eax, [ebx]`).
fn rm<const OP: u8, const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::r_m::<OP, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

/// CMP or TEST of memory with a register (`cmp [ebx], eax`): memory is only read.
fn mr<const OP: u8, const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::rm_r::<OP, true, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

/// CMP or TEST of memory with an immediate.
fn mi<const OP: u8, const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::rm_imm::<OP, true, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

fn inc<const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::inc::<false, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

fn dec<const S: u8, const CC2: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    alu::dec::<false, S>(cpu, bus, i)?;
    jcc::<CC2>(cpu, i)
}

/// The `CC2` of a trace's JMP.
const TRACE: u8 = 8;
/// A trace's JMP as a condition code (those of Jcc are 0-15).
const TRACE_CC: u8 = 16;

/// `$f::<$g.., S, CC2>` for a run-time operand size (1, 4 or 8: other sizes are not fused)
/// and condition code.
macro_rules! inst {
    (@cc $cc:expr, $f:ident; $($g:tt),*) => {
        match if $cc == TRACE_CC { TRACE } else { ($cc >> 1) & 7 } {
            0 => $f::<$($g,)* 0> as Handler,
            1 => $f::<$($g,)* 1> as Handler,
            2 => $f::<$($g,)* 2> as Handler,
            3 => $f::<$($g,)* 3> as Handler,
            4 => $f::<$($g,)* 4> as Handler,
            5 => $f::<$($g,)* 5> as Handler,
            6 => $f::<$($g,)* 6> as Handler,
            7 => $f::<$($g,)* 7> as Handler,
            _ => $f::<$($g,)* TRACE> as Handler,
        }
    };
    ($size:expr, $cc:expr, $f:ident; $($g:tt),*) => {
        match $size {
            1 => inst!(@cc $cc, $f; $($g,)* 1),
            4 => inst!(@cc $cc, $f; $($g,)* 4),
            8 => inst!(@cc $cc, $f; $($g,)* 8),
            _ => return None,
        }
    };
}

fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// The fused handler for `first` followed by `jcc`, if the pair fuses. `bits` is the code size.
fn handler(first: &Insn, fi: &Instruction, jcc: &Insn, ji: &Instruction, bits: u32) -> Option<Handler> {
    use Mnemonic as M;
    if first.ends_block || jcc.ends_block || u32::from(jcc.osz) * 8 != bits || ji.op_count() != 1 {
        return None;
    }
    if !matches!(ji.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64) {
        return None;
    }
    let cc = match ji.mnemonic() {
        M::Jo | M::Jno | M::Jb | M::Jae | M::Je | M::Jne | M::Jbe | M::Ja | M::Js | M::Jns | M::Jp | M::Jnp | M::Jl | M::Jge | M::Jle | M::Jg => {
            jcc.imm2 as u8
        }
        // A JMP that does not end its block is a trace's (`block.rs`).
        M::Jmp => TRACE_CC,
        _ => return None,
    };
    let size = first.osz;
    if fi.op_count() == 0 {
        return None;
    }
    let m = fi.mnemonic();
    let reg0 = fi.op0_kind() == OpKind::Register;
    let mem0 = fi.op0_kind() == OpKind::Memory;
    let k1 = if fi.op_count() == 2 { fi.op1_kind() } else { OpKind::Register };
    // The same handlers as `decode::select` chooses for the instruction alone, for the
    // compares and arithmetic that come before branches.
    Some(match m {
        M::Inc if reg0 && fi.op_count() == 1 => inst!(size, cc, inc;),
        M::Dec if reg0 && fi.op_count() == 1 => inst!(size, cc, dec;),
        _ if fi.op_count() != 2 => return None,
        M::Cmp if reg0 && k1 == OpKind::Register => inst!(size, cc, rr; CMP),
        M::Test if reg0 && k1 == OpKind::Register => inst!(size, cc, rr; TEST),
        M::Sub if reg0 && k1 == OpKind::Register => inst!(size, cc, rr; SUB),
        M::Cmp if reg0 && is_imm(k1) => inst!(size, cc, ri; CMP),
        M::Test if reg0 && is_imm(k1) => inst!(size, cc, ri; TEST),
        M::Sub if reg0 && is_imm(k1) => inst!(size, cc, ri; SUB),
        M::Add if reg0 && is_imm(k1) => inst!(size, cc, ri; ADD),
        M::And if reg0 && is_imm(k1) => inst!(size, cc, ri; AND),
        M::Cmp if reg0 && k1 == OpKind::Memory => inst!(size, cc, rm; CMP),
        M::Cmp if mem0 && k1 == OpKind::Register => inst!(size, cc, mr; CMP),
        M::Test if mem0 && k1 == OpKind::Register => inst!(size, cc, mr; TEST),
        M::Cmp if mem0 && is_imm(k1) => inst!(size, cc, mi; CMP),
        M::Test if mem0 && is_imm(k1) => inst!(size, cc, mi; TEST),
        _ => return None,
    })
}

/// Fuses the pairs of a block's instructions that can be (see the module comment) and numbers
/// the entries (`Insn::pos`). Returns `None` when nothing fused: the entries are `insns`
/// themselves, numbered in place.
pub(crate) fn fuse(insns: &mut [Insn], instrs: &[Instruction], bits: u32) -> Option<Vec<Insn>> {
    let mut out: Vec<Insn> = Vec::new();
    let mut fused_any = false;
    let mut k = 0;
    let mut pos = 0u8;
    while k < insns.len() {
        pos += 1;
        insns[k].pos = pos;
        if k + 1 < insns.len() {
            if let Some(h) = handler(&insns[k], &instrs[k], &insns[k + 1], &instrs[k + 1], bits) {
                let (first, jcc) = (&insns[k], &insns[k + 1]);
                let len = first.len + jcc.len;
                let cc = if instrs[k + 1].mnemonic() == Mnemonic::Jmp { TRACE_CC } else { jcc.imm2 as u8 };
                // RIP-relative operands are relative to the first instruction's end; the pair
                // runs with RIP past the Jcc.
                let disp = if first.base == crate::decode::RIP { first.disp.wrapping_sub(u64::from(jcc.len)) } else { first.disp };
                let f = Insn { exec: h, len, len1: first.len, cc, imm2: jcc.imm, disp, next: jcc.next, pos: pos + 1, ..first.clone() };
                out.push(f);
                pos += 1;
                insns[k + 1].pos = pos;
                fused_any = true;
                k += 2;
                continue;
            }
        }
        out.push(insns[k].clone());
        k += 1;
    }
    fused_any.then_some(out)
}
