//! The HPET through the real board: LegacyReplacement Route taking IRQ 0 from the 8254 (and
//! giving it back), a timer on I/O APIC pin 20 reaching the local APIC, and the route state in
//! a machine snapshot.

use machine::{ClockMode, Machine, MachineConfig};

const HPET: u64 = 0xFED0_0000;
const LAPIC: u64 = 0xFEE0_0000;
const IOAPIC: u64 = 0xFEC0_0000;
const MS: u64 = 1_000_000;

fn machine() -> Machine {
    Machine::new(MachineConfig { bios: vec![0xF4; 64 * 1024], clock: ClockMode::Deterministic, ..MachineConfig::default() }).unwrap()
}

/// The master 8259A at vector 0x08 with only IRQ 0 unmasked.
fn init_pic(m: &mut Machine) {
    for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE)] {
        m.io_write(p, 1, v);
    }
}

/// Moves time from deadline to deadline up to `end`; returns when IRQ 0 was acknowledged
/// (each acknowledged and ended at once).
fn irq0_times(m: &mut Machine, end: u64) -> Vec<u64> {
    let mut times = Vec::new();
    loop {
        while m.intr_pending() {
            assert_eq!(m.intr_ack(), Some(0x08));
            m.io_write(0x20, 1, 0x20);
            times.push(m.now());
        }
        match m.next_deadline() {
            Some(t) if t <= end => {
                m.clock_mut().advance_to(t);
                m.run_timers();
            }
            _ => return times,
        }
    }
}

/// Timer 0 periodic every `ticks` (10 ns each) from the current counter value.
fn periodic_timer0(m: &mut Machine, ticks: u32) {
    m.mmio_write(HPET + 0x100, 4, 0x4C); // enabled, periodic, VAL_SET
    m.mmio_write(HPET + 0x108, 4, u64::from(ticks));
    m.mmio_write(HPET + 0x108, 4, u64::from(ticks));
}

#[test]
fn legacy_replacement_takes_irq0_from_the_pit_and_gives_it_back() {
    let mut m = machine();
    init_pic(&mut m);
    // The 8254 runs at 18.2 Hz from power-on: about 55 ms between interrupts.
    let pit = irq0_times(&mut m, 200 * MS);
    assert!((3..=4).contains(&pit.len()), "{pit:?}");
    assert_eq!(m.mmio_read(HPET, 4), 0x8086_A201, "the capabilities answer at 0xFED00000");

    let t0 = m.now();
    periodic_timer0(&mut m, 100_000); // 1 ms
    m.mmio_write(HPET + 0x10, 4, 3); // ENABLE_CNF | LEG_RT_CNF
    let hpet = irq0_times(&mut m, t0 + 200 * MS);
    assert_eq!(hpet.len(), 200, "only the HPET's 1 kHz on IRQ 0, none of the 8254's");
    assert!(hpet.windows(2).all(|w| w[1] - w[0] == MS), "{:?}", &hpet[..5]);

    let t1 = m.now();
    m.mmio_write(HPET + 0x10, 4, 1); // LegacyReplacement off: timer 0 has no route now
    let back = irq0_times(&mut m, t1 + 200 * MS);
    assert!((3..=4).contains(&back.len()), "the 8254 again: {back:?}");
}

#[test]
fn a_timer_on_pin_20_reaches_the_local_apic() {
    let mut m = machine();
    m.mmio_write(LAPIC + 0xF0, 4, 0x1FF);
    m.mmio_write(LAPIC + 0x350, 4, 0x1_0000); // LINT0 masked: the 8254 stays out
    m.mmio_write(IOAPIC, 4, 0x10 + 2 * 20 + 1);
    m.mmio_write(IOAPIC + 0x10, 4, 0);
    m.mmio_write(IOAPIC, 4, 0x10 + 2 * 20);
    m.mmio_write(IOAPIC + 0x10, 4, 0x8041); // level, vector 0x41
    m.mmio_write(HPET + 0x140, 4, 0x06 | 20 << 9); // timer 2: level, enabled, pin 20
    m.mmio_write(HPET + 0x148, 4, 5_000); // 50 µs
    let t0 = m.now();
    m.mmio_write(HPET + 0x10, 4, 1);
    while !m.intr_pending() {
        let t = m.next_deadline().unwrap();
        assert!(t <= t0 + 50_000, "no interrupt by the comparator match");
        m.clock_mut().advance_to(t);
        m.run_timers();
    }
    assert_eq!(m.now(), t0 + 50_000);
    assert_eq!(m.intr_ack(), Some(0x41));
    assert_eq!(m.mmio_read(HPET + 0x20, 4), 4, "status of timer 2");
    m.mmio_write(HPET + 0x20, 4, 4);
    m.mmio_write(LAPIC + 0xB0, 4, 0); // EOI: the line is low, nothing comes back
    assert!(!m.intr_pending());
}

#[test]
fn the_route_state_survives_a_snapshot() {
    let mut a = machine();
    init_pic(&mut a);
    periodic_timer0(&mut a, 50_000);
    a.mmio_write(HPET + 0x10, 4, 3);
    let t0 = a.now();
    irq0_times(&mut a, t0 + 3 * MS);
    let snap = a.save();
    let mut b = machine();
    b.restore(&snap).unwrap();
    assert_eq!(b.save(), snap);
    let ta = irq0_times(&mut a, t0 + 100 * MS);
    let tb = irq0_times(&mut b, t0 + 100 * MS);
    assert_eq!(ta, tb);
    assert_eq!(ta.len(), 194, "2 kHz, none from the 8254");
}
