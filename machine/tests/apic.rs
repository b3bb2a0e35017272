//! The APIC path through the real board: ISA interrupts through the I/O APIC to the local
//! APIC, the local APIC timer in virtual time, the 8259A through LINT0 when the firmware
//! leaves the APIC alone, and EOI broadcasts for level-triggered entries.

use machine::{ClockMode, Machine, MachineConfig};

const LAPIC: u64 = 0xFEE0_0000;
const IOAPIC: u64 = 0xFEC0_0000;

fn machine() -> Machine {
    Machine::new(MachineConfig { bios: vec![0xF4; 64 * 1024], clock: ClockMode::Deterministic, ..MachineConfig::default() }).unwrap()
}

fn ioapic_entry(m: &mut Machine, pin: u32, lo: u32, hi: u32) {
    m.mmio_write(IOAPIC, 4, u64::from(0x10 + 2 * pin + 1));
    m.mmio_write(IOAPIC + 0x10, 4, u64::from(hi));
    m.mmio_write(IOAPIC, 4, u64::from(0x10 + 2 * pin));
    m.mmio_write(IOAPIC + 0x10, 4, u64::from(lo));
}

fn advance_to(m: &mut Machine, t: u64) {
    m.clock_mut().advance_to(t);
    m.run_timers();
}

#[test]
fn the_pit_reaches_the_cpu_through_the_io_apic() {
    let mut m = machine();
    m.mmio_write(LAPIC + 0xF0, 4, 0x1FF); // software enable
    m.mmio_write(LAPIC + 0x350, 4, 0x1_0000); // LINT0 masked: no virtual wire
    ioapic_entry(&mut m, 2, 0x30, 0); // ISA IRQ 0 arrives on pin 2
    // The PIT runs at 18.2 Hz from power-on: its first edge comes within 55 ms.
    let mut t = 0;
    while !m.intr_pending() && t < 100_000_000 {
        t += 1_000_000;
        advance_to(&mut m, t);
    }
    assert!(m.intr_pending(), "PIT edge through pin 2");
    assert_eq!(m.intr_ack(), Some(0x30));
    assert!(!m.intr_pending(), "in service");
    m.mmio_write(LAPIC + 0xB0, 4, 0);
    assert_eq!(m.mmio_read(LAPIC + 0x100 + 0x10, 4), 0, "ISR clear after EOI");
}

#[test]
fn the_local_apic_timer_counts_virtual_time() {
    let mut m = machine();
    m.mmio_write(LAPIC + 0xF0, 4, 0x1FF);
    m.mmio_write(LAPIC + 0x350, 4, 0x1_0000);
    m.mmio_write(LAPIC + 0x3E0, 4, 0xB); // divide by 1
    m.mmio_write(LAPIC + 0x320, 4, 0x40); // one-shot, vector 0x40
    let t0 = m.now();
    m.mmio_write(LAPIC + 0x380, 4, 50_000);
    assert_eq!(m.next_deadline().map(|d| d <= t0 + 50_000), Some(true));
    advance_to(&mut m, t0 + 20_000);
    assert_eq!(m.mmio_read(LAPIC + 0x390, 4), 30_000);
    assert!(!m.intr_pending());
    advance_to(&mut m, t0 + 50_000);
    assert_eq!(m.intr_ack(), Some(0x40));
}

#[test]
fn the_8259a_goes_through_lint0_at_reset() {
    let mut m = machine();
    for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01)] {
        m.io_write(p, 1, v);
    }
    m.io_write(0x21, 1, 0xFE);
    let mut t = 0;
    while !m.intr_pending() && t < 100_000_000 {
        t += 1_000_000;
        advance_to(&mut m, t);
    }
    assert_eq!(m.intr_ack(), Some(0x08), "IRQ 0 through the PIC in virtual-wire mode");
}

#[test]
fn apic_state_survives_a_snapshot() {
    let mut m = machine();
    m.mmio_write(LAPIC + 0xF0, 4, 0x1FF);
    ioapic_entry(&mut m, 5, 0x8035, 0);
    let s = m.save();
    let mut n = machine();
    n.restore(&s).unwrap();
    n.mmio_write(IOAPIC, 4, 0x10 + 10);
    assert_eq!(n.mmio_read(IOAPIC + 0x10, 4), 0x8035);
    assert_eq!(n.mmio_read(LAPIC + 0xF0, 4), 0x1FF);
}
