//! The PIIX3 IDE controller on the real board, driven the way a guest drives it: port I/O on
//! the legacy task file ports, PCI configuration for the bus-master BAR, descriptor tables in
//! guest RAM, and IRQ 14 through the 8259A pair. Disks are real image files.

use machine::block::{self, BlockDevice, BlockError, CheckReport, Format, Geometry, OpenOptions};
use machine::{Drive, Machine, MachineConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const BSY: u8 = 0x80;
const DRDY: u8 = 0x40;
const DRQ: u8 = 0x08;
const ERR: u8 = 0x01;
/// Where the test puts the bus-master BAR.
const BM: u16 = 0xC000;

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ferrite-ide-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Passes everything to the image and counts the flushes that reach it.
struct CountFlushes {
    inner: Box<dyn BlockDevice>,
    flushes: Arc<AtomicUsize>,
}

impl BlockDevice for CountFlushes {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.inner.write_at(offset, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn format(&self) -> Format {
        self.inner.format()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn geometry(&self) -> Option<Geometry> {
        self.inner.geometry()
    }
    fn check(&mut self) -> Result<CheckReport, BlockError> {
        self.inner.check()
    }
}

fn raw_image(path: &Path, size: u64) -> Box<dyn BlockDevice> {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    block::open(path, &OpenOptions { format: Some(Format::Raw), ..OpenOptions::default() }).unwrap()
}

/// An ISO image of `blocks` 2048-byte blocks: each filled with its number, but block 16,
/// which holds the volume descriptor the format is detected by.
fn iso_image(path: &Path, blocks: u64) -> Box<dyn BlockDevice> {
    let mut data = Vec::new();
    for b in 0..blocks {
        let mut blk = vec![b as u8; 2048];
        if b == 16 {
            blk[..6].copy_from_slice(b"\x01CD001");
        }
        data.extend(blk);
    }
    std::fs::write(path, &data).unwrap();
    let d = block::open(path, &OpenOptions::default()).unwrap();
    assert_eq!(d.format(), Format::Iso);
    d
}

fn machine(ide: [Option<Drive>; 4]) -> Machine {
    Machine::new(MachineConfig { ram_size: 8 << 20, bios: vec![0xF4; 64 * 1024], ide, ..MachineConfig::default() }).unwrap()
}

fn disk(media: Box<dyn BlockDevice>) -> Option<Drive> {
    Some(Drive { media, cdrom: false })
}

fn cdrom(media: Box<dyn BlockDevice>) -> Option<Drive> {
    Some(Drive { media, cdrom: true })
}

fn inb(m: &mut Machine, port: u16) -> u8 {
    m.io_read(port, 1) as u8
}

fn outb(m: &mut Machine, port: u16, v: u8) {
    m.io_write(port, 1, u32::from(v));
}

/// An LBA28 command to the primary channel's `dev` (0 or 1).
fn ata28(m: &mut Machine, dev: u8, c: u8, lba: u32, count: u8) {
    outb(m, 0x1F6, 0xE0 | dev << 4 | (lba >> 24) as u8 & 0xF);
    outb(m, 0x1F2, count);
    outb(m, 0x1F3, lba as u8);
    outb(m, 0x1F4, (lba >> 8) as u8);
    outb(m, 0x1F5, (lba >> 16) as u8);
    outb(m, 0x1F7, c);
}

fn read_words(m: &mut Machine, port: u16, bytes: usize) -> Vec<u8> {
    (0..bytes / 2).flat_map(|_| (m.io_read(port, 2) as u16).to_le_bytes()).collect()
}

fn write_words(m: &mut Machine, port: u16, data: &[u8]) {
    for w in data.chunks(2) {
        m.io_write(port, 2, u32::from(u16::from_le_bytes([w[0], w[1]])));
    }
}

fn pci_write(m: &mut Machine, func: u8, off: u8, v: u32) {
    m.io_write(0xCF8, 4, 0x8000_0000 | (1 << 11) | (u32::from(func) << 8) | u32::from(off));
    m.io_write(0xCFC, 4, v);
}

fn pci_read(m: &mut Machine, func: u8, off: u8) -> u32 {
    m.io_write(0xCF8, 4, 0x8000_0000 | (1 << 11) | (u32::from(func) << 8) | u32::from(off));
    m.io_read(0xCFC, 4)
}

/// Maps the bus-master registers at `BM` and enables I/O decoding and bus mastering.
fn enable_bus_master(m: &mut Machine) {
    pci_write(m, 1, 0x20, u32::from(BM));
    pci_write(m, 1, 0x04, 0x5);
}

/// The 8259A pair initialised as a BIOS does (vectors 0x08 and 0x70), only IRQ 14 open.
fn init_pic(m: &mut Machine) {
    for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01)] {
        outb(m, p, v);
    }
    outb(m, 0x21, 0xFB);
    outb(m, 0xA1, 0xBF);
}

fn eoi(m: &mut Machine) {
    outb(m, 0xA0, 0x20);
    outb(m, 0x20, 0x20);
}

/// Descriptor table entries (address, byte count, last) at `at` in guest memory.
fn put_prd(m: &mut Machine, at: u64, entries: &[(u32, u16, bool)]) {
    for (i, &(addr, count, last)) in entries.iter().enumerate() {
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&addr.to_le_bytes());
        e[4..6].copy_from_slice(&count.to_le_bytes());
        e[7] = if last { 0x80 } else { 0 };
        m.memory_mut().write(at + 8 * i as u64, &e);
    }
}

