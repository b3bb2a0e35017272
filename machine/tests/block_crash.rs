//! Crash consistency: a child process (this test binary re-run as `crash_child`) writes
//! stamped sectors and flushes in a loop, reporting each completed flush on stdout; it is
//! killed with SIGKILL at random moments, many times over. After every kill the image must
//! pass Ferrite's check (and `qemu-img check` for qcow2), every flushed write must be there,
//! every sector must hold either its flushed content or a write of the batch in flight, never
//! anything else; and QEMU's view of a dynamic VHD must equal Ferrite's.
//!
//! `FERRITE_CRASH_ROUNDS` sets the number of kills per image kind (default 25).

#[path = "block_util.rs"]
mod util;

use machine::block::{self, CreateFormat, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{qemu_img, run_qemu_img, s, Rng, TempDir, MIB};

const CHILD_ENV: &str = "FERRITE_BLOCK_CRASH_CHILD";
const SIZE: u64 = 128 * MIB;
/// Writes wander through the disk in an 8 MiB window that moves 64 KiB per batch, so new
/// blocks keep being allocated all through the test.
const WINDOW: u64 = 8 * MIB / 512;
const STEP: u64 = 64 * 1024 / 512;

/// Sector `lba` as batch `batch` writes it: the batch, the sector number, then noise.
fn stamp(batch: u64, lba: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..8].copy_from_slice(&batch.to_le_bytes());
    b[8..16].copy_from_slice(&lba.to_le_bytes());
    Rng::new(batch.wrapping_mul(0x100_0000_01B3) ^ lba).fill(&mut b[16..]);
    b
}

/// Which batch wrote this sector (0: never written), or what is wrong with it.
fn decode(sector: &[u8], lba: u64) -> Result<u64, String> {
    if sector.iter().all(|&b| b == 0) {
        return Ok(0);
    }
    let batch = u64::from_le_bytes(sector[..8].try_into().unwrap());
    let at = u64::from_le_bytes(sector[8..16].try_into().unwrap());
    if at != lba {
        return Err(format!("sector {lba} holds sector {at}'s data (batch {batch})"));
    }
    if sector != stamp(batch, lba) {
        return Err(format!("sector {lba} holds a damaged write of batch {batch}"));
    }
    Ok(batch)
}

/// The writes of one batch: (first sector, count).
fn batch_writes(seed: u64, batch: u64, sectors: u64) -> Vec<(u64, u64)> {
    let mut rng = Rng::new(seed ^ batch.wrapping_mul(0x9E37_79B9));
    let window = (batch * STEP) % (sectors - WINDOW);
    (0..1 + rng.below(6))
        .map(|_| {
            let n = 1 + rng.below(64);
            let lba = if rng.below(8) == 0 { rng.below(sectors - n) } else { window + rng.below(WINDOW - n) };
            (lba, n)
        })
        .collect()
}

/// The child: writes batches from `start` on, flushing after each, until killed.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut it = spec.split(';');
    let path = PathBuf::from(it.next().unwrap());
    let seed: u64 = it.next().unwrap().parse().unwrap();
    let start: u64 = it.next().unwrap().parse().unwrap();
    let mut disk = util::open_when_free(&path, &OpenOptions::default()).unwrap();
    let sectors = disk.sector_count();
    let mut out = std::io::stdout();
    for k in start.. {
        for (lba, n) in batch_writes(seed, k, sectors) {
            let buf: Vec<u8> = (lba..lba + n).flat_map(stamp_for(k)).collect();
            disk.write_at(lba * 512, &buf).unwrap();
        }
        disk.flush().unwrap();
        writeln!(out, "F {k}").unwrap();
        out.flush().unwrap();
    }
}

fn stamp_for(batch: u64) -> impl Fn(u64) -> [u8; 512] {
    move |lba| stamp(batch, lba)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    VhdDynamic,
    VhdDifferencing,
    Qcow2,
}

