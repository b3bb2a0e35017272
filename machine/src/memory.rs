//! Guest physical memory as a PC lays it out: RAM from vm-memory, the VGA hole, the BIOS image
//! at the top of the 4 GiB space with its last 128 KiB (all of a smaller image) also just
//! below 1 MiB, and the A20 gate. Both backends see the same bytes: the interpreter through
//! host pointers per page, KVM through memory slots built from [`Memory::regions`].

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

pub const PAGE_SIZE: u64 = 4096;
/// Where the legacy video window starts; 0xA0000-0xBFFFF is device memory.
pub const VGA_WINDOW: u64 = 0xA_0000;
pub const VGA_WINDOW_END: u64 = 0xC_0000;
/// RAM above 1 MiB stops here at the latest, leaving room for PCI holes and the BIOS.
pub const LOW_RAM_LIMIT: u64 = 0xE000_0000;
pub const FOUR_GIB: u64 = 1 << 32;
/// The part of the BIOS image that also appears below 1 MiB.
pub const LOW_BIOS_WINDOW: u64 = 128 * 1024;
/// RAM above 4 GiB, for guests given more than fits below the PCI hole.
pub const HIGH_RAM_START: u64 = FOUR_GIB;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory size {0} bytes is too small (at least 1 MiB)")]
    TooSmall(u64),
    #[error("memory size {0} bytes is too large (at most 1 TiB)")]
    TooLarge(u64),
    #[error("BIOS image is {0} bytes; it must be a multiple of 64 KiB, from 64 KiB to 16 MiB")]
    BadBiosSize(usize),
    #[error("cannot allocate guest memory: {0}")]
    Alloc(String),
}

/// How a guest-physical region is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Read-write RAM.
    Ram,
    /// Mapped for reads only: the BIOS image, or RAM that the chipset made read-only (PAM).
    /// Writes go to the board as MMIO writes ([`Memory::write_shadow`] decides what they do).
    Rom,
    /// A device's own memory mapped where its BAR puts it (the VGA's linear framebuffer):
    /// read and written directly, with the pages written logged so the device learns of them
    /// ([`Memory::take_device_writes`]). The interpreter maps a page that is not logged yet for
    /// reads only, so its first write goes through the board, which logs it; KVM keeps the log
    /// itself (`KVM_MEM_LOG_DIRTY_PAGES`) and hands it over.
    DeviceRam,
}

/// Names a device's directly mapped memory: the board's index of the device and the BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRamId {
    pub device: usize,
    pub bar: u8,
}

/// A device's memory that may be mapped directly.
struct DeviceRam {
    id: DeviceRamId,
    /// Where the guest sees it now (`None`: its BAR does not decode).
    guest: Option<u64>,
    host: *mut u8,
    size: u64,
    /// One bit per 4 KiB page written since the device was last told.
    dirty: Vec<u64>,
    any_dirty: bool,
}

// SAFETY: `host` points into a buffer its device owns for as long as the machine lives (see
// `Memory::map_device_ram`); the machine moves between threads as a whole.
unsafe impl Send for DeviceRam {}

/// One directly mapped region, for KVM memory slots and for the interpreter's page lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub guest: u64,
    pub size: u64,
    pub host: *mut u8,
    pub kind: RegionKind,
}

// SAFETY: the host pointers point into allocations owned by `Memory`, which lives as long as
// the machine; moving the descriptor to a vCPU thread does not change who owns them.
unsafe impl Send for Region {}

/// Start of the chipset-shadowed area (PAM, Intel 82441FX datasheet 3.2.18).
pub const PAM_START: u64 = 0xC_0000;
/// The 13 PAM segments: twelve 16 KiB ones from 0xC0000 to 0xEFFFF, then 64 KiB at 0xF0000.
pub const PAM_SEGMENTS: usize = 13;

/// Where reads and writes of one PAM segment go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PamMode {
    /// Reads come from RAM (else from the ROM side: the BIOS image, or nothing).
    pub read_ram: bool,
    /// Writes go to RAM (else they are dropped).
    pub write_ram: bool,
}

fn pam_segment(addr: u64) -> Option<(usize, u64, u64)> {
    match addr {
        0xC_0000..=0xE_FFFF => {
            let k = ((addr - PAM_START) / 0x4000) as usize;
            Some((k, PAM_START + k as u64 * 0x4000, 0x4000))
        }
        0xF_0000..=0xF_FFFF => Some((12, 0xF_0000, 0x1_0000)),
        _ => None,
    }
}

