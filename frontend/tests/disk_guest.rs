//! Disk images through a guest: Linux (the initramfs of `tests/linux/build.sh`, in one of its
//! `ferrite.disk=` modes) writes and reads the `--hdb` disk through the IDE controller.
//!
//! - `pattern_*`: for each image format the guest writes a known pattern at a few places;
//!   after it powers off, `qemu-img convert -O raw` of the image gives exactly the bytes
//!   computed here (the guest also read it back past its page cache), and `ferrite img
//!   check` and `qemu-img check` find nothing wrong.
//! - `crash_*`: the crash test. The guest writes numbered 4 KiB records in rounds, flushing
//!   each round (ATA FLUSH CACHE) before it reports it on the serial console; Ferrite is
//!   SIGKILLed at a random moment, several times on the same image (raw, fixed, dynamic and
//!   differencing VHD, qcow2 alone and over a backing file). After each kill both checkers
//!   accept the image (leaked space allowed, damage not) and Ferrite's reader and `qemu-img
//!   convert` find every record of the rounds reported flushed (or of a later round) in place.
//!   The seed is printed; `FERRITE_CRASH_SEED=N` repeats a run, `FERRITE_CRASH_RUNS=N` (3 by
//!   default) sets how many kills each image gets.
//!
//! The guests are built once into CARGO_TARGET_TMPDIR (or taken from $FERRITE_LINUX_GUESTS);
//! the tests say "skipped" when that cannot be done (a host without Debian's packages) or
//! when qemu-img is missing (`apt-get install qemu-utils`). They run with `--accel auto`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::{describe, ferrite};

const SECTOR: usize = 512;
/// The size of every test disk.
const DISK: &str = "64M";
const DISK_BYTES: usize = 64 << 20;
/// Where the guest writes, as LBA+SECTORS (1.1 MiB: the interpreter is slow at making it):
/// an odd start, a run across a 2 MiB VHD block and several 64 KiB qcow2 clusters, one further
/// in, and the last sectors of the disk.
const REGIONS: &[(u64, u64)] = &[(1, 1023), (4000, 1000), (65536, 128), (131000, 72)];
/// A child image's writes: over part of the parent's and beside them.
const CHILD_REGIONS: &[(u64, u64)] = &[(3800, 400), (4900, 200), (100000, 64)];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn have_qemu_img() -> bool {
    Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// One build of the Linux guest (cloud kernel) for all the tests.
static LINUX: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);

fn linux_guest() -> Result<PathBuf, String> {
    let mut g = LINUX.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| {
        if let Some(dir) = std::env::var_os("FERRITE_LINUX_GUESTS") {
            return Ok(PathBuf::from(dir));
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linux-guests");
        let run = Command::new("bash")
            .arg(repo().join("tests/linux/build.sh"))
            .arg(&out)
            .env("FERRITE_LINUX_FLAVOURS", "cloud")
            .output()
            .map_err(|e| format!("cannot run tests/linux/build.sh: {e}"))?;
        if !run.status.success() {
            return Err(format!("tests/linux/build.sh failed: {}", String::from_utf8_lossy(&run.stderr).lines().last().unwrap_or("")));
        }
        Ok(out)
    })
    .clone()
}

/// The guest and qemu-img, or why the test cannot run.
fn prerequisites(name: &str) -> Option<PathBuf> {
    if !have_qemu_img() {
        println!("skipped {name}: qemu-img is not installed (apt-get install qemu-utils)");
        return None;
    }
    match linux_guest() {
        Ok(d) => Some(d),
        Err(why) => {
            println!("skipped {name}: the Linux guest could not be built: {why}");
            None
        }
    }
}

/// A directory for one test's files, removed when the test passes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("disk-guest-{name}"));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn regions_arg(regions: &[(u64, u64)]) -> String {
    regions.iter().map(|(l, n)| format!("{l}+{n}")).collect::<Vec<_>>().join(",")
}

