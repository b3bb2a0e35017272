//! The packet interface of an ATAPI CD-ROM (ATA/ATAPI-6 chapter 9.10, the PACKET command
//! protocol) and the MMC commands a BIOS and Linux send (SCSI Multimedia Commands, MMC-5:
//! T10/1675D; sense data from SPC-3). The disc is an ISO image of 2048-byte blocks, read-only.
//! One data track in one session, as a pressed CD-ROM (or DVD-ROM, past CD sizes) has.

use super::ata::{cmd, finish_identify, put_string, Drive, Xfer, DRDY, DRQ, DSC, ERR, FIRMWARE};
use serde::{Deserialize, Serialize};

pub const BLOCK: usize = 2048;
const BLOCK_U64: u64 = BLOCK as u64;
/// Past this many blocks (an 80-minute CD) the disc is reported as a DVD-ROM, as QEMU does.
const CD_MAX_BLOCKS: u64 = 80 * 60 * 75;
/// Blocks read from the image at a time when a transfer's buffer runs low.
const READ_AHEAD: u32 = 32;

pub const MODEL: &str = "FERRITE DVD-ROM";
const VENDOR: &str = "FERRITE";

/// Interrupt reason (the sector count register during packet commands): I/O and C/D bits.
const REASON_CD: u8 = 1;
const REASON_IO: u8 = 2;

/// SCSI sense: key, additional sense code and qualifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    pub const NONE: Sense = Sense { key: 0, asc: 0, ascq: 0 };
    pub const NO_MEDIUM_TRAY_CLOSED: Sense = Sense { key: 2, asc: 0x3A, ascq: 1 };
    pub const NO_MEDIUM_TRAY_OPEN: Sense = Sense { key: 2, asc: 0x3A, ascq: 2 };
    pub const READ_ERROR: Sense = Sense { key: 3, asc: 0x11, ascq: 0 };
    pub const INVALID_OPCODE: Sense = Sense { key: 5, asc: 0x20, ascq: 0 };
    pub const LBA_OUT_OF_RANGE: Sense = Sense { key: 5, asc: 0x21, ascq: 0 };
    pub const INVALID_FIELD: Sense = Sense { key: 5, asc: 0x24, ascq: 0 };
    pub const SAVING_NOT_SUPPORTED: Sense = Sense { key: 5, asc: 0x39, ascq: 0 };
    pub const REMOVAL_PREVENTED: Sense = Sense { key: 5, asc: 0x53, ascq: 2 };
    pub const MEDIUM_CHANGED: Sense = Sense { key: 6, asc: 0x28, ascq: 0 };
    pub const ABORTED: Sense = Sense { key: 0xB, asc: 0, ascq: 0 };
}

/// MMC operation codes.
mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const SEEK_10: u8 = 0x2B;
    pub const READ_TOC: u8 = 0x43;
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4A;
    pub const READ_DISC_INFORMATION: u8 = 0x51;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const READ_12: u8 = 0xA8;
    pub const SET_CD_SPEED: u8 = 0xBB;
    pub const MECHANISM_STATUS: u8 = 0xBD;
    pub const READ_CD: u8 = 0xBE;
}

