//! A guest that programs devices wrongly gets what hardware gives, never a host panic: random
//! and hostile port and MMIO accesses (impossible register values, unimplemented ports, DMA
//! to addresses beyond RAM, into ROM and device memory, command bytes no device knows) are
//! thrown at a machine with every device attached, with time passing in between, as a guest's
//! CPU would issue them. The test passes if nothing panics and the machine still works
//! afterwards (a reset brings the UART back to its power-on registers).

use machine::block::{self, OpenOptions};
use machine::{Drive, Machine, MachineConfig, MachineEvent};
use std::path::PathBuf;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    /// A value that is often extreme: 0, all ones, a single bit, or random.
    fn value(&mut self) -> u32 {
        match self.below(6) {
            0 => 0,
            1 => u32::MAX,
            2 => 1 << self.below(32),
            3 => self.below(0x100) as u32,
            _ => self.next() as u32,
        }
    }
}

fn scratch(name: &str, size: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-device-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    p
}

fn open(path: &PathBuf, format: Option<&str>) -> Box<dyn block::BlockDevice> {
    let mut o = OpenOptions { locking: false, ..OpenOptions::default() };
    if let Some(f) = format {
        o.set("format", f).unwrap();
    }
    block::open(path, &o).unwrap()
}

fn machine() -> Machine {
    let disk = scratch("disk.img", 8 << 20);
    let cd = scratch("cd.iso", 2 << 20);
    let fd = scratch("fd.img", 1_474_560);
    Machine::new(MachineConfig {
        // Less RAM than the 8237's 16 MiB reach, so ISA DMA can point past it.
        ram_size: 8 << 20,
        bios: roms::HELLO.to_vec(),
        ide: [
            Some(Drive { media: open(&disk, None), cdrom: false }),
            None,
            Some(Drive { media: open(&cd, Some("iso")), cdrom: true }),
            None,
        ],
        floppy: [Some(open(&fd, None)), None],
        ..MachineConfig::default()
    })
    .unwrap()
}

/// Ports with devices behind them (and their neighbours), most of the accesses go here.
const PORTS: &[(u16, u16)] = &[
    (0x00, 0x1F),   // 8237 #1, page registers
    (0x20, 0x21),   // PIC
    (0x40, 0x43),   // PIT
    (0x60, 0x64),   // 8042, port 0x61
    (0x70, 0x71),   // RTC
    (0x80, 0x8F),   // DMA pages
    (0x92, 0x92),   // A20 / fast reset
    (0xA0, 0xA1),   // PIC slave
    (0xC0, 0xDF),   // 8237 #2
    (0x170, 0x177), // IDE secondary
    (0x1CE, 0x1D0), // Bochs VBE
    (0x1F0, 0x1F7), // IDE primary
    (0x2F8, 0x2FF), // COM2
    (0x376, 0x376),
    (0x3B0, 0x3DF), // VGA
    (0x3F0, 0x3F7), // FDC, IDE control
    (0x3F8, 0x3FF), // COM1
    (0x4D0, 0x4D1), // ELCR
    (0x510, 0x51B), // fw_cfg and its DMA
    (0x600, 0x63F), // ACPI PM
    (0x700, 0x70F), // SMBus
    (0xC000, 0xC00F), // IDE bus master (BAR 4 as programmed below)
    (0xCF8, 0xCFF), // PCI configuration
];

/// MMIO windows: legacy VGA, the APICs, HPET, the VGA BARs, the BIOS, beyond RAM.
const MMIO: &[(u64, u64)] = &[
    (0xA_0000, 0x2_0000),
    (0xC_0000, 0x4_0000),
    (0x80_0000, 0x1000), // just past RAM
    (0xFD00_0000, 0x1000),
    (0xFEBF_0000, 0x1000),
    (0xFEC0_0000, 0x100),
    (0xFED0_0000, 0x400),
    (0xFEE0_0000, 0x1000),
    (0xFFFF_0000, 0x1_0000),
];

fn pci_write(m: &mut Machine, dev: u32, func: u32, reg: u32, v: u32) {
    m.io_write(0xCF8, 4, 0x8000_0000 | (dev << 11) | (func << 8) | (reg & 0xFC));
    m.io_write(0xCFC, 4, v);
}

