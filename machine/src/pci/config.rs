//! A PCI function's type-0 configuration space (PCI Local Bus Specification 3.0, chapter 6):
//! the standard header with writable masks, BARs that report their size the standard way
//! (write all ones, read back the mask), the expansion ROM BAR, and the interrupt registers.

use serde::{Deserialize, Serialize};

pub const VENDOR_ID: u16 = 0x00;
pub const DEVICE_ID: u16 = 0x02;
pub const COMMAND: u16 = 0x04;
pub const STATUS: u16 = 0x06;
pub const REVISION: u16 = 0x08;
pub const CLASS_PROG: u16 = 0x09;
pub const HEADER_TYPE: u16 = 0x0E;
pub const BAR0: u16 = 0x10;
pub const SUBSYSTEM_VENDOR: u16 = 0x2C;
pub const ROM_BAR: u16 = 0x30;
pub const INTERRUPT_LINE: u16 = 0x3C;
pub const INTERRUPT_PIN: u16 = 0x3D;

pub const CMD_IO: u16 = 1;
pub const CMD_MEMORY: u16 = 2;
pub const CMD_BUS_MASTER: u16 = 4;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;

/// What a base address register decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarKind {
    Io,
    Mem32,
    /// Prefetchable 32-bit memory.
    Mem32Prefetch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub kind: BarKind,
    /// A power of two (at least 4 for I/O, 16 for memory).
    pub size: u64,
}

/// Where a BAR currently decodes: `None` when unassigned or decoding is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMapping {
    pub index: u8,
    pub kind: BarKind,
    pub base: u64,
    pub size: u64,
}

/// Index of the expansion ROM in `BarMapping::index`.
pub const ROM_INDEX: u8 = 6;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciConfig {
    #[serde(with = "serde_bytes_256")]
    bytes: [u8; 256],
    #[serde(with = "serde_bytes_256")]
    wmask: [u8; 256],
    bars: [Option<Bar>; 6],
    rom_size: u64,
}

mod serde_bytes_256 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8; 256], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(b.iter())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 256], D::Error> {
        let v: Vec<u8> = Vec::deserialize(d)?;
        v.try_into().map_err(|_| serde::de::Error::custom("configuration space must be 256 bytes"))
    }
}

impl PciConfig {
    /// A function with these identifiers and class code (class << 16 | subclass << 8 | prog-if).
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> PciConfig {
        let mut c = PciConfig { bytes: [0; 256], wmask: [0; 256], bars: [None; 6], rom_size: 0 };
        c.set16(VENDOR_ID, vendor);
        c.set16(DEVICE_ID, device);
        c.bytes[REVISION as usize] = revision;
        c.bytes[0x09] = class as u8;
        c.bytes[0x0A] = (class >> 8) as u8;
        c.bytes[0x0B] = (class >> 16) as u8;
        // Command: I/O, memory, bus master, SERR#, INTx disable are writable.
        c.set_wmask16(COMMAND, CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | (1 << 8) | CMD_INTX_DISABLE);
        c.wmask[INTERRUPT_LINE as usize] = 0xFF;
        // Cache line size and latency timer are plain storage.
        c.wmask[0x0C] = 0xFF;
        c.wmask[0x0D] = 0xFF;
        c
    }

    pub fn set_subsystem(&mut self, vendor: u16, device: u16) {
        self.set16(SUBSYSTEM_VENDOR, vendor);
        self.set16(SUBSYSTEM_VENDOR + 2, device);
    }

    /// Marks a multi-function device (on function 0).
    pub fn set_multifunction(&mut self) {
        self.bytes[HEADER_TYPE as usize] |= 0x80;
    }

