//! STUB: replaced by the full 8254 model.
use crate::device::{Device, DeviceSnapshot, SnapshotError};

pub struct Pit;

impl Pit {
    pub fn new() -> Pit {
        Pit
    }
}

impl Device for Pit {
    fn name(&self) -> &'static str {
        "pit"
    }
    fn reset(&mut self) {}
    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(self.name(), 1, &())
    }
    fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        s.decode::<()>(self.name(), 1)
    }
}
