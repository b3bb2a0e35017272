//! INT 13h (floppy, hard disk and CD-ROM, with the EDD 3.0 extensions 41h-49h and the El
//! Torito functions 4Bh), INT 19h (the boot sequence over floppy, hard disk and El Torito CD in
//! the configured order) and INT 18h. Sectors move between the drives' block backends (the
//! ones the IDE and floppy controllers use) and guest memory as DMA would: `Memory::write`
//! tells the CPU which pages to drop decoded code from.
//!
//! Drive numbers: 00h-01h the floppies, 80h on the IDE hard disks in channel order, E0h on the
//! CD-ROMs. An El Torito boot in floppy or hard disk emulation puts the CD's image at 00h or
//! 80h and moves the real drives of that kind up by one.

use super::{bda, ebda, Action, Bios, Regs};
use crate::block::BlockDevice;
use crate::board::DriveSlot;
use crate::devices::fdc::FloppyKind;
use crate::firmware::Platform;

const SECTOR: u64 = 512;
const CD_BLOCK: u64 = 2048;
/// First drive number of the CD-ROMs.
pub const CD_FIRST: u8 = 0xE0;

/// INT 13h status codes (AH).
mod status {
    pub const BAD_COMMAND: u8 = 0x01;
    pub const WRITE_PROTECTED: u8 = 0x03;
    pub const NOT_FOUND: u8 = 0x04;
    pub const READ_ERROR: u8 = 0x10;
    pub const TIMEOUT: u8 = 0x80;
    pub const NOT_REMOVABLE: u8 = 0xB2;
    pub const WRITE_FAULT: u8 = 0xCC;
}

/// The El Torito specification packet (INT 13h AX=4B01h), as kept in the EBDA after a CD boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CdBoot {
    /// 0 no emulation, 1-3 floppy (1.2, 1.44, 2.88 MB), 4 hard disk.
    media: u8,
    drive: u8,
    /// The CD-ROM's position on the IDE controller (0-3).
    ide: u8,
    /// The image's first 2048-byte block.
    lba: u32,
    load_segment: u16,
    sectors: u16,
    /// Emulated geometry: cylinders, sectors per track, heads.
    cylinders: u16,
    spt: u8,
    heads: u8,
}

const PACKET_SIZE: usize = 0x13;

impl CdBoot {
    fn packet(&self) -> [u8; PACKET_SIZE] {
        let mut p = [0u8; PACKET_SIZE];
        p[0] = PACKET_SIZE as u8;
        p[1] = self.media;
        p[2] = self.drive;
        p[3] = self.ide / 2;
        p[4..8].copy_from_slice(&self.lba.to_le_bytes());
        // Device specification: the CD-ROM is a slave (bit 0) on its channel.
        p[8..10].copy_from_slice(&u16::from(self.ide & 1).to_le_bytes());
        p[0xC..0xE].copy_from_slice(&self.load_segment.to_le_bytes());
        p[0xE..0x10].copy_from_slice(&self.sectors.to_le_bytes());
        let max_cyl = self.cylinders.saturating_sub(1);
        p[0x10] = max_cyl as u8;
        p[0x11] = self.spt & 0x3F | ((max_cyl >> 8) as u8) << 6;
        p[0x12] = self.heads.saturating_sub(1);
        p
    }

    /// The state after a CD boot, if there was one (the "active" byte after the packet).
    fn load(b: &Bios) -> Option<CdBoot> {
        let at = ebda::START + ebda::CD_EMU;
        let mut p = [0u8; PACKET_SIZE + 2];
        b.read(at, &mut p);
        if p[PACKET_SIZE] != 1 {
            return None;
        }
        let max_cyl = u16::from(p[0x10]) | u16::from(p[0x11] >> 6) << 8;
        Some(CdBoot {
            media: p[1],
            drive: p[2],
            ide: p[PACKET_SIZE + 1],
            lba: u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
            load_segment: u16::from_le_bytes([p[0xC], p[0xD]]),
            sectors: u16::from_le_bytes([p[0xE], p[0xF]]),
            cylinders: max_cyl + 1,
            spt: p[0x11] & 0x3F,
            heads: p[0x12].wrapping_add(1),
        })
    }

