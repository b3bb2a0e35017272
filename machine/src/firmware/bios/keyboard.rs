//! The keyboard: INT 09h's translation of set 1 scan codes (the 8042 translates the keyboard's
//! set 2) into the BIOS key codes queued in the BIOS data area, with the shift states at
//! 40:17, 40:18 and 40:96 (IBM PC/AT Technical Reference, "Keyboard"); and INT 16h, whose
//! waits halt the CPU until the next interrupt instead of spinning.

use super::{bda, Action, Bios, Regs};

/// 40:17 bits.
const RSHIFT: u8 = 0x01;
const LSHIFT: u8 = 0x02;
const CTRL: u8 = 0x04;
const ALT: u8 = 0x08;
const SCROLL: u8 = 0x10;
const NUM: u8 = 0x20;
const CAPS: u8 = 0x40;
const INSERT: u8 = 0x80;
/// 40:96 bits.
const LAST_E1: u8 = 0x01;
const LAST_E0: u8 = 0x02;
const RCTRL: u8 = 0x04;
const RALT: u8 = 0x08;
const KBD_101: u8 = 0x10;

/// Key codes for set 1 scan codes 01h-58h: normal, shift, ctrl, alt (0 = none).
#[rustfmt::skip]
const KEYS: [[u16; 4]; 0x59] = [
    [0, 0, 0, 0],
    [0x011B, 0x011B, 0x011B, 0x0100], [0x0231, 0x0221, 0, 0x7800], [0x0332, 0x0340, 0x0300, 0x7900],
    [0x0433, 0x0423, 0, 0x7A00], [0x0534, 0x0524, 0, 0x7B00], [0x0635, 0x0625, 0, 0x7C00],
    [0x0736, 0x075E, 0x071E, 0x7D00], [0x0837, 0x0826, 0, 0x7E00], [0x0938, 0x092A, 0, 0x7F00],
    [0x0A39, 0x0A28, 0, 0x8000], [0x0B30, 0x0B29, 0, 0x8100], [0x0C2D, 0x0C5F, 0x0C1F, 0x8200],
    [0x0D3D, 0x0D2B, 0, 0x8300], [0x0E08, 0x0E08, 0x0E7F, 0x0E00], [0x0F09, 0x0F00, 0x9400, 0xA500],
    [0x1071, 0x1051, 0x1011, 0x1000], [0x1177, 0x1157, 0x1117, 0x1100], [0x1265, 0x1245, 0x1205, 0x1200],
    [0x1372, 0x1352, 0x1312, 0x1300], [0x1474, 0x1454, 0x1414, 0x1400], [0x1579, 0x1559, 0x1519, 0x1500],
    [0x1675, 0x1655, 0x1615, 0x1600], [0x1769, 0x1749, 0x1709, 0x1700], [0x186F, 0x184F, 0x180F, 0x1800],
    [0x1970, 0x1950, 0x1910, 0x1900], [0x1A5B, 0x1A7B, 0x1A1B, 0x1A00], [0x1B5D, 0x1B7D, 0x1B1D, 0x1B00],
    [0x1C0D, 0x1C0D, 0x1C0A, 0x1C00], [0, 0, 0, 0],
    [0x1E61, 0x1E41, 0x1E01, 0x1E00], [0x1F73, 0x1F53, 0x1F13, 0x1F00], [0x2064, 0x2044, 0x2004, 0x2000],
    [0x2166, 0x2146, 0x2106, 0x2100], [0x2267, 0x2247, 0x2207, 0x2200], [0x2368, 0x2348, 0x2308, 0x2300],
    [0x246A, 0x244A, 0x240A, 0x2400], [0x256B, 0x254B, 0x250B, 0x2500], [0x266C, 0x264C, 0x260C, 0x2600],
    [0x273B, 0x273A, 0, 0x2700], [0x2827, 0x2822, 0, 0x2800], [0x2960, 0x297E, 0, 0x2900],
    [0, 0, 0, 0],
    [0x2B5C, 0x2B7C, 0x2B1C, 0x2B00], [0x2C7A, 0x2C5A, 0x2C1A, 0x2C00], [0x2D78, 0x2D58, 0x2D18, 0x2D00],
    [0x2E63, 0x2E43, 0x2E03, 0x2E00], [0x2F76, 0x2F56, 0x2F16, 0x2F00], [0x3062, 0x3042, 0x3002, 0x3000],
    [0x316E, 0x314E, 0x310E, 0x3100], [0x326D, 0x324D, 0x320D, 0x3200], [0x332C, 0x333C, 0, 0x3300],
    [0x342E, 0x343E, 0, 0x3400], [0x352F, 0x353F, 0, 0x3500], [0, 0, 0, 0],
    [0x372A, 0x372A, 0x9600, 0x3700], [0, 0, 0, 0], [0x3920, 0x3920, 0x3920, 0x3920], [0, 0, 0, 0],
    [0x3B00, 0x5400, 0x5E00, 0x6800], [0x3C00, 0x5500, 0x5F00, 0x6900], [0x3D00, 0x5600, 0x6000, 0x6A00],
    [0x3E00, 0x5700, 0x6100, 0x6B00], [0x3F00, 0x5800, 0x6200, 0x6C00], [0x4000, 0x5900, 0x6300, 0x6D00],
    [0x4100, 0x5A00, 0x6400, 0x6E00], [0x4200, 0x5B00, 0x6500, 0x6F00], [0x4300, 0x5C00, 0x6600, 0x7000],
    [0x4400, 0x5D00, 0x6700, 0x7100], [0, 0, 0, 0], [0, 0, 0, 0],
    [0x4700, 0x4737, 0x7700, 0], [0x4800, 0x4838, 0x8D00, 0], [0x4900, 0x4939, 0x8400, 0],
    [0x4A2D, 0x4A2D, 0x8E00, 0x4A00], [0x4B00, 0x4B34, 0x7300, 0], [0x4C00, 0x4C35, 0x8F00, 0],
    [0x4D00, 0x4D36, 0x7400, 0], [0x4E2B, 0x4E2B, 0x9000, 0x4E00], [0x4F00, 0x4F31, 0x7500, 0],
    [0x5000, 0x5032, 0x9100, 0], [0x5100, 0x5133, 0x7600, 0], [0x5200, 0x5230, 0x9200, 0],
    [0x5300, 0x532E, 0x9300, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0x565C, 0x567C, 0, 0],
    [0x8500, 0x8700, 0x8900, 0x8B00], [0x8600, 0x8800, 0x8A00, 0x8C00],
];

