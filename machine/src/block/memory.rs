//! A read-only disk held in memory rather than in a file: media built into Ferrite itself (the
//! default guest's floppy). Reads come from the bytes; writes fail as on a write-protected disk.

use std::path::{Path, PathBuf};

use super::{check_range, BlockDevice, BlockError, CheckReport, Format};

pub struct MemoryDisk {
    data: Vec<u8>,
    /// What error messages and reports call the disk (no file by that name exists).
    name: PathBuf,
}

impl MemoryDisk {
    /// A disk whose contents are `data`, called `name` in messages.
    pub fn new(name: &str, data: Vec<u8>) -> MemoryDisk {
        MemoryDisk { data, name: PathBuf::from(name) }
    }
}

impl BlockDevice for MemoryDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.name, offset, buf.len(), self.len())?;
        buf.copy_from_slice(&self.data[offset as usize..][..buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, _offset: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly { path: self.name.clone() })
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn is_read_only(&self) -> bool {
        true
    }

    fn format(&self) -> Format {
        Format::Raw
    }

    fn path(&self) -> &Path {
        &self.name
    }

    fn check(&mut self) -> Result<CheckReport, BlockError> {
        Ok(CheckReport {
            path: self.name.clone(),
            format: Format::Raw,
            detail: "raw, built in (read-only)".into(),
            virtual_size: self.len(),
            allocated: self.len(),
            parents: Vec::new(),
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_bytes_and_refuses_writes() {
        let mut d = MemoryDisk::new("built-in", (0..1024u32).map(|i| i as u8).collect());
        assert_eq!((d.len(), d.sector_count(), d.is_read_only()), (1024, 2, true));
        let mut sector = [0u8; 512];
        d.read_sectors(1, &mut sector).unwrap();
        assert_eq!(sector[0..3], [0, 1, 2]);
        assert!(matches!(d.read_sectors(2, &mut sector), Err(BlockError::OutOfRange { .. })));
        assert!(matches!(d.write_sectors(0, &sector), Err(BlockError::ReadOnly { .. })));
        assert_eq!(d.check().unwrap().virtual_size, 1024);
    }
}