/// What a packet command answers.
enum Reply {
    Done,
    Data(Vec<u8>),
    /// `blocks` blocks of the disc from `lba`.
    Read { lba: u64, blocks: u32 },
    Check(Sense),
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A block address as minutes, seconds and frames (75 per second), counting the 2-second
/// lead-in, as READ TOC gives it with MSF set.
fn msf(lba: u64) -> [u8; 4] {
    let a = lba + 150;
    [0, (a / (75 * 60)) as u8, (a / 75 % 60) as u8, (a % 75) as u8]
}

fn address(lba: u64, as_msf: bool) -> [u8; 4] {
    if as_msf {
        msf(lba)
    } else {
        (lba as u32).to_be_bytes()
    }
}

impl Drive {
    /// The ATA commands a packet device takes (ATA/ATAPI-6 table 9): the rest abort, IDENTIFY
    /// DEVICE with the packet signature so the host knows what it found.
    pub(super) fn packet_device_command(&mut self, c: u8) {
        match c {
            cmd::PACKET => {
                let t = &self.s.tf;
                let dma = t.feature & 1 != 0;
                let limit = u16::from(t.lbah) << 8 | u16::from(t.lbam);
                self.s.xfer = Xfer::Packet { dma, limit };
                self.s.buf = vec![0; 12];
                self.s.tf.nsector = REASON_CD;
                // DRQ within 50 us of the command (IDENTIFY PACKET DEVICE word 0): no interrupt.
                self.s.pos = 0;
                self.s.drq_left = 12;
                self.s.status = DRDY | DSC | DRQ;
            }
            cmd::IDENTIFY_PACKET_DEVICE => {
                self.s.buf = self.identify_packet().to_vec();
                self.s.xfer = Xfer::Buffer;
                self.s.pos = 0;
                self.s.drq_left = 512;
                self.s.status = DRDY | DSC | DRQ;
                self.raise_irq();
            }
            cmd::DEVICE_RESET => {
                self.end_transfer();
                self.set_signature();
            }
            cmd::EXECUTE_DEVICE_DIAGNOSTIC => self.diagnostic_done(),
            cmd::CHECK_POWER_MODE | cmd::CHECK_POWER_MODE_OLD => {
                self.s.tf.nsector = if self.s.standby { 0 } else { 0xFF };
                self.complete(true);
            }
            cmd::IDLE_IMMEDIATE | cmd::IDLE_IMMEDIATE_OLD => {
                self.s.standby = false;
                self.complete(true);
            }
            cmd::STANDBY_IMMEDIATE | cmd::STANDBY_IMMEDIATE_OLD | cmd::SLEEP | cmd::SLEEP_OLD => {
                self.s.standby = true;
                self.complete(true);
            }
            cmd::SET_FEATURES if matches!(self.s.tf.feature, 0x03 | 0x02 | 0x82 | 0xAA | 0x55 | 0x66 | 0xCC) => {
                if self.s.tf.feature == 0x03 {
                    self.s.xfer_mode = self.s.tf.nsector;
                }
                self.complete(true);
            }
            cmd::FLUSH_CACHE => self.complete(true),
            cmd::IDENTIFY_DEVICE => {
                self.set_signature();
                self.abort();
            }
            _ => {
                tracing::debug!("IDE: ATA command {c:#04x} to a packet device: aborted");
                self.abort();
            }
        }
    }

    fn medium_present(&self) -> bool {
        self.media.is_some() && !self.s.tray_open
    }

    fn blocks(&self) -> u64 {
        if self.medium_present() {
            self.media.as_ref().map_or(0, |m| m.len() / BLOCK_U64)
        } else {
            0
        }
    }

    /// The 12-byte packet arrived: runs it and starts its data phase or reports its status.
    pub(super) fn packet_received(&mut self) {
        let Xfer::Packet { dma, limit } = self.s.xfer else { return };
        let mut cdb = [0u8; 12];
        cdb.copy_from_slice(&self.s.buf[..12]);
        let reply = self.execute(&cdb);
        self.end_transfer();
        match reply {
            Reply::Done => self.atapi_ok(),
            Reply::Check(sense) => self.atapi_error(sense),
            Reply::Data(d) if d.is_empty() => self.atapi_ok(),
            Reply::Data(d) => {
                let remaining = d.len() as u64;
                self.s.buf = d;
                self.start_data_in(Xfer::AtapiIn { lba: 0, blocks: 0, remaining, limit, dma });
            }
            Reply::Read { blocks: 0, .. } => self.atapi_ok(),
            Reply::Read { lba, blocks } => {
                self.s.standby = false;
                self.start_data_in(Xfer::AtapiIn { lba, blocks, remaining: u64::from(blocks) * BLOCK_U64, limit, dma });
            }
        }
    }

    fn start_data_in(&mut self, xfer: Xfer) {
        self.s.xfer = xfer;
        self.s.pos = 0;
        if let Xfer::AtapiIn { dma: true, .. } = xfer {
            // The bus master takes it from here.
            self.s.tf.nsector = REASON_IO;
            self.s.status = DRDY | DSC | DRQ;
        } else {
            self.next_atapi_chunk();
        }
    }

    /// The next DRQ chunk of a PIO data-in phase (its size in the byte count registers and an
    /// interrupt), or the command's completion when everything went.
    pub(super) fn next_atapi_chunk(&mut self) {
        let Xfer::AtapiIn { remaining, limit, .. } = self.s.xfer else { return };
        if remaining == 0 {
            return self.atapi_ok();
        }
        // A limit of 0xFFFF is taken as 0xFFFE, and a chunk that is not the last must be of
        // even length (ATA/ATAPI-6 9.10.1.2).
        let limit = match limit {
            0 | 0xFFFF => 0xFFFE,
            l => u64::from(l),
        };
        let chunk = if remaining > limit { (limit & !1).max(2) } else { remaining };
        if !self.buffer_atapi(chunk as usize) {
            return;
        }
        self.s.tf.lbam = chunk as u8;
        self.s.tf.lbah = (chunk >> 8) as u8;
        self.s.tf.nsector = REASON_IO;
        self.s.drq_left = chunk as usize;
        self.s.status = DRDY | DSC | DRQ;
        self.raise_irq();
    }