/// The keyboard buffer at 40:1E-40:3E, 8042 translation on, the keyboard's interrupt on.
pub(super) fn init(b: &mut Bios) {
    b.set_bda16(bda::KBD_HEAD, 0x1E);
    b.set_bda16(bda::KBD_TAIL, 0x1E);
    b.set_bda16(bda::KBD_START, 0x1E);
    b.set_bda16(bda::KBD_END, 0x3E);
    b.set_bda8(bda::KBD_FLAGS3, KBD_101);
    // Command byte: keyboard interrupt, system flag, translation; the mouse port off until a
    // driver wants it.
    b.outb(0x64, 0x60);
    b.outb(0x60, 0x65);
}

/// Queues a key code; false when the buffer is full.
fn enqueue(b: &mut Bios, code: u16) -> bool {
    let (start, end) = (b.bda16(bda::KBD_START), b.bda16(bda::KBD_END));
    let head = b.bda16(bda::KBD_HEAD);
    let tail = b.bda16(bda::KBD_TAIL);
    let mut next = tail.wrapping_add(2);
    if next >= end {
        next = start;
    }
    if next == head {
        return false;
    }
    b.set_bda16(tail.into(), code);
    b.set_bda16(bda::KBD_TAIL, next);
    true
}

fn peek(b: &Bios) -> Option<u16> {
    let head = b.bda16(bda::KBD_HEAD);
    (head != b.bda16(bda::KBD_TAIL)).then(|| b.bda16(head.into()))
}

