//! The VGA register file (IBM VGA Technical Reference; FreeVGA's register pages): miscellaneous
//! output, sequencer, CRT controller (with its write protect), graphics controller, attribute
//! controller behind the 0x3C0 index/data flip-flop, the DAC (0x3C6-0x3C9) and the input
//! status registers, whose retrace and display-enable bits follow virtual time through the
//! CRTC's timings. Ports are byte wide; the device splits wider accesses.

use serde::{Deserialize, Serialize};

pub const SEQ_COUNT: usize = 5;
pub const CRTC_COUNT: usize = 0x19;
pub const GC_COUNT: usize = 9;
pub const AC_COUNT: usize = 0x15;

/// Sequencer register numbers.
pub mod seq {
    pub const CLOCKING: usize = 1;
    pub const MAP_MASK: usize = 2;
    pub const CHAR_MAP: usize = 3;
    pub const MEMORY_MODE: usize = 4;
}

/// CRT controller register numbers.
pub mod crtc {
    pub const H_TOTAL: usize = 0x00;
    pub const H_DISP_END: usize = 0x01;
    pub const V_TOTAL: usize = 0x06;
    pub const OVERFLOW: usize = 0x07;
    pub const PRESET_ROW: usize = 0x08;
    pub const MAX_SCAN: usize = 0x09;
    pub const CURSOR_START: usize = 0x0A;
    pub const CURSOR_END: usize = 0x0B;
    pub const START_HI: usize = 0x0C;
    pub const START_LO: usize = 0x0D;
    pub const CURSOR_HI: usize = 0x0E;
    pub const CURSOR_LO: usize = 0x0F;
    pub const V_RETRACE_START: usize = 0x10;
    pub const V_RETRACE_END: usize = 0x11;
    pub const V_DISP_END: usize = 0x12;
    pub const OFFSET: usize = 0x13;
    pub const UNDERLINE: usize = 0x14;
    pub const MODE: usize = 0x17;
    pub const LINE_COMPARE: usize = 0x18;
}

/// Graphics controller register numbers.
pub mod gc {
    pub const SET_RESET: usize = 0;
    pub const ENABLE_SET_RESET: usize = 1;
    pub const COLOR_COMPARE: usize = 2;
    pub const DATA_ROTATE: usize = 3;
    pub const READ_MAP: usize = 4;
    pub const MODE: usize = 5;
    pub const MISC: usize = 6;
    pub const COLOR_DONT_CARE: usize = 7;
    pub const BIT_MASK: usize = 8;
}

/// Attribute controller register numbers (0-15 are the palette).
pub mod ac {
    pub const MODE: usize = 0x10;
    pub const PLANE_ENABLE: usize = 0x12;
    pub const COLOR_SELECT: usize = 0x14;
    /// Palette address source, in the index register: clear blanks the screen.
    pub const PAS: u8 = 0x20;
}

/// The RAMDAC: 256 colours of three components, six bits each (eight with VBE's DAC switch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dac {
    /// r, g, b per entry, as written.
    pub palette: Vec<u8>,
    pub pel_mask: u8,
    pub read_index: u8,
    pub write_index: u8,
    /// Which component (0-2) the next data access reads or writes.
    pub component: u8,
    /// Components written so far for `write_index`: the entry changes when all three are in.
    pub pending: [u8; 3],
    /// What 0x3C7 reads: 3 after a read index was set, 0 after a write index.
    pub state: u8,
    /// Eight bits per component (VBE_DISPI_8BIT_DAC) instead of six.
    pub eight_bit: bool,
}

impl Default for Dac {
    fn default() -> Self {
        Dac {
            palette: vec![0; 768],
            pel_mask: 0xFF,
            read_index: 0,
            write_index: 0,
            component: 0,
            pending: [0; 3],
            state: 0,
            eight_bit: false,
        }
    }
}

impl Dac {
    fn read_data(&mut self) -> u8 {
        let v = self.palette[usize::from(self.read_index) * 3 + usize::from(self.component)];
        self.advance(true);
        if self.eight_bit {
            v
        } else {
            v & 0x3F
        }
    }

