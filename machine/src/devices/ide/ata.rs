//! One drive on an IDE channel as the host sees it through the task file (ATA/ATAPI-6,
//! T13/1410D): the registers and their LBA48 "previous content" copies, status and error
//! semantics, soft reset and device signatures, the PIO data-in and data-out protocols and the
//! ATA command set of a hard disk. Packet commands of a CD-ROM are in `atapi.rs`; the bus-master
//! side of DMA commands is in `bmdma.rs`. Commands complete at once (no seek or rotation
//! delays): a guest never sees BSY, only the interrupt and status of the finished command.

use super::atapi::Sense;
use crate::block::{BlockDevice, Geometry, SECTOR_SIZE};
use serde::{Deserialize, Serialize};

/// Status register bits (ATA/ATAPI-6 section 7.15.6).
pub const BSY: u8 = 0x80;
pub const DRDY: u8 = 0x40;
pub const DF: u8 = 0x20;
/// Device seek complete (obsolete since ATA-4, still set by drives and expected by old code).
pub const DSC: u8 = 0x10;
pub const DRQ: u8 = 0x08;
pub const ERR: u8 = 0x01;

/// Error register bits.
pub const ABRT: u8 = 0x04;
pub const IDNF: u8 = 0x10;
pub const UNC: u8 = 0x40;

/// Sectors per DRQ block that READ/WRITE MULTIPLE may use (IDENTIFY word 47).
pub const MAX_MULTIPLE: u8 = 16;
/// The largest LBA28 capacity (IDENTIFY words 60-61 saturate here).
const LBA28_LIMIT: u64 = 0x0FFF_FFFF;
/// Sectors moved per chunk when a DMA command is served.
const SECTOR: usize = SECTOR_SIZE as usize;

/// ATA commands (ATA/ATAPI-6 chapter 8, plus the obsolete forms BIOSes still send).
pub mod cmd {
    pub const NOP: u8 = 0x00;
    pub const DEVICE_RESET: u8 = 0x08;
    pub const RECALIBRATE: u8 = 0x10;
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_NORETRY: u8 = 0x21;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const READ_DMA_EXT: u8 = 0x25;
    pub const READ_MULTIPLE_EXT: u8 = 0x29;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_NORETRY: u8 = 0x31;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const WRITE_DMA_EXT: u8 = 0x35;
    pub const WRITE_MULTIPLE_EXT: u8 = 0x39;
    pub const READ_VERIFY: u8 = 0x40;
    pub const READ_VERIFY_NORETRY: u8 = 0x41;
    pub const READ_VERIFY_EXT: u8 = 0x42;
    pub const SEEK: u8 = 0x70;
    pub const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
    pub const INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
    pub const STANDBY_IMMEDIATE_OLD: u8 = 0x94;
    pub const IDLE_IMMEDIATE_OLD: u8 = 0x95;
    pub const STANDBY_OLD: u8 = 0x96;
    pub const IDLE_OLD: u8 = 0x97;
    pub const CHECK_POWER_MODE_OLD: u8 = 0x98;
    pub const SLEEP_OLD: u8 = 0x99;
    pub const PACKET: u8 = 0xA0;
    pub const IDENTIFY_PACKET_DEVICE: u8 = 0xA1;
    pub const READ_MULTIPLE: u8 = 0xC4;
    pub const WRITE_MULTIPLE: u8 = 0xC5;
    pub const SET_MULTIPLE_MODE: u8 = 0xC6;
    pub const READ_DMA: u8 = 0xC8;
    pub const READ_DMA_NORETRY: u8 = 0xC9;
    pub const WRITE_DMA: u8 = 0xCA;
    pub const WRITE_DMA_NORETRY: u8 = 0xCB;
    pub const STANDBY_IMMEDIATE: u8 = 0xE0;
    pub const IDLE_IMMEDIATE: u8 = 0xE1;
    pub const STANDBY: u8 = 0xE2;
    pub const IDLE: u8 = 0xE3;
    pub const CHECK_POWER_MODE: u8 = 0xE5;
    pub const SLEEP: u8 = 0xE6;
    pub const FLUSH_CACHE: u8 = 0xE7;
    pub const FLUSH_CACHE_EXT: u8 = 0xEA;
    pub const IDENTIFY_DEVICE: u8 = 0xEC;
    pub const SET_FEATURES: u8 = 0xEF;
}

/// What sits at one position of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Absent,
    Disk,
    Cdrom,
}

/// The command block registers as one device holds them. Every write goes to both devices of
/// a channel; the `hob_` fields are the previous contents, the high bytes of LBA48 commands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    pub feature: u8,
    pub nsector: u8,
    pub lbal: u8,
    pub lbam: u8,
    pub lbah: u8,
    pub hob_feature: u8,
    pub hob_nsector: u8,
    pub hob_lbal: u8,
    pub hob_lbam: u8,
    pub hob_lbah: u8,
    /// Device/head: bit 6 LBA, bit 4 DEV, bits 3-0 head or LBA 27-24 (bits 7 and 5 read 1).
    pub select: u8,
}

/// The data transfer a command has under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Xfer {
    None,
    /// PIO data in that ends with the buffer (IDENTIFY).
    Buffer,
    /// READ SECTORS/MULTIPLE: `left` sectors from `lba` not yet in the buffer, DRQ blocks of
    /// `block` sectors.
    AtaRead { lba: u64, left: u32, block: u32, ext: bool },
    /// WRITE SECTORS/MULTIPLE: the buffer goes to `lba`; `left` sectors still to come,
    /// including the block in the buffer.
    AtaWrite { lba: u64, left: u32, block: u32, ext: bool },
    /// READ/WRITE DMA: waiting for (or being served by) the bus master.
    AtaDma { lba: u64, left: u32, to_memory: bool, ext: bool },
    /// PACKET: receiving the 12-byte command packet; then data with DMA or by PIO in chunks
    /// of at most `limit` bytes (the byte count limit).
    Packet { dma: bool, limit: u16 },
    /// A packet command's data in: `remaining` bytes still to go to the host, taken from the
    /// buffer and then from `blocks` more 2048-byte blocks of the disc from `lba`.
    AtapiIn { lba: u64, blocks: u32, remaining: u64, limit: u16, dma: bool },
}

