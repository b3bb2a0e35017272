//! Lazy status flags (Bochs's layout): arithmetic records its result and a carry-out vector,
//! and CF, PF, AF, ZF, SF and OF are computed from those two words when something reads them,
//! by the same few operations whatever instruction set them. The record always holds the six
//! flags (flags set explicitly are encoded into it), so reading one never asks where it lives;
//! their bits in `rflags` are current only after `materialize_flags`.

use crate::cpu::Cpu;
use crate::state::flags::*;

/// How an instruction sets the flags from `a OP b = r` (`set_lazy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlagOp {
    /// Addition, with or without a carry in (ADD, ADC, XADD).
    Add,
    /// Add with carry in set: the same carry vector as `Add`.
    AdcCarry,
    /// Subtraction, with or without a borrow in (SUB, SBB, CMP, NEG, CMPS, SCAS).
    Sub,
    /// Subtract with borrow in set: the same borrow vector as `Sub`.
    SbbBorrow,
    /// AND, OR, XOR, TEST: CF = OF = AF = 0.
    Logic,
    /// INC, DEC: like Add/Sub by one, but CF is kept.
    Inc,
    Dec,
}

/// Bit positions in `Lazy::aux`.
const AUX_CF: u32 = 31;
/// CF XOR OF: OF is the XOR of bits 30 and 31 (the carries out of the top two bits).
const AUX_PO: u32 = 30;
const AUX_AF: u64 = 8;
/// Sign delta: SF is bit 63 of the result XOR this bit.
const AUX_SD: u64 = 1;
/// Parity delta: PF is the parity of the result's low byte XOR bits 8-15.
const AUX_PDB: u32 = 8;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Lazy {
    /// The last result, sign-extended from its size to 64 bits: ZF is "all zero", SF bit 63
    /// (with the sign delta), PF the parity of the low byte (with the parity delta).
    pub res: u64,
    /// CF in bit 31, CF ^ OF in bit 30, AF in bit 3, the parity delta in bits 8-15 and the
    /// sign delta in bit 0 (the deltas are zero after arithmetic; flags set explicitly use
    /// them).
    pub aux: u64,
}

impl Default for Lazy {
    /// All six flags clear.
    fn default() -> Lazy {
        Lazy::encode(0)
    }
}

impl Lazy {
    /// The record for explicit flag values (the arithmetic bits of `f`).
    fn encode(f: u64) -> Lazy {
        let (cf, of) = (f & CF != 0, f & OF != 0);
        Lazy {
            // Nonzero for ZF clear, with a sign bit and low byte of zero.
            res: if f & ZF != 0 { 0 } else { 1 << 8 },
            aux: cf_of_bits(cf, of)
                | if f & AF != 0 { AUX_AF } else { 0 }
                | if f & SF != 0 { AUX_SD } else { 0 }
                // A zero low byte has even parity: the delta makes it odd for PF clear.
                | if f & PF != 0 { 0 } else { 1 << AUX_PDB },
        }
    }
}

/// Even parity of each byte value (PF).
static PARITY: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).count_ones().is_multiple_of(2);
        i += 1;
    }
    t
};

/// Sign-extends the low `size` bytes of `v` (size 1, 2, 4 or 8) without a branch.
#[inline(always)]
fn sext_size(v: u64, size: u8) -> u64 {
    crate::cpu::sext(v, size)
}

/// CF and OF in the `aux` layout.
#[inline(always)]
fn cf_of_bits(cf: bool, of: bool) -> u64 {
    (u64::from(cf) << AUX_CF) | (u64::from(cf ^ of) << AUX_PO)
}

impl Cpu {
    /// Records an arithmetic result; the flags follow from it on demand. `a` and `b` are the
    /// operands, `r` the result (bits above `size` are ignored throughout).
    #[inline(always)]
    pub(crate) fn set_lazy(&mut self, op: FlagOp, size: u8, a: u64, b: u64, r: u64) {
        let bits = u32::from(size) * 8;
        // Carry (borrow) out of each bit position.
        let carries = match op {
            FlagOp::Add | FlagOp::AdcCarry | FlagOp::Inc => (a & b) | ((a | b) & !r),
            FlagOp::Sub | FlagOp::SbbBorrow | FlagOp::Dec => (!a & b) | ((!a ^ b) & r),
            FlagOp::Logic => 0,
        };
        // The carries out of the top two bits go to bits 31 and 30.
        let top = ((carries >> (bits - 2)) & 3) << AUX_PO;
        let aux = match op {
            FlagOp::Logic => 0,
            FlagOp::Inc | FlagOp::Dec => return self.set_lazy_incdec(op == FlagOp::Inc, size, a, r),
            _ => (carries & AUX_AF) | top,
        };
        self.lazy = Lazy { res: sext_size(r, size), aux };
    }

