//! Ferrite's own BIOS booting real guests and answering a test program's calls:
//! - `services_*`: a boot floppy built from `tests/bios/services.asm` (NASM at test time) that
//!   checks INT 13h, 15h, 10h (with VBE), 16h, 1Ah, 11h and 12h from the caller's side, one
//!   PASS/FAIL line each, under the interpreter and KVM;
//! - `linux_*`: the syslinux Linux disk and ISO that `tests/linux/build.sh` makes (built here
//!   into tests/linux/out when missing, or taken from $FERRITE_LINUX_GUESTS) reach
//!   FERRITE-LINUX-OK and power off;
//! - `grub_*`: a `grub-mkrescue` CD (Debian's grub-pc-bin) that boots the same kernel.
//! Each test says why it skipped when something it needs cannot be had.

use accel::RunOutcome;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use tests::guest::{run_guest, GuestSetup};
use tests::BackendKind;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ferrite-bios-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The services floppy (the program, then LBA 17 filled with 0xA5) and an 8 MiB disk whose
/// LBA 5 is 0x5A bytes; `None` without NASM.
fn services_images(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let bin = dir.join("services.bin");
    let out = Command::new("nasm")
        .args(["-f", "bin", "-o"])
        .arg(&bin)
        .arg(repo().join("tests/bios/services.asm"))
        .output()
        .ok()?;
    assert!(out.status.success(), "nasm: {}", String::from_utf8_lossy(&out.stderr));
    let program = std::fs::read(&bin).unwrap();
    let mut floppy = vec![0u8; 1_474_560];
    floppy[..program.len()].copy_from_slice(&program);
    floppy[17 * 512..18 * 512].fill(0xA5);
    let mut disk = vec![0u8; 8 << 20];
    disk[5 * 512..6 * 512].fill(0x5A);
    let (fda, hda) = (dir.join("fd.img"), dir.join("hd.img"));
    std::fs::write(&fda, floppy).unwrap();
    std::fs::write(&hda, disk).unwrap();
    Some((fda, hda))
}

fn services(backend: BackendKind, name: &str) {
    if backend == BackendKind::Kvm {
        if let Err(why) = tests::kvm_usable() {
            println!("skipped {name}: KVM is not usable here: {why}");
            return;
        }
    }
    let dir = scratch(name);
    let Some((fda, hda)) = services_images(&dir) else {
        println!("skipped {name}: nasm is missing (apt-get install nasm)");
        return;
    };
    let mut s = GuestSetup::new(backend);
    s.fda = Some(fda);
    s.hda = Some(hda);
    s.boot = "a".into();
    s.ram_size = 32 << 20;
    s.timeout = std::time::Duration::from_secs(if backend == BackendKind::Kvm { 300 } else { 60 });
    let run = run_guest(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let log = run.debugcon_text();
    println!("{log}");
    let passed = log.lines().filter(|l| l.starts_with("PASS ")).count();
    let failed: Vec<&str> = log.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(failed.is_empty(), "{name}: {failed:?}\n{}", run.describe());
    assert_eq!(run.outcome, RunOutcome::Exit(0), "{name}: {}", run.describe());
    assert!(passed >= 28, "{name}: only {passed} checks ran\n{}", run.describe());
}

#[test]
fn services_interp() {
    services(BackendKind::Interp, "services_interp");
}

#[test]
fn services_kvm() {
    services(BackendKind::Kvm, "services_kvm");
}

/// One build of the Linux guests for all the tests that need them.
static LINUX: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);

fn linux_guests() -> Result<PathBuf, String> {
    let mut g = LINUX.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| {
        if let Some(dir) = std::env::var_os("FERRITE_LINUX_GUESTS") {
            return Ok(PathBuf::from(dir));
        }
        let out = repo().join("tests/linux/out");
        if out.join("cloud/disk.img").is_file() && out.join("cloud/cd.iso").is_file() {
            return Ok(out);
        }
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

fn assert_linux_ok(name: &str, s: &GuestSetup) {
    let t = std::time::Instant::now();
    let run = run_guest(s).unwrap_or_else(|e| panic!("{name}: {e}"));
    let serial = run.serial_text();
    println!("{name}: {:?} after {:.1} s", run.outcome, t.elapsed().as_secs_f64());
    assert!(serial.contains("FERRITE-LINUX-OK"), "{name}: no FERRITE-LINUX-OK\n{}", run.describe());
    assert_eq!(run.outcome, RunOutcome::PowerOff, "{name}: {}", run.describe());
}

fn linux(name: &str, disk: bool) {
    let dir = match linux_guests() {
        Ok(d) => d,
        Err(why) => {
            println!("skipped {name}: the Linux guest could not be built: {why}");
            return;
        }
    };
    let mut s = GuestSetup::new(BackendKind::Interp);
    if disk {
        s.hda = Some(dir.join("cloud/disk.img"));
        s.boot = "c".into();
    } else {
        s.cdrom = Some(dir.join("cloud/cd.iso"));
        s.boot = "d".into();
    }
    assert_linux_ok(name, &s);
}

#[test]
fn linux_disk_boots_with_the_bios() {
    linux("linux_disk_boots_with_the_bios", true);
}

#[test]
fn linux_cd_boots_with_the_bios() {
    linux("linux_cd_boots_with_the_bios", false);
}

#[test]
fn grub_cd_boots_linux_with_the_bios() {
    let name = "grub_cd_boots_linux_with_the_bios";
    if Command::new("grub-mkrescue").arg("--version").output().is_err() || !Path::new("/usr/lib/grub/i386-pc").is_dir() {
        println!("skipped {name}: grub-mkrescue with i386-pc modules is missing (apt-get install grub-pc-bin grub-common xorriso mtools)");
        return;
    }
    let guests = match linux_guests() {
        Ok(d) => d,
        Err(why) => {
            println!("skipped {name}: the Linux guest could not be built: {why}");
            return;
        }
    };
    let dir = scratch(name);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    std::fs::copy(guests.join("cloud/vmlinuz"), root.join("vmlinuz")).unwrap();
    std::fs::copy(guests.join("initrd.img"), root.join("initrd.img")).unwrap();
    std::fs::write(
        root.join("boot/grub/grub.cfg"),
        "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n\
         set timeout=0\nmenuentry linux {\n  linux /vmlinuz console=ttyS0,115200 panic=-1\n  initrd /initrd.img\n}\n",
    )
    .unwrap();
    let iso = dir.join("grub.iso");
    let out = Command::new("grub-mkrescue").arg("-o").arg(&iso).arg(&root).output().unwrap();
    if !out.status.success() {
        println!("skipped {name}: grub-mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let mut s = GuestSetup::new(BackendKind::Interp);
    s.cdrom = Some(iso);
    s.boot = "d".into();
    assert_linux_ok(name, &s);
    let _ = std::fs::remove_dir_all(&dir);
}