    fn store(b: &mut Bios, c: Option<&CdBoot>) {
        let at = ebda::START + ebda::CD_EMU;
        match c {
            Some(c) => {
                b.write(at, &c.packet());
                b.write(at + PACKET_SIZE as u64, &[1, c.ide]);
            }
            None => b.write(at + PACKET_SIZE as u64, &[0]),
        }
    }

    /// An emulated drive (floppy or hard disk), as opposed to a no-emulation boot.
    fn emulating(&self) -> bool {
        self.media != 0
    }
}

/// What a drive number stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Floppy(usize),
    Disk(usize),
    Cd(usize),
    /// A disk image on a CD (El Torito emulation): 512-byte sectors from its block `lba`.
    Emulated(CdBoot),
}

fn hard_disks(p: &Platform) -> Vec<usize> {
    p.ide.iter().filter(|d| !d.2).map(|d| usize::from(d.0) * 2 + usize::from(d.1)).collect()
}

fn cdroms(p: &Platform) -> Vec<usize> {
    p.ide.iter().filter(|d| d.2).map(|d| usize::from(d.0) * 2 + usize::from(d.1)).collect()
}

fn resolve(b: &Bios, drive: u8) -> Option<Target> {
    let p = b.m.platform();
    let emu = CdBoot::load(b).filter(CdBoot::emulating);
    if let Some(e) = emu {
        if e.drive == drive {
            return Some(Target::Emulated(e));
        }
    }
    let shift = |hard: bool| u8::from(emu.is_some_and(|e| (e.drive >= 0x80) == hard));
    match drive {
        0x00..=0x7F => {
            let unit = drive.checked_sub(shift(false))?;
            p.floppies.contains(&unit).then_some(Target::Floppy(usize::from(unit)))
        }
        0x80..=0xDF => {
            let k = (drive - 0x80).checked_sub(shift(true))?;
            hard_disks(p).get(usize::from(k)).map(|&i| Target::Disk(i))
        }
        _ => cdroms(p).get(usize::from(drive - CD_FIRST)).map(|&i| Target::Cd(i)),
    }
}

impl Target {
    fn slot(self) -> DriveSlot {
        match self {
            Target::Floppy(u) => DriveSlot::Floppy(u),
            Target::Disk(i) | Target::Cd(i) => DriveSlot::Ide(i),
            Target::Emulated(e) => DriveSlot::Ide(usize::from(e.ide)),
        }
    }

    fn sector_size(self) -> u64 {
        if matches!(self, Target::Cd(_)) {
            CD_BLOCK
        } else {
            SECTOR
        }
    }

    fn is_floppy(self) -> bool {
        matches!(self, Target::Floppy(_)) || matches!(self, Target::Emulated(e) if e.drive < 0x80)
    }

    fn removable(self) -> bool {
        matches!(self, Target::Cd(_) | Target::Floppy(_) | Target::Emulated(_))
    }
}

/// Cylinders, heads and sectors per track as INT 13h reports them for a hard disk: the
/// drive's own geometry, or LBA-assisted translation (heads 16-255, 63 sectors) when it has
/// more than 1,024 cylinders.
fn logical_geometry(media: &mut dyn BlockDevice) -> (u32, u32, u32) {
    let g = crate::devices::ide::ata::default_geometry(media);
    if g.cylinders <= 1024 {
        return (u32::from(g.cylinders), u32::from(g.heads), u32::from(g.sectors));
    }
    let total = media.sector_count();
    let heads = [16u64, 32, 64, 128, 255].into_iter().find(|h| total / (h * 63) <= 1024).unwrap_or(255);
    ((total / (heads * 63)).clamp(1, 1024) as u32, heads as u32, 63)
}

fn floppy_geometry(kind: FloppyKind) -> (u32, u32, u32) {
    let (c, h, s) = kind.geometry();
    (u32::from(c), u32::from(h), u32::from(s))
}

