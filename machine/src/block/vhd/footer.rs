//! The VHD on-disk structures (Virtual Hard Disk Image Format Specification v1.0): the
//! 512-byte hard disk footer, the 1024-byte dynamic disk header with its eight parent locator
//! entries, and their checksums. All fields are big-endian.

use std::path::Path;

use super::super::{BlockError, Format, Geometry};

pub const COOKIE: &[u8; 8] = b"conectix";
pub const DYNAMIC_COOKIE: &[u8; 8] = b"cxsparse";
pub const FOOTER_SIZE: usize = 512;
pub const HEADER_SIZE: usize = 1024;
pub const VERSION: u32 = 0x0001_0000;
/// Footer "features": bit 1 is reserved and always set.
pub const FEATURES_RESERVED: u32 = 0x2;
/// A BAT entry for a block that is not in the file.
pub const UNALLOCATED: u32 = 0xFFFF_FFFF;
/// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, the VHD epoch.
pub const VHD_EPOCH: u64 = 946_684_800;
/// What we create at most: 2040 GiB, the size QEMU and Hyper-V also stop at.
pub const MAX_SIZE: u64 = 2040 << 30;
/// The default (and Hyper-V's) block size.
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;

pub const PLATFORM_NONE: u32 = 0;
/// Windows, relative path, UTF-16 little-endian.
pub const PLATFORM_W2RU: u32 = u32::from_be_bytes(*b"W2ru");
/// Windows, absolute path, UTF-16 little-endian.
pub const PLATFORM_W2KU: u32 = u32::from_be_bytes(*b"W2ku");
/// Mac OS X: a file URL, UTF-8.
pub const PLATFORM_MACX: u32 = u32::from_be_bytes(*b"MacX");
/// Deprecated Windows codes (ANSI paths), read but never written.
pub const PLATFORM_WI2R: u32 = u32::from_be_bytes(*b"Wi2r");
pub const PLATFORM_WI2K: u32 = u32::from_be_bytes(*b"Wi2k");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

impl DiskType {
    fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    pub features: u32,
    pub version: u32,
    /// Where the dynamic header is; all ones for fixed disks.
    pub data_offset: u64,
    /// Creation time, seconds since the VHD epoch.
    pub timestamp: u32,
    pub creator_app: [u8; 4],
    pub creator_version: u32,
    pub creator_os: u32,
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Geometry,
    pub disk_type: DiskType,
    pub uuid: [u8; 16],
    pub saved_state: u8,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The one's complement of the byte sum, skipping the 4-byte checksum field at `skip`.
pub fn checksum(b: &[u8], skip: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(skip..skip + 4).contains(i))
        .fold(0u32, |s, (_, &x)| s.wrapping_add(x as u32));
    !sum
}

fn malformed(path: &Path, problem: String) -> BlockError {
    BlockError::Malformed { path: path.into(), format: Format::Vhd, problem }
}

impl Footer {
    /// Parses and verifies a footer (cookie, checksum, version, disk type, size).
    pub fn parse(b: &[u8; FOOTER_SIZE], path: &Path) -> Result<Footer, BlockError> {
        if &b[0..8] != COOKIE {
            return Err(malformed(path, "no footer cookie \"conectix\"".into()));
        }
        let stored = be32(b, 64);
        let computed = checksum(b, 64);
        if stored != computed {
            return Err(BlockError::Checksum { path: path.into(), what: "VHD footer", stored, computed });
        }
        let version = be32(b, 12);
        if version >> 16 != 1 {
            return Err(malformed(path, format!("footer version {version:#x} (only 1.x exists)")));
        }
        let disk_type = match be32(b, 60) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            t => return Err(malformed(path, format!("disk type {t} (2 fixed, 3 dynamic, 4 differencing)"))),
        };
        let current_size = be64(b, 48);
        if current_size % 512 != 0 {
            return Err(malformed(path, format!("disk size {current_size} is not a whole number of sectors")));
        }
        if current_size > 2 << 40 {
            return Err(malformed(path, format!("disk size {current_size} is beyond the 2 TiB VHD limit")));
        }
        Ok(Footer {
            features: be32(b, 8),
            version,
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_app: b[28..32].try_into().expect("4 bytes"),
            creator_version: be32(b, 32),
            creator_os: be32(b, 36),
            original_size: be64(b, 40),
            current_size,
            geometry: Geometry { cylinders: u16::from_be_bytes([b[56], b[57]]), heads: b[58], sectors: b[59] },
            disk_type,
            uuid: b[68..84].try_into().expect("16 bytes"),
            saved_state: b[84],
        })
    }

    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(COOKIE);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&self.version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_app);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_os.to_be_bytes());
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.geometry.cylinders.to_be_bytes());
        b[58] = self.geometry.heads;
        b[59] = self.geometry.sectors;
        b[60..64].copy_from_slice(&self.disk_type.code().to_be_bytes());
        b[68..84].copy_from_slice(&self.uuid);
        b[84] = self.saved_state;
        let sum = checksum(&b, 64);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// One parent locator entry of the dynamic header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Locator {
    pub code: u32,
    /// Sectors reserved for the data (the spec's unit; some writers put bytes here).
    pub space: u32,
    /// Bytes of locator data.
    pub length: u32,
    /// Absolute file offset of the data.
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicHeader {
    pub table_offset: u64,
    pub version: u32,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub parent_uuid: [u8; 16],
    pub parent_timestamp: u32,
    /// The parent's file name, UTF-16 big-endian in the file.
    pub parent_name: String,
    pub locators: [Locator; 8],
}