    /// Makes sure the buffer holds at least `n` unread bytes, reading blocks of the disc as
    /// needed. False after a read error, which already failed the command.
    fn buffer_atapi(&mut self, n: usize) -> bool {
        let Xfer::AtapiIn { lba, blocks, remaining, limit, dma } = self.s.xfer else { return false };
        let have = self.s.buf.len() - self.s.pos;
        if have >= n || blocks == 0 {
            return true;
        }
        let want = ((n - have).div_ceil(BLOCK) as u32).max(READ_AHEAD).min(blocks);
        self.s.buf.drain(..self.s.pos);
        self.s.pos = 0;
        let start = self.s.buf.len();
        self.s.buf.resize(start + want as usize * BLOCK, 0);
        let r = match self.media.as_mut() {
            Some(m) => m.read_at(lba * BLOCK_U64, &mut self.s.buf[start..]),
            None => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!("IDE: CD-ROM read error: {e}");
            self.atapi_error(Sense::READ_ERROR);
            return false;
        }
        self.s.xfer = Xfer::AtapiIn { lba: lba + u64::from(want), blocks: blocks - want, remaining, limit, dma };
        true
    }

    /// A DMA chunk of a packet command's data in.
    pub(super) fn atapi_dma_in(&mut self, out: &mut [u8]) -> bool {
        if !self.buffer_atapi(out.len()) {
            return false;
        }
        let n = out.len().min(self.s.buf.len() - self.s.pos);
        out[..n].copy_from_slice(&self.s.buf[self.s.pos..self.s.pos + n]);
        self.s.pos += n;
        if let Xfer::AtapiIn { remaining, .. } = &mut self.s.xfer {
            *remaining -= out.len() as u64;
        }
        true
    }

    /// The packet command completed: status, and the interrupt reason "command complete".
    pub(super) fn atapi_ok(&mut self) {
        self.end_transfer();
        self.s.error = 0;
        self.s.status = DRDY | DSC;
        self.s.tf.nsector = REASON_IO | REASON_CD;
        self.raise_irq();
    }

    /// CHECK CONDITION: the sense key in the error register, the details for REQUEST SENSE.
    pub(super) fn atapi_error(&mut self, sense: Sense) {
        self.end_transfer();
        self.s.sense = sense;
        self.s.error = sense.key << 4;
        self.s.status = DRDY | ERR;
        self.s.tf.nsector = REASON_IO | REASON_CD;
        self.raise_irq();
    }

    fn execute(&mut self, cdb: &[u8; 12]) -> Reply {
        use op::*;
        let code = cdb[0];
        if code != REQUEST_SENSE {
            self.s.sense = Sense::NONE;
        }
        let allowed_in_attention = matches!(code, INQUIRY | REQUEST_SENSE | GET_CONFIGURATION | GET_EVENT_STATUS_NOTIFICATION);
        if self.s.unit_attention && !allowed_in_attention {
            self.s.unit_attention = false;
            return Reply::Check(Sense::MEDIUM_CHANGED);
        }
        let needs_medium = matches!(
            code,
            TEST_UNIT_READY | READ_CAPACITY | READ_10 | READ_12 | READ_CD | SEEK_10 | READ_TOC | READ_DISC_INFORMATION
        );
        if needs_medium && !self.medium_present() {
            return Reply::Check(if self.s.tray_open { Sense::NO_MEDIUM_TRAY_OPEN } else { Sense::NO_MEDIUM_TRAY_CLOSED });
        }
        let reply = match code {
            TEST_UNIT_READY | SEEK_10 | SET_CD_SPEED => Reply::Done,
            REQUEST_SENSE => self.request_sense(),
            INQUIRY => inquiry(cdb),
            START_STOP_UNIT => self.start_stop_unit(cdb),
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.s.locked = cdb[4] & 1 != 0;
                Reply::Done
            }
            READ_CAPACITY => {
                let mut d = ((self.blocks().max(1) - 1) as u32).to_be_bytes().to_vec();
                d.extend((BLOCK as u32).to_be_bytes());
                Reply::Data(d)
            }
            READ_10 => self.read(u64::from(be32(&cdb[2..6])), be16(&cdb[7..9]) as u32),
            READ_12 => self.read(u64::from(be32(&cdb[2..6])), be32(&cdb[6..10])),
            READ_CD => self.read_cd(cdb),
            READ_TOC => self.read_toc(cdb),
            GET_CONFIGURATION => self.get_configuration(cdb),
            GET_EVENT_STATUS_NOTIFICATION => self.get_event_status(cdb),
            READ_DISC_INFORMATION => read_disc_information(cdb),
            MODE_SENSE_10 => self.mode_sense(cdb),
            MECHANISM_STATUS => {
                let mut d = vec![0u8; 8];
                d[1] = if self.s.tray_open { 0x10 } else { 0 };
                truncated(d, be16(&cdb[8..10]))
            }
            _ => {
                tracing::debug!("IDE: unsupported packet command {code:#04x}");
                Reply::Check(Sense::INVALID_OPCODE)
            }
        };
        if let Reply::Check(sense) = reply {
            self.s.sense = sense;
        }
        reply
    }