fn emulated_floppy_kind(media: u8) -> FloppyKind {
    match media {
        1 => FloppyKind::M1_2,
        3 => FloppyKind::M2_88,
        _ => FloppyKind::M1_44,
    }
}

/// (cylinders, heads, sectors per track, total sectors) of a target, or a status code.
fn geometry(b: &mut Bios, t: Target) -> Result<(u32, u32, u32, u64), u8> {
    let media = b.m.drive_media(t.slot()).ok_or(status::TIMEOUT)?;
    Ok(match t {
        Target::Floppy(_) => {
            let kind = FloppyKind::from_size(media.len()).unwrap_or(FloppyKind::M1_44);
            let (c, h, s) = floppy_geometry(kind);
            (c, h, s, u64::from(c * h * s))
        }
        Target::Disk(_) => {
            let (c, h, s) = logical_geometry(media);
            (c, h, s, media.sector_count())
        }
        Target::Cd(_) => (0, 0, 0, media.len() / CD_BLOCK),
        Target::Emulated(e) => {
            let (c, h, s) = (u32::from(e.cylinders), u32::from(e.heads), u32::from(e.spt));
            let total = if e.drive < 0x80 {
                u64::from(c * h * s)
            } else {
                (media.len() / SECTOR).saturating_sub(u64::from(e.lba) * 4)
            };
            (c, h, s, total)
        }
    })
}

/// Moves `count` sectors at `lba` between the target and guest memory at `addr`. Returns how
/// many moved, and the status if not all did.
fn transfer(b: &mut Bios, t: Target, lba: u64, count: u64, addr: u64, write: bool) -> (u64, Option<u8>) {
    let total = match geometry(b, t) {
        Ok(g) => g.3,
        Err(e) => return (0, Some(e)),
    };
    if lba >= total || count > total - lba {
        return (0, Some(status::NOT_FOUND));
    }
    let size = t.sector_size();
    let (offset, read_only) = match t {
        Target::Emulated(e) => (u64::from(e.lba) * CD_BLOCK + lba * SECTOR, true),
        Target::Cd(_) => (lba * CD_BLOCK, true),
        _ => (lba * SECTOR, false),
    };
    let Some(media) = b.m.drive_media(t.slot()) else { return (0, Some(status::TIMEOUT)) };
    if write && (read_only || media.is_read_only()) {
        return (0, Some(status::WRITE_PROTECTED));
    }
    // In pieces of at most 64 KiB, so a failure says how far it got.
    let per = (0x1_0000 / size).max(1);
    let mut done = 0;
    let mut buf = Vec::new();
    while done < count {
        let n = per.min(count - done);
        buf.resize((n * size) as usize, 0);
        let at = offset + done * size;
        let mem = addr + done * size;
        if write {
            b.read(mem, &mut buf);
            let Some(media) = b.m.drive_media(t.slot()) else { return (done, Some(status::TIMEOUT)) };
            if let Err(e) = media.write_at(at, &buf) {
                tracing::warn!("BIOS: disk write failed: {e}");
                return (done, Some(status::WRITE_FAULT));
            }
        } else {
            let Some(media) = b.m.drive_media(t.slot()) else { return (done, Some(status::TIMEOUT)) };
            if let Err(e) = media.read_at(at, &mut buf) {
                tracing::warn!("BIOS: disk read failed: {e}");
                return (done, Some(status::READ_ERROR));
            }
            b.write(mem, &buf);
        }
        done += n;
    }
    (done, None)
}

