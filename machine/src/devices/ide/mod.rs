//! The PIIX3 IDE controller, PCI function 00:01.1 (Intel 82371SB datasheet sections 2.4 and
//! 2.7): two channels in compatibility mode at the PC/AT's ports and ISA interrupts (primary
//! 0x1F0-0x1F7 and 0x3F6 on IRQ 14, secondary 0x170-0x177 and 0x376 on IRQ 15, edge), two
//! drives each, the IDE timing registers, and bus-master IDE through BAR4. The legacy ports
//! decode from power-on whatever the PCI command register says, as on QEMU's PIIX3, which is
//! what SeaBIOS and Linux are used to.
//!
//! `ata.rs` is a drive and its task file, `atapi.rs` the packet commands of a CD-ROM,
//! `bmdma.rs` the bus-master engine. DMA reaches guest memory only through the board's
//! `PciFunction::run_bus_master` call: the device never holds the memory.

pub mod ata;
pub mod atapi;
pub mod bmdma;

use crate::device::{open_bus, Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::memory::Memory;
use crate::pci::config::{CMD_BUS_MASTER, STATUS};
use crate::pci::{devfn, Bar, BarKind, DevFn, PciConfig, PciFunction};
use ata::{Drive, DriveState, Kind, BSY, DRQ};
use bmdma::BusMaster;
use serde::{Deserialize, Serialize};

/// Where the controller sits: function 1 of the PIIX3.
pub const DEVFN: DevFn = devfn(1, 1);
/// The compatibility-mode ports, as (first port, count) ranges for the board.
pub const LEGACY_PORTS: [(u16, u16); 4] = [(0x1F0, 8), (0x3F6, 1), (0x170, 8), (0x376, 1)];
/// Per channel: command block base, control block port, ISA IRQ.
const CHANNELS: [(u16, u16, u8); 2] = [(0x1F0, 0x3F6, 14), (0x170, 0x376, 15)];
/// BAR4: the bus-master registers, 8 bytes per channel.
const BMDMA_BAR: u8 = 4;

/// Device control register bits.
const NIEN: u8 = 0x02;
const SRST: u8 = 0x04;
const HOB: u8 = 0x80;

const NAME: &str = "piix3-ide";
const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ChannelState {
    /// The device control register (both devices take it).
    control: u8,
    /// The level this channel drives its IRQ line to.
    line: bool,
    bm: BusMaster,
}

struct Channel {
    drives: [Drive; 2],
    s: ChannelState,
    irq: u8,
}

impl Channel {
    /// The selected device (both keep the DEV bit of the last write to the device register).
    fn unit(&self) -> usize {
        usize::from(self.drives[0].s.tf.select >> 4 & 1)
    }

    fn any_present(&self) -> bool {
        self.drives.iter().any(Drive::present)
    }

    /// A task file register (1-7) as the host reads it. A channel without drives reads 0, and
    /// so do the status and error registers of an absent device next to a present one (what
    /// SeaBIOS and Linux take for "nothing there", as on QEMU).
    fn read_reg(&mut self, reg: u8) -> u8 {
        if !self.any_present() {
            return 0;
        }
        let hob = self.s.control & HOB != 0;
        let d = &mut self.drives[self.unit()];
        if !d.present() && matches!(reg, 1 | 7) {
            return 0;
        }
        d.read_reg(reg, hob)
    }

    fn alt_status(&self) -> u8 {
        let d = &self.drives[self.unit()];
        if d.present() {
            d.s.status
        } else {
            0
        }
    }

    fn write_reg(&mut self, reg: u8, v: u8) {
        if reg == 7 {
            return self.command(v);
        }
        // The command block is not to be written while the device is busy or moving data.
        let sel = &self.drives[self.unit()];
        if sel.present() && sel.s.status & (BSY | DRQ) != 0 {
            tracing::debug!("IDE: task file write while busy ignored");
            return;
        }
        self.s.control &= !HOB;
        for d in &mut self.drives {
            d.write_reg(reg, v);
        }
    }

    fn command(&mut self, c: u8) {
        let unit = self.unit();
        let d = &mut self.drives[unit];
        if !d.present() {
            // Nobody answers a command to an absent device.
            return;
        }
        if d.s.status & (BSY | DRQ) != 0 && c != ata::cmd::DEVICE_RESET {
            tracing::debug!("IDE: command {c:#04x} while busy ignored");
            return;
        }
        if c == ata::cmd::EXECUTE_DEVICE_DIAGNOSTIC {
            // Both devices run their diagnostics.
            for d in self.drives.iter_mut().filter(|d| d.present()) {
                d.command(c);
            }
        } else {
            d.command(c);
        }
    }

    /// A write to the device control register: nIEN, and a software reset of both devices
    /// on SRST's falling edge (they stay busy while it is set).
    fn write_control(&mut self, v: u8) {
        let old = self.s.control;
        if old & SRST == 0 && v & SRST != 0 {
            self.drives.iter_mut().for_each(Drive::srst_begin);
        }
        if old & SRST != 0 && v & SRST == 0 {
            self.drives.iter_mut().for_each(Drive::srst_end);
        }
        self.s.control = v;
    }

    /// Drives the IRQ line from the selected device's INTRQ (off under nIEN); a new interrupt
    /// also sets the bus master's interrupt bit.
    fn update_irq(&mut self, cx: &mut DeviceContext) {
        let unit = self.unit();
        let raised = self.drives[unit].s.irq_edge;
        for d in &mut self.drives {
            d.s.irq_edge = false;
        }
        let d = &self.drives[unit];
        let level = d.present() && d.s.irq && self.s.control & NIEN == 0;
        if level && (raised || !self.s.line) {
            self.s.bm.status |= bmdma::INTERRUPT;
        }
        if level != self.s.line {
            self.s.line = level;
            cx.set_irq(self.irq, level);
        }
    }

    /// The engine is started and the selected drive waits for it.
    fn dma_ready(&self) -> bool {
        self.s.bm.running() && self.drives[self.unit()].dma_request().is_some()
    }
}

/// Where a port leads.
enum Reg {
    /// Command block register 0-7 of a channel (0 is data).
    Task(usize, u8),
    /// Device control (write) / alternate status (read) of a channel.
    Control(usize),
}

fn decode(port: u16) -> Option<Reg> {
    CHANNELS.iter().enumerate().find_map(|(ch, &(base, control, _))| {
        if (base..base + 8).contains(&port) {
            Some(Reg::Task(ch, (port - base) as u8))
        } else {
            (port == control).then_some(Reg::Control(ch))
        }
    })
}

pub struct PiixIde {
    config: PciConfig,
    channels: [Channel; 2],
}

/// The saved state: drive kinds are kept to refuse a snapshot of another drive setup.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    config: PciConfig,
    kinds: [Kind; 4],
    channels: [ChannelState; 2],
    drives: [DriveState; 4],
}

