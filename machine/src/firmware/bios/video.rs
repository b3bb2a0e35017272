//! INT 10h: the video BIOS for the standard VGA (IBM VGA Technical Reference, "BIOS"; Ralf
//! Brown's list for the details). Modes are set through the VGA's registers with the
//! parameter tables of `devices::vga::tables`, fonts are loaded into plane 2 from the ROM (the
//! `FONTS` table in `roms/bios/bios.asm`), and text goes into video memory through the VGA's
//! memory window, so the VGA model shows exactly what a VGA BIOS would have left. The VBE
//! functions (AH=4Fh) are in `vbe.rs`.

use super::{bda, Action, Bios, Regs};
use crate::devices::vga::tables::{self, ModeTable, VgaPorts};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    /// CGA-compatible 2 bits per pixel, interleaved by scan line.
    Cga,
    /// CGA-compatible 1 bit per pixel (mode 06h), interleaved by scan line.
    Cga2,
    /// 16 colours in four planes.
    Planar,
    /// 256 colours, one byte per pixel (chain-4).
    Linear8,
}

struct Mode {
    number: u8,
    kind: Kind,
    columns: u16,
    rows: u8,
    char_height: u8,
    width: u16,
    memory: u64,
    page_size: u16,
    mode_control: u8,
    table: &'static ModeTable,
}

const MODES: &[Mode] = &[
    Mode { number: 0x00, kind: Kind::Text, columns: 40, rows: 25, char_height: 16, width: 360, memory: 0xB_8000, page_size: 0x0800, mode_control: 0x2C, table: &tables::MODE_01 },
    Mode { number: 0x01, kind: Kind::Text, columns: 40, rows: 25, char_height: 16, width: 360, memory: 0xB_8000, page_size: 0x0800, mode_control: 0x28, table: &tables::MODE_01 },
    Mode { number: 0x02, kind: Kind::Text, columns: 80, rows: 25, char_height: 16, width: 720, memory: 0xB_8000, page_size: 0x1000, mode_control: 0x2D, table: &tables::MODE_03 },
    Mode { number: 0x03, kind: Kind::Text, columns: 80, rows: 25, char_height: 16, width: 720, memory: 0xB_8000, page_size: 0x1000, mode_control: 0x29, table: &tables::MODE_03 },
    Mode { number: 0x04, kind: Kind::Cga, columns: 40, rows: 25, char_height: 8, width: 320, memory: 0xB_8000, page_size: 0x4000, mode_control: 0x2A, table: &tables::MODE_04 },
    Mode { number: 0x05, kind: Kind::Cga, columns: 40, rows: 25, char_height: 8, width: 320, memory: 0xB_8000, page_size: 0x4000, mode_control: 0x2E, table: &tables::MODE_04 },
    Mode { number: 0x06, kind: Kind::Cga2, columns: 80, rows: 25, char_height: 8, width: 640, memory: 0xB_8000, page_size: 0x4000, mode_control: 0x1E, table: &tables::MODE_06 },
    Mode { number: 0x07, kind: Kind::Text, columns: 80, rows: 25, char_height: 16, width: 720, memory: 0xB_0000, page_size: 0x1000, mode_control: 0x29, table: &tables::MODE_07 },
    Mode { number: 0x0D, kind: Kind::Planar, columns: 40, rows: 25, char_height: 8, width: 320, memory: 0xA_0000, page_size: 0x2000, mode_control: 0x29, table: &tables::MODE_0D },
    Mode { number: 0x0E, kind: Kind::Planar, columns: 80, rows: 25, char_height: 8, width: 640, memory: 0xA_0000, page_size: 0x4000, mode_control: 0x29, table: &tables::MODE_0E },
    Mode { number: 0x10, kind: Kind::Planar, columns: 80, rows: 25, char_height: 14, width: 640, memory: 0xA_0000, page_size: 0x8000, mode_control: 0x29, table: &tables::MODE_10 },
    Mode { number: 0x11, kind: Kind::Planar, columns: 80, rows: 30, char_height: 16, width: 640, memory: 0xA_0000, page_size: 0xA000, mode_control: 0x29, table: &tables::MODE_11 },
    Mode { number: 0x12, kind: Kind::Planar, columns: 80, rows: 30, char_height: 16, width: 640, memory: 0xA_0000, page_size: 0xA000, mode_control: 0x29, table: &tables::MODE_12 },
    Mode { number: 0x13, kind: Kind::Linear8, columns: 40, rows: 25, char_height: 8, width: 320, memory: 0xA_0000, page_size: 0, mode_control: 0x29, table: &tables::MODE_13 },
];

fn mode(number: u8) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.number == number)
}

/// The mode in the BIOS data area (text mode 3 when it names none of ours).
fn current(b: &Bios) -> &'static Mode {
    mode(b.bda8(bda::VIDEO_MODE) & 0x7F).unwrap_or(&MODES[1])
}

