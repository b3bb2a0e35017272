//! The Intel 82441FX PCI and memory controller (PMC) of the 440FX chipset, host bridge at
//! 00:00.0 (82441FX datasheet, section 3): identification, and the PAM registers that route
//! the 0xC0000-0xFFFFF area between shadow RAM and the ROM side. SMRAM control (0x72) is
//! kept as plain storage: there is no system management mode.

use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use crate::pci::{PciConfig, PciFunction};

/// PAM0..PAM6.
const PAM0: u16 = 0x59;
const SMRAM: u16 = 0x72;

pub struct I440fx {
    config: PciConfig,
}

impl Default for I440fx {
    fn default() -> Self {
        I440fx::new()
    }
}

fn power_on_config() -> PciConfig {
    let mut c = PciConfig::new(0x8086, 0x1237, 0x06_00_00, 2);
    for off in PAM0..=PAM0 + 6 {
        c.set_writable(off, if off == PAM0 { 0x30 } else { 0x33 });
    }
    c.set_writable(SMRAM, 0x78);
    c.set8(SMRAM, 0x02);
    c
}

impl I440fx {
    pub fn new() -> I440fx {
        I440fx { config: power_on_config() }
    }

    /// The PAM segments (as `memory::PAM_SEGMENTS` numbers them) a PAM register controls,
    /// with the nibble shift for each.
    fn segments_of(reg: u16) -> Vec<(u8, u32)> {
        match reg {
            PAM0 => vec![(12, 4)],
            r => {
                let k = (r - PAM0 - 1) as u8 * 2;
                vec![(k, 0), (k + 1, 4)]
            }
        }
    }

    fn announce_pam(&self, reg: u16, cx: &mut DeviceContext) {
        let v = u32::from(self.config.get8(reg));
        for (segment, shift) in Self::segments_of(reg) {
            let n = v >> shift;
            cx.event(MachineEvent::Pam { segment, read_ram: n & 1 != 0, write_ram: n & 2 != 0 });
        }
    }
}

impl Device for I440fx {
    fn name(&self) -> &'static str {
        "i440fx"
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

    fn power_on(&mut self, cx: &mut DeviceContext) {
        for reg in PAM0..=PAM0 + 6 {
            self.announce_pam(reg, cx);
        }
    }

    fn as_pci(&mut self) -> Option<&mut dyn PciFunction> {
        Some(self)
    }
}

impl PciFunction for I440fx {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_write(&mut self, offset: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.config.write(offset, size, value);
        for reg in offset..offset + u16::from(size) {
            if (PAM0..=PAM0 + 6).contains(&reg) {
                self.announce_pam(reg, cx);
            }
        }
    }
}
