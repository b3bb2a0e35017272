//! The state a PC BIOS leaves behind when POST hands over to a boot loader, for code that starts
//! without running a BIOS (direct kernel boot) and for Ferrite's own BIOS to share: the 8259A
//! pair at vector bases 0x08/0x70, PIT channel 0 at 18.2 Hz, A20 on, the interrupt vector table,
//! the BIOS data area (IBM PC/AT Technical Reference; Ralf Brown's "BIOS Data Area" list) and
//! the extended BIOS data area, the keyboard controller (keyboard interrupt, scan code
//! translation), PCI enumerated and configured ([`pci`]), VGA text mode 3, the ACPI and SMBIOS
//! tables in reserved RAM with their entry points in the write-protected shadow copy of the F
//! segment, and the e820 map a BIOS reports for it all.
//!
//! Everything goes through the same ports and memory a BIOS would use, so the devices' state
//! (the i440FX's PAM registers, port 0x92, the 8259A, the 8254) agrees with what the guest sees.
//! [`leave_post_state`] does it all; its parts are public for firmware that does some itself.

pub mod pci;

use super::{mptable, FirmwareTables, Platform, E820_RAM, E820_RESERVED};
use crate::board::{Machine, COM1_PORT, COM2_4};
use crate::memory::{Memory, FOUR_GIB, HIGH_RAM_START};

/// Where the extended BIOS data area starts: 1 KiB below 640 KiB, as SeaBIOS and most BIOSes
/// put it, leaving 639 KiB of base memory.
pub const EBDA_START: u64 = 0x9_FC00;
pub const EBDA_SIZE_KIB: u16 = 1;
pub const BASE_MEMORY_KIB: u16 = 639;
/// The BIOS data area, segment 0x40.
pub const BDA_START: u64 = 0x400;
/// Reserved RAM at the top of memory below the PCI hole holding the ACPI and SMBIOS tables.
pub const FIRMWARE_AREA_SIZE: u64 = 0x1_0000;
/// PIT input clock (Hz): with the full count of 65,536, channel 0 ticks 18.2 times a second.
pub const PIT_HZ: u64 = 1_193_182;
/// Vector bases a PC BIOS programs: IRQs 0-7 at INT 08h-0Fh, IRQs 8-15 at INT 70h-77h.
pub const MASTER_VECTOR_BASE: u8 = 0x08;
pub const SLAVE_VECTOR_BASE: u8 = 0x70;
/// The interrupt masks left in the 8259A pair: the timer, the keyboard and the cascade line
/// open (the IRQs with BIOS handlers), everything else masked.
pub const MASTER_MASK: u8 = 0xF8;
pub const SLAVE_MASK: u8 = 0xFF;

/// A real-mode far pointer, as the interrupt vector table stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FarPtr {
    pub segment: u16,
    pub offset: u16,
}

impl FarPtr {
    pub fn linear(self) -> u64 {
        (u64::from(self.segment) << 4) + u64::from(self.offset)
    }
}

/// The handlers a BIOS image provides for the interrupt vector table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiosEntryPoints {
    /// A lone IRET: every vector without a handler.
    pub iret: FarPtr,
    /// INT 08h: the IRQ 0 tick counter.
    pub timer: FarPtr,
    /// IRQs 1-7 (INT 09h-0Fh): end of interrupt at the master.
    pub irq_master: FarPtr,
    /// IRQs 8-15 (INT 70h-77h): end of interrupt at both controllers.
    pub irq_slave: FarPtr,
}

/// What [`leave_post_state`] set up, for the boot loader that runs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostState {
    /// The memory map as INT 15h/E820h reports it: (address, length, type), in address order.
    pub e820: Vec<(u64, u64, u32)>,
    /// Where the ACPI RSDP is (in the F segment), and its bytes (36, revision 2).
    pub rsdp: Option<(u64, Vec<u8>)>,
    /// Where the SMBIOS entry point is (in the F segment).
    pub smbios_anchor: Option<u64>,
}

/// The reserved area holding the ACPI and SMBIOS tables: the last [`FIRMWARE_AREA_SIZE`] bytes
/// of RAM below the PCI hole, or `None` when RAM ends too close to 1 MiB to spare it.
pub fn firmware_area(p: &Platform) -> Option<u64> {
    let low = p.low_ram();
    (low >= 0x10_0000 + 2 * FIRMWARE_AREA_SIZE).then(|| low - FIRMWARE_AREA_SIZE)
}

