//! The Bochs/QEMU debug console: every byte written to port 0xE9 goes to the host; a read
//! returns 0xE9 so a guest can detect the port.

use crate::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::host::CharBackend;

pub struct DebugCon {
    sink: Box<dyn CharBackend>,
}

impl DebugCon {
    pub fn new(sink: Box<dyn CharBackend>) -> DebugCon {
        DebugCon { sink }
    }
}

impl Device for DebugCon {
    fn name(&self) -> &'static str {
        "debugcon"
    }

    fn io_read(&mut self, _port: u16, _size: u8, _cx: &mut DeviceContext) -> u32 {
        0xE9
    }

    fn io_write(&mut self, _port: u16, _size: u8, value: u32, _cx: &mut DeviceContext) {
        // Only the low byte reaches port 0xE9; wider writes spill onto 0xEA.. which are unused.
        self.sink.write(&[value as u8]);
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
    use crate::host::CaptureChar;

    #[test]
    fn bytes_reach_the_host() {
        let cap = CaptureChar::new();
        let mut d = DebugCon::new(Box::new(cap.clone()));
        let (mut irqs, mut ev, mut dl) = (vec![], vec![], None);
        let mut cx = DeviceContext::new(0, &mut irqs, &mut ev, &mut dl);
        for b in b"hi\n" {
            d.io_write(0xE9, 1, *b as u32, &mut cx);
        }
        assert_eq!(cap.text(), "hi\n");
        assert_eq!(d.io_read(0xE9, 1, &mut cx), 0xE9);
        let s = d.save();
        d.restore(&s).unwrap();
    }
}
