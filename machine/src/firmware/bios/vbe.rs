//! INT 10h AH=4Fh: VESA BIOS Extension 3.0 over the VGA's Bochs DISPI registers (ports
//! 0x1CE/0x1CF), with linear framebuffer modes at the VGA's BAR0 and a 64 KiB bank window at
//! A0000. The mode numbers are the VESA ones and SeaBIOS's Bochs list; the current mode is read
//! back from the DISPI registers, so nothing is remembered on the host side.

use super::{Action, Bios, Regs};
use crate::devices::vga::vbe::{self as dispi, DATA_PORT, INDEX_PORT};
use crate::pci::devfn;

/// The VGA's PCI function.
const VGA: u8 = devfn(2, 0);

/// (mode, width, height, bits per pixel).
const MODES: &[(u16, u16, u16, u8)] = &[
    (0x100, 640, 400, 8),
    (0x101, 640, 480, 8),
    (0x103, 800, 600, 8),
    (0x105, 1024, 768, 8),
    (0x107, 1280, 1024, 8),
    (0x10D, 320, 200, 15),
    (0x10E, 320, 200, 16),
    (0x10F, 320, 200, 24),
    (0x110, 640, 480, 15),
    (0x111, 640, 480, 16),
    (0x112, 640, 480, 24),
    (0x113, 800, 600, 15),
    (0x114, 800, 600, 16),
    (0x115, 800, 600, 24),
    (0x116, 1024, 768, 15),
    (0x117, 1024, 768, 16),
    (0x118, 1024, 768, 24),
    (0x119, 1280, 1024, 15),
    (0x11A, 1280, 1024, 16),
    (0x11B, 1280, 1024, 24),
    (0x140, 320, 200, 32),
    (0x141, 640, 400, 32),
    (0x142, 640, 480, 32),
    (0x143, 800, 600, 32),
    (0x144, 1024, 768, 32),
    (0x145, 1280, 1024, 32),
    (0x146, 320, 200, 8),
    (0x147, 1600, 1200, 32),
    (0x148, 1152, 864, 8),
    (0x149, 1152, 864, 15),
    (0x14A, 1152, 864, 16),
    (0x14B, 1152, 864, 24),
    (0x14C, 1152, 864, 32),
    (0x178, 1280, 800, 16),
    (0x179, 1280, 800, 24),
    (0x17A, 1280, 800, 32),
    (0x17B, 1280, 960, 16),
    (0x17C, 1280, 960, 24),
    (0x17D, 1280, 960, 32),
    (0x17E, 1440, 900, 16),
    (0x17F, 1440, 900, 24),
    (0x180, 1440, 900, 32),
    (0x181, 1920, 1080, 16),
    (0x182, 1920, 1080, 24),
    (0x183, 1920, 1080, 32),
];

fn read(b: &mut Bios, index: usize) -> u16 {
    b.m.io_write(INDEX_PORT, 2, index as u32);
    b.m.io_read(DATA_PORT, 2) as u16
}

fn write(b: &mut Bios, index: usize, v: u16) {
    b.m.io_write(INDEX_PORT, 2, index as u32);
    b.m.io_write(DATA_PORT, 2, u32::from(v));
}

/// Video memory in bytes.
fn vram(b: &mut Bios) -> u32 {
    u32::from(read(b, dispi::VIDEO_MEMORY_64K)) << 16
}

fn bytes_per_pixel(bpp: u8) -> u32 {
    u32::from(bpp).div_ceil(8)
}

/// The modes that fit video memory.
fn modes(b: &mut Bios) -> Vec<(u16, u16, u16, u8)> {
    let vram = vram(b);
    MODES.iter().copied().filter(|&(_, w, h, bpp)| u32::from(w) * u32::from(h) * bytes_per_pixel(bpp) <= vram).collect()
}

/// Back to VGA modes (for INT 10h AH=00h).
pub(super) fn disable(b: &mut Bios) {
    if read(b, dispi::ENABLE) & dispi::ENABLED != 0 {
        write(b, dispi::ENABLE, 0);
    }
}

const OK: u16 = 0x004F;
const FAILED: u16 = 0x014F;
const INVALID_NOW: u16 = 0x034F;