fn power_on_config() -> PciConfig {
    // Mass storage, IDE, programming interface 0x80: bus master, both channels in
    // compatibility mode and not switchable.
    let mut c = PciConfig::new(0x8086, 0x7010, 0x01_01_80, 0);
    c.set16(STATUS, 0x0280); // fast back-to-back, medium DEVSEL timing
    c.set_bar(BMDMA_BAR as usize, Bar { kind: BarKind::Io, size: 16 });
    // IDETIM, SIDETIM and the rest of 0x40-0x4F: timings the firmware sets, plain storage.
    for off in 0x40..0x50 {
        c.set_writable(off, 0xFF);
    }
    c
}

impl PiixIde {
    /// The controller with the configured drives: primary master, primary slave, secondary
    /// master, secondary slave.
    pub fn new(drives: [Option<crate::board::Drive>; 4]) -> PiixIde {
        let mut all = drives.into_iter().enumerate().map(|(i, d)| match d {
            Some(d) => Drive::new(if d.cdrom { Kind::Cdrom } else { Kind::Disk }, Some(d.media), i),
            None => Drive::new(Kind::Absent, None, i),
        });
        let mut channel = |irq| Channel { drives: [all.next().unwrap(), all.next().unwrap()], s: ChannelState::default(), irq };
        let channels = [channel(CHANNELS[0].2), channel(CHANNELS[1].2)];
        PiixIde { config: power_on_config(), channels }
    }

