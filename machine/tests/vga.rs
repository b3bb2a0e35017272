//! The VGA as a guest finds it on the board: enumerated at 00:02.0 through ports 0xCF8/0xCFC,
//! BARs sized and mapped, the option ROM read through the ROM BAR, the legacy window and ports,
//! and the picture through `Machine::display`.

use machine::host::NullChar;
use machine::{ClockMode, Frame, Machine, MachineConfig};

fn machine(vga_rom: Option<Vec<u8>>) -> Machine {
    Machine::new(MachineConfig {
        ram_size: 4 << 20,
        bios: vec![0xF4; 128 * 1024],
        clock: ClockMode::Deterministic,
        serial: Box::new(NullChar),
        debugcon: Box::new(NullChar),
        vga_rom,
        ..MachineConfig::default()
    })
    .unwrap()
}

const VGA: u8 = 2;

fn cfg_read(m: &mut Machine, dev: u8, off: u8) -> u32 {
    m.io_write(0xCF8, 4, 0x8000_0000 | (u32::from(dev) << 11) | u32::from(off & 0xFC));
    m.io_read(0xCFC, 4)
}

fn cfg_write(m: &mut Machine, dev: u8, off: u8, v: u32) {
    m.io_write(0xCF8, 4, 0x8000_0000 | (u32::from(dev) << 11) | u32::from(off & 0xFC));
    m.io_write(0xCFC, 4, v);
}

/// Sizes a BAR the standard way and returns the size mask it reads back.
fn size_bar(m: &mut Machine, off: u8) -> u32 {
    let old = cfg_read(m, VGA, off);
    cfg_write(m, VGA, off, 0xFFFF_FFFF);
    let mask = cfg_read(m, VGA, off);
    cfg_write(m, VGA, off, old);
    mask
}

/// Maps the framebuffer at 0xFD000000, the registers at 0xFEBF0000 and the ROM at 0xFEBE0000.
fn map_bars(m: &mut Machine) {
    cfg_write(m, VGA, 0x10, 0xFD00_0000);
    cfg_write(m, VGA, 0x18, 0xFEBF_0000);
    cfg_write(m, VGA, 0x30, 0xFEBE_0001);
    cfg_write(m, VGA, 0x04, 0x0003);
}

fn read_rom(m: &mut Machine, len: usize) -> Vec<u8> {
    (0..len as u64).step_by(4).flat_map(|a| (m.mmio_read(0xFEBE_0000 + a, 4) as u32).to_le_bytes()).take(len).collect()
}

#[test]
fn enumerated_sized_and_mapped() {
    let rom: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let mut m = machine(Some(rom.clone()));
    assert_eq!(cfg_read(&mut m, VGA, 0x00), 0x1111_1234, "QEMU standard VGA");
    assert_eq!(cfg_read(&mut m, VGA, 0x08) >> 8, 0x03_00_00, "VGA-compatible display controller");
    assert_eq!(cfg_read(&mut m, VGA, 0x2C), 0x1100_1AF4, "subsystem");
    assert_eq!(size_bar(&mut m, 0x10), 0xFF00_0008, "16 MiB prefetchable framebuffer");
    assert_eq!(size_bar(&mut m, 0x14), 0, "BAR1 unused");
    assert_eq!(size_bar(&mut m, 0x18), 0xFFFF_F000, "4 KiB of registers");
    assert_eq!(size_bar(&mut m, 0x30), 0xFFFF_0001, "64 KiB ROM for a 40,000-byte image");

    assert_eq!(m.mmio_read(0xFD00_0000, 4), 0xFFFF_FFFF, "nothing decodes before the command register");
    map_bars(&mut m);
    assert_eq!(read_rom(&mut m, rom.len()), rom, "the image through the ROM BAR");
    assert_eq!(m.mmio_read(0xFEBE_0000 + 50_000, 1), 0xFF, "past the image");

    // Framebuffer writes and reads through BAR0.
    m.mmio_write(0xFD00_1000, 4, 0x1122_3344);
    assert_eq!(m.mmio_read(0xFD00_1000, 4), 0x1122_3344);
    // DISPI through the register BAR: 640x480x32, then a pixel through the framebuffer.
    for (index, v) in [(1u64, 640u64), (2, 480), (3, 32), (4, 0x41)] {
        m.mmio_write(0xFEBF_0500 + 2 * index, 2, v);
    }
    assert_eq!(m.io_read(0x1CF, 2), 0x41, "same registers behind ports 0x1CE/0x1CF");
    m.io_write(0x1CE, 2, 1);
    assert_eq!(m.io_read(0x1CF, 2), 640);
    m.mmio_write(0xFD00_0000 + (10 * 640 + 20) * 4, 4, 0x00AB_CDEF);
    let now = m.now();
    let display = m.display().expect("the board has a display");
    assert_eq!(display.screen_text(), "VBE mode 640x480, 32 bpp\n");
    let mut f = Frame::new();
    assert!(display.render(now, &mut f));
    assert_eq!((f.width, f.height), (640, 480));
    assert_eq!(f.pixel(20, 10), Some([0xAB, 0xCD, 0xEF, 0xFF]));
    assert_eq!(f.pixel(21, 10), Some([0, 0, 0, 0xFF]));
}

