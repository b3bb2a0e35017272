//! The Intel MultiProcessor Specification 1.4 tables, for operating systems that find the
//! processors and the interrupt routing there rather than in ACPI (Linux with `acpi=off`,
//! older kernels and hobby OSes): the floating pointer structure (in the BIOS's F segment)
//! and the configuration table it points to, describing what the MADT describes: one
//! processor entry per CPU, the PCI and ISA buses, the I/O APIC, the ISA IRQs on I/O APIC
//! pins (IRQ 0 on pin 2, the PCI-capable IRQs level-triggered and active high, as the MADT's
//! overrides say), each PCI function's interrupt pin on the IRQ POST routed it to, and
//! ExtINT/NMI on LINT0/LINT1 as in virtual wire mode. Built as SeaBIOS builds them for QEMU.

use super::acpi::{IOAPIC_BASE, LAPIC_BASE, PCI_ISA_IRQS};

/// Where the structures go, as offsets from the F-segment area that holds the RSDP (at 0)
/// and the SMBIOS entry point (at 0x40).
pub const FLOATING_OFFSET: u64 = 0x60;
pub const TABLE_OFFSET: u64 = 0x80;

const PCI_BUS: u8 = 0;
const ISA_BUS: u8 = 1;
/// The I/O APIC's ID, as its ID register and the MADT give it.
const IOAPIC_ID: u8 = 0;
/// Interrupt flags: polarity active high (01), trigger level (11).
const LEVEL_HIGH: u16 = 0x000D;
/// CPUID.1 EAX of the modelled processor (family 6, model 0xF, stepping 1) and the EDX
/// bits the entry repeats (FPU, APIC).
const CPU_SIGNATURE: u32 = 0x0000_06F1;
const CPU_FEATURES: u32 = 1 | 1 << 9;

/// A PCI function's interrupt: device number, pin (1 = INTA#) and the ISA IRQ it was routed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciInterrupt {
    pub device: u8,
    pub pin: u8,
    pub irq: u8,
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)))
}

