//! The 256 KiB of planar video memory as the CPU sees it through 0xA0000-0xBFFFF (IBM VGA
//! Technical Reference, "Graphics Controller"; FreeVGA "VGA/SVGA Video Memory"): the window
//! the memory map select of GR6 opens, plane selection by the map mask, odd/even and chain-4
//! addressing, the latches, write modes 0-3 (data rotate, set/reset, logical operation, bit
//! mask) and read modes 0-1 (colour compare). With VBE enabled the first 64 KiB of the window is
//! a bank of the linear video memory instead.
//!
//! Storage: the planes are interleaved, byte `4 * offset + plane` of the video memory, so the
//! four bytes at an offset (the latches) are one little-endian word.

use super::regs::{gc, seq, VgaRegs};
use super::Vga;

/// Each plane is 64 KiB.
pub const PLANE_SIZE: usize = 0x1_0000;
/// The planar part of the video memory.
pub const PLANAR_SIZE: usize = 4 * PLANE_SIZE;
/// Size of the legacy window at 0xA0000.
pub const WINDOW_SIZE: u64 = 0x2_0000;

/// A nibble's four bits as four byte lanes of 0x00 or 0xFF (plane 0 in the low byte).
fn expand(nibble: u8) -> u32 {
    (0..4).fold(0, |v, p| if nibble >> p & 1 != 0 { v | 0xFF << (8 * p) } else { v })
}

/// A byte in all four lanes.
fn splat(b: u8) -> u32 {
    u32::from(b) * 0x0101_0101
}

/// What the graphics controller writes to the four planes for a CPU byte `data`, given the
/// latches (IBM VGA Technical Reference, figure "Graphics Controller write data path").
pub fn write_data(g: &[u8; super::regs::GC_COUNT], latch: u32, data: u8) -> u32 {
    let rotated = data.rotate_right(u32::from(g[gc::DATA_ROTATE] & 7));
    let set_reset = expand(g[gc::SET_RESET]);
    let mut mask = g[gc::BIT_MASK];
    let source = match g[gc::MODE] & 3 {
        0 => {
            let enabled = expand(g[gc::ENABLE_SET_RESET]);
            (splat(rotated) & !enabled) | (set_reset & enabled)
        }
        1 => return latch,
        2 => expand(data),
        _ => {
            mask &= rotated;
            set_reset
        }
    };
    let result = match g[gc::DATA_ROTATE] >> 3 & 3 {
        0 => source,
        1 => source & latch,
        2 => source | latch,
        _ => source ^ latch,
    };
    let m = splat(mask);
    (result & m) | (latch & !m)
}

/// Read mode 1: a 1 for each pixel whose colour, in the planes the colour don't care register
/// selects, equals the colour compare register.
pub fn color_compare(g: &[u8; super::regs::GC_COUNT], latch: u32) -> u8 {
    let care = expand(g[gc::COLOR_DONT_CARE]);
    let differ = (latch ^ expand(g[gc::COLOR_COMPARE])) & care;
    !(differ.to_le_bytes().iter().fold(0, |a, b| a | b))
}

/// Where a CPU access at `offset` in the window lands: (plane offset, planes written or the
/// plane read).
enum Route {
    /// Not decoded by the current memory map.
    None,
    Planar { offset: usize, planes: u8 },
    /// VBE banked access: a byte of the linear video memory.
    Linear(usize),
}

impl VgaRegs {
    /// The (start, size) within the window that GR6's memory map select decodes.
    fn memory_map(&self) -> (u64, u64) {
        match self.gc[gc::MISC] >> 2 & 3 {
            0 => (0, 0x2_0000),
            1 => (0, 0x1_0000),
            2 => (0x1_0000, 0x8000),
            _ => (0x1_8000, 0x8000),
        }
    }

    fn chain4(&self) -> bool {
        self.seq[seq::MEMORY_MODE] & 8 != 0
    }
}

impl Vga {
    fn route(&self, window_offset: u64, write: bool) -> Route {
        if self.dispi.enabled() {
            return match window_offset {
                o if o < 0x1_0000 => Route::Linear(self.dispi.bank_offset() + o as usize),
                _ => Route::None,
            };
        }
        let (start, size) = self.regs.memory_map();
        if !(start..start + size).contains(&window_offset) {
            return Route::None;
        }
        let a = (window_offset - start) as usize;
        let r = &self.regs;
        let (offset, planes) = if r.chain4() {
            // The two low address bits pick the plane (FreeVGA: "Chain 4").
            (a & !3, 1u8 << (a & 3))
        } else if write && r.seq[seq::MEMORY_MODE] & 4 == 0 {
            // Odd/even: even addresses reach planes 0 and 2, odd ones 1 and 3.
            (a & !1, if a & 1 != 0 { 0b1010 } else { 0b0101 })
        } else if !write && r.gc[gc::MODE] & 0x10 != 0 {
            (a & !1, 1 << ((r.gc[gc::READ_MAP] & 2) | (a as u8 & 1)))
        } else if write {
            (a, 0x0F)
        } else {
            (a, 1 << (r.gc[gc::READ_MAP] & 3))
        };
        let planes = if write { planes & r.seq[seq::MAP_MASK] } else { planes };
        Route::Planar { offset: offset % PLANE_SIZE, planes }
    }