#[test]
fn identify_and_the_controller_on_the_pci_bus() {
    let dir = TempDir::new("identify");
    let mut m = machine([disk(raw_image(&dir.join("a.img"), 64 << 20)), None, None, None]);
    assert_eq!(pci_read(&mut m, 1, 0), 0x7010_8086, "PIIX3 IDE at 00:01.1");
    assert_eq!(pci_read(&mut m, 1, 8) >> 8, 0x01_01_80);
    assert_eq!(inb(&mut m, 0x1F7), DRDY | 0x10);
    ata28(&mut m, 0, 0xEC, 0, 0);
    assert_eq!(inb(&mut m, 0x1F7) & (BSY | DRQ | ERR), DRQ);
    let id = read_words(&mut m, 0x1F0, 512);
    let w = |i: usize| u16::from_le_bytes([id[2 * i], id[2 * i + 1]]);
    let model: String = (27..47).flat_map(|i| w(i).to_be_bytes()).map(char::from).collect();
    assert_eq!(model.trim_end(), "FERRITE HARDDISK");
    assert_eq!(u32::from(w(60)) | u32::from(w(61)) << 16, 131072, "64 MiB in sectors");
    assert_eq!((w(1), w(3), w(6)), (130, 16, 63));
    assert_eq!(inb(&mut m, 0x1F7) & DRQ, 0);
}

#[test]
fn pio_round_trip_through_a_raw_image_and_flush_reaches_it() {
    let dir = TempDir::new("pio");
    let path = dir.join("disk.img");
    let flushes = Arc::new(AtomicUsize::new(0));
    let media = Box::new(CountFlushes { inner: raw_image(&path, 4 << 20), flushes: flushes.clone() });
    let mut m = machine([disk(media), None, None, None]);
    let data: Vec<u8> = (0..3 * 512).map(|i| (i * 7 % 251) as u8).collect();
    ata28(&mut m, 0, 0x30, 100, 3);
    for s in 0..3 {
        assert_eq!(inb(&mut m, 0x1F7) & DRQ, DRQ, "sector {s} asked for");
        write_words(&mut m, 0x1F0, &data[s * 512..(s + 1) * 512]);
    }
    assert_eq!(inb(&mut m, 0x1F7) & (DRQ | ERR), 0);
    ata28(&mut m, 0, 0xE7, 0, 0);
    assert_eq!(inb(&mut m, 0x1F7) & (BSY | ERR), 0);
    assert_eq!(flushes.load(Ordering::SeqCst), 1, "FLUSH CACHE reached the image");
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[100 * 512..103 * 512], &data[..], "the data is in the file");
    // Read it back with 32-bit PIO.
    ata28(&mut m, 0, 0x20, 100, 3);
    let mut back = Vec::new();
    for _ in 0..3 {
        assert_eq!(inb(&mut m, 0x1F7) & DRQ, DRQ);
        for _ in 0..128 {
            back.extend(m.io_read(0x1F0, 4).to_le_bytes());
        }
    }
    assert_eq!(back, data);
    // Past the end of the disk: ID not found.
    ata28(&mut m, 0, 0x20, 8191, 2);
    assert_eq!(inb(&mut m, 0x1F7) & ERR, ERR);
    assert_eq!(inb(&mut m, 0x1F1), 0x10);
}

