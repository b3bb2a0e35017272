//! The legacy ISA devices through the real board, as a guest drives them through ports: the
//! RTC's periodic interrupt reaching the PIC, the 8042's self test and a key press on IRQ 1
//! in set 1, A20 through the 8042 and port 0x92, resets through 0x64 and 0xCF9, and a floppy
//! READ DATA landing in guest memory through DMA channel 2.

use machine::block::{self, CreateFormat, OpenOptions};
use machine::devices::i8042::HostInput;
use machine::devices::ps2_keys::PcKey;
use machine::{ClockMode, Machine, MachineConfig, MachineError, MachineEvent};
use std::path::PathBuf;

fn config() -> MachineConfig {
    MachineConfig {
        ram_size: 16 << 20,
        bios: vec![0xF4; 128 * 1024],
        clock: ClockMode::Deterministic,
        ..MachineConfig::default()
    }
}

/// Both 8259As initialised as a BIOS does (vectors 0x08 and 0x70), every line masked but
/// the cascade and `unmasked`.
fn init_pic(m: &mut Machine, unmasked: &[u8]) {
    for (base, vector, icw3) in [(0x20u16, 0x08u32, 0x04u32), (0xA0, 0x70, 0x02)] {
        m.io_write(base, 1, 0x11);
        m.io_write(base + 1, 1, vector);
        m.io_write(base + 1, 1, icw3);
        m.io_write(base + 1, 1, 0x01);
    }
    let mut mask: u16 = !(1 << 2);
    for &l in unmasked {
        mask &= !(1 << l);
    }
    m.io_write(0x21, 1, (mask & 0xFF) as u32);
    m.io_write(0xA1, 1, (mask >> 8) as u32);
}

/// Moves virtual time from deadline to deadline, as the run loop does for a halted CPU,
/// until an interrupt is pending. Returns the time it came.
fn run_until_interrupt(m: &mut Machine, limit_ns: u64) -> u64 {
    let end = m.now() + limit_ns;
    while !m.intr_pending() {
        let t = m.next_deadline().expect("something is scheduled");
        assert!(t <= end, "no interrupt within {limit_ns} ns");
        m.clock_mut().advance_to(t);
        m.run_timers();
    }
    m.now()
}

fn cmos_read(m: &mut Machine, index: u8) -> u8 {
    m.io_write(0x70, 1, index as u32);
    m.io_read(0x71, 1) as u8
}

#[test]
fn rtc_periodic_interrupt_reaches_the_pic_on_irq8() {
    let mut m = Machine::new(config()).unwrap();
    init_pic(&mut m, &[8]);
    m.io_write(0x70, 1, 0x0A);
    m.io_write(0x71, 1, 0x26); // 1024 Hz
    m.io_write(0x70, 1, 0x0B);
    m.io_write(0x71, 1, 0x42); // PIE, 24 hours
    let t0 = m.now();
    let t = run_until_interrupt(&mut m, 10_000_000);
    assert!(t - t0 <= 976_563, "first periodic interrupt after {} ns", t - t0);
    assert_eq!(m.intr_ack(), Some(0x70), "IRQ 8: the slave's first vector");
    assert_eq!(cmos_read(&mut m, 0x0C) & 0xC0, 0xC0, "IRQF and PF");
    // End of interrupt on both chips; the next one comes a period later.
    m.io_write(0xA0, 1, 0x20);
    m.io_write(0x20, 1, 0x20);
    let t2 = run_until_interrupt(&mut m, 10_000_000);
    assert!((976_562..=976_563).contains(&(t2 - t)), "period {} ns", t2 - t);
    // The clock starts at the deterministic epoch: 2026-01-01, a Thursday.
    assert_eq!([cmos_read(&mut m, 9), cmos_read(&mut m, 8), cmos_read(&mut m, 7), cmos_read(&mut m, 0x32)], [0x26, 0x01, 0x01, 0x20]);
}

