//! The Intel 82077AA floppy disk controller in PC-AT mode (82077AA datasheet, order 290166):
//! DOR at 0x3F2, TDR 0x3F3, MSR/DSR 0x3F4, the data FIFO 0x3F5, DIR/CCR 0x3F7 (0x3F6 belongs
//! to the IDE controller), IRQ 6 and ISA DMA channel 2, with up to two drives whose media are
//! disk images of the standard PC floppy sizes.
//!
//! Commands go through the datasheet's command, execution and result phases. Execution takes
//! virtual time: seeks step at the rate SPECIFY programmed, sectors pass faster than a real
//! disk turns (as on QEMU) so booting from a floppy image is quick.

use crate::block::{BlockDevice, SECTOR_SIZE};
use crate::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const NAME: &str = "fdc";
const VERSION: u32 = 1;

pub const FDC_IRQ: u8 = 6;
pub const FDC_DMA: u8 = 2;
pub const FDC_BASE: u16 = 0x3F0;

/// From the last command byte to the start of execution.
const COMMAND_NS: u64 = 10_000;
/// One sector under the head (a real 1.44 MB disk takes about 11 ms).
const SECTOR_NS: u64 = 50_000;
/// An unserved DMA request is retried this often, and overruns after this long.
const DMA_RETRY_NS: u64 = 100_000;
const OVERRUN_NS: u64 = 10_000_000;
/// Step pulses RECALIBRATE gives before it reports that track 0 was not found.
const RECALIBRATE_STEPS: u8 = 79;
const SECTOR: usize = SECTOR_SIZE as usize;

// DOR.
const DOR_SELECT: u8 = 0x03;
const DOR_NRESET: u8 = 0x04;
const DOR_DMAEN: u8 = 0x08;
// MSR.
const MSR_RQM: u8 = 0x80;
const MSR_DIO: u8 = 0x40;
const MSR_NDMA: u8 = 0x20;
const MSR_CB: u8 = 0x10;
// DSR.
const DSR_SWRESET: u8 = 0x80;
// ST0.
const ST0_ABNORMAL: u8 = 0x40;
const ST0_INVALID: u8 = 0x80;
const ST0_READY_CHANGED: u8 = 0xC0;
const ST0_SEEK_END: u8 = 0x20;
const ST0_EQUIPMENT: u8 = 0x10;
// ST1.
const ST1_EN: u8 = 0x80;
const ST1_DE: u8 = 0x20;
const ST1_OR: u8 = 0x10;
const ST1_ND: u8 = 0x04;
const ST1_NW: u8 = 0x02;
const ST1_MA: u8 = 0x01;
// ST2.
const ST2_CM: u8 = 0x40;
const ST2_DD: u8 = 0x20;
const ST2_WC: u8 = 0x10;
const ST2_BC: u8 = 0x02;
// ST3.
const ST3_WP: u8 = 0x40;
const ST3_ONE: u8 = 0x28;
const ST3_T0: u8 = 0x10;
// CONFIGURE.
const CONFIG_POLL_OFF: u8 = 0x10;
/// EIS off, FIFO disabled, polling on, threshold 1 byte.
const CONFIG_DEFAULT: u8 = 0x20;

/// Data rate codes of the DSR and CCR.
const RATE_500K: u8 = 0;
const RATE_300K: u8 = 1;
const RATE_250K: u8 = 2;
const RATE_1M: u8 = 3;

/// The floppy formats Ferrite knows, each in the drive type the CMOS reports for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FloppyKind {
    /// 360 KB 5.25" (40 cylinders, 9 sectors), read at 300 kb/s as in a 1.2 MB drive.
    K360,
    /// 1.2 MB 5.25" (80 cylinders, 15 sectors).
    M1_2,
    /// 720 KB 3.5" (80 cylinders, 9 sectors).
    K720,
    /// 1.44 MB 3.5" (80 cylinders, 18 sectors).
    M1_44,
    /// 2.88 MB 3.5" (80 cylinders, 36 sectors, 1 Mb/s).
    M2_88,
}

impl FloppyKind {
    pub const ALL: [FloppyKind; 5] = [FloppyKind::K360, FloppyKind::M1_2, FloppyKind::K720, FloppyKind::M1_44, FloppyKind::M2_88];

    /// Cylinders, heads, sectors per track.
    pub fn geometry(self) -> (u8, u8, u8) {
        match self {
            FloppyKind::K360 => (40, 2, 9),
            FloppyKind::M1_2 => (80, 2, 15),
            FloppyKind::K720 => (80, 2, 9),
            FloppyKind::M1_44 => (80, 2, 18),
            FloppyKind::M2_88 => (80, 2, 36),
        }
    }

    pub fn size(self) -> u64 {
        let (c, h, s) = self.geometry();
        c as u64 * h as u64 * s as u64 * SECTOR_SIZE
    }

    /// The format of an image of `bytes` bytes.
    pub fn from_size(bytes: u64) -> Option<FloppyKind> {
        FloppyKind::ALL.into_iter().find(|k| k.size() == bytes)
    }

    /// The drive type in CMOS byte 0x10.
    pub fn cmos_type(self) -> u8 {
        match self {
            FloppyKind::K360 => 1,
            FloppyKind::M1_2 => 2,
            FloppyKind::K720 => 3,
            FloppyKind::M1_44 => 4,
            FloppyKind::M2_88 => 5,
        }
    }

    /// The data rate (DSR/CCR code) the medium is recorded at.
    fn data_rate(self) -> u8 {
        match self {
            FloppyKind::K360 => RATE_300K,
            FloppyKind::M1_2 | FloppyKind::M1_44 => RATE_500K,
            FloppyKind::K720 => RATE_250K,
            FloppyKind::M2_88 => RATE_1M,
        }
    }

    /// The last track the drive's head can reach.
    fn last_track(self) -> u8 {
        self.geometry().0 + 3
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FdcError {
    #[error("{}: {size} bytes is not a floppy image size (360 KB, 720 KB, 1.2 MB, 1.44 MB or 2.88 MB: 368640, 737280, 1228800, 1474560 or 2949120 bytes)", .path.display())]
    UnknownSize { path: PathBuf, size: u64 },
}

/// Which execution-phase work a command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Read,
    ReadDeleted,
    Write,
    WriteDeleted,
    ReadId,
    Format,
}

impl Op {
    fn writes(self) -> bool {
        matches!(self, Op::Write | Op::WriteDeleted | Op::Format)
    }
}

/// A read, write, READ ID or FORMAT TRACK in its execution phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Exec {
    op: Op,
    drive: u8,
    /// The physical head (HDS).
    head: u8,
    /// The sector ID sought: cylinder, head, record, size code.
    c: u8,
    h: u8,
    r: u8,
    n: u8,
    eot: u8,
    mt: bool,
    /// MFM (double density) asked for: the only recording the images hold.
    mfm: bool,
    sk: bool,
    /// FORMAT TRACK: sectors per track asked for, the filler byte, sectors done.
    sc: u8,
    filler: u8,
    done: u8,
    /// The implied seek to cylinder `c` has not finished.
    seeking: bool,
    /// When the next step happens (None: waiting for the host's PIO data).
    at: Option<u64>,
    /// Non-DMA mode: the bytes of the current sector (or ID) and how many the host moved.
    buf: Vec<u8>,
    pos: usize,
    /// Since when the DMA channel has left the controller's request unanswered.
    stalled_since: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    Command,
    Execution,
    Result,
}

/// One drive's mechanics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Drive {
    /// Where the head is (physical track).
    track: u8,
    /// The DSKCHG line: set when media may have changed, cleared by a step pulse with a
    /// disk in the drive.
    changed: bool,
    /// The record READ ID finds next (the disk turning under the head).
    next_id: u8,
}

/// A seek or recalibrate running on one drive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Seek {
    done_at: u64,
    target: u8,
    st0: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    dor: u8,
    tdr: u8,
    dsr: u8,
    /// The data rate (DSR bits 1-0, also written through the CCR).
    rate: u8,
    phase: Phase,
    /// Command bytes received, or result bytes to send.
    fifo: Vec<u8>,
    result_pos: usize,
    specify: [u8; 2],
    config: u8,
    pretrk: u8,
    lock: bool,
    perpendicular: u8,
    /// The last EOT given (DUMPREG's SC/EOT byte).
    last_eot: u8,
    /// The present cylinder number registers.
    pcn: [u8; 4],
    drives: [Drive; 2],
    seeks: [Option<Seek>; 4],
    /// Drives whose seek ended, in order, for SENSE INTERRUPT STATUS (with their ST0).
    sense: Vec<(u8, u8)>,
    /// "Ready changed" statuses left from a reset (polling), for SENSE INTERRUPT STATUS.
    reset_polls: u8,
    /// MSR D0B-D3B: drives seeking or waiting for their status to be sensed.
    busy: u8,
    exec: Option<Exec>,
    /// The interrupt condition (reaches IRQ 6 through the DOR's DMA gate).
    int: bool,
    irq: bool,
}

