//! INT 11h (equipment), INT 12h (memory size), INT 14h (serial ports, through the 16550's
//! registers), INT 15h (A20, the memory map E820h/E801h/88h, block moves, waits, the
//! configuration table), INT 17h (no printer ports on this board) and INT 1Ah (tick count, the
//! RTC through CMOS, the real-mode PCI BIOS).

use super::{bda, ebda, Action, Bios, Regs};

pub(super) fn int11(b: &mut Bios, r: &mut Regs) -> Action {
    r.set_ax(b.bda16(bda::EQUIPMENT));
    Action::Return
}

pub(super) fn int12(b: &mut Bios, r: &mut Regs) -> Action {
    r.set_ax(b.bda16(bda::MEMORY_KIB));
    Action::Return
}

/// The UART base of serial port `n` from the BIOS data area (0: none).
fn com_base(b: &Bios, n: u16) -> u16 {
    if n > 3 {
        return 0;
    }
    b.bda16(bda::COM1 + 2 * u64::from(n))
}

/// Sends a byte through serial port `n` (no-op without the port).
pub(super) fn serial_send(b: &mut Bios, n: u16, c: u8) -> Option<u8> {
    let base = com_base(b, n);
    if base == 0 {
        return None;
    }
    b.outb(base, c);
    Some(b.inb(base + 5))
}

/// INT 14h: DX the port.
pub(super) fn int14(b: &mut Bios, r: &mut Regs) -> Action {
    let base = com_base(b, r.dx());
    if base == 0 {
        r.set_ah(0x80);
        return Action::Return;
    }
    match r.ah() {
        0x00 => {
            // AL: baud rate (bits 7-5, 110 to 9600), parity, stop bits, word length.
            const DIVISORS: [u16; 8] = [1047, 768, 384, 192, 96, 48, 24, 12];
            let al = r.al();
            let div = DIVISORS[usize::from(al >> 5)];
            b.outb(base + 3, 0x80);
            b.outb(base, div as u8);
            b.outb(base + 1, (div >> 8) as u8);
            b.outb(base + 3, al & 0x1F);
            b.outb(base + 1, 0);
            r.set_ah(b.inb(base + 5));
            r.set_al(b.inb(base + 6));
        }
        0x01 => {
            let lsr = serial_send(b, r.dx(), r.al()).unwrap_or(0x80);
            r.set_ah(lsr & 0x7F);
        }
        0x02 => {
            let lsr = b.inb(base + 5);
            if lsr & 1 != 0 {
                r.set_al(b.inb(base));
                r.set_ah(lsr & 0x1E);
            } else {
                r.set_ah(0x80 | (lsr & 0x1E));
            }
        }
        0x03 => {
            r.set_ah(b.inb(base + 5));
            r.set_al(b.inb(base + 6));
        }
        _ => r.set_ah(0x80),
    }
    Action::Return
}

/// INT 17h: there are no parallel ports: every call times out.
pub(super) fn int17(_b: &mut Bios, r: &mut Regs) -> Action {
    r.set_ah(0x01);
    Action::Return
}

/// INT 15h.
pub(super) fn int15(b: &mut Bios, r: &mut Regs) -> Action {
    match r.ah() {
        0x24 => a20(b, r),
        // Keyboard intercept: the scan code goes on as it came (CF as the caller set it).
        0x4F => {}
        0x86 => return wait(b, r),
        0xC2 => return super::mouse::int15_c2(b, r),
        0x87 => block_move(b, r),
        0x88 => {
            // Extended memory as E801h and E820h count it (without the tables area).
            let p = b.m.platform().clone();
            let top = super::post::tables_area(&p).unwrap_or(p.low_ram());
            let ext = top.saturating_sub(0x10_0000) / 1024;
            r.set_ax(ext.min(0xFC00) as u16);
            r.set_cf(false);
        }
        0x90 | 0x91 => r.ok(),
        0xC0 => {
            r.es = 0xF000;
            r.set_bx(0xE6F5);
            r.ok();
        }
        0xC1 => {
            r.es = (ebda::START >> 4) as u16;
            r.set_cf(false);
        }
        0xE8 => match r.al() {
            0x01 => {
                let p = b.m.platform().clone();
                let top = super::post::tables_area(&p).unwrap_or(p.low_ram());
                let below16 = top.clamp(0x10_0000, 0x100_0000) - 0x10_0000;
                let above16 = top.saturating_sub(0x100_0000);
                r.set_ax((below16 / 1024) as u16);
                r.set_cx((below16 / 1024) as u16);
                r.set_bx((above16 >> 16).min(0xFFFF) as u16);
                r.set_dx((above16 >> 16).min(0xFFFF) as u16);
                r.set_cf(false);
            }
            0x20 => e820(b, r),
            _ => r.unsupported(),
        },
        0xEC => r.ok(),
        other => {
            tracing::debug!(function = format_args!("{other:#04x}"), al = r.al(), "INT 15h: function not supported");
            r.unsupported();
        }
    }
    Action::Return
}

