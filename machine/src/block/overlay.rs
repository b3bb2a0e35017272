//! `--snapshot`: a copy-on-write layer over a read-only disk. Writes land in an unlinked
//! temporary file (sparse, at the same offsets as on the disk) and a per-sector map of what
//! is there; reads take each sector from the overlay or the disk below. Nothing reaches the
//! image, and the temporary file disappears with the process however it ends.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{check_range, io_err, read_exact_at, write_all_at, BlockDevice, BlockError, CheckReport, Format, Geometry};

/// Sectors per bitmap chunk (2 MiB of disk per 512-byte chunk of map).
const CHUNK_SECTORS: u64 = 4096;

pub struct Overlay {
    base: Box<dyn BlockDevice>,
    tmp: File,
    tmp_path: PathBuf,
    /// Which sectors the overlay holds, one bit each, in chunks made on first write.
    present: HashMap<u64, Box<[u64; (CHUNK_SECTORS / 64) as usize]>>,
}

impl Overlay {
    /// Puts an overlay over `base` (which should be read-only: the overlay never writes to it).
    pub fn new(base: Box<dyn BlockDevice>) -> Result<Overlay, BlockError> {
        let dir = std::env::temp_dir();
        let mut n = 0u32;
        let (tmp, tmp_path) = loop {
            let p = dir.join(format!("ferrite-snapshot-{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&p) {
                Ok(f) => break (f, p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(source) => return Err(BlockError::Io { path: p, op: "create the snapshot overlay", source }),
            }
        };
        // Unlinked at once: the data lives as long as the descriptor.
        std::fs::remove_file(&tmp_path).map_err(io_err(&tmp_path, "unlink the snapshot overlay"))?;
        tmp.set_len(base.len()).map_err(io_err(&tmp_path, "size the snapshot overlay"))?;
        Ok(Overlay { base, tmp, tmp_path, present: HashMap::new() })
    }

    fn has(&self, sector: u64) -> bool {
        self.present
            .get(&(sector / CHUNK_SECTORS))
            .is_some_and(|c| c[((sector % CHUNK_SECTORS) / 64) as usize] & (1 << (sector % 64)) != 0)
    }

    fn mark(&mut self, first: u64, end: u64) {
        for s in first..end {
            let c = self.present.entry(s / CHUNK_SECTORS).or_insert_with(|| Box::new([0; (CHUNK_SECTORS / 64) as usize]));
            c[((s % CHUNK_SECTORS) / 64) as usize] |= 1 << (s % 64);
        }
    }
}

impl BlockDevice for Overlay {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let size = self.len();
        check_range(self.path(), offset, buf.len(), size)?;
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let here = self.has(pos / 512);
            let mut stop = ((pos / 512 + 1) * 512).min(end);
            while stop < end && self.has(stop / 512) == here {
                stop = ((stop / 512 + 1) * 512).min(end);
            }
            let part = &mut buf[(pos - offset) as usize..(stop - offset) as usize];
            if here {
                read_exact_at(&self.tmp, &self.tmp_path, part, pos)?;
            } else {
                self.base.read_at(pos, part)?;
            }
            pos = stop;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        let size = self.len();
        check_range(self.path(), offset, buf.len(), size)?;
        let end = offset + buf.len() as u64;
        // Partial sectors are completed from what the disk shows now, so whole sectors move.
        let start = offset & !511;
        let stop = end.next_multiple_of(512).min(size.next_multiple_of(512));
        if start != offset || stop != end {
            let mut whole = vec![0u8; (stop - start) as usize];
            let readable = (size - start).min(512) as usize;
            self.read_at(start, &mut whole[..readable])?;
            let last_start = stop - 512;
            if last_start >= start && last_start < size {
                let n = ((size - last_start) as usize).min(512);
                let at = (last_start - start) as usize;
                self.read_at(last_start, &mut whole[at..at + n])?;
            }
            whole[(offset - start) as usize..(end - start) as usize].copy_from_slice(buf);
            write_all_at(&self.tmp, &self.tmp_path, &whole, start)?;
        } else {
            write_all_at(&self.tmp, &self.tmp_path, buf, offset)?;
        }
        self.mark(start / 512, stop / 512);
        Ok(())
    }

    /// Nothing to make durable: the overlay is thrown away.
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.base.len()
    }

    fn is_read_only(&self) -> bool {
        false
    }

    fn format(&self) -> Format {
        self.base.format()
    }

    fn path(&self) -> &Path {
        self.base.path()
    }

    fn geometry(&self) -> Option<Geometry> {
        self.base.geometry()
    }

    fn check(&mut self) -> Result<CheckReport, BlockError> {
        self.base.check()
    }
}