/// A drive's guest-visible state: plain data, saved and restored as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveState {
    pub tf: TaskFile,
    pub status: u8,
    pub error: u8,
    /// INTRQ pending (cleared by reading the status register or writing a command).
    pub irq: bool,
    /// The drive raised INTRQ since the channel last looked (for the bus master's interrupt bit).
    pub irq_edge: bool,
    pub xfer: Xfer,
    /// PIO and ATAPI data; `pos` is the next byte, `drq_left` what the current DRQ block has left.
    pub buf: Vec<u8>,
    pub pos: usize,
    pub drq_left: usize,
    /// Sectors per block of READ/WRITE MULTIPLE; 0 when SET MULTIPLE MODE disabled it.
    pub multiple: u8,
    /// The CHS translation INITIALIZE DEVICE PARAMETERS set: heads and sectors per track.
    pub heads: u8,
    pub spt: u8,
    /// The transfer mode SET FEATURES selected (its sector count value: 0x20 | n for
    /// multiword DMA n, 0x40 | n for Ultra DMA n, below 0x10 for PIO).
    pub xfer_mode: u8,
    pub write_cache: bool,
    pub standby: bool,
    // Packet devices.
    pub sense: Sense,
    pub tray_open: bool,
    pub locked: bool,
    /// The media event GET EVENT STATUS NOTIFICATION reports next (MMC-5 table 6-35).
    pub media_event: u8,
    /// A medium was loaded: the next command (but INQUIRY, REQUEST SENSE, GET CONFIGURATION,
    /// GET EVENT STATUS NOTIFICATION) gets UNIT ATTENTION, MEDIUM MAY HAVE CHANGED.
    pub unit_attention: bool,
}

pub struct Drive {
    pub kind: Kind,
    pub(super) media: Option<Box<dyn BlockDevice>>,
    /// The default geometry (IDENTIFY words 1, 3, 6).
    pub(super) chs: Geometry,
    pub(super) serial: String,
    /// Position on the controller: 0-3, primary master to secondary slave.
    pub(super) index: usize,
    pub s: DriveState,
    /// A write to read-only media was reported already (one log line per drive).
    warned_read_only: bool,
}

impl Drive {
    pub fn absent() -> Drive {
        Drive::new(Kind::Absent, None, 0)
    }

    /// A drive with `media` at channel position `index` (0-3: primary master .. secondary
    /// slave), which also numbers its serial.
    pub fn new(kind: Kind, mut media: Option<Box<dyn BlockDevice>>, index: usize) -> Drive {
        let chs = match (&mut media, kind) {
            (Some(m), Kind::Disk) => default_geometry(m.as_mut()),
            _ => Geometry { cylinders: 0, heads: 0, sectors: 0 },
        };
        let mut d = Drive {
            kind,
            media,
            chs,
            serial: format!("FR{:05}", index + 1),
            index,
            s: DriveState::power_on(chs),
            warned_read_only: false,
        };
        d.set_signature();
        d
    }

    pub fn present(&self) -> bool {
        self.kind != Kind::Absent
    }

    /// Back to the power-on state (the media stay; a CD-ROM's tray closes).
    pub fn reset(&mut self) {
        self.s = DriveState::power_on(self.chs);
        self.set_signature();
    }

    /// The signature that tells the host what answered (ATA/ATAPI-6 section 9.12): 0/0 a
    /// disk, 0x14/0xEB a packet device; an absent device leaves the bus floating (0xFF).
    pub fn set_signature(&mut self) {
        let t = &mut self.s.tf;
        t.select &= 0xF0;
        t.nsector = 1;
        t.lbal = 1;
        (t.lbam, t.lbah) = match self.kind {
            Kind::Disk => (0, 0),
            Kind::Cdrom => (0x14, 0xEB),
            Kind::Absent => (0xFF, 0xFF),
        };
        if self.kind == Kind::Cdrom {
            // The ATAPI device's power-on status: DRDY stays clear until a command.
            self.s.status = 0;
        } else {
            self.s.status = DRDY | DSC;
        }
        self.s.error = 1;
    }

    /// SRST set: the device is busy resetting; whatever it was doing is abandoned.
    pub fn srst_begin(&mut self) {
        self.s.status = BSY | DSC;
        self.s.error = 1;
        self.s.irq = false;
        self.end_transfer();
    }

    /// SRST cleared: the reset completes with the signature in the task file.
    pub fn srst_end(&mut self) {
        self.end_transfer();
        self.set_signature();
    }

    pub(super) fn raise_irq(&mut self) {
        self.s.irq = true;
        self.s.irq_edge = true;
    }

    /// A task file register (1-7) as the host reads it. `hob` selects the previous contents.
    pub fn read_reg(&mut self, reg: u8, hob: bool) -> u8 {
        let t = &self.s.tf;
        match (reg, hob) {
            (1, false) => self.s.error,
            (1, true) => t.hob_feature,
            (2, false) => t.nsector,
            (2, true) => t.hob_nsector,
            (3, false) => t.lbal,
            (3, true) => t.hob_lbal,
            (4, false) => t.lbam,
            (4, true) => t.hob_lbam,
            (5, false) => t.lbah,
            (5, true) => t.hob_lbah,
            (6, _) => t.select,
            _ => {
                self.s.irq = false;
                self.s.status
            }
        }
    }

    /// A write to task file register 1-6 (both devices of a channel take it).
    pub fn write_reg(&mut self, reg: u8, v: u8) {
        let t = &mut self.s.tf;
        match reg {
            1 => (t.hob_feature, t.feature) = (t.feature, v),
            2 => (t.hob_nsector, t.nsector) = (t.nsector, v),
            3 => (t.hob_lbal, t.lbal) = (t.lbal, v),
            4 => (t.hob_lbam, t.lbam) = (t.lbam, v),
            5 => (t.hob_lbah, t.lbah) = (t.lbah, v),
            6 => t.select = v | 0xA0,
            _ => {}
        }
    }

    // ---- completion ------------------------------------------------------------------------

    pub(super) fn end_transfer(&mut self) {
        self.s.xfer = Xfer::None;
        self.s.buf.clear();
        self.s.pos = 0;
        self.s.drq_left = 0;
        self.s.status &= !DRQ;
    }