/// Points the devices' DMA at hostile addresses: the IDE bus master's PRD table beyond RAM and
/// into the BIOS, fw_cfg DMA into device memory, the 8237 past the end of RAM.
fn hostile_dma(m: &mut Machine, r: &mut Rng) {
    // IDE bus-master DMA from the disk: PRD table address from a hostile list.
    let prd = r.pick(&[0xFFFF_FFF0u32, 0x80_0000, 0xFEE0_0000, 0xF_FFF8, 0x7F_FFFC, 0x1000]);
    if prd < 0x7F_F000 {
        // A PRD entry in RAM that points outside it, with a byte count spanning the end.
        let base = r.pick(&[0x7F_F000u32, 0xFFFF_F000, 0xA_0000, 0xFEC0_0000]);
        for (k, b) in base.to_le_bytes().into_iter().chain(0x8000_0000u32.to_le_bytes()).enumerate() {
            m.memory_mut().write(u64::from(prd) + k as u64, &[b]);
        }
    }
    m.io_write(0xC004, 4, prd);
    m.io_write(0x1F6, 1, 0xE0);
    m.io_write(0x1F2, 1, r.value() as u32 & 0xFF);
    m.io_write(0x1F3, 1, r.value() & 0xFF);
    m.io_write(0x1F7, 1, r.pick(&[0xC8u32, 0xCA, 0x25, 0x35]));
    m.io_write(0xC000, 1, r.pick(&[1u32, 9]));
    // fw_cfg DMA: a control structure at a hostile address.
    let a = r.pick(&[0xFFFF_FFF0u64, 0x80_0000, 0xFEE0_0000, 0x7F_FFF8, 0xB_8000]);
    m.io_write(0x514, 4, (a >> 32) as u32);
    m.io_write(0x518, 4, (a as u32).swap_bytes());
    // 8237 channel 2 (floppy) at the top of its 16 MiB reach, then a floppy read.
    m.io_write(0x0A, 1, 0x06);
    m.io_write(0x0C, 1, 0);
    m.io_write(0x04, 1, 0xF0);
    m.io_write(0x04, 1, 0xFF);
    m.io_write(0x81, 1, 0xFF);
    m.io_write(0x05, 1, 0xFF);
    m.io_write(0x05, 1, 0xFF);
    m.io_write(0x0B, 1, r.pick(&[0x46u32, 0x4A, 0x56]));
    m.io_write(0x0A, 1, 0x02);
    for b in [0xE6u32, 0, 0, 0, 1, 2, 18, 0x1B, 0xFF] {
        m.io_write(0x3F5, 1, b);
    }
}

fn fuzz(seed: u64, ops: u32) {
    let mut m = machine();
    let mut r = Rng(seed | 1);
    // Enable the IDE function's bus master at 0xC000, and the VGA's BARs, as firmware would.
    pci_write(&mut m, 1, 1, 0x20, 0xC001);
    pci_write(&mut m, 1, 1, 0x04, 0x0005);
    pci_write(&mut m, 2, 0, 0x10, 0xFD00_0000);
    pci_write(&mut m, 2, 0, 0x18, 0xFEBF_0000);
    pci_write(&mut m, 2, 0, 0x04, 0x0003);
    for i in 0..ops {
        match r.below(100) {
            0..=34 => {
                let (lo, hi) = r.pick(PORTS);
                let port = lo + r.below(u64::from(hi - lo) + 1) as u16;
                let size = r.pick(&[1u8, 1, 2, 4]);
                if r.below(2) == 0 {
                    m.io_write(port, size, r.value());
                } else {
                    m.io_read(port, size);
                }
            }
            35..=44 => {
                // Anywhere in the port space, including ports nothing decodes.
                let port = r.next() as u16;
                let size = r.pick(&[1u8, 2, 4]);
                if r.below(2) == 0 {
                    m.io_write(port, size, r.value());
                } else {
                    m.io_read(port, size);
                }
            }
            45..=69 => {
                let (base, len) = r.pick(MMIO);
                let size = r.pick(&[1u8, 2, 4, 8]);
                let a = base + r.below(len);
                if r.below(2) == 0 {
                    m.mmio_write(a, size, u64::from(r.value()) | (u64::from(r.value()) << 32));
                } else {
                    m.mmio_read(a, size);
                }
            }
            70..=79 => {
                // PCI configuration space of every slot and function, any register.
                let dev = r.below(32) as u32;
                let func = r.below(8) as u32;
                let reg = r.below(256) as u32;
                if r.below(3) == 0 {
                    m.io_write(0xCF8, 4, 0x8000_0000 | (dev << 11) | (func << 8) | reg);
                    m.io_read(0xCFC + (reg & 3) as u16, 1);
                } else if dev > 2 || reg >= 0x40 || r.below(8) == 0 {
                    // Registers of devices that are not there, and chipset registers; BARs
                    // of present devices only now and then, so they stay mostly decoded.
                    pci_write(&mut m, dev, func, reg, r.value());
                }
            }
            80..=84 => hostile_dma(&mut m, &mut r),
            _ => {
                // Time passes: timers fire, DMA and disk transfers complete.
                let ns = r.pick(&[1u64, 1_000, 100_000, 10_000_000, 1_000_000_000]);
                m.clock_mut().advance(ns);
                m.run_timers();
            }
        }
        while m.intr_pending() {
            if m.intr_ack().is_none() {
                break;
            }
            // Acknowledge like a handler would, now and then.
            if r.below(2) == 0 {
                m.io_write(0x20, 1, 0x20);
                m.io_write(0xA0, 1, 0x20);
                m.mmio_write(0xFEE0_00B0, 4, 0);
            }
        }
        for e in m.take_events() {
            if matches!(e, MachineEvent::Reset) {
                m.reset();
            }
        }
        if i % 50_000 == 0 {
            m.take_attention();
        }
    }
    // Still a working machine: after a reset COM1's line status says the transmitter is empty.
    m.reset();
    assert_eq!(m.io_read(0x3FD, 1) & 0x60, 0x60, "seed {seed:#x}: COM1 after reset");
}

#[test]
fn hostile_device_programming_never_panics() {
    for seed in [1u64, 0xF00D, 0xDEAD_BEEF, 0x1234_5678_9ABC_DEF0, 42, 7, 0x5EED] {
        fuzz(seed, 150_000);
    }
}
