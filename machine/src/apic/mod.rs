//! The APIC interrupt architecture: one local APIC per processor and the I/O APIC, with the
//! messages between them (Intel SDM vol. 3, chapter 10; 82093AA I/O APIC datasheet).

pub mod ioapic;
pub mod lapic;

use serde::{Deserialize, Serialize};

/// Where the I/O APIC and the local APICs sit.
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
pub const LAPIC_BASE: u64 = 0xFEE0_0000;

/// Delivery modes of interrupt messages and LVT entries.
pub mod delivery {
    pub const FIXED: u8 = 0;
    pub const LOWEST: u8 = 1;
    pub const SMI: u8 = 2;
    pub const NMI: u8 = 4;
    pub const INIT: u8 = 5;
    pub const STARTUP: u8 = 6;
    pub const EXTINT: u8 = 7;
}

/// An interrupt message on the APIC bus (from the I/O APIC, an IPI, or an MSI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub vector: u8,
    pub delivery: u8,
    /// Logical (true) or physical destination.
    pub logical: bool,
    pub dest: u8,
    /// Level-triggered: the local APIC sets TMR and broadcasts an EOI for it.
    pub level: bool,
}