impl State {
    fn new() -> State {
        State {
            // Power-on: the controller held in reset until the BIOS raises DOR bit 2.
            dor: 0,
            tdr: 0,
            dsr: RATE_500K,
            rate: RATE_500K,
            phase: Phase::Command,
            fifo: Vec::new(),
            result_pos: 0,
            specify: [0; 2],
            config: CONFIG_DEFAULT,
            pretrk: 0,
            lock: false,
            perpendicular: 0,
            last_eot: 0,
            pcn: [0; 4],
            drives: [Drive { changed: true, ..Drive::default() }, Drive { changed: true, ..Drive::default() }],
            seeks: [None, None, None, None],
            sense: Vec::new(),
            reset_polls: 0,
            busy: 0,
            exec: None,
            int: false,
            irq: false,
        }
    }
}

/// A medium in a drive.
struct Media {
    image: Box<dyn BlockDevice>,
    kind: FloppyKind,
}

/// The 82077AA and its two drives.
pub struct Fdc {
    s: State,
    /// The drive types, fixed by the media given at construction.
    kinds: [Option<FloppyKind>; 2],
    media: [Option<Media>; 2],
}

/// Command bytes (with parameters) for each command code (low five bits, or the whole byte
/// for LOCK), or None for an invalid command.
fn command_len(cmd: u8) -> Option<usize> {
    Some(match cmd & 0x1F {
        0x06 | 0x0C | 0x05 | 0x09 => 9, // read, read deleted, write, write deleted
        0x0A => 2,                      // read ID
        0x0D => 6,                      // format track
        0x07 => 2,                      // recalibrate
        0x08 => 1,                      // sense interrupt status
        0x03 => 3,                      // specify
        0x04 => 2,                      // sense drive status
        0x0F => 3,                      // seek (and relative seek)
        0x10 if cmd == 0x10 => 1,       // version
        0x13 if cmd == 0x13 => 4,       // configure
        0x14 if cmd & 0x7F == 0x14 => 1, // lock / unlock
        0x0E if cmd == 0x0E => 1,       // dumpreg
        0x12 if cmd == 0x12 => 2,       // perpendicular mode
        _ => return None,
    })
}

impl Fdc {
    /// A controller with drives A: and B: holding `media` (a drive without media is absent).
    /// Image sizes pick the format; other sizes are refused.
    pub fn new(media: [Option<Box<dyn BlockDevice>>; 2]) -> Result<Fdc, FdcError> {
        let mut fdc = Fdc { s: State::new(), kinds: [None, None], media: [None, None] };
        for (i, m) in media.into_iter().enumerate() {
            if let Some(image) = m {
                let kind = FloppyKind::from_size(image.len())
                    .ok_or_else(|| FdcError::UnknownSize { path: image.path().to_path_buf(), size: image.len() })?;
                fdc.kinds[i] = Some(kind);
                fdc.media[i] = Some(Media { image, kind });
            }
        }
        Ok(fdc)
    }

    /// The drive types (for the CMOS).
    pub fn kinds(&self) -> [Option<FloppyKind>; 2] {
        self.kinds
    }

    /// Puts `media` in drive `drive` (or takes the disk out), which raises the disk change
    /// line. The drive type stays what it was; a medium of another format reads as
    /// unformatted at the drive's data rate unless the guest changes the rate.
    pub fn change_media(&mut self, drive: usize, media: Option<Box<dyn BlockDevice>>) -> Result<(), FdcError> {
        if drive >= 2 {
            return Ok(());
        }
        self.media[drive] = match media {
            Some(image) => {
                let kind = FloppyKind::from_size(image.len())
                    .ok_or_else(|| FdcError::UnknownSize { path: image.path().to_path_buf(), size: image.len() })?;
                self.kinds[drive].get_or_insert(kind);
                Some(Media { image, kind })
            }
            None => None,
        };
        self.s.drives[drive].changed = true;
        Ok(())
    }

    fn in_reset(&self) -> bool {
        self.s.dor & DOR_NRESET == 0
    }

    fn non_dma(&self) -> bool {
        self.s.specify[1] & 1 != 0
    }

    /// Time for one step pulse: SRT from SPECIFY, in units of the data rate's clock.
    fn step_ns(&self) -> u64 {
        let srt = (self.s.specify[0] >> 4) as u64;
        let units = 16 - srt;
        let unit = match self.s.rate {
            RATE_1M => 500_000,
            RATE_500K => 1_000_000,
            RATE_300K => 1_666_667,
            _ => 2_000_000,
        };
        units * unit
    }

    fn raise(&mut self) {
        self.s.int = true;
    }

    /// IRQ 6 is the interrupt condition gated by the DOR's DMA/interrupt enable.
    fn update_irq(&mut self, cx: &mut DeviceContext) {
        let level = self.s.int && self.s.dor & DOR_DMAEN != 0 && !self.in_reset();
        if level != self.s.irq {
            self.s.irq = level;
            tracing::trace!(level, now = cx.now, "FDC IRQ 6");
            cx.set_irq(FDC_IRQ, level);
        }
    }

    /// The software or hardware reset of the controller (DOR bit 2 low, DSR bit 7).
    fn controller_reset(&mut self) {
        let s = &mut self.s;
        s.phase = Phase::Command;
        s.fifo.clear();
        s.result_pos = 0;
        s.exec = None;
        s.seeks = [None, None, None, None];
        s.sense.clear();
        s.reset_polls = 0;
        s.busy = 0;
        s.int = false;
        s.pcn = [0; 4];
        if !s.lock {
            s.config = CONFIG_DEFAULT;
            s.pretrk = 0;
        }
    }

    /// Leaving reset: with polling on, an interrupt and a "ready changed" status per drive.
    fn reset_done(&mut self) {
        if self.s.config & CONFIG_POLL_OFF == 0 {
            self.s.reset_polls = 4;
            self.raise();
        }
    }

    fn to_result(&mut self, bytes: Vec<u8>) {
        self.s.fifo = bytes;
        self.s.result_pos = 0;
        self.s.phase = Phase::Result;
    }

    fn to_command(&mut self) {
        self.s.fifo.clear();
        self.s.result_pos = 0;
        self.s.phase = Phase::Command;
    }

    fn msr(&self) -> u8 {
        if self.in_reset() {
            return 0;
        }
        let busy = self.s.busy & 0x0F;
        match self.s.phase {
            Phase::Command => MSR_RQM | busy | if self.s.fifo.is_empty() { 0 } else { MSR_CB },
            Phase::Result => MSR_RQM | MSR_DIO | MSR_CB | busy,
            Phase::Execution => {
                let mut v = MSR_CB | busy;
                if let Some(e) = &self.s.exec {
                    if self.non_dma() {
                        v |= MSR_NDMA;
                        if e.at.is_none() {
                            v |= MSR_RQM | if e.op.writes() { 0 } else { MSR_DIO };
                        }
                    }
                }
                v
            }
        }
    }

    fn dir(&self) -> u8 {
        let d = (self.s.dor & DOR_SELECT) as usize;
        let changed = d < 2 && self.kinds[d].is_some() && self.s.drives[d].changed;
        // Bits 6-0 are not driven in PC-AT mode (the hard disk controller's, on an AT).
        0x7F | if changed { 0x80 } else { 0 }
    }

    fn write_dor(&mut self, v: u8) {
        let was_reset = self.in_reset();
        self.s.dor = v;
        if !was_reset && self.in_reset() {
            self.controller_reset();
        } else if was_reset && !self.in_reset() {
            self.reset_done();
        }
    }

    fn write_dsr(&mut self, v: u8) {
        self.s.dsr = v & !DSR_SWRESET;
        self.s.rate = v & 3;
        if v & DSR_SWRESET != 0 && !self.in_reset() {
            self.controller_reset();
            self.reset_done();
        }
    }

    // ---- Command phase. ----