pub struct Memory {
    ram: GuestMemoryMmap<()>,
    ram_size: u64,
    /// The BIOS image, page aligned so it can back a memory slot.
    bios: PageBuffer,
    a20: bool,
    pam: [PamMode; PAM_SEGMENTS],
    /// The current map, in address order; rebuilt when PAM changes.
    map: Vec<Region>,
    generation: u64,
    /// Physical pages written by someone other than the CPU (loaders, DMA) since the CPU last
    /// asked, so it can drop code it decoded from them.
    written: Vec<u64>,
    /// Device memory mapped directly (`RegionKind::DeviceRam`), with its write log.
    device_ram: Vec<DeviceRam>,
}

impl Memory {
    pub fn new(ram_size: u64, bios_image: &[u8]) -> Result<Memory, MemoryError> {
        if ram_size < 1 << 20 {
            return Err(MemoryError::TooSmall(ram_size));
        }
        if ram_size > 1 << 40 {
            return Err(MemoryError::TooLarge(ram_size));
        }
        let len = bios_image.len();
        if len == 0 || len % (64 * 1024) != 0 || len > 16 << 20 {
            return Err(MemoryError::BadBiosSize(len));
        }
        let ram_size = ram_size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let low = ram_size.min(LOW_RAM_LIMIT);
        let mut ranges = vec![(GuestAddress(0), low as usize)];
        if ram_size > low {
            ranges.push((GuestAddress(HIGH_RAM_START), (ram_size - low) as usize));
        }
        let ram = GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(|e| MemoryError::Alloc(e.to_string()))?;
        let mut bios = PageBuffer::new(len);
        bios.copy_from_slice(bios_image);
        let mut m = Memory {
            ram,
            ram_size,
            bios,
            a20: true,
            pam: [PamMode::default(); PAM_SEGMENTS],
            map: Vec::new(),
            generation: 0,
            written: Vec::new(),
            device_ram: Vec::new(),
        };
        m.rebuild();
        Ok(m)
    }

    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// RAM below the PCI hole.
    pub fn low_ram_size(&self) -> u64 {
        self.ram_size.min(LOW_RAM_LIMIT)
    }

    pub fn bios_size(&self) -> u64 {
        self.bios.len as u64
    }

    pub fn guest_memory(&self) -> &GuestMemoryMmap<()> {
        &self.ram
    }

    pub fn a20(&self) -> bool {
        self.a20
    }

    pub fn set_a20(&mut self, on: bool) {
        if on != self.a20 {
            self.a20 = on;
            self.generation += 1;
        }
    }

    pub fn pam(&self) -> [PamMode; PAM_SEGMENTS] {
        self.pam
    }

    /// Sets how the chipset routes one PAM segment.
    pub fn set_pam(&mut self, segment: usize, mode: PamMode) {
        if segment < PAM_SEGMENTS && self.pam[segment] != mode {
            self.pam[segment] = mode;
            self.rebuild();
        }
    }

    /// Changes whenever an earlier page lookup may have become stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The A20 gate applied to a physical address.
    pub fn a20_mask(&self, paddr: u64) -> u64 {
        if self.a20 {
            paddr
        } else {
            paddr & !(1 << 20)
        }
    }

    fn low_bios_start(&self) -> u64 {
        0x10_0000 - (self.bios.len as u64).min(LOW_BIOS_WINDOW)
    }

    fn ram_host(&self, a: u64) -> *mut u8 {
        self.ram.get_host_address(GuestAddress(a)).expect("address is in RAM")
    }

    fn bios_host(&self, offset: u64) -> *mut u8 {
        self.bios.ptr.wrapping_add(offset as usize)
    }

