//! PCI as a BIOS leaves it after POST, done the way SeaBIOS does it on QEMU's "pc" board
//! (SeaBIOS `src/fw/pciinit.c`) so the addresses match what the same guest sees there: every
//! function on bus 0 found through configuration mechanism #1, its BARs sized and assigned
//! (I/O upwards from 0xC000; memory below 0xFEC00000, non-prefetchable just below it and
//! prefetchable below that, each group in descending size), I/O, memory and SERR enabled, the
//! interrupt line register set from the PIIX3's PIRQ routing; and the chipset functions set
//! up: PIRQA-D routed to IRQs 10, 10, 11, 11 (level triggered in the ELCR), the IDE
//! channels' decode enabled, the PIIX4 power management block at 0x600 and the SMBus at
//! 0x700.

use crate::board::Machine;
use crate::devices::piix4_pm::PM_BASE;
use crate::pci::{pirq_of, DevFn, PIRQ_ROUTE};

/// What the PIRQ lines are routed to (SeaBIOS's `pci_irqs`).
pub const PIRQ_IRQS: [u8; 4] = [10, 10, 11, 11];
/// Where I/O BARs start.
pub const IO_START: u32 = 0xC000;
/// Memory BARs end here (the I/O APIC's page follows).
pub const MEM_END: u64 = 0xFEC0_0000;
/// The PIIX4 SMBus I/O base.
pub const SMBUS_BASE: u16 = 0x700;

const VENDOR: u16 = 0x00;
const COMMAND: u16 = 0x04;
const BAR0: u16 = 0x10;
const ROM: u16 = 0x30;
const INTERRUPT_LINE: u16 = 0x3C;
const INTERRUPT_PIN: u16 = 0x3D;
const CMD_IO: u32 = 0x1;
const CMD_MEMORY: u32 = 0x2;
const CMD_SERR: u32 = 0x100;

fn address(devfn: DevFn, offset: u16) -> u32 {
    0x8000_0000 | u32::from(devfn) << 8 | u32::from(offset & 0xFC)
}

pub fn config_read(m: &mut Machine, devfn: DevFn, offset: u16, size: u8) -> u32 {
    m.io_write(0xCF8, 4, address(devfn, offset));
    m.io_read(0xCFC + (offset & 3), size)
}

pub fn config_write(m: &mut Machine, devfn: DevFn, offset: u16, size: u8, value: u32) {
    m.io_write(0xCF8, 4, address(devfn, offset));
    m.io_write(0xCFC + (offset & 3), size, value);
}

/// One BAR (or the expansion ROM) to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    devfn: DevFn,
    /// Configuration offset of the BAR.
    offset: u16,
    size: u64,
    kind: Kind,
    /// A 64-bit memory BAR (its upper half is the next register).
    wide: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Io,
    Mem,
    PrefMem,
}

/// Sizes the BARs and the ROM of one function by writing all ones and reading back.
fn requests(m: &mut Machine, devfn: DevFn) -> Vec<Request> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < 6 {
        let offset = BAR0 + 4 * i;
        let old = config_read(m, devfn, offset, 4);
        config_write(m, devfn, offset, 4, 0xFFFF_FFFF);
        let v = config_read(m, devfn, offset, 4);
        config_write(m, devfn, offset, 4, old);
        i += 1;
        if v == 0 {
            continue;
        }
        if v & 1 != 0 {
            let size = u64::from((!(v & !3) & 0xFFFF) + 1);
            out.push(Request { devfn, offset, size, kind: Kind::Io, wide: false });
            continue;
        }
        let wide = v >> 1 & 3 == 2;
        let mut mask = u64::from(v & !0xF);
        if wide {
            let hi = BAR0 + 4 * i;
            let old = config_read(m, devfn, hi, 4);
            config_write(m, devfn, hi, 4, 0xFFFF_FFFF);
            mask |= u64::from(config_read(m, devfn, hi, 4)) << 32;
            config_write(m, devfn, hi, 4, old);
            i += 1;
        } else {
            mask |= 0xFFFF_FFFF << 32;
        }
        let size = (!mask).wrapping_add(1);
        let kind = if v & 8 != 0 { Kind::PrefMem } else { Kind::Mem };
        out.push(Request { devfn, offset, size, kind, wide });
    }
    let old = config_read(m, devfn, ROM, 4);
    config_write(m, devfn, ROM, 4, 0xFFFF_F800);
    let v = config_read(m, devfn, ROM, 4);
    config_write(m, devfn, ROM, 4, old);
    if v & !0x7FF != 0 {
        out.push(Request { devfn, offset: ROM, size: u64::from(!(v & !0x7FF)) + 1, kind: Kind::Mem, wide: false });
    }
    out
}

