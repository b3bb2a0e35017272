//! Guest memory as the CPU reaches it: segment checks, linear to physical translation, and a
//! software TLB of host pointers (v86's one-compare fast path). MMIO, ROM writes and writes to
//! pages holding decoded code take the slow path through the bus.

use crate::bus::{Bus, PageMapping};
use crate::cpu::{mask, Cpu};
use crate::fault::Fault;
use crate::state::{reg, sreg};


const TLB_ENTRIES: usize = 256;
const PAGE: u64 = 4096;

/// Direct-mapped TLB. A tag is the linear page number plus one (0 means empty); `host` is the
/// host address of the page's first byte. An entry valid for reads may be invalid for writes
/// (ROM, pages holding decoded code).
pub(crate) struct Tlb {
    read: Box<[u64; TLB_ENTRIES]>,
    write: Box<[u64; TLB_ENTRIES]>,
    host: Box<[usize; TLB_ENTRIES]>,
}

impl Tlb {
    pub(crate) fn new() -> Tlb {
        Tlb { read: Box::new([0; TLB_ENTRIES]), write: Box::new([0; TLB_ENTRIES]), host: Box::new([0; TLB_ENTRIES]) }
    }

    pub(crate) fn flush(&mut self) {
        self.read.fill(0);
        self.write.fill(0);
    }


    /// Stops direct writes to one host page (it now holds decoded code).
    pub(crate) fn protect_host_page(&mut self, host_page: usize) {
        for i in 0..TLB_ENTRIES {
            if self.host[i] == host_page {
                self.write[i] = 0;
            }
        }
    }
}

#[inline(always)]
fn slot(lin: u64) -> usize {
    ((lin / PAGE) as usize) & (TLB_ENTRIES - 1)
}

#[inline(always)]
fn tag(lin: u64) -> u64 {
    lin / PAGE + 1
}

/// What an access is for, for segment checks and (later) paging permissions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    Write,
    /// Instruction fetch: needs no read permission on the code segment.
    Exec,
}

impl Cpu {
    /// Linear to physical. Paging arrives with protected mode; until then they are equal.
    #[inline(always)]
    fn translate(&mut self, lin: u64, _acc: Access) -> Result<u64, Fault> {
        Ok(lin)
    }

    /// Fills the TLB entry for `lin`'s page, if the page is memory. Returns the mapping.
    fn fill(&mut self, bus: &mut dyn Bus, lin: u64, acc: Access) -> Result<(u64, PageMapping), Fault> {
        let phys = self.translate(lin, acc)?;
        let map = bus.map_page(phys & !(PAGE - 1));
        let i = slot(lin);
        match map {
            PageMapping::Ram { host } => {
                let h = host as usize;
                self.tlb.host[i] = h;
                self.tlb.read[i] = tag(lin);
                self.tlb.write[i] = if self.blocks.is_code_page(h) { 0 } else { tag(lin) };
            }
            PageMapping::Rom { host } => {
                self.tlb.host[i] = host as usize;
                self.tlb.read[i] = tag(lin);
                self.tlb.write[i] = 0;
            }
            PageMapping::Mmio => {}
        }
        Ok((phys, map))
    }

    /// Reads `size` bytes (1, 2, 4 or 8) at a linear address.
    #[inline(always)]
    pub(crate) fn read(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        let i = slot(lin);
        let off = (lin % PAGE) as usize;
        if self.tlb.read[i] == tag(lin) && off + size as usize <= PAGE as usize {
            let p = (self.tlb.host[i] + off) as *const u8;
            // SAFETY: the TLB holds host pointers to whole 4 KiB pages of guest memory that
            // live as long as the machine, and the access stays inside the page.
            return Ok(unsafe {
                match size {
                    1 => u64::from(*p),
                    2 => u64::from(std::ptr::read_unaligned(p as *const u16)),
                    4 => u64::from(std::ptr::read_unaligned(p as *const u32)),
                    _ => std::ptr::read_unaligned(p as *const u64),
                }
            });
        }
        self.read_slow(bus, lin, size)
    }

