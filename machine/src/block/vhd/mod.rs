//! Microsoft Virtual Hard Disk images (Virtual Hard Disk Image Format Specification v1.0; QEMU
//! calls the format `vpc`): fixed disks (raw data plus a footer), dynamic disks (a block
//! allocation table of 2 MiB blocks, each led by a sector bitmap) and differencing disks (a
//! dynamic disk over a read-only parent VHD; a clear bitmap bit means "read the parent").
//!
//! Crash consistency of dynamic and differencing disks. A new block goes at the end of the
//! data: the footer is first written past the new block (so the file never ends without a
//! valid footer), then the block's bitmap and data, and only at the next flush, after an
//! fdatasync, the BAT entries and the bitmaps of blocks that gained sectors, then fdatasync
//! again. A crash at any moment leaves a BAT that points only at blocks whose data reached the
//! disk; what it loses is unflushed writes and, at worst, a block's worth of unreferenced space
//! before the footer, which the next allocation reuses (zero-filled first).

mod create;
mod footer;
mod parent;

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use create::{create_differencing, create_dynamic, create_fixed};
pub use footer::COOKIE;
use footer::*;

use super::lock::{ImageLock, LockMode};
use super::{check_range, ends_within, file_id, file_len, io_err, read_exact_at, sync_data, write_all_at, BlockDevice, BlockError, CheckReport, Format, Geometry};

/// Parents deeper than this are refused (each level holds a file open).
const MAX_CHAIN: usize = 256;

pub struct VhdDisk {
    file: File,
    path: PathBuf,
    footer: Footer,
    size: u64,
    read_only: bool,
    /// The block structures of a dynamic or differencing disk; `None` for a fixed disk.
    sparse: Option<Sparse>,
    warnings: Vec<String>,
    _lock: Option<ImageLock>,
}

#[derive(Clone)]
enum Bitmap {
    /// Every sector of the block is here.
    Full,
    Partial(Box<[u8]>),
}

impl Bitmap {
    fn has(&self, sector: u64) -> bool {
        match self {
            Bitmap::Full => true,
            // The first sector is the most significant bit of byte 0.
            Bitmap::Partial(b) => b[(sector / 8) as usize] & (0x80 >> (sector % 8)) != 0,
        }
    }
}

struct Sparse {
    header: DynamicHeader,
    bat: Vec<u32>,
    block_size: u64,
    bitmap_size: u64,
    bitmaps: HashMap<u32, Bitmap>,
    /// Blocks whose bitmap gained sectors since the last flush.
    dirty_bitmaps: BTreeSet<u32>,
    /// BAT sectors changed since the last flush.
    dirty_bat: BTreeSet<u64>,
    /// Where the next block goes: past every block and every metadata structure.
    next_free: u64,
    footer_pos: u64,
    /// `[next_free, stale_end)` may hold bytes of an allocation a crash cut short.
    stale_end: u64,
    /// The file has no footer at its end (an allocation was cut short); one is written at
    /// `footer_pos` before the first write.
    footer_missing: bool,
    parent: Option<Box<VhdDisk>>,
}

fn malformed(path: &Path, problem: String) -> BlockError {
    BlockError::Malformed { path: path.into(), format: Format::Vhd, problem }
}

impl VhdDisk {
    /// Opens and checks a VHD, and its parents if it is a differencing disk.
    pub fn open(path: &Path, writable: bool, lock: Option<LockMode>) -> Result<VhdDisk, BlockError> {
        Self::open_in_chain(path, writable, lock, &mut Vec::new())
    }

    fn open_in_chain(path: &Path, writable: bool, lock: Option<LockMode>, seen: &mut Vec<(u64, u64)>) -> Result<VhdDisk, BlockError> {
        let file = std::fs::OpenOptions::new().read(true).write(writable).open(path).map_err(io_err(path, "open"))?;
        seen.push(file_id(&file, path)?);
        let lock = lock.map(|m| ImageLock::acquire(path, m)).transpose()?;
        let len = file_len(&file, path)?;
        let (footer, footer_missing, mut warnings) = read_footer(&file, path, len)?;
        let size = footer.current_size;
        let sparse = match footer.disk_type {
            DiskType::Fixed => {
                if len - 512 < size {
                    return Err(BlockError::Truncated {
                        path: path.into(),
                        what: format!("the footer gives a {size}-byte disk but the file holds {} bytes of data", len - 512),
                    });
                }
                None
            }
            DiskType::Dynamic | DiskType::Differencing => {
                let lock_mode = lock.as_ref().map(|_| LockMode::ReadNoWriters);
                Some(Sparse::open(&file, path, &footer, len, footer_missing, lock_mode, seen, &mut warnings)?)
            }
        };
        Ok(VhdDisk { file, path: path.into(), footer, size, read_only: !writable, sparse, warnings, _lock: lock })
    }

