//! Mutation fuzzing of every parser: thousands of damaged footers, dynamic headers, BATs,
//! bitmaps, parent locators and qcow2 headers and tables. Opening may fail (it should, mostly)
//! but never panic or hang; whatever opens is read end to end and written to.
//!
//! `FERRITE_FUZZ_ITERS` sets the iterations per parser (default 1000); `FERRITE_FUZZ_SEED`
//! replays a run. A failing input is kept in the temporary directory and its path printed.

#[path = "block_util.rs"]
mod util;

use machine::block::{self, CreateFormat, OpenOptions};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use util::{pattern, Rng, TempDir, MIB};

fn iters() -> u64 {
    std::env::var("FERRITE_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

fn seed() -> Rng {
    match std::env::var("FERRITE_FUZZ_SEED").ok().and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()) {
        Some(s) => Rng(s),
        None => Rng::seeded(),
    }
}

/// Values that tend to break size and offset arithmetic.
fn interesting(rng: &mut Rng, file_len: u64) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u32::MAX as u64,
        4 => 0x7FFF_FFFF,
        5 => file_len / 512,
        6 => file_len,
        7 => file_len.saturating_sub(512),
        8 => 1 << rng.below(64),
        _ => rng.next(),
    }
}

/// Damages `img[region]` in one to four ways.
fn mutate(img: &mut [u8], region: std::ops::Range<usize>, rng: &mut Rng) {
    let file_len = img.len() as u64;
    if region.is_empty() {
        return;
    }
    for _ in 0..1 + rng.below(4) {
        let at = region.start + rng.below(region.len() as u64) as usize;
        match rng.below(5) {
            0 => img[at] = rng.next() as u8,
            1 => img[at] ^= 1 << rng.below(8),
            2 => {
                let at = at & !3;
                if at + 4 <= img.len() {
                    img[at..at + 4].copy_from_slice(&(interesting(rng, file_len) as u32).to_be_bytes());
                }
            }
            3 => {
                let at = at & !7;
                if at + 8 <= img.len() {
                    img[at..at + 8].copy_from_slice(&interesting(rng, file_len).to_be_bytes());
                }
            }
            _ => {
                let n = (1 + rng.below(16) as usize).min(region.end - at);
                for b in &mut img[at..at + n] {
                    *b = 0;
                }
            }
        }
    }
}

fn vhd_checksum(b: &mut [u8], at: usize) {
    b[at..at + 4].fill(0);
    let sum = !b.iter().fold(0u32, |s, &x| s.wrapping_add(x as u32));
    b[at..at + 4].copy_from_slice(&sum.to_be_bytes());
}

/// Opens the damaged image every way and uses whatever opens. Returns whether it opened.
fn exercise(path: &Path, rng: &mut Rng) -> bool {
    let mut opened = false;
    let _ = block::check(path, &OpenOptions { locking: false, ..OpenOptions::default() });
    for (i, opts) in [
        OpenOptions { locking: false, read_only: true, ..OpenOptions::default() },
        OpenOptions { locking: false, ..OpenOptions::default() },
        OpenOptions { locking: false, snapshot: true, ..OpenOptions::default() },
    ]
    .into_iter()
    .enumerate()
    {
        let Ok(mut d) = block::open(path, &opts) else { continue };
        opened = true;
        let len = d.len();
        let mut buf = vec![0u8; MIB as usize];
        if i == 0 {
            // Everything, once.
            let mut off = 0;
            while off < len {
                let n = (len - off).min(MIB) as usize;
                if d.read_at(off, &mut buf[..n]).is_err() {
                    break;
                }
                off += n as u64;
            }
        } else if len > 0 {
            for _ in 0..4 {
                let n = 1 + rng.below(70_000).min(len - 1);
                let _ = d.read_at(rng.below(len - n + 1), &mut buf[..n as usize]);
            }
        }
        if !d.is_read_only() && len > 0 {
            for _ in 0..3 {
                let n = 1 + rng.below(9000).min(len - 1);
                let at = rng.below(len - n + 1);
                let _ = d.write_at(at, &pattern(rng.next(), n as usize));
            }
            let _ = d.flush();
            let _ = d.check();
        }
    }
    opened
}

