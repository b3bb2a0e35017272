//! The VGA's picture: what the CRTC scans out of video memory, through the attribute
//! controller and the DAC, as a frame of RGBA or BGRA pixels (FreeVGA "CRTC Operation" and "Attribute
//! Controller"). Text modes draw glyphs from plane 2 (8 or 9 dots wide, any height, with the
//! line-graphics 9th column, cursor, blink and mono underline); graphics modes draw planar
//! 16-colour, CGA 4-colour (shift register interleave), 256-colour chained or unchained, and
//! VBE linear modes. Frames are the logical resolution: mode 13h is 320x200, 80x25 text 720x400.
//!
//! Not modelled: horizontal pel panning, CRTC skew and count-by-2/4, the overscan border.

use super::memory::PLANE_SIZE;
use super::regs::{ac, crtc, gc, seq, Timing, VgaRegs};
use super::vbe::{Dispi, VbeMode};
use crate::display::{Frame, PixelFormat};

/// Size of the black frame shown while nothing is displayed.
const OFF_SIZE: (u32, u32) = (640, 480);

/// The granule in which the VGA notes writes to video memory.
pub const DIRTY_PAGE: usize = 4096;

/// What was written since a picture: the generation of each page's last write
/// (`DIRTY_PAGE` bytes each) and the picture's generation.
#[derive(Clone, Copy)]
pub struct Dirty<'a> {
    pub pages: &'a [u64],
    pub since: u64,
}

impl Dirty<'_> {
    /// Whether video memory from `at` for `len` bytes was written since the picture.
    fn written(&self, at: usize, len: usize) -> bool {
        let first = at / DIRTY_PAGE;
        let last = (at + len.max(1) - 1) / DIRTY_PAGE;
        self.pages.get(first..=last).is_none_or(|p| p.iter().any(|&g| g > self.since))
    }
}

/// Cursor and blinking-text phases at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blink {
    pub cursor_on: bool,
    pub text_on: bool,
}

impl Blink {
    /// The cursor blinks every 16 frames, blinking text every 32 (FreeVGA, "Cursor Start").
    pub fn at(timing: &Timing, now: u64) -> Blink {
        let f = timing.frame_at(now);
        Blink { cursor_on: f / 8 % 2 == 0, text_on: f / 16 % 2 == 0 }
    }
}

