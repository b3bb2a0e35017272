//! POST: what the BIOS does between reset and INT 19h. The PCI functions on bus 0 get their
//! BARs, interrupt lines and command bits (as SeaBIOS lays them out: I/O from 0xC000, memory
//! downwards from the I/O APIC, PIRQA-D on IRQs 10, 10, 11, 11); the chipset functions their
//! own registers (PIIX IDE decode, the PIIX4 PM block at 0x600); the 8259A pair, the PIT and
//! A20 as a PC BIOS leaves them; the BIOS data area and EBDA; the ACPI and SMBIOS tables (the
//! ones fw_cfg serves, placed by the same loader script) in reserved RAM at the top of low
//! memory with their entry points in the shadowed F segment; text mode 3; option ROMs.

use super::{bda, ebda, Action, Bios, Regs};
use crate::firmware::acpi::IOAPIC_BASE;
use crate::firmware::Platform;
use crate::pci::{devfn, pirq_of, PIIX3_ISA, PIRQ_ROUTE};

/// The ISA IRQs PIRQA-D are routed to.
pub const PIRQ_IRQS: [u8; 4] = [10, 10, 11, 11];
/// Reserved RAM at the top of low memory for the ACPI and SMBIOS tables.
pub const TABLES_SIZE: u64 = crate::firmware::post::FIRMWARE_AREA_SIZE;
/// Where the RSDP and the SMBIOS entry point go in the F segment (zero in the ROM image).
const RSDP_AT: u64 = 0xF_0000;
const SMBIOS_ANCHOR_AT: u64 = 0xF_0040;
/// Where option ROMs are copied: from 0xC0000 up to the end of the D segment.
const OPTION_ROM_START: u64 = 0xC_0000;
const OPTION_ROM_END: u64 = 0xE_0000;
/// POST's own notes in the EBDA while option ROMs are run: the next PCI function to look at
/// (u16) and where the next ROM goes (u32).
const SCRATCH: u64 = 0x120;

/// i440FX PAM registers (82441FX datasheet 3.2.18): 0x59 the F segment (high nibble), then
/// two 16 KiB segments per register from 0xC0000.
const PAM0: u16 = 0x59;

/// SVC_POST: the machine made ready to boot.
pub(super) fn post(b: &mut Bios, r: &mut Regs) -> Action {
    // A reset with the CMOS shutdown code 5 or 0Ah is a return from protected mode (or a
    // processor start) through the pointer at 40:67, not a power-on.
    let shutdown = b.cmos(0x0F);
    if shutdown == 0x05 || shutdown == 0x0A {
        b.set_cmos(0x0F, 0);
        if shutdown == 0x05 {
            b.outb(0x20, 0x20);
            b.outb(0xA0, 0x20);
        }
        r.ip = b.bda16(0x67);
        r.cs = b.bda16(0x69);
        return Action::Return;
    }
    let p = b.m.platform().clone();
    shadow_rom(b);
    init_pci(b);
    init_pics(b);
    init_pit(b);
    enable_a20(b);
    init_bda(b, &p);
    super::disk::init(b, &p);
    super::keyboard::init(b);
    place_tables(b, &p);
    super::video::init(b);
    b.print("Ferrite BIOS\r\n");
    b.w16(ebda::START + SCRATCH, 0);
    b.w32(ebda::START + SCRATCH + 2, OPTION_ROM_START as u32);
    Action::Return
}

fn pam(b: &mut Bios, reg: u16, v: u8) {
    b.pci_write(0, reg, 1, u32::from(v));
}

/// The ROM copied to shadow RAM at 0xF0000 (reads and writes RAM until POST ends), and the
/// C, D and E segments made read-write RAM for option ROMs and tables.
fn shadow_rom(b: &mut Bios) {
    let mut rom = vec![0u8; 0x1_0000];
    b.read(0xF_0000, &mut rom);
    pam(b, PAM0, 0x30);
    b.write(0xF_0000, &rom);
    for reg in PAM0 + 1..=PAM0 + 6 {
        pam(b, reg, 0x33);
    }
}