    fn kind(&self) -> DiskType {
        self.footer.disk_type
    }

    /// Reads from below this image: the parent, or zeros.
    fn read_below(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.fill(0);
        if let Some(parent) = self.sparse.as_mut().and_then(|s| s.parent.as_mut()) {
            let plen = parent.len();
            if offset < plen {
                let n = ((plen - offset) as usize).min(buf.len());
                parent.read_at(offset, &mut buf[..n])?;
            }
        }
        Ok(())
    }

    fn bitmap(&mut self, block: u32) -> Result<Bitmap, BlockError> {
        let s = self.sparse.as_mut().expect("sparse disk");
        if let Some(b) = s.bitmaps.get(&block) {
            return Ok(b.clone());
        }
        let mut bytes = vec![0u8; s.bitmap_size as usize].into_boxed_slice();
        read_exact_at(&self.file, &self.path, &mut bytes, s.bat[block as usize] as u64 * 512)?;
        let sectors = s.block_size / 512;
        let full_bytes = (sectors / 8) as usize;
        let full = bytes[..full_bytes].iter().all(|&b| b == 0xFF)
            && (sectors % 8 == 0 || bytes[full_bytes] & !(0xFFu8 >> (sectors % 8)) == !(0xFFu8 >> (sectors % 8)));
        let b = if full { Bitmap::Full } else { Bitmap::Partial(bytes) };
        s.bitmaps.insert(block, b.clone());
        Ok(b)
    }