impl DynamicHeader {
    pub fn parse(b: &[u8; HEADER_SIZE], path: &Path) -> Result<DynamicHeader, BlockError> {
        if &b[0..8] != DYNAMIC_COOKIE {
            return Err(malformed(path, "no dynamic header cookie \"cxsparse\" where the footer points".into()));
        }
        let stored = be32(b, 36);
        let computed = checksum(b, 36);
        if stored != computed {
            return Err(BlockError::Checksum { path: path.into(), what: "VHD dynamic header", stored, computed });
        }
        let version = be32(b, 24);
        if version >> 16 != 1 {
            return Err(malformed(path, format!("dynamic header version {version:#x} (only 1.x exists)")));
        }
        let block_size = be32(b, 32);
        if !block_size.is_power_of_two() || !(512..=256 << 20).contains(&block_size) {
            return Err(malformed(path, format!("block size {block_size} (must be a power of two from 512 bytes to 256 MiB)")));
        }
        let units: Vec<u16> = b[64..576].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
        let mut locators = [Locator::default(); 8];
        for (i, l) in locators.iter_mut().enumerate() {
            let e = &b[576 + 24 * i..576 + 24 * (i + 1)];
            *l = Locator { code: be32(e, 0), space: be32(e, 4), length: be32(e, 8), offset: be64(e, 16) };
        }
        Ok(DynamicHeader {
            table_offset: be64(b, 16),
            version,
            max_table_entries: be32(b, 28),
            block_size,
            parent_uuid: b[40..56].try_into().expect("16 bytes"),
            parent_timestamp: be32(b, 56),
            parent_name: String::from_utf16_lossy(&units),
            locators,
        })
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(DYNAMIC_COOKIE);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.version.to_be_bytes());
        b[28..32].copy_from_slice(&self.max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        b[40..56].copy_from_slice(&self.parent_uuid);
        b[56..60].copy_from_slice(&self.parent_timestamp.to_be_bytes());
        for (i, u) in self.parent_name.encode_utf16().take(256).enumerate() {
            b[64 + 2 * i..66 + 2 * i].copy_from_slice(&u.to_be_bytes());
        }
        for (i, l) in self.locators.iter().enumerate() {
            let e = &mut b[576 + 24 * i..576 + 24 * (i + 1)];
            e[0..4].copy_from_slice(&l.code.to_be_bytes());
            e[4..8].copy_from_slice(&l.space.to_be_bytes());
            e[8..12].copy_from_slice(&l.length.to_be_bytes());
            e[16..24].copy_from_slice(&l.offset.to_be_bytes());
        }
        let sum = checksum(&b, 36);
        b[36..40].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Bytes of sector bitmap in front of each block, padded to a whole sector.
    pub fn bitmap_size(&self) -> u64 {
        (self.block_size as u64 / 512).div_ceil(8).next_multiple_of(512)
    }
}

/// Seconds since the VHD epoch for a Unix time, clamped to what fits.
pub fn vhd_time(unix: u64) -> u32 {
    unix.saturating_sub(VHD_EPOCH).min(u32::MAX as u64) as u32
}

pub fn now() -> u32 {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    vhd_time(unix)
}

/// A random (version 4) UUID, from the kernel's generator, or from the clock if that fails.
pub fn new_uuid() -> [u8; 16] {
    use std::io::Read;
    let mut u = [0u8; 16];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut u));
    if got.is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mut x = t as u64 ^ ((std::process::id() as u64) << 32);
        for b in u.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    u[6] = (u[6] & 0x0F) | 0x40;
    u[8] = (u[8] & 0x3F) | 0x80;
    u
}

pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer() -> Footer {
        Footer {
            features: FEATURES_RESERVED,
            version: VERSION,
            data_offset: 512,
            timestamp: 12345,
            creator_app: *b"frte",
            creator_version: 1,
            creator_os: u32::from_be_bytes(*b"Wi2k"),
            original_size: 1 << 20,
            current_size: 1 << 20,
            geometry: Geometry { cylinders: 30, heads: 4, sectors: 17 },
            disk_type: DiskType::Dynamic,
            uuid: new_uuid(),
            saved_state: 0,
        }
    }

    #[test]
    fn footer_round_trips_and_checksum_catches_a_flipped_bit() {
        let f = footer();
        let mut b = f.encode();
        assert_eq!(Footer::parse(&b, Path::new("x")).unwrap(), f);
        b[100] ^= 1;
        assert!(matches!(Footer::parse(&b, Path::new("x")), Err(BlockError::Checksum { .. })));
    }

    #[test]
    fn header_round_trips_with_parent_name_and_locators() {
        let mut h = DynamicHeader {
            table_offset: 1536,
            version: VERSION,
            max_table_entries: 10,
            block_size: DEFAULT_BLOCK_SIZE,
            parent_uuid: new_uuid(),
            parent_timestamp: 99,
            parent_name: "päränt.vhd".into(),
            locators: [Locator::default(); 8],
        };
        h.locators[0] = Locator { code: PLATFORM_W2RU, space: 1, length: 24, offset: 4096 };
        let b = h.encode();
        assert_eq!(DynamicHeader::parse(&b, Path::new("x")).unwrap(), h);
        assert_eq!(h.bitmap_size(), 512);
    }

    #[test]
    fn uuids_are_version_4() {
        let u = new_uuid();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(uuid_string(&u).len(), 36);
    }
}
