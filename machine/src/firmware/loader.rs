//! The BIOS linker/loader script ("etc/table-loader") through which QEMU hands ACPI tables to
//! SeaBIOS (QEMU `hw/acpi/bios-linker-loader.c`, SeaBIOS `src/fw/romfile_loader.c`): the
//! firmware allocates memory for named fw_cfg files, adds the address of one file to pointer
//! fields inside another, and fixes checksums after patching. Each command is 128 bytes,
//! little-endian, file names NUL-padded to 56 bytes.
//!
//! [`TableLoader::run`] executes a script the way SeaBIOS does, for tests and for firmware that
//! places the tables itself.

use std::collections::BTreeMap;

/// Length of a file name field.
pub const FILE_NAME_LEN: usize = 56;
/// Length of one command.
pub const COMMAND_LEN: usize = 128;

pub const CMD_ALLOCATE: u32 = 1;
pub const CMD_ADD_POINTER: u32 = 2;
pub const CMD_ADD_CHECKSUM: u32 = 3;

/// Where ALLOCATE places a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Anywhere in high memory (below 4 GiB).
    High = 1,
    /// In the 0xE0000-0xFFFFF BIOS area (the RSDP must be found by scanning there).
    FSeg = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Allocate { file: String, align: u32, zone: Zone },
    /// Adds the address of `src` to the `size`-byte little-endian value at `offset` in `dest`.
    AddPointer { dest: String, src: String, offset: u32, size: u8 },
    /// Sets the byte at `at` so that `len` bytes from `start` sum to zero.
    AddChecksum { file: String, at: u32, start: u32, len: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoaderError {
    #[error("table-loader: file {0:?} is not allocated")]
    NoFile(String),
    #[error("table-loader: command {0} reaches past the end of {1:?}")]
    OutOfRange(usize, String),
    #[error("table-loader: malformed command {0}")]
    Malformed(usize),
}

/// A linker/loader script.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableLoader {
    pub commands: Vec<Command>,
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let mut field = [0u8; FILE_NAME_LEN];
    let n = name.len().min(FILE_NAME_LEN - 1);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
    out.extend_from_slice(&field);
}

