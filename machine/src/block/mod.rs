//! Disk images as the guest's disk controllers see them: one [`BlockDevice`] trait over raw and
//! ISO files, Microsoft VHD (fixed, dynamic, differencing; "Virtual Hard Disk Image Format
//! Specification" v1.0) and qcow2 (through the `imago` crate), plus a discard-on-close overlay
//! for `--snapshot` and read-only disks held in memory (media built into Ferrite). Formats are
//! detected from content, never from the file name.
//!
//! Everything a user hands us is checked when it is opened (checksums, sizes, tables that point
//! outside the file, parents that are missing, changed or loop) and refused with an error that
//! names the file and the problem, before a single byte is written to it.

mod lock;
mod memory;
mod overlay;
mod qcow2;
mod raw;
mod vhd;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use lock::{ImageLock, LockMode};
pub use memory::MemoryDisk;
pub use overlay::Overlay;
pub use raw::RawDisk;
pub use vhd::VhdDisk;
pub use qcow2::Qcow2Disk;

/// The sector size every format here is addressed in.
pub const SECTOR_SIZE: u64 = 512;

/// An image format as found in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// A plain disk image: byte N of the file is byte N of the disk.
    Raw,
    /// An ISO 9660 CD image: raw, but always read-only.
    Iso,
    /// Microsoft Virtual Hard Disk (fixed, dynamic or differencing; QEMU calls it `vpc`).
    Vhd,
    /// QEMU copy-on-write v2 or v3.
    Qcow2,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Iso => "iso",
            Format::Vhd => "vhd",
            Format::Qcow2 => "qcow2",
        })
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "raw" | "img" => Ok(Format::Raw),
            "iso" | "cdrom" => Ok(Format::Iso),
            "vhd" | "vpc" => Ok(Format::Vhd),
            "qcow2" => Ok(Format::Qcow2),
            _ => Err(format!("unknown image format {s:?} (raw, iso, vhd, qcow2)")),
        }
    }
}

/// What [`create`] makes. A `VhdDynamic` with a parent is a differencing VHD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateFormat {
    Raw,
    VhdFixed,
    VhdDynamic,
    Qcow2,
}

impl FromStr for CreateFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<CreateFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "raw" | "img" => Ok(CreateFormat::Raw),
            "vhd" | "vpc" | "vhd-dynamic" => Ok(CreateFormat::VhdDynamic),
            "vhd-fixed" => Ok(CreateFormat::VhdFixed),
            "qcow2" => Ok(CreateFormat::Qcow2),
            _ => Err(format!("unknown image format {s:?} (raw, vhd, vhd-fixed, qcow2)")),
        }
    }
}

/// Cylinders, heads and sectors per track, as the BIOS and ATA IDENTIFY report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

impl Geometry {
    pub fn total_sectors(&self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors as u64
    }