/// Runs `iters()` rounds: restore `pristine`, let `damage` mutate it, write, exercise.
fn fuzz(name: &str, pristine: &[u8], file: &Path, mut damage: impl FnMut(&mut Vec<u8>, &mut Rng)) {
    let mut rng = seed();
    println!("{name}: FERRITE_FUZZ_SEED={:#x}", rng.0);
    let mut opened = 0;
    let n = iters();
    let last = std::env::temp_dir().join(format!("ferrite-fuzz-last-{}", name.replace(' ', "-")));
    for i in 0..n {
        let mut img = pristine.to_vec();
        damage(&mut img, &mut rng);
        std::fs::write(file, &img).unwrap();
        // Kept until the run ends well: an abort (stack overflow, OOM) leaves it behind.
        std::fs::write(&last, &img).unwrap();
        let state = rng.0;
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| exercise(file, &mut rng)));
        match r {
            Ok(o) => opened += o as u32,
            Err(_) => {
                let keep = std::env::temp_dir().join(format!("ferrite-fuzz-{}-{i}", name.replace(' ', "-")));
                std::fs::write(&keep, &img).unwrap();
                panic!("{name}: iteration {i} (rng state {state:#x}) panicked; input kept at {}", keep.display());
            }
        }
    }
    let _ = std::fs::remove_file(&last);
    println!("{name}: {n} damaged images, {opened} still opened");
}

/// A dynamic VHD with two of its three blocks allocated, one of them only in part.
fn dynamic_image(dir: &TempDir) -> Vec<u8> {
    let p = dir.join("seed.vhd");
    block::create(&p, CreateFormat::VhdDynamic, 5 * MIB, None).unwrap();
    let mut d = block::open(&p, &OpenOptions::default()).unwrap();
    d.write_at(4096, &pattern(1, 10_000)).unwrap();
    d.write_at(4 * MIB + 512, &pattern(2, 3000)).unwrap();
    drop(d);
    let img = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    img
}

#[test]
fn fuzz_vhd_footer() {
    let dir = TempDir::in_memory("fuzz-footer");
    let img = dynamic_image(&dir);
    fuzz("vhd footer", &img, &dir.join("f.vhd"), |img, rng| {
        let len = img.len();
        let (start, copy) = if rng.below(3) == 0 { (0, true) } else { (len - 512, false) };
        mutate(img, start..start + 512, rng);
        if rng.below(10) < 8 {
            vhd_checksum(&mut img[start..start + 512], 64);
        }
        if !copy && rng.below(2) == 0 {
            // Keep the copy in step so the end footer is trusted.
            let end: Vec<u8> = img[len - 512..].to_vec();
            img[..512].copy_from_slice(&end);
        }
    });
}

#[test]
fn fuzz_vhd_dynamic_header_and_bat() {
    let dir = TempDir::in_memory("fuzz-header");
    let img = dynamic_image(&dir);
    fuzz("vhd header+BAT", &img, &dir.join("h.vhd"), |img, rng| {
        match rng.below(3) {
            0 => {
                mutate(img, 512..1536, rng);
                if rng.below(10) < 8 {
                    vhd_checksum(&mut img[512..1536], 36);
                }
            }
            1 => mutate(img, 1536..2048, rng),
            _ => {
                // A BAT entry moved to near-plausible places.
                let i = rng.below(3) as usize;
                let cur = u32::from_be_bytes(img[1536..1540].try_into().unwrap());
                let v = match rng.below(4) {
                    0 => cur.wrapping_add(rng.below(9) as u32).wrapping_sub(4),
                    1 => (img.len() as u32 / 512).wrapping_sub(rng.below(5000) as u32),
                    2 => rng.below(8) as u32,
                    _ => rng.next() as u32,
                };
                img[1536 + 4 * i..1540 + 4 * i].copy_from_slice(&v.to_be_bytes());
            }
        }
    });
}