fn get_name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl TableLoader {
    pub fn allocate(&mut self, file: &str, align: u32, zone: Zone) {
        self.commands.push(Command::Allocate { file: file.into(), align, zone });
    }

    pub fn add_pointer(&mut self, dest: &str, src: &str, offset: usize, size: u8) {
        self.commands.push(Command::AddPointer { dest: dest.into(), src: src.into(), offset: offset as u32, size });
    }

    pub fn add_checksum(&mut self, file: &str, at: usize, start: usize, len: usize) {
        self.commands.push(Command::AddChecksum { file: file.into(), at: at as u32, start: start as u32, len: len as u32 });
    }

    /// The script as the "etc/table-loader" fw_cfg file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.commands.len() * COMMAND_LEN);
        for c in &self.commands {
            let start = out.len();
            match c {
                Command::Allocate { file, align, zone } => {
                    out.extend_from_slice(&CMD_ALLOCATE.to_le_bytes());
                    put_name(&mut out, file);
                    out.extend_from_slice(&align.to_le_bytes());
                    out.push(*zone as u8);
                }
                Command::AddPointer { dest, src, offset, size } => {
                    out.extend_from_slice(&CMD_ADD_POINTER.to_le_bytes());
                    put_name(&mut out, dest);
                    put_name(&mut out, src);
                    out.extend_from_slice(&offset.to_le_bytes());
                    out.push(*size);
                }
                Command::AddChecksum { file, at, start, len } => {
                    out.extend_from_slice(&CMD_ADD_CHECKSUM.to_le_bytes());
                    put_name(&mut out, file);
                    out.extend_from_slice(&at.to_le_bytes());
                    out.extend_from_slice(&start.to_le_bytes());
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
            out.resize(start + COMMAND_LEN, 0);
        }
        out
    }

    /// Parses a script (the inverse of [`TableLoader::to_bytes`]); unknown commands are errors.
    pub fn parse(bytes: &[u8]) -> Result<TableLoader, LoaderError> {
        let mut commands = Vec::new();
        for (i, c) in bytes.chunks(COMMAND_LEN).enumerate() {
            if c.len() != COMMAND_LEN {
                return Err(LoaderError::Malformed(i));
            }
            let u32_at = |o: usize| u32::from_le_bytes(c[o..o + 4].try_into().expect("4 bytes"));
            let n = FILE_NAME_LEN;
            commands.push(match u32_at(0) {
                CMD_ALLOCATE => Command::Allocate {
                    file: get_name(&c[4..4 + n]),
                    align: u32_at(4 + n),
                    zone: match c[8 + n] {
                        1 => Zone::High,
                        2 => Zone::FSeg,
                        _ => return Err(LoaderError::Malformed(i)),
                    },
                },
                CMD_ADD_POINTER => Command::AddPointer {
                    dest: get_name(&c[4..4 + n]),
                    src: get_name(&c[4 + n..4 + 2 * n]),
                    offset: u32_at(4 + 2 * n),
                    size: c[8 + 2 * n],
                },
                CMD_ADD_CHECKSUM => Command::AddChecksum {
                    file: get_name(&c[4..4 + n]),
                    at: u32_at(4 + n),
                    start: u32_at(8 + n),
                    len: u32_at(12 + n),
                },
                _ => return Err(LoaderError::Malformed(i)),
            });
        }
        Ok(TableLoader { commands })
    }

    /// Runs the script as SeaBIOS does: `place(name, size, align, zone)` chooses each
    /// allocated file's guest address; returns the patched files with their addresses.
    pub fn run(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
        mut place: impl FnMut(&str, usize, u32, Zone) -> u64,
    ) -> Result<BTreeMap<String, (u64, Vec<u8>)>, LoaderError> {
        let mut out: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
        for (i, c) in self.commands.iter().enumerate() {
            match c {
                Command::Allocate { file, align, zone } => {
                    let data = files.get(file).ok_or_else(|| LoaderError::NoFile(file.clone()))?;
                    let addr = place(file, data.len(), *align, *zone);
                    out.insert(file.clone(), (addr, data.clone()));
                }
                Command::AddPointer { dest, src, offset, size } => {
                    let base = out.get(src).ok_or_else(|| LoaderError::NoFile(src.clone()))?.0;
                    let d = &mut out.get_mut(dest).ok_or_else(|| LoaderError::NoFile(dest.clone()))?.1;
                    let (o, n) = (*offset as usize, *size as usize);
                    if !matches!(n, 1 | 2 | 4 | 8) {
                        return Err(LoaderError::Malformed(i));
                    }
                    let field = d.get_mut(o..o + n).ok_or_else(|| LoaderError::OutOfRange(i, dest.clone()))?;
                    let mut v = [0u8; 8];
                    v[..n].copy_from_slice(field);
                    let patched = u64::from_le_bytes(v).wrapping_add(base).to_le_bytes();
                    field.copy_from_slice(&patched[..n]);
                }
                Command::AddChecksum { file, at, start, len } => {
                    let d = &mut out.get_mut(file).ok_or_else(|| LoaderError::NoFile(file.clone()))?.1;
                    let (at, start, len) = (*at as usize, *start as usize, *len as usize);
                    let sum = super::byte_sum(d.get(start..start + len).ok_or_else(|| LoaderError::OutOfRange(i, file.clone()))?);
                    let b = d.get_mut(at).ok_or_else(|| LoaderError::OutOfRange(i, file.clone()))?;
                    *b = b.wrapping_sub(sum);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_runs() {
        let mut l = TableLoader::default();
        l.allocate("a", 16, Zone::FSeg);
        l.allocate("b", 64, Zone::High);
        l.add_pointer("a", "b", 1, 4);
        l.add_checksum("a", 0, 0, 8);
        let bytes = l.to_bytes();
        assert_eq!(bytes.len(), 4 * COMMAND_LEN);
        assert_eq!(&bytes[0..4], &[1, 0, 0, 0]);
        assert_eq!(bytes[4], b'a');
        assert_eq!(TableLoader::parse(&bytes).unwrap(), l);

        let files = BTreeMap::from([("a".to_string(), vec![0, 8, 0, 0, 0, 0, 0, 0]), ("b".to_string(), vec![1; 32])]);
        let placed = l.run(&files, |name, _, _, _| if name == "a" { 0xF_0000 } else { 0x10_0000 }).unwrap();
        let a = &placed["a"].1;
        assert_eq!(u32::from_le_bytes(a[1..5].try_into().unwrap()), 0x10_0008, "offset within b plus b's address");
        assert_eq!(crate::firmware::byte_sum(a), 0);
    }

    #[test]
    fn bad_scripts_are_errors() {
        let mut l = TableLoader::default();
        l.add_pointer("x", "y", 0, 4);
        assert_eq!(l.run(&BTreeMap::new(), |_, _, _, _| 0), Err(LoaderError::NoFile("y".into())));
        assert_eq!(TableLoader::parse(&[9; 128]), Err(LoaderError::Malformed(0)));
        assert_eq!(TableLoader::parse(&[1; 100]), Err(LoaderError::Malformed(0)));
    }
}
