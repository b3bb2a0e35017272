//! The Bochs VBE "DISPI" interface (Bochs `iodev/display/vga.h`, QEMU `hw/display/vga.c`, whose
//! checks this follows): an index/data register pair at ports 0x1CE/0x1CF (also at offset
//! 0x500 of the MMIO BAR) that sets a linear framebuffer mode of 8/15/16/24/32 bits per pixel,
//! with a virtual width and display offsets for panning, and a 64 KiB bank for access through
//! 0xA0000. Resolutions are clamped to what the video memory holds.

use serde::{Deserialize, Serialize};

pub const INDEX_PORT: u16 = 0x1CE;
pub const DATA_PORT: u16 = 0x1CF;

pub const ID: usize = 0;
pub const XRES: usize = 1;
pub const YRES: usize = 2;
pub const BPP: usize = 3;
pub const ENABLE: usize = 4;
pub const BANK: usize = 5;
pub const VIRT_WIDTH: usize = 6;
pub const VIRT_HEIGHT: usize = 7;
pub const X_OFFSET: usize = 8;
pub const Y_OFFSET: usize = 9;
/// Read only: video memory size in 64 KiB units.
pub const VIDEO_MEMORY_64K: usize = 10;
const REG_COUNT: usize = 10;

pub const ENABLED: u16 = 0x01;
/// While set, XRES, YRES and BPP read as their maximum values.
pub const GETCAPS: u16 = 0x02;
pub const DAC_8BIT: u16 = 0x20;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;

/// The interface versions a guest may select; ID5 is the newest.
pub const ID0: u16 = 0xB0C0;
pub const ID5: u16 = 0xB0C5;

/// Largest mode: 2560x1600 at 32 bits per pixel fills 16 MiB.
pub const MAX_XRES: u16 = 2560;
pub const MAX_YRES: u16 = 1600;
pub const MAX_BPP: u16 = 32;
/// Virtual width limit for panning (QEMU's limit on the display width).
const MAX_VIRT_WIDTH: u16 = 16000;

/// A VBE mode as the renderer needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VbeMode {
    pub width: u32,
    pub height: u32,
    /// 8, 15, 16, 24 or 32.
    pub bpp: u32,
    /// Bytes from one line to the next.
    pub line_bytes: usize,
    /// Byte offset of the top-left visible pixel.
    pub start: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispi {
    pub index: u16,
    pub regs: [u16; REG_COUNT],
    vram_size: usize,
}

impl Dispi {
    pub fn new(vram_size: usize) -> Dispi {
        let mut d = Dispi { index: 0, regs: [0; REG_COUNT], vram_size };
        d.regs[ID] = ID5;
        d
    }

    pub fn enabled(&self) -> bool {
        self.regs[ENABLE] & ENABLED != 0
    }

    pub fn dac_8bit(&self) -> bool {
        self.regs[ENABLE] & DAC_8BIT != 0
    }

    /// Where the 64 KiB bank at 0xA0000 starts in video memory.
    pub fn bank_offset(&self) -> usize {
        usize::from(self.regs[BANK]) << 16
    }

    pub fn read_data(&self) -> u16 {
        let i = usize::from(self.index);
        if self.regs[ENABLE] & GETCAPS != 0 {
            match i {
                XRES => return MAX_XRES,
                YRES => return MAX_YRES,
                BPP => return MAX_BPP,
                _ => {}
            }
        }
        match i {
            VIDEO_MEMORY_64K => (self.vram_size >> 16) as u16,
            _ => self.regs.get(i).copied().unwrap_or_else(|| {
                tracing::debug!(index = i, "VBE: read of a DISPI register that does not exist");
                0
            }),
        }
    }

    /// A data write; `vram` is cleared when the mode is enabled without NOCLEARMEM.
    pub fn write_data(&mut self, v: u16, vram: &mut [u8]) {
        let i = usize::from(self.index);
        match i {
            ID => {
                if (ID0..=ID5).contains(&v) {
                    self.regs[ID] = v;
                } else {
                    tracing::debug!(value = v, "VBE: unknown DISPI interface version");
                }
            }
            XRES | YRES | BPP | VIRT_WIDTH | X_OFFSET | Y_OFFSET => {
                self.regs[i] = v;
                self.fixup();
            }
            BANK => {
                let banks = (self.vram_size >> 16).max(1);
                if usize::from(v) >= banks {
                    tracing::debug!(bank = v, "VBE: bank beyond video memory (wraps)");
                }
                self.regs[BANK] = (usize::from(v) % banks) as u16;
            }
            ENABLE => {
                let was = self.enabled();
                self.regs[ENABLE] = v;
                if v & ENABLED != 0 && !was {
                    self.regs[VIRT_WIDTH] = 0;
                    self.regs[X_OFFSET] = 0;
                    self.regs[Y_OFFSET] = 0;
                    self.fixup();
                    if v & NOCLEARMEM == 0 {
                        if let Some(m) = self.mode() {
                            let end = (m.line_bytes * m.height as usize).min(vram.len());
                            vram[..end].fill(0);
                        }
                    }
                }
            }
            _ => tracing::debug!(index = i, value = v, "VBE: write to a read-only or missing DISPI register"),
        }
    }

