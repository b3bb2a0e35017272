//! memtest86+ (Debian package `memtest86+`) boots from its El Torito ISO under SeaBIOS and
//! runs its tests: the run ends through `--expect-screen` once the screen shows a test in
//! progress, and the `--screenshot` written at exit is the memtest86+ screen.

mod common;

use common::read_png;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ISO: &str = "/usr/lib/memtest86+/memtest86+x64.iso";
const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const VGABIOS: &str = "/usr/share/seabios/vgabios-stdvga.bin";

#[test]
fn memtest86plus_runs_its_tests() {
    for f in [ISO, SEABIOS, VGABIOS] {
        if !Path::new(f).exists() {
            eprintln!("skipped: {f} is missing (Debian packages memtest86+ and seabios; scripts/test installs them)");
            return;
        }
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("memtest");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("screen.png");
    let text = dir.join("screen.txt");
    let _ = std::fs::remove_file(&png);
    let o = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--bios", SEABIOS, "--vga-rom", VGABIOS, "-m", "256M", "--cdrom", ISO, "--boot", "d"])
        .args(["--serial", "none", "--timeout", "900"])
        .args(["--screenshot", png.to_str().unwrap(), "--screen-text", text.to_str().unwrap()])
        // Its banner, a running test with its progress, and no errors found.
        .args(["--expect-screen", r"Memtest86\+ v\d"])
        .args(["--expect-screen", r"Test #\d+ +\[[A-Z]"])
        .args(["--expect-screen", r"Status: Testing"])
        .args(["--expect-screen", r"Errors: 0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ferrite");
    let screen = std::fs::read_to_string(&text).unwrap_or_default();
    assert_eq!(
        o.status.code(),
        Some(0),
        "memtest86+ did not get to its tests\n--- stderr ---\n{}\n--- screen ---\n{screen}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!screen.contains("Errors: 1") && !screen.contains("Unexpected"), "{screen}");
    // The screenshot is the 720x400 text screen: memtest86+'s blue background fills most of it.
    let shot = read_png(&png);
    let buf = shot.pixels;
    assert_eq!((shot.width, shot.height), (720, 400));
    let blue = buf.chunks(4).filter(|p| p[2] > 0x80 && p[0] < 0x40 && p[1] < 0x40).count();
    assert!(blue > buf.len() / 4 / 2, "the screenshot is not memtest86+'s blue screen ({blue} blue pixels)");
}
