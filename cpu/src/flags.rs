//! Lazy status flags (v86's `arith.rs`, Bochs's lazy flags): arithmetic records its operands,
//! result and kind; CF, PF, AF, ZF, SF and OF are computed only when something reads them.

use crate::cpu::{mask, sign_bit, Cpu};
use crate::state::flags::*;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FlagOp {
    /// The status flags in `rflags` are current.
    #[default]
    None,
    Add,
    /// Add with carry in set (CF = result <= a).
    AdcCarry,
    Sub,
    /// Subtract with borrow in set (CF = a <= b).
    SbbBorrow,
    /// AND, OR, XOR, TEST: CF = OF = AF = 0.
    Logic,
    /// INC, DEC: like Add/Sub by one, but CF is kept in `rflags`.
    Inc,
    Dec,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lazy {
    pub op: FlagOp,
    pub size: u8,
    pub a: u64,
    pub b: u64,
    pub r: u64,
}

#[inline(always)]
fn parity(v: u64) -> bool {
    (v as u8).count_ones() % 2 == 0
}

impl Cpu {
    /// Records an arithmetic result; the flags follow from it on demand.
    #[inline(always)]
    pub(crate) fn set_lazy(&mut self, op: FlagOp, size: u8, a: u64, b: u64, r: u64) {
        if matches!(op, FlagOp::Inc | FlagOp::Dec) {
            // INC and DEC keep CF: fold the current one into rflags first.
            let cf = self.cf();
            self.s.rflags = (self.s.rflags & !CF) | if cf { CF } else { 0 };
        }
        self.lazy = Lazy { op, size, a, b, r: mask(r, size) };
    }

    #[inline(always)]
    pub(crate) fn cf(&self) -> bool {
        let l = &self.lazy;
        match l.op {
            FlagOp::None | FlagOp::Inc | FlagOp::Dec => self.s.rflags & CF != 0,
            FlagOp::Add => l.r < mask(l.a, l.size),
            FlagOp::AdcCarry => l.r <= mask(l.a, l.size),
            FlagOp::Sub => mask(l.a, l.size) < mask(l.b, l.size),
            FlagOp::SbbBorrow => mask(l.a, l.size) <= mask(l.b, l.size),
            FlagOp::Logic => false,
        }
    }

    #[inline(always)]
    pub(crate) fn zf(&self) -> bool {
        match self.lazy.op {
            FlagOp::None => self.s.rflags & ZF != 0,
            _ => self.lazy.r == 0,
        }
    }

    #[inline(always)]
    pub(crate) fn sf(&self) -> bool {
        match self.lazy.op {
            FlagOp::None => self.s.rflags & SF != 0,
            _ => self.lazy.r & sign_bit(self.lazy.size) != 0,
        }
    }

    #[inline(always)]
    pub(crate) fn of(&self) -> bool {
        let l = &self.lazy;
        if l.op == FlagOp::None {
            return self.s.rflags & OF != 0;
        }
        let sb = sign_bit(l.size);
        match l.op {
            FlagOp::None => unreachable!(),
            FlagOp::Add | FlagOp::AdcCarry | FlagOp::Inc => (l.a ^ l.r) & (l.b ^ l.r) & sb != 0,
            FlagOp::Sub | FlagOp::SbbBorrow | FlagOp::Dec => (l.a ^ l.b) & (l.a ^ l.r) & sb != 0,
            FlagOp::Logic => false,
        }
    }

    #[inline(always)]
    pub(crate) fn pf(&self) -> bool {
        match self.lazy.op {
            FlagOp::None => self.s.rflags & PF != 0,
            _ => parity(self.lazy.r),
        }
    }

    #[inline(always)]
    pub(crate) fn af(&self) -> bool {
        let l = &self.lazy;
        match l.op {
            FlagOp::None => self.s.rflags & AF != 0,
            FlagOp::Logic => false,
            _ => (l.a ^ l.b ^ l.r) & 0x10 != 0,
        }
    }

    /// RFLAGS with the lazy flags folded in: one pass over the record.
    pub(crate) fn rflags(&self) -> u64 {
        let l = &self.lazy;
        if l.op == FlagOp::None {
            return self.s.rflags;
        }
        let sb = sign_bit(l.size);
        let (a, b, r) = (mask(l.a, l.size), mask(l.b, l.size), l.r);
        let mut f = self.s.rflags & !ARITH;
        if r == 0 {
            f |= ZF;
        }
        if r & sb != 0 {
            f |= SF;
        }
        if parity(r) {
            f |= PF;
        }
        let (cf, of, af) = match l.op {
            FlagOp::None => unreachable!(),
            FlagOp::Add => (r < a, (a ^ r) & (b ^ r) & sb != 0, true),
            FlagOp::AdcCarry => (r <= a, (a ^ r) & (b ^ r) & sb != 0, true),
            FlagOp::Sub => (a < b, (a ^ b) & (a ^ r) & sb != 0, true),
            FlagOp::SbbBorrow => (a <= b, (a ^ b) & (a ^ r) & sb != 0, true),
            FlagOp::Logic => (false, false, false),
            FlagOp::Inc => (self.s.rflags & CF != 0, (a ^ r) & (b ^ r) & sb != 0, true),
            FlagOp::Dec => (self.s.rflags & CF != 0, (a ^ b) & (a ^ r) & sb != 0, true),
        };
        if cf {
            f |= CF;
        }
        if of {
            f |= OF;
        }
        if af && (a ^ b ^ r) & 0x10 != 0 {
            f |= AF;
        }
        f
    }

    /// Makes `rflags` current and drops the lazy record.
    #[inline]
    pub(crate) fn materialize_flags(&mut self) {
        if self.lazy.op != FlagOp::None {
            self.s.rflags = self.rflags();
            self.lazy.op = FlagOp::None;
        }
    }

    /// Sets the given status flags to the given values (others as they are).
    #[inline]
    pub(crate) fn set_status(&mut self, which: u64, values: u64) {
        self.materialize_flags();
        self.s.rflags = (self.s.rflags & !which) | (values & which);
    }

    /// Sets one flag bit.
    #[inline]
    pub(crate) fn set_flag(&mut self, bit: u64, on: bool) {
        self.set_status(bit, if on { bit } else { 0 });
    }

    /// Sets SF, ZF and PF from a result (shifts, BCD, multiplications...).
    pub(crate) fn szp(&self, r: u64, size: u8) -> u64 {
        let r = mask(r, size);
        let mut f = 0;
        if r == 0 {
            f |= ZF;
        }
        if r & sign_bit(size) != 0 {
            f |= SF;
        }
        if parity(r) {
            f |= PF;
        }
        f
    }

    /// Evaluates a condition code (the low nibble of Jcc/SETcc/CMOVcc opcodes).
    #[inline(always)]
    pub(crate) fn cond(&self, cc: u8) -> bool {
        let r = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        r ^ (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_sub_flags() {
        let mut c = Cpu::new();
        c.set_lazy(FlagOp::Add, 1, 0xFF, 0x01, 0x100);
        assert!(c.cf() && c.zf() && c.af() && !c.of() && !c.sf() && c.pf());
        c.set_lazy(FlagOp::Add, 1, 0x7F, 0x01, 0x80);
        assert!(!c.cf() && c.of() && c.sf());
        c.set_lazy(FlagOp::Sub, 2, 0, 1, 0u64.wrapping_sub(1));
        assert!(c.cf() && c.sf() && !c.zf() && !c.of());
    }

    #[test]
    fn inc_keeps_carry() {
        let mut c = Cpu::new();
        c.set_lazy(FlagOp::Sub, 1, 0, 1, 0xFF);
        assert!(c.cf());
        c.set_lazy(FlagOp::Inc, 1, 0xFF, 1, 0x100);
        assert!(c.cf() && c.zf());
        c.materialize_flags();
        assert!(c.s.rflags & CF != 0 && c.s.rflags & ZF != 0);
    }
}
