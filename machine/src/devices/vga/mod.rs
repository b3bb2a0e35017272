//! The standard VGA as QEMU's "stdvga" presents it, so SeaBIOS's `vgabios-stdvga.bin` and
//! Linux's bochs-drm drive it: PCI function 1234:1111 (class 0x030000) at 00:02.0 with BAR0 the
//! linear framebuffer (prefetchable, the whole video memory), BAR2 4 KiB of registers (the VGA
//! ports 0x3C0-0x3DF at 0x400, the Bochs VBE DISPI registers at 0x500, QEMU's extended
//! registers at 0x600) and the option ROM; plus the legacy ports 0x3B0-0x3DF, the DISPI ports
//! 0x1CE/0x1CF and the 0xA0000-0xBFFFF window, decoded whatever the command register says.
//!
//! `regs` models the register file, `memory` the CPU's view of the planes, `vbe` the DISPI
//! interface and `render` the picture. The video memory is one plain page-aligned buffer: the
//! first 256 KiB hold the four interleaved planes, VBE modes use it linearly. BAR0 maps it
//! directly into the guest (`PciFunction::direct_memory`): the CPUs write the framebuffer with
//! no call per access, and the board reports the pages written before each picture.

pub mod memory;
pub mod regs;
pub mod render;
pub mod tables;
pub mod vbe;