#[test]
fn no_rom_without_an_image() {
    let mut m = machine(None);
    assert_eq!(size_bar(&mut m, 0x30), 0, "no expansion ROM BAR");
}

#[test]
fn legacy_ports_and_window() {
    let mut m = machine(None);
    // Colour CRTC, sequencer and the text window at B8000 (odd/even, map 3).
    m.io_write(0x3C2, 1, 0x67);
    m.io_write(0x3C4, 2, 0x0302);
    m.io_write(0x3C4, 2, 0x0204);
    m.io_write(0x3CE, 2, 0x1005);
    m.io_write(0x3CE, 2, 0x0E06);
    m.io_write(0x3CE, 2, 0xFF08); // bit mask: all bits from the CPU (0 at power-on)
    m.mmio_write(0xB_8000, 2, 0x1F48);
    m.mmio_write(0xB_8002, 2, 0x1F69);
    assert_eq!(m.mmio_read(0xB_8000, 4), 0x1F69_1F48);
    assert_eq!(m.mmio_read(0xA_0000, 1), 0xFF, "A0000 not decoded with map 3");
    m.io_write(0x3D4, 2, 0x340F);
    assert_eq!(m.io_read(0x3D5, 1), 0x34);
    assert_eq!(m.io_read(0x3CC, 1), 0x67);
    assert_eq!(m.io_read(0x3DA, 1) & !0x09, 0, "input status 1: retrace and display-enable bits only");
    assert_eq!(m.display().unwrap().screen_text(), "display off\n", "no timings programmed");
}

#[test]
fn snapshot_keeps_the_screen() {
    let mut m = machine(None);
    m.io_write(0x3C4, 2, 0x0F02);
    m.io_write(0x3CE, 2, 0x0506);
    m.io_write(0x3CE, 2, 0xFF08);
    m.mmio_write(0xA_1234, 1, 0x5A);
    let snap = m.save();
    let mut other = machine(None);
    other.restore(&snap).unwrap();
    other.io_write(0x3CE, 2, 0x0004);
    assert_eq!(other.mmio_read(0xA_1234, 1), 0x5A);
}

/// SeaBIOS's VGA BIOS for this device, from the Debian package `seabios`.
const SEABIOS_VGA: &str = "/usr/share/seabios/vgabios-stdvga.bin";

#[test]
fn seabios_vga_rom_is_served_intact() {
    let Ok(rom) = std::fs::read(SEABIOS_VGA) else {
        eprintln!("skipped: seabios_vga_rom_is_served_intact needs seabios ({SEABIOS_VGA}; apt-get install seabios)");
        return;
    };
    let mut m = machine(Some(rom.clone()));
    let mask = size_bar(&mut m, 0x30);
    let size = u64::from(!(mask & !1)) + 1;
    assert!(size >= rom.len() as u64 && size.is_power_of_two(), "ROM BAR of {size} bytes");
    map_bars(&mut m);
    let got = read_rom(&mut m, rom.len());
    assert_eq!(&got[..2], &[0x55, 0xAA], "option ROM signature");
    assert_eq!(usize::from(got[2]) * 512, rom.len().div_ceil(512) * 512, "size byte");
    assert_eq!(got.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0, "checksum");
    assert!(got == rom, "byte for byte");
    // SeaBIOS finds the PCI data structure and checks its IDs against the function's.
    let pcir = usize::from(u16::from_le_bytes([got[0x18], got[0x19]]));
    assert_eq!(&got[pcir..pcir + 4], b"PCIR");
    assert_eq!(u16::from_le_bytes([got[pcir + 4], got[pcir + 5]]), 0x1234);
    assert_eq!(u16::from_le_bytes([got[pcir + 6], got[pcir + 7]]), 0x1111);
}
