//! Guest memory as the CPU reaches it: linear to physical translation through the page tables
//! (`paging.rs`), and a software TLB of host pointers (v86's one-compare fast path). MMIO, ROM
//! writes and writes to pages holding decoded code take the slow path through the bus.

use crate::bus::{Bus, PageMapping};
use crate::cpu::{mask, Cpu};
use crate::fault::Fault;
use crate::paging::{CR4_SMAP, CR4_SMEP};
use crate::state::{reg, sreg};

const TLB_ENTRIES: usize = 1024;
const PAGE: u64 = 4096;

/// Direct-mapped TLB of 1,024 entries. A tag is the linear page number plus one (0 means
/// empty); `host` is the host address of the page's first byte. Tags are kept per kind of
/// access and per privilege (`e[0]` supervisor, `e[1]` user), so the permission checks of the
/// page tables are made once, at fill time: an access whose tag matches is allowed. An entry
/// valid for reads may be invalid for writes (ROM, pages holding decoded code, pages whose
/// dirty bit is not yet set). Each entry holds its tags and host address together, so the
/// fast path touches one cache line.
pub(crate) struct Tlb {
    e: Box<[[Entry; TLB_ENTRIES]; 2]>,
    global: Box<[bool; TLB_ENTRIES]>,
    /// Physical page + 1 (0: empty) → its mapping, for page walks (`walk_page`); valid while
    /// the bus's map generation is (flushed with everything else).
    walk: Box<[(u64, PageMapping); WALK_ENTRIES]>,
    /// The largest page any entry came from since the last flush: INVLPG drops the entries
    /// of that much address space around its address (entries are 4 KiB pieces).
    largest: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    read: u64,
    write: u64,
    exec: u64,
    host: usize,
}

const EMPTY: Entry = Entry { read: 0, write: 0, exec: 0, host: 0 };

const WALK_ENTRIES: usize = 64;

impl Tlb {
    pub(crate) fn new() -> Tlb {
        Tlb {
            e: Box::new([[EMPTY; TLB_ENTRIES]; 2]),
            global: Box::new([false; TLB_ENTRIES]),
            walk: Box::new([(0, PageMapping::Mmio); WALK_ENTRIES]),
            largest: PAGE,
        }
    }

    fn clear_slot(&mut self, i: usize) {
        for u in 0..2 {
            let e = &mut self.e[u][i];
            (e.read, e.write, e.exec) = (0, 0, 0);
        }
    }

    pub(crate) fn flush(&mut self) {
        for u in 0..2 {
            self.e[u].fill(EMPTY);
        }
        self.walk.fill((0, PageMapping::Mmio));
        self.largest = PAGE;
    }

    /// Empties slot `i` if it holds one of the pages `first..=last` (page numbers; both
    /// privileges' entries of a slot are filled for the same page).
    fn clear_slot_in(&mut self, i: usize, first: u64, last: u64) {
        // A tag is the page number plus one; an empty one is 0.
        let held = |e: &Entry| [e.read, e.write, e.exec].into_iter().any(|t| t != 0 && (first..=last).contains(&(t - 1)));
        if held(&self.e[0][i]) || held(&self.e[1][i]) {
            self.clear_slot(i);
        }
    }

    /// INVLPG: drops what the TLB holds of the page at `lin` (global or not), returning the
    /// range of linear page numbers dropped. The page may be a large one, of which the
    /// entries are 4 KiB pieces: the range is the largest page size cached around `lin`.
    pub(crate) fn invalidate(&mut self, lin: u64) -> (u64, u64) {
        let pages = self.largest / PAGE;
        let first = (lin / PAGE) & !(pages - 1);
        let last = first + (pages - 1);
        if pages as usize <= TLB_ENTRIES {
            for vpn in first..=last {
                self.clear_slot_in(slot(vpn * PAGE), first, last);
            }
        } else {
            for i in 0..TLB_ENTRIES {
                self.clear_slot_in(i, first, last);
            }
        }
        (first, last)
    }

    /// Drops every translation not marked global (a CR3 load with CR4.PGE set).
    pub(crate) fn flush_nonglobal(&mut self) {
        for i in 0..TLB_ENTRIES {
            if !self.global[i] {
                self.clear_slot(i);
            }
        }
    }

    /// Stops direct writes to one host page (it now holds decoded code).
    pub(crate) fn protect_host_page(&mut self, host_page: usize) {
        for u in 0..2 {
            for e in self.e[u].iter_mut() {
                if e.host == host_page {
                    e.write = 0;
                }
            }
        }
    }
}

/// The entry for a linear page: the page number folded on itself, so that pages 4 MiB apart
/// (a multiple of the TLB's reach) do not evict each other.
#[inline(always)]
fn slot(lin: u64) -> usize {
    let vpn = lin / PAGE;
    ((vpn ^ (vpn >> 10)) as usize) & (TLB_ENTRIES - 1)
}