    /// The command finished without error.
    pub(super) fn complete(&mut self, irq: bool) {
        self.end_transfer();
        self.s.error = 0;
        self.s.status = DRDY | DSC;
        if irq {
            self.raise_irq();
        }
    }

    /// The command failed with these error bits; the interrupt reports it.
    pub(super) fn fail(&mut self, error: u8) {
        self.end_transfer();
        self.s.error = error;
        self.s.status = DRDY | ERR;
        self.raise_irq();
    }

    pub(super) fn abort(&mut self) {
        self.fail(ABRT);
    }

    /// Starts a PIO DRQ block of `len` bytes from the buffer's start.
    fn drq_block(&mut self, len: usize, irq: bool) {
        self.s.pos = 0;
        self.s.drq_left = len;
        self.s.status = DRDY | DSC | DRQ;
        if irq {
            self.raise_irq();
        }
    }

    // ---- the data port ---------------------------------------------------------------------

    /// A read of the data register (16 bits; 32-bit accesses take two words at once).
    pub fn data_read(&mut self, size: u8) -> u32 {
        let reading = matches!(self.s.xfer, Xfer::Buffer | Xfer::AtaRead { .. } | Xfer::AtapiIn { dma: false, .. });
        if self.s.status & DRQ == 0 || !reading || self.s.drq_left == 0 {
            return 0;
        }
        let mut v = 0u32;
        for k in 0..u32::from(size.min(4)) {
            if self.s.drq_left == 0 {
                break;
            }
            let b = self.s.buf.get(self.s.pos).copied().unwrap_or(0);
            v |= u32::from(b) << (8 * k);
            self.s.pos += 1;
            self.s.drq_left -= 1;
            if let Xfer::AtapiIn { remaining, .. } = &mut self.s.xfer {
                *remaining = remaining.saturating_sub(1);
            }
        }
        if self.s.drq_left == 0 {
            self.data_in_block_done();
        }
        v
    }

    /// A write of the data register.
    pub fn data_write(&mut self, size: u8, v: u32) {
        let writing = matches!(self.s.xfer, Xfer::AtaWrite { .. } | Xfer::Packet { .. });
        if self.s.status & DRQ == 0 || !writing || self.s.drq_left == 0 {
            return;
        }
        for k in 0..usize::from(size.min(4)) {
            if self.s.drq_left == 0 {
                break;
            }
            if let Some(b) = self.s.buf.get_mut(self.s.pos) {
                *b = (v >> (8 * k)) as u8;
            }
            self.s.pos += 1;
            self.s.drq_left -= 1;
        }
        if self.s.drq_left == 0 {
            match self.s.xfer {
                Xfer::AtaWrite { .. } => self.write_block_done(),
                Xfer::Packet { .. } => self.packet_received(),
                _ => {}
            }
        }
    }

    fn data_in_block_done(&mut self) {
        match self.s.xfer {
            Xfer::Buffer => self.complete(false),
            Xfer::AtaRead { .. } => self.next_read_block(),
            Xfer::AtapiIn { .. } => self.next_atapi_chunk(),
            _ => {}
        }
    }

    // ---- commands --------------------------------------------------------------------------

    /// Executes a command written to the command register. The channel has checked that the
    /// drive is present and not busy.
    pub fn command(&mut self, c: u8) {
        self.s.irq = false;
        self.end_transfer();
        if self.kind == Kind::Cdrom {
            return self.packet_device_command(c);
        }
        use cmd::*;
        match c {
            IDENTIFY_DEVICE => {
                self.s.buf = self.identify().to_vec();
                self.s.xfer = Xfer::Buffer;
                self.drq_block(SECTOR, true);
            }
            READ_SECTORS | READ_SECTORS_NORETRY => self.read_pio(false, false),
            READ_SECTORS_EXT => self.read_pio(true, false),
            READ_MULTIPLE => self.read_pio(false, true),
            READ_MULTIPLE_EXT => self.read_pio(true, true),
            WRITE_SECTORS | WRITE_SECTORS_NORETRY => self.write_pio(false, false),
            WRITE_SECTORS_EXT => self.write_pio(true, false),
            WRITE_MULTIPLE => self.write_pio(false, true),
            WRITE_MULTIPLE_EXT => self.write_pio(true, true),
            READ_DMA | READ_DMA_NORETRY => self.start_dma(false, true),
            READ_DMA_EXT => self.start_dma(true, true),
            WRITE_DMA | WRITE_DMA_NORETRY => self.start_dma(false, false),
            WRITE_DMA_EXT => self.start_dma(true, false),
            READ_VERIFY | READ_VERIFY_NORETRY | READ_VERIFY_EXT => {
                let ext = c == READ_VERIFY_EXT;
                match self.checked_target(ext) {
                    Some((lba, n)) => {
                        self.set_address(lba + u64::from(n) - 1, ext);
                        self.complete(true)
                    }
                    None => self.fail(IDNF),
                }
            }
            0x70..=0x7F => match self.target(false) {
                Some((lba, _)) if lba < self.sectors() => self.complete(true),
                _ => self.fail(IDNF),
            },
            0x10..=0x1F => self.complete(true),
            FLUSH_CACHE | FLUSH_CACHE_EXT => self.flush_cache(),
            SET_FEATURES => self.set_features(),
            SET_MULTIPLE_MODE => {
                let n = self.s.tf.nsector;
                if n <= MAX_MULTIPLE && (n == 0 || n.is_power_of_two()) {
                    self.s.multiple = n;
                    self.complete(true);
                } else {
                    self.abort();
                }
            }
            INITIALIZE_DEVICE_PARAMETERS => {
                if self.s.tf.nsector == 0 {
                    return self.abort();
                }
                self.s.spt = self.s.tf.nsector;
                self.s.heads = (self.s.tf.select & 0xF) + 1;
                self.complete(true);
            }
            CHECK_POWER_MODE | CHECK_POWER_MODE_OLD => self.check_power_mode(),
            IDLE | IDLE_IMMEDIATE | IDLE_OLD | IDLE_IMMEDIATE_OLD => {
                self.s.standby = false;
                self.complete(true);
            }
            STANDBY | STANDBY_IMMEDIATE | STANDBY_OLD | STANDBY_IMMEDIATE_OLD | SLEEP | SLEEP_OLD => {
                self.s.standby = true;
                self.complete(true);
            }
            EXECUTE_DEVICE_DIAGNOSTIC => self.diagnostic_done(),
            // Abort with the signature, so the host knows to try IDENTIFY DEVICE.
            IDENTIFY_PACKET_DEVICE | PACKET | DEVICE_RESET => self.abort(),
            _ => {
                tracing::debug!("IDE: unsupported ATA command {c:#04x}: aborted");
                self.abort();
            }
        }
    }

