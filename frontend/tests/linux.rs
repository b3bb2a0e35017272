//! Real Linux guests, booted as a user boots them: `ferrite` with SeaBIOS and its VGA BIOS
//! (Debian package `seabios`) and a disk or CD built from Debian packages only by
//! tests/linux/build.sh (the cloud and generic kernels, a busybox initramfs whose init checks
//! the system, prints FERRITE-LINUX-OK and powers off). Each boot must end through ACPI
//! power-off with status 0, with every check of the init passed and a kernel log free of
//! crashes, warnings and fallbacks a real PC would not need, and with as many processors
//! online as the machine has (one, or four with `--smp 4`).
//!
//! The guests are built once into the target directory (the kernel packages are downloaded
//! there with `apt-get download`); where that cannot be done (not a Debian host) the tests
//! say so and pass without running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const VGABIOS: &str = "/usr/share/seabios/vgabios-stdvga.bin";

/// Kernel log lines that must not appear: crashes and warnings, and the fallbacks a kernel
/// takes on a machine that lacks what a PC has.
const FORBIDDEN: &[&str] = &[
    "Kernel panic",
    "Oops",
    "BUG:",
    "WARNING:",
    "Call Trace",
    "soft lockup",
    "hard LOCKUP",
    "self-detected stall",
    "hung_task",
    "unchecked MSR access",
    "No local APIC present",
    "APIC: disable apic facility",
    "Using PIC for interrupt routing",
    "PM-Timer failed consistency check",
    "TSC synchronization failed",
    // Port reads take their time on the deterministic clock, as on a PC.
    "Fast TSC calibration failed",
    "timer doesn't work",
    "IO-APIC + timer doesn't work",
    "lost interrupt",
    "ata_piix: probe of",
    "CHECK ",
];

/// The directory of built guests, or why there is none.
fn guests() -> Result<&'static Path, &'static str> {
    static GUESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = GUESTS.get_or_init(|| {
        if Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_err() {
            return Err("not a Debian host (no apt-get): the Linux guests cannot be built here".into());
        }
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("linux-guests");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/linux/build.sh");
        let o = Command::new("bash").arg(&script).arg(&out).output().expect("run tests/linux/build.sh");
        // Building them is part of what is tested: a failure is a failure, not a skip.
        assert!(
            o.status.success(),
            "tests/linux/build.sh failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(out)
    });
    match r {
        Ok(p) => Ok(p.as_path()),
        Err(e) => Err(e.as_str()),
    }
}

/// Boots with SeaBIOS, `cpus` processors and `drive_args` and checks the run as described at
/// the top.
fn boot(name: &str, cpus: u32, drive_args: &[&str]) {
    let dir = match guests() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    for f in [SEABIOS, VGABIOS] {
        if !Path::new(f).exists() {
            eprintln!("skipped: {f} is missing (Debian package seabios; scripts/test installs it)");
            return;
        }
    }
    let log = dir.join(format!("{name}.serial.log"));
    let _ = std::fs::remove_file(&log);
    let drive_args: Vec<String> = drive_args.iter().map(|a| a.replace("@", &dir.display().to_string())).collect();
    let o = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--bios", SEABIOS, "--vga-rom", VGABIOS, "-m", "512M", "--no-reboot", "--timeout", "900"])
        .args(["--smp", &cpus.to_string()])
        .args(["--serial", &format!("file:{}", log.display())])
        .args(&drive_args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ferrite");
    let serial = std::fs::read(&log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let context = || {
        let tail: Vec<&str> = serial.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "{name}: status {:?}\n--- stderr ---\n{}\n--- serial (last 40 lines of {}) ---\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr),
            log.display(),
            tail.join("\n")
        )
    };
    assert!(serial.contains("FERRITE-LINUX-START"), "the init never ran\n{}", context());
    for line in serial.lines().filter(|l| l.starts_with("CHECK ")) {
        assert!(line.ends_with(")") || line.ends_with(": ok"), "{line}\n{}", context());
        assert!(line.contains(": ok"), "a check of the init failed: {line}\n{}", context());
    }
    let online = format!("CHECK cpus: ok ({cpus} online: ");
    assert!(serial.lines().any(|l| l.starts_with(&online)), "expected a line starting {online:?}\n{}", context());
    assert!(serial.contains("FERRITE-LINUX-OK"), "{}", context());
    for bad in FORBIDDEN.iter().filter(|b| **b != "CHECK ") {
        if let Some(line) = serial.lines().find(|l| l.contains(bad)) {
            panic!("the kernel log has {bad:?}: {line}\n{}", context());
        }
    }
    assert_eq!(o.status.code(), Some(0), "the guest must power off through ACPI (status 0)\n{}", context());
}

#[test]
fn cloud_kernel_from_a_syslinux_disk() {
    boot("cloud-disk", 1, &["--hda", "@/cloud/disk.img,snapshot=on"]);
}

#[test]
fn generic_kernel_from_a_syslinux_disk() {
    boot("generic-disk", 1, &["--hda", "@/generic/disk.img,snapshot=on"]);
}

#[test]
fn cloud_kernel_from_an_isolinux_cd() {
    boot("cloud-cd", 1, &["--cdrom", "@/cloud/cd.iso", "--boot", "d"]);
}

#[test]
fn generic_kernel_from_an_isolinux_cd() {
    boot("generic-cd", 1, &["--cdrom", "@/generic/cd.iso", "--boot", "d"]);
}

/// The same disk on four processors: the kernel starts the three others with INIT and STARTUP
/// IPIs (SeaBIOS has already started and counted them once) and brings them all online.
#[test]
fn cloud_kernel_from_a_syslinux_disk_on_four_processors() {
    boot("cloud-disk-smp4", 4, &["--hda", "@/cloud/disk.img,snapshot=on"]);
}
