//! Finding and verifying the parent of a differencing VHD: the parent locators of the dynamic
//! header (spec section "Parent Locator Entries": W2ru relative and W2ku absolute Windows paths
//! in UTF-16LE, MacX file URLs in UTF-8, and the deprecated Wi2r/Wi2k), relative paths taken
//! against the child's directory, then the parent's unique id and time stamp compared with
//! what the child recorded.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::super::{ends_within, image_dir, read_exact_at, BlockError, Format};
use super::footer::*;

/// Longest locator data we read; real ones are a path, a few hundred bytes.
const MAX_LOCATOR: u32 = 64 * 1024;

/// The paths the child's locators name, best first, without duplicates. Locators that point
/// outside the file are a malformed image.
pub fn candidates(file: &File, path: &Path, header: &DynamicHeader, file_len: u64) -> Result<Vec<PathBuf>, BlockError> {
    let dir = image_dir(path);
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for (i, l) in header.locators.iter().enumerate() {
        if l.code == PLATFORM_NONE || l.length == 0 {
            continue;
        }
        if l.length > MAX_LOCATOR || !ends_within(l.offset, l.length as u64, file_len) {
            return Err(BlockError::Malformed {
                path: path.into(),
                format: Format::Vhd,
                problem: format!("parent locator {i} ({} bytes at offset {}) points outside the file ({file_len} bytes)", l.length, l.offset),
            });
        }
        let mut data = vec![0u8; l.length as usize];
        read_exact_at(file, path, &mut data, l.offset)?;
        let text = match l.code {
            PLATFORM_W2RU | PLATFORM_W2KU => {
                let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                String::from_utf16_lossy(&units)
            }
            PLATFORM_WI2R | PLATFORM_WI2K => data.iter().map(|&b| b as char).collect(),
            PLATFORM_MACX => match decode_file_url(&String::from_utf8_lossy(&data)) {
                Some(p) => p,
                None => continue,
            },
            _ => continue,
        };
        if let Some(p) = to_host_path(text.trim_end_matches('\0'), &dir) {
            let rank = match l.code {
                PLATFORM_W2RU | PLATFORM_WI2R => 0,
                PLATFORM_MACX => 1,
                _ => 2,
            };
            found.push((rank, p));
        }
    }
    found.sort_by_key(|(rank, _)| *rank);
    let mut out: Vec<PathBuf> = Vec::new();
    for (_, p) in found {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    // Last resort: the parent's file name beside the child.
    if let Some(name) = Path::new(&header.parent_name.replace('\\', "/")).file_name() {
        let p = dir.join(name);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// A locator's path as a host path: backslashes become slashes, relative paths are taken
/// against the child's directory, Windows drive paths cannot be used here.
fn to_host_path(text: &str, dir: &Path) -> Option<PathBuf> {
    if text.is_empty() {
        return None;
    }
    let t = text.replace('\\', "/");
    let b = t.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return None;
    }
    if t.starts_with("//") {
        return None;
    }
    if t.starts_with('/') {
        return Some(PathBuf::from(t));
    }
    Some(dir.join(t.trim_start_matches("./")))
}

/// `file://[localhost]/path` (or, as blktap writes, `file://./relative`) with %XX escapes to a
/// path.
fn decode_file_url(url: &str) -> Option<String> {
    let rest = url.trim_end_matches('\0').strip_prefix("file://")?;
    let rest = match rest.strip_prefix("localhost/") {
        Some(r) => &rest[rest.len() - r.len() - 1..],
        None => rest,
    };
    let b = rest.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A path as a MacX locator: a file URL with everything but unreserved characters escaped.
pub fn encode_file_url(path: &Path) -> String {
    let mut s = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A relative path as a W2ru locator string: `.\dir\file.vhd`.
pub fn windows_relative(rel: &Path) -> String {
    let s = rel.to_string_lossy().replace('/', "\\");
    if s.starts_with("..") {
        s
    } else {
        format!(".\\{s}")
    }
}

/// The modification time of a file in VHD seconds, as the child's parent time stamp records it.
pub fn mtime(file: &File, path: &Path) -> Result<u32, BlockError> {
    let m = file.metadata().map_err(super::super::io_err(path, "stat"))?;
    let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    Ok(vhd_time(t))
}

/// Checks that `parent` is the disk the child was made from: the unique id must match, and the
/// time stamp must be the parent's modification time, as the spec and Virtual PC have it (a
/// parent written after its child was made has silently changed under the child).
pub fn verify(child: &Path, header: &DynamicHeader, parent: &Path, parent_footer: &Footer, parent_mtime: u32) -> Result<(), BlockError> {
    if parent_footer.uuid != header.parent_uuid {
        return Err(BlockError::ParentChanged {
            path: child.into(),
            parent: parent.into(),
            problem: format!(
                "its unique id is {} but this image was made from {}: it is a different disk",
                uuid_string(&parent_footer.uuid),
                uuid_string(&header.parent_uuid)
            ),
        });
    }
    if header.parent_timestamp != parent_mtime {
        let recorded = header.parent_timestamp as u64 + VHD_EPOCH;
        return Err(BlockError::ParentChanged {
            path: child.into(),
            parent: parent.into(),
            problem: format!(
                "it was modified after this image was made from it (modification time {} instead of the recorded {recorded}, \
                 Unix seconds); writing to a parent corrupts its children. If it was only copied, restore the time with \
                 `touch -d @{recorded} {}`",
                parent_mtime as u64 + VHD_EPOCH,
                parent.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_paths_become_host_paths() {
        let dir = Path::new("/images/vm");
        assert_eq!(to_host_path(".\\base.vhd", dir), Some(PathBuf::from("/images/vm/base.vhd")));
        assert_eq!(to_host_path("..\\gold\\base.vhd", dir), Some(PathBuf::from("/images/vm/../gold/base.vhd")));
        assert_eq!(to_host_path("C:\\VMs\\base.vhd", dir), None);
        assert_eq!(to_host_path("/srv/base.vhd", dir), Some(PathBuf::from("/srv/base.vhd")));
    }

    #[test]
    fn file_urls_round_trip() {
        let p = Path::new("/srv/my disks/base%1.vhd");
        let url = encode_file_url(p);
        assert_eq!(url, "file:///srv/my%20disks/base%251.vhd");
        assert_eq!(decode_file_url(&url).as_deref(), Some("/srv/my disks/base%1.vhd"));
        assert_eq!(decode_file_url("file://localhost/a/b.vhd").as_deref(), Some("/a/b.vhd"));
        assert_eq!(decode_file_url("file:///a%"), Some("/a%".into()));
        assert_eq!(decode_file_url("http://x/a"), None);
        assert_eq!(decode_file_url("file://./base.vhd").as_deref(), Some("./base.vhd"));
        assert_eq!(windows_relative(Path::new("sub/base.vhd")), ".\\sub\\base.vhd");
    }
}