/// SVC_POST_DONE: the F segment and the option ROMs made read-only, as they are on a PC.
pub(super) fn post_done(b: &mut Bios, _r: &mut Regs) -> Action {
    let rom_end = u64::from(b.r32(ebda::START + SCRATCH + 2));
    pam(b, PAM0, 0x10);
    // Each register covers two 16 KiB segments (low nibble the first); segments holding option
    // ROMs read RAM and drop writes.
    for k in 0..12u64 {
        let start = OPTION_ROM_START + k * 0x4000;
        let ro = start < rom_end;
        let reg = PAM0 + 1 + (k / 2) as u16;
        let cur = b.pci_read(0, reg, 1) as u8;
        let nibble = if ro { 0x1 } else { 0x3 };
        let v = if k % 2 == 0 { (cur & 0xF0) | nibble } else { (cur & 0x0F) | nibble << 4 };
        pam(b, reg, v);
    }
    Action::Return
}

/// SVC_OPTION_ROM: the next PCI function with an x86 option ROM, copied into shadow RAM:
/// ES:DI its initialisation entry (offset 3), AX its bus/device/function; CF set when there
/// are no more.
pub(super) fn next_option_rom(b: &mut Bios, r: &mut Regs) -> Action {
    let mut next = b.r16(ebda::START + SCRATCH);
    let at = u64::from(b.r32(ebda::START + SCRATCH + 2));
    while next < 256 {
        let f = next as u8;
        next += 1;
        if b.pci_read(f, 0, 2) == 0xFFFF {
            continue;
        }
        let rom_bar = u32::from(crate::pci::config::ROM_BAR);
        let base = b.pci_read(f, rom_bar as u16, 4) & !0x7FF;
        if base == 0 {
            continue;
        }
        b.pci_write(f, rom_bar as u16, 4, base | 1);
        let mut head = [0u8; 3];
        read_mmio(b, u64::from(base), &mut head);
        let len = usize::from(head[2]) * 512;
        let ok = head[0] == 0x55 && head[1] == 0xAA && len > 0 && at + len as u64 <= OPTION_ROM_END;
        let mut image = vec![0u8; if ok { len } else { 0 }];
        read_mmio(b, u64::from(base), &mut image);
        b.pci_write(f, rom_bar as u16, 4, base);
        if !ok {
            tracing::warn!(devfn = f, "BIOS: PCI function's ROM has no option ROM header or does not fit");
            continue;
        }
        let pcir = usize::from(u16::from_le_bytes([image[0x18], image[0x19]]));
        if image.get(pcir..pcir + 4) == Some(b"PCIR") && image.get(pcir + 0x14).is_some_and(|&t| t != 0) {
            tracing::warn!(devfn = f, "BIOS: option ROM is not x86 code");
            continue;
        }
        b.write(at, &image);
        r.es = (at >> 4) as u16;
        r.set_di(3);
        r.set_ax(u16::from(f));
        r.set_cf(false);
        b.w16(ebda::START + SCRATCH, next);
        b.w32(ebda::START + SCRATCH + 2, (at + len as u64).next_multiple_of(0x800) as u32);
        return Action::Return;
    }
    b.w16(ebda::START + SCRATCH, next);
    r.set_cf(true);
    Action::Return
}

fn read_mmio(b: &mut Bios, addr: u64, buf: &mut [u8]) {
    for (i, x) in buf.iter_mut().enumerate() {
        *x = b.m.mmio_read(addr + i as u64, 1) as u8;
    }
}

