//! Register values a VGA BIOS programs for the standard modes (IBM VGA Technical Reference,
//! "Video Modes" parameter tables), so tests and direct kernel boot can set a mode without running a
//! VGA BIOS.

use super::regs::{VgaRegs, AC_COUNT, CRTC_COUNT, GC_COUNT, SEQ_COUNT};

pub struct ModeTable {
    pub misc: u8,
    pub seq: [u8; SEQ_COUNT],
    pub crtc: [u8; CRTC_COUNT],
    pub ac: [u8; AC_COUNT],
    pub gc: [u8; GC_COUNT],
}

const EGA_PALETTE: [u8; 16] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F];

const fn ac(palette: [u8; 16], mode: u8, plane_enable: u8) -> [u8; AC_COUNT] {
    let mut a = [0; AC_COUNT];
    let mut i = 0;
    while i < 16 {
        a[i] = palette[i];
        i += 1;
    }
    a[0x10] = mode;
    a[0x12] = plane_enable;
    a
}

/// 80x25 text, 9x16 characters, 720x400.
pub const MODE_03: ModeTable = ModeTable {
    misc: 0x67,
    seq: [0x03, 0x00, 0x03, 0x00, 0x02],
    crtc: [
        0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00, 0x00, 0x9C, 0x8E,
        0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
    ],
    ac: ac(EGA_PALETTE, 0x0C, 0x0F),
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF],
};

/// 320x200, 4 colours, CGA layout at B8000.
pub const MODE_04: ModeTable = ModeTable {
    misc: 0x63,
    seq: [0x03, 0x09, 0x03, 0x00, 0x02],
    crtc: [
        0x2D, 0x27, 0x28, 0x90, 0x2B, 0x80, 0xBF, 0x1F, 0x00, 0xC1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9C, 0x8E,
        0x8F, 0x14, 0x00, 0x96, 0xB9, 0xA2, 0xFF,
    ],
    ac: ac([0x00, 0x13, 0x15, 0x17, 0x02, 0x04, 0x06, 0x07, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17], 0x01, 0x03),
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x0F, 0x0F, 0xFF],
};

/// 640x480, 16 colours, planar.
pub const MODE_12: ModeTable = ModeTable {
    misc: 0xE3,
    seq: [0x03, 0x01, 0x0F, 0x00, 0x06],
    crtc: [
        0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0x0B, 0x3E, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xEA, 0x8C,
        0xDF, 0x28, 0x00, 0xE7, 0x04, 0xE3, 0xFF,
    ],
    ac: ac(EGA_PALETTE, 0x01, 0x0F),
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0F, 0xFF],
};

/// 320x200, 256 colours, chain-4.
pub const MODE_13: ModeTable = ModeTable {
    misc: 0x63,
    seq: [0x03, 0x01, 0x0F, 0x00, 0x0E],
    crtc: [
        0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9C, 0x8E,
        0x8F, 0x28, 0x40, 0x96, 0xB9, 0xA3, 0xFF,
    ],
    ac: ac([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 0x41, 0x0F),
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0F, 0xFF],
};

/// The 64 EGA colours (rgbRGB bits) as 6-bit DAC components.
pub fn ega_colour(i: u8) -> [u8; 3] {
    let c = |hi: u8, lo: u8| (i >> hi & 1) * 0x2A + (i >> lo & 1) * 0x15;
    [c(2, 5), c(1, 4), c(0, 3)]
}

/// Programs a mode through the ports, as a BIOS does, and loads the EGA colours into DAC
/// entries 0-63. Leaves the display enabled (palette address source set).
/// Port access for [`program`]: the register file itself in tests, the board's ports when
/// firmware code sets a mode (`firmware::post`).
pub trait VgaPorts {
    fn write_port(&mut self, port: u16, v: u8);
    /// A read for its side effect (0x3DA resets the attribute controller's flip-flop).
    fn touch_port(&mut self, port: u16);
}

impl VgaPorts for VgaRegs {
    fn write_port(&mut self, port: u16, v: u8) {
        VgaRegs::write_port(self, port, v);
    }
    fn touch_port(&mut self, port: u16) {
        self.read_port(port, 0);
    }
}

/// Sets a mode as a VGA BIOS does: every register of the table, then the DAC with the 64 EGA
/// colours.
pub fn program(r: &mut impl VgaPorts, t: &ModeTable) {
    r.write_port(0x3C2, t.misc);
    for (i, &v) in t.seq.iter().enumerate() {
        r.write_port(0x3C4, i as u8);
        r.write_port(0x3C5, v);
    }
    let crtc = if t.misc & 1 != 0 { 0x3D4 } else { 0x3B4 };
    r.write_port(crtc, 0x11);
    r.write_port(crtc + 1, 0);
    for (i, &v) in t.crtc.iter().enumerate() {
        r.write_port(crtc, i as u8);
        r.write_port(crtc + 1, v);
    }
    for (i, &v) in t.gc.iter().enumerate() {
        r.write_port(0x3CE, i as u8);
        r.write_port(0x3CF, v);
    }
    r.touch_port(crtc + 6);
    for (i, &v) in t.ac.iter().enumerate() {
        r.write_port(0x3C0, i as u8);
        r.write_port(0x3C0, v);
    }
    r.write_port(0x3C0, 0x20);
    r.write_port(0x3C8, 0);
    for i in 0..64 {
        for c in ega_colour(i) {
            r.write_port(0x3C9, c);
        }
    }
}