    /// The geometry the VHD specification (appendix "CHS Calculation") gives a disk of
    /// `total_sectors`; capped at 65535/16/255.
    pub fn vhd_for_sectors(total_sectors: u64) -> Geometry {
        let total = total_sectors.min(65535 * 16 * 255);
        let (sectors, heads, cyl_heads);
        if total >= 65535 * 16 * 63 {
            sectors = 255;
            heads = 16;
            cyl_heads = total / 255;
        } else {
            let mut s = 17u64;
            let mut ch = total / s;
            let mut h = ch.div_ceil(1024).max(4);
            if ch >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                ch = total / s;
            }
            if ch >= h * 1024 {
                s = 63;
                h = 16;
                ch = total / s;
            }
            sectors = s;
            heads = h;
            cyl_heads = ch;
        }
        Geometry { cylinders: (cyl_heads / heads) as u16, heads: heads as u8, sectors: sectors as u8 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{}: cannot {op}: {source}", .path.display())]
    Io { path: PathBuf, op: &'static str, source: io::Error },
    #[error("{}: the file is truncated: {what}", .path.display())]
    Truncated { path: PathBuf, what: String },
    #[error("{}: bad {what} checksum (stored {stored:#010x}, computed {computed:#010x})", .path.display())]
    Checksum { path: PathBuf, what: &'static str, stored: u32, computed: u32 },
    #[error("{}: not a valid {format} image: {problem}", .path.display())]
    Malformed { path: PathBuf, format: Format, problem: String },
    #[error("{}: parent image not found (looked for {})", .path.display(), list_paths(.tried))]
    ParentMissing { path: PathBuf, tried: Vec<PathBuf> },
    #[error("{}: parent {} does not match: {problem}", .path.display(), .parent.display())]
    ParentChanged { path: PathBuf, parent: PathBuf, problem: String },
    #[error("{}: the chain of parent images loops back to {}", .path.display(), .parent.display())]
    ParentLoop { path: PathBuf, parent: PathBuf },
    #[error("{}: {problem}", .path.display())]
    Locked { path: PathBuf, problem: String },
    #[error("{}: the image is open read-only", .path.display())]
    ReadOnly { path: PathBuf },
    #[error("{}: access of {len} bytes at offset {offset} is outside the disk ({size} bytes)", .path.display())]
    OutOfRange { path: PathBuf, offset: u64, len: u64, size: u64 },
    #[error("{}: {what} is not supported", .path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: {problem}", .path.display())]
    Invalid { path: PathBuf, problem: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing: no usable parent locator".into();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// What [`BlockDevice::check`] found. Fatal problems are errors; these are the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub path: PathBuf,
    pub format: Format,
    /// The format in more words: "VHD dynamic, 2 MiB blocks", "qcow2 v3".
    pub detail: String,
    pub virtual_size: u64,
    /// Guest bytes stored in this file itself (not in its parents).
    pub allocated: u64,
    /// The parent chain, nearest first.
    pub parents: Vec<PathBuf>,
    /// Harmless oddities: leaked space, a stale footer copy.
    pub warnings: Vec<String>,
}

/// A disk as a controller sees it. Byte-addressed; the sector helpers are for controllers that
/// count in 512-byte sectors. Reads of never-written areas give zeros (or the parent's data).
pub trait BlockDevice: Send {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes every completed write durable: returns only after the host's fsync/fdatasync.
    fn flush(&mut self) -> Result<(), BlockError>;
    /// The disk's size in bytes.
    fn len(&self) -> u64;
    fn is_read_only(&self) -> bool;
    fn format(&self) -> Format;
    fn path(&self) -> &Path;
    /// The geometry recorded in the image (VHD), if any.
    fn geometry(&self) -> Option<Geometry> {
        None
    }
    /// Re-examines the image (and its parents) and reports what it found.
    fn check(&mut self) -> Result<CheckReport, BlockError>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn sector_count(&self) -> u64 {
        self.len() / SECTOR_SIZE
    }
    /// Reads whole sectors starting at `lba`; `buf.len()` must be a multiple of 512.
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let offset = sector_offset(self.path(), lba, buf.len(), self.len())?;
        self.read_at(offset, buf)
    }
    /// Writes whole sectors starting at `lba`; `buf.len()` must be a multiple of 512.
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let offset = sector_offset(self.path(), lba, buf.len(), self.len())?;
        self.write_at(offset, buf)
    }
}

fn sector_offset(path: &Path, lba: u64, len: usize, size: u64) -> Result<u64, BlockError> {
    match lba.checked_mul(SECTOR_SIZE) {
        Some(offset) if len as u64 % SECTOR_SIZE == 0 => Ok(offset),
        _ => Err(BlockError::OutOfRange { path: path.into(), offset: lba.saturating_mul(SECTOR_SIZE), len: len as u64, size }),
    }
}

/// How [`open`] treats an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// `None` detects the format from the content.
    pub format: Option<Format>,
    pub read_only: bool,
    /// Writes go to a temporary overlay that is discarded on close; the image is opened
    /// read-only and never modified.
    pub snapshot: bool,
    /// Take the QEMU-compatible OFD locks (see [`LockMode`]).
    pub locking: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions { format: None, read_only: false, snapshot: false, locking: true }
    }
}

impl OpenOptions {
    /// Applies one `key=value` drive option: `format=vhd`, `readonly=on`, `snapshot=on`,
    /// `locking=off`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let flag = |v: &str| match v {
            "on" | "true" | "yes" | "1" => Ok(true),
            "off" | "false" | "no" | "0" => Ok(false),
            _ => Err(format!("{key}={v}: expected on or off")),
        };
        match key {
            "format" => self.format = Some(value.parse()?),
            "readonly" | "read-only" | "ro" => self.read_only = flag(value)?,
            "snapshot" => self.snapshot = flag(value)?,
            "locking" | "lock" => self.locking = flag(value)?,
            _ => return Err(format!("unknown drive option {key:?} (format, readonly, snapshot, locking)")),
        }
        Ok(())
    }

    fn lock_mode(&self, writable: bool) -> Option<LockMode> {
        match (self.locking, writable) {
            (false, _) => None,
            (true, true) => Some(LockMode::Write),
            (true, false) if self.snapshot => Some(LockMode::ReadNoWriters),
            (true, false) => Some(LockMode::SharedRead),
        }
    }
}