    /// Recomputes the map from the RAM size, the BIOS size and the PAM settings.
    fn rebuild(&mut self) {
        let mut out: Vec<Region> = Vec::new();
        let mut push = |r: Region| {
            // Merge with the previous region when contiguous in both spaces.
            if let Some(p) = out.last_mut() {
                if p.kind == r.kind && p.guest + p.size == r.guest && p.host.wrapping_add(p.size as usize) == r.host {
                    p.size += r.size;
                    return;
                }
            }
            out.push(r);
        };
        let low = self.low_ram_size();
        push(Region { guest: 0, size: low.min(VGA_WINDOW), host: self.ram_host(0), kind: RegionKind::Ram });
        let blen = self.bios.len as u64;
        let bios_low = self.low_bios_start();
        let mut a = PAM_START;
        while a < 0x10_0000 {
            let (k, start, size) = pam_segment(a).expect("inside the PAM area");
            let mode = self.pam[k];
            if mode.read_ram {
                let kind = if mode.write_ram { RegionKind::Ram } else { RegionKind::Rom };
                push(Region { guest: start, size, host: self.ram_host(start), kind });
            } else if start + size > bios_low {
                // The ROM side: the part of the segment the BIOS image covers.
                let from = start.max(bios_low);
                let off = blen - (0x10_0000 - from);
                push(Region { guest: from, size: start + size - from, host: self.bios_host(off), kind: RegionKind::Rom });
            }
            a = start + size;
        }
        if low > 0x10_0000 {
            push(Region { guest: 0x10_0000, size: low - 0x10_0000, host: self.ram_host(0x10_0000), kind: RegionKind::Ram });
        }
        push(Region { guest: FOUR_GIB - blen, size: blen, host: self.bios.ptr, kind: RegionKind::Rom });
        if self.ram_size > low {
            push(Region { guest: HIGH_RAM_START, size: self.ram_size - low, host: self.ram_host(HIGH_RAM_START), kind: RegionKind::Ram });
        }
        // Device memory where its BAR puts it, unless that overlaps RAM, the BIOS or another
        // device's memory: then the board's MMIO routing decides, access by access.
        for d in &self.device_ram {
            let Some(g) = d.guest else { continue };
            let end = g.saturating_add(d.size);
            if g % PAGE_SIZE != 0 || out.iter().any(|r| g < r.guest + r.size && r.guest < end) {
                tracing::debug!(device = d.id.device, bar = d.id.bar, "device memory at {g:#x} overlaps other memory; not mapped directly");
                continue;
            }
            out.push(Region { guest: g, size: d.size, host: d.host, kind: RegionKind::DeviceRam });
        }
        out.sort_by_key(|r| r.guest);
        self.map = out;
        self.generation += 1;
    }

    /// Maps (or with `guest` `None`, unmaps) a device's memory: `size` bytes at `host`,
    /// page aligned, which the device owns for as long as the machine lives and never moves.
    /// Pages already logged as written stay logged across a move.
    pub fn map_device_ram(&mut self, id: DeviceRamId, guest: Option<u64>, host: *mut u8, size: u64) {
        let size = size / PAGE_SIZE * PAGE_SIZE;
        match self.device_ram.iter_mut().find(|d| d.id == id) {
            Some(d) if d.guest == guest && d.host == host && d.size == size => return,
            Some(d) => {
                if d.size != size {
                    d.dirty = vec![0; (size / PAGE_SIZE).div_ceil(64) as usize];
                }
                (d.guest, d.host, d.size) = (guest, host, size);
            }
            None => self.device_ram.push(DeviceRam {
                id,
                guest,
                host,
                size,
                dirty: vec![0; (size / PAGE_SIZE).div_ceil(64) as usize],
                any_dirty: false,
            }),
        }
        self.rebuild();
    }

    /// The directly mapped device memory holding `paddr` (after the A20 gate) and the page's
    /// index in it.
    fn device_page(&self, paddr: u64) -> Option<(usize, u64)> {
        let p = self.a20_mask(paddr);
        self.device_ram.iter().enumerate().find_map(|(k, d)| {
            let g = d.guest?;
            (p >= g && p - g < d.size && self.page(p).is_some_and(|(_, kind)| kind == RegionKind::DeviceRam))
                .then_some((k, (p - g) / PAGE_SIZE))
        })
    }

    /// Whether the page of directly mapped device memory at `paddr` has been written since its
    /// device was last told (the interpreter then lets the CPU write it directly).
    pub fn device_page_logged(&self, paddr: u64) -> bool {
        self.device_page(paddr).is_some_and(|(k, i)| self.device_ram[k].dirty[(i / 64) as usize] >> (i % 64) & 1 != 0)
    }