pub(super) fn int10_4f(b: &mut Bios, r: &mut Regs) -> Action {
    let status = match r.al() {
        0x00 => controller_info(b, r),
        0x01 => mode_info(b, r),
        0x02 => set_mode(b, r),
        0x03 => {
            r.set_bx(current_mode(b));
            OK
        }
        0x04 => save_restore(b, r),
        0x05 => {
            if r.bh() == 0 {
                write(b, dispi::BANK, r.dx());
            } else {
                let bank = read(b, dispi::BANK);
                r.set_dx(bank);
            }
            OK
        }
        0x06 => scan_line(b, r),
        0x07 => display_start(b, r),
        0x08 => {
            let en = read(b, dispi::ENABLE);
            if r.bl() == 0 {
                let eight = r.bh() >= 8;
                write(b, dispi::ENABLE, if eight { en | dispi::DAC_8BIT } else { en & !dispi::DAC_8BIT });
            }
            let en = read(b, dispi::ENABLE);
            r.set_bh(if en & dispi::DAC_8BIT != 0 { 8 } else { 6 });
            OK
        }
        0x09 => palette(b, r),
        other => {
            tracing::debug!(function = format_args!("4F{other:02x}"), "VBE function not supported");
            FAILED
        }
    };
    r.set_ax(status);
    Action::Return
}