    fn write_data(&mut self, v: u8) {
        self.pending[usize::from(self.component)] = v;
        if self.component == 2 {
            let at = usize::from(self.write_index) * 3;
            self.palette[at..at + 3].copy_from_slice(&self.pending);
        }
        self.advance(false);
    }

    fn advance(&mut self, read: bool) {
        self.component += 1;
        if self.component == 3 {
            self.component = 0;
            if read {
                self.read_index = self.read_index.wrapping_add(1);
            } else {
                self.write_index = self.write_index.wrapping_add(1);
            }
        }
    }

    /// Entry `index` after the PEL mask, as 8-bit RGBA.
    pub fn rgba(&self, index: u8) -> [u8; 4] {
        let at = usize::from(index & self.pel_mask) * 3;
        let c = |v: u8| if self.eight_bit { v } else { (v & 0x3F) << 2 | (v & 0x3F) >> 4 };
        [c(self.palette[at]), c(self.palette[at + 1]), c(self.palette[at + 2]), 0xFF]
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgaRegs {
    pub misc: u8,
    pub feature: u8,
    /// 0x3C3, the video subsystem enable register: plain storage.
    pub video_enable: u8,
    pub seq_index: u8,
    pub seq: [u8; SEQ_COUNT],
    pub crtc_index: u8,
    pub crtc: [u8; CRTC_COUNT],
    pub gc_index: u8,
    pub gc: [u8; GC_COUNT],
    /// Index register of the attribute controller, palette address source in bit 5.
    pub ac_index: u8,
    pub ac: [u8; AC_COUNT],
    /// The 0x3C0 flip-flop: the next write is data (else an index). Reading input status 1
    /// clears it.
    pub ac_data_next: bool,
    pub dac: Dac,
    /// The graphics controller's four latches, plane 0 in the low byte.
    pub latch: u32,
}

/// Where the CRTC is: 0x3Dx when the misc output's I/O select bit is set, else 0x3Bx.
fn crtc_base(misc: u8) -> u16 {
    if misc & 1 != 0 {
        0x3D0
    } else {
        0x3B0
    }
}

impl VgaRegs {
    /// Does `port` (0x3B0-0x3DF) decode with the current I/O address select?
    fn decodes(&self, port: u16) -> bool {
        match port & 0xFFF0 {
            0x3C0 => true,
            block => block == crtc_base(self.misc),
        }
    }

    /// A byte read from a port in 0x3B0-0x3DF at virtual time `now`.
    pub fn read_port(&mut self, port: u16, now: u64) -> u8 {
        if !self.decodes(port) {
            return 0xFF;
        }
        match port {
            0x3C0 => self.ac_index,
            0x3C1 => self.ac.get(usize::from(self.ac_index & 0x1F)).copied().unwrap_or(0),
            0x3C2 => 0, // input status 0: no switch sense, no pending vertical interrupt
            0x3C3 => self.video_enable,
            0x3C4 => self.seq_index,
            0x3C5 => self.seq.get(usize::from(self.seq_index)).copied().unwrap_or(0xFF),
            0x3C6 => self.dac.pel_mask,
            0x3C7 => self.dac.state,
            0x3C8 => self.dac.write_index,
            0x3C9 => self.dac.read_data(),
            0x3CA => self.feature,
            0x3CC => self.misc,
            0x3CE => self.gc_index,
            0x3CF => self.gc.get(usize::from(self.gc_index)).copied().unwrap_or(0xFF),
            _ => match port & 0xF {
                4 => self.crtc_index,
                5 => match self.crtc.get(usize::from(self.crtc_index)) {
                    Some(&v) => v,
                    None => {
                        tracing::debug!(index = self.crtc_index, "VGA: read of a CRTC register that does not exist");
                        0xFF
                    }
                },
                0xA => {
                    self.ac_data_next = false;
                    self.timing().input_status_1(now)
                }
                _ => 0xFF,
            },
        }
    }

    /// A byte written to a port in 0x3B0-0x3DF.
    pub fn write_port(&mut self, port: u16, v: u8) {
        if !self.decodes(port) {
            return;
        }
        match port {
            0x3C0 => {
                if self.ac_data_next {
                    let i = usize::from(self.ac_index & 0x1F);
                    match i {
                        0..=0x0F => self.ac[i] = v & 0x3F,
                        0x10..=0x14 => self.ac[i] = v,
                        _ => tracing::debug!(index = i, "VGA: write to an attribute register that does not exist"),
                    }
                } else {
                    self.ac_index = v & 0x3F;
                }
                self.ac_data_next = !self.ac_data_next;
            }
            0x3C2 => self.misc = v,
            0x3C3 => self.video_enable = v,
            0x3C4 => self.seq_index = v & 7,
            0x3C5 => match self.seq.get_mut(usize::from(self.seq_index)) {
                Some(r) => *r = v,
                None => tracing::debug!(index = self.seq_index, "VGA: write to a sequencer register that does not exist"),
            },
            0x3C6 => self.dac.pel_mask = v,
            0x3C7 => {
                self.dac.read_index = v;
                self.dac.component = 0;
                self.dac.state = 3;
            }
            0x3C8 => {
                self.dac.write_index = v;
                self.dac.component = 0;
                self.dac.state = 0;
            }
            0x3C9 => self.dac.write_data(v),
            0x3CE => self.gc_index = v & 0x0F,
            0x3CF => match self.gc.get_mut(usize::from(self.gc_index)) {
                Some(r) => *r = v,
                None => tracing::debug!(index = self.gc_index, "VGA: write to a graphics register that does not exist"),
            },
            _ => match port & 0xF {
                4 => self.crtc_index = v,
                5 => self.write_crtc(v),
                0xA => self.feature = v,
                _ => {}
            },
        }
    }

    fn write_crtc(&mut self, v: u8) {
        let i = usize::from(self.crtc_index);
        if i >= CRTC_COUNT {
            tracing::debug!(index = i, "VGA: write to a CRTC register that does not exist");
            return;
        }
        // CR11 bit 7 protects CR0-CR7, except the line compare bit 8 in CR7.
        if self.crtc[crtc::V_RETRACE_END] & 0x80 != 0 && i <= crtc::OVERFLOW {
            if i == crtc::OVERFLOW {
                self.crtc[i] = (self.crtc[i] & !0x10) | (v & 0x10);
            }
            return;
        }
        self.crtc[i] = v;
    }

    /// A 10-bit vertical CRTC value: `low` plus bit 8 and bit 9 from the overflow registers.
    pub fn vertical(&self, low: usize, bit8: (usize, u8), bit9: (usize, u8)) -> u32 {
        let b = |(reg, bit): (usize, u8)| u32::from(self.crtc[reg] >> bit & 1);
        u32::from(self.crtc[low]) | b(bit8) << 8 | b(bit9) << 9
    }

    /// Lines displayed per frame (vertical display end + 1).
    pub fn display_lines(&self) -> u32 {
        self.vertical(crtc::V_DISP_END, (crtc::OVERFLOW, 1), (crtc::OVERFLOW, 6)) + 1
    }

    /// The scan line after which the display restarts at address 0 (split screen).
    pub fn line_compare(&self) -> u32 {
        self.vertical(crtc::LINE_COMPARE, (crtc::OVERFLOW, 4), (crtc::MAX_SCAN, 6))
    }

    /// Dots per character clock: 8 or 9.
    pub fn char_width(&self) -> u32 {
        if self.seq[seq::CLOCKING] & 1 != 0 {
            8
        } else {
            9
        }
    }

    /// The display timings the CRTC is programmed for; nonsense values (a frame shorter than
    /// 1 ms or longer than 100 ms, as before any BIOS ran) give 640x480 at 60 Hz instead.
    pub fn timing(&self) -> Timing {
        let dot_hz: u64 = if self.misc >> 2 & 3 == 1 { 28_322_000 } else { 25_175_000 };
        let dot_div = if self.seq[seq::CLOCKING] & 8 != 0 { 2 } else { 1 };
        let ps_per_dot = 1_000_000_000_000 * dot_div / dot_hz;
        let cw = u64::from(self.char_width());
        let htotal = (u64::from(self.crtc[crtc::H_TOTAL]) + 5) * cw;
        let hdisp = (u64::from(self.crtc[crtc::H_DISP_END]) + 1) * cw;
        let vtotal = u64::from(self.vertical(crtc::V_TOTAL, (crtc::OVERFLOW, 0), (crtc::OVERFLOW, 5))) + 2;
        let t = Timing {
            line_ps: htotal * ps_per_dot,
            hdisp_ps: hdisp.min(htotal) * ps_per_dot,
            lines: vtotal,
            vdisp: u64::from(self.display_lines()).min(vtotal),
            vrs: u64::from(self.vertical(crtc::V_RETRACE_START, (crtc::OVERFLOW, 2), (crtc::OVERFLOW, 7))) % vtotal,
            vr_len: {
                let start = self.crtc[crtc::V_RETRACE_START];
                match (self.crtc[crtc::V_RETRACE_END].wrapping_sub(start)) & 0xF {
                    0 => 16,
                    n => u64::from(n),
                }
            },
        };
        let frame = t.frame_ps();
        if (1_000_000_000..=100_000_000_000).contains(&frame) {
            t
        } else {
            Timing::VGA_640X480
        }
    }
}

/// Display timing in picoseconds per line and lines per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub line_ps: u64,
    /// Displayed part of a line.
    pub hdisp_ps: u64,
    pub lines: u64,
    /// Displayed lines.
    pub vdisp: u64,
    /// First line of vertical retrace, and how many lines it lasts.
    pub vrs: u64,
    pub vr_len: u64,
}

/// Input status 1: display disabled (blanking), and vertical retrace.
pub const ST1_DISPLAY_OFF: u8 = 0x01;
pub const ST1_VRETRACE: u8 = 0x08;

impl Timing {
    /// 800 x 525 dots at 25.175 MHz, retrace on lines 490-491.
    pub const VGA_640X480: Timing =
        Timing { line_ps: 31_777_557, hdisp_ps: 25_422_045, lines: 525, vdisp: 480, vrs: 490, vr_len: 2 };

