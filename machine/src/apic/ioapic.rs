//! The 82093AA I/O APIC: 24 redirection entries turning interrupt input pins into messages
//! for the local APICs, edge- or level-triggered with remote IRR (82093AA datasheet 3.2).
//! ISA IRQ n arrives on pin n, except IRQ 0, which arrives on pin 2 (as on QEMU's board and
//! as the MADT's interrupt source override says).

use super::Message;
use crate::device::{DeviceSnapshot, SnapshotError};
use serde::{Deserialize, Serialize};

pub const PINS: usize = 24;
const VERSION: u32 = 0x20 | ((PINS as u32 - 1) << 16);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoApic {
    id: u8,
    select: u8,
    redir: [u64; PINS],
    /// Input pin levels (after polarity: true = asserted).
    asserted: u32,
}

const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const LOW_ACTIVE: u64 = 1 << 13;
const PENDING: u64 = 1 << 12;

impl Default for IoApic {
    fn default() -> Self {
        IoApic::new()
    }
}

impl IoApic {
    pub fn new() -> IoApic {
        IoApic { id: 0, select: 0, redir: [MASKED; PINS], asserted: 0 }
    }

    pub fn reset(&mut self) {
        *self = IoApic::new();
    }

    /// The pin an ISA IRQ arrives on.
    pub fn pin_of_isa(irq: u8) -> usize {
        if irq == 0 {
            2
        } else {
            irq as usize
        }
    }

    fn message(&self, pin: usize) -> Message {
        let e = self.redir[pin];
        Message {
            vector: e as u8,
            delivery: ((e >> 8) & 7) as u8,
            logical: e & (1 << 11) != 0,
            dest: (e >> 56) as u8,
            level: e & LEVEL != 0,
        }
    }

    /// Drives input `pin`; returns a message to send when the change delivers an interrupt.
    /// `level` is the electrical line level; the entry's polarity decides "asserted".
    pub fn set_pin(&mut self, pin: usize, level: bool) -> Option<Message> {
        if pin >= PINS {
            return None;
        }
        let e = self.redir[pin];
        let asserted = level != (e & LOW_ACTIVE != 0);
        let bit = 1u32 << pin;
        let was = self.asserted & bit != 0;
        if asserted {
            self.asserted |= bit;
        } else {
            self.asserted &= !bit;
        }
        if e & LEVEL != 0 {
            if asserted {
                return self.try_deliver_level(pin);
            }
            None
        } else if asserted && !was && e & MASKED == 0 {
            Some(self.message(pin))
        } else {
            None
        }
    }

    fn try_deliver_level(&mut self, pin: usize) -> Option<Message> {
        let e = self.redir[pin];
        if e & MASKED != 0 || e & REMOTE_IRR != 0 || self.asserted & (1 << pin) == 0 {
            return None;
        }
        self.redir[pin] |= REMOTE_IRR;
        Some(self.message(pin))
    }

    /// An EOI for `vector` from a local APIC: clears remote IRR of the level-triggered
    /// entries with that vector, and returns the interrupts that are still asserted.
    pub fn eoi(&mut self, vector: u8) -> Vec<Message> {
        let mut out = Vec::new();
        for pin in 0..PINS {
            let e = self.redir[pin];
            if e & LEVEL != 0 && e as u8 == vector && e & REMOTE_IRR != 0 {
                self.redir[pin] &= !REMOTE_IRR;
                out.extend(self.try_deliver_level(pin));
            }
        }
        out
    }

    /// A register access at `offset` in the 4 KiB window (IOREGSEL at 0, IOWIN at 0x10, the
    /// EOI register at 0x40).
    pub fn mmio_read(&mut self, offset: u64) -> u32 {
        match offset & 0xFF {
            0x00 => u32::from(self.select),
            0x10 => self.read_reg(self.select),
            _ => 0,
        }
    }