fn dequeue(b: &mut Bios) -> Option<u16> {
    let code = peek(b)?;
    let mut head = b.bda16(bda::KBD_HEAD).wrapping_add(2);
    if head >= b.bda16(bda::KBD_END) {
        head = b.bda16(bda::KBD_START);
    }
    b.set_bda16(bda::KBD_HEAD, head);
    Some(code)
}

/// What the old functions (AH=00h/01h) give for an extended key code: the E0h marker of the
/// grey keys becomes 0; keys the 84-key keyboard lacked are skipped.
fn compatible(code: u16) -> Option<u16> {
    let (scan, ascii) = ((code >> 8) as u8, code as u8);
    if scan == 0xE0 {
        let scan: u16 = if ascii == 0x2F { 0x35 } else { 0x1C };
        return Some(scan << 8 | u16::from(ascii));
    }
    if scan > 0x84 && ascii == 0 {
        return None;
    }
    Some(if ascii == 0xE0 { code & 0xFF00 } else { code })
}

/// SVC_KEYSTROKE (from INT 09h): the scan code in AL.
pub(super) fn keystroke(b: &mut Bios, r: &mut Regs) -> Action {
    let code = r.al();
    let mut f0 = b.bda8(bda::KBD_FLAGS0);
    let mut f1 = b.bda8(bda::KBD_FLAGS1);
    let mut f3 = b.bda8(bda::KBD_FLAGS3);
    let e0 = f3 & LAST_E0 != 0;
    f3 &= !(LAST_E0 | LAST_E1);
    match code {
        0xE0 => f3 |= LAST_E0,
        0xE1 => f3 |= LAST_E1,
        // Controller and keyboard answers, not keys.
        0x00 | 0xAA | 0xEE | 0xFA | 0xFC | 0xFD | 0xFE | 0xFF => {}
        _ => {
            let release = code & 0x80 != 0;
            let key = code & 0x7F;
            match (key, e0) {
                (0x2A, false) => set(&mut f0, LSHIFT, !release),
                (0x36, false) => set(&mut f0, RSHIFT, !release),
                // Fake shifts around grey keys.
                (0x2A | 0x36, true) => {}
                (0x1D, _) => {
                    if e0 {
                        set(&mut f3, RCTRL, !release);
                    } else {
                        set(&mut f1, 0x01, !release);
                    }
                    set(&mut f0, CTRL, f1 & 0x01 != 0 || f3 & RCTRL != 0);
                }
                (0x38, _) => {
                    if e0 {
                        set(&mut f3, RALT, !release);
                    } else {
                        set(&mut f1, 0x02, !release);
                    }
                    set(&mut f0, ALT, f1 & 0x02 != 0 || f3 & RALT != 0);
                }
                (0x3A, false) => toggle(&mut f0, &mut f1, CAPS, 0x40, release),
                (0x45, false) => toggle(&mut f0, &mut f1, NUM, 0x20, release),
                (0x46, false) => toggle(&mut f0, &mut f1, SCROLL, 0x10, release),
                (0x52, _) if !release && f0 & (ALT | CTRL) == 0 => {
                    f0 ^= INSERT;
                    queue_key(b, key, e0, f0);
                }
                (0x53, _) if !release && f0 & CTRL != 0 && f0 & ALT != 0 => {
                    // Ctrl-Alt-Del: a warm boot (the 8042's reset line).
                    b.set_bda16(bda::WARM_BOOT, 0x1234);
                    b.outb(0x64, 0xFE);
                }
                _ if !release => queue_key(b, key, e0, f0),
                _ => {}
            }
        }
    }
    b.set_bda8(bda::KBD_FLAGS0, f0);
    b.set_bda8(bda::KBD_FLAGS1, f1);
    b.set_bda8(bda::KBD_FLAGS3, f3);
    Action::Return
}

fn set(flags: &mut u8, bit: u8, on: bool) {
    if on {
        *flags |= bit;
    } else {
        *flags &= !bit;
    }
}

/// A lock key: the lock toggles on the press (not on the typematic repeats), the "held" bit
/// in 40:18 follows the key.
fn toggle(f0: &mut u8, f1: &mut u8, lock: u8, held: u8, release: bool) {
    if !release && *f1 & held == 0 {
        *f0 ^= lock;
    }
    set(f1, held, !release);
}

