//! Creating VHD images. Sizes are rounded up to a whole CHS geometry computed by the spec's
//! algorithm, exactly as QEMU's `qemu-img create -f vpc` does, so Virtual PC (which trusts the
//! geometry), Hyper-V and QEMU (which trust the size field) and Ferrite all see the same disk.
//! Layout of a dynamic disk: footer copy, dynamic header, BAT, parent locators, footer.

use std::fs::File;
use std::path::Path;

use super::super::lock::LockMode;
use super::super::{create_new, image_dir, io_err, relative_path, sync_data, write_all_at, BlockDevice, BlockError, Geometry};
use super::footer::*;
use super::parent::{encode_file_url, mtime, windows_relative};
use super::VhdDisk;

/// `size` rounded up to a whole geometry (QEMU's `vpc_create`), and that geometry. Past the
/// largest geometry, the size is kept and the geometry pinned at 65535/16/255.
fn sized(path: &Path, size: u64) -> Result<(u64, Geometry), BlockError> {
    if size == 0 {
        return Err(BlockError::Invalid { path: path.into(), problem: "a disk needs a size greater than zero".into() });
    }
    if size > MAX_SIZE {
        return Err(BlockError::Invalid { path: path.into(), problem: format!("{size} bytes is more than a VHD holds (2040 GiB)") });
    }
    const MAX_GEOMETRY: u64 = 65535 * 16 * 255;
    let total = size.div_ceil(512);
    let mut g = Geometry::vhd_for_sectors(total);
    let mut extra = 0;
    while total > g.total_sectors() && g.total_sectors() < MAX_GEOMETRY {
        extra += 1;
        g = Geometry::vhd_for_sectors(total + extra);
    }
    let sectors = if g.total_sectors() >= MAX_GEOMETRY { total } else { g.total_sectors() };
    Ok((sectors * 512, g))
}

fn footer(size: u64, geometry: Geometry, disk_type: DiskType) -> Footer {
    Footer {
        features: FEATURES_RESERVED,
        version: VERSION,
        data_offset: if disk_type == DiskType::Fixed { u64::MAX } else { FOOTER_SIZE as u64 },
        timestamp: now(),
        creator_app: *b"frte",
        creator_version: 0x0001_0000,
        // What QEMU writes too: the spec knows no code for Linux.
        creator_os: u32::from_be_bytes(*b"Wi2k"),
        original_size: size,
        current_size: size,
        geometry,
        disk_type,
        uuid: new_uuid(),
        saved_state: 0,
    }
}

/// Removes a half-made image when creation fails.
fn finish<T>(path: &Path, r: Result<T, BlockError>) -> Result<T, BlockError> {
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

pub fn create_fixed(path: &Path, size: u64) -> Result<u64, BlockError> {
    let (size, geometry) = sized(path, size)?;
    let file = create_new(path)?;
    finish(path, (|| {
        file.set_len(size).map_err(io_err(path, "size"))?;
        write_all_at(&file, path, &footer(size, geometry, DiskType::Fixed).encode(), size)?;
        sync_data(&file, path)?;
        Ok(size)
    })())
}

pub fn create_dynamic(path: &Path, size: u64) -> Result<u64, BlockError> {
    let (size, geometry) = sized(path, size)?;
    let file = create_new(path)?;
    finish(path, write_dynamic(&file, path, footer(size, geometry, DiskType::Dynamic), None))
}

/// A differencing disk over `parent`, which must be a VHD; `size` is 0 or the parent's size.
pub fn create_differencing(path: &Path, parent: &Path, size: u64) -> Result<u64, BlockError> {
    let p = VhdDisk::open(parent, false, Some(LockMode::ReadNoWriters))?;
    if size != 0 && size != p.len() {
        return Err(BlockError::Invalid {
            path: path.into(),
            problem: format!("a differencing VHD has its parent's size ({} bytes); leave the size out or give that", p.len()),
        });
    }
    let pfile = File::open(parent).map_err(io_err(parent, "open"))?;
    let mut f = footer(p.len(), p.footer.geometry, DiskType::Differencing);
    f.original_size = p.footer.original_size;
    let link = ParentLink {
        uuid: p.footer.uuid,
        timestamp: mtime(&pfile, parent)?,
        name: parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        relative: windows_relative(&relative_path(&image_dir(path), parent)),
        url: encode_file_url(&parent.canonicalize().map_err(io_err(parent, "resolve the path of"))?),
    };
    let file = create_new(path)?;
    finish(path, write_dynamic(&file, path, f, Some(link)))
}

struct ParentLink {
    uuid: [u8; 16],
    timestamp: u32,
    name: String,
    /// For the W2ru locator.
    relative: String,
    /// For the MacX locator.
    url: String,
}

fn write_dynamic(file: &File, path: &Path, footer: Footer, parent: Option<ParentLink>) -> Result<u64, BlockError> {
    let size = footer.current_size;
    let entries = size.div_ceil(DEFAULT_BLOCK_SIZE as u64);
    let table_offset = (FOOTER_SIZE + HEADER_SIZE) as u64;
    let bat_len = (entries * 4).next_multiple_of(512);
    let mut header = DynamicHeader {
        table_offset,
        version: VERSION,
        max_table_entries: entries as u32,
        block_size: DEFAULT_BLOCK_SIZE,
        parent_uuid: [0; 16],
        parent_timestamp: 0,
        parent_name: String::new(),
        locators: [Locator::default(); 8],
    };
    let mut end = table_offset + bat_len;
    let mut locator_data = Vec::new();
    if let Some(link) = parent {
        header.parent_uuid = link.uuid;
        header.parent_timestamp = link.timestamp;
        header.parent_name = link.name;
        let w2ru: Vec<u8> = link.relative.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        for (i, (code, data)) in [(PLATFORM_W2RU, w2ru), (PLATFORM_MACX, link.url.into_bytes())].into_iter().enumerate() {
            let space = (data.len() as u64).div_ceil(512).max(1);
            header.locators[i] = Locator { code, space: space as u32, length: data.len() as u32, offset: end };
            locator_data.push((end, data));
            end += space * 512;
        }
    }
    let footer_bytes = footer.encode();
    write_all_at(file, path, &footer_bytes, 0)?;
    write_all_at(file, path, &header.encode(), FOOTER_SIZE as u64)?;
    write_all_at(file, path, &vec![0xFF; bat_len as usize], table_offset)?;
    for (at, data) in locator_data {
        write_all_at(file, path, &data, at)?;
    }
    write_all_at(file, path, &footer_bytes, end)?;
    sync_data(file, path)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_a_geometry_like_qemu() {
        // qemu-img create -f vpc x.vhd 2G gives 4162 x 16 x 63 = 4195296 sectors.
        let (size, g) = sized(Path::new("x"), 2 << 30).unwrap();
        assert_eq!((g.cylinders, g.heads, g.sectors), (4162, 16, 63));
        assert_eq!(size, 4162 * 16 * 63 * 512);
        // Already a whole geometry: unchanged.
        let (size, _) = sized(Path::new("x"), 301 * 4 * 17 * 512).unwrap();
        assert_eq!(size, 301 * 4 * 17 * 512);
        // Past 127 GiB the size stands and the geometry is pinned.
        let (size, g) = sized(Path::new("x"), 500 << 30).unwrap();
        assert_eq!(size, 500 << 30);
        assert_eq!((g.cylinders, g.heads, g.sectors), (65535, 16, 255));
        assert!(sized(Path::new("x"), 0).is_err());
        assert!(sized(Path::new("x"), 3 << 40).is_err());
    }
}