#[inline(always)]
fn tag(lin: u64) -> u64 {
    lin / PAGE + 1
}

/// What an access is for, for segment checks and paging permissions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    Write,
    /// Instruction fetch: needs no read permission on the code segment.
    Exec,
}

#[inline(always)]
pub(crate) fn read_host(addr: usize, size: u8) -> u64 {
    let p = addr as *const u8;
    // SAFETY: callers pass an address inside a 4 KiB page of guest memory that the bus mapped
    // and that stays valid while the machine lives, with the access inside the page.
    unsafe {
        match size {
            1 => u64::from(*p),
            2 => u64::from(std::ptr::read_unaligned(p as *const u16)),
            4 => u64::from(std::ptr::read_unaligned(p as *const u32)),
            _ => std::ptr::read_unaligned(p as *const u64),
        }
    }
}

#[inline(always)]
pub(crate) fn write_host(addr: usize, size: u8, v: u64) {
    let p = addr as *mut u8;
    // SAFETY: as in `read_host`; callers only pass RAM pages.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => std::ptr::write_unaligned(p as *mut u16, v as u16),
            4 => std::ptr::write_unaligned(p as *mut u32, v as u32),
            _ => std::ptr::write_unaligned(p as *mut u64, v),
        }
    }
}

impl Cpu {
    /// Which TLB tags apply to data accesses now: 1 at CPL 3, else 0.
    #[inline(always)]
    fn user_index(&self) -> usize {
        self.user & 1
    }

    /// The TLB entry for `lin` at the current privilege.
    #[inline(always)]
    fn tlb_entry(&self, lin: u64) -> &Entry {
        &self.tlb.e[self.user_index()][slot(lin)]
    }

    /// Linear addresses wrap at 4 GiB outside 64-bit mode.
    #[inline(always)]
    pub(crate) fn wrap_lin(&self, a: u64) -> u64 {
        if self.bits == 64 {
            a
        } else {
            a & 0xFFFF_FFFF
        }
    }

    /// Translates `lin` for an access (checking page permissions) and fills the TLB entry
    /// for its page with every access that the translation allows. Returns the physical
    /// address and what lives there.
    fn fill(&mut self, bus: &mut dyn Bus, lin: u64, acc: Access, user: bool) -> Result<(u64, PageMapping), Fault> {
        let x = self.translate(bus, lin, acc, user)?;
        let map = bus.map_page(x.phys & !(PAGE - 1));
        let i = slot(lin);
        self.tlb.clear_slot(i);
        let t = tag(lin);
        let host = match map {
            PageMapping::Ram { host } => host as usize,
            PageMapping::Rom { host } => host as usize,
            PageMapping::Mmio => return Ok((x.phys, map)),
        };
        if self.bp.data != 0 && self.page_has_data_bp(lin) {
            // Accesses to this page must be checked against the data breakpoints.
            return Ok((x.phys, map));
        }
        self.tlb.global[i] = x.global;
        self.tlb.largest = self.tlb.largest.max(x.page_size);
        let smap = x.user && self.s.cr4 & CR4_SMAP != 0;
        let smep = x.user && self.s.cr4 & CR4_SMEP != 0;
        let writable = matches!(map, PageMapping::Ram { .. }) && !self.blocks.is_code_page(host) && x.dirty;
        let tag_if = |on: bool| if on { t } else { 0 };
        // A supervisor data access to a user page under SMAP depends on EFLAGS.AC: never
        // cached, so every such access is checked on the slow path.
        self.tlb.e[0][i] = Entry {
            read: tag_if(!smap),
            write: tag_if(writable && x.write_sup && !smap),
            exec: tag_if(!x.nx && !smep),
            host,
        };
        self.tlb.e[1][i] = Entry {
            read: tag_if(x.user),
            write: tag_if(writable && x.user && x.write_user),
            exec: tag_if(!x.nx && x.user),
            host,
        };
        Ok((x.phys, map))
    }

    /// Completes an access after `fill`: through the host pointer for RAM and ROM, through
    /// the bus for MMIO. `v` is the value of a write (which returns 0).
    fn access_filled(&mut self, bus: &mut dyn Bus, lin: u64, phys: u64, map: PageMapping, size: u8, v: Option<u64>) -> Result<u64, Fault> {
        if self.bp.data != 0 {
            self.check_data_bp(lin, size, v.is_some());
        }
        let off = (lin % PAGE) as usize;
        let Some(v) = v else {
            return Ok(match map {
                PageMapping::Mmio => {
                    bus.sync_time(self.run_retired);
                    mask(bus.mmio_read(phys, size), size)
                }
                PageMapping::Ram { host } => read_host(host as usize + off, size),
                PageMapping::Rom { host } => read_host(host as usize + off, size),
            });
        };
        match map {
            PageMapping::Ram { host } => {
                let h = host as usize;
                if self.blocks.invalidate_page(h) {
                    // The instruction may have rewritten code of the block being executed.
                    self.stop_block();
                }
                write_host(h + off, size, v);
            }
            PageMapping::Rom { .. } => {
                // Read-only to the CPU; the board decides (shadow RAM takes it, ROM drops it).
                bus.mmio_write(phys, size, mask(v, size));
            }
            PageMapping::Mmio => {
                bus.sync_time(self.run_retired);
                bus.mmio_write(phys, size, mask(v, size));
                if bus.wants_stop() {
                    self.stop_for_bus();
                }
            }
        }
        Ok(0)
    }