/// Bus 0: BARs sized and placed, interrupt lines from the PIRQ routing, decoding enabled; the
/// chipset functions' own registers.
fn init_pci(b: &mut Bios) {
    use crate::pci::config::{BAR0, CMD_BUS_MASTER, CMD_IO, CMD_MEMORY, COMMAND, HEADER_TYPE, INTERRUPT_LINE, INTERRUPT_PIN, ROM_BAR};
    for (i, &irq) in PIRQ_IRQS.iter().enumerate() {
        b.pci_write(PIIX3_ISA, PIRQ_ROUTE + i as u16, 1, u32::from(irq));
    }
    // PCI interrupts are level triggered: ELCR bits for their IRQs.
    let elcr: u16 = PIRQ_IRQS.iter().fold(0, |m, &i| m | 1 << i);
    b.outb(0x4D0, elcr as u8);
    b.outb(0x4D1, (elcr >> 8) as u8);

    let mut functions = Vec::new();
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let f = devfn(dev, func);
            if b.pci_read(f, 0, 2) == 0xFFFF {
                if func == 0 {
                    break;
                }
                continue;
            }
            functions.push(f);
            if func == 0 && b.pci_read(f, HEADER_TYPE, 1) & 0x80 == 0 {
                break;
            }
        }
    }
    // (function, register, size, is I/O)
    let mut bars: Vec<(u8, u16, u64, bool)> = Vec::new();
    for &f in &functions {
        let mut k = 0;
        while k < 6 {
            let reg = BAR0 + 4 * k;
            let old = b.pci_read(f, reg, 4);
            b.pci_write(f, reg, 4, 0xFFFF_FFFF);
            let mask = b.pci_read(f, reg, 4);
            b.pci_write(f, reg, 4, old);
            k += 1;
            if mask == 0 || mask == 0xFFFF_FFFF {
                continue;
            }
            let io = mask & 1 != 0;
            let size = if io { (!(mask & !3) & 0xFFFF) + 1 } else { !(mask & !0xF) + 1 };
            if !io && mask & 0b110 == 0b100 {
                // A 64-bit BAR takes the next register too (placed below 4 GiB).
                b.pci_write(f, reg + 4, 4, 0);
                k += 1;
            }
            bars.push((f, reg, u64::from(size), io));
        }
        b.pci_write(f, ROM_BAR, 4, 0xFFFF_F800);
        let mask = b.pci_read(f, ROM_BAR, 4) & !0x7FF;
        b.pci_write(f, ROM_BAR, 4, 0);
        if mask != 0 {
            bars.push((f, ROM_BAR, u64::from(!mask) + 1, false));
        }
    }
    // Largest first, so every BAR is naturally aligned without holes between them.
    bars.sort_by(|a, b| b.2.cmp(&a.2));
    let mut io_next = 0xC000u64;
    let mut mem_top = IOAPIC_BASE;
    let low = b.m.platform().low_ram();
    for (f, reg, size, io) in bars {
        if io {
            let at = io_next.next_multiple_of(size);
            if at + size > 0x1_0000 {
                tracing::warn!(devfn = f, "BIOS: out of I/O space for a BAR");
                continue;
            }
            b.pci_write(f, reg, 4, at as u32);
            io_next = at + size;
        } else {
            let at = (mem_top - size) & !(size - 1);
            if at < low {
                tracing::warn!(devfn = f, "BIOS: out of PCI memory space for a BAR");
                continue;
            }
            b.pci_write(f, reg, 4, at as u32);
            mem_top = at;
        }
    }
    for &f in &functions {
        let pin = b.pci_read(f, INTERRUPT_PIN, 1) as u8;
        if (1..=4).contains(&pin) {
            b.pci_write(f, INTERRUPT_LINE, 1, u32::from(PIRQ_IRQS[pirq_of(f, pin)]));
        }
        let id = b.pci_read(f, 0, 4);
        match id {
            // PIIX3 IDE: decode both channels (IDETIM bit 15).
            0x7010_8086 => {
                b.pci_write(f, 0x40, 2, 0x8000);
                b.pci_write(f, 0x42, 2, 0x8000);
            }
            // PIIX4 PM: the PM block at 0x600, SMBus at 0x700, both enabled.
            0x7113_8086 => {
                b.pci_write(f, 0x40, 4, u32::from(crate::devices::piix4_pm::PM_BASE) | 1);
                b.pci_write(f, 0x80, 1, 1);
                b.pci_write(f, 0x90, 4, 0x701);
                b.pci_write(f, 0xD2, 1, 0x09);
            }
            _ => {}
        }
        let cmd = b.pci_read(f, COMMAND, 2) as u16;
        b.pci_write(f, COMMAND, 2, u32::from(cmd | CMD_IO | CMD_MEMORY | CMD_BUS_MASTER));
    }
}

/// The 8259A pair as a PC BIOS leaves it: vector bases 08h and 70h, cascade on IRQ 2, edge
/// triggered, 8086 mode; the timer, keyboard, cascade and RTC lines open.
fn init_pics(b: &mut Bios) {
    crate::firmware::post::init_pics(b.m, 0xF8, 0xFE);
}

/// PIT channel 0 in mode 3 with the full count: IRQ 0 at 18.2 Hz.
fn init_pit(b: &mut Bios) {
    crate::firmware::post::init_pit(b.m);
}

fn enable_a20(b: &mut Bios) {
    crate::firmware::post::enable_a20(b.m);
}

