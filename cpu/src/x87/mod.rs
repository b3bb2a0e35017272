//! The x87 floating-point unit (Intel SDM vol. 1, chapter 8; the instruction pages of vol. 2):
//! the register stack with its tags, status and control words, exceptions with their masked
//! responses, and every ESC (D8-DF) instruction plus WAIT. Arithmetic is true 80-bit extended
//! precision through `f80.rs`.
//!
//! Each handler starts with `begin`: #NM when CR0.EM or CR0.TS says the FPU is not there, #MF
//! (CR0.NE) for a pending unmasked exception at a waiting instruction, then the last-instruction
//! pointers. Unmasked invalid, denormal and zero-divide exceptions leave the destination and the
//! stack untouched; unmasked overflow and underflow deliver biased results to registers and
//! store nothing to memory; every unmasked exception sets ES and B, and the next waiting
//! instruction takes it.

mod arith;
mod compare;
mod control;
mod f80;
mod load_store;
mod transcend;

use crate::bus::Bus;
use crate::cpu::{mask, Cpu};
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::F80;
use f80::{tag_of, Exact, Rounded};
use iced_x86::{Code, Instruction, OpKind, Register};

/// Exception flags as they sit in the status word (and masks in the control word).
pub(crate) mod exc {
    pub const IE: u16 = 0x01;
    pub const DE: u16 = 0x02;
    pub const ZE: u16 = 0x04;
    pub const OE: u16 = 0x08;
    pub const UE: u16 = 0x10;
    pub const PE: u16 = 0x20;
    /// Stack fault: with IE, an underflow (C1 clear) or overflow (C1 set) of the register stack.
    pub const SF: u16 = 0x40;
    /// The six maskable exceptions.
    pub const ALL: u16 = 0x3F;
}

/// Status word bits other than the exception flags.
pub(crate) mod sw {
    pub const ES: u16 = 0x80;
    pub const C0: u16 = 0x100;
    pub const C1: u16 = 0x200;
    pub const C2: u16 = 0x400;
    pub const C3: u16 = 0x4000;
    pub const B: u16 = 0x8000;
    pub const TOP: u16 = 0x3800;
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_NE: u64 = 1 << 5;
const VEC_NM: u8 = 7;
const VEC_MF: u8 = 16;

// `Insn::imm2` for x87 instructions: the 11-bit FOP and how the instruction behaves.
const FOP_MASK: u64 = 0x7FF;
/// FN* control instructions: no check for pending exceptions.
const NOWAIT: u64 = 1 << 12;
/// Control instructions leave the last-instruction pointers alone.
const CONTROL: u64 = 1 << 13;
/// The instruction has a memory operand: it sets FDP and FDS.
const MEM_OPERAND: u64 = 1 << 14;

/// Memory operand kinds (`Insn::imm` bits 8-11 where a handler takes several).
pub(crate) mod kind {
    pub const M32FP: u8 = 0;
    pub const M64FP: u8 = 1;
    pub const M16INT: u8 = 2;
    pub const M32INT: u8 = 3;
    pub const M64INT: u8 = 4;
    pub const M80FP: u8 = 5;
    pub const M80BCD: u8 = 6;
}

/// What an operation produced: the value to store (`None` when an unmasked exception stops
/// it), the exception flags, and whether rounding increased the magnitude (C1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub value: Option<F80>,
    pub flags: u16,
    pub up: bool,
}

impl Outcome {
    pub(crate) fn exact(v: F80, flags: u16) -> Outcome {
        Outcome { value: Some(v), flags, up: false }
    }

    /// The masked response to an invalid operation: the indefinite.
    pub(crate) fn invalid() -> Outcome {
        Outcome::exact(f80::INDEFINITE, exc::IE)
    }

    pub(crate) fn rounded(r: Rounded, flags: u16) -> Outcome {
        Outcome { value: Some(r.to_f80()), flags: flags | r.flags, up: r.up }
    }

    /// Drops the value when a pre-computation exception (IE, DE, ZE) is unmasked.
    pub(crate) fn gate(mut self, fcw: u16) -> Outcome {
        if self.flags & (exc::IE | exc::DE | exc::ZE) & !fcw != 0 {
            self.value = None;
        }
        self
    }
}