    /// EXECUTE DEVICE DIAGNOSTIC completed for this device (both devices of a channel run it):
    /// the signature, and "passed" in the error register.
    pub fn diagnostic_done(&mut self) {
        self.end_transfer();
        self.set_signature();
        if self.kind == Kind::Cdrom {
            self.s.status = 0;
        }
        self.raise_irq();
    }

    fn check_power_mode(&mut self) {
        self.s.tf.nsector = if self.s.standby { 0x00 } else { 0xFF };
        self.complete(true);
    }

    fn set_features(&mut self) {
        let value = self.s.tf.nsector;
        match self.s.tf.feature {
            0x03 => {
                let mode = value & 7;
                let ok = match value >> 3 {
                    0 | 1 => mode <= 4,
                    4 => mode <= 2,
                    8 => mode <= 5,
                    _ => false,
                };
                if !ok {
                    return self.abort();
                }
                self.s.xfer_mode = value;
            }
            0x02 => self.s.write_cache = true,
            0x82 => {
                if !self.flush_media() {
                    return self.abort();
                }
                self.s.write_cache = false;
            }
            // Read look-ahead on and off, reverting to defaults on and off: accepted.
            0xAA | 0x55 | 0x66 | 0xCC => {}
            f => {
                tracing::debug!("IDE: SET FEATURES subcommand {f:#04x} unsupported: aborted");
                return self.abort();
            }
        }
        self.complete(true);
    }

    fn flush_cache(&mut self) {
        if self.flush_media() {
            self.complete(true);
        } else {
            self.abort();
        }
    }

    /// Makes every completed write durable (the block layer fsyncs). False on failure.
    pub(super) fn flush_media(&mut self) -> bool {
        match self.media.as_mut().map(|m| m.flush()) {
            Some(Err(e)) => {
                tracing::warn!("IDE: flush failed: {e}");
                false
            }
            _ => true,
        }
    }

    // ---- sector addressing -----------------------------------------------------------------

    pub fn sectors(&self) -> u64 {
        self.media.as_ref().map_or(0, |m| m.sector_count())
    }

    /// The first sector and count of a sector command, from the task file: LBA48 for the EXT
    /// commands, else LBA28 or CHS as the LBA bit says. `None` for a CHS address that does not
    /// exist in the current translation.
    pub fn target(&self, ext: bool) -> Option<(u64, u32)> {
        let t = &self.s.tf;
        if ext {
            let lba = u64::from_le_bytes([t.lbal, t.lbam, t.lbah, t.hob_lbal, t.hob_lbam, t.hob_lbah, 0, 0]);
            let n = u32::from(t.hob_nsector) << 8 | u32::from(t.nsector);
            return Some((lba, if n == 0 { 65536 } else { n }));
        }
        let n = if t.nsector == 0 { 256 } else { u32::from(t.nsector) };
        if t.select & 0x40 != 0 {
            let lba = u64::from_le_bytes([t.lbal, t.lbam, t.lbah, t.select & 0xF, 0, 0, 0, 0]);
            return Some((lba, n));
        }
        let (heads, spt) = (u64::from(self.s.heads), u64::from(self.s.spt));
        let (cyl, head, sector) = (u64::from(t.lbah) << 8 | u64::from(t.lbam), u64::from(t.select & 0xF), u64::from(t.lbal));
        if sector == 0 || sector > spt || head >= heads {
            return None;
        }
        Some(((cyl * heads + head) * spt + sector - 1, n))
    }

    /// `target`, refused when any sector of it lies past the end of the disk.
    fn checked_target(&self, ext: bool) -> Option<(u64, u32)> {
        self.target(ext).filter(|&(lba, n)| lba.checked_add(u64::from(n)).is_some_and(|end| end <= self.sectors()))
    }

    /// Puts a sector address back into the task file in the form the command used (the
    /// failing sector after an error, the last one after success).
    fn set_address(&mut self, lba: u64, ext: bool) {
        let t = &mut self.s.tf;
        let b = lba.to_le_bytes();
        if ext {
            (t.lbal, t.lbam, t.lbah, t.hob_lbal, t.hob_lbam, t.hob_lbah) = (b[0], b[1], b[2], b[3], b[4], b[5]);
        } else if t.select & 0x40 != 0 {
            (t.lbal, t.lbam, t.lbah) = (b[0], b[1], b[2]);
            t.select = (t.select & 0xF0) | (b[3] & 0xF);
        } else if self.s.heads != 0 && self.s.spt != 0 {
            let (heads, spt) = (u64::from(self.s.heads), u64::from(self.s.spt));
            let cyl = lba / (heads * spt);
            let rest = lba % (heads * spt);
            t.lbah = (cyl >> 8) as u8;
            t.lbam = cyl as u8;
            t.select = (t.select & 0xF0) | (rest / spt) as u8 & 0xF;
            t.lbal = (rest % spt + 1) as u8;
        }
    }

    fn set_count(&mut self, left: u32, ext: bool) {
        self.s.tf.nsector = left as u8;
        if ext {
            self.s.tf.hob_nsector = (left >> 8) as u8;
        }
    }

    /// Refuses writes to read-only media before any data moves. True when refused.
    fn refuse_read_only(&mut self) -> bool {
        let Some(m) = self.media.as_ref() else { return false };
        if !m.is_read_only() {
            return false;
        }
        if !self.warned_read_only {
            tracing::warn!("IDE: {}: the guest wrote to a read-only image; its writes fail", m.path().display());
            self.warned_read_only = true;
        }
        self.abort();
        true
    }

    // ---- PIO -------------------------------------------------------------------------------

    fn read_pio(&mut self, ext: bool, multiple: bool) {
        let block = if multiple { u32::from(self.s.multiple) } else { 1 };
        if block == 0 {
            return self.abort();
        }
        let Some((lba, left)) = self.checked_target(ext) else { return self.fail(IDNF) };
        self.s.standby = false;
        self.s.xfer = Xfer::AtaRead { lba, left, block, ext };
        self.next_read_block();
    }

