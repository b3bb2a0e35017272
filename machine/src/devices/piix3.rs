//! The Intel 82371SB (PIIX3) PCI-to-ISA bridge, function 00:01.0 (82371SB datasheet, section
//! 2.3): identification and the PIRQ route control registers (0x60-0x63) through which the
//! board routes PCI interrupts to ISA IRQs. The ELCR (edge/level per IRQ) lives with the 8259A
//! model. Function 0 of a multi-function device (IDE and power management follow it).

use crate::device::{Device, DeviceSnapshot, SnapshotError};
use crate::pci::{PciConfig, PciFunction, PIRQ_ROUTE};

pub struct Piix3Isa {
    config: PciConfig,
}

impl Default for Piix3Isa {
    fn default() -> Self {
        Piix3Isa::new()
    }
}

fn power_on_config() -> PciConfig {
    let mut c = PciConfig::new(0x8086, 0x7000, 0x06_01_00, 0);
    c.set_multifunction();
    for k in 0..4 {
        c.set_writable(PIRQ_ROUTE + k, 0x8F);
        // Routing disabled at power-on.
        c.set8(PIRQ_ROUTE + k, 0x80);
    }
    // ISA clock divisor, top of memory, misc status, APIC base: plain storage as the
    // firmware programs them.
    for off in [0x4C, 0x4E, 0x4F, 0x69, 0x6A, 0x6B, 0x70, 0x76, 0x77, 0x78, 0x79, 0x80, 0x82, 0xA0, 0xA2, 0xA3] {
        c.set_writable(off, 0xFF);
    }
    c
}

impl Piix3Isa {
    pub fn new() -> Piix3Isa {
        Piix3Isa { config: power_on_config() }
    }
}

impl Device for Piix3Isa {
    fn name(&self) -> &'static str {
        "piix3-isa"
    }

    fn reset(&mut self) {
        self.config = power_on_config();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(self.name(), 1, &self.config)
    }

    fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.config = s.decode(self.name(), 1)?;
        Ok(())
    }

    fn as_pci(&mut self) -> Option<&mut dyn PciFunction> {
        Some(self)
    }
}

impl PciFunction for Piix3Isa {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