/// Opens an image: detects its format (unless `opts.format` says), checks it and its parents,
/// and locks it. With `opts.snapshot`, the result is an [`Overlay`] over the read-only image.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn BlockDevice>, BlockError> {
    let (format, probed) = match opts.format {
        Some(f) => (f, false),
        None => (detect(path)?, true),
    };
    let writable = !opts.read_only && !opts.snapshot && format != Format::Iso;
    let lock = opts.lock_mode(writable);
    let disk: Box<dyn BlockDevice> = match format {
        Format::Raw | Format::Iso => Box::new(RawDisk::open(path, format, writable, probed, lock)?),
        Format::Vhd => Box::new(VhdDisk::open(path, writable, lock)?),
        Format::Qcow2 => Box::new(Qcow2Disk::open(path, writable, lock)?),
    };
    if opts.snapshot {
        return Ok(Box::new(Overlay::new(disk)?));
    }
    Ok(disk)
}

/// Opens `path` read-only, refusing concurrent writers, and checks it.
pub fn check(path: &Path, opts: &OpenOptions) -> Result<CheckReport, BlockError> {
    let format = match opts.format {
        Some(f) => f,
        None => detect(path)?,
    };
    let lock = if opts.locking { Some(LockMode::ReadNoWriters) } else { None };
    match format {
        Format::Raw | Format::Iso => RawDisk::open(path, format, false, false, lock)?.check(),
        Format::Vhd => VhdDisk::open(path, false, lock)?.check(),
        Format::Qcow2 => Qcow2Disk::open(path, false, lock)?.check(),
    }
}

/// Creates a new image of `size` bytes (0 with a parent: the parent's size) and returns the
/// disk size it got: VHD sizes are rounded up to a whole CHS geometry, as Virtual PC and QEMU
/// do, so every reader agrees on the size. Never overwrites an existing file.
pub fn create(path: &Path, format: CreateFormat, size: u64, parent: Option<&Path>) -> Result<u64, BlockError> {
    match format {
        CreateFormat::Raw => match parent {
            Some(_) => Err(BlockError::Invalid { path: path.into(), problem: "a raw image cannot have a parent".into() }),
            None => raw::create(path, size),
        },
        CreateFormat::VhdFixed => match parent {
            Some(_) => Err(BlockError::Invalid { path: path.into(), problem: "a fixed VHD cannot have a parent; use vhd (dynamic)".into() }),
            None => vhd::create_fixed(path, size),
        },
        CreateFormat::VhdDynamic => match parent {
            Some(p) => vhd::create_differencing(path, p, size),
            None => vhd::create_dynamic(path, size),
        },
        CreateFormat::Qcow2 => qcow2::create(path, size, parent),
    }
}

/// The format of the image at `path`, from its content: a qcow2 magic or a VHD cookie at the
/// start, a VHD footer at the end, an ISO 9660 volume descriptor in sector 16, else raw.
pub fn detect(path: &Path) -> Result<Format, BlockError> {
    let file = File::open(path).map_err(|source| BlockError::Io { path: path.into(), op: "open", source })?;
    let len = file_len(&file, path)?;
    let mut head = [0u8; 512];
    let n = read_up_to(&file, path, &mut head, 0)?;
    if let Some(f) = detect_head(&head[..n]) {
        return Ok(f);
    }
    if len >= 512 {
        let mut tail = [0u8; 512];
        read_exact_at(&file, path, &mut tail, len - 512)?;
        if tail.starts_with(vhd::COOKIE) {
            return Ok(Format::Vhd);
        }
    }
    let mut cd = [0u8; 5];
    if len >= 0x8001 + 5 && read_up_to(&file, path, &mut cd, 0x8001)? == 5 && &cd == b"CD001" {
        return Ok(Format::Iso);
    }
    Ok(Format::Raw)
}

/// The format a first sector announces, if any.
fn detect_head(head: &[u8]) -> Option<Format> {
    if head.starts_with(qcow2::MAGIC) {
        Some(Format::Qcow2)
    } else if head.starts_with(vhd::COOKIE) {
        Some(Format::Vhd)
    } else {
        None
    }
}

pub(crate) fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> BlockError + 'a {
    move |source| BlockError::Io { path: path.into(), op, source }
}

/// The size of a file or block device.
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64, BlockError> {
    use std::io::Seek;
    let meta = file.metadata().map_err(io_err(path, "stat"))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut f = file;
    f.seek(io::SeekFrom::End(0)).map_err(io_err(path, "find the size of"))
}