/// What the screen shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Blanked (screen off, palette address source clear) or no usable timing.
    Off,
    Text { cols: u32, rows: u32, char_width: u32, char_height: u32 },
    Graphics { width: u32, height: u32, colours: u32 },
    Vbe(VbeMode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddressMode {
    Byte,
    Word,
    DoubleWord,
}

/// How the CRTC walks video memory.
struct Scan {
    /// Character clocks displayed per line.
    hde: u32,
    /// Scan lines displayed.
    vde: u32,
    max_scan: u32,
    double_scan: bool,
    start: u32,
    /// Address counter increment from one character row to the next.
    offset: u32,
    line_compare: u32,
    preset_row: u32,
    mode: AddressMode,
    wrap_bit15: bool,
    /// Row scan bit 0 replaces address bit 13 (CGA), bit 1 replaces bit 14 (Hercules).
    cga_banks: bool,
    hercules_banks: bool,
}

impl Scan {
    fn new(r: &VgaRegs) -> Scan {
        let c = &r.crtc;
        Scan {
            hde: u32::from(c[crtc::H_DISP_END]) + 1,
            vde: r.display_lines(),
            max_scan: u32::from(c[crtc::MAX_SCAN] & 0x1F),
            double_scan: c[crtc::MAX_SCAN] & 0x80 != 0,
            start: u32::from(c[crtc::START_HI]) << 8 | u32::from(c[crtc::START_LO]),
            offset: u32::from(c[crtc::OFFSET]) * 2,
            line_compare: r.line_compare(),
            preset_row: u32::from(c[crtc::PRESET_ROW] & 0x1F),
            mode: if c[crtc::UNDERLINE] & 0x40 != 0 {
                AddressMode::DoubleWord
            } else if c[crtc::MODE] & 0x40 == 0 {
                AddressMode::Word
            } else {
                AddressMode::Byte
            },
            wrap_bit15: c[crtc::MODE] & 0x20 != 0,
            cga_banks: c[crtc::MODE] & 1 == 0,
            hercules_banks: c[crtc::MODE] & 2 == 0,
        }
    }

    /// The plane offset the CRTC reads for address counter `counter` on row scan `rowscan`.
    fn address(&self, counter: u32, rowscan: u32) -> usize {
        let c = counter & 0xFFFF;
        let mut a = match self.mode {
            AddressMode::DoubleWord => c << 2 | (c >> 14 & 3),
            AddressMode::Word => c << 1 | (c >> if self.wrap_bit15 { 15 } else { 13 } & 1),
            AddressMode::Byte => c,
        };
        if self.cga_banks {
            a = (a & !0x2000) | (rowscan & 1) << 13;
        }
        if self.hercules_banks {
            a = (a & !0x4000) | (rowscan & 2) << 13;
        }
        (a as usize) % PLANE_SIZE
    }

    /// Calls `f(line, row start address, row scan)` for each displayed scan line.
    fn lines(&self, mut f: impl FnMut(u32, u32, u32)) {
        let (mut row_start, mut rowscan, mut second_half) = (self.start, self.preset_row, false);
        for y in 0..self.vde {
            f(y, row_start, rowscan);
            if y == self.line_compare {
                // Split screen: the lines after the compare line show memory from address 0.
                (row_start, rowscan, second_half) = (0, 0, false);
                continue;
            }
            if self.double_scan {
                second_half = !second_half;
                if second_half {
                    continue;
                }
            }
            if rowscan >= self.max_scan {
                rowscan = 0;
                row_start = row_start.wrapping_add(self.offset);
            } else {
                rowscan += 1;
            }
        }
    }

    /// Scan lines per output line in graphics modes: double scan, and character-row
    /// repetition unless the row scan counter picks a memory bank.
    fn graphics_divisor(&self) -> u32 {
        let repeat = if self.cga_banks || self.hercules_banks { 1 } else { self.max_scan + 1 };
        repeat * if self.double_scan { 2 } else { 1 }
    }
}

fn is_text(r: &VgaRegs) -> bool {
    r.gc[gc::MISC] & 1 == 0
}

/// What the registers say is on screen.
pub fn screen(r: &VgaRegs, d: &Dispi) -> Screen {
    if let Some(m) = d.mode() {
        return Screen::Vbe(m);
    }
    if r.seq[seq::CLOCKING] & 0x20 != 0 || r.ac_index & ac::PAS == 0 {
        return Screen::Off;
    }
    let s = Scan::new(r);
    let (width, height, shown) = if is_text(r) {
        let char_width = r.char_width();
        let lines = s.vde / if s.double_scan { 2 } else { 1 };
        let shown = Screen::Text { cols: s.hde, rows: lines / (s.max_scan + 1), char_width, char_height: s.max_scan + 1 };
        (s.hde * char_width, lines, shown)
    } else {
        let width = s.hde * 8 / if r.gc[gc::MODE] & 0x40 != 0 { 2 } else { 1 };
        let height = s.vde / s.graphics_divisor();
        let colours = if r.gc[gc::MODE] & 0x40 != 0 {
            256
        } else if r.gc[gc::MODE] & 0x20 != 0 {
            4
        } else {
            1 << (r.ac[ac::PLANE_ENABLE] & 0x0F).count_ones().max(1)
        };
        (width, height, Screen::Graphics { width, height, colours })
    };
    if width < 64 || height < 32 {
        return Screen::Off;
    }
    shown
}

/// The blink phases that matter for the picture at `now`: only text modes blink, the cursor
/// only while it is on (CRTC cursor start bit 5 clear, start line not past the end line) and
/// characters only while the attribute controller's blink bit is set. A phase that shows
/// nothing stays fixed, so it does not make the picture be drawn again.
pub fn blink_at(r: &VgaRegs, d: &Dispi, now: u64) -> Blink {
    match screen(r, d) {
        Screen::Text { .. } => {
            let phases = Blink::at(&r.timing(), now);
            let start = r.crtc[crtc::CURSOR_START];
            let cursor = start & 0x20 == 0 && start & 0x1F <= r.crtc[crtc::CURSOR_END] & 0x1F;
            let blinking = r.ac[ac::MODE] & 8 != 0;
            Blink { cursor_on: cursor && phases.cursor_on, text_on: !blinking || phases.text_on }
        }
        _ => Blink::default(),
    }
}

/// A 4-bit colour through the attribute controller: the DAC index it selects.
fn attribute_colour(r: &VgaRegs, v: u8) -> u8 {
    let v = v & r.ac[ac::PLANE_ENABLE] & 0x0F;
    let p = r.ac[usize::from(v)];
    let cs = r.ac[ac::COLOR_SELECT];
    let low = if r.ac[ac::MODE] & 0x80 != 0 { (p & 0x0F) | (cs & 3) << 4 } else { p & 0x3F };
    low | (cs & 0x0C) << 4
}

fn plane(vram: &[u8], p: usize, offset: usize) -> u8 {
    vram[(offset % PLANE_SIZE) * 4 + p]
}

/// Draws the current picture into `frame`: whole, or with `dirty` (when `frame` holds the
/// picture of `dirty.since` and nothing but video memory changed since) only the lines of a
/// linear mode whose memory was written. Sets `frame.changed_rows`.
pub fn render(r: &VgaRegs, d: &Dispi, vram: &[u8], blink: Blink, dirty: Option<Dirty>, frame: &mut Frame) {
    let screen = screen(r, d);
    if let Screen::Vbe(m) = screen {
        render_vbe(r, vram, m, dirty, frame);
        return;
    }
    match screen {
        Screen::Off => {
            frame.resize(OFF_SIZE.0, OFF_SIZE.1);
            for px in frame.pixels.chunks_exact_mut(4) {
                px.copy_from_slice(&[0, 0, 0, 0xFF]);
            }
        }
        Screen::Text { .. } => render_text(r, vram, blink, frame),
        Screen::Graphics { width, height, .. } => render_graphics(r, vram, width, height, frame),
        Screen::Vbe(_) => unreachable!("drawn above"),
    }
    frame.changed_rows = 0..frame.height;
}

/// Plane-2 offsets of the eight character maps (SR3 numbering).
const FONT_OFFSETS: [usize; 8] = [0x0000, 0x4000, 0x8000, 0xC000, 0x2000, 0x6000, 0xA000, 0xE000];

fn render_text(r: &VgaRegs, vram: &[u8], blink: Blink, frame: &mut Frame) {
    let s = Scan::new(r);
    let cw = r.char_width();
    let div = if s.double_scan { 2 } else { 1 };
    let (width, height) = (s.hde * cw, s.vde / div);
    frame.resize(width, height);
    let format = frame.format;
    let colours: [[u8; 4]; 16] = std::array::from_fn(|v| format.from_rgba(r.dac.rgba(attribute_colour(r, v as u8))));
    let sr3 = r.seq[seq::CHAR_MAP];
    let font_a = FONT_OFFSETS[usize::from((sr3 >> 5 & 1) << 2 | (sr3 >> 2 & 3))];
    let font_b = FONT_OFFSETS[usize::from((sr3 >> 4 & 1) << 2 | (sr3 & 3))];
    let mode = r.ac[ac::MODE];
    let (line_graphics, blink_enabled, mono) = (mode & 4 != 0, mode & 8 != 0, mode & 2 != 0);
    let underline_row = u32::from(r.crtc[crtc::UNDERLINE] & 0x1F);
    let cursor_start = r.crtc[crtc::CURSOR_START];
    let cursor_rows = u32::from(cursor_start & 0x1F)..=u32::from(r.crtc[crtc::CURSOR_END] & 0x1F);
    let cursor_shown = cursor_start & 0x20 == 0 && blink.cursor_on;
    let cursor_at = u32::from(r.crtc[crtc::CURSOR_HI]) << 8 | u32::from(r.crtc[crtc::CURSOR_LO]);
    let row_bytes = width as usize * 4;
    s.lines(|y, row_start, rowscan| {
        if y % div != 0 || y / div >= height {
            return;
        }
        let out = &mut frame.pixels[(y / div) as usize * row_bytes..][..row_bytes];
        for col in 0..s.hde {
            let counter = row_start.wrapping_add(col);
            let a = s.address(counter, rowscan);
            let (ch, attr) = (plane(vram, 0, a), plane(vram, 1, a));
            let font = if attr & 8 != 0 { font_a } else { font_b };
            let glyph = plane(vram, 2, font + usize::from(ch) * 32 + (rowscan & 31) as usize);
            let mut fg = attr & 0x0F;
            let mut bg = attr >> 4;
            if blink_enabled {
                bg &= 7;
                if attr & 0x80 != 0 && !blink.text_on {
                    fg = bg;
                }
            }
            // The dots of this character's scan line, most significant first, 9 bits.
            let ninth = line_graphics && (0xC0..=0xDF).contains(&ch) && glyph & 1 != 0;
            let mut dots = u16::from(glyph) << 1 | u16::from(ninth);
            if mono && rowscan == underline_row && attr & 0x77 == 0x01 {
                dots = 0x1FF;
            }
            if cursor_shown && counter & 0xFFFF == cursor_at && cursor_rows.contains(&rowscan) {
                dots = 0x1FF;
            }
            for x in 0..cw {
                let on = dots >> (8 - x) & 1 != 0;
                let c = colours[usize::from(if on { fg } else { bg })];
                let at = (col * cw + x) as usize * 4;
                out[at..at + 4].copy_from_slice(&c);
            }
        }
    });
}

fn render_graphics(r: &VgaRegs, vram: &[u8], width: u32, height: u32, frame: &mut Frame) {
    let s = Scan::new(r);
    frame.resize(width, height);
    let div = s.graphics_divisor();
    let mode = r.gc[gc::MODE];
    let format = frame.format;
    let dac: [[u8; 4]; 256] = std::array::from_fn(|v| format.from_rgba(r.dac.rgba(v as u8)));
    let colours: [[u8; 4]; 16] = std::array::from_fn(|v| dac[usize::from(attribute_colour(r, v as u8))]);
    let row_bytes = width as usize * 4;
    s.lines(|y, row_start, rowscan| {
        if y % div != 0 || y / div >= height {
            return;
        }
        let out = &mut frame.pixels[(y / div) as usize * row_bytes..][..row_bytes];
        let mut x = 0;
        let mut put = |c: &[u8; 4]| {
            if x < row_bytes {
                out[x..x + 4].copy_from_slice(c);
                x += 4;
            }
        };
        for k in 0..s.hde {
            let a = s.address(row_start.wrapping_add(k), rowscan);
            let b = [0, 1, 2, 3].map(|p| plane(vram, p, a));
            if mode & 0x40 != 0 {
                // 256 colours: the four planes hold four consecutive pixels.
                for v in b {
                    put(&dac[usize::from(v)]);
                }
            } else if mode & 0x20 != 0 {
                // CGA 4-colour: two bits per pixel, planes 0 then 1 (2 and 3 add bits 2-3).
                for j in 0..8 {
                    let (lo, hi) = if j < 4 { (b[0], b[2]) } else { (b[1], b[3]) };
                    let shift = 6 - 2 * (j % 4);
                    let v = (lo >> shift & 3) | (hi >> shift & 3) << 2;
                    put(&colours[usize::from(v)]);
                }
            } else {
                for j in 0..8 {
                    let v = (0..4).fold(0, |v, p| v | (b[p] >> (7 - j) & 1) << p);
                    put(&colours[usize::from(v)]);
                }
            }
        }
    });
}

/// The rows of a linear mode whose memory was written since `dirty.since` (all of them
/// without `dirty`), for a picture shown straight from video memory.
pub fn written_rows(m: VbeMode, dirty: Option<Dirty>) -> std::ops::Range<u32> {
    let row_bytes = m.width as usize * (m.bpp as usize).div_ceil(8);
    let (mut first, mut end) = (u32::MAX, 0);
    for y in 0..m.height {
        if dirty.is_none_or(|d| d.written(m.start + y as usize * m.line_bytes, row_bytes)) {
            (first, end) = (first.min(y), y + 1);
        }
    }
    if first < end {
        first..end
    } else {
        0..0
    }
}

fn render_vbe(r: &VgaRegs, vram: &[u8], m: VbeMode, dirty: Option<Dirty>, frame: &mut Frame) {
    frame.resize(m.width, m.height);
    // What `frame` holds is worth keeping only if it was drawn in this very mode.
    let dirty = dirty.filter(|_| frame.drawn != 0);
    let bytes = (m.bpp as usize).div_ceil(8);
    let row_bytes = m.width as usize * bytes;
    let format = frame.format;
    // The DAC as little-endian words in the frame's format (only 8 bpp looks colours up).
    let mut dac = [0u32; 256];
    if m.bpp == 8 {
        for (i, c) in dac.iter_mut().enumerate() {
            *c = u32::from_le_bytes(format.from_rgba(r.dac.rgba(i as u8)));
        }
    }
    let (mut first, mut end) = (u32::MAX, 0);
    for (y, row) in frame.pixels.chunks_exact_mut(m.width as usize * 4).enumerate() {
        let line = m.start + y * m.line_bytes;
        if dirty.is_some_and(|d| !d.written(line, row_bytes)) {
            continue;
        }
        (first, end) = (first.min(y as u32), y as u32 + 1);
        // The pixels video memory holds of this line (all of them but at its very end);
        // the rest black.
        let whole = (vram.len().saturating_sub(line) / bytes).min(m.width as usize);
        let (inside, outside) = row.split_at_mut(whole * 4);
        if whole > 0 {
            let src = &vram[line..line + whole * bytes];
            match (m.bpp, format) {
                (8, _) => indexed(src, &dac, inside),
                (15, PixelFormat::Rgba) => rgb555::<false>(src, inside),
                (15, PixelFormat::Bgra) => rgb555::<true>(src, inside),
                (16, PixelFormat::Rgba) => rgb565::<false>(src, inside),
                (16, PixelFormat::Bgra) => rgb565::<true>(src, inside),
                (24, PixelFormat::Rgba) => bgr::<false>(src, inside),
                (24, PixelFormat::Bgra) => bgr::<true>(src, inside),
                (_, PixelFormat::Rgba) => bgrx::<false>(src, inside),
                (_, PixelFormat::Bgra) => bgrx::<true>(src, inside),
            }
        }
        for px in outside.chunks_exact_mut(4) {
            px.copy_from_slice(&[0, 0, 0, 0xFF]);
        }
    }
    frame.changed_rows = if first < end { first..end } else { 0..0 };
}

// The conversions of a line of a linear mode's memory to the frame's format: RGBA, or with
// `BGRA` BGRA. Each is one straight loop over fixed-size pieces (`chunks_exact` with
// `try_into`, which the compiler turns into vector code: a 1920x1080 32-bit picture converts
// as fast as it copies), writing whole words.

/// 8-bit channels as a pixel word of the format, alpha 0xFF.
#[inline(always)]
fn word<const BGRA: bool>(r: u32, g: u32, b: u32) -> u32 {
    if BGRA {
        b | g << 8 | r << 16 | 0xFF00_0000
    } else {
        r | g << 8 | b << 16 | 0xFF00_0000
    }
}

/// 32-bit BGRX pixels (for BGRA only the unused byte becomes alpha).
fn bgrx<const BGRA: bool>(src: &[u8], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
        let v = u32::from_le_bytes(s.try_into().expect("4 bytes"));
        let px = if BGRA { v | 0xFF00_0000 } else { word::<false>(v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF) };
        o.copy_from_slice(&px.to_le_bytes());
    }
}