    /// Logs a write of `len` bytes at `paddr` to directly mapped device memory (nothing
    /// happens elsewhere): by the CPU through the board, by DMA, or from KVM's dirty log.
    pub fn log_device_write(&mut self, paddr: u64, len: u64) {
        if self.device_ram.is_empty() || len == 0 {
            return;
        }
        let mut page = paddr & !(PAGE_SIZE - 1);
        while page < paddr.saturating_add(len) {
            if let Some((k, i)) = self.device_page(page) {
                let d = &mut self.device_ram[k];
                d.dirty[(i / 64) as usize] |= 1 << (i % 64);
                d.any_dirty = true;
            }
            page += PAGE_SIZE;
        }
    }

    /// Hands over the logged pages of device memory, as (device, byte offset of the page in
    /// its memory), and clears the log. When there were any, the memory map's generation
    /// moves, so the CPUs drop the direct write access they had to those pages and the next
    /// write to each is logged again.
    pub fn take_device_writes(&mut self, out: &mut Vec<(DeviceRamId, u64)>) {
        let mut any = false;
        for d in self.device_ram.iter_mut().filter(|d| d.any_dirty) {
            for (w, bits) in d.dirty.iter_mut().enumerate() {
                let mut b = std::mem::take(bits);
                while b != 0 {
                    let i = w as u64 * 64 + u64::from(b.trailing_zeros());
                    out.push((d.id, i * PAGE_SIZE));
                    b &= b - 1;
                }
            }
            d.any_dirty = false;
            any = true;
        }
        if any {
            self.generation += 1;
        }
    }

    /// The directly mapped regions, in address order. Everything not listed is device memory.
    pub fn regions(&self) -> Vec<Region> {
        self.map.clone()
    }

    /// Where the page holding `paddr` (after the A20 gate) lives: a host pointer to the page
    /// start and how it is mapped, or `None` for device memory.
    pub fn page(&self, paddr: u64) -> Option<(*mut u8, RegionKind)> {
        let p = self.a20_mask(paddr) & !(PAGE_SIZE - 1);
        let i = self.map.partition_point(|r| r.guest <= p);
        let r = self.map.get(i.checked_sub(1)?)?;
        (p - r.guest < r.size).then(|| (r.host.wrapping_add((p - r.guest) as usize), r.kind))
    }

    /// A write the guest made to a read-only mapping (an MMIO write the board did not claim):
    /// lands in RAM where the chipset routes writes of that PAM segment to RAM, else is
    /// dropped, as a write to ROM is. Returns whether it was taken.
    pub fn write_shadow(&mut self, paddr: u64, data: &[u8]) -> bool {
        let p = self.a20_mask(paddr);
        match pam_segment(p) {
            Some((k, _, _)) if self.pam[k].write_ram => {
                self.write_ram(p, data);
                true
            }
            _ => false,
        }
    }

    /// Reads guest-physical memory for firmware loading, DMA and debuggers; bytes outside RAM
    /// and ROM read as 0xFF.
    pub fn read(&self, paddr: u64, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let a = paddr.wrapping_add(done as u64);
            let off = (a & (PAGE_SIZE - 1)) as usize;
            let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
            let part = &mut buf[done..done + n];
            match self.page(a) {
                // SAFETY: `page` returned the start of a 4 KiB page that Memory owns, and
                // `off + n` stays within that page.
                Some((host, _)) => unsafe { std::ptr::copy_nonoverlapping(host.add(off), part.as_mut_ptr(), n) },
                None => part.fill(0xFF),
            }
            done += n;
        }
    }

    /// Writes guest memory as a bus master would (loaders, DMA): RAM takes it, read-only
    /// mappings follow the chipset's routing, device memory drops it.
    pub fn write(&mut self, paddr: u64, data: &[u8]) {
        self.note_written(paddr, data.len());
        let mut done = 0;
        while done < data.len() {
            let a = paddr.wrapping_add(done as u64);
            let off = (a & (PAGE_SIZE - 1)) as usize;
            let n = (PAGE_SIZE as usize - off).min(data.len() - done);
            let part = &data[done..done + n];
            match self.page(a) {
                // SAFETY: as in `read`; RAM pages are writable.
                Some((host, RegionKind::Ram)) => unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), host.add(off), n) },
                Some((host, RegionKind::DeviceRam)) => {
                    // SAFETY: as for RAM; the device's memory is writable.
                    unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), host.add(off), n) };
                    self.log_device_write(a, n as u64);
                }
                // A page lies within one PAM segment, so one routing decision covers it.
                Some((_, RegionKind::Rom)) => {
                    self.write_shadow(a, part);
                }
                None => {}
            }
            done += n;
        }
    }

    /// Plain RAM access by guest address, bypassing the A20 gate and the ROM windows.
    pub fn write_ram(&mut self, paddr: u64, data: &[u8]) -> bool {
        self.note_written(paddr, data.len());
        self.ram.write_slice(data, GuestAddress(paddr)).is_ok()
    }

    fn note_written(&mut self, paddr: u64, len: usize) {
        if len == 0 {
            return;
        }
        let first = paddr / PAGE_SIZE;
        let last = (paddr + len as u64 - 1) / PAGE_SIZE;
        for p in first..=last {
            if self.written.last() != Some(&(p * PAGE_SIZE)) {
                self.written.push(p * PAGE_SIZE);
            }
        }
    }

    /// Takes the list of pages written by loaders and DMA since the last call.
    pub fn take_written(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.written);
    }
}