/// Rounds an exact result to a register under precision control.
pub(crate) fn round_pc(x: Exact, fcw: u16, flags: u16) -> Outcome {
    Outcome::rounded(f80::round(x, f80::ext_format(fcw), rc(fcw), fcw & exc::ALL), flags)
}

/// Rounds an exact result to a register at full precision (instructions precision control
/// does not apply to).
pub(crate) fn round_full(x: Exact, fcw: u16, flags: u16) -> Outcome {
    Outcome::rounded(f80::round(x, f80::EXT, rc(fcw), fcw & exc::ALL), flags)
}

pub(crate) fn rc(fcw: u16) -> u8 {
    ((fcw >> 10) & 3) as u8
}

impl Cpu {
    /// FERR#: an unmasked x87 exception is pending (FSW.ES). With CR0.NE clear a PC routes this
    /// pin to IRQ 13.
    pub fn fpu_error(&self) -> bool {
        self.s.fpu.fsw & sw::ES != 0
    }

    pub(crate) fn fpu_top(&self) -> usize {
        usize::from((self.s.fpu.fsw >> 11) & 7)
    }

    pub(crate) fn set_fpu_top(&mut self, t: usize) {
        self.s.fpu.fsw = (self.s.fpu.fsw & !sw::TOP) | (((t & 7) as u16) << 11);
    }

    pub(crate) fn st_phys(&self, i: u8) -> usize {
        (self.fpu_top() + usize::from(i)) & 7
    }

    pub(crate) fn st(&self, i: u8) -> F80 {
        self.s.fpu.regs[self.st_phys(i)]
    }

    pub(crate) fn phys_tag(&self, p: usize) -> u16 {
        (self.s.fpu.ftw >> (2 * p)) & 3
    }

    pub(crate) fn set_phys_tag(&mut self, p: usize, t: u16) {
        self.s.fpu.ftw = (self.s.fpu.ftw & !(3 << (2 * p))) | ((t & 3) << (2 * p));
    }

    pub(crate) fn st_empty(&self, i: u8) -> bool {
        self.phys_tag(self.st_phys(i)) == 3
    }

    /// Writes ST(i) and tags it from its contents.
    pub(crate) fn set_st(&mut self, i: u8, v: F80) {
        let p = self.st_phys(i);
        self.s.fpu.regs[p] = v;
        self.set_phys_tag(p, tag_of(v));
    }

    pub(crate) fn fpu_push(&mut self, v: F80) {
        let t = self.fpu_top().wrapping_sub(1) & 7;
        self.set_fpu_top(t);
        self.set_st(0, v);
    }

    pub(crate) fn fpu_pop(&mut self) {
        let p = self.st_phys(0);
        self.set_phys_tag(p, 3);
        self.set_fpu_top(p + 1);
    }

    pub(crate) fn set_cc(&mut self, which: u16, values: u16) {
        self.s.fpu.fsw = (self.s.fpu.fsw & !which) | (values & which);
    }

    pub(crate) fn fcw(&self) -> u16 {
        self.s.fpu.fcw
    }

    /// Records exception flags; any unmasked one sets ES and B.
    pub(crate) fn fpu_raise(&mut self, flags: u16) {
        let fsw = &mut self.s.fpu.fsw;
        *fsw |= flags & (exc::ALL | exc::SF);
        if flags & exc::ALL & !self.s.fpu.fcw != 0 {
            *fsw |= sw::ES | sw::B;
        }
    }

    /// ES and B follow the flags and masks (after FLDCW, FLDENV, FRSTOR).
    pub(crate) fn fpu_recompute_es(&mut self) {
        let f = &mut self.s.fpu;
        if f.fsw & exc::ALL & !f.fcw != 0 {
            f.fsw |= sw::ES | sw::B;
        } else {
            f.fsw &= !(sw::ES | sw::B);
        }
    }

    /// Whether the masks leave any of `flags` unmasked.
    pub(crate) fn fpu_unmasked(&self, flags: u16) -> bool {
        flags & exc::ALL & !self.s.fpu.fcw != 0
    }