use crate::device::{open_bus, Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::display::{Display, Frame, Scanout, VideoMemory};
use crate::memory::PageBuffer;
use crate::pci::{devfn, Bar, BarKind, DevFn, PciConfig, PciFunction};
use crate::Machine;
use regs::VgaRegs;
use render::Blink;
use serde::{Deserialize, Serialize};
use vbe::Dispi;

pub const VENDOR_ID: u16 = 0x1234;
pub const DEVICE_ID: u16 = 0x1111;
/// Where the board puts the VGA, as on QEMU's "pc" machine.
pub const SLOT: DevFn = devfn(2, 0);
pub const DEFAULT_VRAM_SIZE: usize = 16 << 20;
/// The legacy ports: first port and count.
pub const PORTS: (u16, u16) = (0x3B0, 0x30);
pub const WINDOW_BASE: u64 = 0xA_0000;

const BAR_LFB: u8 = 0;
const BAR_MMIO: u8 = 2;
const MMIO_SIZE: u64 = 4096;
/// Offsets in the MMIO BAR (QEMU `hw/display/vga-pci.c`).
const MMIO_VGA_PORTS: u64 = 0x400;
const MMIO_DISPI: u64 = 0x500;
const MMIO_QEXT: u64 = 0x600;
/// QEMU's extended registers: their size, and the framebuffer byte order (little endian).
const QEXT_SIZE: u32 = 8;
const QEXT_LITTLE_ENDIAN: u32 = 0x1E1E_1E1E;

pub struct Vga {
    config: PciConfig,
    rom: Option<Vec<u8>>,
    regs: VgaRegs,
    dispi: Dispi,
    vram: PageBuffer,
    /// Changes whenever the picture may have changed (see `Frame::generation`).
    generation: u64,
    /// Per 4 KiB page of video memory, the generation of its last write; and the generation
    /// of the last change to anything else (registers, DAC, mode, blink), before which a
    /// picture must be drawn whole. Not saved: a restore draws everything again.
    page_written: Vec<u64>,
    full_since: u64,
    /// Where the modes drawn whole are drawn, to be compared with the last picture.
    scratch: Frame,
    /// The last picture of those modes, and per row the generation in which it last changed
    /// (valid for pictures drawn since `rows_since`), so that a frame learns every row that
    /// changed since its own picture, whatever was drawn in between.
    last: Frame,
    row_changed: Vec<u64>,
    rows_since: u64,
    /// The blink phases of the last picture drawn.
    blink: Blink,
    /// `vram` as a front end reads it (None where it is not a memory file).
    video_memory: Option<VideoMemory>,
}

fn power_on_config(vram_size: usize, rom: Option<&[u8]>) -> PciConfig {
    let mut c = PciConfig::new(VENDOR_ID, DEVICE_ID, 0x03_00_00, 2);
    c.set_subsystem(0x1AF4, 0x1100);
    c.set_bar(usize::from(BAR_LFB), Bar { kind: BarKind::Mem32Prefetch, size: vram_size as u64 });
    c.set_bar(usize::from(BAR_MMIO), Bar { kind: BarKind::Mem32, size: MMIO_SIZE });
    if let Some(rom) = rom {
        c.set_rom((rom.len() as u64).next_power_of_two().max(2048));
    }
    c
}

/// Little-endian bytes `f(0)`, `f(1)`... of an access of `size` bytes.
fn gather(size: u8, mut f: impl FnMut(u64) -> u8) -> u64 {
    (0..u64::from(size.min(8))).fold(0, |v, k| v | u64::from(f(k)) << (8 * k))
}

impl Vga {
    /// A VGA with the default 16 MiB of video memory and an optional option ROM image.
    pub fn new(rom: Option<Vec<u8>>) -> Vga {
        Vga::with_vram(rom, DEFAULT_VRAM_SIZE)
    }

    /// `vram_size` is rounded up to a power of two from 256 KiB to 256 MiB.
    pub fn with_vram(rom: Option<Vec<u8>>, vram_size: usize) -> Vga {
        let size = vram_size.clamp(memory::PLANAR_SIZE, 256 << 20).next_power_of_two();
        let rom = rom.filter(|r| !r.is_empty());
        let vram = PageBuffer::shared(size, c"ferrite-vram");
        Vga {
            video_memory: vram.video_memory(),
            config: power_on_config(size, rom.as_deref()),
            rom,
            regs: VgaRegs::default(),
            dispi: Dispi::new(size),
            vram,
            generation: 1,
            page_written: vec![0; size.div_ceil(render::DIRTY_PAGE)],
            full_since: 1,
            scratch: Frame::new(),
            last: Frame::new(),
            row_changed: Vec::new(),
            rows_since: 0,
            blink: Blink::default(),
        }
    }

    /// Something other than video memory changed: the next picture is drawn whole.
    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.full_since = self.generation;
    }

    /// Video memory from `at` for `len` bytes was written.
    fn written(&mut self, at: usize, len: usize) {
        self.generation = self.generation.wrapping_add(1);
        let first = at / render::DIRTY_PAGE;
        let last = (at + len.max(1) - 1) / render::DIRTY_PAGE;
        for p in self.page_written.iter_mut().take(last + 1).skip(first) {
            *p = self.generation;
        }
    }

    /// A byte from a legacy port, 0xFF outside 0x3B0-0x3DF.
    fn port_read(&mut self, port: u16, cx: &mut DeviceContext) -> u8 {
        if !(PORTS.0..PORTS.0 + PORTS.1).contains(&port) {
            return 0xFF;
        }
        if port == 0x3BA || port == 0x3DA {
            // Stop a guest polling for retrace where the bits change next.
            cx.set_deadline(Some(self.regs.timing().next_change(cx.now)));
        }
        self.regs.read_port(port, cx.now)
    }

    fn port_write(&mut self, port: u16, v: u8) {
        if (PORTS.0..PORTS.0 + PORTS.1).contains(&port) {
            self.regs.write_port(port, v);
            self.changed();
        }
    }

    fn dispi_write(&mut self, v: u16) {
        self.dispi.write_data(v, &mut self.vram);
        self.regs.dac.eight_bit = self.dispi.dac_8bit();
        self.changed();
    }

    fn mmio_bar_read(&mut self, offset: u64, size: u8, cx: &mut DeviceContext) -> u64 {
        match offset {
            MMIO_VGA_PORTS..MMIO_DISPI => {
                gather(size, |k| self.port_read((0x3C0 + offset - MMIO_VGA_PORTS + k) as u16, cx))
            }
            MMIO_DISPI..MMIO_QEXT => gather(size, |k| {
                let at = offset - MMIO_DISPI + k;
                self.dispi.index = (at / 2) as u16;
                (self.dispi.read_data() >> (8 * (at & 1))) as u8
            }),
            MMIO_QEXT..0x608 => {
                let regs = [QEXT_SIZE.to_le_bytes(), QEXT_LITTLE_ENDIAN.to_le_bytes()].concat();
                gather(size, |k| regs.get((offset - MMIO_QEXT + k) as usize).copied().unwrap_or(0xFF))
            }
            _ => open_bus(size),
        }
    }

    fn mmio_bar_write(&mut self, offset: u64, size: u8, value: u64) {
        match offset {
            MMIO_VGA_PORTS..MMIO_DISPI => {
                for k in 0..u64::from(size) {
                    self.port_write((0x3C0 + offset - MMIO_VGA_PORTS + k) as u16, (value >> (8 * k)) as u8);
                }
            }
            MMIO_DISPI..MMIO_QEXT => {
                // Registers are 16 bits; a byte write changes its half of one.
                let mut k = 0;
                while k < u64::from(size) {
                    let at = offset - MMIO_DISPI + k;
                    self.dispi.index = (at / 2) as u16;
                    if at & 1 == 0 && k + 1 < u64::from(size) {
                        self.dispi_write((value >> (8 * k)) as u16);
                        k += 2;
                    } else {
                        let shift = 8 * (at & 1);
                        let old = self.dispi.read_data();
                        let byte = (value >> (8 * k)) as u16 & 0xFF;
                        self.dispi_write((old & !(0xFF << shift)) | byte << shift);
                        k += 1;
                    }
                }
            }
            _ => tracing::debug!(offset, value, "VGA: write to a read-only or unused MMIO register"),
        }
    }
}

/// Puts a VGA on the board: the PCI function at 00:02.0, the legacy and DISPI ports and the
/// 0xA0000-0xBFFFF window. Returns its device index.
pub fn attach(m: &mut Machine, rom: Option<Vec<u8>>) -> usize {
    let idx = m.add_pci_function(Box::new(Vga::new(rom)), SLOT);
    m.add_io_ports(idx, &[PORTS, (vbe::INDEX_PORT, 2)]);
    m.add_mmio_range(idx, WINDOW_BASE, memory::WINDOW_SIZE);
    idx
}