/// A page-aligned, zeroed heap buffer that never moves: the BIOS image, and device memory
/// that may be mapped into the guest (the VGA's video memory).
pub struct PageBuffer {
    ptr: *mut u8,
    len: usize,
    /// The memory file behind a shared buffer ([`PageBuffer::shared`]).
    file: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

// SAFETY: PageBuffer owns its allocation exclusively.
unsafe impl Send for PageBuffer {}

impl PageBuffer {
    /// `len` bytes (rounded up to whole pages, at least one), zeroed. An anonymous mapping:
    /// the pages cost nothing until touched (16 MiB of video memory zeroed by hand took
    /// longer than the rest of building a machine).
    pub fn new(len: usize) -> PageBuffer {
        let len = len.max(1).next_multiple_of(PAGE_SIZE as usize);
        // SAFETY: a fresh private anonymous mapping; checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if ptr == libc::MAP_FAILED {
            panic!("cannot map {len} bytes of memory: {}", std::io::Error::last_os_error());
        }
        PageBuffer { ptr: ptr.cast(), len, file: None }
    }

    /// Like [`PageBuffer::new`] (zeroed, pages cost nothing until touched), but the pages of a
    /// memory file (memfd, mapped shared), which a front end can map too or hand to a display
    /// server ([`PageBuffer::video_memory`]). An anonymous buffer where there is no memfd.
    pub fn shared(len: usize, name: &std::ffi::CStr) -> PageBuffer {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let len = len.max(1).next_multiple_of(PAGE_SIZE as usize);
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new
        // descriptor (or -1), which OwnedFd then owns.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            tracing::warn!("no memory file for {len} bytes ({}): an anonymous mapping", std::io::Error::last_os_error());
            return PageBuffer::new(len);
        }
        // SAFETY: `fd` is new and nothing else owns it.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if let Err(e) = file.set_len(len as u64) {
            tracing::warn!("cannot size a memory file of {len} bytes ({e}): an anonymous mapping");
            return PageBuffer::new(len);
        }
        // SAFETY: a new shared mapping of the whole file at an address the kernel picks.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            panic!("cannot map {len} bytes of memory: {}", std::io::Error::last_os_error());
        }
        PageBuffer { ptr: ptr.cast(), len, file: Some(std::sync::Arc::new(OwnedFd::from(file))) }
    }

    /// The buffer as a front end reads it (a read-only mapping of its memory file of its
    /// own), for a buffer made with [`PageBuffer::shared`].
    pub fn video_memory(&self) -> Option<crate::display::VideoMemory> {
        let file = self.file.as_ref()?;
        match crate::display::VideoMemory::map(file.clone(), self.len) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("cannot map video memory a second time: {e}");
                None
            }
        }
    }

    /// The first byte, for mapping the buffer into the guest.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
}