struct Ports<'a, 'b>(&'a mut Bios<'b>);

impl VgaPorts for Ports<'_, '_> {
    fn write_port(&mut self, port: u16, v: u8) {
        self.0.outb(port, v);
    }
    fn touch_port(&mut self, port: u16) {
        self.0.inb(port);
    }
}

/// Where the ROM keeps its fonts: (8x16, 8x14, 8x8 first half, 8x8 second half) as offsets in
/// segment F000h, from the `FONTS` table.
fn font_table(b: &Bios) -> Option<[u16; 4]> {
    let mut rom = vec![0u8; 0x1_0000];
    b.read(0xF_0000, &mut rom);
    let at = rom.windows(6).position(|w| w == b"FONTS\0")? + 6;
    let w = |k: usize| u16::from_le_bytes([rom[at + 2 * k], rom[at + 2 * k + 1]]);
    Some([w(0), w(1), w(2), w(3)])
}

fn rom_font(b: &Bios, height: u8) -> Vec<u8> {
    let Some(t) = font_table(b) else { return vec![0; 256 * usize::from(height)] };
    let read = |at: u16, len: usize| {
        let mut v = vec![0u8; len];
        b.read(0xF_0000 + u64::from(at), &mut v);
        v
    };
    match height {
        16 => read(t[0], 4096),
        14 => read(t[1], 3584),
        _ => [read(t[2], 1024), read(t[3], 1024)].concat(),
    }
}

/// Loads `count` glyphs of `height` bytes from `data`, starting at character `first` of
/// character map `block`, into plane 2.
fn load_font(b: &mut Bios, data: &[u8], height: u8, first: u16, count: u16, block: u8) {
    // Plane 2 alone, sequential addressing, A0000 64 KiB, read map 2.
    let saved_seq = [seq(b, 2), seq(b, 4)];
    let saved_gc = [gc(b, 4), gc(b, 5), gc(b, 6)];
    set_seq(b, 2, 0x04);
    set_seq(b, 4, 0x07);
    set_gc(b, 4, 0x02);
    set_gc(b, 5, 0x00);
    set_gc(b, 6, 0x04);
    // Character map blocks of 8 KiB at 0, 16 KiB, 32 KiB, 48 KiB, then 8 KiB in between.
    let base = [0x0000u64, 0x4000, 0x8000, 0xC000, 0x2000, 0x6000, 0xA000, 0xE000][usize::from(block & 7)];
    let h = usize::from(height);
    for i in 0..usize::from(count) {
        let ch = u64::from(first) + i as u64;
        if ch > 255 {
            break;
        }
        let mut glyph = [0u8; 32];
        let src = data.get(i * h..(i + 1) * h).unwrap_or(&[]);
        glyph[..src.len()].copy_from_slice(src);
        for (k, &g) in glyph.iter().enumerate() {
            b.m.mmio_write(0xA_0000 + base + ch * 32 + k as u64, 1, u64::from(g));
        }
    }
    set_seq(b, 2, saved_seq[0]);
    set_seq(b, 4, saved_seq[1]);
    set_gc(b, 4, saved_gc[0]);
    set_gc(b, 5, saved_gc[1]);
    set_gc(b, 6, saved_gc[2]);
}

fn seq(b: &mut Bios, i: u8) -> u8 {
    b.outb(0x3C4, i);
    b.inb(0x3C5)
}
fn set_seq(b: &mut Bios, i: u8, v: u8) {
    b.outb(0x3C4, i);
    b.outb(0x3C5, v);
}
fn gc(b: &mut Bios, i: u8) -> u8 {
    b.outb(0x3CE, i);
    b.inb(0x3CF)
}
fn set_gc(b: &mut Bios, i: u8, v: u8) {
    b.outb(0x3CE, i);
    b.outb(0x3CF, v);
}
fn crtc(b: &mut Bios, i: u8, v: u8) {
    let port = b.bda16(bda::CRTC_BASE);
    let port = if port == 0 { 0x3D4 } else { port };
    b.outb(port, i);
    b.outb(port + 1, v);
}

/// Mode 3 at POST.
pub(super) fn init(b: &mut Bios) {
    b.set_bda8(bda::VIDEO_SWITCHES, 0xF9);
    b.set_bda8(bda::VIDEO_MODESET_CTL, 0x51);
    b.set_bda8(bda::VIDEO_DCC, 0x08);
    set_mode(b, 0x03);
}