/// 24-bit BGR pixels.
fn bgr<const BGRA: bool>(src: &[u8], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
        o.copy_from_slice(&if BGRA { [s[0], s[1], s[2], 0xFF] } else { [s[2], s[1], s[0], 0xFF] });
    }
}

/// 8-bit pixels through the DAC (`dac`: words in the frame's format).
fn indexed(src: &[u8], dac: &[u32; 256], out: &mut [u8]) {
    for (o, &s) in out.chunks_exact_mut(4).zip(src) {
        o.copy_from_slice(&dac[usize::from(s)].to_le_bytes());
    }
}

/// A 5- or 6-bit channel widened to 8 bits (the top bits repeated below).
fn widen(v: u32, bits: u32) -> u32 {
    let v = v & ((1 << bits) - 1);
    v << (8 - bits) | v >> (2 * bits - 8)
}

/// 16-bit 5:6:5 pixels.
fn rgb565<const BGRA: bool>(src: &[u8], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
        let v = u32::from(u16::from_le_bytes(s.try_into().expect("2 bytes")));
        o.copy_from_slice(&word::<BGRA>(widen(v >> 11, 5), widen(v >> 5, 6), widen(v, 5)).to_le_bytes());
    }
}

/// 15-bit 5:5:5 pixels.
fn rgb555<const BGRA: bool>(src: &[u8], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
        let v = u32::from(u16::from_le_bytes(s.try_into().expect("2 bytes")));
        o.copy_from_slice(&word::<BGRA>(widen(v >> 10, 5), widen(v >> 5, 5), widen(v, 5)).to_le_bytes());
    }
}