#[test]
fn fuzz_vhd_bitmaps() {
    let dir = TempDir::in_memory("fuzz-bitmap");
    let img = dynamic_image(&dir);
    let first = u32::from_be_bytes(img[1536..1540].try_into().unwrap()) as usize * 512;
    fuzz("vhd bitmaps", &img, &dir.join("b.vhd"), |img, rng| mutate(img, first..first + 512, rng));
}

#[test]
fn fuzz_vhd_differencing_locators() {
    let dir = TempDir::in_memory("fuzz-locator");
    let base = dir.join("base.vhd");
    block::create(&base, CreateFormat::VhdDynamic, 5 * MIB, None).unwrap();
    let mut d = block::open(&base, &OpenOptions::default()).unwrap();
    d.write_at(0, &pattern(3, 3 * MIB as usize)).unwrap();
    drop(d);
    let child = dir.join("child.vhd");
    block::create(&child, CreateFormat::VhdDynamic, 0, Some(&base)).unwrap();
    let mut d = block::open(&child, &OpenOptions::default()).unwrap();
    d.write_at(MIB + 7, &pattern(4, 4000)).unwrap();
    drop(d);
    let img = std::fs::read(&child).unwrap();
    let bat_end = 1536 + 512;
    fuzz("vhd parent locators", &img, &child, |img, rng| {
        match rng.below(3) {
            // Parent id, time stamp, name and locator entries.
            0 => mutate(img, 512 + 40..512 + 768, rng),
            // Locator data.
            1 => mutate(img, bat_end..bat_end + 1024, rng),
            _ => mutate(img, 512 + 576..512 + 768, rng),
        }
        if rng.below(10) < 9 {
            vhd_checksum(&mut img[512..1536], 36);
        }
    });
}

#[test]
fn fuzz_qcow2_header_and_tables() {
    let dir = TempDir::in_memory("fuzz-qcow2");
    let p = dir.join("seed.qcow2");
    block::create(&p, CreateFormat::Qcow2, 6 * MIB, None).unwrap();
    let mut d = block::open(&p, &OpenOptions::default()).unwrap();
    d.write_at(4096, &pattern(1, 100_000)).unwrap();
    d.write_at(5 * MIB, &pattern(2, 70_000)).unwrap();
    d.flush().unwrap();
    drop(d);
    let img = std::fs::read(&p).unwrap();
    let be64 = |at: usize| u64::from_be_bytes(img[at..at + 8].try_into().unwrap()) as usize;
    let (l1, rt) = (be64(40), be64(48));
    let l2 = be64(l1) & 0x00FF_FFFF_FFFF_FE00;
    let rb = be64(rt) & !0x1FF;
    let regions = [0..512usize, l1..l1 + 64, rt..rt + 64, l2..l2 + 1024, rb..rb + 256];
    fuzz("qcow2 header+tables", &img, &dir.join("q.qcow2"), |img, rng| {
        let r = regions[rng.below(regions.len() as u64) as usize].clone();
        mutate(img, r, rng);
    });
}

#[test]
fn fuzz_detection_of_random_files() {
    let dir = TempDir::in_memory("fuzz-detect");
    let mut rng = seed();
    let p = dir.join("r.img");
    for _ in 0..iters() / 3 {
        let len = rng.below(70_000) as usize;
        let mut img = vec![0u8; len];
        if rng.below(2) == 0 {
            rng.fill(&mut img);
        }
        let magic: &[u8] = match rng.below(4) {
            0 => b"QFI\xfb",
            1 => b"conectix",
            2 => b"cxsparse",
            _ => b"",
        };
        if len >= 512 && rng.below(2) == 0 {
            img[len - 512..len - 512 + magic.len()].copy_from_slice(magic);
        } else if len >= magic.len() {
            img[..magic.len()].copy_from_slice(magic);
        }
        std::fs::write(&p, &img).unwrap();
        exercise(&p, &mut rng);
    }
}