    /// Loads the next DRQ block of a PIO read and announces it, or ends the command (with no
    /// interrupt: the last block's was the command's).
    fn next_read_block(&mut self) {
        let Xfer::AtaRead { lba, left, block, ext } = self.s.xfer else { return };
        if left == 0 {
            self.set_address(lba - 1, ext);
            self.set_count(0, ext);
            return self.complete(false);
        }
        let n = left.min(block);
        let mut buf = std::mem::take(&mut self.s.buf);
        buf.resize(n as usize * SECTOR, 0);
        let r = self.media.as_mut().map(|m| m.read_sectors(lba, &mut buf));
        self.s.buf = buf;
        if let Some(Err(e)) = r {
            tracing::warn!("IDE: read error: {e}");
            self.set_address(lba, ext);
            return self.fail(UNC);
        }
        self.s.xfer = Xfer::AtaRead { lba: lba + u64::from(n), left: left - n, block, ext };
        self.set_count(left - n, ext);
        self.drq_block(n as usize * SECTOR, true);
    }

    fn write_pio(&mut self, ext: bool, multiple: bool) {
        let block = if multiple { u32::from(self.s.multiple) } else { 1 };
        if block == 0 {
            return self.abort();
        }
        let Some((lba, left)) = self.checked_target(ext) else { return self.fail(IDNF) };
        if self.refuse_read_only() {
            return;
        }
        self.s.standby = false;
        self.s.xfer = Xfer::AtaWrite { lba, left, block, ext };
        let n = left.min(block) as usize;
        self.s.buf = vec![0; n * SECTOR];
        // The first block is asked for without an interrupt (ATA/ATAPI-6 9.8, PIO data-out).
        self.drq_block(n * SECTOR, false);
    }

    /// A whole DRQ block of a PIO write arrived: writes it, then asks for the next one or
    /// completes the command. Each block's write is acknowledged by an interrupt.
    fn write_block_done(&mut self) {
        let Xfer::AtaWrite { lba, left, block, ext } = self.s.xfer else { return };
        let n = self.s.buf.len() / SECTOR;
        let buf = std::mem::take(&mut self.s.buf);
        let r = self.media.as_mut().map(|m| m.write_sectors(lba, &buf));
        if let Some(Err(e)) = r {
            tracing::warn!("IDE: write error: {e}");
            self.set_address(lba, ext);
            return self.fail(ABRT);
        }
        let left = left - n as u32;
        self.set_count(left, ext);
        if left == 0 {
            if !self.s.write_cache && !self.flush_media() {
                return self.fail(ABRT);
            }
            self.set_address(lba + n as u64 - 1, ext);
            return self.complete(true);
        }
        let next = left.min(block) as usize;
        self.s.xfer = Xfer::AtaWrite { lba: lba + n as u64, left, block, ext };
        self.s.buf = buf;
        self.s.buf.resize(next * SECTOR, 0);
        self.drq_block(next * SECTOR, true);
    }

    // ---- DMA -------------------------------------------------------------------------------

    fn start_dma(&mut self, ext: bool, to_memory: bool) {
        let Some((lba, left)) = self.checked_target(ext) else { return self.fail(IDNF) };
        if !to_memory && self.refuse_read_only() {
            return;
        }
        self.s.standby = false;
        self.s.xfer = Xfer::AtaDma { lba, left, to_memory, ext };
        // DRQ stands for "data wanted" until the bus master has moved everything.
        self.s.status = DRDY | DSC | DRQ;
    }

    /// The DMA transfer the drive waits for: its direction (true: into guest memory) and the
    /// bytes it still has to move.
    pub fn dma_request(&self) -> Option<(bool, u64)> {
        match self.s.xfer {
            Xfer::AtaDma { left, to_memory, .. } => Some((to_memory, u64::from(left) * SECTOR_SIZE)),
            Xfer::AtapiIn { remaining, dma: true, .. } => Some((true, remaining)),
            _ => None,
        }
    }

    /// Produces the next `out.len()` bytes of a device-to-memory transfer (a whole number of
    /// sectors for a disk). False after a media error, which already failed the command.
    pub fn dma_in(&mut self, out: &mut [u8]) -> bool {
        match self.s.xfer {
            Xfer::AtaDma { lba, left, to_memory: true, ext } => {
                let n = (out.len() / SECTOR) as u32;
                let r = self.media.as_mut().map(|m| m.read_sectors(lba, &mut out[..n as usize * SECTOR]));
                if let Some(Err(e)) = r {
                    tracing::warn!("IDE: read error: {e}");
                    self.set_address(lba, ext);
                    self.fail(UNC);
                    return false;
                }
                self.s.xfer = Xfer::AtaDma { lba: lba + u64::from(n), left: left - n, to_memory: true, ext };
                true
            }
            Xfer::AtapiIn { dma: true, .. } => self.atapi_dma_in(out),
            _ => false,
        }
    }

    /// Takes the next `data.len()` bytes (whole sectors) of a memory-to-device transfer.
    pub fn dma_out(&mut self, data: &[u8]) -> bool {
        let Xfer::AtaDma { lba, left, to_memory: false, ext } = self.s.xfer else { return false };
        let n = (data.len() / SECTOR) as u32;
        let r = self.media.as_mut().map(|m| m.write_sectors(lba, &data[..n as usize * SECTOR]));
        if let Some(Err(e)) = r {
            tracing::warn!("IDE: write error: {e}");
            self.set_address(lba, ext);
            self.fail(ABRT);
            return false;
        }
        self.s.xfer = Xfer::AtaDma { lba: lba + u64::from(n), left: left - n, to_memory: false, ext };
        true
    }

    /// Everything moved: the command completes with its interrupt.
    pub fn dma_complete(&mut self) {
        match self.s.xfer {
            Xfer::AtaDma { lba, to_memory, ext, .. } => {
                if !to_memory && !self.s.write_cache && !self.flush_media() {
                    return self.fail(ABRT);
                }
                self.set_address(lba.saturating_sub(1), ext);
                self.set_count(0, ext);
                self.complete(true);
            }
            Xfer::AtapiIn { .. } => self.atapi_ok(),
            _ => {}
        }
    }