/// AH=00h.
fn set_mode(b: &mut Bios, number: u8) -> bool {
    let clear = number & 0x80 == 0;
    let Some(m) = mode(number & 0x7F) else {
        tracing::debug!(mode = number, "INT 10h: video mode not supported");
        return false;
    };
    super::vbe::disable(b);
    tables::program(&mut Ports(b), m.table);
    let crtc_base = if m.table.misc & 1 != 0 { 0x3D4 } else { 0x3B4 };
    b.set_bda16(bda::CRTC_BASE, crtc_base);
    // The DAC as a VGA BIOS loads it for the mode (`program` left the 64 EGA colours): the
    // monochrome levels for 07h, the CGA colours for the 200-line modes.
    let dac: Option<fn(u8) -> [u8; 3]> = match m.number {
        0x07 => Some(|i| [tables::mono_level(i); 3]),
        0x04..=0x06 | 0x0D | 0x0E => Some(tables::cga_colour),
        _ => None,
    };
    if let Some(colour) = dac {
        b.outb(0x3C8, 0);
        for i in 0..64u8 {
            for c in colour(i) {
                b.outb(0x3C9, c);
            }
        }
    }
    if m.kind == Kind::Linear8 {
        // The default 256-colour palette: 16 EGA colours, 16 greys, then hue rings.
        b.outb(0x3C8, 0);
        for i in 0..=255u8 {
            for c in default_256(i) {
                b.outb(0x3C9, c);
            }
        }
    }
    if clear {
        match m.kind {
            Kind::Text => {
                for cell in 0..0x4000u64 {
                    b.m.mmio_write(m.memory + 2 * cell, 2, 0x0720);
                }
            }
            Kind::Cga | Kind::Cga2 => {
                for a in 0..0x4000u64 {
                    b.m.mmio_write(m.memory + 2 * a, 2, 0);
                }
            }
            Kind::Planar | Kind::Linear8 => {
                set_seq(b, 2, 0x0F);
                for a in 0..0x4000u64 {
                    b.m.mmio_write(0xA_0000 + 4 * a, 4, 0);
                }
                set_seq(b, 2, m.table.seq[2]);
            }
        }
    }
    if m.kind == Kind::Text {
        let font = rom_font(b, m.char_height);
        load_font(b, &font, m.char_height, 0, 256, 0);
    }
    b.set_bda8(bda::VIDEO_MODE, number & 0x7F);
    b.set_bda16(bda::VIDEO_COLUMNS, m.columns);
    b.set_bda16(bda::VIDEO_PAGE_SIZE, m.page_size);
    b.set_bda16(bda::VIDEO_PAGE_START, 0);
    for p in 0..8 {
        b.set_bda16(bda::CURSOR_POS + 2 * p, 0);
    }
    b.set_bda16(bda::CURSOR_SHAPE, 0x0607);
    b.set_bda8(bda::VIDEO_PAGE, 0);
    b.set_bda8(bda::VIDEO_MODE_CTL, m.mode_control);
    b.set_bda8(bda::VIDEO_PALETTE, 0x30);
    b.set_bda8(bda::VIDEO_ROWS, m.rows - 1);
    b.set_bda16(bda::CHAR_HEIGHT, u16::from(m.char_height));
    b.set_bda8(bda::VIDEO_CTL, 0x60 | if clear { 0 } else { 0x80 });
    // The graphics fonts: INT 43h at the 8x8 (or the 8x16 in the 16-line modes).
    if let Some(t) = font_table(b) {
        let f = if m.char_height == 16 && m.kind != Kind::Text { t[0] } else { t[2] };
        b.w16(0x43 * 4, f);
        b.w16(0x43 * 4 + 2, 0xF000);
    }
    true
}

/// Palette entry `i` of the default 256-colour mode (6-bit components).
fn default_256(i: u8) -> [u8; 3] {
    match i {
        0..=15 => {
            let e = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F][usize::from(i)];
            tables::ega_colour(e)
        }
        16..=31 => {
            let g = [0, 5, 8, 11, 14, 17, 20, 24, 28, 32, 36, 40, 45, 50, 56, 63][usize::from(i - 16)];
            [g, g, g]
        }
        _ => {
            // 9 hue rings (3 intensities x 3 saturations) of 24 hues.
            let k = usize::from(i - 32);
            let (ring, hue) = (k / 24, k % 24);
            let levels: [[u8; 5]; 9] = [
                [0, 16, 31, 47, 63], [31, 39, 47, 55, 63], [45, 49, 54, 58, 63],
                [0, 7, 14, 21, 28], [14, 17, 21, 24, 28], [20, 22, 24, 26, 28],
                [0, 4, 8, 12, 16], [8, 10, 12, 14, 16], [11, 12, 13, 15, 16],
            ];
            let l = levels[ring.min(8)];
            let ramp = |h: usize| -> u8 {
                let h = h % 24;
                match h {
                    0..=4 => l[4],
                    5..=7 => l[4 - (h - 4)],
                    8..=16 => l[0],
                    17..=19 => l[h - 16],
                    _ => l[4],
                }
            };
            [ramp(hue), ramp(hue + 16), ramp(hue + 8)]
        }
    }
}