/// Video memory in a snapshot: only the 4 KiB pages that are not all zero, as hex.
#[derive(Serialize, Deserialize)]
struct VgaState {
    config: PciConfig,
    regs: VgaRegs,
    dispi: Dispi,
    vram_size: usize,
    vram_pages: Vec<(u32, String)>,
}

const SNAPSHOT_PAGE: usize = 4096;

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

impl Device for Vga {
    fn name(&self) -> &'static str {
        "vga"
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        match port {
            vbe::INDEX_PORT => u32::from(self.dispi.index),
            vbe::DATA_PORT => u32::from(self.dispi.read_data()),
            _ => gather(size, |k| self.port_read(port.wrapping_add(k as u16), cx)) as u32,
        }
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, _cx: &mut DeviceContext) {
        match port {
            vbe::INDEX_PORT => self.dispi.index = value as u16,
            vbe::DATA_PORT => self.dispi_write(value as u16),
            _ => {
                for k in 0..u16::from(size) {
                    self.port_write(port.wrapping_add(k), (value >> (8 * k)) as u8);
                }
            }
        }
    }

    fn mmio_read(&mut self, offset: u64, size: u8, _cx: &mut DeviceContext) -> u64 {
        gather(size, |k| self.window_read(offset + k))
    }

    fn mmio_write(&mut self, offset: u64, size: u8, value: u64, _cx: &mut DeviceContext) {
        for k in 0..u64::from(size.min(8)) {
            self.window_write(offset + k, (value >> (8 * k)) as u8);
        }
    }

    fn reset(&mut self) {
        self.config = power_on_config(self.vram.len(), self.rom.as_deref());
        self.regs = VgaRegs::default();
        self.dispi = Dispi::new(self.vram.len());
        self.changed();
    }

    fn save(&self) -> DeviceSnapshot {
        let vram_pages = self
            .vram
            .chunks(SNAPSHOT_PAGE)
            .enumerate()
            .filter(|(_, p)| p.iter().any(|&b| b != 0))
            .map(|(i, p)| (i as u32, to_hex(p)))
            .collect();
        let state = VgaState {
            config: self.config.clone(),
            regs: self.regs.clone(),
            dispi: self.dispi.clone(),
            vram_size: self.vram.len(),
            vram_pages,
        };
        DeviceSnapshot::new(self.name(), 1, &state)
    }

    fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let state: VgaState = s.decode(self.name(), 1)?;
        let malformed = |why: &str| SnapshotError::Malformed {
            device: "vga".into(),
            source: serde::de::Error::custom(why),
        };
        if state.vram_size != self.vram.len() {
            return Err(malformed("video memory size differs from this machine's"));
        }
        let mut vram = vec![0; self.vram.len()];
        for (page, hex) in &state.vram_pages {
            let at = *page as usize * SNAPSHOT_PAGE;
            let dest = vram.get_mut(at..at + SNAPSHOT_PAGE).ok_or_else(|| malformed("video memory page out of range"))?;
            from_hex(hex, dest).ok_or_else(|| malformed("video memory page is not 4096 bytes of hex"))?;
        }
        // Copied into the buffer the guest may have mapped, which never moves.
        self.vram.copy_from_slice(&vram);
        self.config = state.config;
        self.regs = state.regs;
        self.dispi = state.dispi;
        self.changed();
        Ok(())
    }

    fn as_pci(&mut self) -> Option<&mut dyn PciFunction> {
        Some(self)
    }

    fn as_display(&mut self) -> Option<&mut dyn Display> {
        Some(self)
    }
}

impl PciFunction for Vga {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, size: u8, cx: &mut DeviceContext) -> u64 {
        match bar {
            BAR_LFB => gather(size, |k| self.vram.get((offset + k) as usize).copied().unwrap_or(0xFF)),
            BAR_MMIO => self.mmio_bar_read(offset, size, cx),
            _ => open_bus(size),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, size: u8, value: u64, _cx: &mut DeviceContext) {
        match bar {
            BAR_LFB => {
                for k in 0..u64::from(size.min(8)) {
                    if let Some(b) = self.vram.get_mut((offset + k) as usize) {
                        *b = (value >> (8 * k)) as u8;
                    }
                }
                if let Ok(at) = usize::try_from(offset) {
                    if at < self.vram.len() {
                        self.written(at, usize::from(size.min(8)));
                    }
                }
            }
            BAR_MMIO => self.mmio_bar_write(offset, size, value),
            _ => {}
        }
    }

    fn rom(&self) -> Option<&[u8]> {
        self.rom.as_deref()
    }

    fn direct_memory(&mut self, bar: u8) -> Option<&mut PageBuffer> {
        (bar == BAR_LFB).then_some(&mut self.vram)
    }

    fn direct_memory_written(&mut self, bar: u8, offset: u64, len: u64) {
        if bar == BAR_LFB && offset < self.vram.len() as u64 {
            self.written(offset as usize, len as usize);
        }
    }
}

