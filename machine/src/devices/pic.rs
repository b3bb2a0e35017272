//! STUB: replaced by the full 8259A model.
use crate::device::{DeviceSnapshot, SnapshotError};

pub struct DualPic {
    irr: u16,
}

impl DualPic {
    pub fn new() -> DualPic {
        DualPic { irr: 0 }
    }
    pub fn set_irq(&mut self, line: u8, level: bool) {
        if level {
            self.irr |= 1 << line;
        }
    }
    pub fn intr_pending(&self) -> bool {
        false
    }
    pub fn acknowledge(&mut self) -> u8 {
        0x0F
    }
    pub fn read(&mut self, _port: u16) -> u8 {
        0
    }
    pub fn write(&mut self, _port: u16, _value: u8) {}
    pub fn reset(&mut self) {
        self.irr = 0;
    }
    pub fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new("pic", 1, &self.irr)
    }
    pub fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.irr = s.decode("pic", 1)?;
        Ok(())
    }
}