    #[cold]
    fn read_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        let off = lin % PAGE;
        if off + u64::from(size) > PAGE {
            let mut v = 0u64;
            for k in 0..u64::from(size) {
                v |= self.read(bus, (lin + k) & 0xFFFF_FFFF, 1)? << (8 * k);
            }
            return Ok(v);
        }
        let (phys, map) = self.fill(bus, lin, Access::Read)?;
        match map {
            PageMapping::Mmio => Ok(mask(bus.mmio_read(phys, size), size)),
            _ => self.read(bus, lin, size),
        }
    }

    /// Writes `size` bytes at a linear address.
    #[inline(always)]
    pub(crate) fn write(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Fault> {
        let i = slot(lin);
        let off = (lin % PAGE) as usize;
        if self.tlb.write[i] == tag(lin) && off + size as usize <= PAGE as usize {
            let p = (self.tlb.host[i] + off) as *mut u8;
            // SAFETY: as in `read`; write tags are only set for RAM pages.
            unsafe {
                match size {
                    1 => *p = v as u8,
                    2 => std::ptr::write_unaligned(p as *mut u16, v as u16),
                    4 => std::ptr::write_unaligned(p as *mut u32, v as u32),
                    _ => std::ptr::write_unaligned(p as *mut u64, v),
                }
            }
            return Ok(());
        }
        self.write_slow(bus, lin, size, v)
    }

    #[cold]
    fn write_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Fault> {
        let off = lin % PAGE;
        if off + u64::from(size) > PAGE {
            // Check both pages before writing either, so a fault leaves memory untouched.
            let second = (lin + u64::from(size) - 1) & 0xFFFF_FFFF;
            self.translate(lin, Access::Write)?;
            self.translate(second, Access::Write)?;
            for k in 0..u64::from(size) {
                self.write(bus, (lin + k) & 0xFFFF_FFFF, 1, v >> (8 * k))?;
            }
            return Ok(());
        }
        let (phys, map) = self.fill(bus, lin, Access::Write)?;
        match map {
            PageMapping::Ram { host } => {
                let h = host as usize;
                if self.blocks.invalidate_page(h) {
                    // The instruction may have rewritten code of the block being executed.
                    self.end_block = true;
                    self.tlb.write[slot(lin)] = tag(lin);
                }
                let p = (h + off as usize) as *mut u8;
                // SAFETY: `host` is the start of a 4 KiB RAM page and the access fits in it.
                unsafe {
                    match size {
                        1 => *p = v as u8,
                        2 => std::ptr::write_unaligned(p as *mut u16, v as u16),
                        4 => std::ptr::write_unaligned(p as *mut u32, v as u32),
                        _ => std::ptr::write_unaligned(p as *mut u64, v),
                    }
                }
            }
            PageMapping::Rom { .. } => {
                tracing::trace!(lin = format_args!("{lin:#x}"), "write to ROM dropped");
            }
            PageMapping::Mmio => {
                bus.mmio_write(phys, size, mask(v, size));
                if bus.wants_stop() {
                    self.stop_for_bus();
                }
            }
        }
        Ok(())
    }

    /// A system access (descriptor tables, TSS, IDT): made with supervisor rights whatever
    /// the CPL.
    pub(crate) fn read_sys(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        self.read(bus, lin, size)
    }

    pub(crate) fn write_sys(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Fault> {
        self.write(bus, lin, size, v)
    }

    /// Where the code byte at `lin` lives: the host address of its page's first byte and its
    /// offset in the page, or `None` if it lies in device memory. (Host pages need not be
    /// 4 KiB aligned, so the page is named by its start, never by masking an address.)
    pub(crate) fn code_host(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<Option<(usize, usize)>, Fault> {
        let i = slot(lin);
        if self.tlb.read[i] != tag(lin) {
            let (_, map) = self.fill(bus, lin, Access::Read)?;
            if map == PageMapping::Mmio {
                return Ok(None);
            }
        }
        Ok(Some((self.tlb.host[i], (lin % PAGE) as usize)))
    }

    /// Ends the block and returns to the caller of `run` because the bus asked for it.
    pub(crate) fn stop_for_bus(&mut self) {
        self.end_block = true;
        if self.stop.is_none() {
            self.stop = Some(crate::cpu::Stop::Bus);
        }
    }

    // ---- segment-relative helpers ------------------------------------------------------

    #[inline(always)]
    pub(crate) fn read_seg(&mut self, bus: &mut dyn Bus, seg: usize, off: u64, size: u8) -> Result<u64, Fault> {
        let lin = self.lin(seg, off, size, Access::Read)?;
        self.read(bus, lin, size)
    }

    #[inline(always)]
    pub(crate) fn write_seg(&mut self, bus: &mut dyn Bus, seg: usize, off: u64, size: u8, v: u64) -> Result<(), Fault> {
        let lin = self.lin(seg, off, size, Access::Write)?;
        self.write(bus, lin, size, v)
    }

    // ---- the stack -----------------------------------------------------------------------

    /// Width of the stack pointer: SS.B selects ESP over SP (RSP in 64-bit mode).
    #[inline(always)]
    pub(crate) fn stack_width(&self) -> u8 {
        if self.s.seg[sreg::SS].attr & 0x4000 != 0 {
            4
        } else {
            2
        }
    }

    #[inline(always)]
    pub(crate) fn sp(&self) -> u64 {
        mask(self.s.gpr[reg::RSP], self.stack_width())
    }

    #[inline(always)]
    pub(crate) fn set_sp(&mut self, v: u64) {
        let w = self.stack_width();
        self.set_reg(reg::RSP as u8, w, v);
    }

    pub(crate) fn push(&mut self, bus: &mut dyn Bus, size: u8, v: u64) -> Result<(), Fault> {
        let w = self.stack_width();
        let sp = mask(self.s.gpr[reg::RSP].wrapping_sub(u64::from(size)), w);
        self.write_seg(bus, sreg::SS, sp, size, v)?;
        self.set_reg(reg::RSP as u8, w, sp);
        Ok(())
    }

    pub(crate) fn pop(&mut self, bus: &mut dyn Bus, size: u8) -> Result<u64, Fault> {
        let sp = self.sp();
        let v = self.read_seg(bus, sreg::SS, sp, size)?;
        self.set_sp(sp.wrapping_add(u64::from(size)));
        Ok(v)
    }

    /// Reads the stack at SP + `depth` bytes without popping (for instructions that must not
    /// change anything before all their reads succeeded).
    pub(crate) fn peek(&mut self, bus: &mut dyn Bus, depth: u64, size: u8) -> Result<u64, Fault> {
        let off = mask(self.sp().wrapping_add(depth), self.stack_width());
        self.read_seg(bus, sreg::SS, off, size)
    }
}