/// The memory map as a BIOS reports it after POST: conventional memory up to the EBDA, the
/// EBDA and the F segment reserved, extended memory up to the firmware tables, those reserved,
/// the BIOS image at the top of 4 GiB reserved, and RAM above 4 GiB.
pub fn bios_e820(p: &Platform, rom_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, 0xA_0000 - EBDA_START, E820_RESERVED),
        (0xF_0000, 0x1_0000, E820_RESERVED),
    ];
    let low = p.low_ram();
    let extended_end = firmware_area(p).unwrap_or(low);
    if extended_end > 0x10_0000 {
        map.push((0x10_0000, extended_end - 0x10_0000, E820_RAM));
    }
    if extended_end < low {
        map.push((extended_end, low - extended_end, E820_RESERVED));
    }
    map.push((FOUR_GIB - rom_size, rom_size, E820_RESERVED));
    if p.high_ram() > 0 {
        map.push((HIGH_RAM_START, p.high_ram(), E820_RAM));
    }
    map
}

/// Programs the 8259A pair as a PC BIOS does: edge triggered, cascaded on IRQ 2, vector bases
/// 0x08 and 0x70, 8086 mode, with these interrupt masks (the IRQs the BIOS has handlers for
/// open; [`MASTER_MASK`] and [`SLAVE_MASK`] for the stub ROM).
pub fn init_pics(m: &mut Machine, master_mask: u8, slave_mask: u8) {
    for (base, vector, icw3, mask) in [(0x20, MASTER_VECTOR_BASE, 0x04, master_mask), (0xA0, SLAVE_VECTOR_BASE, 0x02, slave_mask)] {
        m.io_write(base, 1, 0x11); // ICW1: edge, cascade, ICW4 follows
        m.io_write(base + 1, 1, u32::from(vector)); // ICW2
        m.io_write(base + 1, 1, icw3); // ICW3: slave on IRQ 2 / slave identity 2
        m.io_write(base + 1, 1, 0x01); // ICW4: 8086 mode, normal EOI
        m.io_write(base + 1, 1, u32::from(mask)); // OCW1
    }
}

/// PIT channel 0 in mode 3 (square wave) with the full count: IRQ 0 at 18.2 Hz, as the PC BIOS
/// leaves it.
pub fn init_pit(m: &mut Machine) {
    m.io_write(0x43, 1, 0x36); // channel 0, low then high byte, mode 3, binary
    m.io_write(0x40, 1, 0);
    m.io_write(0x40, 1, 0);
}

/// A20 on, through System Control Port A (0x92).
pub fn enable_a20(m: &mut Machine) {
    let a = m.io_read(0x92, 1);
    m.io_write(0x92, 1, (a | 0x02) & !0x01);
}

/// The 8042 as a BIOS leaves it: self-tested (system flag set), keyboard interrupt on,
/// scan codes translated to set 1, the mouse port disabled (SeaBIOS's final command byte).
pub fn init_keyboard_controller(m: &mut Machine) {
    const SELF_TEST: u32 = 0xAA;
    const WRITE_COMMAND_BYTE: u32 = 0x60;
    const COMMAND_BYTE: u32 = 0x61; // keyboard IRQ, mouse disabled, translation
    m.io_write(0x64, 1, SELF_TEST);
    // Drain the self-test result (and anything the devices queued at power-on).
    for _ in 0..16 {
        if m.io_read(0x64, 1) & 1 == 0 {
            break;
        }
        m.io_read(0x60, 1);
    }
    m.io_write(0x64, 1, WRITE_COMMAND_BYTE);
    m.io_write(0x60, 1, COMMAND_BYTE);
}

/// The interrupt vector table: every vector at the dummy IRET but the hardware IRQs.
pub fn ivt(e: &BiosEntryPoints) -> [FarPtr; 256] {
    let mut t = [e.iret; 256];
    let master = usize::from(MASTER_VECTOR_BASE);
    let slave = usize::from(SLAVE_VECTOR_BASE);
    t[master] = e.timer;
    t[master + 1..master + 8].fill(e.irq_master);
    t[slave..slave + 8].fill(e.irq_slave);
    t
}