/// Code page 437 as Unicode, for the text of the screen. NUL and 0xFF read as spaces.
const CP437: &str = concat!(
    " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼",
    " !\"#$%&'()*+,-./0123456789:;<=>?",
    "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_",
    "`abcdefghijklmnopqrstuvwxyz{|}~⌂",
    "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒ",
    "áíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐",
    "└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀",
    "αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■ ",
);

/// The screen as text: rows of characters in text modes, else a line naming the mode.
pub fn screen_text(r: &VgaRegs, d: &Dispi, vram: &[u8]) -> String {
    match screen(r, d) {
        Screen::Off => "display off\n".into(),
        Screen::Vbe(m) => format!("VBE mode {}x{}, {} bpp\n", m.width, m.height, m.bpp),
        Screen::Graphics { width, height, colours } => format!("graphics mode {width}x{height}, {colours} colours\n"),
        Screen::Text { cols, rows, .. } => {
            let cp437: Vec<char> = CP437.chars().collect();
            let s = Scan::new(r);
            let mut out = String::new();
            for row in 0..rows {
                let row_start = s.start.wrapping_add(row * s.offset);
                let line: String =
                    (0..cols).map(|c| cp437[usize::from(plane(vram, 0, s.address(row_start.wrapping_add(c), 0)))]).collect();
                out += line.trim_end();
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::vga::tables::{self, ModeTable};
    use crate::devices::vga::Vga;

    /// A glyph byte for (character, scan line) of the made-up test font.
    fn glyph(ch: u8, line: u32) -> u8 {
        ch.rotate_left(line % 8) ^ (line as u8).wrapping_mul(0x1D)
    }

    /// Loads the test font into character map 0 the way a BIOS does (plane 2 through A0000).
    fn load_font(v: &mut Vga) {
        let saved = (v.regs.seq, v.regs.gc);
        for (i, val) in [(2u8, 0x04u8), (4, 0x07)] {
            v.regs.write_port(0x3C4, i);
            v.regs.write_port(0x3C5, val);
        }
        for (i, val) in [(4u8, 0x02u8), (5, 0x00), (6, 0x04), (8, 0xFF), (3, 0)] {
            v.regs.write_port(0x3CE, i);
            v.regs.write_port(0x3CF, val);
        }
        for ch in 0..=255u8 {
            for line in 0..32 {
                v.window_write(u64::from(ch) * 32 + u64::from(line), glyph(ch, line));
            }
        }
        (v.regs.seq, v.regs.gc) = saved;
    }

    fn mode(table: &ModeTable) -> Vga {
        let mut v = Vga::with_vram(None, 1 << 20);
        tables::program(&mut v.regs, table);
        v
    }

    fn rgba(v: &Vga, dac_index: u8) -> [u8; 4] {
        v.regs.dac.rgba(dac_index)
    }

    #[test]
    fn cp437_has_256_characters() {
        assert_eq!(CP437.chars().count(), 256);
        let t: Vec<char> = CP437.chars().collect();
        assert_eq!((t[0x41], t[0xC4], t[0xDB], t[0x7E], t[0xFF]), ('A', '─', '█', '~', ' '));
    }

    #[test]
    fn text_mode_draws_ferrite_with_attributes() {
        let mut v = mode(&tables::MODE_03);
        load_font(&mut v);
        // Row 1, column 2: "Ferrite" yellow on blue; then a blinking one and a line graphic.
        let base = 0x1_8000 + (80 + 2) * 2;
        for (i, ch) in b"Ferrite".iter().enumerate() {
            v.window_write(base + 2 * i as u64, *ch);
            v.window_write(base + 2 * i as u64 + 1, 0x1E);
        }
        v.window_write(base + 14, b'!');
        v.window_write(base + 15, 0x9E); // blinking
        v.window_write(base + 16, 0xC4);
        v.window_write(base + 17, 0x07);
        // Cursor at row 3 column 0, lines 13-14.
        for (i, val) in [(0x0Eu8, 0u8), (0x0F, 240)] {
            v.regs.write_port(0x3D4, i);
            v.regs.write_port(0x3D5, val);
        }
        assert_eq!(
            screen(&v.regs, &v.dispi),
            Screen::Text { cols: 80, rows: 25, char_width: 9, char_height: 16 }
        );
        let text = screen_text(&v.regs, &v.dispi, &v.vram);
        assert_eq!(text.lines().count(), 25);
        assert_eq!(text.lines().nth(1), Some("  Ferrite!─"), "{text}");

        let mut f = Frame::new();
        let on = Blink { cursor_on: true, text_on: true };
        render(&v.regs, &v.dispi, &v.vram, on, None, &mut f);
        assert_eq!((f.width, f.height), (720, 400));
        let (yellow, blue, grey, black) = (rgba(&v, 0x3E), rgba(&v, 0x01), rgba(&v, 0x07), rgba(&v, 0));
        assert_eq!(yellow, [0xFF, 0xFF, 0x55, 0xFF]);
        for (i, &ch) in b"Ferrite!".iter().enumerate() {
            for line in 0..16 {
                for dot in 0..9 {
                    let lit = dot < 8 && glyph(ch, line) >> (7 - dot) & 1 != 0;
                    let x = (2 + i as u32) * 9 + dot;
                    let want = if lit { yellow } else { blue };
                    assert_eq!(f.pixel(x, 16 + line), Some(want), "{:?} line {line} dot {dot}", ch as char);
                }
            }
        }
        // 0xC4 is a line-graphics character: the 9th dot repeats the 8th.
        for line in 0..16 {
            let g = glyph(0xC4, line);
            let x = 10 * 9;
            assert_eq!(f.pixel(x + 8, 16 + line), Some(if g & 1 != 0 { grey } else { black }));
        }
        // The cursor covers lines 13-14 of its cell with the foreground colour (grey on black
        // for an attribute of 0x07 written there).
        v.window_write(0x1_8000 + 240 * 2 + 1, 0x07);
        render(&v.regs, &v.dispi, &v.vram, on, None, &mut f);
        for dot in 0..9 {
            assert_eq!(f.pixel(dot, 3 * 16 + 13), Some(grey));
            assert_eq!(f.pixel(dot, 3 * 16 + 14), Some(grey));
        }
        // Blink off: the cursor goes, and the blinking '!' shows its background only.
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 3 * 16 + 13), Some(if glyph(0, 13) & 0x80 != 0 { grey } else { black }));
        for line in 0..16 {
            for dot in 0..9 {
                assert_eq!(f.pixel(9 * 9 + dot, 16 + line), Some(blue));
            }
        }
    }

    #[test]
    fn only_phases_that_show_change_the_blink() {
        let mut v = mode(&tables::MODE_03);
        let phases = |v: &Vga| {
            let seen: std::collections::BTreeSet<(bool, bool)> = (0..200u64)
                .map(|i| blink_at(&v.regs, &v.dispi, i * 10_000_000))
                .map(|b| (b.cursor_on, b.text_on))
                .collect();
            seen.len()
        };
        assert_eq!(phases(&v), 4, "mode 3 blinks its cursor and its characters");
        v.regs.crtc[crtc::CURSOR_START] |= 0x20;
        assert_eq!(phases(&v), 2, "a hidden cursor does not blink");
        v.regs.ac[ac::MODE] &= !8;
        assert_eq!(phases(&v), 1, "nor do characters with blinking off (bit 7: background)");
        v.regs.crtc[crtc::CURSOR_START] = 0x0F;
        v.regs.crtc[crtc::CURSOR_END] = 0x0E;
        assert_eq!(phases(&v), 1, "a cursor that starts below its end line shows nothing");
        v.regs.crtc[crtc::CURSOR_END] = 0x0F;
        assert_eq!(phases(&v), 2);
    }

    #[test]
    fn mode_13h_pattern() {
        let mut v = mode(&tables::MODE_13);
        v.regs.write_port(0x3C8, 0);
        for i in 0..=255u8 {
            for c in [i >> 2, 63 - (i >> 2), i & 0x3F] {
                v.regs.write_port(0x3C9, c);
            }
        }
        for y in 0..200u64 {
            for x in 0..320u64 {
                v.window_write(y * 320 + x, (x ^ y) as u8);
            }
        }
        assert_eq!(screen_text(&v.regs, &v.dispi, &v.vram), "graphics mode 320x200, 256 colours\n");
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!((f.width, f.height), (320, 200));
        for (x, y) in [(0, 0), (1, 0), (5, 7), (319, 199), (160, 100), (255, 3)] {
            let i = (x ^ y) as u8;
            let w6 = |c: u8| c << 2 | c >> 4;
            assert_eq!(f.pixel(x, y), Some([w6(i >> 2), w6(63 - (i >> 2)), w6(i & 0x3F), 0xFF]), "({x}, {y})");
        }
    }

    #[test]
    fn mode_x_unchained_planes() {
        let mut v = mode(&tables::MODE_13);
        for i in 0..=255u8 {
            v.regs.dac.palette[usize::from(i) * 3..][..3].copy_from_slice(&[i & 0x3F, 0, 0]);
        }
        // Unchain: sequential planes, byte addressing, as "mode X" set-ups do.
        v.regs.write_port(0x3C4, 4);
        v.regs.write_port(0x3C5, 0x06);
        for (i, val) in [(0x14u8, 0x00u8), (0x17, 0xE3)] {
            v.regs.write_port(0x3D4, i);
            v.regs.write_port(0x3D5, val);
        }
        for x in 0..320u64 {
            v.regs.write_port(0x3C4, 2);
            v.regs.write_port(0x3C5, 1 << (x & 3));
            v.window_write(10 * 80 + x / 4, (x % 61) as u8);
        }
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!((f.width, f.height), (320, 200));
        for x in 0..320 {
            let c = (x % 61) as u8;
            assert_eq!(f.pixel(x, 10), Some([c << 2 | c >> 4, 0, 0, 0xFF]), "x {x}");
        }
    }

    #[test]
    fn planar_16_colours() {
        let mut v = mode(&tables::MODE_12);
        // Write mode 2: colour per pixel through the bit mask.
        v.regs.write_port(0x3CE, 5);
        v.regs.write_port(0x3CF, 2);
        for x in 0..16u64 {
            v.regs.write_port(0x3CE, 8);
            v.regs.write_port(0x3CF, 0x80 >> (x % 8));
            v.window_read(80 * 5 + x / 8);
            v.window_write(80 * 5 + x / 8, x as u8);
        }
        assert_eq!(screen_text(&v.regs, &v.dispi, &v.vram), "graphics mode 640x480, 16 colours\n");
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!((f.width, f.height), (640, 480));
        for x in 0..16 {
            let want = rgba(&v, tables::MODE_12.ac[x as usize]);
            assert_eq!(f.pixel(x, 5), Some(want), "colour {x}");
        }
        assert_eq!(f.pixel(16, 5), Some(rgba(&v, 0)));
    }

    #[test]
    fn cga_four_colours_with_banks() {
        let mut v = mode(&tables::MODE_04);
        v.window_write(0x1_8000, 0b00_01_10_11); // line 0, pixels 0-3
        v.window_write(0x1_8001, 0b11_00_00_00); // line 0, pixel 4
        v.window_write(0x1_A000, 0b10_00_00_00); // line 1, pixel 0 (odd lines at +8 KiB)
        v.window_write(0x1_8000 + 80, 0b01_00_00_00); // line 2
        assert_eq!(screen_text(&v.regs, &v.dispi, &v.vram), "graphics mode 320x200, 4 colours\n");
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!((f.width, f.height), (320, 200));
        let c = |i: usize| rgba(&v, tables::MODE_04.ac[i]);
        let got: Vec<_> = (0..5).map(|x| f.pixel(x, 0).unwrap()).collect();
        assert_eq!(got, [c(0), c(1), c(2), c(3), c(3)]);
        assert_eq!(f.pixel(0, 1), Some(c(2)));
        assert_eq!(f.pixel(0, 2), Some(c(1)));
    }

    #[test]
    fn vbe_linear_modes() {
        let mut v = Vga::with_vram(None, 16 << 20);
        let dispi = |v: &mut Vga, i: usize, val: u16| {
            v.dispi.index = i as u16;
            v.dispi.write_data(val, &mut v.vram);
        };
        use crate::devices::vga::vbe::*;
        dispi(&mut v, XRES, 800);
        dispi(&mut v, YRES, 600);
        dispi(&mut v, BPP, 32);
        dispi(&mut v, ENABLE, ENABLED | LFB_ENABLED);
        for y in 0..600usize {
            for x in 0..800usize {
                let at = (y * 800 + x) * 4;
                v.vram[at..at + 4].copy_from_slice(&[x as u8, y as u8, (x + y) as u8, 0]);
            }
        }
        assert_eq!(screen_text(&v.regs, &v.dispi, &v.vram), "VBE mode 800x600, 32 bpp\n");
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!((f.width, f.height), (800, 600));
        for (x, y) in [(0u32, 0u32), (799, 599), (123, 456)] {
            let b = x as u8;
            let g = y as u8;
            let r = (x + y) as u8;
            assert_eq!(f.pixel(x, y), Some([r, g, b, 0xFF]));
        }
        // 16 bpp (5:6:5) and 15 bpp (5:5:5) pixels, and 8 bpp through the DAC.
        dispi(&mut v, BPP, 16);
        v.vram[..2].copy_from_slice(&0xF81Fu16.to_le_bytes());
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 0), Some([0xFF, 0, 0xFF, 0xFF]));
        dispi(&mut v, BPP, 15);
        v.vram[..2].copy_from_slice(&0x03E0u16.to_le_bytes());
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 0), Some([0, 0xFF, 0, 0xFF]));
        dispi(&mut v, BPP, 24);
        v.vram[..3].copy_from_slice(&[1, 2, 3]);
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 0), Some([3, 2, 1, 0xFF]));
        dispi(&mut v, BPP, 8);
        v.regs.dac.palette[7 * 3..][..3].copy_from_slice(&[0x3F, 0x20, 0x01]);
        v.vram[0] = 7;
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 0), Some([0xFF, 0x82, 0x04, 0xFF]));
        v.regs.dac.eight_bit = true;
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 0), Some([0x3F, 0x20, 0x01, 0xFF]), "8-bit DAC values as written");
    }

    #[test]
    fn linear_conversions_match_the_pixel_formats() {
        // Every 16-bit value, as 5:6:5 and as 5:5:5, against the channels widened one by one;
        // as RGBA and as BGRA.
        let src: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let (mut out, mut bgra) = (vec![0u8; 65536 * 4], vec![0u8; 65536 * 4]);
        let w = |v: u16, bits: u32| {
            let v = v & ((1 << bits) - 1);
            (v << (8 - bits) | v >> (2 * bits - 8)) as u8
        };
        let swapped = |p: &[u8]| [p[2], p[1], p[0], p[3]];
        rgb565::<false>(&src, &mut out);
        rgb565::<true>(&src, &mut bgra);
        for v in 0..=u16::MAX {
            let want = [w(v >> 11, 5), w(v >> 5, 6), w(v, 5), 0xFF];
            assert_eq!(out[usize::from(v) * 4..][..4], want, "5:6:5 {v:#06x}");
            assert_eq!(swapped(&bgra[usize::from(v) * 4..][..4]), want, "5:6:5 {v:#06x} BGRA");
        }
        rgb555::<false>(&src, &mut out);
        rgb555::<true>(&src, &mut bgra);
        for v in 0..=u16::MAX {
            let want = [w(v >> 10, 5), w(v >> 5, 5), w(v, 5), 0xFF];
            assert_eq!(out[usize::from(v) * 4..][..4], want, "5:5:5 {v:#06x}");
            assert_eq!(swapped(&bgra[usize::from(v) * 4..][..4]), want, "5:5:5 {v:#06x} BGRA");
        }
        // 32 and 24 bits: blue, green, red (and an ignored byte) in memory order.
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        bgrx::<false>(&bytes, &mut out[..4096]);
        bgrx::<true>(&bytes, &mut bgra[..4096]);
        for ((o, b), s) in out[..4096].chunks_exact(4).zip(bgra.chunks_exact(4)).zip(bytes.chunks_exact(4)) {
            assert_eq!(o, [s[2], s[1], s[0], 0xFF]);
            assert_eq!(b, [s[0], s[1], s[2], 0xFF]);
        }
        bgr::<false>(&bytes[..3 * 1000], &mut out[..4000]);
        bgr::<true>(&bytes[..3 * 1000], &mut bgra[..4000]);
        for ((o, b), s) in out[..4000].chunks_exact(4).zip(bgra.chunks_exact(4)).zip(bytes.chunks_exact(3)) {
            assert_eq!(o, [s[2], s[1], s[0], 0xFF]);
            assert_eq!(b, [s[0], s[1], s[2], 0xFF]);
        }
        let dac: [u32; 256] = std::array::from_fn(|i| (i as u32).wrapping_mul(0x0103_0507));
        indexed(&bytes[..1024], &dac, &mut out[..4096]);
        for (o, &s) in out[..4096].chunks_exact(4).zip(&bytes[..1024]) {
            assert_eq!(o, dac[usize::from(s)].to_le_bytes());
        }
    }

    /// Every mode drawn into a BGRA frame is the RGBA picture with red and blue swapped.
    #[test]
    fn bgra_frames_hold_the_same_pictures() {
        use crate::display::PixelFormat;
        let mut v = mode(&tables::MODE_03);
        load_font(&mut v);
        for i in 0..256 {
            v.regs.dac.palette[i * 3..][..3].copy_from_slice(&[i as u8 & 0x3F, (i as u8) >> 2, 0x3F - (i as u8 & 0x3F)]);
        }
        for (i, b) in v.vram.iter_mut().enumerate().take(0x1_0000 * 4) {
            if i % 4 < 2 {
                *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
            }
        }
        let compare = |v: &Vga, what: &str| {
            let (mut rgba, mut bgra) = (Frame::new(), Frame { format: PixelFormat::Bgra, ..Frame::new() });
            let on = Blink { cursor_on: true, text_on: true };
            render(&v.regs, &v.dispi, &v.vram, on, None, &mut rgba);
            render(&v.regs, &v.dispi, &v.vram, on, None, &mut bgra);
            assert_eq!((rgba.width, rgba.height), (bgra.width, bgra.height), "{what}");
            assert!(rgba.pixels.chunks(4).any(|p| p[0] != p[2]), "{what}: a picture with colours");
            assert_eq!(&bgra.rgba()[..], &rgba.pixels[..], "{what}");
        };
        compare(&v, "text");
        for table in [&tables::MODE_13, &tables::MODE_12, &tables::MODE_04] {
            let mut g = mode(table);
            g.vram.copy_from_slice(&v.vram);
            g.regs.dac.palette.copy_from_slice(&v.regs.dac.palette);
            compare(&g, "graphics");
        }
        use crate::devices::vga::vbe::*;
        for bpp in [8u16, 15, 16, 24, 32] {
            for (i, val) in [(XRES, 320u16), (YRES, 200), (BPP, bpp), (ENABLE, ENABLED | LFB_ENABLED)] {
                v.dispi.index = i as u16;
                v.dispi.write_data(val, &mut v.vram);
            }
            compare(&v, &format!("VBE {bpp} bpp"));
        }
    }

    #[test]
    fn a_line_past_the_end_of_video_memory_shows_black() {
        let mut v = Vga::with_vram(None, 1 << 20);
        use crate::devices::vga::vbe::*;
        for (i, val) in [(XRES, 640u16), (YRES, 400), (BPP, 32), (ENABLE, ENABLED | LFB_ENABLED)] {
            v.dispi.index = i as u16;
            v.dispi.write_data(val, &mut v.vram);
        }
        v.vram.fill(0x40);
        let mut m = v.dispi.mode().unwrap();
        // The last line starts 100 pixels before the end of the 1 MiB of video memory.
        m.start = v.vram.len() - 399 * m.line_bytes - 100 * 4;
        let mut f = Frame::new();
        render_vbe(&v.regs, &v.vram, m, None, &mut f);
        assert_eq!(f.changed_rows, 0..400);
        assert_eq!(f.pixel(99, 399), Some([0x40, 0x40, 0x40, 0xFF]));
        assert_eq!(f.pixel(100, 399), Some([0, 0, 0, 0xFF]));
        assert_eq!(f.pixel(639, 399), Some([0, 0, 0, 0xFF]));
        assert_eq!(f.pixel(639, 398), Some([0x40, 0x40, 0x40, 0xFF]));
    }

    #[test]
    fn blanked_and_unprogrammed_screens_are_off() {
        let v = Vga::with_vram(None, 1 << 20);
        assert_eq!(screen(&v.regs, &v.dispi), Screen::Off);
        assert_eq!(screen_text(&v.regs, &v.dispi, &v.vram), "display off\n");
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!((f.width, f.height, f.pixel(10, 10)), (640, 480, Some([0, 0, 0, 0xFF])));
        let mut v = mode(&tables::MODE_03);
        v.regs.write_port(0x3C4, 1);
        v.regs.write_port(0x3C5, 0x20);
        assert_eq!(screen(&v.regs, &v.dispi), Screen::Off, "screen off bit");
    }

    #[test]
    fn split_screen_restarts_at_address_zero() {
        let mut v = mode(&tables::MODE_13);
        v.regs.dac.palette[3..6].copy_from_slice(&[0x3F, 0x3F, 0x3F]);
        // Start the display at line 100 of memory, split after scan line 199 (output line 100).
        let start = 100 * 80;
        for (i, val) in [(0x0Cu8, (start >> 8) as u8), (0x0D, start as u8), (0x18, 199)] {
            v.regs.write_port(0x3D4, i);
            v.regs.write_port(0x3D5, val);
        }
        v.regs.crtc[crtc::OVERFLOW] &= !0x10;
        v.regs.crtc[crtc::MAX_SCAN] &= !0x40;
        v.window_write(0, 1); // memory line 0
        v.window_write(100 * 320, 1); // memory line 100
        let mut f = Frame::new();
        render(&v.regs, &v.dispi, &v.vram, Blink::default(), None, &mut f);
        assert_eq!(f.pixel(0, 0), Some([0xFF; 4]), "top shows memory line 100");
        assert_eq!(f.pixel(0, 100), Some([0xFF; 4]), "below the split, memory line 0");
        assert_eq!(f.pixel(0, 99), Some([0, 0, 0, 0xFF]));
    }
}
