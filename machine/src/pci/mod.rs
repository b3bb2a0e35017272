//! PCI: configuration mechanism #1 (ports 0xCF8/0xCFC), functions that the board maps by
//! their BARs, and INTx lines routed through the PIIX3's PIRQ registers to ISA interrupts.

pub mod config;

pub use config::{Bar, BarKind, BarMapping, PciConfig, ROM_INDEX};

use crate::device::{open_bus, Device, DeviceContext};
use crate::memory::{Memory, PageBuffer};

/// Device and function number on bus 0: device << 3 | function.
pub type DevFn = u8;

pub const fn devfn(device: u8, function: u8) -> DevFn {
    (device << 3) | function
}

/// Where the PIIX3 ISA bridge sits (its PIRQ route registers decide INTx routing).
pub const PIIX3_ISA: DevFn = devfn(1, 0);
/// PIRQ route control registers of the PIIX3 (82371SB datasheet 2.3.10): PIRQA-D.
pub const PIRQ_ROUTE: u16 = 0x60;

/// A PCI function: a device with a configuration space whose BARs the board maps.
pub trait PciFunction: Device {
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;
    /// A configuration read (override for registers with live values).
    fn config_read(&mut self, offset: u16, size: u8) -> u32 {
        self.config().read(offset, size)
    }
    /// A configuration write: stores it, then lets the model react (chipset registers).
    fn config_write(&mut self, offset: u16, size: u8, value: u32, _cx: &mut DeviceContext) {
        self.config_mut().write(offset, size, value);
    }
    /// An access to BAR `bar` at `offset` from its base.
    fn bar_read(&mut self, _bar: u8, _offset: u64, size: u8, _cx: &mut DeviceContext) -> u64 {
        open_bus(size)
    }
    fn bar_write(&mut self, _bar: u8, _offset: u64, _size: u8, _value: u64, _cx: &mut DeviceContext) {}
    /// The expansion ROM image, if the function has one.
    fn rom(&self) -> Option<&[u8]> {
        None
    }
    /// Bus mastering: whether the function has a DMA transfer waiting for guest memory (the
    /// guest started its engine). Devices never hold the memory; the board asks this after
    /// every access to the function and every tick, and then calls `run_bus_master`.
    fn bus_master_pending(&self) -> bool {
        false
    }
    /// Runs the waiting transfers with guest memory in hand. Reads and writes go through
    /// [`Memory::read`] and [`Memory::write`], which route them as the chipset does (RAM and
    /// shadow RAM take them, device memory drops them) and tell the CPU which pages changed.
    fn run_bus_master(&mut self, _memory: &mut Memory, _cx: &mut DeviceContext) {}
    /// I/O ranges the function decodes through registers other than its BARs (the PIIX4's
    /// PMBA), as they are now. The board maps them like I/O BARs after every configuration
    /// write, and accesses arrive through `bar_read`/`bar_write` with the window's `index`
    /// (chosen above 6 so it never names a BAR or the expansion ROM).
    fn io_windows(&self) -> Vec<BarMapping> {
        Vec::new()
    }
    /// Plain memory behind memory BAR `bar` that the guest may read and write directly,
    /// without a call per access (the VGA's framebuffer). The buffer lives as long as the
    /// function and is never replaced. The board maps it where the BAR decodes (memory slots
    /// under KVM, host pointers in the interpreter) and tells the function which pages the
    /// guest wrote through `direct_memory_written`, before anything that depends on them is
    /// asked of it (a picture). `bar_read`/`bar_write` still serve the BAR when the board
    /// cannot map it (it overlaps other memory).
    fn direct_memory(&mut self, _bar: u8) -> Option<&mut PageBuffer> {
        None
    }
    /// The guest wrote `len` bytes from `offset` of BAR `bar`'s direct memory.
    fn direct_memory_written(&mut self, _bar: u8, _offset: u64, _len: u64) {}
}

/// The PIRQ (0-3 for A-D) an interrupt pin (1-4) of a slot reaches, swizzled by device
/// number as on the QEMU "pc" board's wiring (and as SeaBIOS assumes): slot 1's INTA# is
/// PIRQA.
pub fn pirq_of(devfn: DevFn, pin: u8) -> usize {
    (usize::from(devfn >> 3) + usize::from(pin) + 2) & 3
}