pub fn write_ivt(mem: &mut Memory, table: &[FarPtr; 256]) {
    let mut bytes = [0u8; 1024];
    for (i, p) in table.iter().enumerate() {
        bytes[4 * i..4 * i + 2].copy_from_slice(&p.offset.to_le_bytes());
        bytes[4 * i + 2..4 * i + 4].copy_from_slice(&p.segment.to_le_bytes());
    }
    mem.write_ram(0, &bytes);
}

/// The 256-byte BIOS data area for this platform, with the VGA in mode 3 and the tick count
/// `ticks` (since midnight, 18.2 per second).
pub fn bda(p: &Platform, ticks: u32) -> [u8; 256] {
    let mut b = [0u8; 256];
    let mut w16 = |at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    // The four serial ports in the order a BIOS finds them (no parallel ports on this board).
    w16(0x00, COM1_PORT);
    for (i, &(port, _irq)) in COM2_4.iter().enumerate() {
        w16(0x02 + 2 * i, port);
    }
    w16(0x0E, (EBDA_START >> 4) as u16);
    let floppies = p.floppies.len() as u16;
    let mut equipment = 1 << 1 // x87 present
        | 1 << 2 // PS/2 mouse
        | 0b10 << 4 // initial video: 80x25 colour
        | (1 + COM2_4.len() as u16) << 9; // serial ports
    if floppies > 0 {
        equipment |= 1 | (floppies - 1) << 6;
    }
    w16(0x10, equipment);
    w16(0x13, BASE_MEMORY_KIB);
    // Keyboard buffer: empty, at 40:1E-40:3E.
    w16(0x1A, 0x1E);
    w16(0x1C, 0x1E);
    w16(0x80, 0x1E);
    w16(0x82, 0x3E);
    // Video: mode 3, 80 columns, 4 KiB pages, cursor at 0,0 with the CGA-style shape 6-7,
    // CRTC at 0x3D4, mode control 0x29, palette 0x30.
    w16(0x4A, 80);
    w16(0x4C, 0x1000);
    w16(0x60, 0x0607);
    w16(0x63, 0x3D4);
    w16(0x85, 16);
    b[0x49] = 3;
    b[0x65] = 0x29;
    b[0x66] = 0x30;
    b[0x6C..0x70].copy_from_slice(&ticks.to_le_bytes());
    b[0x75] = p.ide.iter().filter(|d| !d.2).count().min(2) as u8;
    // Serial port time-outs for COM1-COM4.
    b[0x7C..0x80].fill(0x0A);
    b[0x84] = 24; // rows - 1
    b[0x87] = 0x60;
    b[0x88] = 0xF9;
    b[0x89] = 0x51;
    b[0x8A] = 0x08;
    b[0x96] = 0x10; // 101/102-key keyboard
    b
}

/// Ticks since midnight, read from the RTC through its ports as a BIOS does at POST.
pub fn rtc_ticks(m: &mut Machine) -> u32 {
    let mut cmos = |index: u8| {
        m.io_write(0x70, 1, u32::from(index));
        m.io_read(0x71, 1) as u8
    };
    let status_b = cmos(0x0B);
    let binary = status_b & 0x04 != 0;
    let value = |v: u8| if binary { u32::from(v) } else { u32::from(v >> 4) * 10 + u32::from(v & 0xF) };
    let (s, mi, h) = (cmos(0x00), cmos(0x02), cmos(0x04));
    let mut hours = value(h & 0x7F);
    if status_b & 0x02 == 0 {
        // 12-hour mode: bit 7 is PM, 12 means 0.
        hours = hours % 12 + if h & 0x80 != 0 { 12 } else { 0 };
    }
    let seconds = u64::from((hours * 60 + value(mi)) * 60 + value(s)).min(86_399);
    (seconds * PIT_HZ / 65_536) as u32
}

/// Writes the BIOS data area and the first bytes of the EBDA (its size in KiB).
pub fn write_bda(m: &mut Machine, ticks: u32) {
    let bytes = bda(m.platform(), ticks);
    let mem = m.memory_mut();
    mem.write_ram(BDA_START, &bytes);
    let mut ebda = [0u8; 1024];
    ebda[0] = EBDA_SIZE_KIB as u8;
    mem.write_ram(EBDA_START, &ebda);
}

struct BoardVgaPorts<'a>(&'a mut Machine);

