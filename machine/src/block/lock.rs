//! Image locking the way QEMU does it (block/file-posix.c), so that Ferrite and QEMU see each
//! other: open-file-description (OFD) byte-range locks on the image file itself, one byte per
//! permission at offset 100 + bit for "I hold this permission" and at 200 + bit for "I do not
//! let others hold it". Everyone takes only shared (read) locks and tests the opposite byte for
//! anyone else's lock. Bits: 0 consistent read, 1 write, 2 write-unchanged, 3 resize.
//!
//! OFD locks belong to the open file description, not the process, so two opens in one
//! process exclude each other too, and they vanish when the holder dies (kill -9 included).
//! Where OFD locks are missing (not Linux), `flock` stands in: Ferrite instances still exclude
//! each other, but QEMU no longer sees the lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::BlockError;

const PERM_BASE: u64 = 100;
const SHARED_BASE: u64 = 200;
const PERM_READ: u32 = 1 << 0;
const PERM_WRITE: u32 = 1 << 1;
const PERM_RESIZE: u32 = 1 << 3;
const PERM_ALL: u32 = 0xF;

/// What an opener wants and what it lets others do at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Reading, with anyone else doing anything (`readonly=on`): coexists with one writer.
    SharedRead,
    /// Reading, with no writer allowed (parents, backing files, `check`, `--snapshot` bases).
    ReadNoWriters,
    /// Reading and writing; other readers welcome, other writers not.
    Write,
}

impl LockMode {
    /// (permissions held, permissions shared with others), as QEMU counts them.
    fn perms(self) -> (u32, u32) {
        match self {
            LockMode::SharedRead => (PERM_READ, PERM_ALL),
            LockMode::ReadNoWriters => (PERM_READ, PERM_ALL & !(PERM_WRITE | PERM_RESIZE)),
            LockMode::Write => (PERM_READ | PERM_WRITE | PERM_RESIZE, PERM_ALL & !(PERM_WRITE | PERM_RESIZE)),
        }
    }
}

/// Held locks on one image; released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct ImageLock {
    _file: File,
    pub mode: LockMode,
}

fn perm_name(bit: u32) -> &'static str {
    match bit {
        0 => "consistent read",
        1 => "write",
        2 => "write unchanged",
        _ => "resize",
    }
}

impl ImageLock {
    /// Takes the locks for `mode` on `path`, or says who is in the way.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<ImageLock, BlockError> {
        let file = File::open(path).map_err(super::io_err(path, "open (for locking)"))?;
        imp::lock(&file, path, mode)?;
        Ok(ImageLock { _file: file, mode })
    }
}

fn locked(path: &Path, problem: String) -> BlockError {
    BlockError::Locked { path: PathBuf::from(path), problem }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::io;
    use std::os::fd::AsRawFd;

    fn fcntl(file: &File, cmd: libc::c_int, kind: libc::c_short, start: u64) -> io::Result<libc::flock> {
        // SAFETY: flock is plain data; all-zero is a valid value, and l_pid must be 0 for OFD
        // locks.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = start as libc::off_t;
        fl.l_len = 1;
        loop {
            // SAFETY: the descriptor is open for the duration of the call and `fl` is a valid
            // flock structure that the kernel may read and (for F_OFD_GETLK) write.
            let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
            if r != -1 {
                return Ok(fl);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Whether someone else holds a lock on byte `at`.
    fn taken(file: &File, at: u64) -> io::Result<bool> {
        let fl = fcntl(file, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, at)?;
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }

    pub(super) fn lock(file: &File, path: &Path, mode: LockMode) -> Result<(), BlockError> {
        let (perm, shared) = mode.perms();
        let unsupported = |e: &io::Error| {
            matches!(e.raw_os_error(), Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL))
        };
        // Take ours first, then look for conflicts, as QEMU does: two racing openers may both
        // fail, but never both succeed.
        for bit in 0..4 {
            for (base, want) in [(PERM_BASE, perm), (SHARED_BASE, !shared)] {
                if want & (1 << bit) == 0 {
                    continue;
                }
                match fcntl(file, libc::F_OFD_SETLK, libc::F_RDLCK as libc::c_short, base + bit as u64) {
                    Ok(_) => {}
                    Err(e) if unsupported(&e) => {
                        tracing::warn!("{}: the file system does not support OFD locks ({e}); not locking", path.display());
                        return Ok(());
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                        return Err(locked(path, format!("cannot lock byte {}: another process holds an exclusive lock", base + bit as u64)));
                    }
                    Err(source) => return Err(BlockError::Io { path: path.into(), op: "lock", source }),
                }
            }
        }
        for bit in 0..4u32 {
            let check = |at: u64| taken(file, at).map_err(|source| BlockError::Io { path: path.into(), op: "test the locks of", source });
            if perm & (1 << bit) != 0 && check(SHARED_BASE + bit as u64)? {
                return Err(locked(
                    path,
                    format!(
                        "another process (Ferrite or QEMU) is using the image and does not allow others \"{}\" access; is it a parent of an open image, or open elsewhere?",
                        perm_name(bit)
                    ),
                ));
            }
            if shared & (1 << bit) == 0 && check(PERM_BASE + bit as u64)? {
                return Err(locked(
                    path,
                    format!(
                        "another process (Ferrite or QEMU) has the image open with \"{}\" access; close it first, or open this one read-only",
                        perm_name(bit)
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;
    use std::os::fd::AsRawFd;

    pub(super) fn lock(file: &File, path: &Path, mode: LockMode) -> Result<(), BlockError> {
        let op = match mode {
            LockMode::SharedRead => return Ok(()),
            LockMode::ReadNoWriters => libc::LOCK_SH,
            LockMode::Write => libc::LOCK_EX,
        };
        // SAFETY: flock on a descriptor that stays open for the call.
        let r = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if r == 0 {
            return Ok(());
        }
        let _ = PERM_ALL;
        Err(locked(path, format!("the image is locked by another process: {}", std::io::Error::last_os_error())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ferrite-lock-{}-{name}", std::process::id()));
        std::fs::write(&p, [0u8; 1024]).unwrap();
        p
    }

    #[test]
    fn two_writers_exclude_each_other_readers_do_not() {
        let p = scratch("writers");
        let w = ImageLock::acquire(&p, LockMode::Write).unwrap();
        assert!(matches!(ImageLock::acquire(&p, LockMode::Write), Err(BlockError::Locked { .. })));
        let r = ImageLock::acquire(&p, LockMode::SharedRead).expect("a plain reader coexists with a writer");
        assert!(
            matches!(ImageLock::acquire(&p, LockMode::ReadNoWriters), Err(BlockError::Locked { .. })),
            "a reader that forbids writers cannot join a writer"
        );
        drop(w);
        let parent = ImageLock::acquire(&p, LockMode::ReadNoWriters).unwrap();
        let _parent2 = ImageLock::acquire(&p, LockMode::ReadNoWriters).expect("two children may share a parent");
        assert!(matches!(ImageLock::acquire(&p, LockMode::Write), Err(BlockError::Locked { .. })), "a parent in use cannot be written");
        drop((parent, _parent2, r));
        let _w = ImageLock::acquire(&p, LockMode::Write).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
}
