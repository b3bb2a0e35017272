//! Comparisons and classification: FCOM/FCOMP/FCOMPP, FUCOM/FUCOMP/FUCOMPP, FICOM/FICOMP,
//! FCOMI/FCOMIP/FUCOMI/FUCOMIP (into EFLAGS), FTST, FXAM (Intel SDM vol. 1, 8.3.6 and the
//! instruction pages). Ordered comparisons raise IE on any NaN, unordered ones only on SNaNs.

use super::f80::{class, denormal_flag, is_nan, sign, unpack, Class};
use super::{exc, kind, sw};
use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::fault::Fault;
use crate::state::{flags, F80};
use iced_x86::Code;
use std::cmp::Ordering;

const POPS: u64 = 3;
const UNORDERED: u64 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rel {
    Gt,
    Lt,
    Eq,
    Un,
}

pub(super) fn select(i: &mut Insn, code: Code) -> Option<Handler> {
    use Code as C;
    let reg = |i: &mut Insn, flags: u64| {
        i.imm = flags;
        fcom_st as Handler
    };
    let mem = |i: &mut Insn, k: u8, pops: u64| {
        i.imm = (u64::from(k) << 8) | pops;
        fcom_mem as Handler
    };
    let comi = |i: &mut Insn, flags: u64| {
        i.imm = flags;
        fcomi as Handler
    };
    Some(match code {
        C::Fcom_st0_sti | C::Fcom_st0_sti_DCD0 => reg(i, 0),
        C::Fcomp_st0_sti | C::Fcomp_st0_sti_DCD8 | C::Fcomp_st0_sti_DED0 => reg(i, 1),
        C::Fucom_st0_sti => reg(i, UNORDERED),
        C::Fucomp_st0_sti => reg(i, UNORDERED | 1),
        C::Fcompp => {
            i.r0 = 1;
            reg(i, 2)
        }
        C::Fucompp => {
            i.r0 = 1;
            reg(i, UNORDERED | 2)
        }
        C::Fcom_m32fp => mem(i, kind::M32FP, 0),
        C::Fcom_m64fp => mem(i, kind::M64FP, 0),
        C::Fcomp_m32fp => mem(i, kind::M32FP, 1),
        C::Fcomp_m64fp => mem(i, kind::M64FP, 1),
        C::Ficom_m16int => mem(i, kind::M16INT, 0),
        C::Ficom_m32int => mem(i, kind::M32INT, 0),
        C::Ficomp_m16int => mem(i, kind::M16INT, 1),
        C::Ficomp_m32int => mem(i, kind::M32INT, 1),
        C::Fcomi_st0_sti => comi(i, 0),
        C::Fcomip_st0_sti => comi(i, 1),
        C::Fucomi_st0_sti => comi(i, UNORDERED),
        C::Fucomip_st0_sti => comi(i, UNORDERED | 1),
        C::Ftst => ftst as Handler,
        C::Fxam => fxam as Handler,
        _ => return None,
    })
}

/// Magnitude order key: zero below every finite value, infinity above.
fn mag(v: F80, c: Class) -> (i32, u64) {
    match c {
        Class::Zero => (i32::MIN, 0),
        Class::Inf => (i32::MAX, 0),
        _ => {
            let u = unpack(v);
            (u.exp, u.sig)
        }
    }
}

