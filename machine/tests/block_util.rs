//! Helpers shared by the block_* tests (included with `#[path]`; as a test target of its own
//! it has nothing to run).
#![allow(dead_code)]

use machine::block::{self, BlockDevice, BlockError, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MIB: u64 = 1 << 20;

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ferrite-{name}-{}-{:x}", std::process::id(), Rng::seeded().next()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// On a memory file system where there is one (fsync costs nothing there): for tests
    /// that write thousands of images and do not test durability.
    pub fn in_memory(name: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return TempDir::new(name);
        }
        let p = shm.join(format!("ferrite-{name}-{}-{:x}", std::process::id(), Rng::seeded().next()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// xorshift64*: small, deterministic, good enough for test data and mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Seeded from the clock; the seed is printed so a failure can be replayed.
    pub fn seeded() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng::new(t ^ std::process::id() as u64)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `len` bytes of data that depend on `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// The qemu-img binary, or `None` after printing why the test is skipped.
pub fn qemu_img(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join("qemu-img")).find(|p| p.is_file())
    });
    if found.is_none() {
        println!("skipped: {test} needs qemu-img");
    }
    found
}

/// Runs qemu-img; returns (exit code, stdout + stderr).
pub fn run_qemu_img(bin: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin).args(args).output().expect("run qemu-img");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

pub fn qemu_ok(bin: &Path, args: &[&str]) -> String {
    let (code, text) = run_qemu_img(bin, args);
    assert_eq!(code, 0, "qemu-img {} failed:\n{text}", args.join(" "));
    text
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Random writes (some unaligned, some across 2 MiB block edges) and reads against `model`.
pub fn exercise(disk: &mut dyn BlockDevice, model: &mut [u8], rng: &mut Rng, ops: usize) {
    let size = model.len() as u64;
    for i in 0..ops {
        let len = match rng.below(4) {
            0 => 1 + rng.below(1000),
            1 => 512 * (1 + rng.below(8)),
            2 => 512 * (1 + rng.below(600)),
            _ => 1 + rng.below(70_000),
        }
        .min(size);
        let mut off = rng.below(size - len + 1);
        if rng.below(3) == 0 {
            // Straddle a block boundary.
            let edge = (rng.below(size / (2 * MIB)) + 1) * 2 * MIB;
            off = edge.saturating_sub(len / 2).min(size - len);
        }
        if rng.below(3) != 0 {
            off &= !511;
        }
        let data = pattern(rng.next(), len as usize);
        disk.write_at(off, &data).unwrap_or_else(|e| panic!("op {i}: write {len} at {off}: {e}"));
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
        let roff = rng.below(size - 4096);
        let mut got = vec![0u8; 1 + rng.below(4095) as usize];
        disk.read_at(roff, &mut got).unwrap();
        assert_eq!(&got[..], &model[roff as usize..roff as usize + got.len()], "op {i}: read at {roff}");
        if rng.below(10) == 0 {
            disk.flush().unwrap();
        }
    }
}

pub fn assert_disk_is(disk: &mut dyn BlockDevice, model: &[u8]) {
    assert_eq!(disk.len(), model.len() as u64);
    let mut buf = vec![0u8; MIB as usize];
    for (i, want) in model.chunks(MIB as usize).enumerate() {
        disk.read_at(i as u64 * MIB, &mut buf[..want.len()]).unwrap();
        assert!(buf[..want.len()] == *want, "{}: MiB {i} differs", disk.path().display());
    }
}


/// `block::open`, waiting out a lock briefly: a process another test thread is starting holds
/// copies of every descriptor (our lock descriptors too) between its fork and its exec.
pub fn open_when_free(path: &Path, opts: &OpenOptions) -> Result<Box<dyn BlockDevice>, BlockError> {
    for _ in 0..100 {
        match block::open(path, opts) {
            Err(BlockError::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(20)),
            r => return r,
        }
    }
    block::open(path, opts)
}

/// `block::check`, waiting out a lock the same way.
pub fn check_when_free(path: &Path) -> Result<block::CheckReport, BlockError> {
    for _ in 0..100 {
        match block::check(path, &OpenOptions::default()) {
            Err(BlockError::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(20)),
            r => return r,
        }
    }
    block::check(path, &OpenOptions::default())
}