impl std::ops::Deref for PageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of len bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for PageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is a live allocation of len bytes owned by self, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bios(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 4096) as u8).collect()
    }

    #[test]
    fn pam_routes_reads_and_writes() {
        let mut m = Memory::new(2 << 20, &bios(128 * 1024)).unwrap();
        let mut b = [0u8; 1];
        m.read(0xF_0000, &mut b);
        assert_eq!(b[0], 16, "power-on: the BIOS image");
        m.read(0xC_0000, &mut b);
        assert_eq!(b[0], 0xFF, "power-on: nothing at 0xC0000");
        // Write RAM, read ROM: SeaBIOS copying itself to shadow RAM.
        m.set_pam(12, PamMode { read_ram: false, write_ram: true });
        m.write(0xF_0000, &[0xAB]);
        m.read(0xF_0000, &mut b);
        assert_eq!(b[0], 16, "still reading ROM");
        m.set_pam(12, PamMode { read_ram: true, write_ram: false });
        m.read(0xF_0000, &mut b);
        assert_eq!(b[0], 0xAB, "reading the shadow copy");
        m.write(0xF_0000, &[0xCD]);
        m.read(0xF_0000, &mut b);
        assert_eq!(b[0], 0xAB, "write-protected shadow");
        assert_eq!(m.page(0xF_0000).unwrap().1, RegionKind::Rom);
        m.set_pam(0, PamMode { read_ram: true, write_ram: true });
        assert_eq!(m.page(0xC_0000).unwrap().1, RegionKind::Ram);
    }

    #[test]
    fn bios_is_mapped_high_and_low() {
        let m = Memory::new(16 << 20, &bios(256 * 1024)).unwrap();
        let mut b = [0u8; 1];
        m.read(0xFFFF_FFF0, &mut b);
        assert_eq!(b[0], 63);
        m.read(0xF_FFF0, &mut b);
        assert_eq!(b[0], 63, "last 128 KiB also below 1 MiB");
        m.read(0xE_0000, &mut b);
        assert_eq!(b[0], 32);
        let m = Memory::new(16 << 20, &bios(64 * 1024)).unwrap();
        m.read(0xF_0000, &mut b);
        assert_eq!(b[0], 0);
        m.read(0xE_0000, &mut b);
        assert_eq!(b[0], 0xFF, "below a 64 KiB image is nothing until the chipset maps RAM there");
    }

    #[test]
    fn rom_ignores_writes_and_vga_hole_reads_ones() {
        let mut m = Memory::new(2 << 20, &bios(64 * 1024)).unwrap();
        m.write(0xF_0000, &[0xAA]);
        m.write(0xA_0000, &[0xAA]);
        m.write(0x1000, &[0xAA]);
        let mut b = [0u8; 1];
        m.read(0xF_0000, &mut b);
        assert_eq!(b[0], 0);
        m.read(0xA_0000, &mut b);
        assert_eq!(b[0], 0xFF);
        m.read(0x1000, &mut b);
        assert_eq!(b[0], 0xAA);
    }

    #[test]
    fn bulk_accesses_cross_pages_and_regions() {
        let mut m = Memory::new(2 << 20, &bios(64 * 1024)).unwrap();
        // RAM up to 0xA0000, then the VGA hole: the RAM part lands, the rest is dropped.
        let data: Vec<u8> = (0..0x3000u32).map(|i| i as u8 | 1).collect();
        m.write(0x9_E800, &data);
        let mut back = vec![0u8; 0x3000];
        m.read(0x9_E800, &mut back);
        assert_eq!(back[..0x1800], data[..0x1800]);
        assert!(back[0x1800..].iter().all(|&b| b == 0xFF), "the VGA hole reads as an empty bus");
        let mut pages = Vec::new();
        m.take_written(&mut pages);
        assert_eq!(pages, [0x9_E000, 0x9_F000, 0xA_0000, 0xA_1000]);
    }

    #[test]
    fn a20_gate_wraps_at_one_megabyte() {
        let mut m = Memory::new(4 << 20, &bios(64 * 1024)).unwrap();
        m.write(0x10_0010, &[1]);
        m.set_a20(false);
        let mut b = [0u8; 1];
        m.read(0x10_0010, &mut b);
        assert_eq!(b[0], 0);
        m.set_a20(true);
        m.read(0x10_0010, &mut b);
        assert_eq!(b[0], 1);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(Memory::new(4 << 20, &[0; 1000]), Err(MemoryError::BadBiosSize(1000))));
        assert!(matches!(Memory::new(1000, &bios(65536)), Err(MemoryError::TooSmall(_))));
    }
}
