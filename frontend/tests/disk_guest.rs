//! Disk images through a guest: Linux (the initramfs of `tests/linux/build.sh`, in one of its
//! `ferrite.disk=` modes) writes and reads the `--hdb` disk through the IDE controller.
//!
//! - `pattern_*`: for each image format the guest writes a known pattern at a few places;
//!   after it powers off, `qemu-img convert -O raw` of the image gives exactly the bytes
//!   computed here (the guest also read it back past its page cache), and `ferrite img
//!   check` and `qemu-img check` find nothing wrong.
//! - `killed_while_writing_*`: Ferrite is SIGKILLed while the guest rewrites the disk; the
//!   image then checks clean (leaked space allowed, damage not) with both checkers, and a
//!   guest boots with it and writes and reads it again.
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

/// SIGKILL while the guest writes; the image stays consistent and usable.
fn killed_while_writing(name: &str, format: &str, qemu_format: &str) {
    let Some(guest) = prerequisites(name) else { return };
    let s = Scratch::new(name);
    let image = s.path(&format!("disk.{format}"));
    let o = ferrite(&["img", "create", "-f", format, "-s", DISK, &image]);
    assert!(o.status.success(), "img create: {}", describe(&o));
    let extra = format!("ferrite.disk=write-forever ferrite.regions={}", regions_arg(REGIONS));
    let boot = boot_disk(&guest, &s, &extra);
    let serial = s.path("serial.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--accel", "auto", "--timeout", "3000", "--serial", &format!("file:{serial}"), "--hda", &boot, "--hdb", &image])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferrite");
    // Wait until the guest is well into its writes: the first round done, the second begun.
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("FERRITE-DISK-WRITING seed 2") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("{name}: ferrite ended ({status}) before the guest wrote\n{err}\n--- serial ---\n{text}");
        }
        if started.elapsed() > Duration::from_secs(3000) {
            let _ = child.kill();
            panic!("{name}: the guest never reached its second round of writes\n--- serial ---\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL ferrite");
    let status = child.wait().unwrap();
    println!("{name}: killed ({status}) after {:.1} s", started.elapsed().as_secs_f64());
    assert_checks(&image, qemu_format, true);
    // It opens, and a guest writes and reads it again.
    run_guest(&guest, &s, &image, "write-pattern", 9, REGIONS);
    assert_checks(&image, qemu_format, true);
    let mut want = blank(&image, qemu_format);
    apply(&mut want, 9, REGIONS);
    let got = qemu_raw(&s, &image, qemu_format);
    assert!(got == want, "{name}: {}", first_difference(&got, &want));
}

#[test]
fn killed_while_writing_qcow2() {
    killed_while_writing("killed_while_writing_qcow2", "qcow2", "qcow2");
}

#[test]
fn killed_while_writing_vhd_dynamic() {
    killed_while_writing("killed_while_writing_vhd_dynamic", "vhd", "vpc");
}