    fn request_sense(&mut self) -> Reply {
        let mut sense = std::mem::take(&mut self.s.sense);
        if sense == Sense::NONE && self.s.unit_attention {
            self.s.unit_attention = false;
            sense = Sense::MEDIUM_CHANGED;
        }
        let mut d = vec![0u8; 18];
        d[0] = 0x70; // current error, fixed format
        d[2] = sense.key;
        d[7] = 10; // additional length
        d[12] = sense.asc;
        d[13] = sense.ascq;
        Reply::Data(d)
    }

    fn start_stop_unit(&mut self, cdb: &[u8; 12]) -> Reply {
        let (start, load_eject) = (cdb[4] & 1 != 0, cdb[4] & 2 != 0);
        if !load_eject {
            return Reply::Done;
        }
        if !start {
            if self.s.locked {
                return Reply::Check(Sense::REMOVAL_PREVENTED);
            }
            if !self.s.tray_open {
                self.s.tray_open = true;
                self.s.media_event = 3; // media removal
            }
        } else if self.s.tray_open {
            self.s.tray_open = false;
            if self.media.is_some() {
                // The disc in the tray may be another one now.
                self.s.media_event = 2; // new media
                self.s.unit_attention = true;
            }
        }
        Reply::Done
    }

    fn read(&mut self, lba: u64, blocks: u32) -> Reply {
        if lba + u64::from(blocks) > self.blocks() {
            return Reply::Check(Sense::LBA_OUT_OF_RANGE);
        }
        Reply::Read { lba, blocks }
    }

    /// READ CD for user data only (what reading a data track needs); raw sectors with headers
    /// or subchannel data are not offered.
    fn read_cd(&mut self, cdb: &[u8; 12]) -> Reply {
        let lba = u64::from(be32(&cdb[2..6]));
        let blocks = u32::from_be_bytes([0, cdb[6], cdb[7], cdb[8]]);
        let sector_type = (cdb[1] >> 2) & 7;
        if !matches!(sector_type, 0 | 2) {
            return Reply::Check(Sense::INVALID_FIELD);
        }
        match cdb[9] & 0xF8 {
            0 => Reply::Done,
            0x10 => self.read(lba, blocks),
            _ => Reply::Check(Sense::INVALID_FIELD),
        }
    }

    /// READ TOC/PMA/ATIP formats 0 (TOC), 1 (session information) and 2 (full TOC).
    fn read_toc(&mut self, cdb: &[u8; 12]) -> Reply {
        let as_msf = cdb[1] & 2 != 0;
        let mut format = cdb[2] & 0xF;
        if format == 0 {
            // The older place for the format: the top bits of the control byte.
            format = cdb[9] >> 6;
        }
        let track = cdb[6];
        let alloc = be16(&cdb[7..9]);
        let end = self.blocks();
        let mut d = vec![0u8, 0];
        match format {
            0 => {
                if track > 1 && track != 0xAA {
                    return Reply::Check(Sense::INVALID_FIELD);
                }
                d.extend([1, 1]); // first and last track
                if track <= 1 {
                    d.extend([0, 0x14, 1, 0]); // data track 1
                    d.extend(address(0, as_msf));
                }
                d.extend([0, 0x16, 0xAA, 0]); // lead-out
                d.extend(address(end, as_msf));
            }
            1 => {
                d.extend([1, 1]); // first and last session
                d.extend([0, 0x14, 1, 0]); // first track of the last session
                d.extend(address(0, as_msf));
            }
            2 => {
                d.extend([1, 1]);
                // Points A0 (first track), A1 (last track), A2 (lead-out), then track 1.
                d.extend([1, 0x14, 0, 0xA0, 0, 0, 0, 0, 1, 0, 0]);
                d.extend([1, 0x14, 0, 0xA1, 0, 0, 0, 0, 1, 0, 0]);
                d.extend([1, 0x14, 0, 0xA2, 0, 0, 0]);
                d.extend(address(end, as_msf));
                d.extend([1, 0x14, 0, 1, 0, 0, 0]);
                d.extend(address(0, as_msf));
            }
            _ => return Reply::Check(Sense::INVALID_FIELD),
        }
        let len = (d.len() - 2) as u16;
        d[..2].copy_from_slice(&len.to_be_bytes());
        truncated(d, alloc)
    }

    /// The MMC profile of the disc: DVD-ROM past CD sizes, CD-ROM, or none without one.
    fn current_profile(&self) -> u16 {
        match self.blocks() {
            0 => 0,
            b if b > CD_MAX_BLOCKS => 0x10,
            _ => 0x08,
        }
    }