/// The BIOS data area's disk fields and the fixed disk parameter tables (INT 41h, 46h).
pub(super) fn init(b: &mut Bios, p: &Platform) {
    CdBoot::store(b, None);
    let disks = hard_disks(p);
    b.set_bda8(bda::HARD_DISKS, disks.len().min(255) as u8);
    for (k, vector) in [(0usize, 0x41u64), (1, 0x46)] {
        let at = ebda::START + ebda::FDPT + 16 * k as u64;
        let mut t = [0u8; 16];
        if let Some(&i) = disks.get(k) {
            if let Some(media) = b.m.drive_media(DriveSlot::Ide(i)) {
                let (c, h, s) = logical_geometry(media);
                t[0..2].copy_from_slice(&(c as u16).to_le_bytes());
                t[2] = h as u8;
                t[5..7].copy_from_slice(&0xFFFFu16.to_le_bytes());
                t[8] = if h > 8 { 0x08 } else { 0 };
                t[12..14].copy_from_slice(&(c as u16).to_le_bytes());
                t[14] = s as u8;
            }
        }
        b.write(at, &t);
        b.w16(vector * 4, (at & 0xF) as u16);
        b.w16(vector * 4 + 2, (at >> 4) as u16);
    }
}

/// INT 13h.
pub(super) fn int13(b: &mut Bios, r: &mut Regs) -> Action {
    let drive = r.dl();
    let Some(t) = resolve(b, drive) else {
        tracing::debug!(drive, ah = r.ah(), "INT 13h: no such drive");
        // AH=08h and AH=15h on a missing drive answer without an error, as a PC does.
        match r.ah() {
            0x15 => {
                r.set_ah(0);
                r.set_cf(false);
            }
            0x08 if drive < 0x80 || (0x80..CD_FIRST).contains(&drive) => {
                r.set_ax(0);
                r.set_bx(0);
                r.set_cx(0);
                r.set_dh(0);
                r.set_dl(if drive < 0x80 { b.m.platform().floppies.len() as u8 } else { b.bda8(bda::HARD_DISKS) });
                r.set_cf(drive >= 0x80);
                if drive >= 0x80 {
                    r.set_ah(status::BAD_COMMAND);
                }
            }
            _ => r.fail(status::BAD_COMMAND),
        }
        return Action::Return;
    };
    let result = function(b, r, t);
    let code = match result {
        Ok(()) => 0,
        Err(c) => c,
    };
    if r.ah() != 0x01 {
        b.set_bda8(if t.is_floppy() { bda::FLOPPY_STATUS } else { bda::DISK_STATUS }, code);
    }
    match result {
        Ok(()) => r.set_cf(false),
        Err(c) => {
            tracing::debug!(drive, function = format_args!("{:#04x}", r.ah()), status = c, "INT 13h failed");
            r.fail(c)
        }
    }
    Action::Return
}

/// One INT 13h function for an existing drive: `Ok` with the outputs in `r` (AH set to 0 by
/// the caller's convention where the function says so), or the status code.
fn function(b: &mut Bios, r: &mut Regs, t: Target) -> Result<(), u8> {
    match r.ah() {
        // Reset, and the hard disk functions that are no-ops here (initialise, seek, alternate
        // reset, test ready, recalibrate, diagnostics).
        0x00 | 0x09 | 0x0C | 0x0D | 0x10 | 0x11 | 0x14 | 0x17 => {
            r.set_ah(0);
            Ok(())
        }
        0x01 => {
            let s = b.bda8(if t.is_floppy() { bda::FLOPPY_STATUS } else { bda::DISK_STATUS });
            r.set_ah(s);
            if s == 0 {
                Ok(())
            } else {
                Err(s)
            }
        }
        0x02..=0x04 => chs_access(b, r, t),
        // Format a track: the image keeps what it has.
        0x05 => {
            if b.m.drive_media(t.slot()).is_some_and(|m| m.is_read_only()) {
                return Err(status::WRITE_PROTECTED);
            }
            r.set_ah(0);
            Ok(())
        }
        0x08 => parameters(b, r, t),
        0x15 => {
            let (_, _, _, total) = geometry(b, t)?;
            if t.is_floppy() {
                r.set_ah(0x02);
            } else if matches!(t, Target::Cd(_)) {
                r.set_ah(0x02);
            } else {
                r.set_ah(0x03);
                r.set_cx((total >> 16) as u16);
                r.set_dx(total as u16);
            }
            Ok(())
        }
        0x16 | 0x49 => {
            r.set_ah(0);
            Ok(())
        }
        0x18 => {
            r.es = 0xF000;
            r.set_di(0xEFC7);
            r.set_ah(0);
            Ok(())
        }
        0x41 => {
            if r.bx() != 0x55AA {
                return Err(status::BAD_COMMAND);
            }
            r.set_bx(0xAA55);
            r.set_ah(0x30);
            // Fixed disk access (42h-44h, 47h, 48h), removable media (45h, 46h, 49h), EDD (48h
            // with a device parameter table).
            r.set_cx(0x0007);
            Ok(())
        }
        0x42..=0x44 | 0x47 => extended_access(b, r, t),
        0x45 => {
            if !t.removable() {
                return Err(status::NOT_REMOVABLE);
            }
            r.set_ah(0);
            r.set_al(0);
            Ok(())
        }
        0x46 => {
            if !t.removable() {
                return Err(status::NOT_REMOVABLE);
            }
            r.set_ah(0);
            Ok(())
        }
        0x48 => extended_parameters(b, r, t),
        0x4B => el_torito_status(b, r, t),
        other => {
            tracing::debug!(function = format_args!("{other:#04x}"), "INT 13h: function not supported");
            Err(status::BAD_COMMAND)
        }
    }
}

