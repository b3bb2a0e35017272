//! Sound as a user records it: guest programs (NASM sources in `tests/audio/`, assembled here
//! against `roms/asm/inc/ferrite.inc`) play a PC-speaker tone, Sound Blaster 16 DMA tones and
//! an OPL FM note; `ferrite --deterministic --audio-out` records them and sox measures each
//! tone's frequency (the peak of its power spectrum) and duration (leading and trailing
//! silence trimmed). Durations are virtual time. Skipped, saying so, without nasm or sox
//! (scripts/test installs both).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Whether the tools are here; if not, says which test skips and why.
fn tools(test: &str) -> bool {
    for tool in ["nasm", "sox"] {
        if !have(tool) {
            eprintln!("skipped {test}: {tool} is not installed (Debian: apt-get install {tool})");
            return false;
        }
    }
    true
}

/// Assembles `tests/audio/NAME.asm` into a 64 KiB BIOS image.
fn build(name: &str, dir: &Path) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join(format!("{name}.bin"));
    let status = Command::new("nasm")
        .args(["-f", "bin", "-Ox", "-w+all"])
        .arg("-I")
        .arg(here.join("../roms/asm/"))
        .arg("-I")
        .arg(here.join("tests/audio/"))
        .arg("-o")
        .arg(&out)
        .arg(here.join(format!("tests/audio/{name}.asm")))
        .status()
        .expect("run nasm");
    assert!(status.success(), "nasm failed on {name}.asm");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 65536);
    out
}