fn cursor(b: &Bios, page: u8) -> (u8, u8) {
    let v = b.bda16(bda::CURSOR_POS + 2 * u64::from(page & 7));
    (v as u8, (v >> 8) as u8)
}

fn set_cursor(b: &mut Bios, page: u8, col: u8, row: u8) {
    b.set_bda16(bda::CURSOR_POS + 2 * u64::from(page & 7), u16::from(row) << 8 | u16::from(col));
    if page == b.bda8(bda::VIDEO_PAGE) && current(b).kind == Kind::Text {
        let m = current(b);
        let at = u16::from(page) * m.page_size / 2 + u16::from(row) * m.columns + u16::from(col);
        crtc(b, 0x0E, (at >> 8) as u8);
        crtc(b, 0x0F, at as u8);
    }
}

fn text_cell(m: &Mode, page: u8, col: u8, row: u8) -> u64 {
    m.memory + u64::from(page) * u64::from(m.page_size) + 2 * (u64::from(row) * u64::from(m.columns) + u64::from(col))
}

/// Draws one character cell in a graphics mode with colour `colour` (background 0).
fn draw_glyph(b: &mut Bios, m: &Mode, ch: u8, col: u8, row: u8, colour: u8) {
    let h = m.char_height;
    let font = rom_font(b, h);
    let glyph = &font[usize::from(ch) * usize::from(h)..][..usize::from(h)];
    let (x0, y0) = (u64::from(col) * 8, u64::from(row) * u64::from(h));
    match m.kind {
        Kind::Linear8 => {
            for (dy, &bits) in glyph.iter().enumerate() {
                for dx in 0..8 {
                    let on = bits & (0x80 >> dx) != 0;
                    let at = (y0 + dy as u64) * u64::from(m.width) + x0 + dx;
                    b.m.mmio_write(0xA_0000 + at, 1, u64::from(if on { colour } else { 0 }));
                }
            }
        }
        Kind::Planar => {
            let line = u64::from(m.width) / 8;
            for plane in 0..4 {
                set_seq(b, 2, 1 << plane);
                for (dy, &bits) in glyph.iter().enumerate() {
                    let v = if colour & (1 << plane) != 0 { bits } else { 0 };
                    b.m.mmio_write(0xA_0000 + (y0 + dy as u64) * line + u64::from(col), 1, u64::from(v));
                }
            }
            set_seq(b, 2, 0x0F);
        }
        Kind::Cga => {
            for (dy, &bits) in glyph.iter().enumerate() {
                let y = y0 + dy as u64;
                let at = m.memory + (y & 1) * 0x2000 + (y >> 1) * 80 + u64::from(col) * 2;
                let mut word = 0u16;
                for dx in 0..8 {
                    if bits & (0x80 >> dx) != 0 {
                        word |= u16::from(colour & 3) << (14 - 2 * dx);
                    }
                }
                b.m.mmio_write(at, 1, u64::from(word >> 8));
                b.m.mmio_write(at + 1, 1, u64::from(word & 0xFF));
            }
        }
        Kind::Cga2 => {
            for (dy, &bits) in glyph.iter().enumerate() {
                let y = y0 + dy as u64;
                let at = m.memory + (y & 1) * 0x2000 + (y >> 1) * 80 + u64::from(col);
                b.m.mmio_write(at, 1, u64::from(if colour & 1 != 0 { bits } else { 0 }));
            }
        }
        Kind::Text => {}
    }
}

/// Writes a character (and attribute, if given) at a position without moving the cursor.
fn put(b: &mut Bios, page: u8, col: u8, row: u8, ch: u8, attr: Option<u8>) {
    let m = current(b);
    if m.kind == Kind::Text {
        let at = text_cell(m, page, col, row);
        b.m.mmio_write(at, 1, u64::from(ch));
        if let Some(a) = attr {
            b.m.mmio_write(at + 1, 1, u64::from(a));
        }
    } else {
        draw_glyph(b, m, ch, col, row, attr.unwrap_or(0x0F));
    }
}