    /// GET CONFIGURATION with the features a read-only drive has: the profile list, core
    /// (ATAPI), morphing (polled events), removable medium (tray, eject, lock) and random
    /// readable.
    fn get_configuration(&self, cdb: &[u8; 12]) -> Reply {
        let request = cdb[1] & 3;
        let first = be16(&cdb[2..4]) as u16;
        let alloc = be16(&cdb[7..9]);
        if request == 3 {
            return Reply::Check(Sense::INVALID_FIELD);
        }
        let profile = self.current_profile();
        let current = |p: u16| u8::from(profile == p);
        let medium = u8::from(profile != 0);
        let blocking: u16 = if profile == 0x10 { 16 } else { 1 };
        // (code, version/persistent/current byte, body)
        let features: Vec<(u16, u8, Vec<u8>)> = vec![
            (0x0000, 0x03, vec![0x00, 0x10, current(0x10), 0, 0x00, 0x08, current(0x08), 0]),
            (0x0001, (2 << 2) | 0x03, vec![0, 0, 0, 2, 1, 0, 0, 0]),
            (0x0002, (1 << 2) | 0x03, vec![0x02, 0, 0, 0]),
            (0x0003, 0x03, vec![0x29, 0, 0, 0]),
            (0x0010, medium, [&(BLOCK as u32).to_be_bytes()[..], &blocking.to_be_bytes(), &[0, 0]].concat()),
        ];
        let mut d = vec![0u8; 8];
        d[6..8].copy_from_slice(&profile.to_be_bytes());
        for (code, flags, body) in features {
            let wanted = match request {
                0 => code >= first,
                1 => code >= first && flags & 1 != 0,
                _ => code == first,
            };
            if wanted {
                d.extend(code.to_be_bytes());
                d.push(flags);
                d.push(body.len() as u8);
                d.extend(body);
            }
        }
        let len = (d.len() - 4) as u32;
        d[..4].copy_from_slice(&len.to_be_bytes());
        truncated(d, alloc)
    }

    /// GET EVENT STATUS NOTIFICATION, polled, for the media class only.
    fn get_event_status(&mut self, cdb: &[u8; 12]) -> Reply {
        if cdb[1] & 1 == 0 {
            // Asynchronous notification is not offered.
            return Reply::Check(Sense::INVALID_FIELD);
        }
        let classes = cdb[4];
        let alloc = be16(&cdb[7..9]);
        let mut d = vec![0, 2, 0x80, 0x10]; // no event available; media class supported
        if classes & 0x10 != 0 {
            let status = u8::from(self.s.tray_open) | u8::from(self.medium_present()) << 1;
            d[2] = 0x04; // media class
            d.extend([std::mem::take(&mut self.s.media_event), status, 0, 0]);
            d[1] = 6;
        }
        truncated(d, alloc)
    }

    fn mode_sense(&self, cdb: &[u8; 12]) -> Reply {
        let control = cdb[2] >> 6;
        let page = cdb[2] & 0x3F;
        let alloc = be16(&cdb[7..9]);
        if control == 3 {
            return Reply::Check(Sense::SAVING_NOT_SUPPORTED);
        }
        // Control 1 asks which fields can be changed: none.
        let changeable = control == 1;
        let error_recovery = || {
            let mut p = vec![0x01, 0x0A, 0, 5, 0, 0, 0, 0, 5, 0, 0, 0];
            if changeable {
                p[2..].fill(0);
            }
            p
        };
        let capabilities = || {
            let mut p = vec![0x2A, 0x12];
            p.extend([
                0x3B, // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
                0x00, // writes nothing
                0x71, // audio play (Linux wants it), mode 2 forms 1 and 2, multi-session
                0x60, // CD-DA commands, accurate stream
                0x29 | if self.s.locked { 0x02 } else { 0 }, // lock, eject, tray loading
                0x00,
            ]);
            p.extend(704u16.to_be_bytes()); // maximum read speed, KB/s (4x)
            p.extend([0, 2]); // volume levels
            p.extend(512u16.to_be_bytes()); // buffer, KB
            p.extend(704u16.to_be_bytes()); // current read speed
            p.extend([0, 0, 0, 0]);
            if changeable {
                p[2..].fill(0);
            }
            p
        };
        let pages = match page {
            0x01 => error_recovery(),
            0x2A => capabilities(),
            0x3F => [error_recovery(), capabilities()].concat(),
            _ => return Reply::Check(Sense::INVALID_FIELD),
        };
        let medium_type = match (self.medium_present(), self.s.tray_open) {
            (true, _) => 0x01,
            (false, false) => 0x70,
            (false, true) => 0x71,
        };
        let mut d = vec![0, 0, medium_type, 0, 0, 0, 0, 0];
        d.extend(pages);
        let len = (d.len() - 2) as u16;
        d[..2].copy_from_slice(&len.to_be_bytes());
        truncated(d, alloc)
    }