    /// The bus master could not take part (bus mastering disabled in PCI command register):
    /// the command fails.
    pub fn dma_abort(&mut self) {
        if self.kind == Kind::Cdrom {
            self.atapi_error(Sense::ABORTED);
        } else {
            self.abort();
        }
    }

    /// The bus master's table described less memory than the command moves: the transfer
    /// stops without an interrupt, as on the PIIX (the host sees it time out).
    pub fn dma_short(&mut self) {
        self.end_transfer();
        self.s.status = DRDY | DSC;
    }

    // ---- IDENTIFY DEVICE -------------------------------------------------------------------

    /// The 512 bytes of IDENTIFY DEVICE (ATA/ATAPI-6 table 27) for a hard disk.
    pub fn identify(&self) -> [u8; 512] {
        let mut w = [0u16; 256];
        let total = self.sectors();
        let g = self.chs;
        w[0] = 0x0040; // fixed device, not removable
        w[1] = g.cylinders;
        w[3] = u16::from(g.heads);
        w[6] = u16::from(g.sectors);
        put_string(&mut w[10..20], &self.serial);
        w[20] = 3;
        w[21] = 512;
        w[22] = 4;
        put_string(&mut w[23..27], FIRMWARE);
        put_string(&mut w[27..47], DISK_MODEL);
        w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
        w[48] = 1;
        w[49] = (1 << 11) | (1 << 10) | (1 << 9) | (1 << 8); // IORDY, IORDY can be disabled, LBA, DMA
        w[50] = 0x4000;
        w[51] = 0x200;
        w[52] = 0x200;
        w[53] = 7; // words 54-58, 64-70 and 88 are valid
        let (heads, spt) = (u64::from(self.s.heads), u64::from(self.s.spt));
        if heads != 0 && spt != 0 {
            let cyl = if (self.s.heads, self.s.spt) == (g.heads, g.sectors) { u64::from(g.cylinders) } else { (total / (heads * spt)).min(65535) };
            let capacity = cyl * heads * spt;
            w[54] = cyl as u16;
            w[55] = heads as u16;
            w[56] = spt as u16;
            w[57] = capacity as u16;
            w[58] = (capacity >> 16) as u16;
        }
        if self.s.multiple != 0 {
            w[59] = 0x100 | u16::from(self.s.multiple);
        }
        let lba28 = total.min(LBA28_LIMIT);
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        self.put_dma_modes(&mut w);
        w[64] = 0x03; // PIO modes 3 and 4
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        w[80] = 0xF0; // ATA/ATAPI-4 to -7
        w[81] = 0x16;
        // Supported: NOP, write cache, power management; 48-bit, FLUSH CACHE (EXT).
        w[82] = (1 << 14) | (1 << 5) | (1 << 3);
        w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10);
        w[84] = 1 << 14;
        w[85] = (1 << 14) | (u16::from(self.s.write_cache) << 5) | (1 << 3);
        w[86] = (1 << 13) | (1 << 12) | (1 << 10);
        w[87] = 1 << 14;
        w[93] = self.hardware_reset_result();
        w[100] = total as u16;
        w[101] = (total >> 16) as u16;
        w[102] = (total >> 32) as u16;
        w[103] = (total >> 48) as u16;
        w[106] = 0x4000; // one 512-byte logical sector per physical sector
        finish_identify(w)
    }

    /// Words 62, 63 and 88: the DMA modes supported and the one SET FEATURES selected.
    pub(super) fn put_dma_modes(&self, w: &mut [u16; 256]) {
        let mode = self.s.xfer_mode;
        let n = mode & 7;
        w[62] = 0x07;
        w[63] = 0x07 | if mode >> 3 == 4 { 1 << (8 + n) } else { 0 };
        w[88] = 0x3F | if mode >> 3 == 8 { 1 << (8 + n) } else { 0 };
    }

    /// Word 93: how the last hardware reset went, and the cable (bit 13: an 80-conductor
    /// cable detected, which is what lets a host use Ultra DMA modes above 2).
    pub(super) fn hardware_reset_result(&self) -> u16 {
        let device = if self.index % 2 == 0 {
            // Device 0: jumper-numbered, passed its diagnostics.
            0x0001 | (0b01 << 1) | (1 << 3)
        } else {
            // Device 1: jumper-numbered, asserted PDIAG-.
            0x0100 | (0b01 << 9) | (1 << 11)
        };
        (1 << 14) | (1 << 13) | device
    }
}

pub(super) const FIRMWARE: &str = "1.0";
pub(super) const DISK_MODEL: &str = "FERRITE HARDDISK";

impl DriveState {
    fn power_on(chs: Geometry) -> DriveState {
        DriveState {
            tf: TaskFile { select: 0xA0, ..TaskFile::default() },
            status: 0,
            error: 0,
            irq: false,
            irq_edge: false,
            xfer: Xfer::None,
            buf: Vec::new(),
            pos: 0,
            drq_left: 0,
            multiple: 0,
            heads: chs.heads,
            spt: chs.sectors,
            // Ultra DMA 5, as drives come up.
            xfer_mode: 0x45,
            write_cache: true,
            standby: false,
            sense: Sense::NONE,
            tray_open: false,
            locked: false,
            media_event: 0,
            unit_attention: false,
        }
    }
}

/// An ATA string: ASCII padded with spaces, the first character of each pair in the high byte.
pub(super) fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s.bytes().chain(std::iter::repeat(b' '));
    for w in words {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
}

/// The words as bytes, with the integrity word (255: 0xA5 and a checksum that makes all
/// 512 bytes sum to zero).
pub(super) fn finish_identify(mut w: [u16; 256]) -> [u8; 512] {
    w[255] = 0x00A5;
    let mut out = [0u8; 512];
    for (i, v) in w.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
    let sum = out[..511].iter().fold(0u8, |s, &b| s.wrapping_add(b));
    out[511] = sum.wrapping_neg();
    out
}

