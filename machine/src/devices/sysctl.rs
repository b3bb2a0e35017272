//! The chipset's two reset and A20 registers outside the keyboard controller: System Control
//! Port A at 0x92 (PS/2 "fast A20" and fast reset) and the PIIX3 Reset Control Register at
//! 0xCF9 (82371SB datasheet 4.1.x "RC"). Port 0xCF9 sits inside the PCI configuration
//! range; the board gives this device its byte accesses and keeps 0xCF8/0xCFC for PCI.

use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use serde::{Deserialize, Serialize};

const NAME: &str = "sysctl";
const VERSION: u32 = 1;

pub const PORT_A: u16 = 0x92;
pub const RESET_CONTROL: u16 = 0xCF9;

/// Port 0x92 bit 0: a 0-to-1 transition pulses the CPU's reset line.
const A_FAST_RESET: u8 = 0x01;
/// Port 0x92 bit 1: A20 forced on.
const A_A20: u8 = 0x02;
/// 0xCF9 bit 1: the reset is a hard (system) reset rather than a soft one (INIT).
const RC_SYSTEM_RESET: u8 = 0x02;
/// 0xCF9 bit 2: a 0-to-1 transition resets the CPU, of the kind bit 1 selects.
const RC_RESET_CPU: u8 = 0x04;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    port_a: u8,
    reset_control: u8,
}

/// Port 0x92 and the reset control register.
#[derive(Default)]
pub struct SysCtl {
    s: State,
}

impl SysCtl {
    pub fn new() -> SysCtl {
        SysCtl::default()
    }

    fn write_byte(&mut self, port: u16, v: u8, cx: &mut DeviceContext) {
        match port {
            PORT_A => {
                let old = self.s.port_a;
                self.s.port_a = v;
                // Like QEMU, the A20 state follows every write: the last writer (this port
                // or the 8042's output port) decides the gate.
                cx.event(MachineEvent::A20(v & A_A20 != 0));
                if v & A_FAST_RESET != 0 && old & A_FAST_RESET == 0 {
                    cx.event(MachineEvent::Reset);
                }
            }
            RESET_CONTROL => {
                let old = self.s.reset_control;
                // Bit 2 reads back as 0 after the reset it starts; the reset type is kept.
                self.s.reset_control = v & RC_SYSTEM_RESET;
                if v & RC_RESET_CPU != 0 && old & RC_RESET_CPU == 0 {
                    if v & RC_SYSTEM_RESET == 0 {
                        // A soft reset only INITs the CPU; Ferrite's run loop has one reset,
                        // the full one (as QEMU does).
                        tracing::debug!("0xCF9 soft reset taken as a system reset");
                    }
                    cx.event(MachineEvent::Reset);
                }
            }
            _ => {}
        }
    }

    fn read_byte(&self, port: u16) -> u8 {
        match port {
            PORT_A => self.s.port_a,
            RESET_CONTROL => self.s.reset_control,
            _ => 0xFF,
        }
    }
}

impl Device for SysCtl {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, _cx: &mut DeviceContext) -> u32 {
        (0..size.min(4)).fold(0u32, |acc, i| {
            let b = self.read_byte(port.wrapping_add(i as u16));
            acc | (b as u32) << (8 * i)
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        for i in 0..size.min(4) {
            self.write_byte(port.wrapping_add(i as u16), (value >> (8 * i)) as u8, cx);
        }
    }

    /// Port 0x92 resets to 0 (A20 then follows the 8042's output port); the reset control
    /// register to 0 (PIIX3 defaults).
    fn reset(&mut self) {
        self.s = State::default();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.s = snapshot.decode(NAME, VERSION)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dev: &mut SysCtl, port: u16, size: u8, value: u32) -> Vec<MachineEvent> {
        let (mut irqs, mut events, mut dl) = (Vec::new(), Vec::new(), None);
        let mut cx = DeviceContext::new(0, &mut irqs, &mut events, &mut dl);
        dev.io_write(port, size, value, &mut cx);
        assert!(irqs.is_empty());
        events
    }

    fn read(dev: &mut SysCtl, port: u16, size: u8) -> u32 {
        let (mut irqs, mut events, mut dl) = (Vec::new(), Vec::new(), None);
        let mut cx = DeviceContext::new(0, &mut irqs, &mut events, &mut dl);
        dev.io_read(port, size, &mut cx)
    }

    #[test]
    fn port_92_fast_a20_and_fast_reset() {
        let mut d = SysCtl::new();
        assert_eq!(read(&mut d, PORT_A, 1), 0);
        assert_eq!(run(&mut d, PORT_A, 1, 0x02), vec![MachineEvent::A20(true)]);
        assert_eq!(read(&mut d, PORT_A, 1), 0x02);
        assert_eq!(run(&mut d, PORT_A, 1, 0x00), vec![MachineEvent::A20(false)]);
        assert_eq!(run(&mut d, PORT_A, 1, 0x03), vec![MachineEvent::A20(true), MachineEvent::Reset]);
        assert_eq!(read(&mut d, PORT_A, 1), 0x03, "bit 0 reads back until cleared");
        assert_eq!(run(&mut d, PORT_A, 1, 0x03), vec![MachineEvent::A20(true)], "no new 0-to-1 transition");
        run(&mut d, PORT_A, 1, 0x02);
        assert!(run(&mut d, PORT_A, 1, 0x03).contains(&MachineEvent::Reset));
        d.reset();
        assert_eq!(read(&mut d, PORT_A, 1), 0);
    }

    #[test]
    fn reset_control_register() {
        let mut d = SysCtl::new();
        assert!(run(&mut d, RESET_CONTROL, 1, 0x02).is_empty(), "choosing the type resets nothing");
        assert_eq!(read(&mut d, RESET_CONTROL, 1), 0x02);
        assert_eq!(run(&mut d, RESET_CONTROL, 1, 0x06), vec![MachineEvent::Reset]);
        assert_eq!(read(&mut d, RESET_CONTROL, 1), 0x02);
        assert_eq!(run(&mut d, RESET_CONTROL, 1, 0x04), vec![MachineEvent::Reset], "soft reset");
        assert_eq!(read(&mut d, RESET_CONTROL, 2), 0xFF00, "0xCFA is not ours");
    }

    #[test]
    fn save_restore_round_trip() {
        let mut d = SysCtl::new();
        run(&mut d, PORT_A, 1, 0x02);
        run(&mut d, RESET_CONTROL, 1, 0x02);
        let snap = d.save();
        let mut e = SysCtl::new();
        e.restore(&snap).unwrap();
        assert_eq!(e.save(), snap);
        assert_eq!(read(&mut e, PORT_A, 1), 0x02);
        assert!(e.restore(&DeviceSnapshot::new("rtc", VERSION, &())).is_err());
    }
}