/// Scrolls the window (top, left)-(bottom, right) of `page` up (or down) by `lines` (0:
/// clear), filling with `attr` (a colour in graphics modes).
#[allow(clippy::too_many_arguments)]
fn scroll(b: &mut Bios, page: u8, lines: u8, attr: u8, top: u8, left: u8, bottom: u8, right: u8, up: bool) {
    let m = current(b);
    let rows = b.bda8(bda::VIDEO_ROWS).max(m.rows - 1);
    let bottom = bottom.min(rows);
    let right = right.min((m.columns - 1) as u8);
    if top > bottom || left > right {
        return;
    }
    let height = bottom - top + 1;
    let lines = if lines == 0 || lines > height { height } else { lines };
    let order: Vec<u8> = if up { (top..=bottom).collect() } else { (top..=bottom).rev().collect() };
    for &row in &order {
        let src = if up { row.checked_add(lines).filter(|&s| s <= bottom) } else { row.checked_sub(lines).filter(|&s| s >= top) };
        match m.kind {
            Kind::Text => {
                for col in left..=right {
                    let dst = text_cell(m, page, col, row);
                    let v = match src {
                        Some(s) => b.m.mmio_read(text_cell(m, page, col, s), 2),
                        None => u64::from(attr) << 8 | 0x20,
                    };
                    b.m.mmio_write(dst, 2, v);
                }
            }
            Kind::Linear8 => {
                let h = u64::from(m.char_height);
                for dy in 0..h {
                    for x in u64::from(left) * 8..(u64::from(right) + 1) * 8 {
                        let dst = 0xA_0000 + (u64::from(row) * h + dy) * u64::from(m.width) + x;
                        let v = match src {
                            Some(s) => b.m.mmio_read(0xA_0000 + (u64::from(s) * h + dy) * u64::from(m.width) + x, 1),
                            None => u64::from(attr),
                        };
                        b.m.mmio_write(dst, 1, v);
                    }
                }
            }
            Kind::Planar => {
                let h = u64::from(m.char_height);
                let line = u64::from(m.width) / 8;
                for plane in 0..4u8 {
                    set_seq(b, 2, 1 << plane);
                    set_gc(b, 4, plane);
                    for dy in 0..h {
                        for x in u64::from(left)..=u64::from(right) {
                            let dst = 0xA_0000 + (u64::from(row) * h + dy) * line + x;
                            let v = match src {
                                Some(s) => b.m.mmio_read(0xA_0000 + (u64::from(s) * h + dy) * line + x, 1),
                                None => if attr & (1 << plane) != 0 { 0xFF } else { 0 },
                            };
                            b.m.mmio_write(dst, 1, v);
                        }
                    }
                }
                set_seq(b, 2, 0x0F);
                set_gc(b, 4, 0);
            }
            Kind::Cga | Kind::Cga2 => {
                // Bytes a character cell is wide: 2 at 2 bits a pixel, 1 at 1.
                let cell = if m.kind == Kind::Cga { 2 } else { 1 };
                for dy in 0..u64::from(m.char_height) {
                    let y = u64::from(row) * 8 + dy;
                    let at = |y: u64, x: u64| m.memory + (y & 1) * 0x2000 + (y >> 1) * 80 + x;
                    for x in u64::from(left) * cell..(u64::from(right) + 1) * cell {
                        let v = match src {
                            Some(s) => b.m.mmio_read(at(u64::from(s) * 8 + dy, x), 1),
                            None => 0,
                        };
                        b.m.mmio_write(at(y, x), 1, v);
                    }
                }
            }
        }
    }
}

/// AH=0Eh: teletype output on the active page (BEL, BS, LF and CR act; the screen scrolls).
/// `colour` is the foreground in graphics modes.
pub(super) fn teletype(b: &mut Bios, ch: u8, colour: Option<u8>) {
    let page = b.bda8(bda::VIDEO_PAGE);
    let m = current(b);
    let (mut col, mut row) = cursor(b, page);
    let columns = m.columns as u8;
    let rows = b.bda8(bda::VIDEO_ROWS).max(1);
    match ch {
        0x07 => return,
        0x08 => col = col.saturating_sub(1),
        0x0A => row += 1,
        0x0D => col = 0,
        _ => {
            put(b, page, col, row, ch, if m.kind == Kind::Text { None } else { Some(colour.unwrap_or(0x0F)) });
            col += 1;
        }
    }
    if col >= columns {
        col = 0;
        row += 1;
    }
    if row > rows {
        let attr = if m.kind == Kind::Text { 0x07 } else { 0 };
        scroll(b, page, 1, attr, 0, 0, rows, columns - 1, true);
        row = rows;
    }
    set_cursor(b, page, col, row);
}