    fn write_fifo(&mut self, v: u8, cx: &mut DeviceContext) {
        match self.s.phase {
            Phase::Command => {
                self.s.fifo.push(v);
                let Some(len) = command_len(self.s.fifo[0]) else {
                    tracing::debug!(cmd = v, "FDC: invalid command");
                    self.to_result(vec![ST0_INVALID]);
                    return;
                };
                if self.s.fifo.len() == len {
                    let cmd = std::mem::take(&mut self.s.fifo);
                    self.execute(&cmd, cx);
                }
            }
            Phase::Execution if self.non_dma() => self.pio_write(v, cx.now),
            _ => tracing::debug!(v, phase = ?self.s.phase, "FDC: FIFO write outside the command phase"),
        }
    }

    fn read_fifo(&mut self, cx: &mut DeviceContext) -> u8 {
        match self.s.phase {
            Phase::Result => {
                // Reading the result clears the interrupt.
                self.s.int = false;
                let v = self.s.fifo.get(self.s.result_pos).copied().unwrap_or(0);
                self.s.result_pos += 1;
                if self.s.result_pos >= self.s.fifo.len() {
                    self.to_command();
                }
                v
            }
            Phase::Execution if self.non_dma() => self.pio_read(cx.now),
            _ => {
                tracing::debug!(phase = ?self.s.phase, "FDC: FIFO read with no data to give");
                0xFF
            }
        }
    }

    fn execute(&mut self, cmd: &[u8], cx: &mut DeviceContext) {
        let now = cx.now;
        let drive = cmd.get(1).map_or(0, |b| b & 3);
        let head = cmd.get(1).map_or(0, |b| (b >> 2) & 1);
        match cmd[0] & 0x1F {
            0x06 | 0x0C | 0x05 | 0x09 => {
                let op = match cmd[0] & 0x1F {
                    0x06 => Op::Read,
                    0x0C => Op::ReadDeleted,
                    0x05 => Op::Write,
                    _ => Op::WriteDeleted,
                };
                self.s.last_eot = cmd[6];
                // The 82077AA seeks on its own only with EIS; QEMU's controller always
                // does, and SeaBIOS relies on it (it never seeks before READ DATA).
                let seeking = drive < 2 && self.s.drives[drive as usize].track != cmd[2];
                self.start(Exec {
                    op,
                    drive,
                    head,
                    c: cmd[2],
                    h: cmd[3],
                    r: cmd[4],
                    n: cmd[5],
                    eot: cmd[6],
                    mt: cmd[0] & 0x80 != 0,
                    mfm: cmd[0] & 0x40 != 0,
                    sk: cmd[0] & 0x20 != 0,
                    sc: 0,
                    filler: 0,
                    done: 0,
                    seeking,
                    at: None,
                    buf: Vec::new(),
                    pos: 0,
                    stalled_since: None,
                }, now);
            }
            0x0A | 0x0D => {
                let format = cmd[0] & 0x1F == 0x0D;
                let d = drive as usize;
                let track = if d < 2 { self.s.drives[d].track } else { 0 };
                self.start(Exec {
                    op: if format { Op::Format } else { Op::ReadId },
                    drive,
                    head,
                    c: track,
                    h: head,
                    r: 1,
                    n: if format { cmd[2] } else { 2 },
                    eot: 0,
                    mt: false,
                    mfm: cmd[0] & 0x40 != 0,
                    sk: false,
                    sc: if format { cmd[3] } else { 0 },
                    filler: if format { cmd[5] } else { 0 },
                    done: 0,
                    seeking: false,
                    at: None,
                    buf: Vec::new(),
                    pos: 0,
                    stalled_since: None,
                }, now);
            }
            0x07 => {
                let from = if drive < 2 { self.s.drives[drive as usize].track } else { RECALIBRATE_STEPS };
                let steps = from.min(RECALIBRATE_STEPS);
                let reached = drive < 2 && self.kinds[drive as usize].is_some() && from <= RECALIBRATE_STEPS;
                let st0 = ST0_SEEK_END | drive | if reached { 0 } else { ST0_ABNORMAL | ST0_EQUIPMENT };
                self.start_seek(drive, from - steps, steps, st0, now);
                self.s.pcn[drive as usize] = 0;
            }
            0x0F => {
                let d = drive as usize;
                let (target, steps) = if cmd[0] & 0x80 != 0 {
                    // Relative seek: DIR (bit 6) 1 steps in (towards higher tracks).
                    let n = cmd[2];
                    if cmd[0] & 0x40 != 0 {
                        (self.s.pcn[d].wrapping_add(n), n)
                    } else {
                        (self.s.pcn[d].wrapping_sub(n), n)
                    }
                } else {
                    (cmd[2], cmd[2].abs_diff(self.s.pcn[d]))
                };
                let phys = if d < 2 { self.s.drives[d].track } else { 0 };
                let up = if cmd[0] & 0x80 != 0 { cmd[0] & 0x40 != 0 } else { target > self.s.pcn[d] };
                let last = if d < 2 { self.kinds[d].map_or(0, |k| k.last_track()) } else { 0 };
                let end = if up { phys.saturating_add(steps).min(last) } else { phys.saturating_sub(steps) };
                self.start_seek(drive, end, steps, ST0_SEEK_END | head << 2 | drive, now);
                self.s.pcn[d] = target;
            }
            0x08 => self.sense_interrupt(),
            0x03 => {
                self.s.specify = [cmd[1], cmd[2]];
                self.to_command();
            }
            0x04 => {
                let d = drive as usize;
                let (wp, t0) = if d < 2 && self.kinds[d].is_some() {
                    let wp = self.media[d].as_ref().map_or(true, |m| m.image.is_read_only());
                    (wp, self.s.drives[d].track == 0)
                } else {
                    (true, false)
                };
                let st3 = ST3_ONE | head << 2 | drive | if wp { ST3_WP } else { 0 } | if t0 { ST3_T0 } else { 0 };
                self.to_result(vec![st3]);
            }
            0x10 => self.to_result(vec![0x90]),
            0x13 => {
                self.s.config = cmd[2] & 0x7F;
                self.s.pretrk = cmd[3];
                self.to_command();
            }
            0x14 => {
                self.s.lock = cmd[0] & 0x80 != 0;
                self.to_result(vec![(self.s.lock as u8) << 4]);
            }
            0x0E => {
                let s = &self.s;
                let lock_perp = (s.lock as u8) << 7 | (s.perpendicular & 0x3F);
                self.to_result(vec![
                    s.pcn[0], s.pcn[1], s.pcn[2], s.pcn[3], s.specify[0], s.specify[1], s.last_eot, lock_perp, s.config,
                    s.pretrk,
                ]);
            }
            0x12 => {
                // OW (bit 7) lets D3-D0 change; GAP and WGATE always do.
                let v = cmd[1];
                let drives = if v & 0x80 != 0 { v & 0x3C } else { self.s.perpendicular & 0x3C };
                self.s.perpendicular = drives | (v & 0x03);
                self.to_command();
            }
            _ => self.to_result(vec![ST0_INVALID]),
        }
    }

    fn start(&mut self, mut e: Exec, now: u64) {
        if e.seeking {
            let d = e.drive as usize;
            let steps = self.s.drives[d].track.abs_diff(e.c) as u64;
            e.at = Some(now + COMMAND_NS + steps * self.step_ns());
        } else {
            e.at = Some(now + COMMAND_NS);
        }
        if !e.mfm {
            tracing::debug!(op = ?e.op, "FDC: FM (single density) command on MFM media");
        }
        self.s.exec = Some(e);
        self.s.phase = Phase::Execution;
        self.s.fifo.clear();
    }

    fn start_seek(&mut self, drive: u8, end: u8, steps: u8, st0: u8, now: u64) {
        let d = drive as usize;
        self.s.busy |= 1 << d;
        let done_at = now + COMMAND_NS + steps as u64 * self.step_ns();
        self.s.seeks[d] = Some(Seek { done_at, target: end, st0 });
        self.to_command();
    }

    fn sense_interrupt(&mut self) {
        self.s.int = false;
        if self.s.reset_polls > 0 {
            let d = 4 - self.s.reset_polls;
            self.s.reset_polls -= 1;
            self.to_result(vec![ST0_READY_CHANGED | d, self.s.pcn[d as usize]]);
        } else if !self.s.sense.is_empty() {
            let (d, st0) = self.s.sense.remove(0);
            self.s.busy &= !(1 << d);
            self.to_result(vec![st0, self.s.pcn[d as usize]]);
            if !self.s.sense.is_empty() {
                self.raise();
            }
        } else {
            self.to_result(vec![ST0_INVALID]);
        }
    }

