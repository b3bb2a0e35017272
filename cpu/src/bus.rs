//! The CPU's only view of the world. RAM and ROM are reached through host pointers that the
//! CPU caches in its TLB, so there is no call per RAM access; MMIO, port I/O and interrupt
//! acknowledge go through this trait.

/// What lies at one 4 KiB physical page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageMapping {
    /// Ordinary RAM: `host` points at the first byte of the page and stays valid until the bus
    /// reports a memory-map change (see [`Bus::map_generation`]).
    Ram { host: *mut u8 },
    /// Mapped for reads only (a ROM, or RAM the chipset write-protects): reads come from
    /// `host`; writes go to `mmio_write`, where the board decides what they do.
    Rom { host: *const u8 },
    /// Device memory, or nothing: every access goes through `mmio_read`/`mmio_write`.
    Mmio,
}

pub trait Bus {
    /// What the page containing `paddr` is. Called on TLB misses only.
    fn map_page(&mut self, paddr: u64) -> PageMapping;
    /// A counter that changes whenever an earlier `map_page` answer may have become wrong
    /// (RAM remapped, ROM shadowing switched). The CPU flushes its TLB when it changes.
    fn map_generation(&self) -> u64 {
        0
    }
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64;
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64);
    fn io_read(&mut self, port: u16, size: u8) -> u32;
    fn io_write(&mut self, port: u16, size: u8, value: u32);
    /// Is the INTR line asserted (a maskable interrupt waiting)?
    fn intr_pending(&mut self) -> bool;
    /// Interrupt-acknowledge cycle: the vector of the highest-priority pending interrupt, or
    /// `None` if it went away (a spurious interrupt is still a vector, from the PIC).
    fn intr_ack(&mut self) -> Option<u8>;
    /// Asked after every port or MMIO write: should the CPU stop running and return to its
    /// caller (the guest asked to exit, reprogrammed a timer, pulled reset...)?
    fn wants_stop(&mut self) -> bool {
        false
    }
    /// Physical pages written by someone other than this CPU (DMA) since the last call, so
    /// decoded code from them can be dropped.
    fn take_dma_writes(&mut self, _pages: &mut Vec<u64>) {}
    /// Virtual time in nanoseconds, given the instructions this CPU has retired so far in the
    /// current `run` call (time may move with them). The time-stamp counter counts at 1 GHz
    /// of this time. `None` (a bus with no clock) makes the TSC count instructions instead.
    fn time_ns(&mut self, _retired: u64) -> Option<u64> {
        None
    }
    /// Called before a device access (port I/O, MMIO) with the instructions retired so far in
    /// the current `run` call, so that a bus whose time moves with instructions can bring its
    /// clock up to date and the device sees the time of the access, not of the run's start.
    fn sync_time(&mut self, _retired: u64) {}
    /// Arms the local APIC timer's TSC-deadline mode to fire at virtual time `at_ns` (`None`
    /// disarms). Only called when the CPU is configured with `tsc_deadline`.
    fn set_tsc_deadline(&mut self, _at_ns: Option<u64>) {}
    /// An MSR the board implements (the local APIC's: IA32_APIC_BASE, TSC_DEADLINE, x2APIC).
    /// `None`: not the board's.
    fn msr_read(&mut self, _msr: u32) -> Option<u64> {
        None
    }
    /// Writes a board MSR: `None` if not the board's, `Some(false)` if the value is refused
    /// (#GP).
    fn msr_write(&mut self, _msr: u32, _value: u64) -> Option<bool> {
        None
    }
    /// The local APIC's task priority, bits 7:4 of which are CR8.
    fn tpr(&mut self) -> Option<u8> {
        None
    }
    fn set_tpr(&mut self, _tpr: u8) {}
    /// A non-maskable interrupt waits (taken when returned).
    fn take_nmi(&mut self) -> bool {
        false
    }
}