    /// Bytes per pixel as stored (15 bpp takes two).
    fn bytes_per_pixel(bpp: u16) -> usize {
        usize::from(bpp).div_ceil(8)
    }

    /// Brings the registers back to a mode the video memory holds, as QEMU's
    /// `vbe_fixup_regs` does: unknown depths become 8, widths a multiple of 8 up to the maximum,
    /// heights and offsets what fits.
    fn fixup(&mut self) {
        if !self.enabled() {
            return;
        }
        let r = &mut self.regs;
        if !matches!(r[BPP], 8 | 15 | 16 | 24 | 32) {
            tracing::debug!(bpp = r[BPP], "VBE: unsupported depth, using 8 bits per pixel");
            r[BPP] = 8;
        }
        let bytes = Self::bytes_per_pixel(r[BPP]);
        r[XRES] = (r[XRES] & !7).clamp(8, MAX_XRES);
        r[VIRT_WIDTH] = (r[VIRT_WIDTH] & !7).min(MAX_VIRT_WIDTH).max(r[XRES]);
        let line = usize::from(r[VIRT_WIDTH]) * bytes;
        let max_y = (self.vram_size / line).min(usize::from(u16::MAX)) as u16;
        r[YRES] = r[YRES].clamp(1, MAX_YRES).min(max_y);
        r[X_OFFSET] = r[X_OFFSET].min(MAX_VIRT_WIDTH);
        let frame = usize::from(r[YRES]) * line;
        let offset = |r: &[u16; REG_COUNT]| usize::from(r[X_OFFSET]) * bytes + usize::from(r[Y_OFFSET]) * line;
        if offset(r) + frame > self.vram_size {
            r[Y_OFFSET] = 0;
            if offset(r) + frame > self.vram_size {
                r[X_OFFSET] = 0;
            }
        }
        r[VIRT_HEIGHT] = max_y;
    }