    /// INC (`inc`) or DEC from `a` to `r`: the flags of adding or subtracting one, with CF
    /// kept. Cheaper than the carry vector: AF is a carry out of (borrow into) the low nibble,
    /// OF the step across the sign boundary.
    #[inline(always)]
    pub(crate) fn set_lazy_incdec(&mut self, inc: bool, size: u8, a: u64, r: u64) {
        let sb = crate::cpu::sign_bit(size);
        let mask = crate::cpu::mask(u64::MAX, size);
        let (af, of) = if inc { (r & 0xF == 0, r & mask == sb) } else { (a & 0xF == 0, a & mask == sb) };
        let cf = self.lazy.aux & (1 << AUX_CF);
        let aux = cf | ((u64::from(of) << AUX_PO) ^ (cf >> 1)) | if af { AUX_AF } else { 0 };
        self.lazy = Lazy { res: sext_size(r, size), aux };
    }

    /// Records a result whose SF, ZF and PF follow from it, with CF and OF given and AF clear
    /// (shifts, multiplications).
    #[inline(always)]
    pub(crate) fn set_lazy_result(&mut self, size: u8, r: u64, cf: bool, of: bool) {
        self.lazy = Lazy { res: sext_size(r, size), aux: cf_of_bits(cf, of) };
    }

    /// Sets CF and OF, leaving the other status flags as they are (rotates).
    #[inline(always)]
    pub(crate) fn set_cf_of(&mut self, cf: bool, of: bool) {
        self.lazy.aux = (self.lazy.aux & !(3 << AUX_PO)) | cf_of_bits(cf, of);
    }

    #[inline(always)]
    pub(crate) fn cf(&self) -> bool {
        (self.lazy.aux >> AUX_CF) & 1 != 0
    }

    #[inline(always)]
    pub(crate) fn zf(&self) -> bool {
        self.lazy.res == 0
    }

    #[inline(always)]
    pub(crate) fn sf(&self) -> bool {
        ((self.lazy.res >> 63) ^ self.lazy.aux) & AUX_SD != 0
    }

    #[inline(always)]
    pub(crate) fn of(&self) -> bool {
        ((self.lazy.aux >> AUX_PO) ^ (self.lazy.aux >> AUX_CF)) & 1 != 0
    }

    #[inline(always)]
    pub(crate) fn pf(&self) -> bool {
        PARITY[((self.lazy.res ^ (self.lazy.aux >> AUX_PDB)) as u8) as usize]
    }

    #[inline(always)]
    pub(crate) fn af(&self) -> bool {
        self.lazy.aux & AUX_AF != 0
    }

    /// RFLAGS with the six status flags from the lazy record.
    pub(crate) fn rflags(&self) -> u64 {
        (self.s.rflags & !ARITH)
            | u64::from(self.cf())
            | (u64::from(self.pf()) << 2)
            | (u64::from(self.af()) << 4)
            | (u64::from(self.zf()) << 6)
            | (u64::from(self.sf()) << 7)
            | (u64::from(self.of()) << 11)
    }

    /// Makes the status flags in `rflags` current (for code that reads `s.rflags` whole).
    /// Code that then writes them goes through `set_rflags`.
    #[inline]
    pub(crate) fn materialize_flags(&mut self) {
        self.s.rflags = self.rflags();
    }

    /// Loads RFLAGS whole (POPF, IRET, task switches, SYSRET...), status flags included.
    #[inline]
    pub(crate) fn set_rflags(&mut self, v: u64) {
        self.s.rflags = v;
        self.lazy = Lazy::encode(v);
    }

    /// Sets the given status flags to the given values (others as they are).
    #[inline]
    pub(crate) fn set_status(&mut self, which: u64, values: u64) {
        let f = (self.rflags() & !which) | (values & which);
        self.set_rflags(f);
    }

    /// Sets one flag bit.
    #[inline]
    pub(crate) fn set_flag(&mut self, bit: u64, on: bool) {
        self.set_status(bit, if on { bit } else { 0 });
    }

