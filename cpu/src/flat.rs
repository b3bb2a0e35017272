//! A bus over one flat RAM array with nothing else on it: for instruction tests, fuzzing and
//! tools that run code without a PC around it. Ports read as an empty bus (all ones), writes
//! to them are recorded, and there are no interrupts.

use crate::bus::{Bus, PageMapping};

pub struct FlatBus {
    ram: Vec<u8>,
    /// Every port write, in order: (port, size, value).
    pub port_writes: Vec<(u16, u8, u32)>,
    /// Reads from beyond the end of RAM.
    pub mmio_reads: u64,
}

impl FlatBus {
    /// `size` is rounded up to whole 4 KiB pages.
    pub fn new(size: usize) -> FlatBus {
        FlatBus { ram: vec![0; size.div_ceil(4096) * 4096], port_writes: Vec::new(), mmio_reads: 0 }
    }

    pub fn ram(&self) -> &[u8] {
        &self.ram
    }

    pub fn ram_mut(&mut self) -> &mut [u8] {
        &mut self.ram
    }
}

impl Bus for FlatBus {
    fn map_page(&mut self, paddr: u64) -> PageMapping {
        let p = (paddr & !0xFFF) as usize;
        if p + 4096 <= self.ram.len() {
            PageMapping::Ram { host: self.ram[p..].as_mut_ptr() }
        } else {
            PageMapping::Mmio
        }
    }

    fn mmio_read(&mut self, _paddr: u64, _size: u8) -> u64 {
        self.mmio_reads += 1;
        u64::MAX
    }

    fn mmio_write(&mut self, _paddr: u64, _size: u8, _value: u64) {}

    fn io_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.port_writes.push((port, size, value));
    }

    fn intr_pending(&mut self) -> bool {
        false
    }

    fn intr_ack(&mut self) -> Option<u8> {
        None
    }
}