/// INT 10h.
pub(super) fn int10(b: &mut Bios, r: &mut Regs) -> Action {
    match r.ah() {
        0x00 => {
            if set_mode(b, r.al()) {
                let m = current(b);
                r.set_al(if m.number == 0x06 || m.number > 0x07 { 0x20 } else { 0x30 });
            }
        }
        0x01 => {
            b.set_bda16(bda::CURSOR_SHAPE, r.cx());
            let h = current(b).char_height;
            let (mut start, mut end) = (r.ch() & 0x3F, r.cl() & 0x1F);
            if h > 8 && start < 8 && end < 8 {
                // CGA-style shapes scaled to the taller cell (cursor emulation).
                start = start * h / 8;
                end = (end + 1) * h / 8 - 1;
            }
            crtc(b, 0x0A, start | (r.ch() & 0x20));
            crtc(b, 0x0B, end);
        }
        0x02 => set_cursor(b, r.bh(), r.dl(), r.dh()),
        0x03 => {
            let (col, row) = cursor(b, r.bh());
            r.set_dx(u16::from(row) << 8 | u16::from(col));
            r.set_cx(b.bda16(bda::CURSOR_SHAPE));
        }
        0x05 => {
            let page = r.al() & 7;
            let m = current(b);
            let start = u16::from(page) * m.page_size;
            b.set_bda8(bda::VIDEO_PAGE, page);
            b.set_bda16(bda::VIDEO_PAGE_START, start);
            crtc(b, 0x0C, (start / 2 >> 8) as u8);
            crtc(b, 0x0D, (start / 2) as u8);
            let (col, row) = cursor(b, page);
            set_cursor(b, page, col, row);
        }
        0x06 | 0x07 => {
            let page = b.bda8(bda::VIDEO_PAGE);
            scroll(b, page, r.al(), r.bh(), r.ch(), r.cl(), r.dh(), r.dl(), r.ah() == 0x06);
        }
        0x08 => {
            let m = current(b);
            if m.kind == Kind::Text {
                let (col, row) = cursor(b, r.bh());
                let v = b.m.mmio_read(text_cell(m, r.bh(), col, row), 2);
                r.set_ax(v as u16);
            } else {
                r.set_ax(0);
            }
        }
        0x09 | 0x0A => {
            let page = r.bh();
            let m = current(b);
            let (mut col, mut row) = cursor(b, page);
            let attr = if r.ah() == 0x09 || m.kind != Kind::Text { Some(r.bl()) } else { None };
            for _ in 0..r.cx() {
                put(b, page, col, row, r.al(), attr);
                col += 1;
                if u16::from(col) >= m.columns {
                    col = 0;
                    row += 1;
                    if row > b.bda8(bda::VIDEO_ROWS) {
                        break;
                    }
                }
            }
        }
        0x0B => {
            // CGA palette: BH=0 the background/border (palette register 0 / overscan).
            if r.bh() == 0 {
                set_palette_register(b, 0x11, r.bl() & 0x0F);
            }
        }
        0x0C | 0x0D => pixel(b, r),
        0x0E => teletype(b, r.al(), Some(r.bl())),
        0x0F => {
            r.set_ah(b.bda16(bda::VIDEO_COLUMNS) as u8);
            r.set_al(b.bda8(bda::VIDEO_MODE) | (b.bda8(bda::VIDEO_CTL) & 0x80));
            r.set_bh(b.bda8(bda::VIDEO_PAGE));
        }
        0x10 => palette(b, r),
        0x11 => character_generator(b, r),
        0x12 => alternate_select(b, r),
        0x13 => write_string(b, r),
        0x1A => {
            if r.al() == 0x00 {
                r.set_bx(0x0008);
            }
            r.set_al(0x1A);
        }
        0x4F => return super::vbe::int10_4f(b, r),
        other => tracing::debug!(function = format_args!("{other:#04x}"), al = r.al(), "INT 10h: function not supported"),
    }
    Action::Return
}

fn pixel(b: &mut Bios, r: &mut Regs) {
    let m = current(b);
    let (x, y) = (u64::from(r.cx()), u64::from(r.dx()));
    let write = r.ah() == 0x0C;
    match m.kind {
        Kind::Linear8 => {
            let at = 0xA_0000 + y * u64::from(m.width) + x;
            if write {
                let mut v = r.al();
                if v & 0x80 != 0 {
                    v = (v & 0x7F) ^ b.m.mmio_read(at, 1) as u8;
                }
                b.m.mmio_write(at, 1, u64::from(v));
            } else {
                r.set_al(b.m.mmio_read(at, 1) as u8);
            }
        }
        Kind::Planar => {
            let at = 0xA_0000 + y * u64::from(m.width) / 8 + x / 8;
            let bit = 0x80u8 >> (x & 7);
            if write {
                for plane in 0..4u8 {
                    set_gc(b, 4, plane);
                    let old = b.m.mmio_read(at, 1) as u8;
                    let on = r.al() & (1 << plane) != 0;
                    let v = if r.al() & 0x80 != 0 { old ^ if on { bit } else { 0 } } else if on { old | bit } else { old & !bit };
                    set_seq(b, 2, 1 << plane);
                    b.m.mmio_write(at, 1, u64::from(v));
                }
                set_seq(b, 2, 0x0F);
            } else {
                let mut v = 0;
                for plane in 0..4u8 {
                    set_gc(b, 4, plane);
                    if b.m.mmio_read(at, 1) as u8 & bit != 0 {
                        v |= 1 << plane;
                    }
                }
                r.set_al(v);
            }
            set_gc(b, 4, 0);
        }
        Kind::Cga2 => {
            let at = m.memory + (y & 1) * 0x2000 + (y >> 1) * 80 + x / 8;
            let bit = 0x80u8 >> (x & 7);
            let old = b.m.mmio_read(at, 1) as u8;
            if write {
                let on = r.al() & 1 != 0;
                let v = if r.al() & 0x80 != 0 { old ^ if on { bit } else { 0 } } else if on { old | bit } else { old & !bit };
                b.m.mmio_write(at, 1, u64::from(v));
            } else {
                r.set_al(u8::from(old & bit != 0));
            }
        }
        Kind::Cga => {
            let at = m.memory + (y & 1) * 0x2000 + (y >> 1) * 80 + x / 4;
            let shift = 6 - 2 * (x & 3);
            let old = b.m.mmio_read(at, 1) as u8;
            if write {
                let c = (r.al() & 3) << shift;
                let v = if r.al() & 0x80 != 0 { old ^ c } else { (old & !(3 << shift)) | c };
                b.m.mmio_write(at, 1, u64::from(v));
            } else {
                r.set_al(old >> shift & 3);
            }
        }
        Kind::Text => {}
    }
}