/// AH=02h read, 03h write, 04h verify: AL sectors at CH/CL/DH, to ES:BX.
fn chs_access(b: &mut Bios, r: &mut Regs, t: Target) -> Result<(), u8> {
    if matches!(t, Target::Cd(_)) {
        return Err(status::BAD_COMMAND);
    }
    let count = u64::from(r.al());
    let cylinder = u32::from(r.ch()) | u32::from(r.cl() >> 6) << 8;
    let sector = u32::from(r.cl() & 0x3F);
    let head = u32::from(r.dh());
    let (cyls, heads, spt, _) = geometry(b, t)?;
    if count == 0 || count > 128 || sector == 0 || sector > spt || head >= heads || cylinder >= cyls {
        r.set_al(0);
        return Err(status::BAD_COMMAND);
    }
    let lba = u64::from((cylinder * heads + head) * spt + sector - 1);
    let addr = Regs::lin(r.es, r.bx());
    let (done, err) = match r.ah() {
        0x04 => verify(b, t, lba, count),
        ah => transfer(b, t, lba, count, addr, ah == 0x03),
    };
    r.set_al(done as u8);
    r.set_ah(err.unwrap_or(0));
    err.map_or(Ok(()), Err)
}

fn verify(b: &mut Bios, t: Target, lba: u64, count: u64) -> (u64, Option<u8>) {
    match geometry(b, t) {
        Ok((.., total)) if lba < total && count <= total - lba => (count, None),
        Ok(_) => (0, Some(status::NOT_FOUND)),
        Err(e) => (0, Some(e)),
    }
}

/// AH=08h: drive parameters.
fn parameters(b: &mut Bios, r: &mut Regs, t: Target) -> Result<(), u8> {
    if matches!(t, Target::Cd(_)) {
        return Err(status::BAD_COMMAND);
    }
    let (c, h, s, _) = geometry(b, t)?;
    let max_cyl = c.saturating_sub(1);
    r.set_ax(0);
    r.set_ch(max_cyl as u8);
    r.set_cl((s & 0x3F) as u8 | ((max_cyl >> 8) as u8) << 6);
    r.set_dh(h.saturating_sub(1) as u8);
    if t.is_floppy() {
        let kind = match t {
            Target::Emulated(e) => emulated_floppy_kind(e.media),
            _ => {
                let len = b.m.drive_media(t.slot()).map_or(0, |m| m.len());
                FloppyKind::from_size(len).unwrap_or(FloppyKind::M1_44)
            }
        };
        r.set_bl(kind.cmos_type());
        r.set_bh(0);
        let emu = u8::from(matches!(t, Target::Emulated(_)));
        r.set_dl((b.m.platform().floppies.len() as u8 + emu).max(1));
        r.es = 0xF000;
        r.set_di(0xEFC7);
    } else {
        r.set_dl(b.bda8(bda::HARD_DISKS));
    }
    Ok(())
}

