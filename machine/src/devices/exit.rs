//! The exit device (QEMU's isa-debug-exit, at port 0xF4): a write of any width ends Ferrite,
//! and the low byte of the value written is the exit status, so 0 means success.

use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};

#[derive(Default)]
pub struct ExitDevice;

impl ExitDevice {
    pub fn new() -> ExitDevice {
        ExitDevice
    }
}

impl Device for ExitDevice {
    fn name(&self) -> &'static str {
        "exit"
    }

    fn io_write(&mut self, _port: u16, _size: u8, value: u32, cx: &mut DeviceContext) {
        cx.event(MachineEvent::Exit(value as u8));
    }

    fn reset(&mut self) {}

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(self.name(), 1, &())
    }

    fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        s.decode::<()>(self.name(), 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_low_byte() {
        let mut d = ExitDevice::new();
        let (mut irqs, mut ev, mut dl) = (vec![], vec![], None);
        let mut cx = DeviceContext::new(0, &mut irqs, &mut ev, &mut dl);
        d.io_write(0xF4, 4, 0x1234_5600, &mut cx);
        d.io_write(0xF4, 1, 3, &mut cx);
        assert_eq!(ev, vec![MachineEvent::Exit(0), MachineEvent::Exit(3)]);
    }
}