    // ---- Execution phase. ----

    /// Runs seeks and the command in execution as far as virtual time `now` allows.
    fn run(&mut self, cx: &mut DeviceContext) {
        let now = cx.now;
        for d in 0..4 {
            if let Some(seek) = self.s.seeks[d].clone().filter(|s| s.done_at <= now) {
                self.s.seeks[d] = None;
                if d < 2 {
                    let drive = &mut self.s.drives[d];
                    if drive.track != seek.target && self.media[d].is_some() {
                        drive.changed = false;
                    }
                    drive.track = seek.target;
                }
                self.s.sense.push((d as u8, seek.st0));
                self.s.reset_polls = 0;
                self.raise();
            }
        }
        // A stalled host can leave many steps due; each moves at least one sector or ends.
        for _ in 0..256 {
            match self.s.exec.as_ref().and_then(|e| e.at) {
                Some(at) if at <= now => self.step(cx),
                _ => break,
            }
        }
    }

    /// Ends the command with a result phase: ST0-ST2 and the sector ID.
    fn finish(&mut self, ic: u8, st1: u8, st2: u8, chrn: [u8; 4]) {
        let Some(e) = self.s.exec.take() else { return };
        let st0 = ic | e.head << 2 | e.drive;
        self.to_result(vec![st0, st1, st2, chrn[0], chrn[1], chrn[2], chrn[3]]);
        self.raise();
    }

    /// Why the medium under the head cannot be read or written now, as ST1/ST2 bits.
    fn medium_error(&self, e: &Exec) -> Option<(u8, u8)> {
        let d = e.drive as usize;
        let Some(m) = self.media.get(d).and_then(|m| m.as_ref()) else { return Some((ST1_MA, 0)) };
        let (cyls, heads, _) = m.kind.geometry();
        let track = self.s.drives[d].track;
        if self.s.rate != m.kind.data_rate() || !e.mfm || track >= cyls || e.head >= heads {
            // Nothing the controller can decode at this rate and density: no address marks.
            return Some((ST1_MA, 0));
        }
        None
    }

    fn step(&mut self, cx: &mut DeviceContext) {
        let now = cx.now;
        let Some(mut e) = self.s.exec.take() else { return };
        let d = e.drive as usize;
        if e.seeking {
            e.seeking = false;
            if d < 2 {
                let last = self.kinds[d].map_or(0, |k| k.last_track());
                let target = e.c.min(last);
                if self.s.drives[d].track != target && self.media[d].is_some() {
                    self.s.drives[d].changed = false;
                }
                self.s.drives[d].track = target;
                self.s.pcn[d] = e.c;
            }
            e.at = Some(now + SECTOR_NS);
            self.s.exec = Some(e);
            return;
        }
        let id = [e.c, e.h, e.r, e.n];
        if let Some((st1, st2)) = self.medium_error(&e) {
            self.s.exec = Some(e);
            self.finish(ST0_ABNORMAL, st1, st2, id);
            return;
        }
        if e.op.writes() && self.media[d].as_ref().is_some_and(|m| m.image.is_read_only()) {
            self.s.exec = Some(e);
            self.finish(ST0_ABNORMAL, ST1_NW, 0, id);
            return;
        }
        match e.op {
            Op::ReadId => {
                let kind = self.media[d].as_ref().map(|m| m.kind).unwrap_or(FloppyKind::M1_44);
                let spt = kind.geometry().2;
                let drive = &mut self.s.drives[d];
                let r = drive.next_id % spt + 1;
                drive.next_id = r % spt;
                let c = drive.track;
                self.s.exec = Some(e.clone());
                self.finish(0, 0, 0, [c, e.head, r, 2]);
            }
            Op::Format => self.format_step(e, cx),
            _ => self.data_step(e, cx),
        }
    }

    /// The sector `e` asks for, as an LBA of the medium, or the ST1/ST2 bits of why no ID
    /// on the track matches.
    fn locate(&self, e: &Exec) -> Result<u64, (u8, u8)> {
        let d = e.drive as usize;
        let Some(m) = self.media[d].as_ref() else { return Err((ST1_MA, 0)) };
        let (_, heads, spt) = m.kind.geometry();
        let track = self.s.drives[d].track;
        if e.c != track {
            let st2 = if e.c == 0xFF { ST2_BC } else { ST2_WC };
            return Err((ST1_ND, st2));
        }
        if e.h != e.head || e.n != 2 || e.r == 0 || e.r > spt {
            return Err((ST1_ND, 0));
        }
        Ok((track as u64 * heads as u64 + e.head as u64) * spt as u64 + e.r as u64 - 1)
    }

    /// The sector ID after the last one transferred (datasheet table "C, H, R, N after
    /// command termination"), and whether that was the end of the track.
    fn next_id(e: &Exec) -> ([u8; 4], bool) {
        if e.r == e.eot {
            if e.mt && e.head == 0 {
                ([e.c, e.h ^ 1, 1, e.n], true)
            } else {
                let h = if e.mt { e.h ^ 1 } else { e.h };
                ([e.c.wrapping_add(1), h, 1, e.n], true)
            }
        } else {
            ([e.c, e.h, e.r.wrapping_add(1), e.n], false)
        }
    }

    /// After a sector: the next one, the other side (multi-track), or the end.
    fn advance(&mut self, mut e: Exec, tc: bool, st2: u8, now: u64) {
        let (next, end_of_track) = Self::next_id(&e);
        if tc {
            self.s.exec = Some(e);
            self.finish(0, 0, st2, next);
            return;
        }
        if end_of_track {
            if e.mt && e.head == 0 {
                e.head = 1;
                e.h ^= 1;
                e.r = 1;
            } else {
                // Past EOT without terminal count.
                self.s.exec = Some(e);
                self.finish(ST0_ABNORMAL, ST1_EN, st2, next);
                return;
            }
        } else {
            e.r = e.r.wrapping_add(1);
        }
        e.at = Some(now + SECTOR_NS);
        e.buf.clear();
        e.pos = 0;
        self.s.exec = Some(e);
    }

    fn read_sector(&mut self, d: usize, lba: u64) -> Option<Vec<u8>> {
        let m = self.media[d].as_mut()?;
        let mut data = vec![0u8; SECTOR];
        match m.image.read_at(lba * SECTOR_SIZE, &mut data) {
            Ok(()) => Some(data),
            Err(err) => {
                tracing::warn!("floppy read failed: {err}");
                None
            }
        }
    }