    /// IDENTIFY PACKET DEVICE (ATA/ATAPI-6 table 29).
    pub fn identify_packet(&self) -> [u8; 512] {
        let mut w = [0u16; 256];
        // ATAPI, CD-ROM device type, removable, DRQ within 50 us, 12-byte packets.
        w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
        put_string(&mut w[10..20], &self.serial);
        w[20] = 3;
        w[21] = 512;
        w[22] = 4;
        put_string(&mut w[23..27], FIRMWARE);
        put_string(&mut w[27..47], MODEL);
        w[48] = 1;
        w[49] = (1 << 9) | (1 << 8); // LBA, DMA
        w[53] = 7;
        self.put_dma_modes(&mut w);
        w[64] = 0x03;
        w[65] = 0xB4;
        w[66] = 0xB4;
        w[67] = 0x12C;
        w[68] = 0xB4;
        w[71] = 30;
        w[72] = 30;
        w[80] = 0x1E; // ATA/ATAPI-1 to -4
        w[93] = self.hardware_reset_result();
        finish_identify(w)
    }
}

fn truncated(mut d: Vec<u8>, alloc: usize) -> Reply {
    d.truncate(alloc);
    Reply::Data(d)
}

fn inquiry(cdb: &[u8; 12]) -> Reply {
    if cdb[1] & 1 != 0 {
        // No vital product data pages.
        return Reply::Check(Sense::INVALID_FIELD);
    }
    let alloc = be16(&cdb[3..5]);
    let mut d = vec![0u8; 36];
    d[0] = 0x05; // CD/DVD device
    d[1] = 0x80; // removable
    d[2] = 0x00;
    d[3] = 0x21; // ATAPI transport, standard response format
    d[4] = 31; // additional length
    let pad = |s: &str, n: usize| format!("{s:<n$}").into_bytes();
    d[8..16].copy_from_slice(&pad(VENDOR, 8));
    d[16..32].copy_from_slice(&pad(MODEL, 16));
    d[32..36].copy_from_slice(&pad(FIRMWARE, 4));
    truncated(d, alloc)
}

fn read_disc_information(cdb: &[u8; 12]) -> Reply {
    if cdb[1] & 7 != 0 {
        return Reply::Check(Sense::INVALID_FIELD);
    }
    let mut d = vec![0u8; 34];
    d[1] = 32;
    d[2] = 0x0E; // complete disc, last session complete
    d[3] = 1; // first track
    d[4] = 1; // sessions
    d[5] = 1; // first track of the last session
    d[6] = 1; // last track of the last session
    d[7] = 0x20; // unrestricted use
    truncated(d, be16(&cdb[7..9]))
}

#[cfg(test)]
mod tests {
    use super::super::ata::Kind;
    use super::super::tests::MemDisk;
    use super::*;
    use crate::block::BlockDevice;

    /// A CD-ROM over `blocks` blocks whose bytes name their block.
    fn cdrom(blocks: u64) -> Drive {
        let mut m = MemDisk::new(blocks * BLOCK_U64);
        for b in 0..blocks {
            m.write_at(b * BLOCK_U64, &vec![b as u8; BLOCK]).unwrap();
        }
        Drive::new(Kind::Cdrom, Some(Box::new(m)), 2)
    }

    /// Sends a packet by PIO with byte count limit `limit`; returns the data the drive sent
    /// (all chunks) and the number of chunks.
    fn packet(d: &mut Drive, cdb: &[u8], limit: u16) -> (Vec<u8>, usize) {
        d.s.tf.feature = 0;
        d.s.tf.lbam = limit as u8;
        d.s.tf.lbah = (limit >> 8) as u8;
        d.command(cmd::PACKET);
        assert_eq!((d.s.status & DRQ, d.s.tf.nsector), (DRQ, REASON_CD));
        let mut p = [0u8; 12];
        p[..cdb.len()].copy_from_slice(cdb);
        for w in p.chunks(2) {
            d.data_write(2, u32::from(u16::from_le_bytes([w[0], w[1]])));
        }
        let mut out = Vec::new();
        let mut chunks = 0;
        while d.s.status & DRQ != 0 {
            assert_eq!(d.s.tf.nsector, REASON_IO);
            let n = usize::from(d.s.tf.lbam) | usize::from(d.s.tf.lbah) << 8;
            assert!(n <= usize::from(limit.max(2)));
            for _ in 0..n.div_ceil(2) {
                out.extend((d.data_read(2) as u16).to_le_bytes());
            }
            out.truncate(out.len() - n % 2);
            chunks += 1;
        }
        assert_eq!(d.s.tf.nsector, REASON_IO | REASON_CD, "command complete");
        (out, chunks)
    }