fn queue_key(b: &mut Bios, key: u8, e0: bool, f0: u8) {
    let Some(row) = KEYS.get(usize::from(key)) else { return };
    let shift = f0 & (LSHIFT | RSHIFT) != 0;
    let mut code = if f0 & ALT != 0 {
        row[3]
    } else if f0 & CTRL != 0 {
        row[2]
    } else {
        let keypad = (0x47..=0x53).contains(&key) && key != 0x4A && key != 0x4E;
        let letter = (row[0] as u8).is_ascii_lowercase();
        let upper = if keypad && !e0 {
            shift != (f0 & NUM != 0)
        } else if letter {
            shift != (f0 & CAPS != 0)
        } else {
            shift
        };
        row[usize::from(upper)]
    };
    if e0 {
        // The grey keys: keypad Enter and /, and the cursor block, marked with E0h.
        code = match key {
            0x1C => 0xE000 | (code & 0xFF),
            0x35 => 0xE02F,
            0x47..=0x53 if f0 & (ALT | CTRL) == 0 => code & 0xFF00 | 0xE0,
            0x47..=0x53 if f0 & ALT != 0 => u16::from(key + 0x50) << 8,
            _ => code,
        };
    }
    if code != 0 && !enqueue(b, code) {
        tracing::debug!("BIOS: keyboard buffer full, key dropped");
    }
}

/// INT 16h.
pub(super) fn int16(b: &mut Bios, r: &mut Regs) -> Action {
    match r.ah() {
        0x00 | 0x10 => loop {
            match dequeue(b) {
                None => return Action::Wait,
                Some(code) => {
                    let code = if r.ah() == 0x00 { compatible(code) } else { Some(code) };
                    if let Some(c) = code {
                        r.set_ax(c);
                        return Action::Return;
                    }
                }
            }
        },
        0x01 | 0x11 => {
            loop {
                match peek(b) {
                    None => {
                        r.set_zf(true);
                        break;
                    }
                    Some(code) => {
                        let code = if r.ah() == 0x01 { compatible(code) } else { Some(code) };
                        match code {
                            Some(c) => {
                                r.set_ax(c);
                                r.set_zf(false);
                                break;
                            }
                            None => {
                                dequeue(b);
                            }
                        }
                    }
                }
            }
            Action::Return
        }
        0x02 => {
            r.set_al(b.bda8(bda::KBD_FLAGS0));
            Action::Return
        }
        0x12 => {
            let f0 = b.bda8(bda::KBD_FLAGS0);
            let f1 = b.bda8(bda::KBD_FLAGS1);
            let f3 = b.bda8(bda::KBD_FLAGS3);
            r.set_al(f0);
            r.set_ah((f1 & 0x73) | if f3 & RCTRL != 0 { 0x04 } else { 0 } | if f3 & RALT != 0 { 0x08 } else { 0 } | (f1 & 0x04) << 5);
            Action::Return
        }
        0x03 | 0x04 => Action::Return,
        0x05 => {
            r.set_al(u8::from(!enqueue(b, r.cx())));
            Action::Return
        }
        // Capabilities: 0305h, 0306h-less typematic, 0Ah, 10h-12h.
        0x09 => {
            r.set_al(0x24);
            Action::Return
        }
        0x0A => {
            r.set_bx(0xAB41);
            Action::Return
        }
        other => {
            tracing::debug!(function = format_args!("{other:#04x}"), "INT 16h: function not supported");
            Action::Return
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_codes_for_the_old_functions() {
        assert_eq!(compatible(0x48E0), Some(0x4800), "grey up arrow");
        assert_eq!(compatible(0xE00D), Some(0x1C0D), "keypad Enter");
        assert_eq!(compatible(0xE02F), Some(0x352F), "keypad /");
        assert_eq!(compatible(0x8500), None, "F11 is not an 84-key code");
        assert_eq!(compatible(0x1E61), Some(0x1E61));
    }
}