impl crate::devices::vga::tables::VgaPorts for BoardVgaPorts<'_> {
    fn write_port(&mut self, port: u16, v: u8) {
        self.0.io_write(port, 1, u32::from(v));
    }
    fn touch_port(&mut self, port: u16) {
        self.0.io_read(port, 1);
    }
}

/// The 8x16 font of Ferrite's BIOS (`roms/bios/font8x16.bin`, code page 437).
const FONT_8X16: &[u8] = include_bytes!("../../../../roms/bios/font8x16.bin");

/// VGA text mode 3 (80x25, 16 colours) through the VGA's ports, with a blank screen and the
/// 8x16 font in plane 2, as a VGA BIOS leaves it: a directly booted kernel that writes to
/// B8000h (or keeps the console there) is readable in the window.
pub fn set_vga_text_mode(m: &mut Machine) {
    use crate::devices::vga::tables;
    tables::program(&mut BoardVgaPorts(m), &tables::MODE_03);
    load_text_font(m);
    for cell in 0..80 * 25 {
        m.mmio_write(0xB_8000 + 2 * cell, 2, 0x0720);
    }
}

/// Writes the font into character map 0 of plane 2 (32 bytes a glyph), then puts back the
/// mode 3 sequencer and graphics controller values that this changes.
fn load_text_font(m: &mut Machine) {
    let seq = |m: &mut Machine, i: u32, v: u32| {
        m.io_write(0x3C4, 1, i);
        m.io_write(0x3C5, 1, v);
    };
    let gc = |m: &mut Machine, i: u32, v: u32| {
        m.io_write(0x3CE, 1, i);
        m.io_write(0x3CF, 1, v);
    };
    // Plane 2 alone, sequential addressing, A0000h 64 KiB, read map 2.
    seq(m, 2, 0x04);
    seq(m, 4, 0x07);
    gc(m, 4, 0x02);
    gc(m, 5, 0x00);
    gc(m, 6, 0x04);
    for (ch, glyph) in FONT_8X16.chunks_exact(16).enumerate().take(256) {
        for (row, &bits) in glyph.iter().enumerate() {
            m.mmio_write(0xA_0000 + ch as u64 * 32 + row as u64, 1, u64::from(bits));
        }
    }
    let t = &crate::devices::vga::tables::MODE_03;
    seq(m, 2, u32::from(t.seq[2]));
    seq(m, 4, u32::from(t.seq[4]));
    gc(m, 4, u32::from(t.gc[4]));
    gc(m, 5, u32::from(t.gc[5]));
    gc(m, 6, u32::from(t.gc[6]));
}

/// Writes `data` into the F segment's shadow RAM at `at`, as a BIOS writes its tables there:
/// on the first call the ROM is copied to shadow RAM; afterwards the segment reads from RAM
/// and ignores writes (PAM0 = read-only shadow).
fn write_f_segment(m: &mut Machine, at: u64, data: &[u8]) {
    const PAM0: u32 = 0x59;
    let pam0 = |m: &mut Machine, v: u8| {
        m.io_write(0xCF8, 4, 0x8000_0000 | (PAM0 & !3));
        m.io_write(0xCFC + (PAM0 & 3) as u16, 1, u32::from(v));
    };
    m.io_write(0xCF8, 4, 0x8000_0000 | (PAM0 & !3));
    let current = m.io_read(0xCFC + (PAM0 & 3) as u16, 1) as u8;
    if current & 0x10 == 0 {
        // Reads from ROM, writes to RAM: copy the ROM down.
        pam0(m, 0x20);
        let mut rom = vec![0u8; 0x1_0000];
        m.memory().read(0xF_0000, &mut rom);
        m.memory_mut().write(0xF_0000, &rom);
    }
    pam0(m, 0x30);
    m.memory_mut().write(at, data);
    pam0(m, 0x10);
}