    pub fn frame_ps(&self) -> u64 {
        self.line_ps * self.lines
    }

    /// Frame number at virtual time `now` (ns).
    pub fn frame_at(&self, now: u64) -> u64 {
        (u128::from(now) * 1000 / u128::from(self.frame_ps())) as u64
    }

    /// (line, picoseconds into the line) at virtual time `now`.
    fn position(&self, now: u64) -> (u64, u64) {
        let t = (u128::from(now) * 1000 % u128::from(self.frame_ps())) as u64;
        (t / self.line_ps, t % self.line_ps)
    }

    fn in_retrace(&self, line: u64) -> bool {
        (line + self.lines - self.vrs) % self.lines < self.vr_len
    }

    pub fn input_status_1(&self, now: u64) -> u8 {
        let (line, x) = self.position(now);
        let mut v = 0;
        if line >= self.vdisp || x >= self.hdisp_ps {
            v |= ST1_DISPLAY_OFF;
        }
        if self.in_retrace(line) {
            v |= ST1_VRETRACE;
        }
        v
    }

    /// The first virtual time after `now` at which input status 1 may change (a guest polling
    /// it is stopped there, so the deterministic clock does not step over short retraces).
    pub fn next_change(&self, now: u64) -> u64 {
        let frame = u128::from(self.frame_ps());
        let t_abs = u128::from(now) * 1000;
        let frame_start = t_abs - t_abs % frame;
        let t = (t_abs - frame_start) as u64;
        let (line, x) = (t / self.line_ps, t % self.line_ps);
        let mut next = self.frame_ps(); // the frame wraps
        let mut consider = |at: u64| {
            if at > t && at < next {
                next = at;
            }
        };
        if line < self.vdisp && x < self.hdisp_ps {
            consider(line * self.line_ps + self.hdisp_ps);
        }
        if line + 1 < self.vdisp {
            consider((line + 1) * self.line_ps);
        }
        consider(self.vrs * self.line_ps);
        consider((self.vrs + self.vr_len) % self.lines * self.line_ps);
        let at_ps = frame_start + u128::from(next);
        (at_ps.div_ceil(1000)).min(u128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mode 3 as a BIOS programs it (80x25 text, 720x400 at 70 Hz).
    fn mode3() -> VgaRegs {
        let mut r = VgaRegs::default();
        crate::devices::vga::tables::program(&mut r, &crate::devices::vga::tables::MODE_03);
        r
    }

    #[test]
    fn index_data_pairs_read_back() {
        let mut r = mode3();
        r.write_port(0x3C4, 2);
        r.write_port(0x3C5, 0x0F);
        assert_eq!((r.read_port(0x3C4, 0), r.read_port(0x3C5, 0)), (2, 0x0F));
        r.write_port(0x3C4, 0x0D);
        assert_eq!(r.read_port(0x3C4, 0), 5, "3-bit sequencer index");
        assert_eq!(r.read_port(0x3C5, 0), 0xFF, "no sequencer register 5");
        r.write_port(0x3CE, 8);
        r.write_port(0x3CF, 0x81);
        assert_eq!(r.read_port(0x3CF, 0), 0x81);
        r.write_port(0x3CE, 9);
        r.write_port(0x3CF, 0x55); // ignored
        assert_eq!(r.read_port(0x3CF, 0), 0xFF);
        r.write_port(0x3D4, 0x0E);
        r.write_port(0x3D5, 0x07);
        assert_eq!(r.read_port(0x3D5, 0), 0x07);
        r.write_port(0x3D4, 0x40);
        assert_eq!((r.read_port(0x3D4, 0), r.read_port(0x3D5, 0)), (0x40, 0xFF));
        assert_eq!(r.read_port(0x3CC, 0), 0x67, "misc output reads back at 0x3CC");
    }

    #[test]
    fn crtc_follows_the_io_select_bit() {
        let mut r = mode3();
        assert_eq!(r.read_port(0x3B4, 0), 0xFF, "mono CRTC does not decode in colour mode");
        r.write_port(0x3B5, 0x12);
        r.write_port(0x3C2, 0x66);
        r.write_port(0x3B4, 0x0F);
        r.write_port(0x3B5, 0x34);
        assert_eq!(r.read_port(0x3B5, 0), 0x34);
        assert_eq!(r.read_port(0x3D5, 0), 0xFF);
    }

    #[test]
    fn crtc_write_protect_spares_line_compare_bit() {
        let mut r = mode3();
        r.write_port(0x3D4, 0x11);
        r.write_port(0x3D5, 0x8E);
        r.write_port(0x3D4, 0x01);
        r.write_port(0x3D5, 0x27);
        assert_eq!(r.crtc[1], 0x4F, "CR1 protected");
        r.write_port(0x3D4, 0x07);
        r.write_port(0x3D5, 0x00);
        assert_eq!(r.crtc[7], 0x0F, "only bit 4 of CR7 changes");
        r.write_port(0x3D4, 0x11);
        r.write_port(0x3D5, 0x0E);
        r.write_port(0x3D4, 0x01);
        r.write_port(0x3D5, 0x27);
        assert_eq!(r.crtc[1], 0x27);
    }

    #[test]
    fn attribute_flip_flop() {
        let mut r = mode3();
        r.read_port(0x3DA, 0);
        r.write_port(0x3C0, 0x01);
        r.write_port(0x3C0, 0x3F);
        assert_eq!(r.ac[1], 0x3F);
        r.write_port(0x3C0, 0x02); // an index again
        r.write_port(0x3C0, 0xFF);
        assert_eq!(r.ac[2], 0x3F, "palette registers are six bits");
        // A status read in the middle resets the flip-flop: the next write is an index.
        r.write_port(0x3C0, 0x10);
        r.read_port(0x3DA, 0);
        r.write_port(0x3C0, 0x20 | 0x14);
        r.write_port(0x3C0, 0x0C);
        assert_eq!(r.ac[0x14], 0x0C);
        assert_eq!(r.ac[0x10], 0x0C, "0x14 was taken as an index, not data for 0x10");
        assert_eq!(r.read_port(0x3C0, 0), 0x34, "index with the palette address source bit");
        assert_eq!(r.read_port(0x3C1, 0), 0x0C);
        r.write_port(0x3C0, 0x15);
        r.write_port(0x3C0, 0x99); // no such register
        assert_eq!(r.read_port(0x3C1, 0), 0);
    }

    #[test]
    fn dac_indices_auto_increment() {
        let mut r = mode3();
        r.write_port(0x3C8, 0xFE);
        assert_eq!(r.read_port(0x3C7, 0), 0, "write mode state");
        for v in [1, 2, 3, 4, 5, 6, 7, 8, 9] {
            r.write_port(0x3C9, v);
        }
        assert_eq!(r.read_port(0x3C8, 0), 0x01, "three entries later, wrapped past 0xFF");
        assert_eq!(&r.dac.palette[0xFE * 3..], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&r.dac.palette[..3], &[7, 8, 9]);
        r.write_port(0x3C9, 0x3F);
        assert_eq!(r.dac.palette[3], 0, "an entry changes only when all three components are in");
        r.write_port(0x3C7, 0xFF);
        assert_eq!(r.read_port(0x3C7, 0), 3, "read mode state");
        let got: Vec<u8> = (0..6).map(|_| r.read_port(0x3C9, 0)).collect();
        assert_eq!(got, [4, 5, 6, 7, 8, 9]);
        r.write_port(0x3C8, 0x10);
        r.write_port(0x3C9, 0xFF);
        r.write_port(0x3C9, 0x80);
        r.write_port(0x3C9, 0x41);
        r.write_port(0x3C7, 0x10);
        assert_eq!([r.read_port(0x3C9, 0), r.read_port(0x3C9, 0), r.read_port(0x3C9, 0)], [0x3F, 0, 1]);
        assert_eq!(r.dac.rgba(0x10), [0xFF, 0, 4, 0xFF], "6-bit components widened");
        r.write_port(0x3C6, 0x0F);
        assert_eq!(r.dac.rgba(0x10), r.dac.rgba(0x00), "PEL mask applies");
    }

    #[test]
    fn vertical_retrace_follows_virtual_time() {
        let r = mode3();
        let t = r.timing();
        // 900 dots at 28.322 MHz, 449 lines: 70 Hz.
        assert_eq!(t.lines, 449);
        assert_eq!(t.vdisp, 400);
        assert_eq!((t.vrs, t.vr_len), (412, 2));
        let frame_ns = t.frame_ps() / 1000;
        assert!((14_200_000..14_300_000).contains(&frame_ns), "{frame_ns}");
        let mut r = r;
        assert_eq!(r.read_port(0x3DA, 0) & ST1_VRETRACE, 0, "line 0 is displayed");
        let retrace = t.vrs * t.line_ps / 1000 + 1;
        assert_eq!(r.read_port(0x3DA, retrace) & 9, 9, "in vertical retrace, display off");
        assert_eq!(r.read_port(0x3DA, retrace + 100_000) & 8, 0, "two lines later it is over");
        assert_eq!(r.read_port(0x3DA, 29_000) & 1, 1, "horizontal blanking sets bit 0");
        assert_eq!(r.read_port(0x3DA, frame_ns + 1) & 9, 0, "next frame");
        // Polling stops at each change, never skipping the retrace.
        let (mut now, mut prev, mut rises) = (0, 0, 0);
        while now < 2 * frame_ns {
            let v = r.read_port(0x3DA, now) & ST1_VRETRACE;
            if v != 0 && prev == 0 {
                rises += 1;
            }
            prev = v;
            let next = t.next_change(now);
            assert!(next > now);
            now = next;
        }
        assert_eq!(rises, 2, "two retraces in two frames");
    }

    #[test]
    fn nonsense_timing_falls_back_to_60_hz() {
        let r = VgaRegs::default();
        assert_eq!(r.timing(), Timing::VGA_640X480);
        let mut r = mode3();
        r.write_port(0x3D4, 0x11);
        r.write_port(0x3D5, 0x00);
        r.write_port(0x3D4, 0x06);
        r.write_port(0x3D5, 0x00);
        r.write_port(0x3D4, 0x07);
        r.write_port(0x3D5, 0x00);
        let t = r.timing();
        assert_eq!(t, Timing::VGA_640X480, "a 2-line frame is no video mode");
        assert!(t.next_change(u64::MAX / 2) > u64::MAX / 2);
    }
}
