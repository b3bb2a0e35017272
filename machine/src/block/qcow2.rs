//! qcow2 images (QEMU's docs/interop/qcow2.txt, versions 2 and 3) through the `imago` crate
//! in its synchronous build. imago does the cluster mapping, copy-on-write, allocation and
//! refcounts; this file checks what imago trusts before handing it the image: the header, the
//! L1 and refcount tables lying inside the file (so a hostile header cannot make it allocate
//! gigabytes), and the backing chain (present, no loops, locked), which it opens explicitly
//! so imago never follows a path on its own.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatCreateBuilder, FormatDriverBuilder, Storage, StorageCreateOptions, StorageOpenOptions};

use super::lock::{ImageLock, LockMode};
use super::{check_range, ends_within, file_id, file_len, image_dir, io_err, read_exact_at, relative_path, BlockDevice, BlockError, CheckReport, Format};

pub const MAGIC: &[u8; 4] = b"QFI\xfb";
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Bits 9-55 of an L1 or L2 entry: the host offset.
const OFFSET_MASK: u64 = 0x00FF_FFFF_FFFF_FE00;
const MAX_CHAIN: usize = 256;

type Access = FormatAccess<ImagoFile>;

/// The header fields the checks need.
#[derive(Debug)]
struct Header {
    version: u32,
    cluster_size: u64,
    l1_size: u64,
    l1_offset: u64,
    rt_offset: u64,
    rt_clusters: u64,
    refcount_bits: u64,
    snapshots: u32,
    backing: Option<String>,
    backing_format: Option<String>,
}