    /// Stack underflow: IE and SF, C1 clear. Returns whether the masked response applies.
    pub(crate) fn stack_underflow(&mut self) -> bool {
        self.set_cc(sw::C1, 0);
        self.fpu_raise(exc::IE | exc::SF);
        !self.fpu_unmasked(exc::IE)
    }

    /// Stack overflow: IE and SF, C1 set. Returns whether the masked response applies.
    pub(crate) fn stack_overflow(&mut self) -> bool {
        self.set_cc(sw::C1, sw::C1);
        self.fpu_raise(exc::IE | exc::SF);
        !self.fpu_unmasked(exc::IE)
    }

    /// Applies an outcome to ST(dest): flags, C1, the value, then a pop if asked and the value
    /// was stored.
    pub(crate) fn fpu_store_outcome(&mut self, o: Outcome, dest: u8, pop: bool) {
        self.fpu_raise(o.flags);
        self.set_cc(sw::C1, if o.up { sw::C1 } else { 0 });
        if let Some(v) = o.value {
            self.set_st(dest, v);
            if pop {
                self.fpu_pop();
            }
        }
    }

    /// The start of every x87 instruction: device-not-available, pending exceptions, and the
    /// last-instruction pointers.
    pub(crate) fn fpu_begin(&mut self, i: &Insn) -> Result<(), Fault> {
        let cr0 = self.s.cr0;
        if cr0 & (CR0_EM | CR0_TS) != 0 {
            return Err(Fault::exc(VEC_NM));
        }
        if i.imm2 & NOWAIT == 0 {
            self.fpu_check_pending()?;
        }
        if i.imm2 & CONTROL == 0 {
            let f = &mut self.s.fpu;
            f.fip = self.s.rip.wrapping_sub(u64::from(i.len)) & i.ip_mask;
            f.fcs = self.s.seg[crate::state::sreg::CS].selector;
            f.fop = (i.imm2 & FOP_MASK) as u16;
            if i.imm2 & MEM_OPERAND != 0 {
                let ea = self.ea(i);
                let f = &mut self.s.fpu;
                f.fdp = ea;
                f.fds = self.s.seg[usize::from(i.seg)].selector;
            }
        }
        Ok(())
    }

    /// A waiting instruction meets a pending unmasked exception: #MF with CR0.NE. With NE clear
    /// the PC's FERR#/IRQ 13 path reports it (`fpu_error`) and the instruction goes on, as with
    /// IGNNE# asserted.
    fn fpu_check_pending(&mut self) -> Result<(), Fault> {
        if self.s.fpu.fsw & sw::ES != 0 && self.s.cr0 & CR0_NE != 0 {
            return Err(Fault::exc(VEC_MF));
        }
        Ok(())
    }

    /// Reads `size` bytes of the memory operand at byte `off` of it.
    pub(crate) fn fpu_read(&mut self, bus: &mut dyn Bus, i: &Insn, off: u64, size: u8) -> Result<u64, Fault> {
        let ea = mask(self.ea(i).wrapping_add(off), i.asz);
        self.read_seg(bus, usize::from(i.seg), ea, size)
    }

    pub(crate) fn fpu_write(&mut self, bus: &mut dyn Bus, i: &Insn, off: u64, size: u8, v: u64) -> Result<(), Fault> {
        let ea = mask(self.ea(i).wrapping_add(off), i.asz);
        self.write_seg(bus, usize::from(i.seg), ea, size, v)
    }

    /// Checks the segment limit and write access for the whole memory operand of `len`
    /// bytes, so a multi-part store is not cut short by the segment.
    pub(crate) fn fpu_check_write(&mut self, i: &Insn, len: u8) -> Result<(), Fault> {
        self.lin(usize::from(i.seg), self.ea(i), len, crate::mem::Access::Write).map(|_| ())
    }

    /// As `fpu_check_write`, for reading.
    pub(crate) fn fpu_check_read(&mut self, i: &Insn, len: u8) -> Result<(), Fault> {
        self.lin(usize::from(i.seg), self.ea(i), len, crate::mem::Access::Read).map(|_| ())
    }
}

/// WAIT/FWAIT: #NM only with CR0.TS and CR0.MP; then pending unmasked exceptions.
fn fwait(cpu: &mut Cpu, _bus: &mut dyn Bus, _i: &Insn) -> Result<(), Fault> {
    if cpu.s.cr0 & (CR0_TS | CR0_MP) == (CR0_TS | CR0_MP) {
        return Err(Fault::exc(VEC_NM));
    }
    cpu.fpu_check_pending()
}