    fn read_sparse(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let (bs, bitmap_size) = {
            let s = self.sparse.as_ref().expect("sparse disk");
            (s.block_size, s.bitmap_size)
        };
        let mut pos = 0usize;
        while pos < buf.len() {
            let off = offset + pos as u64;
            let block = (off / bs) as u32;
            let in_block = off % bs;
            let n = ((bs - in_block) as usize).min(buf.len() - pos);
            let entry = self.sparse.as_ref().expect("sparse disk").bat[block as usize];
            let chunk = &mut buf[pos..pos + n];
            if entry == UNALLOCATED {
                self.read_below(off, chunk)?;
            } else {
                let data = entry as u64 * 512 + bitmap_size;
                let bitmap = self.bitmap(block)?;
                let mut i = 0usize;
                while i < n {
                    let present = bitmap.has((in_block + i as u64) / 512);
                    let mut j = i;
                    while j < n && bitmap.has((in_block + j as u64) / 512) == present {
                        j = ((((in_block + j as u64) / 512 + 1) * 512 - in_block) as usize).min(n);
                    }
                    if present {
                        read_exact_at(&self.file, &self.path, &mut chunk[i..j], data + in_block + i as u64)?;
                    } else {
                        self.read_below(off + i as u64, &mut chunk[i..j])?;
                    }
                    i = j;
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// Writes whole sectors to a dynamic or differencing disk.
    fn write_sparse(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        let s = self.sparse.as_mut().expect("sparse disk");
        if s.footer_missing {
            write_all_at(&self.file, &self.path, &self.footer.encode(), s.footer_pos)?;
            s.footer_missing = false;
        }
        let bs = s.block_size;
        let mut pos = 0usize;
        while pos < buf.len() {
            let off = offset + pos as u64;
            let block = (off / bs) as u32;
            let in_block = off % bs;
            let n = ((bs - in_block) as usize).min(buf.len() - pos);
            let chunk = &buf[pos..pos + n];
            let entry = self.sparse.as_ref().expect("sparse disk").bat[block as usize];
            if entry == UNALLOCATED {
                self.allocate(block, in_block, chunk)?;
            } else {
                let data = entry as u64 * 512 + self.sparse.as_ref().expect("sparse disk").bitmap_size;
                write_all_at(&self.file, &self.path, chunk, data + in_block)?;
                self.mark_present(block, in_block / 512, (in_block + n as u64) / 512)?;
            }
            pos += n;
        }
        Ok(())
    }

    /// Sets the bitmap bits of sectors `[first, end)` of a block; written out at the next flush.
    fn mark_present(&mut self, block: u32, first: u64, end: u64) -> Result<(), BlockError> {
        if let Bitmap::Full = self.bitmap(block)? {
            return Ok(());
        }
        let s = self.sparse.as_mut().expect("sparse disk");
        if let Some(Bitmap::Partial(bits)) = s.bitmaps.get_mut(&block) {
            let mut changed = false;
            for sector in first..end {
                let (byte, mask) = ((sector / 8) as usize, 0x80u8 >> (sector % 8));
                changed |= bits[byte] & mask == 0;
                bits[byte] |= mask;
            }
            if changed {
                s.dirty_bitmaps.insert(block);
            }
        }
        Ok(())
    }

    /// Puts a new block at the end of the data holding `chunk` at `in_block`.
    fn allocate(&mut self, block: u32, in_block: u64, chunk: &[u8]) -> Result<(), BlockError> {
        let differencing = self.kind() == DiskType::Differencing;
        let footer = self.footer.encode();
        let s = self.sparse.as_mut().expect("sparse disk");
        let at = s.next_free;
        let end = at + s.bitmap_size + s.block_size;
        if at / 512 >= UNALLOCATED as u64 {
            return Err(BlockError::Unsupported { path: self.path.clone(), what: "growing a VHD file past 2 TiB".into() });
        }
        // The footer moves first, so the file always ends in a valid one.
        if end > s.footer_pos {
            write_all_at(&self.file, &self.path, &footer, end)?;
            s.footer_pos = end;
        }
        let bitmap = if differencing {
            let mut bits = vec![0u8; s.bitmap_size as usize].into_boxed_slice();
            for sector in in_block / 512..(in_block + chunk.len() as u64) / 512 {
                bits[(sector / 8) as usize] |= 0x80 >> (sector % 8);
            }
            Bitmap::Partial(bits)
        } else {
            // As QEMU does: the whole block is present, and what was not written is zeros.
            Bitmap::Full
        };
        let bitmap_bytes: Box<[u8]> = match &bitmap {
            Bitmap::Full => vec![0xFF; s.bitmap_size as usize].into_boxed_slice(),
            Bitmap::Partial(b) => b.clone(),
        };
        if !differencing && at < s.stale_end {
            // Space an interrupted allocation left behind: clear it, since every sector shows.
            let mut whole = vec![0u8; (end - at) as usize];
            whole[..bitmap_bytes.len()].copy_from_slice(&bitmap_bytes);
            let d = (s.bitmap_size + in_block) as usize;
            whole[d..d + chunk.len()].copy_from_slice(chunk);
            write_all_at(&self.file, &self.path, &whole, at)?;
        } else {
            write_all_at(&self.file, &self.path, &bitmap_bytes, at)?;
            write_all_at(&self.file, &self.path, chunk, at + s.bitmap_size + in_block)?;
        }
        s.bat[block as usize] = (at / 512) as u32;
        s.dirty_bat.insert(block as u64 * 4 / 512);
        s.bitmaps.insert(block, bitmap);
        s.next_free = end;
        Ok(())
    }
}

impl Drop for VhdDisk {
    /// A disk closed without a flush still gets its metadata written, as QEMU does at close;
    /// the controller should flush first to hear about errors.
    fn drop(&mut self) {
        if !self.read_only {
            if let Err(e) = self.flush() {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Finds the footer: at the end of the file, or, for a dynamic disk whose end was cut off by a
/// crash, the copy at offset 0. A footer that is there but damaged is an error.
fn read_footer(file: &File, path: &Path, len: u64) -> Result<(Footer, bool, Vec<String>), BlockError> {
    if len < FOOTER_SIZE as u64 {
        return Err(BlockError::Truncated { path: path.into(), what: format!("{len} bytes is shorter than a VHD footer") });
    }
    let mut end = [0u8; FOOTER_SIZE];
    read_exact_at(file, path, &mut end, len - FOOTER_SIZE as u64)?;
    let mut copy = [0u8; FOOTER_SIZE];
    read_exact_at(file, path, &mut copy, 0)?;
    let mut warnings = Vec::new();
    if end.starts_with(COOKIE) {
        let footer = Footer::parse(&end, path)?;
        if footer.disk_type != DiskType::Fixed && copy != end {
            warnings.push("the footer copy at offset 0 differs from the footer at the end".into());
        }
        return Ok((footer, false, warnings));
    }
    if copy.starts_with(COOKIE) {
        let footer = Footer::parse(&copy, path)?;
        if footer.disk_type == DiskType::Fixed {
            return Err(malformed(path, "a fixed disk without its footer at the end of the file".into()));
        }
        warnings.push("no footer at the end of the file (an interrupted allocation?); used the copy at offset 0".into());
        return Ok((footer, true, warnings));
    }
    Err(malformed(path, "no footer (\"conectix\") at the end of the file nor a copy at its start".into()))
}

impl Sparse {
    #[allow(clippy::too_many_arguments)]
    fn open(
        file: &File,
        path: &Path,
        footer: &Footer,
        len: u64,
        footer_missing: bool,
        parent_lock: Option<LockMode>,
        seen: &mut Vec<(u64, u64)>,
        warnings: &mut Vec<String>,
    ) -> Result<Sparse, BlockError> {
        let header_at = footer.data_offset;
        if !ends_within(header_at, HEADER_SIZE as u64, len) {
            return Err(BlockError::Truncated { path: path.into(), what: format!("the dynamic header at offset {header_at} is past the end of the file ({len} bytes)") });
        }
        let mut hb = [0u8; HEADER_SIZE];
        read_exact_at(file, path, &mut hb, header_at)?;
        let header = DynamicHeader::parse(&hb, path)?;
        let block_size = header.block_size as u64;
        let bitmap_size = header.bitmap_size();
        let needed = footer.current_size.div_ceil(block_size);
        let entries = header.max_table_entries as u64;
        if entries < needed {
            return Err(malformed(path, format!("the BAT has {entries} entries but a {}-byte disk needs {needed}", footer.current_size)));
        }
        let bat_bytes = entries * 4;
        if !ends_within(header.table_offset, bat_bytes, len) {
            return Err(BlockError::Truncated { path: path.into(), what: format!("the BAT ({entries} entries at offset {}) ends past the end of the file ({len} bytes)", header.table_offset) });
        }
        let mut raw = vec![0u8; bat_bytes as usize];
        read_exact_at(file, path, &mut raw, header.table_offset)?;
        let bat: Vec<u32> = raw.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        // Where the data must end: the footer, or for a footerless file its end.
        let data_limit = if footer_missing { len } else { len - FOOTER_SIZE as u64 };
        let footer_pos = if footer_missing { len.next_multiple_of(512) } else { data_limit };

        let mut ranges: Vec<(u64, u64, String)> = vec![
            (0, FOOTER_SIZE as u64, "the footer copy".into()),
            (header_at, header_at + HEADER_SIZE as u64, "the dynamic header".into()),
            (header.table_offset, header.table_offset + bat_bytes, "the BAT".into()),
        ];
        for (i, l) in header.locators.iter().enumerate() {
            if l.code != PLATFORM_NONE && l.length > 0 {
                let end = l.offset.saturating_add(l.length as u64);
                if end > len {
                    return Err(malformed(path, format!("parent locator {i} ({} bytes at offset {}) points outside the file ({len} bytes)", l.length, l.offset)));
                }
                ranges.push((l.offset, end, format!("parent locator {i}")));
            }
        }
        for (i, &e) in bat.iter().enumerate() {
            if e == UNALLOCATED {
                continue;
            }
            let start = e as u64 * 512;
            let end = start + bitmap_size + block_size;
            if end > data_limit {
                return Err(BlockError::Truncated {
                    path: path.into(),
                    what: format!("BAT entry {i} points to a block at bytes {start}..{end}, past the end of the image data ({data_limit}): the file was cut short or the BAT is corrupt"),
                });
            }
            ranges.push((start, end, format!("block {i}")));
        }
        ranges.sort();
        for w in ranges.windows(2) {
            if w[0].1 > w[1].0 {
                return Err(malformed(path, format!("{} (bytes {}..{}) overlaps {} (bytes {}..{})", w[1].2, w[1].0, w[1].1, w[0].2, w[0].0, w[0].1)));
            }
        }
        let next_free = ranges.iter().map(|r| r.1).max().unwrap_or(0).next_multiple_of(512);
        if footer_pos > next_free && !footer_missing {
            warnings.push(format!("{} bytes before the footer belong to no block (an interrupted allocation); the next allocation reuses them", footer_pos - next_free));
        }
        let parent = if footer.disk_type == DiskType::Differencing {
            Some(Box::new(open_parent(file, path, &header, len, parent_lock, seen)?))
        } else {
            None
        };
        Ok(Sparse {
            header,
            bat,
            block_size,
            bitmap_size,
            bitmaps: HashMap::new(),
            dirty_bitmaps: BTreeSet::new(),
            dirty_bat: BTreeSet::new(),
            next_free,
            footer_pos: footer_pos.max(next_free),
            stale_end: footer_pos,
            footer_missing,
            parent,
        })
    }
}

/// Finds the parent through the locators, checks it is the disk this one was made from, and
/// opens it read-only (its own parents too).
fn open_parent(file: &File, path: &Path, header: &DynamicHeader, len: u64, lock: Option<LockMode>, seen: &mut Vec<(u64, u64)>) -> Result<VhdDisk, BlockError> {
    let candidates = parent::candidates(file, path, header, len)?;
    let mut mismatch = None;
    for cand in &candidates {
        let Ok(pf) = File::open(cand) else { continue };
        if seen.contains(&file_id(&pf, cand)?) {
            return Err(BlockError::ParentLoop { path: path.into(), parent: cand.clone() });
        }
        if seen.len() >= MAX_CHAIN {
            return Err(BlockError::Unsupported { path: path.into(), what: format!("a chain of more than {MAX_CHAIN} parent images") });
        }
        let plen = file_len(&pf, cand)?;
        let (pfooter, _, _) = read_footer(&pf, cand, plen).map_err(|e| BlockError::ParentChanged {
            path: path.into(),
            parent: cand.clone(),
            problem: format!("it is not a usable VHD ({e})"),
        })?;
        if let Err(e) = parent::verify(path, header, cand, &pfooter, parent::mtime(&pf, cand)?) {
            mismatch.get_or_insert(e);
            continue;
        }
        drop(pf);
        return VhdDisk::open_in_chain(cand, false, lock, seen);
    }
    Err(mismatch.unwrap_or_else(|| BlockError::ParentMissing { path: path.into(), tried: candidates }))
}

impl BlockDevice for VhdDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.path, offset, buf.len(), self.size)?;
        match self.sparse {
            None => read_exact_at(&self.file, &self.path, buf, offset),
            Some(_) => self.read_sparse(offset, buf),
        }
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly { path: self.path.clone() });
        }
        check_range(&self.path, offset, buf.len(), self.size)?;
        if self.sparse.is_none() {
            return write_all_at(&self.file, &self.path, buf, offset);
        }
        let end = offset + buf.len() as u64;
        if offset % 512 == 0 && end % 512 == 0 {
            return self.write_sparse(offset, buf);
        }
        // Bitmaps count whole sectors: merge a partial sector with what it holds now.
        let start = offset & !511;
        let stop = end.next_multiple_of(512);
        let mut whole = vec![0u8; (stop - start) as usize];
        self.read_at(start, &mut whole[..512])?;
        let last = whole.len() - 512;
        self.read_at(stop - 512, &mut whole[last..])?;
        whole[(offset - start) as usize..(end - start) as usize].copy_from_slice(buf);
        self.write_sparse(start, &whole)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        if let Some(s) = self.sparse.as_mut() {
            if !s.dirty_bitmaps.is_empty() || !s.dirty_bat.is_empty() {
                // The data the new metadata points at reaches the disk first.
                sync_data(&self.file, &self.path)?;
                for block in std::mem::take(&mut s.dirty_bitmaps) {
                    if let Some(Bitmap::Partial(bits)) = s.bitmaps.get(&block) {
                        write_all_at(&self.file, &self.path, bits, s.bat[block as usize] as u64 * 512)?;
                    }
                }
                for sector in std::mem::take(&mut s.dirty_bat) {
                    let first = (sector * 128) as usize;
                    let last = (first + 128).min(s.bat.len());
                    let bytes: Vec<u8> = s.bat[first..last].iter().flat_map(|e| e.to_be_bytes()).collect();
                    write_all_at(&self.file, &self.path, &bytes, s.header.table_offset + sector * 512)?;
                }
            }
        }
        sync_data(&self.file, &self.path)
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> Format {
        Format::Vhd
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn geometry(&self) -> Option<Geometry> {
        Some(self.footer.geometry)
    }

    fn check(&mut self) -> Result<CheckReport, BlockError> {
        let mut warnings = self.warnings.clone();
        let mut parents = Vec::new();
        let (detail, allocated) = match self.sparse.as_mut() {
            None => ("VHD fixed".to_string(), self.size),
            Some(s) => {
                let used = s.bat.iter().filter(|&&e| e != UNALLOCATED).count() as u64;
                let kind = if s.parent.is_some() { "differencing" } else { "dynamic" };
                let detail = format!("VHD {kind}, {} KiB blocks, {used} of {} allocated", s.block_size / 1024, s.bat.len());
                if let Some(p) = s.parent.as_mut() {
                    let r = p.check()?;
                    parents.push(r.path.clone());
                    parents.extend(r.parents);
                    warnings.extend(r.warnings.into_iter().map(|w| format!("parent {}: {w}", r.path.display())));
                }
                (detail, used * s.block_size)
            }
        };
        if self.footer.saved_state != 0 {
            warnings.push("the footer says the disk holds a saved state (Virtual PC)".into());
        }
        Ok(CheckReport { path: self.path.clone(), format: Format::Vhd, detail, virtual_size: self.size, allocated, parents, warnings })
    }
}