fn malformed(path: &Path, problem: String) -> BlockError {
    BlockError::Malformed { path: path.into(), format: Format::Qcow2, problem }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads and checks the header, its extensions, and that the L1 and refcount tables and every
/// table they point at lie inside the file.
fn read_header(file: &File, path: &Path, len: u64) -> Result<Header, BlockError> {
    let mut b = [0u8; 104];
    let n = super::read_up_to(file, path, &mut b, 0)?;
    if n < 72 || !b.starts_with(MAGIC) {
        return Err(BlockError::Truncated { path: path.into(), what: format!("{n} bytes is shorter than a qcow2 header") });
    }
    let version = be32(&b, 4);
    if version != 2 && version != 3 {
        return Err(malformed(path, format!("version {version} (2 and 3 exist)")));
    }
    if version == 3 && n < 104 {
        return Err(BlockError::Truncated { path: path.into(), what: format!("{n} bytes is shorter than a qcow2 v3 header") });
    }
    let cluster_bits = be32(&b, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(malformed(path, format!("cluster size 2^{cluster_bits} (must be 512 bytes to 2 MiB)")));
    }
    let cs = 1u64 << cluster_bits;
    if be32(&b, 32) != 0 {
        return Err(BlockError::Unsupported { path: path.into(), what: "an encrypted qcow2 image".into() });
    }
    let size = be64(&b, 24);
    let l1_size = be32(&b, 36) as u64;
    let l1_offset = be64(&b, 40);
    let rt_offset = be64(&b, 48);
    let rt_clusters = be32(&b, 56) as u64;
    let (incompat, header_len) = if version == 3 { (be64(&b, 72), be32(&b, 100) as u64) } else { (0, 72) };
    let refcount_order = if version == 3 { be32(&b, 96) } else { 4 };
    if refcount_order > 6 {
        return Err(malformed(path, format!("refcount width 2^{refcount_order} bits (at most 64)")));
    }
    if incompat & INCOMPAT_DIRTY != 0 {
        return Err(malformed(path, "marked dirty (its refcounts may be wrong after a crash); repair it with `qemu-img check -r all`".into()));
    }
    if incompat & INCOMPAT_CORRUPT != 0 {
        return Err(malformed(path, "marked corrupt by QEMU; repair it with `qemu-img check -r all`".into()));
    }
    if incompat & INCOMPAT_DATA_FILE != 0 {
        return Err(BlockError::Unsupported { path: path.into(), what: "a qcow2 image with an external data file".into() });
    }
    if header_len < if version == 3 { 104 } else { 72 } || header_len > cs {
        return Err(malformed(path, format!("header length {header_len}")));
    }
    let clusters_for = |bytes: u64| bytes.div_ceil(cs);
    let l2_entries = cs / 8;
    if size > 0 && l1_size < clusters_for(size).div_ceil(l2_entries) {
        return Err(malformed(path, format!("an L1 table of {l1_size} entries cannot map a {size}-byte disk")));
    }
    let within = |what: &str, at: u64, bytes: u64| -> Result<(), BlockError> {
        if at % cs != 0 {
            return Err(malformed(path, format!("{what} at offset {at} is not cluster-aligned")));
        }
        match at.checked_add(bytes) {
            Some(end) if end <= len => Ok(()),
            _ => Err(BlockError::Truncated { path: path.into(), what: format!("{what} ({bytes} bytes at offset {at}) ends past the end of the file ({len} bytes)") }),
        }
    };
    within("the L1 table", l1_offset, l1_size * 8)?;
    within("the refcount table", rt_offset, rt_clusters.saturating_mul(cs))?;
    for (what, at, count) in [("L1", l1_offset, l1_size), ("refcount table", rt_offset, rt_clusters * cs / 8)] {
        let mut table = vec![0u8; (count * 8) as usize];
        read_exact_at(file, path, &mut table, at)?;
        for (i, e) in table.chunks_exact(8).enumerate() {
            let off = u64::from_be_bytes(e.try_into().expect("8 bytes")) & OFFSET_MASK;
            if off != 0 {
                within(&format!("the table that {what} entry {i} points to"), off, cs)?;
            }
        }
    }

    let backing_off = be64(&b, 8);
    let backing_len = be32(&b, 16) as u64;
    let backing = if backing_off != 0 && backing_len != 0 {
        if backing_len > 1023 || backing_off.saturating_add(backing_len) > cs.min(len) {
            return Err(malformed(path, format!("backing file name ({backing_len} bytes at offset {backing_off}) lies outside the header cluster")));
        }
        let mut name = vec![0u8; backing_len as usize];
        read_exact_at(file, path, &mut name, backing_off)?;
        Some(String::from_utf8(name).map_err(|_| malformed(path, "backing file name is not UTF-8".into()))?)
    } else {
        None
    };

    let mut backing_format = None;
    let mut at = header_len;
    while at + 8 <= cs.min(len) {
        let mut eh = [0u8; 8];
        read_exact_at(file, path, &mut eh, at)?;
        let (kind, elen) = (be32(&eh, 0), be32(&eh, 4) as u64);
        if kind == EXT_END {
            break;
        }
        if at + 8 + elen > cs {
            return Err(malformed(path, format!("header extension {kind:#x} at offset {at} runs past the header cluster")));
        }
        if kind == EXT_BACKING_FORMAT {
            let mut f = vec![0u8; elen as usize];
            read_exact_at(file, path, &mut f, at + 8)?;
            backing_format = Some(String::from_utf8_lossy(&f).into_owned());
        }
        at += 8 + elen.next_multiple_of(8);
    }
    Ok(Header {
        version,
        cluster_size: cs,
        l1_size,
        l1_offset,
        rt_offset,
        rt_clusters,
        refcount_bits: 1 << refcount_order,
        snapshots: be32(&b, 60),
        backing,
        backing_format,
    })
}

/// What a walk over all the tables found.
struct Scan {
    /// Bytes of guest data clusters.
    allocated: u64,
    warnings: Vec<String>,
}

/// Walks every L2 table (each entry must point inside the file) and, with `refcounts`,
/// recounts how often each cluster is used and compares with the stored refcounts: a cluster
/// used more often than counted would be handed out again and overwritten, so that is an
/// error; counted but unused (leaked) clusters are only a warning.
fn scan(file: &File, path: &Path, len: u64, h: &Header, refcounts: bool) -> Result<Scan, BlockError> {
    let cs = h.cluster_size;
    let cluster_bits = cs.trailing_zeros() as u64;
    let clusters = len.div_ceil(cs);
    let mut used = if refcounts { vec![0u32; clusters as usize] } else { Vec::new() };
    let use_range = |used: &mut Vec<u32>, at: u64, bytes: u64| {
        if refcounts && bytes > 0 {
            for c in at / cs..=((at + bytes - 1) / cs).min(clusters.saturating_sub(1)) {
                used[c as usize] = used[c as usize].saturating_add(1);
            }
        }
    };
    use_range(&mut used, 0, cs);
    use_range(&mut used, h.l1_offset, h.l1_size * 8);
    use_range(&mut used, h.rt_offset, h.rt_clusters * cs);
    let mut l1 = vec![0u8; (h.l1_size * 8) as usize];
    read_exact_at(file, path, &mut l1, h.l1_offset)?;
    let mut allocated = 0u64;
    let mut l2 = vec![0u8; cs as usize];
    for (i, e) in l1.chunks_exact(8).enumerate() {
        let l2_off = u64::from_be_bytes(e.try_into().expect("8 bytes")) & OFFSET_MASK;
        if l2_off == 0 {
            continue;
        }
        use_range(&mut used, l2_off, cs);
        read_exact_at(file, path, &mut l2, l2_off)?;
        for (j, d) in l2.chunks_exact(8).enumerate() {
            let d = u64::from_be_bytes(d.try_into().expect("8 bytes"));
            if d & (1 << 62) != 0 {
                // Compressed: offset and sector count share the low 62 bits.
                let x = 62 - (cluster_bits - 8);
                let off = d & ((1 << x) - 1);
                let sectors = ((d >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1;
                let end = (off & !511) + sectors * 512;
                if off >= len || end > len.next_multiple_of(512) {
                    return Err(BlockError::Truncated { path: path.into(), what: format!("L2 table {i}, entry {j}: compressed data at {off} lies past the end of the file ({len} bytes)") });
                }
                use_range(&mut used, off, end - off);
                allocated += cs;
                continue;
            }
            let off = d & OFFSET_MASK;
            if off == 0 {
                continue;
            }
            if off % cs != 0 || !ends_within(off, cs, len.next_multiple_of(cs)) {
                return Err(BlockError::Truncated {
                    path: path.into(),
                    what: format!("L2 table {i} (at offset {l2_off}), entry {j}, points to a data cluster at {off}, past the end of the file ({len} bytes)"),
                });
            }
            use_range(&mut used, off, cs);
            allocated += cs;
        }
    }
    let mut warnings = Vec::new();
    if !refcounts {
        return Ok(Scan { allocated, warnings });
    }
    if h.snapshots != 0 {
        warnings.push(format!("{} internal snapshots: their clusters were not recounted", h.snapshots));
        return Ok(Scan { allocated, warnings });
    }
    let mut rt = vec![0u8; (h.rt_clusters * cs) as usize];
    read_exact_at(file, path, &mut rt, h.rt_offset)?;
    let rt: Vec<u64> = rt.chunks_exact(8).map(|e| u64::from_be_bytes(e.try_into().expect("8 bytes")) & !511).collect();
    for &rb in rt.iter().filter(|&&rb| rb != 0) {
        use_range(&mut used, rb, cs);
    }
    let per_block = cs * 8 / h.refcount_bits;
    let mut block = vec![0u8; cs as usize];
    let mut loaded = None;
    let (mut leaked, mut first_leak) = (0u64, None);
    for c in 0..clusters {
        let rb = rt.get((c / per_block) as usize).copied().unwrap_or(0);
        let stored = if rb == 0 {
            0
        } else {
            if loaded != Some(rb) {
                read_exact_at(file, path, &mut block, rb)?;
                loaded = Some(rb);
            }
            let bit = (c % per_block) * h.refcount_bits;
            if h.refcount_bits < 8 {
                // Narrow refcounts pack from the least significant bit of each byte...
                ((block[(bit / 8) as usize] >> (bit % 8)) & ((1u16 << h.refcount_bits) - 1) as u8) as u64
            } else {
                // ...wider ones are big-endian.
                block[(bit / 8) as usize..((bit + h.refcount_bits) / 8) as usize].iter().fold(0u64, |v, &b| (v << 8) | b as u64)
            }
        };
        let want = used[c as usize] as u64;
        if stored < want {
            let cause = if rb == 0 { " (no refcount block covers it)" } else { "" };
            return Err(malformed(path, format!("cluster {c} (offset {}) is used {want} times but its refcount is {stored}{cause}; writing would reuse it. Repair with `qemu-img check -r all`", c * cs)));
        }
        if stored > want {
            leaked += 1;
            first_leak.get_or_insert(c);
        }
    }
    if leaked > 0 {
        warnings.push(format!("{leaked} leaked clusters (counted but unused, first at offset {}): space only; `qemu-img check -r leaks` reclaims it", first_leak.unwrap_or(0) * cs));
    }
    Ok(Scan { allocated, warnings })
}

fn imago_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> BlockError + 'a {
    move |e| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => malformed(path, e.to_string()),
        _ => BlockError::Io { path: path.into(), op, source: e },
    }
}

pub struct Qcow2Disk {
    access: Access,
    path: PathBuf,
    size: u64,
    read_only: bool,
    version: u32,
    cluster_size: u64,
    parents: Vec<PathBuf>,
    _locks: Vec<ImageLock>,
}

/// Everything opened for one chain: the locks stay held as long as the disk is open.
struct Chain {
    seen: Vec<(u64, u64)>,
    locks: Vec<ImageLock>,
    parents: Vec<PathBuf>,
}

impl Qcow2Disk {
    pub fn open(path: &Path, writable: bool, lock: Option<LockMode>) -> Result<Qcow2Disk, BlockError> {
        let mut chain = Chain { seen: Vec::new(), locks: Vec::new(), parents: Vec::new() };
        let (access, header) = open_layer(path, writable, lock, &mut chain)?;
        Ok(Qcow2Disk {
            size: access.size(),
            access,
            path: path.into(),
            read_only: !writable,
            version: header.version,
            cluster_size: header.cluster_size,
            parents: chain.parents,
            _locks: chain.locks,
        })
    }
}

/// Opens one qcow2 layer and, below it, its backing chain.
fn open_layer(path: &Path, writable: bool, lock: Option<LockMode>, chain: &mut Chain) -> Result<(Access, Header), BlockError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    chain.seen.push(file_id(&file, path)?);
    if let Some(m) = lock {
        chain.locks.push(ImageLock::acquire(path, m)?);
    }
    let len = file_len(&file, path)?;
    let header = read_header(&file, path, len)?;
    if writable && header.snapshots != 0 {
        // imago does not know internal snapshots: it would write into clusters they share.
        return Err(BlockError::Unsupported {
            path: path.into(),
            what: format!("writing to a qcow2 image with internal snapshots ({}); open it read-only or delete them with `qemu-img snapshot -d`", header.snapshots),
        });
    }
    scan(&file, path, len, &header, writable)?;
    let backing = match &header.backing {
        None => None,
        Some(name) => Some(open_backing(path, name, header.backing_format.as_deref(), lock.map(|_| LockMode::ReadNoWriters), chain)?),
    };
    let storage = ImagoFile::open(StorageOpenOptions::new().filename(path).write(writable)).map_err(io_err(path, "open"))?;
    let q = Qcow2::<ImagoFile>::builder(storage)
        .write(writable)
        .backing(backing)
        .data_file(None)
        .open(DenyImplicitOpenGate::default())
        .map_err(imago_err(path, "open"))?;
    Ok((FormatAccess::new(q), header))
}