/// The configuration table for `cpus` processors and the given PCI interrupts.
pub fn config_table(cpus: u32, pci: &[PciInterrupt]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut count = 0u16;
    for id in 0..cpus.min(255) as u8 {
        let flags = 1 | if id == 0 { 2 } else { 0 }; // enabled, bootstrap processor
        entries.extend_from_slice(&[0, id, 0x14, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    for (id, name) in [(PCI_BUS, b"PCI   "), (ISA_BUS, b"ISA   ")] {
        entries.extend_from_slice(&[1, id]);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.extend_from_slice(&[2, IOAPIC_ID, 0x11, 1]);
    entries.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    count += 1;
    // Entry type 3 (I/O interrupt) or 4 (local interrupt), interrupt type (0 INT, 1 NMI,
    // 3 ExtINT), flags, source bus and IRQ, destination APIC and pin.
    let mut interrupt = |entries: &mut Vec<u8>, kind: u8, irq_type: u8, flags: u16, bus: u8, source: u8, apic: u8, pin: u8| {
        entries.extend_from_slice(&[kind, irq_type]);
        entries.extend_from_slice(&flags.to_le_bytes());
        entries.extend_from_slice(&[bus, source, apic, pin]);
        count += 1;
    };
    // PCI interrupts: one entry per device and pin (functions of one device share them).
    let mut seen: Vec<(u8, u8)> = Vec::new();
    for p in pci.iter().filter(|p| (1..=4).contains(&p.pin) && p.device < 32) {
        if seen.contains(&(p.device, p.pin)) {
            continue;
        }
        seen.push((p.device, p.pin));
        interrupt(&mut entries, 3, 0, LEVEL_HIGH, PCI_BUS, p.device << 2 | (p.pin - 1), IOAPIC_ID, p.irq);
    }
    // ISA IRQs, but those PCI interrupts arrive on; IRQ 0 on pin 2 (the override every PC
    // firmware reports), IRQ 2 (the cascade) on none.
    for irq in 0..16u8 {
        if irq == 2 || pci.iter().any(|p| p.irq == irq) {
            continue;
        }
        let flags = if PCI_ISA_IRQS.contains(&irq) { LEVEL_HIGH } else { 0 };
        interrupt(&mut entries, 3, 0, flags, ISA_BUS, irq, IOAPIC_ID, if irq == 0 { 2 } else { irq });
    }
    // Local interrupts of every processor: the 8259A's ExtINT on LINT0, NMI on LINT1.
    interrupt(&mut entries, 4, 3, 0, ISA_BUS, 0, 0xFF, 0);
    interrupt(&mut entries, 4, 1, 0, ISA_BUS, 0, 0xFF, 1);

    let mut t = Vec::with_capacity(44 + entries.len());
    t.extend_from_slice(b"PCMP");
    t.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    t.push(4); // specification revision 1.4
    t.push(0); // checksum
    t.extend_from_slice(b"FERRITE ");
    t.extend_from_slice(b"PC          ");
    t.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    t.extend_from_slice(&0u16.to_le_bytes());
    t.extend_from_slice(&count.to_le_bytes());
    t.extend_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // no extended table
    t.extend_from_slice(&entries);
    t[7] = checksum(&t);
    t
}

/// The floating pointer structure for a configuration table at `table_at`.
pub fn floating_pointer(table_at: u32) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[..4].copy_from_slice(b"_MP_");
    f[4..8].copy_from_slice(&table_at.to_le_bytes());
    f[8] = 1; // length in 16-byte units
    f[9] = 4; // specification revision 1.4
    // Feature bytes 0: the configuration table is present; no IMCR (virtual wire mode).
    f[10] = checksum(&f);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    #[test]
    fn floating_pointer_is_valid() {
        let f = floating_pointer(0xF_0080);
        assert_eq!(&f[..4], b"_MP_");
        assert_eq!(sum(&f), 0);
        assert_eq!(u32::from_le_bytes(f[4..8].try_into().unwrap()), 0xF_0080);
    }

    /// Walks the table's entries by their types' sizes, as an OS does.
    fn entries(t: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 44;
        while at < t.len() {
            let len = if t[at] == 0 { 20 } else { 8 };
            out.push(&t[at..at + len]);
            at += len;
        }
        out
    }

    #[test]
    fn configuration_table_describes_the_machine() {
        let pci = [
            PciInterrupt { device: 1, pin: 1, irq: 9 },
            PciInterrupt { device: 1, pin: 1, irq: 9 },
            PciInterrupt { device: 3, pin: 1, irq: 11 },
        ];
        let t = config_table(4, &pci);
        assert_eq!(&t[..4], b"PCMP");
        assert_eq!(sum(&t), 0, "checksum");
        assert_eq!(u16::from_le_bytes([t[4], t[5]]) as usize, t.len());
        let e = entries(&t);
        assert_eq!(u16::from_le_bytes([t[34], t[35]]) as usize, e.len(), "entry count");
        let cpus: Vec<_> = e.iter().filter(|e| e[0] == 0).collect();
        assert_eq!(cpus.len(), 4);
        assert_eq!(cpus[0][3], 3, "CPU 0 enabled and the BSP");
        assert_eq!(cpus[3][1], 3);
        assert_eq!(cpus[3][3], 1);
        let ints: Vec<_> = e.iter().filter(|e| e[0] == 3).collect();
        let pci_ints: Vec<_> = ints.iter().filter(|e| e[4] == PCI_BUS).collect();
        assert_eq!(pci_ints.len(), 2, "one entry per device and pin");
        assert_eq!((pci_ints[1][5], pci_ints[1][7]), (3 << 2, 11));
        let isa: Vec<(u8, u8, u16)> = ints.iter().filter(|e| e[4] == ISA_BUS).map(|e| (e[5], e[7], u16::from_le_bytes([e[2], e[3]]))).collect();
        assert!(isa.contains(&(0, 2, 0)), "IRQ 0 on pin 2");
        assert!(isa.contains(&(4, 4, 0)));
        assert!(isa.contains(&(5, 5, LEVEL_HIGH)));
        assert!(!isa.iter().any(|i| i.0 == 2 || i.0 == 9 || i.0 == 11), "no cascade, none on PCI's IRQs");
        let locals: Vec<(u8, u8)> = e.iter().filter(|e| e[0] == 4).map(|e| (e[1], e[7])).collect();
        assert_eq!(locals, vec![(3, 0), (1, 1)], "ExtINT on LINT0, NMI on LINT1");
    }
}