impl Display for Vga {
    fn render(&mut self, now: u64, frame: &mut Frame) -> bool {
        let blink = render::blink_at(&self.regs, &self.dispi, now);
        if blink != self.blink {
            self.blink = blink;
            self.changed();
        }
        if frame.generation == self.generation {
            frame.changed_rows = 0..0;
            return false;
        }
        let scanout = self.scanout().filter(|_| frame.accepts_scanout);
        if scanout.is_none() && frame.scanout.take().is_some() {
            // Its pixels are not the picture it showed.
            frame.drawn = 0;
        }
        // A picture drawn since the last change other than to video memory needs only what
        // was written since (the linear modes; the others are drawn whole, being small).
        if let (Some((s, width, height)), render::Screen::Vbe(m)) = (scanout, render::screen(&self.regs, &self.dispi)) {
            // Shown straight from video memory: only which rows changed.
            let same = frame.scanout.as_ref() == Some(&s) && (frame.width, frame.height) == (width, height);
            let since = (same && frame.drawn != 0 && frame.drawn >= self.full_since && frame.drawn <= self.generation)
                .then_some(render::Dirty { pages: &self.page_written, since: frame.drawn });
            frame.width = width;
            frame.height = height;
            frame.scanout = Some(s);
            frame.changed_rows = render::written_rows(m, since);
        } else if let render::Screen::Vbe(_) = render::screen(&self.regs, &self.dispi) {
            let since = (frame.drawn != 0 && frame.drawn >= self.full_since && frame.drawn <= self.generation)
                .then_some(render::Dirty { pages: &self.page_written, since: frame.drawn });
            render::render(&self.regs, &self.dispi, &self.vram, blink, since, frame);
        } else {
            // The other modes are small and their memory is interleaved: drawn whole, compared
            // with the last picture row by row (a blinking cursor, a typed character), and
            // `frame` gets the rows that changed since its own picture. (Comparing with
            // `frame` itself would miss a row that changed and changed back while a front end
            // showed a picture drawn into another buffer.)
            let g = self.generation;
            let new = &mut self.scratch;
            render::render(&self.regs, &self.dispi, &self.vram, blink, None, new);
            let row = new.width as usize * 4;
            if (self.last.width, self.last.height) == (new.width, new.height) && self.row_changed.len() == new.height as usize {
                for (y, (old, new)) in self.last.pixels.chunks_exact(row).zip(new.pixels.chunks_exact(row)).enumerate() {
                    if old != new {
                        self.row_changed[y] = g;
                    }
                }
            } else {
                self.row_changed = vec![g; new.height as usize];
                self.rows_since = g;
            }
            std::mem::swap(&mut self.last, &mut self.scratch);
            let last = &self.last;
            if frame.drawn != 0 && frame.drawn >= self.rows_since && (frame.width, frame.height) == (last.width, last.height) {
                let (mut first, mut end) = (u32::MAX, 0);
                for (y, _) in self.row_changed.iter().enumerate().filter(|(_, &c)| c > frame.drawn) {
                    let at = y * row..(y + 1) * row;
                    frame.format.convert_rgba(&last.pixels[at.clone()], &mut frame.pixels[at]);
                    (first, end) = (first.min(y as u32), y as u32 + 1);
                }
                frame.changed_rows = if first < end { first..end } else { 0..0 };
            } else {
                frame.resize(last.width, last.height);
                frame.format.convert_rgba(&last.pixels, &mut frame.pixels);
                frame.changed_rows = 0..frame.height;
            }
        }
        frame.generation = self.generation;
        frame.drawn = self.generation;
        true
    }

    fn screen_text(&self) -> String {
        render::screen_text(&self.regs, &self.dispi, &self.vram)
    }