/// Reads exactly `buf.len()` bytes; running into the end of the file is a truncated image.
pub(crate) fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
    file.read_exact_at(buf, offset).map_err(|source| match source.kind() {
        io::ErrorKind::UnexpectedEof => BlockError::Truncated {
            path: path.into(),
            what: format!("{} bytes at offset {offset} are past the end of the file", buf.len()),
        },
        _ => BlockError::Io { path: path.into(), op: "read", source },
    })
}

/// Reads what there is, up to `buf.len()` bytes; returns how many.
pub(crate) fn read_up_to(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<usize, BlockError> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(BlockError::Io { path: path.into(), op: "read", source }),
        }
    }
    Ok(done)
}

pub(crate) fn write_all_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> Result<(), BlockError> {
    file.write_all_at(buf, offset).map_err(io_err(path, "write"))
}

pub(crate) fn sync_data(file: &File, path: &Path) -> Result<(), BlockError> {
    file.sync_data().map_err(io_err(path, "flush"))
}

/// Whether `len` bytes from `start` end at or before `limit` (no overflow).
pub(crate) fn ends_within(start: u64, len: u64, limit: u64) -> bool {
    matches!(start.checked_add(len), Some(end) if end <= limit)
}

/// Refuses an access outside `[0, size)`.
pub(crate) fn check_range(path: &Path, offset: u64, len: usize, size: u64) -> Result<(), BlockError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { path: path.into(), offset, len: len as u64, size }),
    }
}

/// Creates a new file, refusing to replace an existing one.
pub(crate) fn create_new(path: &Path) -> Result<File, BlockError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => BlockError::Invalid { path: path.into(), problem: "already exists; refusing to overwrite it".into() },
            _ => BlockError::Io { path: path.into(), op: "create", source },
        })
}

/// Identifies a file for loop detection, whatever name it was reached by.
pub(crate) fn file_id(file: &File, path: &Path) -> Result<(u64, u64), BlockError> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().map_err(io_err(path, "stat"))?;
    Ok((m.dev(), m.ino()))
}

/// `target` relative to directory `from`, when both can be resolved; else `target` absolute.
pub(crate) fn relative_path(from: &Path, target: &Path) -> PathBuf {
    let (Ok(from), Ok(target)) = (from.canonicalize(), target.canonicalize()) else {
        return target.to_path_buf();
    };
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// The directory an image's relative references are resolved against.
pub(crate) fn image_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhd_geometry_matches_the_specification_examples() {
        // 2 GiB: 4161 x 16 x 63 is what Virtual PC and QEMU give.
        let g = Geometry::vhd_for_sectors(4 * 1024 * 1024);
        assert_eq!((g.cylinders, g.heads, g.sectors), (4161, 16, 63));
        // Small disks use 17 sectors per track and at least 4 heads.
        let g = Geometry::vhd_for_sectors(20480);
        assert_eq!((g.cylinders, g.heads, g.sectors), (301, 4, 17));
        // Past 65535 x 16 x 63 the spec switches to 255 sectors per track, capped.
        let g = Geometry::vhd_for_sectors(u64::MAX);
        assert_eq!((g.cylinders, g.heads, g.sectors), (65535, 16, 255));
    }

    #[test]
    fn formats_parse_from_drive_options() {
        let mut o = OpenOptions::default();
        o.set("format", "vpc").unwrap();
        o.set("readonly", "on").unwrap();
        assert_eq!(o.format, Some(Format::Vhd));
        assert!(o.read_only && o.locking && !o.snapshot);
        assert!(o.set("format", "vmdk").is_err());
        assert!(o.set("cache", "none").is_err());
        assert_eq!("vhd-fixed".parse::<CreateFormat>(), Ok(CreateFormat::VhdFixed));
    }

    #[test]
    fn relative_paths_climb_and_descend() {
        let base = std::env::temp_dir().join(format!("ferrite-relpath-{}", std::process::id()));
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::fs::create_dir_all(base.join("c")).unwrap();
        std::fs::write(base.join("c/p.vhd"), b"").unwrap();
        std::fs::write(base.join("a/b/q.vhd"), b"").unwrap();
        assert_eq!(relative_path(&base.join("a/b"), &base.join("c/p.vhd")), PathBuf::from("../../c/p.vhd"));
        assert_eq!(relative_path(&base.join("a/b"), &base.join("a/b/q.vhd")), PathBuf::from("q.vhd"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