/// Addresses for `reqs`: each group laid out in descending size (so each stays aligned) from
/// its base. Returns (request, address) pairs.
fn assign(reqs: &[Request]) -> Vec<(Request, u64)> {
    let mut out = Vec::new();
    let group = |kind: Kind| {
        let mut g: Vec<Request> = reqs.iter().copied().filter(|r| r.kind == kind).collect();
        g.sort_by(|a, b| b.size.cmp(&a.size).then(a.devfn.cmp(&b.devfn)).then(a.offset.cmp(&b.offset)));
        g
    };
    let lay_out = |g: &[Request], base: u64, out: &mut Vec<(Request, u64)>| {
        let mut at = base;
        for r in g {
            at = at.next_multiple_of(r.size);
            out.push((*r, at));
            at += r.size;
        }
    };
    let io = group(Kind::Io);
    lay_out(&io, u64::from(IO_START), &mut out);
    let mut end = MEM_END;
    for kind in [Kind::Mem, Kind::PrefMem] {
        let g = group(kind);
        if g.is_empty() {
            continue;
        }
        let sum: u64 = g.iter().map(|r| r.size).sum();
        let align = g[0].size;
        let base = end.saturating_sub(sum) / align * align;
        lay_out(&g, base, &mut out);
        end = base;
    }
    out
}

/// Each function's interrupt pin and the IRQ POST routed it to (its interrupt line), for the
/// MP table.
pub fn interrupts(m: &mut Machine) -> Vec<crate::firmware::mptable::PciInterrupt> {
    let mut out = Vec::new();
    for f in 0..=255u8 {
        if config_read(m, f, VENDOR, 2) as u16 == 0xFFFF {
            continue;
        }
        let pin = config_read(m, f, INTERRUPT_PIN, 1) as u8;
        let irq = config_read(m, f, INTERRUPT_LINE, 1) as u8;
        if (1..=4).contains(&pin) && irq < 16 {
            out.push(crate::firmware::mptable::PciInterrupt { device: f >> 3, pin, irq });
        }
    }
    out
}

/// Enumerates bus 0, assigns every BAR and sets up the chipset functions, as SeaBIOS does.
pub fn init_pci(m: &mut Machine) {
    let functions: Vec<DevFn> = (0..=255).filter(|&f| config_read(m, f, VENDOR, 2) as u16 != 0xFFFF).collect();
    let mut reqs = Vec::new();
    for &f in &functions {
        reqs.extend(requests(m, f));
    }
    let hole_start = 0x10_0000u64.max(m.platform().low_ram());
    for (r, at) in assign(&reqs) {
        if r.kind != Kind::Io && at < hole_start {
            tracing::warn!("PCI BARs need more room than the hole below 4 GiB has; {:#x} left unassigned", r.offset);
            continue;
        }
        config_write(m, r.devfn, r.offset, 4, at as u32 | if r.kind == Kind::Io { 1 } else { 0 });
        if r.wide {
            config_write(m, r.devfn, r.offset + 4, 4, (at >> 32) as u32);
        }
    }
    for &f in &functions {
        let id = config_read(m, f, VENDOR, 4);
        let cmd = config_read(m, f, COMMAND, 2);
        config_write(m, f, COMMAND, 2, cmd | CMD_IO | CMD_MEMORY | CMD_SERR);
        let pin = config_read(m, f, INTERRUPT_PIN, 1) as u8;
        if pin != 0 {
            let irq = PIRQ_IRQS[pirq_of(f, pin)];
            config_write(m, f, INTERRUPT_LINE, 1, u32::from(irq));
        }
        match id {
            // PIIX3 ISA bridge: PIRQ routing, and those IRQs level triggered.
            0x7000_8086 => {
                let mut elcr = 0u16;
                for (i, &irq) in PIRQ_IRQS.iter().enumerate() {
                    config_write(m, f, PIRQ_ROUTE + i as u16, 1, u32::from(irq));
                    elcr |= 1 << irq;
                }
                m.io_write(0x4D0, 1, u32::from(elcr & 0xFF));
                m.io_write(0x4D1, 1, u32::from(elcr >> 8));
            }
            // PIIX3/PIIX4 IDE: both channels decode (IDETIM bit 15).
            0x7010_8086 | 0x7111_8086 => {
                config_write(m, f, 0x40, 2, 0x8000);
                config_write(m, f, 0x42, 2, 0x8000);
            }
            // PIIX4 power management: the SCI on IRQ 9, the PM block and the SMBus.
            0x7113_8086 => {
                config_write(m, f, INTERRUPT_LINE, 1, 9);
                config_write(m, f, 0x40, 4, u32::from(PM_BASE) | 1);
                config_write(m, f, 0x80, 1, 0x01);
                config_write(m, f, 0x90, 4, u32::from(SMBUS_BASE) | 1);
                config_write(m, f, 0xD2, 1, 0x09);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_seabios_on_the_pc_board() {
        // The stdvga (00:02.0: 16 MiB prefetchable framebuffer, 4 KiB registers, 64 KiB ROM)
        // and the IDE's bus-master BAR, as on QEMU's "pc" with SeaBIOS.
        let r = |devfn: u8, offset, size, kind| Request { devfn, offset, size, kind, wide: false };
        let reqs = [r(0x09, 0x20, 16, Kind::Io), r(0x10, 0x10, 16 << 20, Kind::PrefMem), r(0x10, 0x18, 4096, Kind::Mem), r(0x10, ROM, 0x1_0000, Kind::Mem)];
        let got: Vec<(u16, u64)> = assign(&reqs).into_iter().map(|(r, a)| (r.offset, a)).collect();
        assert_eq!(got, vec![(0x20, 0xC000), (ROM, 0xFEBE_0000), (0x18, 0xFEBF_0000), (0x10, 0xFD00_0000)]);
    }
}