/// Runs the guest to its end on a deterministic clock, recording to `wav`; returns its output.
fn record(bios: &Path, wav: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .arg("--bios")
        .arg(bios)
        .args(["--deterministic", "--timeout", "120"])
        .arg("--audio-out")
        .arg(wav)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ferrite");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn sox(args: &[&str]) -> String {
    let out = Command::new("sox").args(args).output().expect("run sox");
    assert!(out.status.success(), "sox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    // `stat` reports on standard error.
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[derive(Debug)]
struct Tone {
    seconds: f64,
    hz: f64,
}

/// Splits the left channel of `wav` at silences and measures each sounding piece.
fn tones(wav: &Path, dir: &Path) -> Vec<Tone> {
    let split = dir.join("tone.wav");
    let _ = std::fs::remove_dir_all(dir.join("pieces"));
    std::fs::create_dir_all(dir.join("pieces")).unwrap();
    let split = dir.join("pieces").join(split.file_name().unwrap());
    // A piece starts where the level passes 2% of full scale and ends after 50 ms below it.
    sox(&[wav.to_str().unwrap(), split.to_str().unwrap(), "remix", "1", "silence", "1", "0.001", "2%", "1", "0.05", "2%", ":", "newfile", ":", "restart"]);
    let mut pieces: Vec<PathBuf> =
        std::fs::read_dir(dir.join("pieces")).unwrap().map(|e| e.unwrap().path()).collect();
    pieces.sort();
    let mut found = Vec::new();
    for p in pieces {
        let p = p.to_str().unwrap();
        let stat = sox(&[p, "-n", "silence", "1", "0.001", "2%", "reverse", "silence", "1", "0.001", "2%", "reverse", "stat"]);
        let seconds = field(&stat, "Length (seconds):");
        if seconds < 0.01 {
            continue;
        }
        found.push(Tone { seconds, hz: peak_frequency(&sox(&[p, "-n", "stat", "-freq"])) });
    }
    found
}

fn field(stat: &str, name: &str) -> f64 {
    let line = stat.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {stat}"));
    line[name.len()..].trim().parse().unwrap()
}

/// The strongest frequency in sox's power spectrum (4096-point DFTs, summed over the
/// windows), refined between bins by a parabola through the log powers around the peak.
fn peak_frequency(spectrum: &str) -> f64 {
    let mut bins: Vec<(f64, f64)> = Vec::new();
    for line in spectrum.lines() {
        let mut it = line.split_whitespace();
        let (Some(f), Some(p), None) = (it.next(), it.next(), it.next()) else { continue };
        let (Ok(f), Ok(p)) = (f.parse::<f64>(), p.parse::<f64>()) else { continue };
        match bins.iter_mut().find(|b| b.0 == f) {
            Some(b) => b.1 += p,
            None => bins.push((f, p)),
        }
    }
    bins.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (k, _) = bins.iter().enumerate().skip(1).max_by(|a, b| a.1 .1.total_cmp(&b.1 .1)).expect("a spectrum");
    let (a, b, c) = (bins[k - 1].1.ln(), bins[k].1.ln(), bins[(k + 1).min(bins.len() - 1)].1.ln());
    let shift = 0.5 * (a - c) / (a - 2.0 * b + c);
    let width = bins[k + 1].0 - bins[k].0;
    bins[k].0 + shift * width
}

/// Within 0.5% of the frequency and `slack` seconds of the duration (edges: a band-limited
/// start, an envelope's attack and release).
fn assert_tone(t: &Tone, hz: f64, seconds: f64, slack: f64) {
    assert!((t.hz - hz).abs() < hz * 0.005, "{t:?}: expected {hz} Hz");
    assert!((t.seconds - seconds).abs() < slack, "{t:?}: expected {seconds} s");
}

#[test]
fn pc_speaker_tone_is_recorded() {
    if !tools("pc_speaker_tone_is_recorded") {
        return;
    }
    let dir = scratch().join("pcspk");
    std::fs::create_dir_all(&dir).unwrap();
    let bios = build("pcspk", &dir);
    let wav = dir.join("pcspk.wav");
    let out = record(&bios, &wav);
    assert!(out.contains("pcspk: done"), "{out}");
    let found = tones(&wav, &dir);
    eprintln!("pcspk: {found:?}");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_tone(&found[0], 1_193_182.0 / 1193.0, 0.5, 0.01);
    // Virtual time: the same run records the same file.
    let again = dir.join("again.wav");
    record(&bios, &again);
    assert!(std::fs::read(&wav).unwrap() == std::fs::read(&again).unwrap(), "two recordings differ");
}

#[test]
fn host_audio_without_a_sound_card_is_silent() {
    // This machine may or may not have a sound card; either way the guest runs as usual and
    // Ferrite says nothing about sound.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["--bios", concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin")])
        .args(["--audio", "host", "--timeout", "60"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ferrite");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello"), "the guest ran");
    assert!(err.lines().all(|l| l.starts_with("ferrite: accelerator")), "{err}");
}

#[test]
fn sound_blaster_dma_tones_and_an_opl_note_are_recorded() {
    if !tools("sound_blaster_dma_tones_and_an_opl_note_are_recorded") {
        return;
    }
    let dir = scratch().join("sb16");
    std::fs::create_dir_all(&dir).unwrap();
    let bios = build("sb16", &dir);
    let wav = dir.join("sb16.wav");
    let out = record(&bios, &wav);
    for line in ["DSP 4.05 at 0x220, IRQ 5, DMA 1, HDMA 5", "16-bit auto-init done after 8 blocks", "AdLib (OPL) found", "sb16: done"] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    let found = tones(&wav, &dir);
    eprintln!("sb16: {found:?}");
    assert_eq!(found.len(), 3, "{found:?}");
    // 8-bit single-cycle DMA: a phase step of 1308/65536 per sample at 22050 Hz, 11025 bytes.
    assert_tone(&found[0], 1308.0 * 22_050.0 / 65_536.0, 0.5, 0.005);
    // 16-bit auto-init DMA: 981/65536 per sample at 44100 Hz, 8 blocks of 2205 samples.
    assert_tone(&found[1], 981.0 * 44_100.0 / 65_536.0, 0.4, 0.005);
    // OPL: F-number 690, block 4, at the chip's 49716 Hz; keyed on for 500 ms.
    assert_tone(&found[2], 690.0 * 49_716.0 / 65_536.0, 0.5, 0.02);
    let again = dir.join("again.wav");
    record(&bios, &again);
    assert!(std::fs::read(&wav).unwrap() == std::fs::read(&again).unwrap(), "two recordings differ");
}
