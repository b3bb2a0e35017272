//! The Debian cloud kernel booted directly (`ferrite --kernel`, no BIOS) under the interpreter
//! with the busybox initramfs of `tests/linux/build.sh`, whose init checks the system, prints
//! FERRITE-LINUX-OK and powers off through ACPI. The kernel log may hold no warning, failure,
//! error or fallback line but those the same kernel also prints when SeaBIOS boots it (listed
//! in `ALSO_UNDER_SEABIOS`, with what causes them): direct boot must leave nothing out that a
//! PC's firmware provides.
//!
//! The guest files come from `$FERRITE_LINUX_OUT` (as `tests/linux/build.sh OUT` makes them),
//! else `tests/linux/out`; when they are missing, `tests/linux/build.sh --kernel-only` is run
//! to fetch the kernel package and build the initrd. If that fails (no package repository),
//! the test says so and passes.

use accel::RunOutcome;
use machine::firmware::boot::{BootFile, BootFiles, BootModule};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tests::{run_kernel, BackendKind};

/// Kernel log lines (matched by a part of them) that the same kernel prints under SeaBIOS too.
const ALSO_UNDER_SEABIOS: &[&str] = &[
    // One NUMA node: the kernel prints its (trivial) fallback order.
    "Fallback order for Node 0",
    // No MCFG table: configuration space through ports only, as on QEMU's "pc".
    "fail to add MMCONFIG information",
];

fn guest_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FERRITE_LINUX_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("linux/out"));
    let ready = |d: &Path| d.join("cloud/vmlinuz").is_file() && d.join("initrd.img").is_file();
    if ready(&dir) {
        return Some(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("linux/build.sh");
    let run = Command::new("bash").arg(script).arg("--kernel-only").arg(&dir).env("FERRITE_LINUX_FLAVOURS", "cloud").output();
    match run {
        Ok(r) if r.status.success() && ready(&dir) => Some(dir),
        Ok(r) => {
            println!(
                "skipped: linux_cloud_kernel_boots_directly: tests/linux/build.sh --kernel-only could not fetch the kernel package: {}",
                String::from_utf8_lossy(&r.stderr).lines().last().unwrap_or("")
            );
            None
        }
        Err(e) => {
            println!("skipped: linux_cloud_kernel_boots_directly: cannot run tests/linux/build.sh: {e}");
            None
        }
    }
}

#[test]
fn linux_cloud_kernel_boots_directly() {
    let Some(dir) = guest_dir() else { return };
    let read = |p: PathBuf| BootFile { name: p.display().to_string(), data: std::fs::read(&p).unwrap() };
    let initrd = read(dir.join("initrd.img"));
    let files = BootFiles {
        kernel: read(dir.join("cloud/vmlinuz")),
        modules: vec![BootModule { string: initrd.name.clone(), file: initrd }],
        cmdline: "console=ttyS0 panic=-1".into(),
    };
    let run = run_kernel(files, 512 << 20, BackendKind::Interp, Duration::from_secs(900)).unwrap_or_else(|e| panic!("{e}"));
    let log = run.serial_text();
    assert!(log.contains("FERRITE-LINUX-OK"), "the init's checks failed or did not run: {}", run.describe());
    assert_eq!(run.outcome, RunOutcome::PowerOff, "{}", run.describe());
    assert!(log.contains("Command line: console=ttyS0 panic=-1"), "{log}");
    let unexpected: Vec<&str> = log
        .lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            ["warn", "fail", "error", "fallback"].iter().any(|w| lower.contains(w))
        })
        .filter(|l| !ALSO_UNDER_SEABIOS.iter().any(|known| l.contains(known)))
        .collect();
    assert!(unexpected.is_empty(), "kernel log lines a PC's firmware would have avoided:\n{}", unexpected.join("\n"));
}