#[test]
fn lba48_reaches_past_128_gib() {
    let dir = TempDir::new("lba48");
    let path = dir.join("big.img");
    let sectors = 0x1000_0100u64; // just over the LBA28 limit (sparse)
    let mut m = machine([disk(raw_image(&path, sectors * 512)), None, None, None]);
    let lba = 0x1000_00F0u64;
    let data = vec![0x5Au8; 1024];
    let ext = |m: &mut Machine, c: u8| {
        outb(m, 0x1F6, 0x40);
        for (port, hi, lo) in [(0x1F2, 0, 2), (0x1F3, (lba >> 24) as u8, lba as u8), (0x1F4, (lba >> 32) as u8, (lba >> 8) as u8), (0x1F5, (lba >> 40) as u8, (lba >> 16) as u8)] {
            outb(m, port, hi);
            outb(m, port, lo);
        }
        outb(m, 0x1F7, c);
    };
    ext(&mut m, 0x34); // WRITE SECTORS EXT
    for s in 0..2 {
        assert_eq!(inb(&mut m, 0x1F7) & (DRQ | ERR), DRQ);
        write_words(&mut m, 0x1F0, &data[s * 512..(s + 1) * 512]);
    }
    assert_eq!(inb(&mut m, 0x1F7) & ERR, 0);
    let mut back = vec![0u8; 1024];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&path).unwrap(), &mut back, lba * 512).unwrap();
    assert_eq!(back, data);
    ext(&mut m, 0x24); // READ SECTORS EXT
    assert_eq!(inb(&mut m, 0x1F7) & DRQ, DRQ);
    assert_eq!(read_words(&mut m, 0x1F0, 512), data[..512]);
    // With HOB set the high bytes of the last sector's address read back.
    outb(&mut m, 0x3F6, 0x80);
    assert_eq!(inb(&mut m, 0x1F3), (lba >> 24) as u8);
    outb(&mut m, 0x3F6, 0);
}