    /// A VBE mode of 32 bits a pixel whose lines start on word boundaries and lie wholly in
    /// video memory (the last one to its pitch's end, as X11 takes a picture).
    fn scanout(&self) -> Option<(Scanout, u32, u32)> {
        let memory = self.video_memory.as_ref()?;
        let render::Screen::Vbe(m) = render::screen(&self.regs, &self.dispi) else { return None };
        let end = m.start.checked_add(m.line_bytes.checked_mul(m.height as usize)?)?;
        let fits = m.bpp == 32
            && m.start % 4 == 0
            && m.line_bytes % 4 == 0
            && m.line_bytes >= m.width as usize * 4
            && end <= memory.len().min(self.vram.len());
        fits.then(|| (Scanout { memory: memory.clone(), offset: m.start, pitch: m.line_bytes }, m.width, m.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;
    use crate::display::PixelFormat;
    use std::os::fd::AsRawFd;

    /// A VGA on a fake clock.
    struct Bench {
        vga: Vga,
        now: u64,
        deadline: Option<u64>,
    }

    impl Bench {
        fn new() -> Bench {
            Bench { vga: Vga::new(Some(vec![0x55, 0xAA, 0x10])), now: 0, deadline: None }
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Vga, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::<MachineEvent>::new());
            let mut dl = self.deadline;
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            let r = f(&mut self.vga, &mut cx);
            self.deadline = dl;
            assert!(irqs.is_empty() && events.is_empty(), "the VGA raises no interrupts or events");
            r
        }

        fn outb(&mut self, port: u16, v: u8) {
            self.with(|d, cx| d.io_write(port, 1, u32::from(v), cx));
        }
        fn outw(&mut self, port: u16, v: u16) {
            self.with(|d, cx| d.io_write(port, 2, u32::from(v), cx));
        }
        fn inb(&mut self, port: u16) -> u8 {
            self.with(|d, cx| d.io_read(port, 1, cx)) as u8
        }
        fn inw(&mut self, port: u16) -> u16 {
            self.with(|d, cx| d.io_read(port, 2, cx)) as u16
        }
        fn mmio(&mut self, offset: u64, size: u8) -> u64 {
            self.with(|d, cx| d.bar_read(BAR_MMIO, offset, size, cx))
        }
        fn mmio_write(&mut self, offset: u64, size: u8, v: u64) {
            self.with(|d, cx| d.bar_write(BAR_MMIO, offset, size, v, cx));
        }
    }

    #[test]
    fn word_writes_reach_index_and_data() {
        let mut b = Bench::new();
        b.outw(0x3C4, 0x0F02);
        assert_eq!(b.vga.regs.seq[2], 0x0F);
        assert_eq!(b.inw(0x3C4), 0x0F02, "index and data in one word read");
        b.outb(0x3C2, 0x01);
        b.outw(0x3D4, 0x550C);
        assert_eq!(b.vga.regs.crtc[0x0C], 0x55);
        assert_eq!(b.inb(0x3E0), 0xFF, "not a VGA port");
    }

    #[test]
    fn dispi_through_ports_and_mmio() {
        let mut b = Bench::new();
        b.outw(vbe::INDEX_PORT, vbe::ID as u16);
        assert_eq!(b.inw(vbe::DATA_PORT), vbe::ID5);
        b.outw(vbe::INDEX_PORT, vbe::VIDEO_MEMORY_64K as u16);
        assert_eq!(b.inw(vbe::DATA_PORT), 256, "16 MiB");
        // The same registers at 0x500 + 2 * index of the MMIO BAR.
        b.mmio_write(0x500 + 2 * vbe::XRES as u64, 2, 640);
        b.mmio_write(0x500 + 2 * vbe::YRES as u64, 2, 480);
        b.mmio_write(0x500 + 2 * vbe::BPP as u64, 1, 32);
        b.mmio_write(0x500 + 2 * vbe::ENABLE as u64, 2, u64::from(vbe::ENABLED | vbe::DAC_8BIT));
        assert_eq!(b.mmio(0x500 + 2 * vbe::XRES as u64, 2), 640);
        assert_eq!(b.mmio(0x500 + 2 * vbe::BPP as u64, 2), 32);
        assert!(b.vga.regs.dac.eight_bit, "the DAC switch reaches the DAC");
        b.outw(vbe::INDEX_PORT, vbe::YRES as u16);
        assert_eq!(b.inw(vbe::DATA_PORT), 480);
        assert_eq!(b.mmio(0x600, 4), 8, "QEMU extended registers: size");
        assert_eq!(b.mmio(0x604, 4), 0x1E1E_1E1E, "little-endian framebuffer");
        assert_eq!(b.vga.screen_text(), "VBE mode 640x480, 32 bpp\n");
    }

    #[test]
    fn vga_ports_in_the_mmio_bar() {
        let mut b = Bench::new();
        b.mmio_write(0x400 + 0x04, 2, 0x0302); // 0x3C4/0x3C5
        assert_eq!(b.vga.regs.seq[2], 0x03);
        b.mmio_write(0x400 + 0x08, 1, 0x20); // DAC write index
        for c in [1, 2, 3] {
            b.mmio_write(0x400 + 0x09, 1, c);
        }
        assert_eq!(&b.vga.regs.dac.palette[0x20 * 3..0x20 * 3 + 3], &[1, 2, 3]);
        assert_eq!(b.mmio(0x400 + 0x0C, 1), 0, "misc output read");
        assert_eq!(b.mmio(0x800, 4), 0xFFFF_FFFF);
    }

    #[test]
    fn banked_window_and_linear_framebuffer_share_memory() {
        let mut b = Bench::new();
        for (i, v) in [(vbe::XRES, 1024), (vbe::YRES, 768), (vbe::BPP, 8), (vbe::ENABLE, vbe::ENABLED), (vbe::BANK, 2)] {
            b.outw(vbe::INDEX_PORT, i as u16);
            b.outw(vbe::DATA_PORT, v);
        }
        b.with(|d, cx| d.mmio_write(0x10, 4, 0xDDCC_BBAA, cx));
        assert_eq!(b.with(|d, cx| d.bar_read(BAR_LFB, 0x2_0010, 4, cx)), 0xDDCC_BBAA);
        b.with(|d, cx| d.bar_write(BAR_LFB, 0x2_0014, 2, 0x1234, cx));
        assert_eq!(b.with(|d, cx| d.mmio_read(0x14, 2, cx)), 0x1234);
        assert_eq!(b.with(|d, cx| d.mmio_read(0x1_0000, 1, cx)), 0xFF, "no bank above 64 KiB");
        assert_eq!(b.with(|d, cx| d.bar_read(BAR_LFB, 16 << 20, 1, cx)), 0xFF, "past the memory");
    }

    #[test]
    fn status_reads_ask_to_stop_at_the_next_change() {
        let mut b = Bench::new();
        tables::program(&mut b.vga.regs, &tables::MODE_03);
        b.now = 1_000;
        let v = b.inb(0x3DA);
        assert_eq!(v & regs::ST1_VRETRACE, 0);
        let next = b.deadline.expect("a deadline");
        assert_eq!(next, b.vga.regs.timing().next_change(1_000));
        assert!(next > 1_000);
        b.deadline = None;
        b.inb(0x3DB);
        assert_eq!(b.deadline, None, "other ports leave the deadline alone");
    }

    #[test]
    fn frames_are_redrawn_only_when_something_changed() {
        let mut b = Bench::new();
        let mut f = Frame::new();
        assert!(b.vga.render(0, &mut f));
        assert!(!b.vga.render(0, &mut f), "nothing changed");
        tables::program(&mut b.vga.regs, &tables::MODE_13);
        b.outb(0x3C8, 0); // a port write marks the picture changed
        assert!(b.vga.render(0, &mut f));
        assert_eq!((f.width, f.height), (320, 200));
        b.with(|d, cx| d.mmio_write(5, 1, 9, cx));
        assert!(b.vga.render(0, &mut f));
        assert!(!b.vga.render(0, &mut f));
        // In text mode the blink phase alone changes the picture.
        tables::program(&mut b.vga.regs, &tables::MODE_03);
        b.outb(0x3C8, 0);
        assert!(b.vga.render(0, &mut f));
        let frame_ns = b.vga.regs.timing().frame_ps() / 1000;
        assert!(!b.vga.render(frame_ns * 3, &mut f), "same cursor phase");
        assert!(b.vga.render(frame_ns * 9, &mut f), "the cursor blinked");
    }

    #[test]
    fn linear_modes_redraw_only_the_lines_written_since_the_picture() {
        let mut b = Bench::new();
        for (i, v) in [(vbe::XRES, 1024), (vbe::YRES, 768), (vbe::BPP, 32), (vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED)] {
            b.outw(vbe::INDEX_PORT, i as u16);
            b.outw(vbe::DATA_PORT, v);
        }
        let pixel = |y: u64, x: u64| y * 1024 * 4 + x * 4;
        let whole = |vga: &mut Vga| {
            let mut f = Frame::new();
            vga.render(0, &mut f);
            assert_eq!(f.changed_rows, 0..768, "a new buffer is drawn whole");
            f
        };
        let (mut a, mut c) = (whole(&mut b.vga), Frame::new());
        b.with(|d, cx| d.bar_write(BAR_LFB, pixel(100, 5), 4, 0x00FF_0000, cx));
        assert!(b.vga.render(0, &mut a));
        assert_eq!(a.changed_rows, 100..101);
        assert_eq!(a.pixel(5, 100), Some([0xFF, 0, 0, 0xFF]));
        assert_eq!(a.pixels, whole(&mut b.vga).pixels);
        // Buffers swapped by a front end: `c` is drawn whole, `a` then catches up with every
        // write since its own picture (row 300 reached `c` already).
        c.clone_from(&a);
        b.with(|d, cx| d.bar_write(BAR_LFB, pixel(300, 1023), 4, 0x0000_00FF, cx));
        assert!(b.vga.render(0, &mut c));
        assert_eq!(c.changed_rows, 300..301);
        b.with(|d, cx| d.bar_write(BAR_LFB, pixel(767, 0), 8, 0x0000_FF00_0000_FF00, cx));
        assert!(b.vga.render(0, &mut a));
        assert_eq!(a.changed_rows, 300..768, "rows 300 and 767 were written since a's picture");
        assert_eq!(a.pixels, whole(&mut b.vga).pixels);
        assert!(!b.vga.render(0, &mut a));
        assert_eq!(a.changed_rows, 0..0);
        // A palette or register change draws everything again.
        b.outb(0x3C8, 0);
        assert!(b.vga.render(0, &mut a));
        assert_eq!(a.changed_rows, 0..768);
        // So does a restore.
        b.with(|d, cx| d.bar_write(BAR_LFB, pixel(10, 10), 1, 0x40, cx));
        let snap = b.vga.save();
        b.vga.restore(&snap).unwrap();
        assert!(b.vga.render(0, &mut a));
        assert_eq!(a.changed_rows, 0..768);
    }

    /// A front end that shows video memory as it is gets 32-bit linear pictures as where they
    /// are (with the rows written since its picture), and everything else drawn.
    #[test]
    fn linear_32_bit_pictures_are_scanned_out_from_video_memory() {
        let mut b = Bench::new();
        let mode = |b: &mut Bench, regs: &[(usize, u16)]| {
            for &(i, v) in regs {
                b.outw(vbe::INDEX_PORT, i as u16);
                b.outw(vbe::DATA_PORT, v);
            }
        };
        mode(&mut b, &[(vbe::XRES, 800), (vbe::YRES, 600), (vbe::BPP, 32), (vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED)]);
        let (s, w, h) = b.vga.scanout().expect("a 32-bit linear mode");
        assert_eq!((s.offset, s.pitch, w, h), (0, 3200, 800, 600));
        assert_eq!(s.memory.len(), b.vga.vram.len());
        let mut f = Frame { accepts_scanout: true, format: PixelFormat::Bgra, ..Frame::new() };
        assert!(b.vga.render(0, &mut f));
        assert_eq!((f.width, f.height, f.changed_rows.clone()), (800, 600, 0..600));
        assert!(f.pixels.is_empty(), "nothing copied");
        assert_eq!(f.scanout.as_ref(), Some(&s));
        // The guest's writes are in the front end's mapping, and the rows are reported.
        b.with(|d, cx| d.bar_write(BAR_LFB, 300 * 3200 + 4 * 7, 4, 0x0012_3456, cx));
        assert!(b.vga.render(0, &mut f));
        assert!(f.changed_rows.contains(&300) && f.changed_rows.len() <= 2, "{:?}", f.changed_rows);
        let mut px = [0; 4];
        s.memory.read(300 * 3200 + 4 * 7, &mut px);
        assert_eq!(px, [0x56, 0x34, 0x12, 0]);
        assert_eq!(f.pixel(7, 300), Some([0x12, 0x34, 0x56, 0xFF]));
        assert!(!b.vga.render(0, &mut f));
        // Materialised, it is the picture a frame that takes no scanout gets.
        let mut copied = Frame::new();
        b.vga.render(0, &mut copied);
        assert!(copied.scanout.is_none());
        assert_eq!(&f.rgba()[..], &copied.pixels[..]);
        let mut m = f.clone();
        m.materialise();
        assert!(m.scanout.is_none());
        assert_eq!(m.pixel(7, 300), Some([0x12, 0x34, 0x56, 0xFF]));
        assert_eq!(&m.pixels[(300 * 800 + 7) * 4..][..4], &[0x56, 0x34, 0x12, 0xFF]);
        // Panned (a virtual width and a start line): the offset and pitch follow.
        mode(&mut b, &[(vbe::VIRT_WIDTH, 1024), (vbe::Y_OFFSET, 10)]);
        assert!(b.vga.render(0, &mut f));
        let s = f.scanout.clone().expect("still 32-bit linear");
        assert_eq!((s.offset, s.pitch, f.changed_rows.clone()), (10 * 4096, 4096, 0..600));
        // Another depth is drawn into the pixels, whole.
        mode(&mut b, &[(vbe::ENABLE, 0), (vbe::BPP, 16), (vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED)]);
        assert!(b.vga.scanout().is_none());
        assert!(b.vga.render(0, &mut f));
        assert!(f.scanout.is_none());
        assert_eq!((f.pixels.len(), f.changed_rows.clone()), (800 * 600 * 4, 0..600));
        // Video memory is a memory file: zero until written, and shared with the mapping.
        assert!(s.memory.fd().as_raw_fd() >= 0);
        s.memory.read(0, &mut px);
        assert_eq!(px, [0; 4]);
    }

    #[test]
    fn text_modes_report_the_rows_that_changed() {
        let mut b = Bench::new();
        tables::program(&mut b.vga.regs, &tables::MODE_03);
        b.outb(0x3C8, 0);
        let mut f = Frame::new();
        assert!(b.vga.render(0, &mut f));
        assert_eq!(f.changed_rows, 0..400, "the first picture is drawn whole");
        // A character on blue in row 2 (scan lines 32-47), at 0xB8000 + 2 * 80 * 2.
        b.with(|d, cx| d.mmio_write(0x1_8000 + 2 * 160, 2, 0x1741, cx));
        assert!(b.vga.render(0, &mut f));
        assert!(!f.changed_rows.is_empty() && f.changed_rows.start >= 32 && f.changed_rows.end <= 48, "{:?}", f.changed_rows);
        let mut whole = Frame::new();
        b.vga.render(0, &mut whole);
        assert_eq!(f.pixels, whole.pixels);
        // The cursor's blink changes only the cursor's rows.
        let frame_ns = b.vga.regs.timing().frame_ps() / 1000;
        assert!(b.vga.render(frame_ns * 9, &mut f));
        assert!(f.changed_rows.len() < 16, "{:?}", f.changed_rows);
    }

    /// A front end that swaps buffers hands back one holding an older picture: the rows that
    /// changed since that picture are redrawn and reported even where the newest picture
    /// equals the buffer's (a character typed, then deleted, while another buffer was shown).
    #[test]
    fn swapped_buffers_learn_rows_that_changed_and_changed_back() {
        let mut b = Bench::new();
        tables::program(&mut b.vga.regs, &tables::MODE_03);
        b.outb(0x3C8, 0);
        let (mut shown, mut spare) = (Frame::new(), Frame::new());
        assert!(b.vga.render(0, &mut spare));
        // A character in row 2 (scan lines 32-47), drawn into the other buffer, which the
        // front end now shows.
        b.with(|d, cx| d.mmio_write(0x1_8000 + 2 * 160, 2, 0x1741, cx));
        assert!(b.vga.render(0, &mut shown));
        // Deleted again; the picture goes to the spare buffer, which never saw it.
        b.with(|d, cx| d.mmio_write(0x1_8000 + 2 * 160, 2, 0x0720, cx));
        assert!(b.vga.render(0, &mut spare));
        let rows = spare.changed_rows.clone();
        assert!(rows.start <= 32 && rows.end >= 48, "row 2's scan lines must be redrawn: {rows:?}");
        let mut whole = Frame::new();
        b.vga.render(0, &mut whole);
        assert_eq!(spare.pixels, whole.pixels);
        // And the shown buffer, brought up to date, gets the same rows back.
        assert!(b.vga.render(0, &mut shown));
        assert!(shown.changed_rows.start <= 32 && shown.changed_rows.end >= 48);
        assert_eq!(shown.pixels, whole.pixels);
    }

    /// A front end that draws in BGRA (X11's byte order) gets the same pictures, in whole and
    /// in the rows that changed.
    #[test]
    fn bgra_frames_get_the_same_pictures_and_changed_rows() {
        use crate::display::PixelFormat;
        let mut b = Bench::new();
        tables::program(&mut b.vga.regs, &tables::MODE_03);
        b.outb(0x3C8, 0);
        for c in [0u8, 0x2A, 0x3F, 0x3F, 0, 0x15] {
            b.outb(0x3C9, c);
        }
        let bgra = || Frame { format: PixelFormat::Bgra, ..Frame::new() };
        let (mut f, mut whole) = (bgra(), Frame::new());
        assert!(b.vga.render(0, &mut f));
        b.with(|d, cx| d.mmio_write(0x1_8000 + 2 * 160, 2, 0x1741, cx));
        assert!(b.vga.render(0, &mut f));
        assert!(f.changed_rows.start >= 32 && f.changed_rows.end <= 48, "{:?}", f.changed_rows);
        b.vga.render(0, &mut whole);
        assert_eq!(&f.rgba()[..], &whole.pixels[..]);
        for (i, v) in [(vbe::XRES, 640), (vbe::YRES, 480), (vbe::BPP, 32), (vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED)] {
            b.outw(vbe::INDEX_PORT, i as u16);
            b.outw(vbe::DATA_PORT, v);
        }
        let (mut f, mut whole) = (bgra(), Frame::new());
        assert!(b.vga.render(0, &mut f));
        b.with(|d, cx| d.bar_write(BAR_LFB, 200 * 640 * 4 + 8, 4, 0x0012_3456, cx));
        assert!(b.vga.render(0, &mut f));
        assert!(f.changed_rows.contains(&200) && f.changed_rows.len() <= 2, "the 4 KiB page's rows: {:?}", f.changed_rows);
        assert_eq!(f.pixel(2, 200), Some([0x12, 0x34, 0x56, 0xFF]));
        assert_eq!(&f.pixels[(200 * 640 + 2) * 4..][..4], &[0x56, 0x34, 0x12, 0xFF], "BGRA in memory");
        b.vga.render(0, &mut whole);
        assert_eq!(&f.rgba()[..], &whole.pixels[..]);
    }

    #[test]
    fn rom_and_config_space() {
        let mut b = Bench::new();
        let c = b.vga.config().clone();
        assert_eq!(c.get16(0), VENDOR_ID);
        assert_eq!(c.get16(2), DEVICE_ID);
        assert_eq!(c.get32(8) >> 8, 0x03_00_00);
        assert_eq!(b.vga.rom(), Some(&[0x55, 0xAA, 0x10][..]));
        let mut c = b.vga.config().clone();
        c.write(0x30, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(0x30, 4), 0xFFFF_F801, "2 KiB ROM BAR");
        assert!(Vga::new(None).rom().is_none());
        b.with(|d, _| d.reset());
        assert_eq!(b.vga.rom().map(<[u8]>::len), Some(3), "the ROM survives a reset");
    }

    #[test]
    fn snapshot_round_trip() {
        let mut b = Bench::new();
        tables::program(&mut b.vga.regs, &tables::MODE_03);
        b.with(|d, cx| d.mmio_write(0x1_8000, 2, 0x1E41, cx));
        b.with(|d, cx| d.bar_write(BAR_LFB, (8 << 20) + 3, 1, 0x77, cx));
        let snap = b.vga.save();
        let mut other = Vga::new(Some(vec![0x55, 0xAA, 0x10]));
        other.restore(&snap).unwrap();
        assert_eq!(other.regs, b.vga.regs);
        assert!(other.vram[..] == b.vga.vram[..], "video memory restored");
        assert_eq!(other.screen_text().lines().next(), Some("A"));
        let mut small = Vga::with_vram(None, 1 << 20);
        assert!(matches!(small.restore(&snap), Err(SnapshotError::Malformed { .. })));
    }
}