/// Reads the whole disk as Ferrite sees it.
fn view(path: &Path) -> Vec<u8> {
    let mut d = util::open_when_free(path, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    let mut v = vec![0u8; d.len() as usize];
    d.read_at(0, &mut v).unwrap();
    v
}

fn crash_rounds(kind: Kind, name: &str) {
    let rounds: u32 = std::env::var("FERRITE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let qemu = qemu_img(&format!("the qemu-img half of {name}"));
    let dir = TempDir::new(name);
    let path = dir.join(match kind {
        Kind::Qcow2 => "crash.qcow2",
        _ => "crash.vhd",
    });
    match kind {
        Kind::VhdDynamic => drop(block::create(&path, CreateFormat::VhdDynamic, SIZE, None).unwrap()),
        Kind::Qcow2 => drop(block::create(&path, CreateFormat::Qcow2, SIZE, None).unwrap()),
        Kind::VhdDifferencing => {
            // A parent holding batch 1 in every third 64 KiB stretch.
            let base = dir.join("base.vhd");
            block::create(&base, CreateFormat::VhdDynamic, SIZE, None).unwrap();
            let mut b = util::open_when_free(&base, &OpenOptions::default()).unwrap();
            let sectors = b.sector_count();
            for first in (0..sectors).step_by(3 * STEP as usize) {
                let buf: Vec<u8> = (first..(first + STEP).min(sectors)).flat_map(stamp_for(1)).collect();
                b.write_at(first * 512, &buf).unwrap();
            }
            b.flush().unwrap();
            drop(b);
            block::create(&path, CreateFormat::VhdDynamic, 0, Some(&base)).unwrap();
        }
    }
    let mut expected: Vec<u64> = view(&path).chunks(512).enumerate().map(|(i, s)| decode(s, i as u64).unwrap()).collect();
    let sectors = expected.len() as u64;
    let mut rng = Rng::seeded();
    let seed = rng.next();
    println!("{name}: seed {seed:#x}");
    let exe = std::env::current_exe().unwrap();
    let (mut next, mut flushes, mut inflight_seen, mut warned) = (2u64, 0u64, 0u32, 0u32);
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1", "--quiet"])
            .env(CHILD_ENV, format!("{};{seed};{next}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.code().is_none(), "round {round}: the writer stopped by itself ({status}):\n{err}");
        let last = out.lines().filter_map(|l| l.strip_prefix("F ")).filter_map(|n| n.parse::<u64>().ok()).max();
        let flushed_to = last.unwrap_or(next - 1);
        flushes += flushed_to + 1 - next;
        // Flushed batches are certain; the one after may have landed in part.
        for k in next..=flushed_to {
            for (lba, n) in batch_writes(seed, k, sectors) {
                expected[lba as usize..(lba + n) as usize].fill(k);
            }
        }
        let inflight: std::collections::HashSet<u64> =
            batch_writes(seed, flushed_to + 1, sectors).into_iter().flat_map(|(lba, n)| lba..lba + n).collect();

        let report = util::check_when_free(&path).unwrap_or_else(|e| panic!("round {round}: check after SIGKILL: {e}"));
        warned += !report.warnings.is_empty() as u32;
        let v = view(&path);
        for (i, sector) in v.chunks(512).enumerate() {
            let got = decode(sector, i as u64).unwrap_or_else(|e| panic!("round {round}: {e}"));
            if got != expected[i] {
                assert!(
                    got == flushed_to + 1 && inflight.contains(&(i as u64)),
                    "round {round}: sector {i} holds batch {got}, expected {} (flushed through {flushed_to})",
                    expected[i]
                );
                expected[i] = got;
                inflight_seen += 1;
            }
        }
        if let Some(bin) = &qemu {
            if kind == Kind::Qcow2 {
                let (code, text) = run_qemu_img(bin, &["check", s(&path)]);
                assert!(code == 0 || code == 3, "round {round}: qemu-img check (exit {code}):\n{text}");
                if code == 3 {
                    println!("round {round}: qemu-img check: {}", text.lines().find(|l| l.contains("leaked")).unwrap_or("leaks"));
                }
            }
            if kind != Kind::VhdDifferencing && (round % 5 == 4 || round + 1 == rounds) {
                let ours = dir.join("ferrite-view.raw");
                std::fs::write(&ours, &v).unwrap();
                let fmt = if kind == Kind::Qcow2 { "qcow2" } else { "vpc" };
                let (code, text) = run_qemu_img(bin, &["compare", "-f", fmt, "-F", "raw", s(&path), s(&ours)]);
                assert_eq!(code, 0, "round {round}: QEMU's view differs from Ferrite's:\n{text}");
            }
        }
        next = flushed_to + 2;
    }
    println!("{name}: {rounds} kills, {flushes} flushed batches checked, {inflight_seen} unflushed sectors seen landed, {warned} checks with warnings");
}

#[test]
fn vhd_dynamic_survives_sigkill() {
    crash_rounds(Kind::VhdDynamic, "vhd_dynamic_survives_sigkill");
}

#[test]
fn vhd_differencing_survives_sigkill() {
    crash_rounds(Kind::VhdDifferencing, "vhd_differencing_survives_sigkill");
}

#[test]
fn qcow2_survives_sigkill() {
    crash_rounds(Kind::Qcow2, "qcow2_survives_sigkill");
}