#[test]
fn bus_master_dma_read_and_write_with_irq_14() {
    let dir = TempDir::new("dma");
    let path = dir.join("disk.img");
    let image: Vec<u8> = (0..(1u32 << 20)).map(|i| (i / 512) as u8 ^ (i as u8)).collect();
    std::fs::write(&path, &image).unwrap();
    let media = block::open(&path, &OpenOptions::default()).unwrap();
    let mut m = machine([disk(media), None, None, None]);
    enable_bus_master(&mut m);
    init_pic(&mut m);
    // READ DMA of sectors 10-17 (4 KiB) into two regions: 1 KiB at 0x20000, 3 KiB at 0x31000.
    put_prd(&mut m, 0x1_0000, &[(0x2_0000, 1024, false), (0x3_1000, 3072, true)]);
    m.io_write(BM + 4, 4, 0x1_0000);
    outb(&mut m, BM + 2, 0x06); // clear interrupt and error
    outb(&mut m, BM, 0x08); // direction: into memory
    ata28(&mut m, 0, 0xC8, 10, 8);
    assert!(!m.intr_pending(), "nothing moves before the engine starts");
    outb(&mut m, BM, 0x09);
    assert_eq!(inb(&mut m, BM + 2) & 0x07, 0x04, "interrupt set, no longer active");
    assert!(m.intr_pending(), "IRQ 14 reached the PIC");
    assert_eq!(m.intr_ack(), Some(0x76));
    eoi(&mut m);
    outb(&mut m, BM, 0x08);
    assert_eq!(inb(&mut m, 0x1F7) & (BSY | DRQ | ERR), 0);
    let mut a = vec![0u8; 1024];
    let mut b = vec![0u8; 3072];
    m.memory().read(0x2_0000, &mut a);
    m.memory().read(0x3_1000, &mut b);
    assert_eq!(a, image[10 * 512..10 * 512 + 1024]);
    assert_eq!(b, image[10 * 512 + 1024..18 * 512]);

    // WRITE DMA of 2 sectors from guest memory to sectors 1000-1001, and FLUSH CACHE.
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 13) as u8).collect();
    m.memory_mut().write(0x4_0000, &data);
    put_prd(&mut m, 0x1_0000, &[(0x4_0000, 1024, true)]);
    outb(&mut m, BM + 2, 0x06);
    outb(&mut m, BM, 0x00);
    ata28(&mut m, 0, 0xCA, 1000, 2);
    outb(&mut m, BM, 0x01);
    assert_eq!(inb(&mut m, BM + 2) & 0x07, 0x04);
    assert_eq!(inb(&mut m, 0x1F7) & ERR, 0);
    assert_eq!(m.intr_ack(), Some(0x76));
    eoi(&mut m);
    outb(&mut m, BM, 0x00);
    ata28(&mut m, 0, 0xE7, 0, 0);
    assert_eq!(inb(&mut m, 0x1F7) & ERR, 0);
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[1000 * 512..1002 * 512], &data[..]);
}

#[test]
fn dma_started_before_the_command_and_a_larger_table() {
    let dir = TempDir::new("dma-order");
    let mut m = machine([disk(raw_image(&dir.join("d.img"), 1 << 20)), None, None, None]);
    enable_bus_master(&mut m);
    put_prd(&mut m, 0x1_0000, &[(0x2_0000, 0, true)]); // 64 KiB: more than one sector
    m.io_write(BM + 4, 4, 0x1_0000);
    outb(&mut m, BM, 0x09);
    ata28(&mut m, 0, 0xC8, 0, 1);
    assert_eq!(inb(&mut m, BM + 2) & 0x07, 0x05, "interrupt, and still active (table larger than the data)");
    assert_eq!(inb(&mut m, 0x1F7) & (DRQ | ERR), 0);
}