/// Compares a with b. `quiet`: FUCOM rules (QNaNs compare unordered without IE).
pub(crate) fn compare(a: F80, b: F80, quiet: bool) -> (Rel, u16) {
    let (ca, cb) = (class(a), class(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return (Rel::Un, exc::IE);
    }
    if is_nan(ca) || is_nan(cb) {
        let signaling = ca == Class::SNaN || cb == Class::SNaN;
        return (Rel::Un, if signaling || !quiet { exc::IE } else { 0 });
    }
    let de = denormal_flag(&[ca, cb]);
    if ca == Class::Zero && cb == Class::Zero {
        return (Rel::Eq, de);
    }
    let (sa, sb) = (sign(a) && ca != Class::Zero, sign(b) && cb != Class::Zero);
    let ord = if sa != sb {
        if sa {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    } else {
        let o = mag(a, ca).cmp(&mag(b, cb));
        if sa {
            o.reverse()
        } else {
            o
        }
    };
    let rel = match ord {
        Ordering::Less => Rel::Lt,
        Ordering::Greater => Rel::Gt,
        Ordering::Equal => Rel::Eq,
    };
    (rel, de)
}

/// C3, C2, C0 for a relation.
fn cc(rel: Rel) -> u16 {
    match rel {
        Rel::Gt => 0,
        Rel::Lt => sw::C0,
        Rel::Eq => sw::C3,
        Rel::Un => sw::C3 | sw::C2 | sw::C0,
    }
}

const CC3: u16 = sw::C0 | sw::C2 | sw::C3;

impl Cpu {
    /// Sets the condition codes from a comparison (C1 cleared) and pops, unless an unmasked
    /// exception stops it.
    fn fpu_compare_result(&mut self, rel: Rel, flags: u16, pops: u64) {
        self.fpu_raise(flags);
        if self.fpu_unmasked(flags) {
            return;
        }
        self.set_cc(CC3 | sw::C1, cc(rel));
        for _ in 0..pops {
            self.fpu_pop();
        }
    }

    /// Stack underflow in a comparison: masked, the result is "unordered".
    fn fpu_compare_underflow(&mut self, pops: u64) {
        if self.stack_underflow() {
            self.set_cc(CC3, CC3);
            for _ in 0..pops {
                self.fpu_pop();
            }
        }
    }
}

fn fcom_st(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let pops = i.imm & POPS;
    if cpu.st_empty(0) || cpu.st_empty(i.r0) {
        cpu.fpu_compare_underflow(pops);
        return Ok(());
    }
    let (rel, flags) = compare(cpu.st(0), cpu.st(i.r0), i.imm & UNORDERED != 0);
    cpu.fpu_compare_result(rel, flags, pops);
    Ok(())
}

fn fcom_mem(cpu: &mut Cpu, bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let pops = i.imm & POPS;
    let k = ((i.imm >> 8) & 0xF) as u8;
    let (v, mflags) = cpu.fpu_read_operand(bus, i, k)?;
    if cpu.st_empty(0) {
        cpu.fpu_compare_underflow(pops);
        return Ok(());
    }
    let (rel, flags) = compare(cpu.st(0), v, false);
    cpu.fpu_compare_result(rel, flags | mflags, pops);
    Ok(())
}

fn ftst(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    if cpu.st_empty(0) {
        cpu.fpu_compare_underflow(0);
        return Ok(());
    }
    let (rel, flags) = compare(cpu.st(0), F80::default(), false);
    cpu.fpu_compare_result(rel, flags, 0);
    Ok(())
}

/// FCOMI and friends: ZF, PF, CF as C3, C2, C0 would be; OF, SF, AF cleared.
fn fcomi(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let pops = i.imm & POPS;
    let all = flags::ZF | flags::PF | flags::CF | flags::OF | flags::SF | flags::AF;
    let set = |cpu: &mut Cpu, rel: Rel| {
        let v = match rel {
            Rel::Gt => 0,
            Rel::Lt => flags::CF,
            Rel::Eq => flags::ZF,
            Rel::Un => flags::ZF | flags::PF | flags::CF,
        };
        cpu.set_status(all, v);
    };
    if cpu.st_empty(0) || cpu.st_empty(i.r0) {
        if cpu.stack_underflow() {
            set(cpu, Rel::Un);
            for _ in 0..pops {
                cpu.fpu_pop();
            }
        }
        return Ok(());
    }
    let (rel, flags) = compare(cpu.st(0), cpu.st(i.r0), i.imm & UNORDERED != 0);
    cpu.fpu_raise(flags);
    if cpu.fpu_unmasked(flags) {
        return Ok(());
    }
    cpu.set_cc(sw::C1, 0);
    set(cpu, rel);
    for _ in 0..pops {
        cpu.fpu_pop();
    }
    Ok(())
}

/// FXAM's class code in C3, C2, C0, with the sign in C1.
pub(crate) fn examine(v: F80, empty: bool) -> u16 {
    let c = if empty {
        sw::C3 | sw::C0
    } else {
        match class(v) {
            Class::Unsupported => 0,
            Class::QNaN | Class::SNaN => sw::C0,
            Class::Normal => sw::C2,
            Class::Inf => sw::C2 | sw::C0,
            Class::Zero => sw::C3,
            Class::Denormal => sw::C3 | sw::C2,
        }
    };
    c | if sign(v) { sw::C1 } else { 0 }
}

fn fxam(cpu: &mut Cpu, _bus: &mut dyn Bus, i: &Insn) -> Result<(), Fault> {
    cpu.fpu_begin(i)?;
    let c = examine(cpu.st(0), cpu.st_empty(0));
    cpu.set_cc(sw::CC, c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(signif: u64, sign_exp: u16) -> F80 {
        F80 { signif, sign_exp }
    }

    #[test]
    fn ordering_and_nans() {
        let one = f(1 << 63, 0x3FFF);
        let two = f(1 << 63, 0x4000);
        let neg_two = f(1 << 63, 0xC000);
        assert_eq!(compare(one, two, false), (Rel::Lt, 0));
        assert_eq!(compare(two, one, false), (Rel::Gt, 0));
        assert_eq!(compare(neg_two, one, false), (Rel::Lt, 0));
        assert_eq!(compare(f(0, 0x8000), f(0, 0), false), (Rel::Eq, 0), "-0 == +0");
        assert_eq!(compare(f(1, 0), f(0, 0), false), (Rel::Gt, exc::DE), "denormal");
        let qnan = f(0xC000_0000_0000_0000, 0x7FFF);
        let snan = f(0x8000_0000_0000_0001, 0x7FFF);
        assert_eq!(compare(qnan, one, true), (Rel::Un, 0), "FUCOM: QNaN quietly unordered");
        assert_eq!(compare(qnan, one, false), (Rel::Un, exc::IE), "FCOM: QNaN invalid");
        assert_eq!(compare(snan, one, true), (Rel::Un, exc::IE));
        assert_eq!(compare(f(0, 0x7FFF), one, true), (Rel::Un, exc::IE), "pseudo-infinity");
        assert_eq!(compare(f(1 << 63, 0xFFFF), neg_two, false), (Rel::Lt, 0), "-inf");
    }

    #[test]
    fn fxam_classes() {
        assert_eq!(examine(f(0, 0), true), sw::C3 | sw::C0);
        assert_eq!(examine(f(1 << 63, 0xBFFF), false), sw::C2 | sw::C1);
        assert_eq!(examine(f(1, 0), false), sw::C3 | sw::C2);
        assert_eq!(examine(f(0, 0x8000), false), sw::C3 | sw::C1);
        assert_eq!(examine(f(1 << 63, 0x7FFF), false), sw::C2 | sw::C0);
        assert_eq!(examine(f(0xC000_0000_0000_0000, 0xFFFF), false), sw::C0 | sw::C1);
        assert_eq!(examine(f(0x4000_0000_0000_0000, 0x3FFF), false), 0, "unnormal: unsupported");
    }
}