    /// Sets SF, ZF and PF from a result (shifts, BCD, multiplications...).
    pub(crate) fn szp(&self, r: u64, size: u8) -> u64 {
        let r = sext_size(r, size);
        let mut f = 0;
        if r == 0 {
            f |= ZF;
        }
        if (r as i64) < 0 {
            f |= SF;
        }
        if PARITY[r as u8 as usize] {
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

    /// Every flag of ADD, ADC, SUB, SBB, INC, DEC and the logic operations at every size, on
    /// operands around the carry, overflow and adjust edges, against a plain computation.
    #[test]
    fn lazy_flags_match_a_direct_computation() {
        let edges = [0u64, 1, 2, 0xF, 0x10, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, u64::MAX, 0x1234_5678_9ABC_DEF0];
        for size in [1u8, 2, 4, 8] {
            let bits = u32::from(size) * 8;
            let m = if size == 8 { u64::MAX } else { (1u64 << bits) - 1 };
            let sb = 1u64 << (bits - 1);
            for &a in &edges {
                for &b in &edges {
                    let (a, b) = (a & m, b & m);
                    for carry_in in [false, true] {
                        // (op, result, cf, of, af): the reference.
                        let c = u64::from(carry_in);
                        let sum = (u128::from(a) + u128::from(b) + u128::from(c)) as u64 & m;
                        let add_cf = u128::from(a) + u128::from(b) + u128::from(c) > u128::from(m);
                        let add_of = (a ^ sum) & (b ^ sum) & sb != 0;
                        let diff = a.wrapping_sub(b).wrapping_sub(c) & m;
                        let sub_cf = u128::from(a) < u128::from(b) + u128::from(c);
                        let sub_of = (a ^ b) & (a ^ diff) & sb != 0;
                        let cases = [
                            (if carry_in { FlagOp::AdcCarry } else { FlagOp::Add }, sum, add_cf, add_of, (a ^ b ^ sum) & 0x10 != 0),
                            (if carry_in { FlagOp::SbbBorrow } else { FlagOp::Sub }, diff, sub_cf, sub_of, (a ^ b ^ diff) & 0x10 != 0),
                            (FlagOp::Logic, a ^ b, false, false, false),
                        ];
                        for (op, r, cf, of, af) in cases {
                            let mut cpu = Cpu::new();
                            cpu.set_lazy(op, size, a, b, r);
                            let want_zsp = cpu.szp(r, size);
                            let f = cpu.rflags();
                            assert_eq!(f & (ZF | SF | PF), want_zsp, "{op:?} size {size} {a:#x} {b:#x}");
                            assert_eq!((f & CF != 0, f & OF != 0, f & AF != 0), (cf, of, af), "{op:?} size {size} {a:#x} {b:#x} cin {carry_in}");
                            assert_eq!((cpu.cf(), cpu.of(), cpu.af()), (cf, of, af));
                        }
                    }
                    // INC and DEC keep CF.
                    for cf_before in [false, true] {
                        for (op, r, of) in [
                            (FlagOp::Inc, a.wrapping_add(1) & m, a == sb - 1),
                            (FlagOp::Dec, a.wrapping_sub(1) & m, a == sb),
                        ] {
                            let mut cpu = Cpu::new();
                            cpu.set_flag(CF, cf_before);
                            cpu.set_lazy(op, size, a, 1, r);
                            assert_eq!((cpu.cf(), cpu.of(), cpu.zf()), (cf_before, of, r == 0), "{op:?} size {size} {a:#x}");
                            // AF: a carry out of, or a borrow into, the low nibble.
                            assert_eq!(cpu.af(), (a ^ 1 ^ r) & 0x10 != 0, "{op:?} size {size} {a:#x}");
                            assert_eq!(cpu.rflags() & (ZF | SF | PF), cpu.szp(r, size), "{op:?} size {size} {a:#x}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rotates_keep_the_other_flags() {
        let mut c = Cpu::new();
        c.set_lazy(FlagOp::Sub, 4, 5, 5, 0);
        c.set_cf_of(true, false);
        assert!(c.zf() && c.pf() && !c.sf() && c.cf() && !c.of());
        c.set_cf_of(false, true);
        assert!(c.zf() && !c.cf() && c.of());
        c.materialize_flags();
        c.set_cf_of(true, true);
        assert!(c.zf() && c.cf() && c.of());
    }
}