    /// The mode being displayed, when VBE is enabled.
    pub fn mode(&self) -> Option<VbeMode> {
        if !self.enabled() {
            return None;
        }
        let r = &self.regs;
        let bytes = Self::bytes_per_pixel(r[BPP]);
        let line_bytes = usize::from(r[VIRT_WIDTH]) * bytes;
        Some(VbeMode {
            width: u32::from(r[XRES]),
            height: u32::from(r[YRES]),
            bpp: u32::from(r[BPP]),
            line_bytes,
            start: usize::from(r[X_OFFSET]) * bytes + usize::from(r[Y_OFFSET]) * line_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VRAM: usize = 16 << 20;

    fn set(d: &mut Dispi, vram: &mut [u8], index: usize, v: u16) {
        d.index = index as u16;
        d.write_data(v, vram);
    }

    fn get(d: &mut Dispi, index: usize) -> u16 {
        d.index = index as u16;
        d.read_data()
    }

    #[test]
    fn identification_and_memory_size() {
        let mut d = Dispi::new(VRAM);
        let mut vram = vec![0; 1024];
        assert_eq!(get(&mut d, ID), ID5);
        set(&mut d, &mut vram, ID, ID0);
        assert_eq!(get(&mut d, ID), ID0);
        set(&mut d, &mut vram, ID, 0x1234);
        assert_eq!(get(&mut d, ID), ID0, "unknown versions are refused");
        assert_eq!(get(&mut d, VIDEO_MEMORY_64K), 256);
        assert_eq!(get(&mut d, 0x55), 0, "no such register");
        set(&mut d, &mut vram, 0x55, 1); // ignored
    }

    #[test]
    fn enable_sets_a_mode_and_clears_memory() {
        let mut d = Dispi::new(VRAM);
        let mut vram = vec![0xAA; VRAM];
        set(&mut d, &mut vram, XRES, 1024);
        set(&mut d, &mut vram, YRES, 768);
        set(&mut d, &mut vram, BPP, 32);
        assert_eq!(d.mode(), None);
        set(&mut d, &mut vram, ENABLE, ENABLED | LFB_ENABLED);
        let m = d.mode().unwrap();
        assert_eq!((m.width, m.height, m.bpp, m.line_bytes, m.start), (1024, 768, 32, 4096, 0));
        assert_eq!(get(&mut d, VIRT_WIDTH), 1024);
        assert_eq!(get(&mut d, VIRT_HEIGHT), 4096, "16 MiB / 4096-byte lines");
        assert!(vram[..1024 * 768 * 4].iter().all(|&b| b == 0));
        assert_eq!(vram[1024 * 768 * 4], 0xAA, "only the visible frame is cleared");
        set(&mut d, &mut vram, ENABLE, 0);
        vram.fill(0xAA);
        set(&mut d, &mut vram, BPP, 16);
        set(&mut d, &mut vram, ENABLE, ENABLED | NOCLEARMEM);
        assert_eq!(vram[0], 0xAA, "NOCLEARMEM keeps the contents");
        assert_eq!(d.mode().unwrap().line_bytes, 2048);
        set(&mut d, &mut vram, BPP, 15);
        assert_eq!(d.mode().unwrap().line_bytes, 2048, "15 bpp takes two bytes per pixel");
    }

    #[test]
    fn getcaps_reports_the_limits() {
        let mut d = Dispi::new(VRAM);
        let mut vram = vec![0; 16];
        set(&mut d, &mut vram, XRES, 640);
        set(&mut d, &mut vram, ENABLE, GETCAPS);
        assert_eq!([get(&mut d, XRES), get(&mut d, YRES), get(&mut d, BPP)], [2560, 1600, 32]);
        set(&mut d, &mut vram, ENABLE, 0);
        assert_eq!(get(&mut d, XRES), 640);
    }

    #[test]
    fn impossible_modes_are_clamped() {
        let mut d = Dispi::new(VRAM);
        let mut vram = vec![0; VRAM];
        set(&mut d, &mut vram, XRES, 65535);
        set(&mut d, &mut vram, YRES, 65535);
        set(&mut d, &mut vram, BPP, 7);
        set(&mut d, &mut vram, ENABLE, ENABLED | NOCLEARMEM);
        let m = d.mode().unwrap();
        assert_eq!((m.width, m.height, m.bpp), (2560, 1600, 8));
        set(&mut d, &mut vram, BPP, 32);
        let m = d.mode().unwrap();
        assert_eq!((m.width, m.height, m.bpp), (2560, 1600, 32));
        assert!(m.line_bytes * m.height as usize <= VRAM);
        // A smaller memory cuts the height instead.
        let mut d = Dispi::new(4 << 20);
        set(&mut d, &mut vram, XRES, 2560);
        set(&mut d, &mut vram, YRES, 1600);
        set(&mut d, &mut vram, BPP, 32);
        set(&mut d, &mut vram, ENABLE, ENABLED | NOCLEARMEM);
        let m = d.mode().unwrap();
        assert_eq!((m.width, m.height), (2560, ((4 << 20) / (2560 * 4)) as u32));
        set(&mut d, &mut vram, XRES, 3);
        assert_eq!(d.mode().unwrap().width, 8, "widths are multiples of 8, at least 8");
        set(&mut d, &mut vram, YRES, 0);
        assert_eq!(d.mode().unwrap().height, 1);
    }

    #[test]
    fn panning_offsets_stay_inside_memory() {
        let mut d = Dispi::new(VRAM);
        let mut vram = vec![0; VRAM];
        set(&mut d, &mut vram, XRES, 640);
        set(&mut d, &mut vram, YRES, 480);
        set(&mut d, &mut vram, BPP, 32);
        set(&mut d, &mut vram, ENABLE, ENABLED | NOCLEARMEM);
        set(&mut d, &mut vram, VIRT_WIDTH, 1280);
        set(&mut d, &mut vram, X_OFFSET, 640);
        set(&mut d, &mut vram, Y_OFFSET, 100);
        assert_eq!(d.mode().unwrap().start, 100 * 1280 * 4 + 640 * 4);
        set(&mut d, &mut vram, Y_OFFSET, 60000);
        assert_eq!(get(&mut d, Y_OFFSET), 0, "an offset past memory falls back to 0");
        assert_eq!(d.mode().unwrap().start, 640 * 4);
    }

    #[test]
    fn banks_wrap_at_memory_size() {
        let mut d = Dispi::new(VRAM);
        let mut vram = vec![0; 16];
        set(&mut d, &mut vram, BANK, 3);
        assert_eq!(d.bank_offset(), 3 << 16);
        set(&mut d, &mut vram, BANK, 0x1_03);
        assert_eq!(d.bank_offset(), 3 << 16);
    }
}
