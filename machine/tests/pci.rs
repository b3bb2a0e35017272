//! The PCI bus of the board as a guest sees it through ports 0xCF8/0xCFC: enumeration, BAR
//! sizing and mapping, INTx routed through the PIIX3's PIRQ registers to the 8259A, and the
//! i440FX's PAM registers switching shadow RAM.

use machine::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use machine::host::NullChar;
use machine::pci::{devfn, Bar, BarKind, PciConfig, PciFunction};
use machine::{ClockMode, Machine, MachineConfig};

/// A function with an I/O BAR (a register that raises INTA# when written with 1) and a
/// memory BAR (16 bytes of storage).
struct Probe {
    config: PciConfig,
    mem: [u8; 16],
}

impl Probe {
    fn new() -> Probe {
        let mut config = PciConfig::new(0x1AF4, 0x1234, 0xFF_00_00, 1);
        config.set_bar(0, Bar { kind: BarKind::Io, size: 16 });
        config.set_bar(1, Bar { kind: BarKind::Mem32, size: 4096 });
        config.set_interrupt_pin(1);
        Probe { config, mem: [0; 16] }
    }
}

impl Device for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn reset(&mut self) {}
    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new("probe", 1, &())
    }
    fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        s.decode::<()>("probe", 1)
    }
    fn as_pci(&mut self) -> Option<&mut dyn PciFunction> {
        Some(self)
    }
}

impl PciFunction for Probe {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, bar: u8, offset: u64, _size: u8, _cx: &mut DeviceContext) -> u64 {
        match bar {
            0 => 0x5A + offset,
            _ => u64::from(self.mem[(offset % 16) as usize]),
        }
    }
    fn bar_write(&mut self, bar: u8, offset: u64, _size: u8, value: u64, cx: &mut DeviceContext) {
        match bar {
            0 => cx.set_intx(value & 1 != 0),
            _ => self.mem[(offset % 16) as usize] = value as u8,
        }
    }
}

fn machine() -> Machine {
    Machine::new(MachineConfig {
        ram_size: 4 << 20,
        bios: vec![0xF4; 128 * 1024],
        clock: ClockMode::Deterministic,
        serial: Box::new(NullChar),
        debugcon: Box::new(NullChar),
        ..MachineConfig::default()
    })
    .unwrap()
}

fn cfg_read(m: &mut Machine, dev: u8, off: u8) -> u32 {
    m.io_write(0xCF8, 4, 0x8000_0000 | (u32::from(dev) << 11) | u32::from(off & 0xFC));
    m.io_read(0xCFC, 4)
}

fn cfg_write(m: &mut Machine, dev: u8, off: u8, v: u32) {
    m.io_write(0xCF8, 4, 0x8000_0000 | (u32::from(dev) << 11) | u32::from(off & 0xFC));
    m.io_write(0xCFC, 4, v);
}

#[test]
fn enumeration_finds_the_chipset() {
    let mut m = machine();
    assert_eq!(cfg_read(&mut m, 0, 0), 0x1237_8086, "i440FX host bridge");
    assert_eq!(cfg_read(&mut m, 1, 0), 0x7000_8086, "PIIX3 ISA bridge");
    assert_eq!(cfg_read(&mut m, 1, 0x0C) >> 16 & 0x80, 0x80, "multi-function");
    assert_eq!(cfg_read(&mut m, 5, 0), 0xFFFF_FFFF, "empty slot");
}

#[test]
fn bars_map_and_intx_reaches_the_pic() {
    let mut m = machine();
    m.add_pci_function(Box::new(Probe::new()), devfn(3, 0));
    cfg_write(&mut m, 3, 0x10, 0xFFFF_FFFF);
    assert_eq!(cfg_read(&mut m, 3, 0x10), 0xFFFF_FFF1, "I/O BAR sizing");
    cfg_write(&mut m, 3, 0x10, 0xC000);
    cfg_write(&mut m, 3, 0x14, 0xFEB0_0000);
    assert_eq!(m.io_read(0xC001, 1), 0xFF, "not decoding before the command register says so");
    cfg_write(&mut m, 3, 0x04, 3);
    assert_eq!(m.io_read(0xC001, 1), 0x5B);
    m.mmio_write(0xFEB0_0004, 1, 0x77);
    assert_eq!(m.mmio_read(0xFEB0_0004, 1), 0x77);
    // Slot 3, pin A reaches PIRQC ((3 - 1 + 1 - 1) & 3): route it to IRQ 11; program the PIC.
    cfg_write(&mut m, 1, 0x60, 0x800B_8080);
    for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01)] {
        m.io_write(p, 1, v);
    }
    m.io_write(0x21, 1, 0xFB);
    m.io_write(0xA1, 1, 0xF7);
    m.io_write(0x4D1, 1, 0x08); // IRQ 11 level-triggered
    assert!(!m.intr_pending());
    m.io_write(0xC000, 1, 1);
    assert!(m.intr_pending(), "INTA# -> PIRQD -> IRQ 11");
    assert_eq!(m.intr_ack(), Some(0x73));
    m.io_write(0xC000, 1, 0);
    m.io_write(0xA0, 1, 0x20);
    m.io_write(0x20, 1, 0x20);
    assert!(!m.intr_pending(), "level dropped");
    // Moving the BAR unmaps the old ports.
    cfg_write(&mut m, 3, 0x10, 0xD000);
    assert_eq!(m.io_read(0xC001, 1), 0xFF);
    assert_eq!(m.io_read(0xD001, 1), 0x5B);
}

#[test]
fn pam_registers_switch_shadow_ram() {
    let mut m = machine();
    let mut b = [0u8; 1];
    m.memory().read(0xF_0000, &mut b);
    assert_eq!(b[0], 0xF4, "BIOS image at power-on");
    // PAM0 high nibble: write RAM only; copy; then read RAM.
    cfg_write(&mut m, 0, 0x58, 0x0000_2000);
    m.mmio_write(0xF_0000, 1, 0x90);
    m.memory().read(0xF_0000, &mut b);
    assert_eq!(b[0], 0xF4, "reads still from ROM");
    cfg_write(&mut m, 0, 0x58, 0x0000_1000);
    m.memory().read(0xF_0000, &mut b);
    assert_eq!(b[0], 0x90, "shadow RAM now read");
    assert_eq!(cfg_read(&mut m, 0, 0x58) >> 8 & 0xFF, 0x10, "PAM0 reads back");
}