    #[test]
    fn inquiry_and_identify() {
        let mut d = cdrom(4);
        let (data, _) = packet(&mut d, &[op::INQUIRY, 0, 0, 0, 36], 0xFFFE);
        assert_eq!(data.len(), 36);
        assert_eq!(data[0], 5);
        assert_eq!(&data[8..32], b"FERRITE FERRITE DVD-ROM ");
        let (short, _) = packet(&mut d, &[op::INQUIRY, 0, 0, 0, 8], 0xFFFE);
        assert_eq!(short.len(), 8, "the allocation length truncates");
        d.command(cmd::IDENTIFY_PACKET_DEVICE);
        let w0 = d.data_read(2);
        assert_eq!(w0, 0x85C0);
        d.command(cmd::IDENTIFY_DEVICE);
        assert_eq!((d.s.status, d.s.error, d.s.tf.lbam, d.s.tf.lbah), (DRDY | ERR, 4, 0x14, 0xEB));
    }

    #[test]
    fn capacity_and_reads_in_chunks() {
        let mut d = cdrom(40);
        let (cap, _) = packet(&mut d, &[op::READ_CAPACITY], 0xFFFE);
        assert_eq!(cap, [0, 0, 0, 39, 0, 0, 8, 0]);
        // READ(10) of blocks 3-5 with a byte count limit of 1000: chunks of 1000 bytes.
        let (data, chunks) = packet(&mut d, &[op::READ_10, 0, 0, 0, 0, 3, 0, 0, 3], 1000);
        assert_eq!(data.len(), 3 * BLOCK);
        assert_eq!(chunks, 7);
        assert!(data[..BLOCK].iter().all(|&b| b == 3) && data[2 * BLOCK..].iter().all(|&b| b == 5));
        let (data, chunks) = packet(&mut d, &[op::READ_12, 0, 0, 0, 0, 0, 0, 0, 0, 40], 0xFFFF);
        assert_eq!((data.len(), chunks), (40 * BLOCK, 2));
        assert_eq!(data[39 * BLOCK], 39);
        packet(&mut d, &[op::READ_10, 0, 0, 0, 0, 39, 0, 0, 2], 0xFFFE);
        assert_eq!((d.s.status, d.s.error >> 4), (DRDY | ERR, 5), "past the end: ILLEGAL REQUEST");
        let (sense, _) = packet(&mut d, &[op::REQUEST_SENSE, 0, 0, 0, 18], 0xFFFE);
        assert_eq!((sense[2], sense[12]), (5, 0x21));
        let (sense, _) = packet(&mut d, &[op::REQUEST_SENSE, 0, 0, 0, 18], 0xFFFE);
        assert_eq!(sense[2], 0, "the sense was reported once");
    }

    #[test]
    fn eject_reports_no_medium_then_medium_changed() {
        let mut d = cdrom(4);
        packet(&mut d, &[op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1], 0xFFFE);
        packet(&mut d, &[op::START_STOP_UNIT, 0, 0, 0, 2], 0xFFFE);
        assert_eq!(d.s.sense, Sense::REMOVAL_PREVENTED);
        packet(&mut d, &[op::PREVENT_ALLOW_MEDIUM_REMOVAL], 0xFFFE);
        packet(&mut d, &[op::START_STOP_UNIT, 0, 0, 0, 2], 0xFFFE);
        assert_eq!(d.s.status, DRDY | DSC);
        packet(&mut d, &[op::TEST_UNIT_READY], 0xFFFE);
        assert_eq!((d.s.error >> 4, d.s.sense), (2, Sense::NO_MEDIUM_TRAY_OPEN));
        let (ev, _) = packet(&mut d, &[op::GET_EVENT_STATUS_NOTIFICATION, 1, 0, 0, 0x10, 0, 0, 0, 8], 0xFFFE);
        assert_eq!(&ev[2..6], &[0x04, 0x10, 3, 0x01], "media removal, tray open");
        packet(&mut d, &[op::START_STOP_UNIT, 0, 0, 0, 3], 0xFFFE);
        packet(&mut d, &[op::TEST_UNIT_READY], 0xFFFE);
        assert_eq!(d.s.sense, Sense::MEDIUM_CHANGED);
        packet(&mut d, &[op::TEST_UNIT_READY], 0xFFFE);
        assert_eq!(d.s.status, DRDY | DSC, "ready again");
        let (ev, _) = packet(&mut d, &[op::GET_EVENT_STATUS_NOTIFICATION, 1, 0, 0, 0x10, 0, 0, 0, 8], 0xFFFE);
        assert_eq!(&ev[4..6], &[2, 0x02], "new media, present");
    }