/// The disk address packet of AH=42h-44h/47h at DS:SI: (count at +2, buffer address, LBA).
fn extended_access(b: &mut Bios, r: &mut Regs, t: Target) -> Result<(), u8> {
    let dap = Regs::lin(r.ds, r.si());
    let mut p = [0u8; 0x18];
    b.read(dap, &mut p);
    if p[0] < 0x10 {
        return Err(status::BAD_COMMAND);
    }
    let count = u64::from(u16::from_le_bytes([p[2], p[3]]));
    let off = u16::from_le_bytes([p[4], p[5]]);
    let seg = u16::from_le_bytes([p[6], p[7]]);
    let lba = u64::from_le_bytes(p[8..16].try_into().expect("8 bytes"));
    // FFFF:FFFF with a 24-byte packet: the 64-bit flat address that follows.
    let addr = if off == 0xFFFF && seg == 0xFFFF && p[0] >= 0x18 {
        u64::from_le_bytes(p[16..24].try_into().expect("8 bytes"))
    } else {
        Regs::lin(seg, off)
    };
    let (done, err) = match r.ah() {
        0x42 => transfer(b, t, lba, count, addr, false),
        0x43 => transfer(b, t, lba, count, addr, true),
        0x44 => verify(b, t, lba, count),
        // 47h, extended seek: the sector sought must exist.
        _ => verify(b, t, lba, 1),
    };
    if r.ah() != 0x47 {
        b.w16(dap + 2, done as u16);
    }
    r.set_ah(err.unwrap_or(0));
    err.map_or(Ok(()), Err)
}

/// AH=48h: the EDD drive parameters at DS:SI (the caller's buffer size at +0).
fn extended_parameters(b: &mut Bios, r: &mut Regs, t: Target) -> Result<(), u8> {
    let at = Regs::lin(r.ds, r.si());
    let size = b.r16(at);
    if size < 0x1A {
        return Err(status::BAD_COMMAND);
    }
    let (c, h, s, total) = geometry(b, t)?;
    let mut p = [0u8; 0x1E];
    p[0..2].copy_from_slice(&(if size >= 0x1E { 0x1E } else { 0x1A } as u16).to_le_bytes());
    let mut info: u16 = 0;
    if !matches!(t, Target::Cd(_)) {
        info |= 1 << 1; // the CHS values are valid
    }
    if t.removable() {
        info |= 1 << 2 | 1 << 4 | 1 << 5; // removable, change line, lockable
    }
    p[2..4].copy_from_slice(&info.to_le_bytes());
    let chs = if matches!(t, Target::Cd(_)) { (0, 0, 0) } else { (c, h, s) };
    p[4..8].copy_from_slice(&chs.0.to_le_bytes());
    p[8..12].copy_from_slice(&chs.1.to_le_bytes());
    p[12..16].copy_from_slice(&chs.2.to_le_bytes());
    p[16..24].copy_from_slice(&total.to_le_bytes());
    p[24..26].copy_from_slice(&(t.sector_size() as u16).to_le_bytes());
    // No device parameter table extension.
    p[26..30].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    let n = if size >= 0x1E { 0x1E } else { 0x1A };
    b.write(at, &p[..n]);
    r.set_ah(0);
    Ok(())
}

/// AH=4Bh: AL=00h terminate emulation, AL=01h status; the specification packet to DS:SI.
fn el_torito_status(b: &mut Bios, r: &mut Regs, t: Target) -> Result<(), u8> {
    let Some(c) = CdBoot::load(b) else { return Err(status::BAD_COMMAND) };
    let matches = match t {
        Target::Emulated(_) => true,
        Target::Cd(i) => usize::from(c.ide) == i && !c.emulating(),
        _ => false,
    };
    if !matches || r.al() > 1 {
        return Err(status::BAD_COMMAND);
    }
    b.write(Regs::lin(r.ds, r.si()), &c.packet());
    if r.al() == 0 && c.emulating() {
        CdBoot::store(b, None);
    }
    r.set_ah(0);
    Ok(())
}