#[test]
fn atapi_inquiry_capacity_and_reads() {
    let dir = TempDir::new("atapi");
    let iso = iso_image(&dir.join("cd.iso"), 40);
    let mut m = machine([None, None, cdrom(iso), None]);
    // Secondary master: the packet signature after reset.
    outb(&mut m, 0x376, 0x04);
    outb(&mut m, 0x376, 0x00);
    outb(&mut m, 0x176, 0xA0);
    assert_eq!((inb(&mut m, 0x174), inb(&mut m, 0x175)), (0x14, 0xEB));
    let packet = |m: &mut Machine, cdb: &[u8], limit: u16| -> Vec<u8> {
        outb(m, 0x171, 0);
        outb(m, 0x174, limit as u8);
        outb(m, 0x175, (limit >> 8) as u8);
        outb(m, 0x177, 0xA0);
        assert_eq!(inb(m, 0x177) & (DRQ | BSY), DRQ);
        assert_eq!(inb(m, 0x172) & 3, 1, "C/D: command packet wanted");
        let mut p = [0u8; 12];
        p[..cdb.len()].copy_from_slice(cdb);
        write_words(m, 0x170, &p);
        let mut out = Vec::new();
        while inb(m, 0x177) & DRQ != 0 {
            let n = usize::from(inb(m, 0x174)) | usize::from(inb(m, 0x175)) << 8;
            out.extend(read_words(m, 0x170, n));
        }
        assert_eq!(inb(m, 0x172) & 3, 3, "command complete");
        out
    };
    let inq = packet(&mut m, &[0x12, 0, 0, 0, 36], 0xFFFE);
    assert_eq!(inq[0], 5, "CD/DVD device");
    assert_eq!(&inq[16..31], b"FERRITE DVD-ROM");
    let cap = packet(&mut m, &[0x25], 0xFFFE);
    assert_eq!(cap, [0, 0, 0, 39, 0, 0, 8, 0]);
    let data = packet(&mut m, &[0x28, 0, 0, 0, 0, 5, 0, 0, 3], 4096);
    assert_eq!(data.len(), 3 * 2048);
    assert!(data[..2048].iter().all(|&b| b == 5) && data[4096..].iter().all(|&b| b == 7));
    let vd = packet(&mut m, &[0x28, 0, 0, 0, 0, 16, 0, 0, 1], 0xFFFE);
    assert_eq!(&vd[1..6], b"CD001");

    // The same read by DMA on the secondary channel's bus master.
    enable_bus_master(&mut m);
    put_prd(&mut m, 0x1_0000, &[(0x5_0000, 3 * 2048, true)]);
    m.io_write(BM + 8 + 4, 4, 0x1_0000);
    outb(&mut m, BM + 8, 0x08);
    outb(&mut m, 0x171, 1); // DMA
    outb(&mut m, 0x177, 0xA0);
    write_words(&mut m, 0x170, &[0x28, 0, 0, 0, 0, 5, 0, 0, 3, 0, 0, 0]);
    outb(&mut m, BM + 8, 0x09);
    assert_eq!(inb(&mut m, BM + 8 + 2) & 0x07, 0x04);
    assert_eq!(inb(&mut m, 0x177) & (DRQ | ERR), 0);
    let mut mem = vec![0u8; 3 * 2048];
    m.memory().read(0x5_0000, &mut mem);
    assert_eq!(mem, data);
}

#[test]
fn absent_drives_and_empty_channels() {
    let dir = TempDir::new("absent");
    let mut m = machine([disk(raw_image(&dir.join("d.img"), 1 << 20)), None, None, None]);
    // Primary slave: absent next to a present master.
    outb(&mut m, 0x1F6, 0xB0);
    assert_eq!(inb(&mut m, 0x1F7), 0);
    outb(&mut m, 0x1F2, 0x55);
    assert_eq!(inb(&mut m, 0x1F2), 0x55, "the registers latch");
    outb(&mut m, 0x1F7, 0xEC);
    assert_eq!(inb(&mut m, 0x1F7), 0, "no answer to IDENTIFY");
    // Secondary channel: nothing at all.
    for p in 0x171..=0x177 {
        assert_eq!(inb(&mut m, p), 0);
    }
    // Without drives at all the controller is still there.
    let mut bare = machine([None, None, None, None]);
    assert_eq!(pci_read(&mut bare, 1, 0), 0x7010_8086);
    assert_eq!(inb(&mut bare, 0x1F7), 0);
}

#[test]
fn pio_interrupts_reach_the_pic_and_nien_holds_them() {
    let dir = TempDir::new("irq");
    let mut m = machine([disk(raw_image(&dir.join("d.img"), 1 << 20)), None, None, None]);
    init_pic(&mut m);
    ata28(&mut m, 0, 0x20, 0, 2);
    assert!(m.intr_pending());
    assert_eq!(m.intr_ack(), Some(0x76));
    eoi(&mut m);
    inb(&mut m, 0x1F7);
    read_words(&mut m, 0x1F0, 512);
    assert!(m.intr_pending(), "the second sector's interrupt");
    assert_eq!(m.intr_ack(), Some(0x76));
    eoi(&mut m);
    inb(&mut m, 0x1F7);
    read_words(&mut m, 0x1F0, 512);
    assert!(!m.intr_pending(), "no interrupt after the last sector of a read");
    outb(&mut m, 0x3F6, 0x02);
    ata28(&mut m, 0, 0xE7, 0, 0);
    assert!(!m.intr_pending(), "nIEN");
    outb(&mut m, 0x3F6, 0x00);
    inb(&mut m, 0x1F7);
}