#[test]
fn cmos_holds_what_seabios_reads() {
    let dir = tempdir("cmos");
    let img = dir.join("a.img");
    block::create(&img, CreateFormat::Raw, 2_949_120, None).unwrap();
    let floppy = block::open(&img, &OpenOptions::default()).unwrap();
    let mut m = Machine::new(MachineConfig { floppy: [Some(floppy), None], cpus: 4, boot_order: "a".into(), ..config() }).unwrap();
    assert_eq!(cmos_read(&mut m, 0x10), 0x50, "A: 2.88 MB");
    assert_eq!(cmos_read(&mut m, 0x14) & 0xC1, 0x01, "one floppy");
    assert_eq!(cmos_read(&mut m, 0x5F), 3);
    assert_eq!(cmos_read(&mut m, 0x3D), 0x01);
    assert_eq!([cmos_read(&mut m, 0x15), cmos_read(&mut m, 0x16)], [0x80, 0x02]);
    assert_eq!([cmos_read(&mut m, 0x34), cmos_read(&mut m, 0x35)], [0, 0], "16 MiB: nothing above 16 MiB");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keyboard_self_test_and_a_key_press_on_irq1_in_set1() {
    let mut m = Machine::new(config()).unwrap();
    init_pic(&mut m, &[1]);
    m.io_write(0x64, 1, 0xAA);
    assert_eq!(m.io_read(0x64, 1) & 0x01, 0x01, "output buffer full");
    assert_eq!(m.io_read(0x60, 1), 0x55);
    assert_eq!(m.io_read(0x64, 1) & 0x04, 0x04, "system flag after the self test");
    m.io_write(0x64, 1, 0x60);
    m.io_write(0x60, 1, 0x61); // translate, system flag, keyboard interrupt
    m.io_write(0x60, 1, 0xFF); // keyboard reset
    let _ = run_until_interrupt(&mut m, 1_000_000);
    assert_eq!(m.intr_ack(), Some(0x09));
    assert_eq!(m.io_read(0x60, 1), 0xFA);
    m.io_write(0x20, 1, 0x20);
    assert_eq!(m.intr_ack(), Some(0x09), "the BAT code is a new edge");
    assert_eq!(m.io_read(0x60, 1), 0xAA);
    m.io_write(0x20, 1, 0x20);
    assert!(!m.intr_pending());

    let input = m.ps2_input().expect("an 8042 on the board");
    input.send(HostInput::Press(PcKey::KeyA));
    input.send(HostInput::Release(PcKey::KeyA));
    let _ = run_until_interrupt(&mut m, 50_000_000);
    assert_eq!(m.intr_ack(), Some(0x09));
    assert_eq!(m.io_read(0x60, 1), 0x1E, "set 1 make code of A");
    m.io_write(0x20, 1, 0x20);
    assert_eq!(m.intr_ack(), Some(0x09));
    assert_eq!(m.io_read(0x60, 1), 0x9E, "set 1 break code of A");
}

#[test]
fn a20_through_the_8042_and_port_92() {
    let mut m = Machine::new(config()).unwrap();
    assert!(m.memory().a20());
    m.io_write(0x64, 1, 0xD1);
    m.io_write(0x60, 1, 0xDD);
    assert!(!m.memory().a20(), "8042 output port bit 1 clear");
    m.io_write(0x64, 1, 0xD1);
    m.io_write(0x60, 1, 0xDF);
    assert!(m.memory().a20());
    m.io_write(0x92, 1, 0x00);
    assert!(!m.memory().a20(), "port 0x92 bit 1 clear");
    m.io_write(0x92, 1, 0x02);
    assert!(m.memory().a20());
    assert_eq!(m.io_read(0x92, 1), 0x02);
    assert!(!m.take_events().contains(&MachineEvent::Reset));
}

#[test]
fn reset_through_the_8042_and_0xcf9_with_pci_configuration_intact() {
    let mut m = Machine::new(config()).unwrap();
    m.take_events();
    m.io_write(0x64, 1, 0xFE);
    assert_eq!(m.take_events(), vec![MachineEvent::Reset]);
    m.io_write(0xCF9, 1, 0x02);
    assert!(m.take_events().is_empty(), "choosing a hard reset resets nothing yet");
    assert_eq!(m.io_read(0xCF9, 1), 0x02);
    m.io_write(0xCF9, 1, 0x06);
    assert_eq!(m.take_events(), vec![MachineEvent::Reset]);
    // Configuration mechanism #1 around it still works: the i440FX at 00:00.0.
    m.io_write(0xCF8, 4, 0x8000_0000);
    assert_eq!(m.io_read(0xCF8, 4), 0x8000_0000);
    assert_eq!(m.io_read(0xCFC, 4), 0x1237_8086);
    assert_eq!(m.io_read(0xCFC, 2), 0x8086);
    m.reset();
    assert_eq!(m.io_read(0xCF9, 1), 0x00);
}

#[test]
fn floppy_read_data_lands_in_memory_through_dma_channel_2() {
    let dir = tempdir("floppy");
    let img = dir.join("boot.img");
    assert_eq!(block::create(&img, CreateFormat::Raw, 1_474_560, None).unwrap(), 1_474_560);
    // Cylinder 1, head 1, sectors 3 and 4 (LBA (1 * 2 + 1) * 18 + 2 = 56 and 57) carry a pattern.
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 13 + 7) as u8).collect();
    {
        let mut d = block::open(&img, &OpenOptions::default()).unwrap();
        d.write_at(56 * 512, &pattern).unwrap();
        d.flush().unwrap();
    }
    let floppy = block::open(&img, &OpenOptions::default()).unwrap();
    let mut m = Machine::new(MachineConfig { floppy: [Some(floppy), None], ..config() }).unwrap();
    init_pic(&mut m, &[6]);
    // DMA: the cascade, then channel 2 for 1 KiB at 0x23400, single mode, write to memory.
    m.io_write(0x0D, 1, 0);
    m.io_write(0xDA, 1, 0);
    m.io_write(0xD6, 1, 0xC0);
    m.io_write(0xD4, 1, 0x00);
    m.io_write(0x0A, 1, 0x06);
    m.io_write(0x0C, 1, 0);
    m.io_write(0x04, 1, 0x00);
    m.io_write(0x04, 1, 0x34);
    m.io_write(0x81, 1, 0x02);
    m.io_write(0x05, 1, 0xFF);
    m.io_write(0x05, 1, 0x03);
    m.io_write(0x0B, 1, 0x46);
    m.io_write(0x0A, 1, 0x02);
    // FDC: out of reset (drive 0, motor on, DMA and IRQ), four polling statuses.
    m.io_write(0x3F2, 1, 0x1C);
    let _ = run_until_interrupt(&mut m, 1_000_000);
    assert_eq!(m.intr_ack(), Some(0x0E));
    m.io_write(0x20, 1, 0x20);
    let fifo_cmd = |m: &mut Machine, bytes: &[u8]| {
        for &b in bytes {
            assert_eq!(m.io_read(0x3F4, 1) & 0xC0, 0x80, "MSR: ready for a command byte");
            m.io_write(0x3F5, 1, b as u32);
        }
    };
    let fifo_result = |m: &mut Machine| {
        let mut out = Vec::new();
        while m.io_read(0x3F4, 1) & 0xC0 == 0xC0 {
            out.push(m.io_read(0x3F5, 1) as u8);
        }
        out
    };
    for d in 0..4u8 {
        fifo_cmd(&mut m, &[0x08]);
        assert_eq!(fifo_result(&mut m), vec![0xC0 | d, 0]);
    }
    fifo_cmd(&mut m, &[0x03, 0xAF, 0x02]);
    m.io_write(0x3F7, 1, 0x00); // 500 kb/s
    fifo_cmd(&mut m, &[0xE6, 0x04, 1, 1, 3, 2, 4, 0x1B, 0xFF]);
    let t0 = m.now();
    let t = run_until_interrupt(&mut m, 1_000_000_000);
    assert!(t - t0 >= 6_000_000, "the implied seek took a step time");
    assert_eq!(m.intr_ack(), Some(0x0E));
    assert_eq!(fifo_result(&mut m), vec![0x04, 0x00, 0x00, 2, 0, 1, 2], "normal termination by TC at EOT of side 1: C+1, head 0, sector 1");
    let mut got = vec![0u8; 1024];
    m.memory().read(0x2_3400, &mut got);
    assert_eq!(got, pattern);
    let mut written = Vec::new();
    m.memory_mut().take_written(&mut written);
    assert!(written.contains(&0x2_3000), "the CPU hears which pages DMA wrote");
    assert_eq!(m.io_read(0x08, 1) & 0x04, 0x04, "DMA status: channel 2 reached terminal count");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_floppy_image_of_no_known_size_is_refused_by_name() {
    let dir = tempdir("badfloppy");
    let img = dir.join("odd.img");
    block::create(&img, CreateFormat::Raw, 1_000_448, None).unwrap();
    let floppy = block::open(&img, &OpenOptions::default()).unwrap();
    let err = Machine::new(MachineConfig { floppy: [None, Some(floppy)], ..config() }).err().expect("refused");
    assert!(matches!(err, MachineError::Floppy(_)));
    assert!(err.to_string().contains("odd.img"), "{err}");
    let err = Machine::new(MachineConfig { boot_order: "cz".into(), ..config() }).err().expect("refused");
    assert!(err.to_string().contains("boot order"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshot_round_trip_with_the_isa_devices() {
    let mut m = Machine::new(config()).unwrap();
    m.io_write(0x70, 1, 0x0B);
    m.io_write(0x71, 1, 0x42);
    m.io_write(0x64, 1, 0xAA);
    let snap = m.save();
    let mut n = Machine::new(config()).unwrap();
    n.restore(&snap).unwrap();
    assert_eq!(n.save(), snap);
    assert_eq!(n.io_read(0x60, 1), 0x55);
}

fn tempdir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ferrite-isa-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// COM1 and COM3 share IRQ 4 (wired-OR): while either UART asserts it the line stays high,
/// so COM3 dropping its request does not hide COM1's from the PIC; COM2 and COM4 are there too.
#[test]
fn four_uarts_and_a_shared_interrupt_line() {
    let mut m = Machine::new(config()).unwrap();
    for base in [0x3F8u16, 0x2F8, 0x3E8, 0x2E8] {
        // The scratch register proves a UART answers at each port.
        m.io_write(base + 7, 1, 0x5A);
        assert_eq!(m.io_read(base + 7, 1), 0x5A, "UART at {base:#x}");
    }
    // Level-sensitive view: ELCR marks IRQ 4 level-triggered so the IRR follows the line.
    init_pic(&mut m, &[4]);
    m.io_write(0x4D0, 1, 1 << 4);
    let irr = |m: &mut Machine| {
        m.io_write(0x20, 1, 0x0A);
        m.io_read(0x20, 1) & (1 << 4) != 0
    };
    // Both UARTs request "transmitter empty" interrupts with OUT2 set.
    for base in [0x3F8u16, 0x3E8] {
        m.io_write(base + 4, 1, 0x08);
        m.io_write(base + 1, 1, 0x02);
    }
    assert!(irr(&mut m), "IRQ 4 asserted");
    // COM3 stops asking (IER cleared): COM1 still holds the line.
    m.io_write(0x3E8 + 1, 1, 0x00);
    assert!(irr(&mut m), "COM1 still drives IRQ 4");
    m.io_write(0x3F8 + 1, 1, 0x00);
    assert!(!irr(&mut m), "nobody drives IRQ 4");
}

/// The debug console takes port 0xE9 and port 0x402 (where SeaBIOS writes its log), and
/// both read back 0xE9 so that a guest can tell it is there.
#[test]
fn debug_console_at_e9_and_402() {
    let out = machine::host::CaptureChar::new();
    let mut m = Machine::new(MachineConfig { debugcon: Box::new(out.clone()), ..config() }).unwrap();
    for (port, b) in [(0xE9u16, b'o'), (0x402, b'k')] {
        assert_eq!(m.io_read(port, 1), 0xE9, "port {port:#x}");
        m.io_write(port, 1, u32::from(b));
    }
    assert_eq!(out.output.lock().unwrap().as_slice(), b"ok");
}