/// Input status 1, whose read resets the attribute controller's index flip-flop: 3BAh or
/// 3DAh, with the CRT controller.
fn input_status(b: &Bios) -> u16 {
    if b.bda16(bda::CRTC_BASE) == 0x3B4 { 0x3BA } else { 0x3DA }
}

fn set_palette_register(b: &mut Bios, index: u8, v: u8) {
    b.inb(input_status(b));
    b.outb(0x3C0, index);
    b.outb(0x3C0, v);
    b.outb(0x3C0, 0x20);
}

fn palette_register(b: &mut Bios, index: u8) -> u8 {
    b.inb(input_status(b));
    b.outb(0x3C0, index);
    let v = b.inb(0x3C1);
    b.inb(input_status(b));
    b.outb(0x3C0, 0x20);
    v
}

/// AH=10h: palette registers and the DAC.
fn palette(b: &mut Bios, r: &mut Regs) {
    let table = Regs::lin(r.es, r.dx());
    match r.al() {
        0x00 => set_palette_register(b, r.bl() & 0x1F, r.bh()),
        0x01 => set_palette_register(b, 0x11, r.bh()),
        0x02 => {
            for i in 0..17u8 {
                let v = b.r8(table + u64::from(i));
                set_palette_register(b, if i == 16 { 0x11 } else { i }, v);
            }
        }
        0x03 => {
            let mode = palette_register(b, 0x10);
            set_palette_register(b, 0x10, if r.bl() & 1 != 0 { mode | 0x08 } else { mode & !0x08 });
        }
        0x07 => {
            let v = palette_register(b, r.bl() & 0x1F);
            r.set_bh(v);
        }
        0x08 => {
            let v = palette_register(b, 0x11);
            r.set_bh(v);
        }
        0x09 => {
            for i in 0..17u8 {
                let v = palette_register(b, if i == 16 { 0x11 } else { i });
                b.w8(table + u64::from(i), v);
            }
        }
        0x10 => {
            b.outb(0x3C8, r.bl());
            b.outb(0x3C9, r.dh());
            b.outb(0x3C9, r.ch());
            b.outb(0x3C9, r.cl());
        }
        0x12 => {
            b.outb(0x3C8, r.bl());
            for i in 0..u64::from(r.cx()) * 3 {
                let v = b.r8(table + i);
                b.outb(0x3C9, v);
            }
        }
        0x15 => {
            b.outb(0x3C7, r.bl());
            let (red, green, blue) = (b.inb(0x3C9), b.inb(0x3C9), b.inb(0x3C9));
            r.set_dh(red);
            r.set_ch(green);
            r.set_cl(blue);
        }
        0x17 => {
            b.outb(0x3C7, r.bl());
            for i in 0..u64::from(r.cx()) * 3 {
                let v = b.inb(0x3C9);
                b.w8(table + i, v);
            }
        }
        0x18 => b.outb(0x3C6, r.bl()),
        0x19 => {
            let v = b.inb(0x3C6);
            r.set_bl(v);
        }
        0x1A => r.set_bx(0),
        other => tracing::debug!(function = format_args!("10{other:02x}"), "INT 10h: palette function not supported"),
    }
}

