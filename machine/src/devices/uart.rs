//! STUB: replaced by the full 16550A model.
use crate::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::host::CharBackend;

pub struct Uart {
    irq: u8,
    backend: Box<dyn CharBackend>,
}

impl Uart {
    pub fn new(irq: u8, backend: Box<dyn CharBackend>) -> Uart {
        Uart { irq, backend }
    }
}

impl Device for Uart {
    fn name(&self) -> &'static str {
        "uart"
    }
    fn io_read(&mut self, port: u16, _size: u8, _cx: &mut DeviceContext) -> u32 {
        let _ = self.irq;
        if port & 7 == 5 {
            0x60
        } else {
            0
        }
    }
    fn io_write(&mut self, port: u16, _size: u8, value: u32, _cx: &mut DeviceContext) {
        if port & 7 == 0 {
            self.backend.write(&[value as u8]);
        }
    }
    fn reset(&mut self) {}
    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(self.name(), 1, &())
    }
    fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        s.decode::<()>(self.name(), 1)
    }
}