    fn write_sector(&mut self, d: usize, lba: u64, data: &[u8]) -> bool {
        let Some(m) = self.media[d].as_mut() else { return false };
        match m.image.write_at(lba * SECTOR_SIZE, data) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!("floppy write failed: {err}");
                false
            }
        }
    }

    fn data_step(&mut self, mut e: Exec, cx: &mut DeviceContext) {
        let now = cx.now;
        let d = e.drive as usize;
        let id = [e.c, e.h, e.r, e.n];
        let lba = match self.locate(&e) {
            Ok(lba) => lba,
            Err((st1, st2)) => {
                self.s.exec = Some(e);
                self.finish(ST0_ABNORMAL, st1, st2, id);
                return;
            }
        };
        let reads = matches!(e.op, Op::Read | Op::ReadDeleted);
        // Every sector of an image carries a normal data mark: READ DELETED skips it with SK
        // and stops after it (control mark) without.
        let mut st2 = 0;
        if e.op == Op::ReadDeleted {
            if e.sk {
                self.advance(e, false, 0, now);
                return;
            }
            st2 = ST2_CM;
        }
        if e.op == Op::WriteDeleted {
            tracing::debug!("FDC: WRITE DELETED DATA stored as normal data (images keep no data marks)");
        }
        if self.non_dma() {
            // Non-DMA: the sector goes through the FIFO; the host is interrupted for it.
            e.buf.clear();
            if reads {
                let Some(data) = self.read_sector(d, lba) else {
                    self.s.exec = Some(e);
                    self.finish(ST0_ABNORMAL, ST1_DE, ST2_DD, id);
                    return;
                };
                e.buf = data;
            }
            e.at = None;
            e.pos = 0;
            self.s.exec = Some(e);
            self.raise();
            return;
        }
        if self.s.dor & DOR_DMAEN == 0 {
            self.stall(e, now);
            return;
        }
        let t = if reads {
            let Some(data) = self.read_sector(d, lba) else {
                self.s.exec = Some(e);
                self.finish(ST0_ABNORMAL, ST1_DE, ST2_DD, id);
                return;
            };
            cx.dma_write(FDC_DMA, &data)
        } else {
            // A terminal count inside the sector: the rest of it is written as zeros.
            let mut data = vec![0u8; SECTOR];
            let t = cx.dma_read(FDC_DMA, &mut data);
            if (t.bytes > 0 || t.terminal_count) && !self.write_sector(d, lba, &data) {
                self.s.exec = Some(e);
                self.finish(ST0_ABNORMAL, ST1_DE, 0, id);
                return;
            }
            t
        };
        if t.bytes == 0 && !t.terminal_count {
            self.stall(e, now);
            return;
        }
        e.stalled_since = None;
        let stop = t.terminal_count || st2 & ST2_CM != 0;
        self.advance(e, stop, st2, now);
    }

    /// The DMA channel did not answer: retry, or give up with an overrun.
    fn stall(&mut self, mut e: Exec, now: u64) {
        let since = *e.stalled_since.get_or_insert(now);
        if now - since >= OVERRUN_NS {
            tracing::debug!("FDC: DMA request not served: overrun");
            let id = [e.c, e.h, e.r, e.n];
            self.s.exec = Some(e);
            self.finish(ST0_ABNORMAL, ST1_OR, 0, id);
            return;
        }
        e.at = Some(now + DMA_RETRY_NS);
        self.s.exec = Some(e);
    }

    fn format_step(&mut self, mut e: Exec, cx: &mut DeviceContext) {
        let now = cx.now;
        let d = e.drive as usize;
        if e.done >= e.sc {
            let id = [e.c, e.h, e.r, e.n];
            self.s.exec = Some(e);
            self.finish(0, 0, 0, id);
            return;
        }
        let mut idf = [0u8; 4];
        let tc = if self.non_dma() {
            if e.buf.len() < 4 {
                e.at = None;
                self.s.exec = Some(e);
                self.raise();
                return;
            }
            idf.copy_from_slice(&e.buf[..4]);
            e.buf.clear();
            false
        } else {
            if self.s.dor & DOR_DMAEN == 0 {
                self.stall(e, now);
                return;
            }
            let t = cx.dma_read(FDC_DMA, &mut idf);
            if t.bytes < 4 && !t.terminal_count {
                self.stall(e, now);
                return;
            }
            t.terminal_count
        };
        e.stalled_since = None;
        let [c, h, r, n] = idf;
        let Some((_, heads, spt)) = self.media[d].as_ref().map(|m| m.kind.geometry()) else { return };
        let track = self.s.drives[d].track;
        if c != track || h != e.head || n != 2 || e.n != 2 || r == 0 || r > spt {
            tracing::debug!(c, h, r, n, track, "FDC: FORMAT TRACK ID the image cannot hold as given");
        }
        let r_at = if (1..=spt).contains(&r) { r } else { e.done % spt + 1 };
        let lba = (track as u64 * heads as u64 + e.head as u64) * spt as u64 + r_at as u64 - 1;
        self.write_sector(d, lba, &[e.filler; SECTOR]);
        e.c = c;
        e.h = h;
        e.r = r;
        e.n = n;
        e.done += 1;
        if tc {
            e.done = e.sc;
        }
        e.at = Some(now + SECTOR_NS);
        self.s.exec = Some(e);
    }

    /// Non-DMA mode: the host reads the sector's bytes from the FIFO.
    fn pio_read(&mut self, now: u64) -> u8 {
        self.s.int = false;
        let Some(e) = self.s.exec.as_mut() else { return 0xFF };
        if e.at.is_some() || e.op.writes() {
            return 0xFF;
        }
        let v = e.buf.get(e.pos).copied().unwrap_or(0xFF);
        e.pos += 1;
        if e.pos >= SECTOR {
            let Some(e) = self.s.exec.take() else { return v };
            let cm = if e.op == Op::ReadDeleted { ST2_CM } else { 0 };
            self.advance(e, cm != 0, cm, now);
        }
        v
    }

    /// Non-DMA mode: the host writes the sector's bytes (or a FORMAT ID) into the FIFO.
    fn pio_write(&mut self, v: u8, now: u64) {
        self.s.int = false;
        let Some(e) = self.s.exec.as_mut() else { return };
        if e.at.is_some() || !e.op.writes() {
            return;
        }
        e.buf.push(v);
        let need = if e.op == Op::Format { 4 } else { SECTOR };
        if e.buf.len() < need {
            return;
        }
        if e.op == Op::Format {
            e.at = Some(now);
            return;
        }
        let Some(mut e) = self.s.exec.take() else { return };
        let d = e.drive as usize;
        if let Ok(lba) = self.locate(&e) {
            let data = std::mem::take(&mut e.buf);
            self.write_sector(d, lba, &data);
        }
        self.advance(e, false, 0, now);
    }

    fn schedule(&self, cx: &mut DeviceContext) {
        let exec = self.s.exec.as_ref().and_then(|e| e.at);
        let seeks = self.s.seeks.iter().flatten().map(|s| s.done_at).min();
        let next = [exec, seeks].into_iter().flatten().min();
        cx.set_deadline(next.map(|t| t.max(cx.now + 1)));
    }

    fn access<R>(&mut self, cx: &mut DeviceContext, f: impl FnOnce(&mut Self, &mut DeviceContext) -> R) -> R {
        self.run(cx);
        let r = f(self, cx);
        self.update_irq(cx);
        self.schedule(cx);
        r
    }

    fn read_byte(&mut self, port: u16, cx: &mut DeviceContext) -> u8 {
        match port - FDC_BASE {
            2 => self.s.dor,
            3 => self.s.tdr,
            4 => self.msr(),
            5 => self.read_fifo(cx),
            7 => self.dir(),
            // SRA and SRB exist in PS/2 mode only.
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8, cx: &mut DeviceContext) {
        match port - FDC_BASE {
            2 => self.write_dor(v),
            3 => self.s.tdr = v & 3,
            4 => self.write_dsr(v),
            5 if !self.in_reset() => self.write_fifo(v, cx),
            7 => self.s.rate = v & 3,
            _ => tracing::debug!(port, v, "FDC: write to a read-only or absent register"),
        }
    }

    fn owns(port: u16) -> bool {
        matches!(port, 0x3F0..=0x3F5 | 0x3F7)
    }
}

