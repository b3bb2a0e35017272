//! Startup benchmark (not a test): how long `ferrite` takes from process start to the first
//! guest instruction, for the ways a sandbox user starts it.
//!
//! Each case is run `FERRITE_BENCH_RUNS` times (default 20) as a separate process. Two figures:
//! - `process`: wall time from spawning the process to its exit, where the guest's first
//!   instruction ends the run through the exit device (port 0xF4). This is an upper bound of
//!   the startup time that includes process teardown; nothing inside Ferrite measures it.
//! - `internal`: what Ferrite logs at `RUST_LOG=info` ("startup: N ms from process
//!   start to the first guest instruction"), measured from the start of `Session::prepare`.
//!
//! Cases: a multiboot kernel whose entry is `out 0xF4, al` (direct boot: files read, machine
//! built, tables generated, kernel loaded), and the same with a 64 MiB initrd (reading and
//! placing a module), and the built-in BIOS to its reset vector with `--bios` given a ROM
//! whose first instruction exits. `cargo bench -p frontend --bench startup`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A multiboot 1 kernel at 1 MiB whose entry exits with status 0.
fn exit_kernel() -> Vec<u8> {
    let load = 0x10_0000u32;
    let flags: u32 = 1 << 16 | 1 << 1;
    let mut d = Vec::new();
    let entry = load + 32;
    for v in [0x1BAD_B002, flags, 0u32.wrapping_sub(0x1BAD_B002).wrapping_sub(flags), load, load, load + 0x200, load + 0x200, entry] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d.extend_from_slice(&[0x30, 0xC0, 0xE6, 0xF4]); // xor al, al; out 0xF4, al
    d.resize(0x200, 0xF4);
    d
}

/// A 64 KiB BIOS image whose reset vector (F000:FFF0) exits with status 0.
fn exit_bios() -> Vec<u8> {
    let mut rom = vec![0xFFu8; 64 << 10];
    let reset = rom.len() - 16;
    rom[reset..reset + 4].copy_from_slice(&[0x30, 0xC0, 0xE6, 0xF4]); // xor al, al; out 0xF4, al
    rom
}

struct Figures {
    process_ms: Vec<f64>,
    internal_ms: Vec<f64>,
}

fn run_case(args: &[String], runs: usize, expected_status: i32) -> Figures {
    let mut f = Figures { process_ms: Vec::new(), internal_ms: Vec::new() };
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(args)
            .env("RUST_LOG", "info")
            .output()
            .expect("run ferrite");
        f.process_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected_status), "ferrite {args:?}:\n{err}");
        if let Some(ms) = err
            .lines()
            .find_map(|l| l.split("startup: ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
        {
            f.internal_ms.push(ms);
        }
    }
    f
}

fn summary(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "not logged".into();
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!("median {:6.1} ms, min {:6.1} ms, max {:6.1} ms", v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("FERRITE_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let kernel = scratch("exit-kernel.bin");
    std::fs::write(&kernel, exit_kernel()).unwrap();
    let initrd = scratch("initrd-64m.bin");
    std::fs::write(&initrd, vec![0x5Au8; 64 << 20]).unwrap();
    let bios = scratch("exit-bios.bin");
    std::fs::write(&bios, exit_bios()).unwrap();
    let s = |p: &PathBuf| p.display().to_string();
    let common = ["--display", "none", "-m", "256M"].map(String::from);
    let cases: Vec<(&str, Vec<String>, i32)> = vec![
        ("multiboot kernel (--kernel)", [&common[..], &["--kernel".into(), s(&kernel)]].concat(), 0),
        ("multiboot kernel + 64 MiB initrd", [&common[..], &["--kernel".into(), s(&kernel), "--initrd".into(), s(&initrd)]].concat(), 0),
        ("BIOS reset vector (--bios)", [&common[..], &["--bios".into(), s(&bios)]].concat(), 0),
    ];
    println!("startup: process start to the first guest instruction, {runs} runs each");
    for (name, args, status) in cases {
        let mut f = run_case(&args, runs, status);
        println!("{name:34} process  {}", summary(&mut f.process_ms));
        println!("{:34} internal {}", "", summary(&mut f.internal_ms));
    }
    let _ = std::fs::remove_dir_all(kernel.parent().unwrap());
}