    /// The host address of `lin` if the TLB already allows this access there directly (RAM
    /// for writes), for bulk string operations; `None` means "take the per-element path".
    #[inline]
    pub(crate) fn host_for(&self, lin: u64, write: bool) -> Option<usize> {
        let e = self.tlb_entry(lin);
        let t = if write { e.write } else { e.read };
        (t == tag(lin)).then(|| e.host + (lin % PAGE) as usize)
    }

    /// The host address of an access of `size` bytes at `lin` that the TLB allows directly
    /// (RAM or ROM for reads, RAM for writes, within one page); `None` for everything the
    /// slow path must see.
    #[inline(always)]
    pub(crate) fn host_for_access(&self, lin: u64, size: u8, write: bool) -> Option<usize> {
        let e = self.tlb_entry(lin);
        let off = (lin % PAGE) as usize;
        let t = if write { e.write } else { e.read };
        (t == tag(lin) && off + size as usize <= PAGE as usize).then(|| e.host + off)
    }

    /// Reads `size` bytes (1, 2, 4 or 8) at a linear address, at the current privilege.
    #[inline(always)]
    pub(crate) fn read(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        let e = self.tlb_entry(lin);
        let off = (lin % PAGE) as usize;
        if e.read == tag(lin) && off + size as usize <= PAGE as usize {
            return Ok(read_host(e.host + off, size));
        }
        self.read_slow(bus, lin, size)
    }