impl Device for Fdc {
    fn drive_media(&mut self, unit: usize) -> Option<&mut (dyn crate::block::BlockDevice + 'static)> {
        self.media.get_mut(unit)?.as_mut().map(|m| m.image.as_mut())
    }
    fn name(&self) -> &'static str {
        NAME
    }

    fn flush_media(&mut self) {
        for m in self.media.iter_mut().flatten() {
            if let Err(e) = m.image.flush() {
                tracing::warn!("FDC: flush failed: {e}");
            }
        }
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        self.access(cx, |f, cx| {
            (0..size.min(4)).fold(0u32, |acc, i| {
                let p = port.wrapping_add(i as u16);
                let b = if Fdc::owns(p) { f.read_byte(p, cx) } else { 0xFF };
                if p != 0x3F4 {
                    tracing::trace!(port = format_args!("{p:#x}"), value = format_args!("{b:#04x}"), now = cx.now, "FDC read");
                }
                acc | (b as u32) << (8 * i)
            })
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.access(cx, |f, cx| {
            for i in 0..size.min(4) {
                let p = port.wrapping_add(i as u16);
                if Fdc::owns(p) {
                    tracing::trace!(port = format_args!("{p:#x}"), value = format_args!("{:#04x}", (value >> (8 * i)) as u8), now = cx.now, "FDC write");
                    f.write_byte(p, (value >> (8 * i)) as u8, cx);
                }
            }
        })
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    fn power_on(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    /// The RESET pin: registers to their defaults, the controller held in reset (DOR 0).
    /// Heads stay where they are; the disks stay in their drives.
    fn reset(&mut self) {
        let drives = self.s.drives.clone();
        self.s = State::new();
        self.s.drives = drives;
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        let sane = s.exec.as_ref().map_or(true, |e| e.drive < 4 && e.buf.len() <= SECTOR && e.pos <= SECTOR)
            && s.result_pos <= s.fifo.len().max(1)
            && s.sense.iter().all(|&(d, _)| d < 4);
        if !sane {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom("controller state out of range"),
            });
        }
        self.s = s;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Format, RawDisk};
    use crate::device::{DmaTransfer, IsaDma, MachineEvent};
    use crate::devices::dma::{Dma, IsaDmaBus};
    use crate::memory::Memory;
    use std::path::Path;

    const MS: u64 = 1_000_000;

    /// A raw image of `kind` whose sector at LBA n is filled with bytes (n, offset).
    fn image(dir: &Path, name: &str, kind: FloppyKind, writable: bool) -> Box<dyn BlockDevice> {
        let path = dir.join(name);
        let sectors = kind.size() / SECTOR_SIZE;
        let mut bytes = Vec::with_capacity(kind.size() as usize);
        for lba in 0..sectors {
            for i in 0..SECTOR {
                bytes.push((lba as u8) ^ (i as u8).rotate_left(3));
            }
        }
        std::fs::write(&path, bytes).unwrap();
        Box::new(RawDisk::open(&path, Format::Raw, writable, false, None).unwrap())
    }

    fn sector(lba: u64) -> Vec<u8> {
        (0..SECTOR).map(|i| (lba as u8) ^ (i as u8).rotate_left(3)).collect()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ferrite-fdc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The controller, a DMA controller and memory on a fake clock.
    struct Bench {
        fdc: Fdc,
        dma: Dma,
        mem: Memory,
        now: u64,
        deadline: Option<u64>,
        irq6: Vec<(u64, bool)>,
        dir: PathBuf,
    }

    impl Bench {
        fn new(name: &str, kinds: [Option<(FloppyKind, bool)>; 2]) -> Bench {
            let dir = tmpdir(name);
            let media = [0, 1].map(|i| kinds[i].map(|(k, w)| image(&dir, &format!("d{i}.img"), k, w)));
            let mut b = Bench {
                fdc: Fdc::new(media).unwrap(),
                dma: Dma::new(),
                mem: Memory::new(4 << 20, &vec![0u8; 64 * 1024]).unwrap(),
                now: 0,
                deadline: None,
                irq6: Vec::new(),
                dir,
            };
            b.with(|f, cx| f.power_on(cx));
            // The cascade, as a BIOS sets it up.
            b.dma_out(0xD6, 0xC0);
            b.dma_out(0xD4, 0x00);
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Fdc, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::<MachineEvent>::new());
            let mut dl = self.deadline;
            let mut bus = IsaDmaBus { dma: &mut self.dma, memory: &mut self.mem };
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl).with_dma(&mut bus);
            let r = f(&mut self.fdc, &mut cx);
            self.deadline = dl;
            for (line, level) in irqs {
                assert_eq!(line, FDC_IRQ);
                self.irq6.push((self.now, level));
            }
            assert!(events.is_empty());
            r
        }

        fn dma_out(&mut self, port: u16, v: u8) {
            let (mut irqs, mut events, mut dl) = (Vec::new(), Vec::new(), None);
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            self.dma.io_write(port, 1, v as u32, &mut cx);
        }

        /// Channel 2 for `len` bytes at `addr`, in `mode` (0x46 write to memory, 0x4A read).
        fn dma_setup(&mut self, mode: u8, addr: u32, len: u32) {
            self.dma_out(0x0A, 0x06);
            self.dma_out(0x0C, 0);
            self.dma_out(0x04, addr as u8);
            self.dma_out(0x04, (addr >> 8) as u8);
            self.dma_out(0x81, (addr >> 16) as u8);
            self.dma_out(0x0C, 0);
            self.dma_out(0x05, (len - 1) as u8);
            self.dma_out(0x05, ((len - 1) >> 8) as u8);
            self.dma_out(0x0B, mode);
            self.dma_out(0x0A, 0x02);
        }

        fn out(&mut self, port: u16, v: u8) {
            self.with(|f, cx| f.io_write(port, 1, v as u32, cx));
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|f, cx| f.io_read(port, 1, cx)) as u8
        }

        fn msr(&mut self) -> u8 {
            self.inb(0x3F4)
        }

        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                self.now = self.now.max(d);
                self.deadline = None;
                self.with(|f, cx| f.tick(cx));
            }
            self.now = t;
        }

        /// Runs until IRQ 6 is high (or `limit` passes); returns when it rose.
        fn wait_irq(&mut self, limit: u64) -> Option<u64> {
            if self.fdc.s.irq {
                return self.irq6.iter().rev().find(|e| e.1).map(|e| e.0);
            }
            let seen = self.irq6.len();
            let end = self.now + limit;
            while self.now < end {
                if let Some(&(t, true)) = self.irq6[seen..].iter().find(|e| e.1) {
                    return Some(t);
                }
                match self.deadline {
                    Some(d) if d <= end => self.run_to(d),
                    _ => self.run_to(end),
                }
            }
            self.irq6[seen..].iter().find(|e| e.1).map(|e| e.0)
        }

        fn command(&mut self, bytes: &[u8]) {
            for &b in bytes {
                assert_eq!(self.msr() & (MSR_RQM | MSR_DIO), MSR_RQM, "ready for a command byte");
                self.out(0x3F5, b);
            }
        }

        fn result(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            while self.msr() & (MSR_RQM | MSR_DIO) == MSR_RQM | MSR_DIO {
                out.push(self.inb(0x3F5));
            }
            out
        }

        /// DOR reset pulse, the reset interrupt, and the four polling statuses.
        fn init(&mut self) {
            self.out(0x3F2, 0x00);
            self.out(0x3F2, 0x1C); // drive 0, motor on, DMA and IRQ enabled
            assert!(self.wait_irq(MS).is_some());
            for d in 0..4 {
                self.command(&[0x08]);
                assert_eq!(self.result(), vec![0xC0 | d, 0]);
            }
            self.command(&[0x03, 0xAF, 0x02]); // SPECIFY: 6 ms steps at 500 kb/s, DMA
        }

        fn peek(&self, addr: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0; len];
            self.mem.read(addr, &mut v);
            v
        }
    }

    impl Drop for Bench {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn lba(kind: FloppyKind, c: u64, h: u64, r: u64) -> u64 {
        let (_, heads, spt) = kind.geometry();
        (c * heads as u64 + h) * spt as u64 + r - 1
    }

    #[test]
    fn formats_from_image_sizes() {
        assert_eq!(FloppyKind::from_size(1_474_560), Some(FloppyKind::M1_44));
        assert_eq!(FloppyKind::from_size(2_949_120), Some(FloppyKind::M2_88));
        assert_eq!(FloppyKind::from_size(737_280), Some(FloppyKind::K720));
        assert_eq!(FloppyKind::from_size(1_228_800), Some(FloppyKind::M1_2));
        assert_eq!(FloppyKind::from_size(368_640), Some(FloppyKind::K360));
        assert_eq!(FloppyKind::from_size(1_000_000), None);
        let dir = tmpdir("size");
        let path = dir.join("odd.img");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let odd: Box<dyn BlockDevice> = Box::new(RawDisk::open(&path, Format::Raw, false, false, None).unwrap());
        let err = Fdc::new([Some(odd), None]).err().expect("refused");
        assert!(err.to_string().contains("odd.img") && err.to_string().contains("4096"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reset_interrupt_and_polling_statuses() {
        let mut b = Bench::new("reset", [Some((FloppyKind::M1_44, true)), None]);
        assert_eq!(b.msr(), 0, "held in reset at power-on");
        b.out(0x3F2, 0x0C);
        let t = b.wait_irq(MS).unwrap();
        assert_eq!(t, 0, "the interrupt comes with the end of reset");
        assert_eq!(b.msr(), MSR_RQM);
        for d in 0..4 {
            b.command(&[0x08]);
            assert_eq!(b.result(), vec![0xC0 | d, 0]);
        }
        assert_eq!(b.irq6.last(), Some(&(0, false)));
        b.command(&[0x08]);
        assert_eq!(b.result(), vec![0x80], "nothing left to sense");
        // DSR software reset does it again; without the DMA gate no IRQ reaches the PIC.
        b.out(0x3F2, 0x04);
        b.irq6.clear();
        b.out(0x3F4, 0x80);
        assert!(b.irq6.is_empty());
        b.out(0x3F2, 0x0C);
        assert_eq!(b.irq6, vec![(b.now, true)]);
    }

    #[test]
    fn version_configure_lock_dumpreg_perpendicular() {
        let mut b = Bench::new("regs", [Some((FloppyKind::M1_44, true)), None]);
        b.init();
        b.command(&[0x10]);
        assert_eq!(b.result(), vec![0x90]);
        b.command(&[0x13, 0x00, 0x57, 0x05]);
        b.command(&[0x12, 0x86]); // OW, drive 0 perpendicular, GAP
        b.command(&[0x94]);
        assert_eq!(b.result(), vec![0x10]);
        b.command(&[0x0E]);
        assert_eq!(b.result(), vec![0, 0, 0, 0, 0xAF, 0x02, 0, 0x80 | 0x06, 0x57, 0x05]);
        // LOCK keeps CONFIGURE through a reset; PCNs are cleared.
        b.out(0x3F4, 0x80);
        for _ in 0..4 {
            b.command(&[0x08]);
            b.result();
        }
        b.command(&[0x0E]);
        assert_eq!(b.result()[8..], [0x57, 0x05]);
        b.command(&[0x14]);
        assert_eq!(b.result(), vec![0x00]);
        b.command(&[0x1F]);
        assert_eq!(b.result(), vec![0x80], "invalid command");
    }

    #[test]
    fn seek_and_recalibrate_take_step_time_and_sense() {
        let mut b = Bench::new("seek", [Some((FloppyKind::M1_44, true)), None]);
        b.init();
        assert_eq!(b.inb(0x3F7) & 0x80, 0x80, "disk change at power-on");
        b.command(&[0x0F, 0x00, 10]);
        assert_eq!(b.msr(), MSR_RQM | 0x01, "drive 0 busy, controller free");
        let t0 = b.now;
        let t = b.wait_irq(100 * MS).unwrap();
        assert_eq!(t - t0, COMMAND_NS + 10 * 6 * MS, "ten 6 ms steps");
        b.command(&[0x08]);
        assert_eq!(b.result(), vec![0x20, 10]);
        assert_eq!(b.msr(), MSR_RQM, "busy bit cleared by the sense");
        assert_eq!(b.inb(0x3F7) & 0x80, 0, "stepping with a disk cleared DSKCHG");
        // Relative seek in by 5, then out by 7.
        b.command(&[0xCF, 0x04, 5]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        assert_eq!(b.result(), vec![0x24, 15]);
        b.command(&[0x8F, 0x00, 7]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        assert_eq!(b.result(), vec![0x20, 8]);
        b.command(&[0x04, 0x00]);
        assert_eq!(b.result(), vec![0x28], "ST3: not on track 0, not protected");
        b.command(&[0x07, 0x00]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        assert_eq!(b.result(), vec![0x20, 0]);
        b.command(&[0x04, 0x04]);
        assert_eq!(b.result(), vec![0x28 | 0x10 | 0x04]);
        // Drive B: is absent: recalibrate fails with equipment check.
        b.command(&[0x07, 0x01]);
        b.wait_irq(MS * 1000).unwrap();
        b.command(&[0x08]);
        assert_eq!(b.result(), vec![0x71, 0]);
        b.command(&[0x04, 0x01]);
        assert_eq!(b.result(), vec![0x28 | 0x40 | 0x01], "no disk reads as write protected");
    }

    fn read_cmd(mt: bool, drive: u8, c: u8, h: u8, r: u8, eot: u8) -> [u8; 9] {
        [if mt { 0xE6 } else { 0x66 }, h << 2 | drive, c, h, r, 2, eot, 0x1B, 0xFF]
    }

    #[test]
    fn read_data_by_dma_with_implied_seek() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("read", [Some((k, true)), None]);
        b.init();
        b.out(0x3F7, 0x00); // 500 kb/s
        b.dma_setup(0x46, 0x2_0000, 3 * 512);
        b.command(&read_cmd(false, 0, 5, 1, 2, 4));
        assert_eq!(b.msr() & (MSR_RQM | MSR_CB), MSR_CB, "execution phase");
        let t0 = b.now;
        let t = b.wait_irq(MS * 100).unwrap();
        assert_eq!(t - t0, COMMAND_NS + 5 * 6 * MS + 3 * SECTOR_NS - SECTOR_NS + SECTOR_NS);
        assert_eq!(b.result(), vec![0x04, 0, 0, 6, 1, 1, 2], "TC with the EOT sector: the ID after it is C+1, R 1");
        for (i, r) in (2..=4).enumerate() {
            assert_eq!(b.peek(0x2_0000 + i as u64 * 512, 512), sector(lba(k, 5, 1, r)), "sector {r}");
        }
        assert_eq!(b.irq6.last().map(|e| e.1), Some(false), "reading the result cleared IRQ 6");
    }

    #[test]
    fn multi_track_and_end_of_cylinder() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("mt", [Some((k, true)), None]);
        b.init();
        b.dma_setup(0x46, 0x1_0000, 3 * 512);
        b.command(&read_cmd(true, 0, 0, 0, 17, 18));
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result(), vec![0x04, 0, 0, 0, 1, 2, 2], "ended on side 1 sector 1 by TC");
        assert_eq!(b.peek(0x1_0000, 512), sector(lba(k, 0, 0, 17)));
        assert_eq!(b.peek(0x1_0400, 512), sector(lba(k, 0, 1, 1)));
        // EOT without TC and without MT: abnormal termination, end of cylinder.
        b.dma_setup(0x46, 0x1_0000, 8 * 512);
        b.command(&read_cmd(false, 0, 0, 0, 17, 18));
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result(), vec![0x40, 0x80, 0, 1, 0, 1, 2]);
        // TC exactly at EOT with MT on side 1: C+1, head 0, sector 1, normal.
        b.dma_setup(0x46, 0x1_0000, 512);
        b.command(&read_cmd(true, 0, 0, 1, 18, 18));
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result(), vec![0x04, 0, 0, 1, 0, 1, 2]);
    }

    #[test]
    fn read_errors_no_data_rate_and_overrun() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("errors", [Some((k, true)), None]);
        b.init();
        b.dma_setup(0x46, 0x1_0000, 512);
        b.command(&read_cmd(false, 0, 0, 0, 19, 19));
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result(), vec![0x40, 0x04, 0, 0, 0, 19, 2], "no sector 19: ND");
        b.out(0x3F7, 0x02); // 250 kb/s: nothing readable
        b.command(&read_cmd(false, 0, 0, 0, 1, 1));
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result()[..3], [0x40, 0x01, 0], "missing address mark");
        b.command(&[0x4A, 0x00]);
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result()[..3], [0x40, 0x01, 0]);
        b.out(0x3F4, 0x00); // DSR: 500 kb/s again
        for _ in 0..4 {
            b.command(&[0x08]);
            b.result();
        }
        // DMA channel masked: the request is never served and the controller overruns.
        b.dma_out(0x0A, 0x06);
        b.command(&read_cmd(false, 0, 0, 0, 1, 1));
        let t0 = b.now;
        let t = b.wait_irq(100 * MS).unwrap();
        assert!(t - t0 >= OVERRUN_NS);
        assert_eq!(b.result()[..3], [0x40, 0x10, 0], "overrun");
        // Drive B: absent.
        b.dma_setup(0x46, 0x1_0000, 512);
        b.command(&read_cmd(false, 1, 0, 0, 1, 1));
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result()[..2], [0x41, 0x01]);
    }

    #[test]
    fn read_id_walks_the_track() {
        let mut b = Bench::new("readid", [Some((FloppyKind::K720, true)), None]);
        b.init();
        b.out(0x3F7, 0x02); // 250 kb/s for 720 KB
        let mut seen = Vec::new();
        for _ in 0..10 {
            b.command(&[0x4A, 0x04]);
            b.wait_irq(10 * MS).unwrap();
            let r = b.result();
            assert_eq!(r[..5], [0x04, 0, 0, 0, 1]);
            seen.push(r[5]);
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 1]);
    }

    #[test]
    fn write_data_and_write_protect() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("write", [Some((k, true)), Some((k, false))]);
        b.init();
        let data: Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
        b.mem.write(0x3_0000, &data);
        b.dma_setup(0x4A, 0x3_0000, 1024);
        b.command(&[0xC5, 0x00, 2, 0, 3, 2, 18, 0x1B, 0xFF]);
        b.wait_irq(100 * MS).unwrap();
        assert_eq!(b.result(), vec![0x00, 0, 0, 2, 0, 5, 2]);
        // Read them back through the controller.
        b.dma_setup(0x46, 0x5_0000, 1024);
        b.command(&read_cmd(false, 0, 2, 0, 3, 18));
        b.wait_irq(100 * MS).unwrap();
        b.result();
        assert_eq!(b.peek(0x5_0000, 1024), data);
        assert_eq!(b.peek(0x5_0400, 4), vec![0; 4], "nothing beyond the count");
        // Drive B: holds a read-only image.
        b.out(0x3F2, 0x2D);
        b.dma_setup(0x4A, 0x3_0000, 512);
        b.command(&[0xC5, 0x01, 0, 0, 1, 2, 18, 0x1B, 0xFF]);
        b.wait_irq(100 * MS).unwrap();
        assert_eq!(b.result()[..3], [0x41, 0x02, 0], "not writable");
        b.command(&[0x04, 0x01]);
        assert_eq!(b.result(), vec![0x28 | 0x40 | 0x10 | 0x01]);
    }

    #[test]
    fn terminal_count_in_the_middle_of_a_written_sector() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("tcwrite", [Some((k, true)), None]);
        b.init();
        b.mem.write(0x3_0000, &[0xAA; 100]);
        b.dma_setup(0x4A, 0x3_0000, 100);
        b.command(&[0xC5, 0x00, 0, 0, 1, 2, 18, 0x1B, 0xFF]);
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result()[..3], [0x00, 0, 0]);
        b.dma_setup(0x46, 0x6_0000, 512);
        b.command(&read_cmd(false, 0, 0, 0, 1, 18));
        b.wait_irq(10 * MS).unwrap();
        b.result();
        let got = b.peek(0x6_0000, 512);
        assert!(got[..100].iter().all(|&x| x == 0xAA) && got[100..].iter().all(|&x| x == 0), "zero filled");
    }

    #[test]
    fn format_track_by_dma() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("format", [Some((k, true)), None]);
        b.init();
        b.command(&[0x0F, 0x00, 3]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        b.result();
        let ids: Vec<u8> = (1..=18u8).flat_map(|r| [3, 1, r, 2]).collect();
        b.mem.write(0x4_0000, &ids);
        b.dma_setup(0x4A, 0x4_0000, ids.len() as u32);
        b.command(&[0x4D, 0x04, 2, 18, 0x6C, 0xF6]);
        b.wait_irq(100 * MS).unwrap();
        assert_eq!(b.result(), vec![0x04, 0, 0, 3, 1, 18, 2]);
        b.dma_setup(0x46, 0x5_0000, 18 * 512);
        b.command(&read_cmd(false, 0, 3, 1, 1, 18));
        b.wait_irq(100 * MS).unwrap();
        assert_eq!(b.result()[..3], [0x04, 0, 0]);
        assert!(b.peek(0x5_0000, 18 * 512).iter().all(|&x| x == 0xF6));
        b.dma_setup(0x46, 0x5_0000, 512);
        b.command(&read_cmd(false, 0, 3, 0, 1, 18));
        b.wait_irq(100 * MS).unwrap();
        b.result();
        assert_eq!(b.peek(0x5_0000, 512), sector(lba(k, 3, 0, 1)), "the other side is untouched");
    }

    #[test]
    fn non_dma_read_and_write_through_the_fifo() {
        let k = FloppyKind::M2_88;
        let mut b = Bench::new("pio", [Some((k, true)), None]);
        b.init();
        b.command(&[0x03, 0xAF, 0x03]); // non-DMA
        b.out(0x3F7, 0x03); // 1 Mb/s
        b.command(&[0x46, 0x00, 0, 0, 35, 2, 36, 0x1B, 0xFF]);
        let mut got = Vec::new();
        for _ in 0..2 {
            b.wait_irq(10 * MS).unwrap();
            assert_eq!(b.msr() & 0xF0, MSR_RQM | MSR_DIO | MSR_NDMA | MSR_CB);
            for _ in 0..512 {
                got.push(b.inb(0x3F5));
            }
        }
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result(), vec![0x40, 0x80, 0, 1, 0, 1, 2], "no TC without DMA: end of cylinder");
        assert_eq!(got[..512], sector(lba(k, 0, 0, 35))[..]);
        assert_eq!(got[512..], sector(lba(k, 0, 0, 36))[..]);
        b.command(&[0x45, 0x00, 0, 0, 36, 2, 36, 0x1B, 0xFF]);
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.msr() & 0xF0, MSR_RQM | MSR_NDMA | MSR_CB);
        for i in 0..512 {
            b.out(0x3F5, i as u8);
        }
        b.wait_irq(10 * MS).unwrap();
        assert_eq!(b.result()[..3], [0x40, 0x80, 0]);
        b.command(&[0x46, 0x00, 0, 0, 36, 2, 36, 0x1B, 0xFF]);
        b.wait_irq(10 * MS).unwrap();
        let back: Vec<u8> = (0..512).map(|_| b.inb(0x3F5)).collect();
        assert_eq!(back, (0..512).map(|i| i as u8).collect::<Vec<_>>());
    }

    #[test]
    fn disk_change_line_follows_media() {
        let k = FloppyKind::M1_44;
        let mut b = Bench::new("change", [Some((k, true)), None]);
        b.init();
        b.command(&[0x0F, 0x00, 1]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        b.result();
        assert_eq!(b.inb(0x3F7) & 0x80, 0);
        b.fdc.change_media(0, None).unwrap();
        assert_eq!(b.inb(0x3F7) & 0x80, 0x80);
        b.command(&[0x0F, 0x00, 2]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        b.result();
        assert_eq!(b.inb(0x3F7) & 0x80, 0x80, "no disk: stepping does not clear it");
        let img = image(&b.dir.clone(), "new.img", k, true);
        b.fdc.change_media(0, Some(img)).unwrap();
        b.command(&[0x0F, 0x00, 0]);
        b.wait_irq(100 * MS).unwrap();
        b.command(&[0x08]);
        b.result();
        assert_eq!(b.inb(0x3F7) & 0x80, 0);
    }

    #[test]
    fn nonsense_never_panics_or_hangs() {
        let mut b = Bench::new("fuzz", [Some((FloppyKind::M1_44, true)), None]);
        let mut seed = 0x0123_4567_89AB_CDEFu64;
        let mut irqs = 0;
        for _ in 0..30_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = [0x3F0, 0x3F1, 0x3F2, 0x3F3, 0x3F4, 0x3F5, 0x3F5, 0x3F5, 0x3F7][(seed % 9) as usize];
            let v = (seed >> 16) as u8;
            if seed & 0x100 != 0 {
                b.out(port, v);
            } else {
                b.inb(port);
            }
            if seed & 0x3000 == 0 {
                b.dma_setup(if seed & 1 == 0 { 0x46 } else { 0x4A }, (seed >> 24) as u32 & 0xF_FFFF, 1 + (seed >> 44) as u32 % 4096);
            }
            let before = b.irq6.len();
            b.run_to(b.now + (seed >> 40) % (5 * MS));
            irqs += b.irq6.len() - before;
            assert!(!matches!(b.deadline, Some(d) if d <= b.now));
        }
        assert!(irqs > 0);
        b.with(|f, cx| f.io_write(0x3F4, 4, 0xFFFF_FFFF, cx));
        assert_eq!(b.with(|f, cx| f.io_read(0x3F5, 2, cx)) >> 8, 0xFF, "0x3F6 is not ours");
    }

    #[test]
    fn save_restore_in_the_middle_of_a_read() {
        let k = FloppyKind::M1_44;
        let mut a = Bench::new("snap-a", [Some((k, true)), None]);
        a.init();
        a.dma_setup(0x46, 0x2_0000, 4 * 512);
        a.command(&read_cmd(false, 0, 1, 0, 1, 18));
        // Snapshot after the implied seek and the first sector, before the second.
        a.run_to(a.now + COMMAND_NS + 6 * MS + SECTOR_NS + SECTOR_NS / 2);
        assert!(!a.fdc.s.irq);
        let snap = a.fdc.save();
        let dma = a.dma.save();
        let mut b = Bench::new("snap-b", [Some((k, true)), None]);
        b.fdc.restore(&snap).unwrap();
        b.dma.restore(&dma).unwrap();
        b.mem.write(0x2_0000, &a.peek(0x2_0000, 4 * 512));
        b.now = a.now;
        b.deadline = a.deadline;
        let ta = a.wait_irq(100 * MS);
        let tb = b.wait_irq(100 * MS);
        assert_eq!(ta, tb);
        assert_eq!(a.result(), b.result());
        assert_eq!(a.peek(0x2_0000, 4 * 512), b.peek(0x2_0000, 4 * 512));
        assert_eq!(a.fdc.save(), b.fdc.save());
        let mut bad = snap.clone();
        bad.data["sense"] = serde_json::json!([[9, 0]]);
        assert!(b.fdc.restore(&bad).is_err());
        assert!(b.fdc.restore(&DeviceSnapshot::new("dma", VERSION, &())).is_err());
        let _unused: Option<DmaTransfer> = None;
        let _also: Option<&dyn IsaDma> = None;
    }
}