/// The handler for an x87 instruction (with `i` adjusted as the handler needs), or `None`
/// if `instr` is not one this module implements.
pub(crate) fn select(i: &mut Insn, instr: &Instruction, mem: bool) -> Option<Handler> {
    use Code as C;
    let code = instr.code();
    if code == C::Wait {
        return Some(fwait as Handler);
    }
    let oc = instr.op_code();
    if oc.table() != iced_x86::OpCodeTableKind::Normal {
        return None;
    }
    let first = if oc.op_code() > 0xFF { oc.op_code() >> 8 } else { oc.op_code() };
    if !(0xD8..=0xDF).contains(&first) {
        return None;
    }
    // ST(i): the register operand that is not ST(0) (or the only one).
    let mut sti = 0u8;
    for k in 0..instr.op_count() {
        if instr.op_kind(k) == OpKind::Register {
            let r = instr.op_register(k);
            if (Register::ST0..=Register::ST7).contains(&r) && r != Register::ST0 {
                sti = (r as u32 - Register::ST0 as u32) as u8;
            }
        }
    }
    i.r0 = sti;
    let mut flags = fop(instr, sti);
    if mem {
        flags |= MEM_OPERAND;
    }
    let h = arith::select(i, code)
        .or_else(|| compare::select(i, code))
        .or_else(|| load_store::select(i, code))
        .or_else(|| transcend::select(i, code))
        .or_else(|| {
            let (h, f) = control::select(i, code)?;
            flags |= f;
            Some(h)
        });
    let Some(h) = h else {
        tracing::debug!("x87 instruction {code:?} not implemented: #UD");
        return None;
    };
    if flags & CONTROL != 0 {
        flags &= !MEM_OPERAND;
    }
    i.imm2 = flags;
    Some(h)
}

/// The 11-bit FOP: the low three bits of the first opcode byte, then the ModR/M byte.
fn fop(instr: &Instruction, sti: u8) -> u64 {
    let oc = instr.op_code();
    let code = oc.op_code();
    if code > 0xFF {
        // Register forms: iced gives the two bytes with the ModR/M base.
        let base = (code & 0xFF) as u64;
        let st_form = base & 7 == 0 && instr.op_count() > 0;
        let modrm = if st_form { base | u64::from(sti) } else { base };
        return ((u64::from(code >> 8) & 7) << 8) | modrm;
    }
    let reg = oc.group_index().max(0) as u64;
    ((u64::from(code) & 7) << 8) | modrm_mem(instr) | (reg << 3)
}

/// The mod and r/m fields that encode the memory operand of `instr`.
fn modrm_mem(instr: &Instruction) -> u64 {
    let base = instr.memory_base();
    let index = instr.memory_index();
    let dsize = instr.memory_displ_size();
    let disp_mod = |d: u32| match d {
        0 => 0u64,
        1 => 1,
        _ => 2,
    };
    if base.size() == 2 || (base == Register::None && index.size() == 2) || instr.memory_displ_size() == 2 {
        use Register as R;
        let rm = match (base, index) {
            (R::BX, R::SI) => 0,
            (R::BX, R::DI) => 1,
            (R::BP, R::SI) => 2,
            (R::BP, R::DI) => 3,
            (R::SI, R::None) => 4,
            (R::DI, R::None) => 5,
            (R::BP, R::None) => 6,
            (R::BX, R::None) => 7,
            _ => return 6, // disp16 alone: mod 00, r/m 110
        };
        return (disp_mod(dsize) << 6) | rm;
    }
    if base == Register::RIP || base == Register::EIP {
        return 5;
    }
    if base == Register::None {
        return if index == Register::None && instr.code_size() != iced_x86::CodeSize::Code64 { 5 } else { 4 };
    }
    let b = base.number() as u64 & 7;
    let rm = if index != Register::None || b == 4 { 4 } else { b };
    let m = if dsize == 0 && b == 5 { 1 } else { disp_mod(dsize) };
    (m << 6) | rm
}

#[cfg(test)]
mod tests;