    #[test]
    fn toc_formats() {
        let mut d = cdrom(1000);
        let (toc, _) = packet(&mut d, &[op::READ_TOC, 0, 0, 0, 0, 0, 0, 0x03, 0x24], 0xFFFE);
        assert_eq!(toc, [0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x16, 0xAA, 0, 0, 0, 0x03, 0xE8]);
        let (toc, _) = packet(&mut d, &[op::READ_TOC, 2, 0, 0, 0, 0, 0, 0x03, 0x24], 0xFFFE);
        assert_eq!(&toc[8..12], &[0, 0, 2, 0], "track 1 at 00:02:00");
        assert_eq!(&toc[16..20], &[0, 0, 15, 25], "lead-out at block 1000 + 150 = 00:15:25");
        let (session, _) = packet(&mut d, &[op::READ_TOC, 0, 1, 0, 0, 0, 0, 0, 12], 0xFFFE);
        assert_eq!(session, [0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
        let (full, _) = packet(&mut d, &[op::READ_TOC, 0, 2, 0, 0, 0, 0, 0x03, 0x24], 0xFFFE);
        assert_eq!(full.len(), 4 + 4 * 11);
        assert_eq!(&full[4 + 2 * 11 + 3..4 + 2 * 11 + 4], &[0xA2]);
        assert_eq!(&full[4 + 2 * 11 + 7..4 + 3 * 11], &[0, 0, 0x03, 0xE8], "lead-out point");
        packet(&mut d, &[op::READ_TOC, 0, 5], 0xFFFE);
        assert_eq!(d.s.sense, Sense::INVALID_FIELD);
    }

    #[test]
    fn mode_sense_configuration_and_friends() {
        let mut d = cdrom(4);
        let (ms, _) = packet(&mut d, &[op::MODE_SENSE_10, 0, 0x2A, 0, 0, 0, 0, 0, 64], 0xFFFE);
        assert_eq!(be16(&ms) + 2, ms.len());
        assert_eq!((ms[8], ms[9] as usize + 10), (0x2A, ms.len()));
        let (all, _) = packet(&mut d, &[op::MODE_SENSE_10, 0, 0x3F, 0, 0, 0, 0, 0, 255], 0xFFFE);
        assert_eq!(all.len(), 8 + 12 + 20);
        packet(&mut d, &[op::MODE_SENSE_10, 0, 0xC1], 0xFFFE);
        assert_eq!(d.s.sense, Sense::SAVING_NOT_SUPPORTED);
        let (conf, _) = packet(&mut d, &[op::GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 1, 0], 0xFFFE);
        assert_eq!(be32(&conf) as usize + 4, conf.len());
        assert_eq!(&conf[6..8], &[0, 8], "a small disc is a CD-ROM");
        let (one, _) = packet(&mut d, &[op::GET_CONFIGURATION, 2, 0, 1, 0, 0, 0, 1, 0], 0xFFFE);
        assert_eq!((one.len(), one[9]), (8 + 4 + 8, 1), "only the core feature");
        let (info, _) = packet(&mut d, &[op::READ_DISC_INFORMATION, 0, 0, 0, 0, 0, 0, 0, 34], 0xFFFE);
        assert_eq!((info.len(), info[2]), (34, 0x0E));
        let (mech, _) = packet(&mut d, &[op::MECHANISM_STATUS, 0, 0, 0, 0, 0, 0, 0, 0, 8], 0xFFFE);
        assert_eq!(mech.len(), 8);
        packet(&mut d, &[0xFF], 0xFFFE);
        assert_eq!(d.s.sense, Sense::INVALID_OPCODE);
        let (cd, _) = packet(&mut d, &[op::READ_CD, 0, 0, 0, 0, 2, 0, 0, 1, 0x10], 0xFFFE);
        assert_eq!((cd.len(), cd[0]), (BLOCK, 2));
    }

    #[test]
    fn dma_reads_take_the_data_in_pieces() {
        let mut d = cdrom(8);
        d.s.tf.feature = 1;
        d.command(cmd::PACKET);
        let cdb = [op::READ_10, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0];
        for w in cdb.chunks(2) {
            d.data_write(2, u32::from(u16::from_le_bytes([w[0], w[1]])));
        }
        assert_eq!(d.dma_request(), Some((true, 2 * BLOCK_U64)));
        let mut a = vec![0u8; 1000];
        assert!(d.dma_in(&mut a));
        let mut b = vec![0u8; 3096];
        assert!(d.dma_in(&mut b));
        assert!(a.iter().all(|&x| x == 1) && b[..1048].iter().all(|&x| x == 1) && b[1048..].iter().all(|&x| x == 2));
        assert_eq!(d.dma_request(), Some((true, 0)));
        d.dma_complete();
        assert_eq!((d.s.status, d.s.tf.nsector), (DRDY | DSC, 3));
        assert!(d.s.irq);
    }
}