/// 4F00h: the VbeInfoBlock at ES:DI, with the mode list and strings in its reserved and OEM
/// areas (VBE 3.0 allows that when the caller asks with "VBE2").
fn controller_info(b: &mut Bios, r: &mut Regs) -> u16 {
    let at = Regs::lin(r.es, r.di());
    let mut sig = [0u8; 4];
    b.read(at, &mut sig);
    let vbe2 = &sig == b"VBE2";
    let mut blk = vec![0u8; if vbe2 { 512 } else { 256 }];
    blk[0..4].copy_from_slice(b"VESA");
    blk[4..6].copy_from_slice(&0x0300u16.to_le_bytes());
    let far = |off: usize| u32::from(r.es) << 16 | u32::from(r.di().wrapping_add(off as u16));
    // Strings at +0x100 (OEM area) for VBE2 callers, else in the reserved area after the list.
    let modes = modes(b);
    let list = 0x22;
    for (i, m) in modes.iter().enumerate() {
        blk[list + 2 * i..list + 2 * i + 2].copy_from_slice(&m.0.to_le_bytes());
    }
    let end = list + 2 * modes.len();
    blk[end..end + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    let strings_at = if vbe2 { 0x100 } else { end + 2 };
    let mut s = strings_at;
    let mut put = |blk: &mut Vec<u8>, text: &[u8]| {
        let p = s;
        blk[s..s + text.len()].copy_from_slice(text);
        s += text.len() + 1;
        p
    };
    let oem = put(&mut blk, b"Ferrite VBE");
    let vendor = put(&mut blk, b"Ferrite");
    let product = put(&mut blk, b"Ferrite standard VGA");
    let revision = put(&mut blk, b"1");
    blk[6..10].copy_from_slice(&far(oem).to_le_bytes());
    // Capabilities: the DAC can be switched to 8 bits.
    blk[10..14].copy_from_slice(&1u32.to_le_bytes());
    blk[14..18].copy_from_slice(&far(list).to_le_bytes());
    let total = (vram(b) >> 16) as u16;
    blk[18..20].copy_from_slice(&total.to_le_bytes());
    if vbe2 {
        blk[20..22].copy_from_slice(&0x0100u16.to_le_bytes());
        blk[22..26].copy_from_slice(&far(vendor).to_le_bytes());
        blk[26..30].copy_from_slice(&far(product).to_le_bytes());
        blk[30..34].copy_from_slice(&far(revision).to_le_bytes());
    }
    b.write(at, &blk);
    OK
}

/// The linear framebuffer's address: the VGA's BAR0.
fn lfb(b: &mut Bios) -> u32 {
    b.pci_read(VGA, crate::pci::config::BAR0, 4) & !0xF
}

/// 4F01h: the ModeInfoBlock of mode CX at ES:DI.
fn mode_info(b: &mut Bios, r: &mut Regs) -> u16 {
    let number = r.cx() & 0x1FF;
    let Some(&(_, w, h, bpp)) = modes(b).iter().find(|m| m.0 == number) else { return FAILED };
    let line = u32::from(w) * bytes_per_pixel(bpp);
    let pages = (vram(b) / (line * u32::from(h))).saturating_sub(1).min(255) as u8;
    let mut m = [0u8; 256];
    let w16 = |m: &mut [u8; 256], at: usize, v: u16| m[at..at + 2].copy_from_slice(&v.to_le_bytes());
    // Supported, optional information, colour, graphics, linear framebuffer.
    w16(&mut m, 0x00, 0x009B);
    m[0x02] = 0x07; // window A: exists, readable, writable
    w16(&mut m, 0x04, 64);
    w16(&mut m, 0x06, 64);
    w16(&mut m, 0x08, 0xA000);
    w16(&mut m, 0x10, line as u16);
    w16(&mut m, 0x12, w);
    w16(&mut m, 0x14, h);
    m[0x16] = 8;
    m[0x17] = 16;
    m[0x18] = 1;
    m[0x19] = bpp;
    m[0x1A] = (line * u32::from(h)).div_ceil(0x1_0000) as u8;
    m[0x1B] = if bpp == 8 { 4 } else { 6 }; // packed pixel or direct colour
    m[0x1D] = pages;
    m[0x1E] = 1;
    let masks: [u8; 8] = match bpp {
        15 => [5, 10, 5, 5, 5, 0, 1, 15],
        16 => [5, 11, 6, 5, 5, 0, 0, 0],
        24 => [8, 16, 8, 8, 8, 0, 0, 0],
        32 => [8, 16, 8, 8, 8, 0, 8, 24],
        _ => [0; 8],
    };
    m[0x1F..0x27].copy_from_slice(&masks);
    let lfb = lfb(b);
    m[0x28..0x2C].copy_from_slice(&lfb.to_le_bytes());
    w16(&mut m, 0x32, line as u16);
    m[0x34] = pages;
    m[0x35] = pages;
    m[0x36..0x3E].copy_from_slice(&masks);
    b.write(Regs::lin(r.es, r.di()), &m);
    OK
}

/// 4F02h: mode BX (bit 14 the linear framebuffer, bit 15 keep video memory).
fn set_mode(b: &mut Bios, r: &mut Regs) -> u16 {
    let bx = r.bx();
    let number = bx & 0x1FF;
    if number < 0x100 {
        let mut rr = *r;
        rr.set_ax(number | (bx & 0x8000) >> 8);
        return if super::video::int10(b, &mut rr) == Action::Return && b.bda8(super::bda::VIDEO_MODE) == number as u8 {
            OK
        } else {
            FAILED
        };
    }
    let Some(&(_, w, h, bpp)) = modes(b).iter().find(|m| m.0 == number) else { return FAILED };
    let dac8 = read(b, dispi::ENABLE) & dispi::DAC_8BIT;
    write(b, dispi::ENABLE, 0);
    write(b, dispi::BPP, u16::from(bpp));
    write(b, dispi::XRES, w);
    write(b, dispi::YRES, h);
    write(b, dispi::BANK, 0);
    let mut en = dispi::ENABLED | dac8;
    if bx & 0x4000 != 0 {
        en |= dispi::LFB_ENABLED;
    }
    if bx & 0x8000 != 0 {
        en |= dispi::NOCLEARMEM;
    }
    write(b, dispi::ENABLE, en);
    // The VGA side as a graphics mode with A0000 decoded for the bank window.
    b.outb(0x3CE, 0x06);
    b.outb(0x3CF, 0x05);
    b.outb(0x3C4, 0x04);
    b.outb(0x3C5, 0x0E);
    // The BIOS data area says "graphics" to those who look (mode byte as SeaBIOS leaves it).
    b.set_bda8(super::bda::VIDEO_MODE, 0x62);
    OK
}

fn current_mode(b: &mut Bios) -> u16 {
    let en = read(b, dispi::ENABLE);
    if en & dispi::ENABLED == 0 {
        return u16::from(b.bda8(super::bda::VIDEO_MODE));
    }
    let (w, h, bpp) = (read(b, dispi::XRES), read(b, dispi::YRES), read(b, dispi::BPP));
    let number = MODES.iter().find(|m| (m.1, m.2, u16::from(m.3)) == (w, h, bpp)).map_or(0x100, |m| m.0);
    number | if en & dispi::LFB_ENABLED != 0 { 0x4000 } else { 0 }
}

/// 4F04h: the DISPI registers are the state (DL=00h size in 64-byte blocks, 01h save, 02h
/// restore, at ES:BX).
fn save_restore(b: &mut Bios, r: &mut Regs) -> u16 {
    const REGS: [usize; 9] = [dispi::XRES, dispi::YRES, dispi::BPP, dispi::BANK, dispi::VIRT_WIDTH, dispi::X_OFFSET, dispi::Y_OFFSET, dispi::ENABLE, dispi::ID];
    let at = Regs::lin(r.es, r.bx());
    match r.dl() {
        0x00 => {
            r.set_bx(1);
            OK
        }
        0x01 => {
            for (i, &reg) in REGS.iter().enumerate() {
                let v = read(b, reg);
                b.w16(at + 2 * i as u64, v);
            }
            OK
        }
        0x02 => {
            write(b, dispi::ENABLE, 0);
            for (i, &reg) in REGS.iter().enumerate() {
                let v = b.r16(at + 2 * i as u64);
                if reg == dispi::ENABLE {
                    write(b, reg, v | dispi::NOCLEARMEM);
                } else if reg != dispi::ID {
                    write(b, reg, v);
                }
            }
            OK
        }
        _ => FAILED,
    }
}

/// 4F06h: the logical scan line length.
fn scan_line(b: &mut Bios, r: &mut Regs) -> u16 {
    if read(b, dispi::ENABLE) & dispi::ENABLED == 0 {
        return INVALID_NOW;
    }
    let bytes = bytes_per_pixel(read(b, dispi::BPP) as u8);
    match r.bl() {
        0x00 => write(b, dispi::VIRT_WIDTH, r.cx()),
        0x02 => write(b, dispi::VIRT_WIDTH, (u32::from(r.cx()) / bytes) as u16),
        0x01 | 0x03 => {}
        _ => return FAILED,
    }
    let width = if r.bl() == 0x03 { (vram(b) / bytes / u32::from(read(b, dispi::YRES).max(1))).min(0xFFFF) as u16 } else { read(b, dispi::VIRT_WIDTH) };
    let line = u32::from(width) * bytes;
    r.set_bx(line.min(0xFFFF) as u16);
    r.set_cx(width);
    r.set_dx((vram(b) / line.max(1)).min(0xFFFF) as u16);
    OK
}

/// 4F07h: the display start.
fn display_start(b: &mut Bios, r: &mut Regs) -> u16 {
    match r.bl() {
        0x00 | 0x80 => {
            write(b, dispi::X_OFFSET, r.cx());
            write(b, dispi::Y_OFFSET, r.dx());
            OK
        }
        0x01 => {
            r.set_bh(0);
            let (x, y) = (read(b, dispi::X_OFFSET), read(b, dispi::Y_OFFSET));
            r.set_cx(x);
            r.set_dx(y);
            OK
        }
        _ => FAILED,
    }
}

/// 4F09h: DAC entries (blue, green, red, alignment) at ES:DI.
fn palette(b: &mut Bios, r: &mut Regs) -> u16 {
    let at = Regs::lin(r.es, r.di());
    let shift = if read(b, dispi::ENABLE) & dispi::DAC_8BIT != 0 { 0 } else { 2 };
    let (start, count) = (r.dx(), r.cx());
    if u32::from(start) + u32::from(count) > 256 {
        return FAILED;
    }
    match r.bl() {
        0x00 | 0x80 => {
            b.outb(0x3C8, start as u8);
            for i in 0..u64::from(count) {
                let mut e = [0u8; 4];
                b.read(at + 4 * i, &mut e);
                for c in [e[2], e[1], e[0]] {
                    b.outb(0x3C9, c >> shift);
                }
            }
            OK
        }
        0x01 => {
            b.outb(0x3C7, start as u8);
            for i in 0..u64::from(count) {
                let (red, green, blue) = (b.inb(0x3C9), b.inb(0x3C9), b.inb(0x3C9));
                b.write(at + 4 * i, &[blue << shift, green << shift, red << shift, 0]);
            }
            OK
        }
        _ => FAILED,
    }
}