/// AX=2400h-2403h: the A20 gate through port 92h.
fn a20(b: &mut Bios, r: &mut Regs) {
    match r.al() {
        0x00 | 0x01 => {
            let v = b.inb(0x92);
            b.outb(0x92, if r.al() == 1 { v | 2 } else { v & !2 } & !1);
            r.ok();
        }
        0x02 => {
            let on = b.m.memory().a20();
            r.set_al(u8::from(on));
            r.ok();
        }
        0x03 => {
            r.set_bx(0x0003);
            r.ok();
        }
        _ => r.unsupported(),
    }
}

/// AX=E820h: the memory map, one entry per call; EBX the continuation.
fn e820(b: &mut Bios, r: &mut Regs) {
    const SMAP: u32 = 0x534D_4150;
    if r.edx != SMAP || r.ecx < 20 {
        r.unsupported();
        return;
    }
    let rom = b.m.memory().bios_size();
    let map = super::post::e820(&b.m.platform().clone(), rom);
    let Some(&(addr, len, kind)) = map.get(r.ebx as usize) else {
        r.unsupported();
        return;
    };
    let mut e = [0u8; 20];
    e[0..8].copy_from_slice(&addr.to_le_bytes());
    e[8..16].copy_from_slice(&len.to_le_bytes());
    e[16..20].copy_from_slice(&kind.to_le_bytes());
    b.write(Regs::lin(r.es, r.di()), &e);
    r.eax = SMAP;
    r.ecx = 20;
    r.ebx = if r.ebx as usize + 1 < map.len() { r.ebx + 1 } else { 0 };
    r.set_cf(false);
}

/// AH=86h: wait CX:DX microseconds. The deadline (in microseconds of virtual time, wrapping)
/// is kept at 40:9C with 40:A0 bit 0 saying a wait is under way, where a PC BIOS keeps its
/// wait state. Long waits halt until the next interrupt; the last 55 ms spin.
fn wait(b: &mut Bios, r: &mut Regs) -> Action {
    let now_us = (b.m.now() / 1000) as u32;
    if b.bda8(bda::WAIT_ACTIVE) & 1 == 0 {
        let us = u32::from(r.cx()) << 16 | u32::from(r.dx());
        b.set_bda32(bda::WAIT_COUNT, now_us.wrapping_add(us));
        b.set_bda8(bda::WAIT_ACTIVE, 1);
    }
    let left = b.bda32(bda::WAIT_COUNT).wrapping_sub(now_us) as i32;
    if left <= 0 {
        b.set_bda8(bda::WAIT_ACTIVE, 0);
        r.ok();
        return Action::Return;
    }
    if left > 55_000 {
        Action::Wait
    } else {
        Action::Again
    }
}

/// AH=87h: copy CX words between the two segments the GDT at ES:SI describes (descriptors 2
/// and 3), as the BIOS's protected-mode block move does; here the copy is direct.
fn block_move(b: &mut Bios, r: &mut Regs) {
    let gdt = Regs::lin(r.es, r.si());
    let base = |b: &Bios, at: u64| {
        let mut d = [0u8; 8];
        b.read(at, &mut d);
        u64::from(d[2]) | u64::from(d[3]) << 8 | u64::from(d[4]) << 16 | u64::from(d[7]) << 24
    };
    let (src, dst) = (base(b, gdt + 0x10), base(b, gdt + 0x18));
    let len = usize::from(r.cx()) * 2;
    let was = b.m.memory().a20();
    b.m.memory_mut().set_a20(true);
    let mut buf = vec![0u8; len];
    b.read(src, &mut buf);
    b.write(dst, &buf);
    b.m.memory_mut().set_a20(was);
    r.ok();
}

fn bcd(v: u8) -> bool {
    v & 0xF <= 9 && v >> 4 <= 9
}