    fn drives(&self) -> impl Iterator<Item = &Drive> {
        self.channels.iter().flat_map(|c| c.drives.iter())
    }
}

impl Device for PiixIde {
    fn drive_media(&mut self, unit: usize) -> Option<&mut (dyn crate::block::BlockDevice + 'static)> {
        let d = self.channels.get_mut(unit / 2)?.drives.get_mut(unit % 2)?;
        if d.s.tray_open {
            return None;
        }
        d.media.as_deref_mut()
    }
    fn name(&self) -> &'static str {
        NAME
    }

    fn flush_media(&mut self) {
        for d in self.channels.iter_mut().flat_map(|c| c.drives.iter_mut()) {
            d.flush_media();
        }
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        let (ch, v) = match decode(port) {
            Some(Reg::Task(ch, 0)) => {
                let c = &mut self.channels[ch];
                let v = if c.drives[c.unit()].present() { c.drives[c.unit()].data_read(size) } else { 0 };
                (ch, v)
            }
            Some(Reg::Task(ch, reg)) => {
                let c = &mut self.channels[ch];
                let v = (0..size.min(4)).fold(0u32, |v, k| {
                    let b = if reg + k < 8 { c.read_reg(reg + k) } else { 0xFF };
                    v | u32::from(b) << (8 * k)
                });
                (ch, v)
            }
            Some(Reg::Control(ch)) => (ch, u32::from(self.channels[ch].alt_status()) | (open_bus(size) as u32 & !0xFF)),
            None => return open_bus(size) as u32,
        };
        self.channels[ch].update_irq(cx);
        v
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        let ch = match decode(port) {
            Some(Reg::Task(ch, 0)) => {
                let c = &mut self.channels[ch];
                let unit = c.unit();
                if c.drives[unit].present() {
                    c.drives[unit].data_write(size, value);
                }
                ch
            }
            Some(Reg::Task(ch, reg)) => {
                for k in 0..size.min(4) {
                    if reg + k < 8 {
                        self.channels[ch].write_reg(reg + k, (value >> (8 * k)) as u8);
                    }
                }
                ch
            }
            Some(Reg::Control(ch)) => {
                self.channels[ch].write_control(value as u8);
                ch
            }
            None => return,
        };
        self.channels[ch].update_irq(cx);
    }

    fn reset(&mut self) {
        self.config = power_on_config();
        for c in &mut self.channels {
            c.s = ChannelState::default();
            c.drives.iter_mut().for_each(Drive::reset);
        }
    }

    fn save(&self) -> DeviceSnapshot {
        let mut kinds = [Kind::Absent; 4];
        let mut drives: [DriveState; 4] = std::array::from_fn(|_| self.channels[0].drives[0].s.clone());
        for (i, d) in self.drives().enumerate() {
            kinds[i] = d.kind;
            drives[i] = d.s.clone();
        }
        let snap = Snapshot { config: self.config.clone(), kinds, channels: [self.channels[0].s, self.channels[1].s], drives };
        DeviceSnapshot::new(NAME, VERSION, &snap)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: Snapshot = snapshot.decode(NAME, VERSION)?;
        let kinds: Vec<Kind> = self.drives().map(|d| d.kind).collect();
        if kinds != s.kinds {
            let problem = format!("the snapshot's drives are {:?}, this machine's {:?}", s.kinds, kinds);
            return Err(SnapshotError::Malformed { device: NAME.into(), source: serde::de::Error::custom(problem) });
        }
        self.config = s.config;
        let mut states = s.drives.into_iter();
        for (c, cs) in self.channels.iter_mut().zip(s.channels) {
            c.s = cs;
            for d in &mut c.drives {
                d.s = states.next().expect("four drive states");
            }
        }
        Ok(())
    }

    fn as_pci(&mut self) -> Option<&mut dyn PciFunction> {
        Some(self)
    }
}