    #[cold]
    fn read_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        if lin % PAGE + u64::from(size) > PAGE {
            let mut v = 0u64;
            for k in 0..u64::from(size) {
                let a = self.wrap_lin(lin + k);
                v |= self.read(bus, a, 1)? << (8 * k);
            }
            return Ok(v);
        }
        let user = self.user_index() == 1;
        let (phys, map) = self.fill(bus, lin, Access::Read, user)?;
        self.access_filled(bus, lin, phys, map, size, None)
    }

    /// The read of a read-modify-write: checks the page for writing first (so a fault is a
    /// write fault, raised before anything changes), then reads.
    #[inline(always)]
    pub(crate) fn read_for_write(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        let e = self.tlb_entry(lin);
        let off = (lin % PAGE) as usize;
        if e.write == tag(lin) && off + size as usize <= PAGE as usize {
            return Ok(read_host(e.host + off, size));
        }
        let user = self.user_index() == 1;
        if lin % PAGE + u64::from(size) > PAGE {
            self.translate(bus, lin, Access::Write, user)?;
            let last = self.wrap_lin(lin + u64::from(size) - 1);
            self.translate(bus, last, Access::Write, user)?;
            return self.read(bus, lin, size);
        }
        // One walk for write, which fills the TLB entry for reads as well.
        let (phys, map) = self.fill(bus, lin, Access::Write, user)?;
        self.access_filled(bus, lin, phys, map, size, None)
    }

    /// Writes `size` bytes at a linear address, at the current privilege.
    #[inline(always)]
    pub(crate) fn write(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Fault> {
        let e = self.tlb_entry(lin);
        let off = (lin % PAGE) as usize;
        if e.write == tag(lin) && off + size as usize <= PAGE as usize {
            write_host(e.host + off, size, v);
            return Ok(());
        }
        self.write_slow(bus, lin, size, v)
    }

    #[cold]
    fn write_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Fault> {
        let user = self.user_index() == 1;
        if lin % PAGE + u64::from(size) > PAGE {
            // Check both pages before writing either, so a fault leaves memory untouched.
            let second = self.wrap_lin(lin + u64::from(size) - 1);
            self.translate(bus, lin, Access::Write, user)?;
            self.translate(bus, second, Access::Write, user)?;
            for k in 0..u64::from(size) {
                let a = self.wrap_lin(lin + k);
                self.write(bus, a, 1, v >> (8 * k))?;
            }
            return Ok(());
        }
        let (phys, map) = self.fill(bus, lin, Access::Write, user)?;
        self.access_filled(bus, lin, phys, map, size, Some(v)).map(|_| ())
    }

    /// A system access (descriptor tables, TSS, IDT, a new privilege level's stack): made
    /// with supervisor rights whatever the CPL.
    pub(crate) fn read_sys(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Fault> {
        let mut v = 0;
        for k in 0..u64::from(size) {
            let a = self.wrap_lin(lin + k);
            let (phys, map) = self.fill(bus, a, Access::Read, false)?;
            v |= self.access_filled(bus, a, phys, map, 1, None)? << (8 * k);
        }
        Ok(v)
    }

    pub(crate) fn write_sys(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Fault> {
        for k in 0..u64::from(size) {
            let a = self.wrap_lin(lin + k);
            self.translate(bus, a, Access::Write, false)?;
        }
        for k in 0..u64::from(size) {
            let a = self.wrap_lin(lin + k);
            let (phys, map) = self.fill(bus, a, Access::Write, false)?;
            self.access_filled(bus, a, phys, map, 1, Some(v >> (8 * k)))?;
        }
        Ok(())
    }

    /// Where the code byte at `lin` lives: the host address of its page's first byte and its
    /// offset in the page, or `None` if it lies in device memory. (Host pages need not be
    /// 4 KiB aligned, so the page is named by its start, never by masking an address.)
    pub(crate) fn code_host(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<Option<(usize, usize)>, Fault> {
        let off = (lin % PAGE) as usize;
        if let Some(host) = self.exec_page(lin) {
            return Ok(Some((host, off)));
        }
        let u = self.user_index();
        // (From the mapping, not the entry: a page with a data breakpoint is not cached.)
        Ok(match self.fill(bus, lin, Access::Exec, u == 1)?.1 {
            PageMapping::Ram { host } => Some((host as usize, off)),
            PageMapping::Rom { host } => Some((host as usize, off)),
            PageMapping::Mmio => None,
        })
    }

    /// The host address of `lin`'s page if the TLB allows execution from it at the current
    /// privilege (such a page is RAM or ROM without data breakpoints).
    #[inline]
    fn exec_page(&self, lin: u64) -> Option<usize> {
        let e = self.tlb_entry(lin);
        (e.exec == tag(lin)).then_some(e.host)
    }

    /// Reads a code byte for the decoder (instruction fetch permissions).
    pub(crate) fn fetch_byte(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<u8, Fault> {
        if let Some(host) = self.exec_page(lin) {
            return Ok(read_host(host + (lin % PAGE) as usize, 1) as u8);
        }
        let u = self.user_index();
        let (phys, map) = self.fill(bus, lin, Access::Exec, u == 1)?;
        Ok(self.access_filled(bus, lin, phys, map, 1, None)? as u8)
    }

    /// Ends the block and returns to the caller of `run` because the bus asked for it.
    pub(crate) fn stop_for_bus(&mut self) {
        self.stop_block();
        if self.stop.is_none() {
            self.stop = Some(crate::cpu::Stop::Bus);
        }
    }

    // ---- physical memory, for page walks ------------------------------------------------

    /// What the physical page at `ppage` is, through a small cache (page walks read the same
    /// few table pages over and over).
    #[inline]
    fn walk_page(&mut self, bus: &mut dyn Bus, ppage: u64) -> PageMapping {
        let i = ((ppage / PAGE) as usize) & (WALK_ENTRIES - 1);
        let (tag, map) = self.tlb.walk[i];
        if tag == ppage + 1 {
            return map;
        }
        let map = bus.map_page(ppage);
        if map != PageMapping::Mmio {
            self.tlb.walk[i] = (ppage + 1, map);
        }
        map
    }

    pub(crate) fn phys_read(&mut self, bus: &mut dyn Bus, paddr: u64, size: u8) -> u64 {
        match self.walk_page(bus, paddr & !(PAGE - 1)) {
            PageMapping::Ram { host } => read_host(host as usize + (paddr % PAGE) as usize, size),
            PageMapping::Rom { host } => read_host(host as usize + (paddr % PAGE) as usize, size),
            PageMapping::Mmio => mask(bus.mmio_read(paddr, size), size),
        }
    }

    pub(crate) fn phys_write(&mut self, bus: &mut dyn Bus, paddr: u64, size: u8, v: u64) {
        match self.walk_page(bus, paddr & !(PAGE - 1)) {
            PageMapping::Ram { host } => {
                let h = host as usize;
                if self.blocks.invalidate_page(h) {
                    self.stop_block();
                }
                write_host(h + (paddr % PAGE) as usize, size, v);
            }
            PageMapping::Rom { .. } | PageMapping::Mmio => bus.mmio_write(paddr, size, v),
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

    /// Width of the stack pointer: RSP in 64-bit mode, else SS.B selects ESP over SP.
    #[inline(always)]
    pub(crate) fn stack_width(&self) -> u8 {
        if self.bits == 64 {
            8
        } else if self.s.seg[sreg::SS].attr & 0x4000 != 0 {
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
