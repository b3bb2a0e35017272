//! Segmentation: descriptors, the checks every memory operand goes through, and loading
//! segment registers by the rules of real, virtual-8086, protected and 64-bit mode (Intel SDM
//! vol. 3, chapter 3 and 5.5-5.8).

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::fault::Fault;
use crate::mem::Access;
use crate::state::{flags, sreg, Segment};

/// Descriptor attribute bits in `Segment::attr`.
pub(crate) mod attr {
    pub const ACCESSED: u16 = 1;
    /// Data: writable. Code: readable.
    pub const RW: u16 = 2;
    /// Data: expand-down. Code: conforming.
    pub const DC: u16 = 4;
    pub const CODE: u16 = 8;
    pub const S: u16 = 0x10;
    pub const P: u16 = 0x80;
    pub const L: u16 = 0x2000;
    pub const DB: u16 = 0x4000;
    pub const G: u16 = 0x8000;
}

/// What a memory operand through one segment register may touch, derived from the segment's
/// descriptor cache whenever it changes so that the per-access check is two compares. Offsets
/// are valid from `lo` up to (not including) the end for the kind of access; an end of 0
/// refuses every access of that kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegCheck {
    pub lo: u64,
    /// One past the highest valid offset: for instruction fetch (type not checked), reads
    /// and writes.
    pub end: u64,
    pub read_end: u64,
    pub write_end: u64,
}

impl SegCheck {
    pub(crate) const REAL: SegCheck = SegCheck::new(0, 0xFFFF, true, true);

    /// Offsets `lo..=hi`, readable and writable as given.
    pub(crate) const fn new(lo: u64, hi: u64, read: bool, write: bool) -> SegCheck {
        let end = hi.wrapping_add(1);
        SegCheck { lo, end, read_end: if read { end } else { 0 }, write_end: if write { end } else { 0 } }
    }
}

/// A segment or system descriptor as it sits in a descriptor table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Descriptor(pub u64);

impl Descriptor {
    pub(crate) fn attr(self) -> u16 {
        (((self.0 >> 40) & 0xFF) | (((self.0 >> 52) & 0xF) << 12)) as u16
    }
    pub(crate) fn base(self) -> u64 {
        ((self.0 >> 16) & 0xFF_FFFF) | (((self.0 >> 56) & 0xFF) << 24)
    }
    pub(crate) fn limit(self) -> u32 {
        let raw = ((self.0 & 0xFFFF) | ((self.0 >> 32) & 0xF_0000)) as u32;
        if self.attr() & attr::G != 0 {
            (raw << 12) | 0xFFF
        } else {
            raw
        }
    }
    pub(crate) fn dpl(self) -> u8 {
        ((self.attr() >> 5) & 3) as u8
    }
    pub(crate) fn present(self) -> bool {
        self.attr() & attr::P != 0
    }
    /// A code or data segment (S set), not a system descriptor.
    pub(crate) fn is_segment(self) -> bool {
        self.attr() & attr::S != 0
    }
    pub(crate) fn is_code(self) -> bool {
        self.is_segment() && self.attr() & attr::CODE != 0
    }
    pub(crate) fn is_data(self) -> bool {
        self.is_segment() && self.attr() & attr::CODE == 0
    }
    pub(crate) fn conforming(self) -> bool {
        self.is_code() && self.attr() & attr::DC != 0
    }
    /// System descriptor type (0-15), meaningful when `is_segment` is false.
    pub(crate) fn system_type(self) -> u8 {
        (self.attr() & 0xF) as u8
    }
    pub(crate) fn segment(self, selector: u16) -> Segment {
        Segment { selector, base: self.base(), limit: self.limit(), attr: self.attr() | (attr::ACCESSED * u16::from(self.is_segment())) }
    }
}

impl Cpu {
    /// Current privilege level: the DPL of SS (as VMX and KVM define it), 0 in real mode and
    /// 3 in virtual-8086 mode, where SS is loaded with DPL 3.
    #[inline(always)]
    pub(crate) fn cpl(&self) -> u8 {
        ((self.s.seg[sreg::SS].attr >> 5) & 3) as u8
    }

    /// Virtual-8086 mode.
    #[inline(always)]
    pub(crate) fn vm86(&self) -> bool {
        self.s.rflags & flags::VM != 0 && self.protected()
    }

    /// IA-32e mode active (EFER.LMA).
    #[inline(always)]
    pub(crate) fn long_mode(&self) -> bool {
        self.s.efer & (1 << 10) != 0
    }

    /// Recomputes the access check of segment register `s` from its descriptor cache.
    pub(crate) fn refresh_seg(&mut self, s: usize) {
        let seg = self.s.seg[s];
        let a = seg.attr;
        if s == sreg::SS {
            // CPL is SS.DPL: which TLB tags data accesses use.
            self.user = usize::from((a >> 5) & 3 == 3);
        }
        self.segc[s] = if self.bits == 64 {
            // Not used: 64-bit mode checks canonical addresses instead.
            SegCheck::new(0, u64::MAX - 1, true, true)
        } else if !self.protected() || self.vm86() {
            // Real and virtual-8086 mode check the cached limit (unreal mode keeps a big one)
            // but not the type.
            SegCheck::new(0, u64::from(seg.limit), true, true)
        } else if a & attr::P == 0 {
            // A null or otherwise unusable segment: every access faults.
            SegCheck { lo: 1, end: 0, read_end: 0, write_end: 0 }
        } else if a & attr::CODE != 0 {
            SegCheck::new(0, u64::from(seg.limit), a & attr::RW != 0, false)
        } else if a & attr::DC != 0 {
            let top = if a & attr::DB != 0 { 0xFFFF_FFFF } else { 0xFFFF };
            SegCheck::new(u64::from(seg.limit) + 1, top, true, a & attr::RW != 0)
        } else {
            SegCheck::new(0, u64::from(seg.limit), true, a & attr::RW != 0)
        };
    }