impl PciFunction for PiixIde {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, size: u8, _cx: &mut DeviceContext) -> u64 {
        if bar != BMDMA_BAR {
            return open_bus(size);
        }
        (0..u64::from(size.min(4))).fold(0, |v, k| {
            let off = offset + k;
            let b = if off < 16 { self.channels[(off >> 3) as usize].s.bm.read((off & 7) as u8) } else { 0xFF };
            v | u64::from(b) << (8 * k)
        })
    }

    fn bar_write(&mut self, bar: u8, offset: u64, size: u8, value: u64, _cx: &mut DeviceContext) {
        if bar != BMDMA_BAR {
            return;
        }
        for k in 0..u64::from(size.min(4)) {
            let off = offset + k;
            if off < 16 {
                self.channels[(off >> 3) as usize].s.bm.write((off & 7) as u8, (value >> (8 * k)) as u8);
            }
        }
    }

    fn bus_master_pending(&self) -> bool {
        self.channels.iter().any(Channel::dma_ready)
    }

    fn run_bus_master(&mut self, memory: &mut Memory, cx: &mut DeviceContext) {
        let enabled = self.config.command() & CMD_BUS_MASTER != 0;
        for c in &mut self.channels {
            if c.dma_ready() {
                let unit = c.unit();
                bmdma::transfer(&mut c.s.bm, &mut c.drives[unit], memory, enabled);
            }
            c.update_irq(cx);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::ata::{cmd, DRDY, DSC, ERR};
    use super::*;
    use crate::block::{BlockDevice, BlockError, CheckReport, Format};
    use crate::device::MachineEvent;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A sparse disk in memory (unwritten sectors read as zeros) that counts its flushes.
    pub struct MemDisk {
        sectors: std::collections::HashMap<u64, Box<[u8; 512]>>,
        len: u64,
        read_only: bool,
        flushes: Arc<AtomicUsize>,
        path: PathBuf,
    }

    impl MemDisk {
        pub fn new(len: u64) -> MemDisk {
            MemDisk { sectors: Default::default(), len, read_only: false, flushes: Arc::default(), path: "mem.img".into() }
        }

        pub fn read_only(len: u64) -> MemDisk {
            MemDisk { read_only: true, ..MemDisk::new(len) }
        }

        pub fn flush_counter(&self) -> Arc<AtomicUsize> {
            self.flushes.clone()
        }
    }

    impl BlockDevice for MemDisk {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            crate::block::check_range(&self.path, offset, buf.len(), self.len)?;
            for (i, b) in buf.iter_mut().enumerate() {
                let a = offset + i as u64;
                *b = self.sectors.get(&(a / 512)).map_or(0, |s| s[(a % 512) as usize]);
            }
            Ok(())
        }
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
            if self.read_only {
                return Err(BlockError::ReadOnly { path: self.path.clone() });
            }
            crate::block::check_range(&self.path, offset, buf.len(), self.len)?;
            for (i, &b) in buf.iter().enumerate() {
                let a = offset + i as u64;
                self.sectors.entry(a / 512).or_insert_with(|| Box::new([0; 512]))[(a % 512) as usize] = b;
            }
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn len(&self) -> u64 {
            self.len
        }
        fn is_read_only(&self) -> bool {
            self.read_only
        }
        fn format(&self) -> Format {
            Format::Raw
        }
        fn path(&self) -> &Path {
            &self.path
        }
        fn check(&mut self) -> Result<CheckReport, BlockError> {
            Err(BlockError::Unsupported { path: self.path.clone(), what: "checking a test image".into() })
        }
    }

    /// A controller and the interrupt lines it drove, through real port accesses.
    struct Bench {
        ide: PiixIde,
        irqs: Vec<(u8, bool)>,
        line: [bool; 16],
    }

    impl Bench {
        fn new(drives: [Option<crate::board::Drive>; 4]) -> Bench {
            Bench { ide: PiixIde::new(drives), irqs: Vec::new(), line: [false; 16] }
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut PiixIde, &mut DeviceContext) -> R) -> R {
            let (mut events, mut deadline) = (Vec::<MachineEvent>::new(), None);
            let mut cx = DeviceContext::new(0, &mut self.irqs, &mut events, &mut deadline);
            let r = f(&mut self.ide, &mut cx);
            for (l, v) in self.irqs.drain(..) {
                self.line[l as usize] = v;
            }
            r
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|d, cx| d.io_read(port, 1, cx)) as u8
        }

        fn outb(&mut self, port: u16, v: u8) {
            self.with(|d, cx| d.io_write(port, 1, u32::from(v), cx))
        }
    }

    fn disk() -> Option<crate::board::Drive> {
        Some(crate::board::Drive { media: Box::new(MemDisk::new(1 << 20)), cdrom: false })
    }

    fn cd() -> Option<crate::board::Drive> {
        Some(crate::board::Drive { media: Box::new(MemDisk::new(1 << 20)), cdrom: true })
    }

    #[test]
    fn flush_media_reaches_every_disk() {
        let (a, b) = (MemDisk::new(1 << 20), MemDisk::new(1 << 20));
        let (fa, fb) = (a.flush_counter(), b.flush_counter());
        let drive = |d: MemDisk| Some(crate::board::Drive { media: Box::new(d), cdrom: false });
        let mut ide = PiixIde::new([drive(a), None, None, drive(b)]);
        ide.flush_media();
        assert_eq!(fa.load(Ordering::SeqCst), 1);
        assert_eq!(fb.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pci_identity() {
        let mut b = Bench::new([None, None, None, None]);
        assert_eq!(b.ide.config_read(0, 4), 0x7010_8086);
        assert_eq!(b.ide.config_read(8, 4) >> 8, 0x01_01_80);
        b.ide.config_write(0x20, 4, 0xFFFF_FFFF, &mut DeviceContext::new(0, &mut Vec::new(), &mut Vec::new(), &mut None));
        assert_eq!(b.ide.config_read(0x20, 4), 0xFFFF_FFF1, "BAR4: 16 bytes of I/O");
        b.ide.config_write(0x40, 2, 0x8000, &mut DeviceContext::new(0, &mut Vec::new(), &mut Vec::new(), &mut None));
        assert_eq!(b.ide.config_read(0x40, 2), 0x8000, "IDETIM is storage");
    }

    #[test]
    fn an_empty_channel_reads_zero() {
        let mut b = Bench::new([disk(), None, None, None]);
        for p in 0x171..=0x177 {
            assert_eq!(b.inb(p), 0, "port {p:#x}");
        }
        assert_eq!(b.inb(0x376), 0);
    }

    #[test]
    fn an_absent_slave_reads_as_such() {
        let mut b = Bench::new([disk(), None, None, None]);
        assert_eq!(b.inb(0x1F7), DRDY | DSC);
        b.outb(0x1F6, 0xB0);
        assert_eq!(b.inb(0x1F6), 0xB0);
        assert_eq!((b.inb(0x1F7), b.inb(0x1F1), b.inb(0x3F6)), (0, 0, 0), "status, error, alternate status");
        // The registers still latch what is written (both devices take every write).
        b.outb(0x1F2, 0x55);
        b.outb(0x1F3, 0xAA);
        assert_eq!((b.inb(0x1F2), b.inb(0x1F3)), (0x55, 0xAA));
        b.outb(0x1F7, cmd::IDENTIFY_DEVICE);
        assert_eq!(b.inb(0x1F7), 0, "nobody answers");
        assert!(!b.line[14]);
        // After a reset the absent device's signature is all ones.
        b.outb(0x3F6, SRST);
        b.outb(0x3F6, 0);
        assert_eq!((b.inb(0x1F4), b.inb(0x1F5)), (0xFF, 0xFF));
        b.outb(0x1F6, 0xA0);
        assert_eq!((b.inb(0x1F2), b.inb(0x1F3), b.inb(0x1F4), b.inb(0x1F5)), (1, 1, 0, 0), "disk signature");
        assert_eq!(b.inb(0x1F1), 1, "diagnostic code: passed");
    }

    #[test]
    fn soft_reset_gives_signatures() {
        let mut b = Bench::new([disk(), cd(), None, None]);
        b.outb(0x3F6, SRST);
        assert_eq!(b.inb(0x3F6) & BSY, BSY);
        b.outb(0x3F6, 0);
        b.outb(0x1F6, 0xB0);
        assert_eq!((b.inb(0x1F4), b.inb(0x1F5)), (0x14, 0xEB), "packet device signature");
        assert_eq!(b.inb(0x1F7), 0, "a packet device leaves DRDY clear after reset");
        b.outb(0x1F7, cmd::IDENTIFY_PACKET_DEVICE);
        assert!(b.line[14]);
        assert_eq!(b.inb(0x1F7), DRDY | DSC | DRQ);
        assert!(!b.line[14], "reading the status register drops INTRQ");
    }

    #[test]
    fn nien_masks_the_line_and_hob_reads_previous_values() {
        let mut b = Bench::new([None, None, disk(), None]);
        b.outb(0x376, NIEN);
        b.outb(0x177, cmd::CHECK_POWER_MODE);
        assert!(!b.line[15]);
        b.outb(0x376, 0);
        assert!(b.line[15], "INTRQ was pending: the line rises when nIEN clears");
        assert_eq!(b.inb(0x177), DRDY | DSC);
        assert!(!b.line[15]);
        b.outb(0x173, 0x12);
        b.outb(0x173, 0x34);
        assert_eq!(b.inb(0x173), 0x34);
        b.outb(0x376, HOB);
        assert_eq!(b.inb(0x173), 0x12);
        b.outb(0x172, 1);
        assert_eq!(b.inb(0x173), 0x34, "a write clears HOB");
    }

    #[test]
    fn bus_master_registers_through_bar4() {
        let mut b = Bench::new([disk(), None, None, None]);
        b.with(|d, cx| {
            d.bar_write(4, 4, 4, 0x0001_2345, cx);
            assert_eq!(d.bar_read(4, 4, 4, cx), 0x0001_2344);
            d.bar_write(4, 0, 1, 0x09, cx);
            assert_eq!(d.bar_read(4, 2, 1, cx) & 1, 1, "active");
            assert!(!d.bus_master_pending(), "the drive has no DMA command");
        });
        b.outb(0x1F2, 1);
        b.outb(0x1F6, 0xE0);
        b.outb(0x1F7, cmd::READ_DMA);
        assert!(b.ide.bus_master_pending());
        assert_eq!(b.inb(0x1F7), DRDY | DSC | DRQ);
        let mut mem = Memory::new(2 << 20, &vec![0u8; 65536]).unwrap();
        b.with(|d, cx| d.run_bus_master(&mut mem, cx));
        assert_eq!(b.inb(0x1F7) & ERR, ERR, "bus mastering is off in the PCI command register");
        b.with(|d, cx| assert_eq!(d.bar_read(4, 2, 1, cx) & 7, u64::from(bmdma::ERROR | bmdma::INTERRUPT)));
    }

    #[test]
    fn snapshots_round_trip_and_refuse_other_drive_sets() {
        let mut b = Bench::new([disk(), None, cd(), None]);
        b.outb(0x1F2, 4);
        b.outb(0x1F6, 0xE0);
        b.outb(0x1F7, cmd::READ_SECTORS);
        b.with(|d, cx| d.io_read(0x1F0, 2, cx));
        let snap = b.ide.save();
        let mut other = PiixIde::new([disk(), None, cd(), None]);
        other.restore(&snap).unwrap();
        assert_eq!(other.save(), snap);
        let mut different = PiixIde::new([disk(), None, None, None]);
        assert!(different.restore(&snap).is_err());
    }
}