/// INT 1Ah.
pub(super) fn int1a(b: &mut Bios, r: &mut Regs) -> Action {
    match r.ah() {
        0x00 => {
            let t = b.bda32(bda::TICKS);
            r.set_cx((t >> 16) as u16);
            r.set_dx(t as u16);
            r.set_al(b.bda8(bda::MIDNIGHT));
            b.set_bda8(bda::MIDNIGHT, 0);
            r.set_cf(false);
        }
        0x01 => {
            b.set_bda32(bda::TICKS, u32::from(r.cx()) << 16 | u32::from(r.dx()));
            b.set_bda8(bda::MIDNIGHT, 0);
            r.ok();
        }
        0x02 => {
            r.set_ch(b.cmos(0x04));
            r.set_cl(b.cmos(0x02));
            r.set_dh(b.cmos(0x00));
            r.set_dl(b.cmos(0x0B) & 1);
            r.ok();
        }
        0x03 => {
            if [r.ch(), r.cl(), r.dh()].into_iter().all(bcd) {
                let sb = b.cmos(0x0B);
                b.set_cmos(0x0B, sb | 0x80);
                b.set_cmos(0x04, r.ch());
                b.set_cmos(0x02, r.cl());
                b.set_cmos(0x00, r.dh());
                b.set_cmos(0x0B, (sb & 0x7E) | 0x02 | (r.dl() & 1));
                r.ok();
            } else {
                r.set_cf(true);
            }
        }
        0x04 => {
            r.set_ch(b.cmos(crate::firmware::acpi::RTC_CENTURY));
            r.set_cl(b.cmos(0x09));
            r.set_dh(b.cmos(0x08));
            r.set_dl(b.cmos(0x07));
            r.ok();
        }
        0x05 => {
            if [r.ch(), r.cl(), r.dh(), r.dl()].into_iter().all(bcd) {
                let sb = b.cmos(0x0B);
                b.set_cmos(0x0B, sb | 0x80);
                b.set_cmos(crate::firmware::acpi::RTC_CENTURY, r.ch());
                b.set_cmos(0x09, r.cl());
                b.set_cmos(0x08, r.dh());
                b.set_cmos(0x07, r.dl());
                b.set_cmos(0x0B, sb & 0x7F);
                r.ok();
            } else {
                r.set_cf(true);
            }
        }
        0x06 => {
            let sb = b.cmos(0x0B);
            if sb & 0x20 != 0 {
                // An alarm is already set.
                r.set_cf(true);
            } else {
                b.set_cmos(0x05, r.ch());
                b.set_cmos(0x03, r.cl());
                b.set_cmos(0x01, r.dh());
                b.set_cmos(0x0B, sb | 0x20);
                r.ok();
            }
        }
        0x07 => {
            let sb = b.cmos(0x0B);
            b.set_cmos(0x0B, sb & !0x20);
            r.ok();
        }
        0xB1 => pci_bios(b, r),
        other => {
            tracing::debug!(function = format_args!("{other:#04x}"), "INT 1Ah: function not supported");
            r.set_cf(true);
        }
    }
    Action::Return
}

/// INT 1Ah AH=B1h: the PCI BIOS (PCI BIOS Specification 2.1), real-mode entry, bus 0 only.
fn pci_bios(b: &mut Bios, r: &mut Regs) {
    const NOT_FOUND: u8 = 0x86;
    const BAD_REGISTER: u8 = 0x87;
    match r.al() {
        0x01 => {
            r.edx = 0x2049_4350; // "PCI "
            r.set_ah(0);
            r.set_al(0x01); // configuration mechanism #1
            r.set_bx(0x0210);
            r.set_cl(0);
            r.edi = 0;
            r.set_cf(false);
        }
        0x02 | 0x03 => {
            let mut index = r.si();
            let mut found = None;
            for f in 0..=255u8 {
                let id = b.pci_read(f, 0, 4);
                if id & 0xFFFF == 0xFFFF {
                    continue;
                }
                let hit = if r.al() == 0x02 {
                    id == u32::from(r.cx()) << 16 | u32::from(r.dx())
                } else {
                    b.pci_read(f, 8, 4) >> 8 == r.ecx & 0xFF_FFFF
                };
                if hit {
                    if index == 0 {
                        found = Some(f);
                        break;
                    }
                    index -= 1;
                }
            }
            match found {
                Some(f) => {
                    r.set_bx(u16::from(f));
                    r.ok();
                }
                None => r.fail(NOT_FOUND),
            }
        }
        0x08..=0x0D => {
            let reg = r.di();
            let size = match r.al() {
                0x08 | 0x0B => 1,
                0x09 | 0x0C => 2,
                _ => 4,
            };
            if r.bh() != 0 {
                r.fail(NOT_FOUND);
                return;
            }
            if reg > 0xFF || reg % size != 0 {
                r.fail(BAD_REGISTER);
                return;
            }
            let f = r.bl();
            if r.al() <= 0x0A {
                let v = b.pci_read(f, reg, size as u8);
                match size {
                    1 => r.set_cl(v as u8),
                    2 => r.set_cx(v as u16),
                    _ => r.ecx = v,
                }
            } else {
                let v = match size {
                    1 => u32::from(r.cl()),
                    2 => u32::from(r.cx()),
                    _ => r.ecx,
                };
                b.pci_write(f, reg, size as u8, v);
            }
            r.ok();
        }
        _ => r.fail(0x81),
    }
}