/// The geometry a disk reports: the image's own (VHD) if ATA can express it, else one read
/// from the partition table (the heads and sectors of the partitions' ends, as QEMU guesses),
/// else 16 heads and 63 sectors per track with the cylinders the size gives (at most 16,383).
pub fn default_geometry(media: &mut dyn BlockDevice) -> Geometry {
    let total = media.sector_count();
    if let Some(g) = media.geometry() {
        if (1..=16).contains(&g.heads) && (1..=63).contains(&g.sectors) && g.cylinders != 0 {
            return Geometry { cylinders: g.cylinders.min(16383), ..g };
        }
    }
    if let Some(g) = partition_table_geometry(media, total) {
        return g;
    }
    Geometry { cylinders: (total / (16 * 63)).clamp(2, 16383) as u16, heads: 16, sectors: 63 }
}

fn partition_table_geometry(media: &mut dyn BlockDevice, total: u64) -> Option<Geometry> {
    let mut mbr = [0u8; 512];
    if total == 0 || media.read_sectors(0, &mut mbr).is_err() || mbr[510..] != [0x55, 0xAA] {
        return None;
    }
    (0..4).find_map(|i| {
        let e = &mbr[446 + 16 * i..462 + 16 * i];
        let sectors_in = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
        let (heads, spt) = (u64::from(e[5]) + 1, u64::from(e[6] & 63));
        if sectors_in == 0 || e[4] == 0 || spt == 0 || heads > 16 {
            return None;
        }
        let cylinders = total / (heads * spt);
        (1..=16383).contains(&cylinders).then_some(Geometry { cylinders: cylinders as u16, heads: heads as u8, sectors: spt as u8 })
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::MemDisk;
    use super::*;

    fn disk(sectors: u64) -> Drive {
        Drive::new(Kind::Disk, Some(Box::new(MemDisk::new(sectors * 512))), 0)
    }

    fn words(b: &[u8]) -> Vec<u16> {
        b.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
    }

    fn ata_string(w: &[u16]) -> String {
        w.iter().flat_map(|v| v.to_be_bytes()).map(char::from).collect::<String>().trim_end().to_string()
    }

    fn read_block(d: &mut Drive, len: usize) -> Vec<u8> {
        (0..len / 2).flat_map(|_| (d.data_read(2) as u16).to_le_bytes()).collect()
    }

    fn set_lba28(d: &mut Drive, lba: u32, count: u8) {
        d.write_reg(2, count);
        d.write_reg(3, lba as u8);
        d.write_reg(4, (lba >> 8) as u8);
        d.write_reg(5, (lba >> 16) as u8);
        d.write_reg(6, 0x40 | (lba >> 24) as u8 & 0xF);
    }

    #[test]
    fn identify_reports_strings_capacity_and_checksum() {
        let mut d = disk(20_000_000);
        d.command(cmd::IDENTIFY_DEVICE);
        assert_eq!(d.s.status, DRDY | DSC | DRQ);
        assert!(d.s.irq);
        let data = read_block(&mut d, 512);
        assert_eq!(d.s.status, DRDY | DSC, "DRQ drops after the last word");
        let w = words(&data);
        assert_eq!(ata_string(&w[27..47]), "FERRITE HARDDISK");
        assert_eq!(ata_string(&w[10..20]), "FR00001");
        assert_eq!(ata_string(&w[23..27]), "1.0");
        assert_eq!((w[1], w[3], w[6]), (16383, 16, 63), "large disks report 16383/16/63");
        assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 20_000_000);
        assert_eq!(u64::from(w[100]) | u64::from(w[101]) << 16, 20_000_000);
        assert_eq!(w[83] & (1 << 10), 1 << 10, "LBA48");
        assert_eq!(w[93] & 0x6000, 0x6000, "word 93 valid, 80-conductor cable");
        assert_eq!(data[510], 0xA5);
        assert_eq!(data.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0, "integrity word");
    }

    #[test]
    fn lba28_capacity_saturates() {
        let mut d = disk(0x1000_0100);
        d.command(cmd::IDENTIFY_DEVICE);
        let w = words(&read_block(&mut d, 512));
        assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0FFF_FFFF);
        assert_eq!(u64::from(w[100]) | u64::from(w[101]) << 16 | u64::from(w[102]) << 32, 0x1000_0100);
    }

    #[test]
    fn pio_read_multiple_blocks_and_address_after() {
        let mut d = disk(64);
        let pattern: Vec<u8> = (0..64 * 512).map(|i| (i / 512) as u8 ^ i as u8).collect();
        d.media.as_mut().unwrap().write_at(0, &pattern).unwrap();
        d.s.tf.nsector = 4;
        d.command(cmd::SET_MULTIPLE_MODE);
        assert_eq!(d.s.status, DRDY | DSC);
        set_lba28(&mut d, 10, 6);
        d.command(cmd::READ_MULTIPLE);
        assert!(d.s.irq);
        d.s.irq = false;
        let first = read_block(&mut d, 4 * 512);
        assert_eq!(first, pattern[10 * 512..14 * 512]);
        assert!(d.s.irq, "an interrupt for the second block");
        assert_eq!(d.s.drq_left, 2 * 512, "the last block is shorter");
        let second = read_block(&mut d, 2 * 512);
        assert_eq!(second, pattern[14 * 512..16 * 512]);
        assert_eq!(d.s.status, DRDY | DSC);
        assert_eq!(d.s.tf.lbal, 15, "the last sector read");
    }

    #[test]
    fn read_multiple_without_multiple_mode_aborts() {
        let mut d = disk(64);
        set_lba28(&mut d, 0, 1);
        d.command(cmd::READ_MULTIPLE);
        assert_eq!((d.s.status, d.s.error), (DRDY | ERR, ABRT));
        d.s.tf.nsector = 3;
        d.command(cmd::SET_MULTIPLE_MODE);
        assert_eq!(d.s.error, ABRT, "not a power of two");
    }

    #[test]
    fn pio_write_interrupts_per_block_and_lands() {
        let mut d = disk(16);
        set_lba28(&mut d, 3, 2);
        d.command(cmd::WRITE_SECTORS);
        assert_eq!(d.s.status, DRDY | DSC | DRQ);
        assert!(!d.s.irq, "no interrupt before the first block");
        for i in 0..256 {
            d.data_write(2, 0x0101 * (i & 0xFF));
        }
        assert!(d.s.irq && d.s.status & DRQ != 0, "second block asked for with an interrupt");
        d.s.irq = false;
        for _ in 0..128 {
            d.data_write(4, 0xDDCC_BBAA);
        }
        assert!(d.s.irq);
        assert_eq!(d.s.status, DRDY | DSC);
        let mut back = [0u8; 1024];
        d.media.as_mut().unwrap().read_at(3 * 512, &mut back).unwrap();
        assert_eq!(&back[..4], &[0, 0, 1, 1]);
        assert_eq!(&back[512..516], &[0xAA, 0xBB, 0xCC, 0xDD]);
    }

    #[test]
    fn lba48_and_out_of_range() {
        let mut d = disk(100);
        // LBA48: high bytes first, then low bytes (each register keeps the previous value).
        for (reg, hi, lo) in [(2, 0, 2), (3, 0, 98), (4, 0, 0), (5, 0, 0)] {
            d.write_reg(reg, hi);
            d.write_reg(reg, lo);
        }
        assert_eq!(d.target(true), Some((98, 2)));
        d.command(cmd::READ_SECTORS_EXT);
        assert_eq!(d.s.status, DRDY | DSC | DRQ);
        d.write_reg(3, 99);
        d.command(cmd::READ_SECTORS_EXT);
        assert_eq!((d.s.status, d.s.error), (DRDY | ERR, IDNF), "99 + 2 > 100");
        d.write_reg(3, 0);
        d.write_reg(3, 0);
        d.write_reg(2, 0);
        d.write_reg(2, 0);
        assert_eq!(d.target(true), Some((0, 65536)), "a count of zero is 65,536 sectors");
    }

    #[test]
    fn chs_translation_follows_initialize_device_parameters() {
        let mut d = disk(4096);
        assert_eq!((d.s.heads, d.s.spt), (16, 63));
        // Cylinder 1, head 2, sector 3 with 16/63: (1 * 16 + 2) * 63 + 2.
        d.write_reg(3, 3);
        d.write_reg(4, 1);
        d.write_reg(5, 0);
        d.write_reg(6, 0x02);
        assert_eq!(d.target(false).unwrap().0, 18 * 63 + 2);
        d.write_reg(2, 32);
        d.write_reg(6, 0x03);
        d.command(cmd::INITIALIZE_DEVICE_PARAMETERS);
        assert_eq!((d.s.heads, d.s.spt), (4, 32));
        d.write_reg(6, 0x02);
        d.write_reg(2, 1);
        assert_eq!(d.target(false).unwrap().0, (4 + 2) * 32 + 2);
        d.write_reg(3, 0);
        assert_eq!(d.target(false), None, "sector numbers start at 1");
    }

    #[test]
    fn geometry_from_the_partition_table() {
        let mut m = MemDisk::new(8000 * 512);
        let mut mbr = [0u8; 512];
        mbr[446 + 4] = 0x83;
        mbr[446 + 5] = 7; // end head: 8 heads
        mbr[446 + 6] = 32; // end sector
        mbr[446 + 12] = 100;
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        m.write_at(0, &mbr).unwrap();
        let g = default_geometry(&mut m);
        assert_eq!((g.cylinders, g.heads, g.sectors), (8000 / (8 * 32), 8, 32));
    }

    #[test]
    fn flush_reaches_the_media_and_write_cache_off_writes_through() {
        let m = MemDisk::new(16 * 512);
        let flushes = m.flush_counter();
        let mut d = Drive::new(Kind::Disk, Some(Box::new(m)), 0);
        d.command(cmd::FLUSH_CACHE_EXT);
        assert_eq!(d.s.status, DRDY | DSC);
        assert_eq!(flushes.load(std::sync::atomic::Ordering::SeqCst), 1);
        d.s.tf.feature = 0x82;
        d.command(cmd::SET_FEATURES);
        assert!(!d.s.write_cache);
        set_lba28(&mut d, 0, 1);
        d.command(cmd::WRITE_SECTORS);
        for _ in 0..256 {
            d.data_write(2, 0);
        }
        assert_eq!(flushes.load(std::sync::atomic::Ordering::SeqCst), 3, "disabling the cache flushes, and so does each write");
    }

    #[test]
    fn set_features_transfer_modes() {
        let mut d = disk(16);
        d.s.tf.feature = 3;
        d.s.tf.nsector = 0x22;
        d.command(cmd::SET_FEATURES);
        let mut w = [0u16; 256];
        d.put_dma_modes(&mut w);
        assert_eq!((w[63], w[88]), (0x0407, 0x003F), "multiword DMA 2 selected, no Ultra DMA");
        d.s.tf.nsector = 0x46;
        d.command(cmd::SET_FEATURES);
        assert_eq!(d.s.error, ABRT, "Ultra DMA 6 is not supported");
        d.s.tf.feature = 0x99;
        d.command(cmd::SET_FEATURES);
        assert_eq!(d.s.error, ABRT);
    }

    #[test]
    fn power_modes_and_unknown_commands() {
        let mut d = disk(16);
        d.command(cmd::CHECK_POWER_MODE);
        assert_eq!(d.s.tf.nsector, 0xFF);
        d.command(cmd::STANDBY_IMMEDIATE);
        d.command(cmd::CHECK_POWER_MODE);
        assert_eq!(d.s.tf.nsector, 0x00);
        d.command(cmd::IDLE_IMMEDIATE);
        d.command(cmd::CHECK_POWER_MODE);
        assert_eq!(d.s.tf.nsector, 0xFF);
        d.command(0xB0); // SMART: not offered
        assert_eq!((d.s.status, d.s.error), (DRDY | ERR, ABRT));
        d.command(cmd::NOP);
        assert_eq!(d.s.error, ABRT, "NOP always aborts");
        d.command(cmd::IDENTIFY_PACKET_DEVICE);
        assert_eq!((d.s.tf.lbam, d.s.tf.lbah), (0, 0));
    }

    #[test]
    fn read_only_media_refuse_writes() {
        let mut d = Drive::new(Kind::Disk, Some(Box::new(MemDisk::read_only(16 * 512))), 0);
        set_lba28(&mut d, 0, 1);
        d.command(cmd::WRITE_SECTORS);
        assert_eq!((d.s.status, d.s.error), (DRDY | ERR, ABRT));
        d.command(cmd::WRITE_DMA);
        assert_eq!(d.s.error, ABRT);
    }
}