/// Places the ACPI and SMBIOS tables in the firmware area and their entry points at
/// `anchors_at` in the F segment (16-byte aligned, 0x60 bytes free). Returns the RSDP's
/// address and bytes and the SMBIOS entry point's address; nothing when RAM is too small for a
/// firmware area.
pub fn place_tables(m: &mut Machine, anchors_at: u64) -> (Option<(u64, Vec<u8>)>, Option<u64>) {
    let Some(area) = firmware_area(m.platform()) else {
        tracing::warn!("RAM ends below {:#x}: no room for the ACPI and SMBIOS tables", 0x10_0000 + 2 * FIRMWARE_AREA_SIZE);
        return (None, None);
    };
    let FirmwareTables { acpi, smbios } = m.firmware_tables().clone();
    let rsdp_at = anchors_at;
    let smbios_anchor_at = anchors_at + 0x40;
    let (tables, rsdp) = acpi.place(area, rsdp_at);
    let smbios_at = area + (tables.len() as u64).next_multiple_of(16);
    let mut smbios = smbios.clone();
    smbios.set_address(smbios_at as u32);
    debug_assert!(smbios_at + smbios.tables.len() as u64 <= area + FIRMWARE_AREA_SIZE);
    let mem = m.memory_mut();
    mem.write_ram(area, &vec![0u8; FIRMWARE_AREA_SIZE as usize]);
    mem.write_ram(area, &tables);
    mem.write_ram(smbios_at, &smbios.tables);
    write_f_segment(m, rsdp_at, &rsdp);
    write_f_segment(m, smbios_anchor_at, &smbios.anchor);
    if let Some((floating, table)) = mp_tables(m, anchors_at) {
        write_f_segment(m, anchors_at + mptable::TABLE_OFFSET, &table);
        write_f_segment(m, anchors_at + mptable::FLOATING_OFFSET, &floating);
    }
    (Some((rsdp_at, rsdp)), Some(smbios_anchor_at))
}

/// The MP floating pointer and configuration table for the machine as POST left it (the PCI
/// interrupt lines read back from configuration space), the table to go at
/// `anchors_at + mptable::TABLE_OFFSET` in the F segment's 4 KiB tables area; `None` (with a
/// warning) when it would not fit there.
pub fn mp_tables(m: &mut Machine, anchors_at: u64) -> Option<([u8; 16], Vec<u8>)> {
    let pci = pci::interrupts(m);
    let table = mptable::config_table(m.platform().cpus, &pci);
    if mptable::TABLE_OFFSET + table.len() as u64 > 0x1000 {
        tracing::warn!("the MP table for {} processors does not fit the F segment's tables area; none written", m.platform().cpus);
        return None;
    }
    Some((mptable::floating_pointer((anchors_at + mptable::TABLE_OFFSET) as u32), table))
}