/// INT 18h: no boot device could be started.
pub(super) fn int18(b: &mut Bios, _r: &mut Regs) -> Action {
    let text = "No bootable device.\r\n";
    b.print(text);
    for c in text.bytes() {
        super::system::serial_send(b, 0, c);
    }
    Action::Return
}

/// INT 19h: boot from the first device in the configured order that has a boot sector: its
/// code loaded at 0000:7C00 (an El Torito image where its entry says), DL the drive, and this
/// interrupt returning there. CF set when nothing could be booted.
pub(super) fn int19(b: &mut Bios, r: &mut Regs) -> Action {
    let p = b.m.platform().clone();
    let mut order: Vec<char> = p.boot_order.chars().map(|c| c.to_ascii_lowercase()).collect();
    if order.is_empty() {
        order = vec!['c', 'd', 'a'];
    }
    CdBoot::store(b, None);
    init(b, &p);
    for letter in order {
        let booted = match letter {
            'a' if !p.floppies.is_empty() => {
                b.print("Booting from Floppy...\r\n");
                boot_sector(b, r, 0x00)
            }
            'c' if !hard_disks(&p).is_empty() => {
                b.print("Booting from Hard Disk...\r\n");
                boot_sector(b, r, 0x80)
            }
            'd' => cdroms(&p).into_iter().enumerate().any(|(k, ide)| {
                b.print("Booting from DVD/CD...\r\n");
                boot_cd(b, r, k as u8, ide)
            }),
            _ => false,
        };
        if booted {
            r.set_cf(false);
            // The boot code starts with interrupts enabled and the direction flag clear.
            r.flags = super::IF | 0x0002;
            return Action::Return;
        }
    }
    r.set_cf(true);
    Action::Return
}

/// Loads sector 0 of `drive` at 0000:7C00; it must end in the 55AAh signature (floppies too,
/// as SeaBIOS checks by default).
fn boot_sector(b: &mut Bios, r: &mut Regs, drive: u8) -> bool {
    let Some(t) = resolve(b, drive) else { return false };
    let (_, err) = transfer(b, t, 0, 1, 0x7C00, false);
    if let Some(e) = err {
        b.print(&format!("Boot failed: could not read the boot sector (status {e:#04x})\r\n"));
        return false;
    }
    if b.r16(0x7DFE) != 0xAA55 {
        b.print("Boot failed: not a bootable disk\r\n");
        return false;
    }
    start(r, 0, 0x7C00, drive);
    true
}

fn start(r: &mut Regs, cs: u16, ip: u16, drive: u8) {
    r.cs = cs;
    r.ip = ip;
    r.eax = 0;
    r.ebx = 0;
    r.ecx = 0;
    r.edx = u32::from(drive);
    r.esi = 0;
    r.edi = 0;
    r.ebp = 0;
    r.ds = 0;
    r.es = 0;
    r.fs = 0;
    r.gs = 0;
}