    /// A CPU byte read at `window_offset` from 0xA0000.
    pub(super) fn window_read(&mut self, window_offset: u64) -> u8 {
        match self.route(window_offset, false) {
            Route::None => 0xFF,
            Route::Linear(at) => self.vram.get(at).copied().unwrap_or(0xFF),
            Route::Planar { offset, planes } => {
                let at = offset * 4;
                self.regs.latch = u32::from_le_bytes(self.vram[at..at + 4].try_into().expect("four planes"));
                if self.regs.gc[gc::MODE] & 8 != 0 {
                    color_compare(&self.regs.gc, self.regs.latch)
                } else {
                    self.vram[at + planes.trailing_zeros() as usize]
                }
            }
        }
    }

    /// A CPU byte write at `window_offset` from 0xA0000.
    pub(super) fn window_write(&mut self, window_offset: u64, v: u8) {
        match self.route(window_offset, true) {
            Route::None => {}
            Route::Linear(at) => {
                if let Some(b) = self.vram.get_mut(at) {
                    *b = v;
                    self.written(at, 1);
                }
            }
            Route::Planar { offset, planes } => {
                let data = write_data(&self.regs.gc, self.regs.latch, v).to_le_bytes();
                let at = offset * 4;
                for (p, &d) in data.iter().enumerate() {
                    if planes >> p & 1 != 0 {
                        self.vram[at + p] = d;
                    }
                }
                self.written(at, 4);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::vga::Vga;

    /// A VGA with planar 16-colour addressing (mode 12h's memory settings).
    fn planar() -> Vga {
        let mut v = Vga::with_vram(None, 1 << 20);
        for (i, val) in [(2u8, 0x0Fu8), (4, 0x06)] {
            v.regs.write_port(0x3C4, i);
            v.regs.write_port(0x3C5, val);
        }
        gcw(&mut v, gc::MISC as u8, 0x05); // graphics, A0000 64K
        gcw(&mut v, gc::BIT_MASK as u8, 0xFF);
        v
    }

    fn gcw(v: &mut Vga, i: u8, val: u8) {
        v.regs.write_port(0x3CE, i);
        v.regs.write_port(0x3CF, val);
    }

    fn plane(v: &Vga, p: usize, offset: usize) -> u8 {
        v.vram[offset * 4 + p]
    }

    fn fill_planes(v: &mut Vga, offset: usize, bytes: [u8; 4]) {
        v.vram[offset * 4..offset * 4 + 4].copy_from_slice(&bytes);
    }

    #[test]
    fn write_mode_0_rotate_set_reset_logic_and_mask() {
        let mut v = planar();
        v.window_write(0x10, 0xA5);
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x10)), [0xA5; 4], "plain write to all planes");
        gcw(&mut v, gc::DATA_ROTATE as u8, 4);
        v.window_write(0x11, 0x12);
        assert_eq!(plane(&v, 0, 0x11), 0x21, "rotated right by 4");
        // Set/reset enabled for planes 0 and 1, value 1 for plane 0.
        gcw(&mut v, gc::DATA_ROTATE as u8, 0);
        gcw(&mut v, gc::SET_RESET as u8, 0x01);
        gcw(&mut v, gc::ENABLE_SET_RESET as u8, 0x03);
        v.window_write(0x12, 0x5A);
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x12)), [0xFF, 0x00, 0x5A, 0x5A]);
        gcw(&mut v, gc::ENABLE_SET_RESET as u8, 0);
        // Logical operations against the latches loaded by a read.
        fill_planes(&mut v, 0x20, [0xF0, 0x0F, 0xFF, 0x00]);
        for (op, want) in [(1u8, [0xF0 & 0x3C, 0x0F & 0x3C, 0x3C, 0]), (2, [0xFC, 0x3F, 0xFF, 0x3C]), (3, [0xCC, 0x33, 0xC3, 0x3C])] {
            v.window_read(0x20);
            gcw(&mut v, gc::DATA_ROTATE as u8, op << 3);
            v.window_write(0x21, 0x3C);
            assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x21)), want, "op {op}");
        }
        // Bit mask: unmasked bits come from the latches.
        gcw(&mut v, gc::DATA_ROTATE as u8, 0);
        gcw(&mut v, gc::BIT_MASK as u8, 0x0F);
        v.window_read(0x20);
        v.window_write(0x22, 0x00);
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x22)), [0xF0, 0x00, 0xF0, 0x00]);
    }

    #[test]
    fn write_mode_1_copies_latches() {
        let mut v = planar();
        fill_planes(&mut v, 0x100, [1, 2, 3, 4]);
        gcw(&mut v, gc::MODE as u8, 1);
        gcw(&mut v, gc::BIT_MASK as u8, 0x00); // ignored in mode 1
        v.window_read(0x100);
        v.window_write(0x200, 0xEE);
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x200)), [1, 2, 3, 4]);
    }

    #[test]
    fn write_mode_2_colour_fill() {
        let mut v = planar();
        fill_planes(&mut v, 0x30, [0xFF, 0xFF, 0x00, 0x00]);
        gcw(&mut v, gc::MODE as u8, 2);
        gcw(&mut v, gc::BIT_MASK as u8, 0x81);
        v.window_read(0x30);
        v.window_write(0x30, 0x0C); // colour 12: planes 2 and 3
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x30)), [0x7E, 0x7E, 0x81, 0x81]);
    }

    #[test]
    fn write_mode_3_masks_with_rotated_data() {
        let mut v = planar();
        gcw(&mut v, gc::MODE as u8, 3);
        gcw(&mut v, gc::SET_RESET as u8, 0x05);
        gcw(&mut v, gc::BIT_MASK as u8, 0xF0);
        gcw(&mut v, gc::DATA_ROTATE as u8, 1);
        v.window_read(0x40); // latches all zero
        v.window_write(0x40, 0x81); // rotated: 0xC0; mask 0xF0 & 0xC0
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x40)), [0xC0, 0, 0xC0, 0]);
    }

    #[test]
    fn map_mask_limits_planes() {
        let mut v = planar();
        v.regs.write_port(0x3C4, 2);
        v.regs.write_port(0x3C5, 0x06);
        v.window_write(0x50, 0x77);
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x50)), [0, 0x77, 0x77, 0]);
    }

    #[test]
    fn read_modes() {
        let mut v = planar();
        fill_planes(&mut v, 0x60, [0b1100_0000, 0b1010_0000, 0b0000_0001, 0b0000_0011]);
        gcw(&mut v, gc::READ_MAP as u8, 1);
        assert_eq!(v.window_read(0x60), 0b1010_0000, "mode 0 reads the selected plane");
        assert_eq!(v.regs.latch, 0x0301_A0C0, "all four latched");
        gcw(&mut v, gc::MODE as u8, 8);
        gcw(&mut v, gc::COLOR_COMPARE as u8, 0x03);
        gcw(&mut v, gc::COLOR_DONT_CARE as u8, 0x0F);
        assert_eq!(v.window_read(0x60), 0b1000_0000, "only pixel 0 has colour 3");
        gcw(&mut v, gc::COLOR_DONT_CARE as u8, 0x01);
        assert_eq!(v.window_read(0x60), 0b1100_0000, "plane 0 alone decides");
        gcw(&mut v, gc::COLOR_DONT_CARE as u8, 0);
        assert_eq!(v.window_read(0x60), 0xFF, "nothing compared: every pixel matches");
    }

    #[test]
    fn chain4_spreads_bytes_over_planes() {
        let mut v = planar();
        v.regs.write_port(0x3C4, 4);
        v.regs.write_port(0x3C5, 0x0E);
        for a in 0..8u64 {
            v.window_write(0x100 + a, 0x10 + a as u8);
        }
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x100)), [0x10, 0x11, 0x12, 0x13]);
        assert_eq!([0, 1, 2, 3].map(|p| plane(&v, p, 0x104)), [0x14, 0x15, 0x16, 0x17]);
        assert_eq!(v.window_read(0x106), 0x16, "reads pick the plane the same way");
    }

    #[test]
    fn odd_even_text_addressing() {
        let mut v = planar();
        // Mode 3's memory settings: odd/even, B8000 window, host odd/even reads.
        v.regs.write_port(0x3C4, 4);
        v.regs.write_port(0x3C5, 0x02);
        v.regs.write_port(0x3C4, 2);
        v.regs.write_port(0x3C5, 0x03);
        gcw(&mut v, gc::MODE as u8, 0x10);
        gcw(&mut v, gc::MISC as u8, 0x0E);
        v.window_write(0x1_8000 + 4, b'F');
        v.window_write(0x1_8000 + 5, 0x1E);
        assert_eq!((plane(&v, 0, 4), plane(&v, 1, 4)), (b'F', 0x1E));
        assert_eq!(plane(&v, 2, 4), 0, "the font plane is masked off");
        assert_eq!((v.window_read(0x1_8004), v.window_read(0x1_8005)), (b'F', 0x1E));
        assert_eq!(v.window_read(0x0_0004), 0xFF, "A0000 is not decoded with map 3");
        v.window_write(0x0_0004, 0x55);
        assert_eq!(plane(&v, 0, 4), b'F');
    }

    #[test]
    fn memory_map_windows() {
        let mut v = planar();
        gcw(&mut v, gc::MISC as u8, 0x01); // 128 KiB at A0000
        v.window_write(0x1_0005, 0x42);
        assert_eq!(plane(&v, 0, 5), 0x42, "planes are 64 KiB: the upper half wraps");
        gcw(&mut v, gc::MISC as u8, 0x09); // B0000-B7FFF
        assert_eq!(v.window_read(0x1_0005), 0x42);
        assert_eq!(v.window_read(0x1_8005), 0xFF);
    }
}