/// Leaves the machine as a PC BIOS leaves it when it starts the boot loader: interrupt
/// controllers, timer, A20, interrupt vectors pointing into the ROM at `entry`, BIOS data
/// area, text mode, and the ACPI/SMBIOS tables with their entry points at `anchors_at` in the
/// F segment. Returns the memory map and where the tables went.
pub fn leave_post_state(m: &mut Machine, entry: &BiosEntryPoints, anchors_at: u64) -> PostState {
    init_pics(m, MASTER_MASK, SLAVE_MASK);
    init_pit(m);
    enable_a20(m);
    init_keyboard_controller(m);
    pci::init_pci(m);
    write_ivt(m.memory_mut(), &ivt(entry));
    let ticks = rtc_ticks(m);
    write_bda(m, ticks);
    set_vga_text_mode(m);
    let (rsdp, smbios_anchor) = place_tables(m, anchors_at);
    let rom_size = m.memory().bios_size();
    let e820 = bios_e820(m.platform(), rom_size);
    debug_assert!(e820.iter().all(|&(a, l, _)| a % 0x400 == 0 && l % 0x400 == 0 && l > 0));
    PostState { e820, rsdp, smbios_anchor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::LOW_RAM_LIMIT;

    fn platform(ram: u64) -> Platform {
        Platform { ram_size: ram, cpus: 1, ide: vec![(0, 0, false), (1, 0, true)], floppies: vec![], boot_order: "c".into(), fw_cfg_files: vec![] }
    }

    /// After direct boot's POST, text written to B8000h is drawn with a font: the cell of an
    /// 'A' has lit pixels, the blank cell beside it none.
    #[test]
    fn text_mode_after_post_has_a_font() {
        use crate::display::Frame;
        let mut m = Machine::new(crate::MachineConfig {
            ram_size: 16 << 20,
            bios: crate::firmware::stub_rom::image(),
            ..crate::MachineConfig::default()
        })
        .unwrap();
        set_vga_text_mode(&mut m);
        // Column 2, clear of the cursor (drawn at column 0).
        m.mmio_write(0xB_8000 + 4, 2, 0x0741);
        let now = m.now();
        let mut frame = Frame::new();
        m.display().expect("a VGA").render(now, &mut frame);
        assert_eq!((frame.width, frame.height), (720, 400));
        let lit = |x0: u32| (0..16).flat_map(|y| (x0..x0 + 9).map(move |x| (x, y))).filter(|&(x, y)| frame.pixel(x, y) != Some([0, 0, 0, 0xFF])).count();
        assert!(lit(18) > 10, "the 'A' is drawn");
        assert_eq!(lit(27), 0, "a blank is blank");
        assert_eq!(m.display().unwrap().screen_text().lines().next(), Some("  A"));
    }

    #[test]
    fn e820_as_a_bios_reports_it() {
        let m = bios_e820(&platform(512 << 20), 0x1_0000);
        assert_eq!(
            m,
            vec![
                (0, 0x9_FC00, E820_RAM),
                (0x9_FC00, 0x400, E820_RESERVED),
                (0xF_0000, 0x1_0000, E820_RESERVED),
                (0x10_0000, (512 << 20) - 0x10_0000 - FIRMWARE_AREA_SIZE, E820_RAM),
                ((512 << 20) - FIRMWARE_AREA_SIZE, FIRMWARE_AREA_SIZE, E820_RESERVED),
                (0xFFFF_0000, 0x1_0000, E820_RESERVED),
            ]
        );
        let big = bios_e820(&platform(8 << 30), 0x1_0000);
        assert_eq!(big.last(), Some(&(HIGH_RAM_START, (8 << 30) - LOW_RAM_LIMIT, E820_RAM)));
        // 1 MiB: no extended memory and no firmware area.
        let tiny = bios_e820(&platform(1 << 20), 0x1_0000);
        assert_eq!(tiny.len(), 4);
        assert!(firmware_area(&platform(1 << 20)).is_none());
    }

    #[test]
    fn ivt_points_irqs_at_handlers() {
        let f = |o| FarPtr { segment: 0xF000, offset: o };
        let e = BiosEntryPoints { iret: f(1), timer: f(2), irq_master: f(3), irq_slave: f(4) };
        let t = ivt(&e);
        assert_eq!((t[0x00], t[0x08], t[0x09], t[0x0F], t[0x10]), (f(1), f(2), f(3), f(3), f(1)));
        assert_eq!((t[0x6F], t[0x70], t[0x77], t[0x78]), (f(1), f(4), f(4), f(1)));
        assert_eq!(f(0xFF53).linear(), 0xF_FF53);
    }

    #[test]
    fn bda_fields() {
        let mut p = platform(64 << 20);
        p.floppies = vec![0, 1];
        let b = bda(&p, 0x1234);
        let w = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        assert_eq!(w(0x00), 0x3F8);
        assert_eq!(w(0x08), 0, "no parallel port");
        assert_eq!(w(0x0E), 0x9FC0);
        assert_eq!(w(0x13), 639);
        assert_eq!(w(0x10) & 1, 1, "floppies present");
        assert_eq!(w(0x10) >> 6 & 3, 1, "two floppies");
        assert_eq!((w(0x02), w(0x04), w(0x06)), (0x2F8, 0x3E8, 0x2E8));
        assert_eq!(w(0x10) >> 9 & 7, 4, "four serial ports");
        assert_eq!(w(0x10) >> 4 & 3, 2, "80x25 colour");
        assert_eq!(u32::from_le_bytes(b[0x6C..0x70].try_into().unwrap()), 0x1234);
        assert_eq!(b[0x75], 1, "one hard disk (the CD-ROM does not count)");
        assert_eq!((b[0x49], w(0x4A), b[0x84]), (3, 80, 24));
    }

    #[test]
    fn tables_fit_the_firmware_area() {
        let p = Platform { ram_size: 1 << 40, cpus: 64, ide: vec![], floppies: vec![0, 1], boot_order: "c".into(), fw_cfg_files: vec![] };
        let t = FirmwareTables::build(&p);
        let need = (t.acpi.tables.len() as u64).next_multiple_of(16) + t.smbios.tables.len() as u64;
        assert!(need <= FIRMWARE_AREA_SIZE, "{need} bytes");
    }
}