fn open_backing(path: &Path, name: &str, format: Option<&str>, lock: Option<LockMode>, chain: &mut Chain) -> Result<Access, BlockError> {
    let target = image_dir(path).join(name);
    let Ok(file) = File::open(&target) else {
        return Err(BlockError::ParentMissing { path: path.into(), tried: vec![target] });
    };
    if chain.seen.contains(&file_id(&file, &target)?) {
        return Err(BlockError::ParentLoop { path: path.into(), parent: target });
    }
    if chain.seen.len() >= MAX_CHAIN {
        return Err(BlockError::Unsupported { path: path.into(), what: format!("a chain of more than {MAX_CHAIN} backing files") });
    }
    chain.parents.push(target.clone());
    let format = match format {
        Some("qcow2") => Format::Qcow2,
        Some("raw") | Some("file") => Format::Raw,
        Some(other) => return Err(BlockError::Unsupported { path: path.into(), what: format!("backing format {other:?}") }),
        None => super::detect(&target)?,
    };
    match format {
        Format::Qcow2 => Ok(open_layer(&target, false, lock, chain)?.0),
        Format::Raw | Format::Iso => {
            chain.seen.push(file_id(&file, &target)?);
            if let Some(m) = lock {
                chain.locks.push(ImageLock::acquire(&target, m)?);
            }
            let storage = ImagoFile::open(StorageOpenOptions::new().filename(&target).write(false)).map_err(io_err(&target, "open"))?;
            let raw = Raw::<ImagoFile>::builder(storage).write(false).open(DenyImplicitOpenGate::default()).map_err(imago_err(&target, "open"))?;
            Ok(FormatAccess::new(raw))
        }
        Format::Vhd => Err(BlockError::Unsupported { path: path.into(), what: format!("a VHD backing file under a qcow2 image ({})", target.display()) }),
    }
}