/// The BIOS data area (all but the video and disk fields, which their parts fill) and the
/// first bytes of the EBDA.
fn init_bda(b: &mut Bios, p: &Platform) {
    b.write(bda::BASE, &[0u8; 256]);
    b.write(ebda::START, &[0u8; 1024]);
    b.w8(ebda::START, ebda::SIZE_KIB as u8);
    b.set_bda16(bda::COM1, crate::board::COM1_PORT);
    b.set_bda16(bda::EBDA_SEGMENT, (ebda::START >> 4) as u16);
    let floppies = p.floppies.len() as u16;
    let mut equipment = 1 << 1 // x87
        | 1 << 2 // PS/2 mouse
        | 0b10 << 4 // 80x25 colour
        | 1 << 9; // one serial port
    if floppies > 0 {
        equipment |= 1 | (floppies - 1) << 6;
    }
    b.set_bda16(bda::EQUIPMENT, equipment);
    b.set_bda16(bda::MEMORY_KIB, ebda::BASE_MEMORY_KIB);
    b.set_bda8(bda::COM_TIMEOUT, 0x0A);
    let ticks = rtc_ticks(b);
    b.set_bda32(bda::TICKS, ticks);
}

/// Ticks since midnight (18.2 a second), from the RTC.
pub(super) fn rtc_ticks(b: &mut Bios) -> u32 {
    crate::firmware::post::rtc_ticks(b.m)
}

/// Where the reserved tables area starts: the last [`TABLES_SIZE`] bytes of low RAM, or none
/// when RAM is too small to spare it.
pub fn tables_area(p: &Platform) -> Option<u64> {
    crate::firmware::post::firmware_area(p)
}

/// The ACPI tables (with the RSDP in the F segment) and the SMBIOS tables (anchor in the F
/// segment), in the reserved area.
fn place_tables(b: &mut Bios, p: &Platform) {
    let Some(area) = tables_area(p) else {
        tracing::warn!("BIOS: too little RAM for the ACPI and SMBIOS tables");
        return;
    };
    let crate::firmware::FirmwareTables { acpi, smbios } = b.m.firmware_tables().clone();
    let (tables, rsdp) = acpi.place(area, RSDP_AT);
    let mut smbios = smbios;
    let smbios_at = area + (tables.len() as u64).next_multiple_of(16);
    smbios.set_address(smbios_at as u32);
    if smbios_at + smbios.tables.len() as u64 > area + TABLES_SIZE {
        tracing::warn!("BIOS: the firmware tables do not fit the reserved area");
        return;
    }
    b.write(area, &tables);
    b.write(smbios_at, &smbios.tables);
    b.write(RSDP_AT, &rsdp);
    b.write(SMBIOS_ANCHOR_AT, &smbios.anchor);
    if let Some((floating, table)) = crate::firmware::post::mp_tables(b.m, RSDP_AT) {
        b.write(RSDP_AT + crate::firmware::mptable::TABLE_OFFSET, &table);
        b.write(RSDP_AT + crate::firmware::mptable::FLOATING_OFFSET, &floating);
    }
}

/// The memory map INT 15h AX=E820h reports: conventional memory up to the EBDA, the EBDA and
/// the BIOS segment reserved, extended memory up to the tables area, that reserved, the ROM
/// at the top of 4 GiB reserved, and RAM above 4 GiB.
pub fn e820(p: &Platform, rom_size: u64) -> Vec<(u64, u64, u32)> {
    crate::firmware::post::bios_e820(p, rom_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::{E820_RAM, E820_RESERVED};

    fn platform(ram: u64) -> Platform {
        Platform { ram_size: ram, cpus: 1, ide: vec![], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    #[test]
    fn e820_leaves_out_the_ebda_rom_and_tables() {
        let m = e820(&platform(128 << 20), 0x1_0000);
        assert_eq!(
            m,
            vec![
                (0, 0x9_FC00, E820_RAM),
                (0x9_FC00, 0x400, E820_RESERVED),
                (0xF_0000, 0x1_0000, E820_RESERVED),
                (0x10_0000, (128 << 20) - 0x10_0000 - TABLES_SIZE, E820_RAM),
                ((128 << 20) - TABLES_SIZE, TABLES_SIZE, E820_RESERVED),
                (0xFFFF_0000, 0x1_0000, E820_RESERVED),
            ]
        );
        assert_eq!(e820(&platform(1 << 20), 0x1_0000).len(), 4, "1 MiB: no extended memory, no tables");
    }
}