/// El Torito: the boot catalog from the Boot Record Volume Descriptor (block 17), its initial
/// entry, and the image loaded and, for floppy and hard disk emulation, mapped to 00h/80h.
fn boot_cd(b: &mut Bios, r: &mut Regs, k: u8, ide: usize) -> bool {
    let drive = CD_FIRST + k;
    let cd = Target::Cd(ide);
    let mut block = [0u8; CD_BLOCK as usize];
    if transfer(b, cd, 17, 1, 0x7C00, false).1.is_some() {
        b.print("Boot failed: could not read the CD\r\n");
        return false;
    }
    b.read(0x7C00, &mut block);
    if block[0] != 0 || &block[1..6] != b"CD001" || &block[7..30] != b"EL TORITO SPECIFICATION" {
        b.print("Boot failed: the CD is not bootable (no El Torito boot record)\r\n");
        return false;
    }
    let catalog = u32::from_le_bytes([block[0x47], block[0x48], block[0x49], block[0x4A]]);
    if transfer(b, cd, u64::from(catalog), 1, 0x7C00, false).1.is_some() {
        return false;
    }
    b.read(0x7C00, &mut block);
    let sum = block[..32].chunks(2).fold(0u16, |s, w| s.wrapping_add(u16::from_le_bytes([w[0], w[1]])));
    if block[0] != 1 || block[0x1E..0x20] != [0x55, 0xAA] || sum != 0 {
        b.print("Boot failed: bad El Torito validation entry\r\n");
        return false;
    }
    let e = &block[0x20..0x40];
    if e[0] != 0x88 {
        b.print("Boot failed: the CD's boot entry is not bootable\r\n");
        return false;
    }
    let media = e[1] & 0x0F;
    let load_segment = match u16::from_le_bytes([e[2], e[3]]) {
        0 => 0x07C0,
        s => s,
    };
    let sectors = u16::from_le_bytes([e[6], e[7]]);
    let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
    let mut boot = CdBoot { media, drive, ide: ide as u8, lba, load_segment, sectors, ..CdBoot::default() };
    match media {
        0 => {
            // No emulation: `sectors` 512-byte sectors of the image at the load segment.
            let bytes = u64::from(sectors.max(1)) * SECTOR;
            let blocks = bytes.div_ceil(CD_BLOCK);
            let mut image = vec![0u8; (blocks * CD_BLOCK) as usize];
            let Some(m) = b.m.drive_media(DriveSlot::Ide(ide)) else { return false };
            if m.read_at(u64::from(lba) * CD_BLOCK, &mut image).is_err() {
                return false;
            }
            b.write(u64::from(load_segment) << 4, &image[..bytes as usize]);
            CdBoot::store(b, Some(&boot));
            let (cs, ip) = if load_segment == 0x07C0 { (0, 0x7C00) } else { (load_segment, 0) };
            start(r, cs, ip, drive);
            true
        }
        1..=4 => {
            if media == 4 {
                boot.drive = 0x80;
                // The geometry of the first partition in the image's MBR.
                let mut mbr = [0u8; 512];
                let Some(m) = b.m.drive_media(DriveSlot::Ide(ide)) else { return false };
                if m.read_at(u64::from(lba) * CD_BLOCK, &mut mbr).is_err() {
                    return false;
                }
                let p = &mbr[446..462];
                boot.heads = p[5].wrapping_add(1);
                boot.spt = (p[6] & 0x3F).max(1);
                let total = (m.len() / SECTOR).saturating_sub(u64::from(lba) * 4);
                boot.cylinders = (total / (u64::from(boot.heads) * u64::from(boot.spt))).clamp(1, 1024) as u16;
                let n = b.bda8(bda::HARD_DISKS);
                b.set_bda8(bda::HARD_DISKS, n.saturating_add(1));
            } else {
                boot.drive = 0x00;
                let (c, h, s) = emulated_floppy_kind(media).geometry();
                (boot.cylinders, boot.heads, boot.spt) = (u16::from(c), h, s);
                // At least one floppy drive in the equipment word.
                let eq = b.bda16(bda::EQUIPMENT);
                if eq & 1 == 0 {
                    b.set_bda16(bda::EQUIPMENT, eq | 1);
                }
            }
            CdBoot::store(b, Some(&boot));
            let t = Target::Emulated(boot);
            let count = u64::from(sectors.max(1));
            if transfer(b, t, 0, count, u64::from(load_segment) << 4, false).1.is_some() {
                CdBoot::store(b, None);
                return false;
            }
            start(r, load_segment, 0, boot.drive);
            true
        }
        _ => {
            b.print("Boot failed: unknown El Torito media type\r\n");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_packets_round_trip() {
        let c = CdBoot { media: 2, drive: 0, ide: 2, lba: 0x1234, load_segment: 0x7C0, sectors: 4, cylinders: 80, spt: 18, heads: 2 };
        let p = c.packet();
        assert_eq!(p[0], 0x13);
        assert_eq!((p[0x10], p[0x11], p[0x12]), (79, 18, 1));
        assert_eq!(p[3], 1, "the secondary channel");
    }
}
