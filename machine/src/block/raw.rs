//! Raw disk images (byte N of the file is byte N of the disk) and ISO 9660 CD images (raw,
//! always read-only). A raw image whose format was detected rather than named refuses guest
//! writes that would make it detect as another format next time (QEMU's rule): otherwise a
//! guest could write a qcow2 or VHD header naming a host file as its parent.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::lock::{ImageLock, LockMode};
use super::{check_range, file_len, io_err, read_exact_at, sync_data, write_all_at, BlockDevice, BlockError, CheckReport, Format};

pub struct RawDisk {
    file: File,
    path: PathBuf,
    len: u64,
    format: Format,
    read_only: bool,
    /// The format was detected, not given: guard the headers other formats are detected by.
    probed: bool,
    _lock: Option<ImageLock>,
}

impl RawDisk {
    pub fn open(path: &Path, format: Format, writable: bool, probed: bool, lock: Option<LockMode>) -> Result<RawDisk, BlockError> {
        let writable = writable && format != Format::Iso;
        let file = std::fs::OpenOptions::new().read(true).write(writable).open(path).map_err(io_err(path, "open"))?;
        let lock = lock.map(|m| ImageLock::acquire(path, m)).transpose()?;
        let len = file_len(&file, path)?;
        Ok(RawDisk { file, path: path.into(), len, format, read_only: !writable, probed, _lock: lock })
    }

    /// Would the disk, after writing `buf` at `offset`, be detected as something else?
    fn changes_detected_format(&self, offset: u64, buf: &[u8]) -> Result<bool, BlockError> {
        let end = offset + buf.len() as u64;
        let check = |start: u64, at_head: bool| -> Result<bool, BlockError> {
            if self.len < start + 512 || end <= start || offset >= start + 512 {
                return Ok(false);
            }
            let mut sector = [0u8; 512];
            read_exact_at(&self.file, &self.path, &mut sector, start)?;
            let (lo, hi) = (offset.max(start), end.min(start + 512));
            sector[(lo - start) as usize..(hi - start) as usize]
                .copy_from_slice(&buf[(lo - offset) as usize..(hi - offset) as usize]);
            Ok(if at_head { super::detect_head(&sector).is_some() } else { sector.starts_with(super::vhd::COOKIE) })
        };
        Ok(check(0, true)? || (self.len >= 1024 && check(self.len - 512, false)?))
    }
}

impl BlockDevice for RawDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.path, offset, buf.len(), self.len)?;
        read_exact_at(&self.file, &self.path, buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly { path: self.path.clone() });
        }
        check_range(&self.path, offset, buf.len(), self.len)?;
        if self.probed && self.changes_detected_format(offset, buf)? {
            tracing::warn!("{}: refused a guest write that would make this raw image look like another format", self.path.display());
            return Err(BlockError::Invalid {
                path: self.path.clone(),
                problem: "refused a write that would turn this detected-raw image into another format; open it with format=raw to allow".into(),
            });
        }
        write_all_at(&self.file, &self.path, buf, offset)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        sync_data(&self.file, &self.path)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> Format {
        self.format
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn check(&mut self) -> Result<CheckReport, BlockError> {
        let mut warnings = Vec::new();
        if self.len % 512 != 0 {
            warnings.push(format!("size {} is not a whole number of 512-byte sectors; the last {} bytes are unreachable by sector", self.len, self.len % 512));
        }
        Ok(CheckReport {
            path: self.path.clone(),
            format: self.format,
            detail: if self.format == Format::Iso { "ISO 9660 CD image".into() } else { "raw".into() },
            virtual_size: self.len,
            allocated: self.len,
            parents: Vec::new(),
            warnings,
        })
    }
}

/// A new raw image of `size` bytes, sparse.
pub fn create(path: &Path, size: u64) -> Result<u64, BlockError> {
    let file = super::create_new(path)?;
    file.set_len(size).map_err(io_err(path, "size"))?;
    sync_data(&file, path)?;
    Ok(size)
}