    /// INTA# (1) to INTD# (4), or 0 for none.
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.bytes[INTERRUPT_PIN as usize] = pin;
    }

    pub fn interrupt_pin(&self) -> u8 {
        self.bytes[INTERRUPT_PIN as usize]
    }

    pub fn set_bar(&mut self, index: usize, bar: Bar) {
        assert!(index < 6 && bar.size.is_power_of_two());
        let low = match bar.kind {
            BarKind::Io => 1,
            BarKind::Mem32 => 0,
            BarKind::Mem32Prefetch => 8,
        };
        self.bars[index] = Some(bar);
        let off = BAR0 + 4 * index as u16;
        self.set32(off, low);
        let flag_bits = if bar.kind == BarKind::Io { 3 } else { 15 };
        self.set_wmask32(off, !(bar.size as u32 - 1) & !flag_bits);
    }

    /// An expansion ROM of `size` bytes (a power of two, at least 2 KiB).
    pub fn set_rom(&mut self, size: u64) {
        assert!(size.is_power_of_two() && size >= 2048);
        self.rom_size = size;
        self.set_wmask32(ROM_BAR, !(size as u32 - 1) | 1);
    }

    /// Lets a device model make more registers writable (device-specific ones above 0x40).
    pub fn set_writable(&mut self, offset: u16, mask: u8) {
        self.wmask[offset as usize] = mask;
    }

    pub fn read(&self, offset: u16, size: u8) -> u32 {
        let o = offset as usize & 0xFF;
        (0..size as usize).fold(0, |v, k| v | u32::from(*self.bytes.get(o + k).unwrap_or(&0xFF)) << (8 * k))
    }

    /// A guest write: only writable bits change; status bits are write-one-to-clear.
    pub fn write(&mut self, offset: u16, size: u8, value: u32) {
        let o = offset as usize & 0xFF;
        for k in 0..size as usize {
            let Some(&m) = self.wmask.get(o + k) else { break };
            let b = (value >> (8 * k)) as u8;
            let at = o + k;
            if at == STATUS as usize + 1 {
                // Error bits in the status register's upper byte clear when written with 1.
                self.bytes[at] &= !(b & 0xF9);
                continue;
            }
            self.bytes[at] = (self.bytes[at] & !m) | (b & m);
        }
    }

    pub fn get8(&self, offset: u16) -> u8 {
        self.bytes[offset as usize]
    }
    pub fn set8(&mut self, offset: u16, v: u8) {
        self.bytes[offset as usize] = v;
    }
    pub fn get16(&self, offset: u16) -> u16 {
        self.read(offset, 2) as u16
    }
    pub fn set16(&mut self, offset: u16, v: u16) {
        self.bytes[offset as usize..offset as usize + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn get32(&self, offset: u16) -> u32 {
        self.read(offset, 4)
    }
    pub fn set32(&mut self, offset: u16, v: u32) {
        self.bytes[offset as usize..offset as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn set_wmask16(&mut self, offset: u16, m: u16) {
        self.wmask[offset as usize..offset as usize + 2].copy_from_slice(&m.to_le_bytes());
    }
    fn set_wmask32(&mut self, offset: u16, m: u32) {
        self.wmask[offset as usize..offset as usize + 4].copy_from_slice(&m.to_le_bytes());
    }

    pub fn command(&self) -> u16 {
        self.get16(COMMAND)
    }

    /// The BARs (and the expansion ROM) as they decode now, given the command register.
    pub fn mappings(&self) -> Vec<BarMapping> {
        let cmd = self.command();
        let mut out = Vec::new();
        for (i, bar) in self.bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let raw = u64::from(self.get32(BAR0 + 4 * i as u16));
            let (on, base) = match bar.kind {
                BarKind::Io => (cmd & CMD_IO != 0, raw & !3 & 0xFFFF),
                _ => (cmd & CMD_MEMORY != 0, raw & !15),
            };
            // A BAR left at zero (or being sized: all ones) is not assigned.
            let top = if bar.kind == BarKind::Io { 0x1_0000 } else { 1 << 32 };
            if on && base != 0 && base + bar.size <= top && base & (bar.size - 1) == 0 {
                out.push(BarMapping { index: i as u8, kind: bar.kind, base, size: bar.size });
            }
        }
        if self.rom_size != 0 {
            let raw = u64::from(self.get32(ROM_BAR));
            let base = raw & !(self.rom_size - 1) & 0xFFFF_F800;
            if raw & 1 != 0 && cmd & CMD_MEMORY != 0 && base != 0 {
                out.push(BarMapping { index: ROM_INDEX, kind: BarKind::Mem32, base, size: self.rom_size });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizing_and_mapping() {
        let mut c = PciConfig::new(0x1234, 0x1111, 0x03_00_00, 2);
        c.set_bar(0, Bar { kind: BarKind::Mem32Prefetch, size: 16 << 20 });
        c.set_bar(1, Bar { kind: BarKind::Io, size: 16 });
        c.set_rom(64 * 1024);
        c.write(BAR0, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(BAR0, 4), 0xFF00_0008, "size mask with the prefetchable flag");
        c.write(BAR0 + 4, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(BAR0 + 4, 4), 0xFFFF_FFF1);
        c.write(BAR0, 4, 0xFD00_0000);
        c.write(BAR0 + 4, 4, 0xC000);
        c.write(ROM_BAR, 4, 0xFEB0_0001);
        assert!(c.mappings().is_empty(), "decoding off until the command register enables it");
        c.write(COMMAND, 2, 3);
        let m = c.mappings();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].base, m[1].base, m[2].base), (0xFD00_0000, 0xC000, 0xFEB0_0000));
        assert_eq!(c.read(VENDOR_ID, 2), 0x1234);
        c.write(VENDOR_ID, 2, 0);
        assert_eq!(c.read(VENDOR_ID, 2), 0x1234, "identifiers are read-only");
    }
}