    pub(crate) fn refresh_all_segs(&mut self) {
        for s in 0..6 {
            self.refresh_seg(s);
        }
    }

    /// Segment:offset to a linear address, with the limit and type checked for an access of
    /// `size` bytes. `off` is already truncated to the address size.
    #[inline(always)]
    pub(crate) fn lin(&self, seg: usize, off: u64, size: u8, acc: Access) -> Result<u64, Fault> {
        let base = self.s.seg[seg].base;
        if self.bits != 64 {
            let c = &self.segc[seg];
            let end = match acc {
                Access::Read => c.read_end,
                Access::Write => c.write_end,
                Access::Exec => c.end,
            };
            // (Offsets are below 2^32 here, so the sum cannot wrap.)
            if off < c.lo || off + u64::from(size) > end {
                return Err(if seg == sreg::SS { Fault::ss(0) } else { Fault::gp(0) });
            }
            return Ok(base.wrapping_add(off) & 0xFFFF_FFFF);
        }
        let base = if seg >= sreg::FS { base } else { 0 };
        let a = base.wrapping_add(off);
        if !canonical(a) || !canonical(a.wrapping_add(u64::from(size) - 1)) {
            return Err(if seg == sreg::SS { Fault::ss(0) } else { Fault::gp(0) });
        }
        Ok(a)
    }

    /// Loads a segment register from a selector by the rules of the current mode (MOV, POP,
    /// LDS and friends; CS is loaded by far transfers instead).
    pub(crate) fn load_seg(&mut self, bus: &mut dyn Bus, s: usize, selector: u16) -> Result<(), Fault> {
        if !self.protected() {
            self.load_seg_real(s, selector);
            return Ok(());
        }
        if self.vm86() {
            self.s.seg[s] = Segment { selector, base: u64::from(selector) << 4, limit: 0xFFFF, attr: 0xF3 };
            self.refresh_seg(s);
            return Ok(());
        }
        let cpl = self.cpl();
        let rpl = (selector & 3) as u8;
        let err = u32::from(selector & 0xFFFC);
        if selector & 0xFFFC == 0 {
            // A null selector may be loaded into a data segment register (using it faults);
            // into SS only in 64-bit mode below ring 3.
            if s == sreg::SS && !(self.bits == 64 && cpl < 3 && rpl == cpl) {
                return Err(Fault::gp(0));
            }
            let keep_base = self.bits == 64 && s >= sreg::FS;
            let base = if keep_base { self.s.seg[s].base } else { 0 };
            let dpl_bits = if s == sreg::SS { u16::from(cpl) << 5 } else { 0 };
            self.s.seg[s] = Segment { selector, base, limit: 0, attr: dpl_bits };
            self.refresh_seg(s);
            return Ok(());
        }
        let (addr, d) = self.read_descriptor(bus, selector)?;
        if s == sreg::SS {
            if rpl != cpl || !d.is_data() || d.attr() & attr::RW == 0 || d.dpl() != cpl {
                return Err(Fault::gp(err));
            }
            if !d.present() {
                return Err(Fault::ss(err));
            }
        } else {
            let readable = d.is_data() || (d.is_code() && d.attr() & attr::RW != 0);
            if !readable {
                return Err(Fault::gp(err));
            }
            if !d.conforming() && (rpl > d.dpl() || cpl > d.dpl()) {
                return Err(Fault::gp(err));
            }
            if !d.present() {
                return Err(Fault::np(err));
            }
        }
        self.set_accessed(bus, addr, d)?;
        self.s.seg[s] = d.segment(selector);
        self.refresh_seg(s);
        Ok(())
    }

    /// Where descriptor `selector` sits (linear address), checked against the GDT or LDT
    /// limit. `#GP(selector)` if it is outside.
    pub(crate) fn descriptor_address(&self, selector: u16) -> Result<u64, Fault> {
        let err = u32::from(selector & 0xFFFC);
        let (base, limit) = if selector & 4 != 0 {
            let l = &self.s.ldtr;
            if l.attr & attr::P == 0 || l.selector & 0xFFFC == 0 {
                return Err(Fault::gp(err));
            }
            (l.base, u64::from(l.limit))
        } else {
            (self.s.gdtr.base, u64::from(self.s.gdtr.limit))
        };
        let index = u64::from(selector & 0xFFF8);
        if index + 7 > limit {
            return Err(Fault::gp(err));
        }
        Ok(base.wrapping_add(index))
    }

    /// Reads the 8-byte descriptor for `selector`: (its linear address, the descriptor).
    pub(crate) fn read_descriptor(&mut self, bus: &mut dyn Bus, selector: u16) -> Result<(u64, Descriptor), Fault> {
        let addr = self.descriptor_address(selector)?;
        let raw = self.read_sys(bus, addr, 8)?;
        Ok((addr, Descriptor(raw)))
    }

    /// Sets the accessed bit of a code or data descriptor in memory, as loading it does.
    pub(crate) fn set_accessed(&mut self, bus: &mut dyn Bus, addr: u64, d: Descriptor) -> Result<(), Fault> {
        if d.is_segment() && d.attr() & attr::ACCESSED == 0 {
            let b = self.read_sys(bus, addr + 5, 1)?;
            self.write_sys(bus, addr + 5, 1, b | 1)?;
        }
        Ok(())
    }
}

/// A 64-bit address whose bits 63..47 are all equal.
#[inline(always)]
pub(crate) fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}