/// A copy of the guest's boot disk whose kernel command line has `extra` added (syslinux.cfg
/// rewritten with mtools).
fn boot_disk(guest: &Path, s: &Scratch, extra: &str) -> String {
    let disk = s.path("boot.img");
    std::fs::copy(guest.join("cloud/disk.img"), &disk).unwrap();
    let cfg = std::fs::read_to_string(guest.join("cloud/syslinux.cfg")).unwrap();
    let cfg: String = cfg
        .lines()
        .map(|l| if l.trim_start().starts_with("APPEND ") { format!("{l} {extra}\n") } else { format!("{l}\n") })
        .collect();
    assert!(cfg.contains(extra), "syslinux.cfg has no APPEND line");
    let cfg_path = s.path("syslinux.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let o = Command::new("mcopy").args(["-o", "-i", &disk, &cfg_path, "::syslinux.cfg"]).output().expect("run mcopy");
    assert!(o.status.success(), "mcopy: {}", describe(&o));
    disk
}

/// Boots the guest with `hdb` as the second disk, in `mode`, until it powers off; returns
/// the serial output.
fn run_guest(guest: &Path, s: &Scratch, hdb: &str, mode: &str, seed: u32, regions: &[(u64, u64)]) -> String {
    let extra = format!("ferrite.disk={mode} ferrite.seed={seed} ferrite.regions={}", regions_arg(regions));
    let boot = boot_disk(guest, s, &extra);
    let serial = s.path("serial.log");
    let o = ferrite(&["--accel", "auto", "--timeout", "3000", "--serial", &format!("file:{serial}"), "--hda", &boot, "--hdb", hdb]);
    let text = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(o.status.success(), "{mode} on {hdb}: {}\n--- serial ---\n{text}", describe(&o));
    assert!(text.contains("FERRITE-DISK-OK"), "{mode} on {hdb}: no FERRITE-DISK-OK\n--- serial ---\n{text}");
    text
}

/// The pattern of tests/linux/init: sector `lba` written with `seed`.
fn pattern_sector(seed: u32, lba: u64) -> Vec<u8> {
    let mut line = format!("{:<511}\n", format!("ferrite-pattern seed {seed} lba {lba:010}")).into_bytes();
    line.truncate(SECTOR);
    line
}

fn apply(image: &mut [u8], seed: u32, regions: &[(u64, u64)]) {
    for &(lba, n) in regions {
        for l in lba..lba + n {
            let at = l as usize * SECTOR;
            image[at..at + SECTOR].copy_from_slice(&pattern_sector(seed, l));
        }
    }
}

/// An empty disk of the size qemu-img gives the image: 64 MiB, or for VHD the whole CHS
/// geometry it was rounded up to (as `ferrite img create` and qemu-img both do).
fn blank(image: &str, qemu_format: &str) -> Vec<u8> {
    if qemu_format != "vpc" {
        return vec![0; DISK_BYTES];
    }
    let o = Command::new("qemu-img").args(["info", "-f", "vpc", "--output=json", image]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let at = text.find("\"virtual-size\":").expect("qemu-img info: virtual-size") + 15;
    let size: usize = text[at..].trim_start().split([',', '\n']).next().unwrap().trim().parse().unwrap();
    assert!((DISK_BYTES..DISK_BYTES + (1 << 20)).contains(&size), "{image}: {size} bytes");
    vec![0; size]
}

/// `qemu-img convert -O raw` of the image, read back.
fn qemu_raw(s: &Scratch, image: &str, qemu_format: &str) -> Vec<u8> {
    let out = s.path("converted.raw");
    let _ = std::fs::remove_file(&out);
    let o = Command::new("qemu-img").args(["convert", "-f", qemu_format, "-O", "raw", image, &out]).output().unwrap();
    assert!(o.status.success(), "qemu-img convert {image}: {}", describe(&o));
    std::fs::read(&out).unwrap()
}

/// The first difference between two disks, for a readable failure.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    if got.len() != want.len() {
        return format!("{} bytes, expected {}", got.len(), want.len());
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
    let sector = at / SECTOR;
    format!(
        "byte {at} (sector {sector}) differs: got {:?}, expected {:?}",
        String::from_utf8_lossy(&got[sector * SECTOR..sector * SECTOR + 64]),
        String::from_utf8_lossy(&want[sector * SECTOR..sector * SECTOR + 64])
    )
}

/// Both checkers accept the image: `ferrite img check` with status 0 (or 3, harmless
/// oddities such as leaked clusters, when `leaks_ok`), `qemu-img check` with 0 (or 3, leaks).
/// QEMU has no checker for raw and VHD (`vpc`: "does not support checks").
fn assert_checks(image: &str, qemu_format: &str, leaks_ok: bool) {
    let o = ferrite(&["img", "check", image]);
    let ok = o.status.code() == Some(0) || (leaks_ok && o.status.code() == Some(3));
    assert!(ok, "ferrite img check {image}: {}", describe(&o));
    if qemu_format != "qcow2" {
        return;
    }
    let o = Command::new("qemu-img").args(["check", "-f", qemu_format, image]).output().unwrap();
    let ok = o.status.code() == Some(0) || (leaks_ok && o.status.code() == Some(3));
    assert!(ok, "qemu-img check {image}: {}", describe(&o));
}

/// The guest writes the pattern to a new `format` image; the image holds exactly that.
fn pattern(name: &str, format: &str, qemu_format: &str) {
    let Some(guest) = prerequisites(name) else { return };
    let s = Scratch::new(name);
    let image = s.path(&format!("disk.{format}"));
    let o = ferrite(&["img", "create", "-f", format, "-s", DISK, &image]);
    assert!(o.status.success(), "img create: {}", describe(&o));
    let t = Instant::now();
    let serial = run_guest(&guest, &s, &image, "write-pattern", 7, REGIONS);
    println!("{name}: written in {:.1} s", t.elapsed().as_secs_f64());
    print!("{}", serial.lines().filter(|l| l.starts_with("FERRITE-DISK")).map(|l| format!("  {l}\n")).collect::<String>());
    assert_checks(&image, qemu_format, false);
    let mut want = blank(&image, qemu_format);
    apply(&mut want, 7, REGIONS);
    let got = qemu_raw(&s, &image, qemu_format);
    assert!(got == want, "{name}: {}", first_difference(&got, &want));
}

#[test]
fn pattern_raw() {
    pattern("pattern_raw", "raw", "raw");
}

#[test]
fn pattern_vhd_fixed() {
    pattern("pattern_vhd_fixed", "vhd-fixed", "vpc");
}

#[test]
fn pattern_vhd_dynamic() {
    pattern("pattern_vhd_dynamic", "vhd", "vpc");
}

#[test]
fn pattern_qcow2() {
    pattern("pattern_qcow2", "qcow2", "qcow2");
}

/// A parent written by one boot, a child over it written by another: the child reads as the
/// parent with the child's writes on top, and the parent is unchanged.
fn differencing(name: &str, format: &str, qemu_format: &str) {
    let Some(guest) = prerequisites(name) else { return };
    let s = Scratch::new(name);
    let parent = s.path(&format!("parent.{format}"));
    let child = s.path(&format!("child.{format}"));
    let o = ferrite(&["img", "create", "-f", format, "-s", DISK, &parent]);
    assert!(o.status.success(), "img create: {}", describe(&o));
    run_guest(&guest, &s, &parent, "write-pattern", 1, REGIONS);
    let o = ferrite(&["img", "create", "-f", format, "-b", &parent, &child]);
    assert!(o.status.success(), "img create -b: {}", describe(&o));
    run_guest(&guest, &s, &child, "write-pattern", 2, CHILD_REGIONS);
    assert_checks(&child, qemu_format, false);
    let mut want_parent = blank(&parent, qemu_format);
    apply(&mut want_parent, 1, REGIONS);
    if qemu_format == "qcow2" {
        let mut want_child = want_parent.clone();
        apply(&mut want_child, 2, CHILD_REGIONS);
        let got = qemu_raw(&s, &child, qemu_format);
        assert!(got == want_child, "{name}: child: {}", first_difference(&got, &want_child));
    } else {
        // QEMU cannot open a differencing VHD's parent: the guest reads the parent's sectors
        // through the child where the child did not write (its own writes it read back when
        // it wrote them).
        run_guest(&guest, &s, &child, "verify-pattern", 1, &subtract(REGIONS, CHILD_REGIONS));
    }
    let got = qemu_raw(&s, &parent, qemu_format);
    assert!(got == want_parent, "{name}: parent: {}", first_difference(&got, &want_parent));
}

/// The sectors of `a` outside every region of `b`, as regions.
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(lba, n) in a {
        let mut start = None;
        for l in lba..=lba + n {
            let keep = l < lba + n && !b.iter().any(|&(bl, bn)| (bl..bl + bn).contains(&l));
            match (keep, start) {
                (true, None) => start = Some(l),
                (false, Some(s)) => {
                    out.push((s, l - s));
                    start = None;
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn subtract_regions() {
    assert_eq!(subtract(REGIONS, CHILD_REGIONS), [(1, 1023), (4200, 700), (65536, 128), (131000, 72)]);
}

#[test]
fn pattern_qcow2_child() {
    differencing("pattern_qcow2_child", "qcow2", "qcow2");
}

#[test]
fn pattern_vhd_differencing() {
    differencing("pattern_vhd_differencing", "vhd", "vpc");
}

// --- The crash test ------------------------------------------------------------------------
//
// The guest's `diskio records` (tests/linux/diskio.c) writes rounds of numbered 4 KiB records
// with O_DIRECT, fdatasyncs the disk (ATA FLUSH CACHE) and only then reports the round on the
// serial console. Ferrite is SIGKILLed at a random moment, several times on the same image,
// each run going on from the round after the last one reported. After each kill both checkers
// accept the image and every sector holds what the reported rounds put there last, or what a
// later round put there (unreported rounds may or may not have landed, sector by sector).

/// The crash test's disk (bigger than DISK, so new VHD blocks keep being allocated across runs).
const CRASH_DISK: &str = "256M";
/// Of tests/linux/diskio.c: record size, records per round, the rewritten slots before the middle.
const SLOT: u64 = 4096;
const RECORDS: u64 = 8;
const HOT: u64 = 256;
/// The longest wait between the guest's first record and the kill.
const MAX_KILL_DELAY_MS: u64 = 3000;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The slot of record `i` of round `seq` (diskio.c's record_slot).
fn record_slot(seed: u64, seq: u64, i: u64, slots: u64) -> u64 {
    let h = splitmix64(seed ^ splitmix64(seq.wrapping_mul(RECORDS).wrapping_add(i)));
    if i < RECORDS / 2 || slots < 2 * HOT {
        h % slots
    } else {
        slots / 2 - HOT + h % HOT
    }
}

/// Sector `j` of round `seq`'s record in `slot` (diskio.c's record).
fn record_sector(seed: u64, seq: u64, slot: u64, j: u64) -> Vec<u8> {
    let mut s = format!("ferrite-record seq {seq:010} slot {slot:010} sector {j} seed {seed}").into_bytes();
    for k in s.len() as u64..511 {
        s.push(b'a' + ((seq + slot + j + k) % 26) as u8);
    }
    s.push(b'\n');
    s
}

/// The round whose record this sector (sector `j` of `slot`) is, if it is one exactly.
fn record_round(sector: &[u8], seed: u64, slots: u64, slot: u64, j: u64) -> Option<u64> {
    let text = std::str::from_utf8(sector.strip_prefix(b"ferrite-record seq ")?.get(..10)?).ok()?;
    let seq: u64 = text.parse().ok()?;
    let ours = (0..RECORDS).any(|i| record_slot(seed, seq, i, slots) == slot);
    (ours && sector == record_sector(seed, seq, slot, j).as_slice()).then_some(seq)
}

/// What a parent image holds under a child: every sector names itself.
fn parent_sector(lba: u64) -> Vec<u8> {
    format!("{:<511}\n", format!("ferrite-parent lba {lba:010}")).into_bytes()
}

/// Which round each slot's newest record comes from, over rounds `1..=flushed`.
fn newest_records(seed: u64, slots: u64, flushed: u64) -> std::collections::HashMap<u64, u64> {
    let mut newest = std::collections::HashMap::new();
    for seq in 1..=flushed {
        for i in 0..RECORDS {
            newest.insert(record_slot(seed, seq, i, slots), seq);
        }
    }
    newest
}

/// Counts of what the sectors of a verified disk hold.
#[derive(Default, Debug)]
struct Found {
    /// Sectors holding the newest flushed record of their slot.
    flushed: u64,
    /// Sectors holding a record of a later, unreported round.
    later: u64,
}

/// Checks sectors `[first, first + data.len() / 512)` of a crashed disk of `slots` slots
/// against the rounds up to `flushed`; `background` is what a sector no round wrote holds.
fn verify_sectors(
    data: &[u8],
    first: u64,
    seed: u64,
    slots: u64,
    newest: &std::collections::HashMap<u64, u64>,
    parent: bool,
    found: &mut Found,
) -> Result<(), String> {
    for (n, sector) in data.chunks(SECTOR).enumerate() {
        let lba = first + n as u64;
        let (slot, j) = (lba / (SLOT / SECTOR as u64), lba % (SLOT / SECTOR as u64));
        let background = if parent { parent_sector(lba) } else { vec![0; SECTOR] };
        let want = if slot < slots { newest.get(&slot).copied() } else { None };
        let round = if slot < slots { record_round(sector, seed, slots, slot, j) } else { None };
        match (want, round) {
            (Some(a), Some(b)) if b == a => found.flushed += 1,
            (None, Some(_)) => found.later += 1,
            (Some(a), Some(b)) if b > a => found.later += 1,
            (Some(a), Some(b)) => {
                return Err(format!("sector {lba} (slot {slot}) holds round {b}'s record, but round {a} wrote it later and was reported flushed"))
            }
            (None, None) if sector == background.as_slice() => {}
            (Some(a), None) if sector == background.as_slice() => {
                return Err(format!("sector {lba} (slot {slot}) lost round {a}'s record (reported flushed): it holds what it held before any round"))
            }
            (_, None) => {
                return Err(format!(
                    "sector {lba} (slot {slot}) holds neither a record nor what it held before: {:?}",
                    String::from_utf8_lossy(&sector[..64])
                ))
            }
        }
    }
    Ok(())
}

/// Reads a whole disk in 1 MiB pieces through `read` and verifies each.
fn verify_disk(
    len: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), String>,
    seed: u64,
    newest: &std::collections::HashMap<u64, u64>,
    parent: bool,
) -> Result<Found, String> {
    let slots = len / SLOT;
    let mut found = Found::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        read(at, &mut buf[..n])?;
        verify_sectors(&buf[..n], at / SECTOR as u64, seed, slots, newest, parent, &mut found)?;
        at += n as u64;
    }
    Ok(found)
}

/// Opens an image read-only through Ferrite's own reader.
fn ferrite_disk(image: &str) -> Box<dyn machine::block::BlockDevice> {
    let opts = machine::block::OpenOptions { read_only: true, ..Default::default() };
    machine::block::open(Path::new(image), &opts).unwrap_or_else(|e| panic!("open {image}: {e}"))
}

/// Both checkers, as a result: `ferrite img check` (and `qemu-img check` for qcow2) with
/// status 0 or 3 (harmless oddities such as leaked space).
fn crash_checks(image: &str, qemu_format: &str) -> Result<(), String> {
    let o = ferrite(&["img", "check", image]);
    if !matches!(o.status.code(), Some(0 | 3)) {
        return Err(format!("ferrite img check: {}", describe(&o)));
    }
    if qemu_format == "qcow2" {
        let o = Command::new("qemu-img").args(["check", "-f", qemu_format, image]).output().unwrap();
        if !matches!(o.status.code(), Some(0 | 3)) {
            return Err(format!("qemu-img check: {}", describe(&o)));
        }
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: expected a number")))
}

/// What one run's serial log says: the round it started from, and the rounds it reported
/// flushed (only whole lines: the kill may cut the last one short).
struct RecordLog {
    write_back: bool,
    start_flushes: Option<u64>,
    flushed: Vec<(u64, u64)>,
}

fn record_log(text: &str) -> RecordLog {
    let mut log = RecordLog { write_back: false, start_flushes: None, flushed: Vec::new() };
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(str::trim_end) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["FERRITE-DISK-CACHE", "write", "back"] => log.write_back = true,
            ["FERRITE-REC-START", .., "flushes", n] => log.start_flushes = n.parse().ok(),
            ["FERRITE-REC-FLUSHED", seq, "flushes", n] => {
                if let (Ok(seq), Ok(n)) = (seq.parse(), n.parse()) {
                    log.flushed.push((seq, n));
                }
            }
            _ => {}
        }
    }
    log
}

/// Kills Ferrite at random moments while the guest writes and flushes records to one
/// `format` image (over a parent filled by Ferrite when `with_parent`), `FERRITE_CRASH_RUNS`
/// times (3 by default); nothing reported flushed may be missing after any of them.
fn crash(name: &str, format: &str, qemu_format: &str, with_parent: bool) {
    let Some(guest) = prerequisites(name) else { return };
    let s = Scratch::new(name);
    let seed = env_number("FERRITE_CRASH_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        splitmix64(t.as_nanos() as u64 ^ u64::from(std::process::id()) ^ name.len() as u64) >> 16
    });
    let runs = env_number("FERRITE_CRASH_RUNS").unwrap_or(3);
    let what = format!("{name} (image format {format}, FERRITE_CRASH_SEED={seed:#x})");
    println!("{what}: {runs} runs");
    let image = s.path(&format!("disk.{format}"));
    let parent = s.path(&format!("parent.{format}"));
    if with_parent {
        let o = ferrite(&["img", "create", "-f", format, "-s", CRASH_DISK, &parent]);
        assert!(o.status.success(), "img create: {}", describe(&o));
        let mut p = machine::block::open(Path::new(&parent), &Default::default()).unwrap();
        let sectors = p.len() / SECTOR as u64;
        for first in (0..sectors).step_by(2048) {
            let data: Vec<u8> = (first..(first + 2048).min(sectors)).flat_map(parent_sector).collect();
            p.write_sectors(first, &data).unwrap();
        }
        p.flush().unwrap();
        drop(p);
        let o = ferrite(&["img", "create", "-f", format, "-b", &parent, &image]);
        assert!(o.status.success(), "img create -b: {}", describe(&o));
    } else {
        let o = ferrite(&["img", "create", "-f", format, "-s", CRASH_DISK, &image]);
        assert!(o.status.success(), "img create: {}", describe(&o));
    }
    // QEMU cannot open a differencing VHD's parent.
    let qemu_reads = !(with_parent && qemu_format == "vpc");
    let mut flushed = 0u64;
    for run in 1..=runs {
        let first = flushed + 1;
        let delay = splitmix64(seed ^ splitmix64(run)) % MAX_KILL_DELAY_MS;
        let boot = boot_disk(&guest, &s, &format!("ferrite.disk=records ferrite.seed={seed} ferrite.first={first}"));
        // One log per run: the last run's must not be mistaken for this one's.
        let serial = s.path(&format!("serial-{run}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["--accel", "auto", "--timeout", "3000", "--serial", &format!("file:{serial}"), "--hda", &boot, "--hdb", &image])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ferrite");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&serial).unwrap_or_default();
            if text.contains("FERRITE-REC-START") {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("{what} run {run}: ferrite ended ({status}) before the guest wrote\n{err}\n--- serial ---\n{text}");
            }
            if started.elapsed() > Duration::from_secs(3000) {
                let _ = child.kill();
                panic!("{what} run {run}: the guest never began writing records\n--- serial ---\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL ferrite");
        child.wait().unwrap();
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        let log = record_log(&text);
        assert!(log.write_back, "{what} run {run}: the guest's disk has no write-back cache, so Linux sends no FLUSH CACHE\n--- serial ---\n{text}");
        let start_flushes = log.start_flushes.expect("FERRITE-REC-START line");
        for (i, &(seq, n)) in log.flushed.iter().enumerate() {
            assert_eq!(seq, first + i as u64, "{what} run {run}: rounds reported out of order");
            // Each round's fdatasync completed at least one flush request of the disk.
            assert!(n - start_flushes > i as u64, "{what} run {run}: round {seq} reported with only {} flushes", n - start_flushes);
        }
        let reported = log.flushed.last().map(|&(seq, _)| seq);
        flushed = reported.unwrap_or(flushed);
        match reported {
            Some(last) => println!("{what} run {run}: killed {delay} ms into the writes; rounds {first}..={last} reported flushed"),
            None => println!("{what} run {run}: killed {delay} ms into the writes, before it reported a round"),
        }

        let fail = |problem: String| -> ! { panic!("{what} run {run} (killed {delay} ms into the writes, rounds up to {flushed} reported flushed): {problem}") };
        crash_checks(&image, qemu_format).unwrap_or_else(|e| fail(e));
        let mut disk = ferrite_disk(&image);
        let len = disk.len();
        let newest = newest_records(seed, len / SLOT, flushed);
        let found = verify_disk(len, |at, buf| disk.read_at(at, buf).map_err(|e| e.to_string()), seed, &newest, with_parent)
            .unwrap_or_else(|e| fail(format!("Ferrite's reader: {e}")));
        drop(disk);
        println!("{what} run {run}: {} sectors hold their newest flushed record, {} a later one", found.flushed, found.later);
        if qemu_reads {
            let raw = s.path("converted.raw");
            let _ = std::fs::remove_file(&raw);
            let o = Command::new("qemu-img").args(["convert", "-f", qemu_format, "-O", "raw", &image, &raw]).output().unwrap();
            if !o.status.success() {
                fail(format!("qemu-img convert: {}", describe(&o)));
            }
            let file = std::fs::File::open(&raw).unwrap();
            let qemu_len = file.metadata().unwrap().len();
            if qemu_len != len {
                fail(format!("qemu-img gives {qemu_len} bytes, Ferrite {len}"));
            }
            use std::os::unix::fs::FileExt;
            verify_disk(len, |at, buf| file.read_exact_at(buf, at).map_err(|e| e.to_string()), seed, &newest, with_parent)
                .unwrap_or_else(|e| fail(format!("qemu-img convert: {e}")));
        }
    }
    assert!(flushed > 0, "{what}: no run reported a flushed round");
    if with_parent {
        let found = verify_disk(
            ferrite_disk(&parent).len(),
            {
                let mut p = ferrite_disk(&parent);
                move |at, buf| p.read_at(at, buf).map_err(|e| e.to_string())
            },
            seed,
            &Default::default(),
            true,
        );
        let found = found.unwrap_or_else(|e| panic!("{what}: the parent changed: {e}"));
        assert_eq!(found.later, 0, "{what}: the parent holds records");
    }
}

#[test]
fn record_layout_matches_diskio() {
    // As tests/linux/diskio.c computes them (its record_slot and record, built on the host).
    let slots = (256 << 20) / SLOT;
    let got: Vec<u64> = (0..RECORDS).map(|i| record_slot(42, 1, i, slots)).collect();
    let sector = record_sector(42, 1, got[0], 3);
    assert_eq!(sector.len(), SECTOR);
    assert_eq!(record_round(&sector, 42, slots, got[0], 3), Some(1));
    assert_eq!(record_round(&sector, 42, slots, got[0], 2), None, "another sector");
    assert_eq!(record_round(&sector, 43, slots, got[0], 3), None, "another seed");
    assert!(got[4..].iter().all(|s| (slots / 2 - HOT..slots / 2).contains(s)), "{got:?}");
    assert_eq!(got, [11385, 56328, 65297, 11244, 32714, 32737, 32545, 32727]);
    let text = String::from_utf8(record_sector(42, 1, 7, 3)).unwrap();
    assert!(text.starts_with("ferrite-record seq 0000000001 slot 0000000007 sector 3 seed 42vwxyzabc"), "{text}");
    assert!(text.ends_with("xyzab\n"), "{text}");
}

#[test]
fn crash_raw() {
    crash("crash_raw", "raw", "raw", false);
}

#[test]
fn crash_vhd_fixed() {
    crash("crash_vhd_fixed", "vhd-fixed", "vpc", false);
}

#[test]
fn crash_vhd_dynamic() {
    crash("crash_vhd_dynamic", "vhd", "vpc", false);
}

#[test]
fn crash_vhd_differencing() {
    crash("crash_vhd_differencing", "vhd", "vpc", true);
}

#[test]
fn crash_qcow2() {
    crash("crash_qcow2", "qcow2", "qcow2", false);
}

#[test]
fn crash_qcow2_child() {
    crash("crash_qcow2_child", "qcow2", "qcow2", true);
}