impl BlockDevice for Qcow2Disk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.path, offset, buf.len(), self.size)?;
        self.access.read(buf, offset).map_err(imago_err(&self.path, "read"))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly { path: self.path.clone() });
        }
        check_range(&self.path, offset, buf.len(), self.size)?;
        self.access.write(buf, offset).map_err(imago_err(&self.path, "write"))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.access.flush().map_err(imago_err(&self.path, "flush"))?;
        self.access.sync().map_err(imago_err(&self.path, "flush"))
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> Format {
        Format::Qcow2
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the header and every table again.
    fn check(&mut self) -> Result<CheckReport, BlockError> {
        let file = File::open(&self.path).map_err(io_err(&self.path, "open"))?;
        let len = file_len(&file, &self.path)?;
        let h = read_header(&file, &self.path, len)?;
        let Scan { allocated, warnings } = scan(&file, &self.path, len, &h, true)?;
        Ok(CheckReport {
            path: self.path.clone(),
            format: Format::Qcow2,
            detail: format!("qcow2 v{}, {} KiB clusters", self.version, self.cluster_size / 1024),
            virtual_size: self.size,
            allocated,
            parents: self.parents.clone(),
            warnings,
        })
    }
}

/// A new qcow2 image (v3, 64 KiB clusters, 16-bit refcounts), optionally over a qcow2 or raw
/// backing file recorded by its path relative to the new image.
pub fn create(path: &Path, size: u64, parent: Option<&Path>) -> Result<u64, BlockError> {
    let mut backing = None;
    let mut size = size;
    if let Some(p) = parent {
        let (fmt, plen) = match super::detect(p)? {
            Format::Qcow2 => ("qcow2", Qcow2Disk::open(p, false, Some(LockMode::ReadNoWriters))?.len()),
            Format::Raw | Format::Iso => ("raw", super::RawDisk::open(p, Format::Raw, false, false, Some(LockMode::ReadNoWriters))?.len()),
            Format::Vhd => return Err(BlockError::Unsupported { path: path.into(), what: "a qcow2 image over a VHD parent".into() }),
        };
        if size == 0 {
            size = plen;
        }
        let rel = relative_path(&image_dir(path), p);
        let rel = rel.to_str().ok_or_else(|| BlockError::Invalid { path: path.into(), problem: "the parent's path is not UTF-8".into() })?;
        backing = Some((rel.to_string(), fmt.to_string()));
    }
    if size == 0 {
        return Err(BlockError::Invalid { path: path.into(), problem: "a disk needs a size greater than zero".into() });
    }
    drop(super::create_new(path)?);
    let made = (|| {
        let storage = ImagoFile::create_open(StorageCreateOptions::new().filename(path).overwrite(true)).map_err(io_err(path, "create"))?;
        let mut b = Qcow2::<ImagoFile>::create_builder(storage).size(size);
        if let Some((name, fmt)) = backing {
            b = b.backing(name, fmt);
        }
        b.create().map_err(imago_err(path, "create"))?;
        let f = File::open(path).map_err(io_err(path, "open"))?;
        f.sync_all().map_err(io_err(path, "flush"))
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With 512-byte clusters a refcount block covers only 128 KiB and the first refcount table
    /// 8 MiB, so writing 12 MiB makes imago grow both; the recount must still agree.
    #[test]
    fn refcount_structures_grow_consistently() {
        let dir = std::env::temp_dir().join(format!("ferrite-qcow2-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("small-clusters.qcow2");
        let storage = ImagoFile::create_open(StorageCreateOptions::new().filename(&path).overwrite(true)).unwrap();
        Qcow2::<ImagoFile>::create_builder(storage).size(32 << 20).cluster_size(512).create().unwrap();
        let mut d = Qcow2Disk::open(&path, true, Some(LockMode::Write)).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for i in 0..12u64 {
            d.write_at(i * (2 << 20) + 512 * i, &chunk[..(1 << 20) - 512 * i as usize]).unwrap();
        }
        d.flush().unwrap();
        drop(d);
        let mut d = Qcow2Disk::open(&path, true, Some(LockMode::Write)).expect("the recount agrees after growth");
        let report = d.check().unwrap();
        assert!(report.warnings.is_empty(), "{report:?}");
        let mut back = vec![0u8; chunk.len() - 512 * 11];
        d.read_at(11 * (2 << 20) + 512 * 11, &mut back).unwrap();
        assert!(back == chunk[..back.len()]);
        drop(d);
        if let Ok(out) = std::process::Command::new("qemu-img").arg("check").arg(&path).output() {
            assert!(out.status.success(), "qemu-img check: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