    /// Returns messages to send (an unmasking or a new entry may deliver a waiting level).
    pub fn mmio_write(&mut self, offset: u64, value: u32) -> Vec<Message> {
        match offset & 0xFF {
            0x00 => {
                self.select = value as u8;
                Vec::new()
            }
            0x10 => self.write_reg(self.select, value),
            0x40 => self.eoi(value as u8),
            _ => Vec::new(),
        }
    }

    fn read_reg(&self, r: u8) -> u32 {
        match r {
            0x00 => u32::from(self.id) << 24,
            0x01 => VERSION,
            0x02 => u32::from(self.id) << 24,
            0x10..=0x3F => {
                let pin = usize::from(r - 0x10) / 2;
                let mut e = self.redir[pin];
                if e & LEVEL == 0 {
                    e &= !REMOTE_IRR;
                }
                if r & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => {
                tracing::debug!("I/O APIC: read of unknown register {r:#x}");
                0
            }
        }
    }

    fn write_reg(&mut self, r: u8, v: u32) -> Vec<Message> {
        match r {
            0x00 => self.id = ((v >> 24) & 0xF) as u8,
            0x10..=0x3F => {
                let pin = usize::from(r - 0x10) / 2;
                let e = self.redir[pin];
                // Delivery status and remote IRR are read-only.
                let ro = PENDING | REMOTE_IRR;
                self.redir[pin] = if r & 1 == 0 {
                    (e & 0xFFFF_FFFF_0000_0000) | (u64::from(v) & !ro) | (e & ro)
                } else {
                    (e & 0xFFFF_FFFF) | (u64::from(v) << 32)
                };
                if self.redir[pin] & LEVEL == 0 {
                    self.redir[pin] &= !REMOTE_IRR;
                }
                return self.try_deliver_level_if_level(pin);
            }
            _ => tracing::debug!("I/O APIC: write of {v:#x} to read-only or unknown register {r:#x}"),
        }
        Vec::new()
    }

    fn try_deliver_level_if_level(&mut self, pin: usize) -> Vec<Message> {
        if self.redir[pin] & LEVEL != 0 {
            self.try_deliver_level(pin).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    pub fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new("ioapic", 1, self)
    }

    pub fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        *self = s.decode("ioapic", 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut IoApic, pin: usize, lo: u32, hi: u32) -> Vec<Message> {
        io.mmio_write(0, 0x10 + 2 * pin as u32 + 1);
        io.mmio_write(0x10, hi);
        io.mmio_write(0, 0x10 + 2 * pin as u32);
        io.mmio_write(0x10, lo)
    }

    #[test]
    fn edge_entries_deliver_on_rising_edges() {
        let mut io = IoApic::new();
        assert_eq!(io.set_pin(4, true), None, "masked at reset");
        io.set_pin(4, false);
        program(&mut io, 4, 0x31, 0);
        let m = io.set_pin(4, true).unwrap();
        assert_eq!((m.vector, m.level), (0x31, false));
        assert_eq!(io.set_pin(4, true), None, "no edge");
    }

    #[test]
    fn level_entries_wait_for_eoi() {
        let mut io = IoApic::new();
        program(&mut io, 11, 0x8000 | 0x41, 0);
        assert!(io.set_pin(11, true).is_some());
        assert_eq!(io.set_pin(11, true), None, "remote IRR holds it");
        let again = io.eoi(0x41);
        assert_eq!(again.len(), 1, "still asserted after EOI: delivered again");
        io.set_pin(11, false);
        assert!(io.eoi(0x41).is_empty());
    }

    #[test]
    fn version_and_snapshot() {
        let mut io = IoApic::new();
        io.mmio_write(0, 1);
        assert_eq!(io.mmio_read(0x10), 0x0017_0020);
        program(&mut io, 2, 0x30, 0x0100_0000);
        let s = io.save();
        let mut b = IoApic::new();
        b.restore(&s).unwrap();
        assert_eq!(b, io);
    }
}