/// AH=11h: fonts.
fn character_generator(b: &mut Bios, r: &mut Regs) {
    let al = r.al();
    match al {
        0x00 | 0x10 => {
            let h = r.bh().clamp(1, 32);
            let mut data = vec![0u8; usize::from(r.cx()) * usize::from(h)];
            b.read(Regs::lin(r.es, r.bp()), &mut data);
            load_font(b, &data, h, r.dx(), r.cx(), r.bl());
            if al == 0x10 {
                set_rows(b, h);
            }
        }
        0x01 | 0x11 | 0x02 | 0x12 | 0x04 | 0x14 => {
            let h = match al & 0x0F {
                0x01 => 14,
                0x02 => 8,
                _ => 16,
            };
            let font = rom_font(b, h);
            load_font(b, &font, h, 0, 256, r.bl());
            if al & 0x10 != 0 {
                set_rows(b, h);
            }
        }
        0x03 => set_seq(b, 3, r.bl()),
        0x20 => {
            b.w16(0x1F * 4, r.bp());
            b.w16(0x1F * 4 + 2, r.es);
        }
        0x21..=0x24 => {
            if al == 0x21 {
                b.w16(0x43 * 4, r.bp());
                b.w16(0x43 * 4 + 2, r.es);
            } else if let Some(t) = font_table(b) {
                b.w16(0x43 * 4, match al {
                    0x22 => t[1],
                    0x23 => t[2],
                    _ => t[0],
                });
                b.w16(0x43 * 4 + 2, 0xF000);
            }
        }
        0x30 => {
            let t = font_table(b).unwrap_or([0; 4]);
            let (seg, off) = match r.bh() {
                0x00 => (b.r16(0x1F * 4 + 2), b.r16(0x1F * 4)),
                0x01 => (b.r16(0x43 * 4 + 2), b.r16(0x43 * 4)),
                0x02 | 0x05 => (0xF000, t[1]),
                0x03 => (0xF000, t[2]),
                0x04 => (0xF000, t[3]),
                _ => (0xF000, t[0]),
            };
            r.es = seg;
            r.ebp = (r.ebp & 0xFFFF_0000) | u32::from(off);
            r.set_cx(b.bda16(bda::CHAR_HEIGHT));
            r.set_dl(b.bda8(bda::VIDEO_ROWS));
        }
        other => tracing::debug!(function = format_args!("11{other:02x}"), "INT 10h: font function not supported"),
    }
}

/// After loading a font of `height` lines in text mode: the character cell, the rows that fit
/// 400 lines, and the cursor.
fn set_rows(b: &mut Bios, height: u8) {
    let rows = (400 / u16::from(height)).clamp(1, 255) as u8;
    crtc(b, 0x09, (height - 1) | 0x40);
    crtc(b, 0x0A, height.saturating_sub(3));
    crtc(b, 0x0B, height.saturating_sub(2));
    crtc(b, 0x12, ((u16::from(rows) * u16::from(height)) - 1) as u8);
    b.set_bda8(bda::VIDEO_ROWS, rows - 1);
    b.set_bda16(bda::CHAR_HEIGHT, u16::from(height));
    let cols = b.bda16(bda::VIDEO_COLUMNS);
    b.set_bda16(bda::VIDEO_PAGE_SIZE, (u16::from(rows) * cols * 2).next_multiple_of(0x100));
}

/// AH=12h: alternate select.
fn alternate_select(b: &mut Bios, r: &mut Regs) {
    match r.bl() {
        0x10 => {
            r.set_bh(0);
            r.set_bl(0x03);
            r.set_cx(0x0009);
        }
        0x30..=0x36 => {
            if r.bl() == 0x36 {
                let v = seq(b, 1);
                set_seq(b, 1, if r.al() == 1 { v | 0x20 } else { v & !0x20 });
            }
            r.set_al(0x12);
        }
        0x20 => r.set_al(0x12),
        other => tracing::debug!(bl = other, "INT 10h AH=12h: subfunction not supported"),
    }
}

/// AH=13h: write a string at DH/DL of page BH; AL bit 0 moves the cursor, bit 1 says the
/// string alternates characters and attributes.
fn write_string(b: &mut Bios, r: &mut Regs) {
    let page = r.bh();
    let saved = cursor(b, page);
    let active = b.bda8(bda::VIDEO_PAGE);
    set_cursor(b, page, r.dl(), r.dh());
    let with_attrs = r.al() & 2 != 0;
    let mut at = Regs::lin(r.es, r.bp());
    for _ in 0..r.cx() {
        let ch = b.r8(at);
        at += 1;
        let attr = if with_attrs {
            at += 1;
            b.r8(at - 1)
        } else {
            r.bl()
        };
        // Teletype rules on the given page.
        b.set_bda8(bda::VIDEO_PAGE, page);
        match ch {
            0x07 | 0x08 | 0x0A | 0x0D => teletype(b, ch, Some(attr)),
            _ => {
                let (col, row) = cursor(b, page);
                put(b, page, col, row, ch, Some(attr));
                teletype_advance(b, page);
            }
        }
        b.set_bda8(bda::VIDEO_PAGE, active);
    }
    if r.al() & 1 == 0 {
        set_cursor(b, page, saved.0, saved.1);
    }
}

fn teletype_advance(b: &mut Bios, page: u8) {
    let m = current(b);
    let (mut col, mut row) = cursor(b, page);
    col += 1;
    if u16::from(col) >= m.columns {
        col = 0;
        row += 1;
    }
    let rows = b.bda8(bda::VIDEO_ROWS);
    if row > rows {
        scroll(b, page, 1, 0x07, 0, 0, rows, (m.columns - 1) as u8, true);
        row = rows;
    }
    set_cursor(b, page, col, row);
}
