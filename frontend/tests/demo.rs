//! The default guest: `ferrite` with nothing to boot runs its built-in demo (`roms/boot/
//! demo.asm` on a built-in floppy). Headless it prints every stage of its tour to COM1, leaves
//! its picture on the screen and exits 0, the same way each run; anything to boot (a drive,
//! `--boot`, `--bios`, `--kernel`) keeps it away. The window's side (keys echo until Esc) is in
//! `window.rs`.

use std::collections::HashSet;
use std::path::PathBuf;

mod common;
use common::{describe, ferrite, read_png};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The tour's lines, in order, as regular expressions over COM1's output.
const STAGES: &[&str] = &[
    r"Ferrite demo: a boot program on Ferrite's built-in floppy, started by Ferrite's own BIOS\r\n",
    r"\[1/5\] text: 80x25 colour text mode",
    r"\[2/5\] timer: IRQ 0 ticks at 18\.2 Hz, counted through INT 1Ah: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18\r\n",
    r"real-time clock \(INT 1Ah AH=02h/04h\): 20\d\d-[01]\d-[0-3]\d [0-2]\d:[0-5]\d:[0-5]\d\r\n",
    r"\[3/5\] graphics: mode 13h, 320x200 pixels in 256 colours",
    r"\[4/5\] sound: Ode to Joy on the PC speaker \(PIT channel 2 in mode 3, gated through port 61h\): E E F G G F E D C C D E E D D\r\n",
    r"\[5/5\] keyboard: in a window",
    r"Ferrite demo: tour complete; exit status 0 through the exit device \(port F4h\)\r\n$",
];

#[test]
fn no_arguments_run_the_demo_which_tours_the_machine_and_exits_0() {
    let (shot, text) = (scratch("demo.png"), scratch("demo.txt"));
    let o = ferrite(&["--screenshot", shot.to_str().unwrap(), "--screen-text", text.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut from = 0;
    for stage in STAGES {
        let re = regex::Regex::new(stage).unwrap();
        let m = re.find(&out[from..]).unwrap_or_else(|| panic!("no {stage:?} after byte {from}\n{}", describe(&o)));
        from += m.end();
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("booting the built-in demo"), "{}", describe(&o));

    // The tour ends on its picture: mode 13h, rings of a 254-colour wheel, white labels.
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "graphics mode 320x200, 256 colours\n");
    let png = read_png(std::path::Path::new(&shot));
    assert_eq!((png.width, png.height, png.color_type), (320, 200, png::ColorType::Rgba));
    let pixels: Vec<[u8; 3]> = png.pixels.chunks(4).map(|p| [p[0], p[1], p[2]]).collect();
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(colours.len() >= 200, "only {} colours on the picture", colours.len());
    let black = pixels.iter().filter(|p| **p == [0, 0, 0]).count();
    assert!(black < pixels.len() / 4, "{black} of {} pixels black", pixels.len());
    // The title's letters (white on the black band at the top).
    let white_top = pixels[..320 * 8].iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(white_top > 50, "the title is missing: {white_top} white pixels in the top row of text");
}

#[test]
fn the_tour_is_the_same_every_time() {
    let a = ferrite(&["--serial", "stdio"]);
    let b = ferrite(&[]);
    assert_eq!(a.status.code(), Some(0), "{}", describe(&a));
    assert_eq!(a.stdout, b.stdout, "two headless runs printed different tours");
}

/// A boot sector that leaves with status 7: what the BIOS boots when a drive is given.
fn exit7_boot_sector() -> Vec<u8> {
    // mov al, 7; out 0xF4, al; cli; hlt
    let mut s = vec![0xB0, 7, 0xE6, 0xF4, 0xFA, 0xF4];
    s.resize(510, 0);
    s.extend_from_slice(&[0x55, 0xAA]);
    s
}

/// A multiboot 1 kernel with its load addresses in its header (loaded at 1 MiB, entered in
/// 32-bit protected mode) that leaves with status 7.
fn exit7_multiboot_kernel() -> Vec<u8> {
    let (magic, flags) = (0x1BAD_B002u32, 1u32 << 16);
    let base = 0x10_0000u32;
    let mut k = Vec::new();
    // magic, flags, checksum, header_addr, load_addr, load_end_addr (0: the whole file),
    // bss_end_addr (none), entry_addr (just past the header).
    for field in [magic, flags, magic.wrapping_add(flags).wrapping_neg(), base, base, 0, 0, base + 32] {
        k.extend_from_slice(&field.to_le_bytes());
    }
    // mov al, 7; out 0xF4, al; cli; hlt
    k.extend_from_slice(&[0xB0, 7, 0xE6, 0xF4, 0xFA, 0xF4]);
    k
}

#[test]
fn anything_to_boot_keeps_the_demo_away() {
    let mut floppy = exit7_boot_sector();
    floppy.resize(1_474_560, 0);
    let floppy_path = scratch("exit7.flp");
    std::fs::write(&floppy_path, &floppy).unwrap();
    let mut disk = exit7_boot_sector();
    disk.resize(1 << 20, 0);
    let disk_path = scratch("exit7.img");
    std::fs::write(&disk_path, &disk).unwrap();
    let kernel_path = scratch("exit7.multiboot");
    std::fs::write(&kernel_path, exit7_multiboot_kernel()).unwrap();
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin");
    let (f, d, k) = (floppy_path.to_str().unwrap(), disk_path.to_str().unwrap(), kernel_path.to_str().unwrap());
    for (args, status, says) in [
        (&["--fda", f][..], 7, ""),
        (&["--fda", f, "--boot", "a"], 7, ""),
        (&["--hda", d], 7, ""),
        (&["--kernel", k], 7, ""),
        (&["--bios", hello], 0, "Hello from Ferrite!"),
        // A boot order with nothing in it: the BIOS finds nothing, as asked.
        (&["--boot", "c"], 121, "No bootable device."),
    ] {
        let o = ferrite(args);
        assert_eq!(o.status.code(), Some(status), "{args:?}\n{}", describe(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(says) && !out.contains("Ferrite demo"), "{args:?}\n{}", describe(&o));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("demo"), "{args:?}\n{}", describe(&o));
    }
}

/// A sounding stretch of a recording: where it starts, how long it lasts, its pitch.
#[derive(Debug)]
struct Note {
    start: f64,
    seconds: f64,
    hz: f64,
}

/// The notes in the left channel of 16-bit samples at `rate`: runs of 5 ms frames louder than
/// 2% of full scale, parted by at least 20 ms of quiet; each one's pitch from its zero
/// crossings (two a period of the speaker's square wave), away from its edges.
fn notes(left: &[i16], rate: f64) -> Vec<Note> {
    let frame = (rate * 0.005) as usize;
    let loud: Vec<bool> = left
        .chunks(frame)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt() > 0.02 * 32768.0)
        .collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &l) in loud.iter().enumerate() {
        match runs.last_mut() {
            Some((_, end)) if l && i - *end <= 4 => *end = i + 1,
            _ if l => runs.push((i, i + 1)),
            _ => {}
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            let (from, to) = ((a + 2) * frame, (b.saturating_sub(2) * frame).min(left.len()));
            let crossings: Vec<usize> =
                (from + 1..to.max(from + 1)).filter(|&i| (left[i - 1] < 0) != (left[i] < 0)).collect();
            let hz = match (crossings.first(), crossings.last()) {
                (Some(&f), Some(&l)) if l > f => (crossings.len() - 1) as f64 / 2.0 / ((l - f) as f64 / rate),
                _ => 0.0,
            };
            Note { start: (a * frame) as f64 / rate, seconds: ((b - a) * frame) as f64 / rate, hz }
        })
        .collect()
}

#[test]
fn the_tune_is_in_the_recording() {
    let wav = scratch("demo.wav");
    let o = ferrite(&["--audio-out", wav.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let mut reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (2, 16));
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = samples.chunks(2).map(|s| s[0]).collect();
    let found = notes(&left, f64::from(spec.sample_rate));
    // Ode to Joy: PIT divisors 1810 (E5), 1708 (F5), 1522 (G5), 2032 (D5), 2280 (C5) and
    // lengths in 55 ms ticks: a quarter note 4, the dotted one 6, the eighth 2, the last 8,
    // each sounding all but its last tick.
    let tune = [
        (1810, 4), (1810, 4), (1708, 4), (1522, 4), (1522, 4), (1708, 4), (1810, 4), (2032, 4),
        (2280, 4), (2280, 4), (2032, 4), (1810, 4), (1810, 6), (2032, 2), (2032, 8),
    ];
    assert_eq!(found.len(), tune.len(), "{found:#?}");
    let tick = 65536.0 / 1_193_182.0;
    for (k, (note, &(divisor, ticks))) in found.iter().zip(&tune).enumerate() {
        // Within 1% (a semitone is 6%): the pitch of a short note is measured over few periods.
        let hz = 1_193_182.0 / f64::from(divisor);
        assert!((note.hz - hz).abs() < hz * 0.01, "note {k}: {note:?}, expected {hz:.1} Hz");
        // The sound fades within a few ms of the gate closing; frames are 5 ms.
        let sounding = f64::from(ticks - 1) * tick;
        assert!(note.seconds > sounding - 0.01 && note.seconds < sounding + 0.03, "note {k}: {note:?}, expected {sounding:.3} s");
        if let Some(next) = found.get(k + 1) {
            let beat = next.start - note.start;
            assert!((beat - f64::from(ticks) * tick).abs() < 0.011, "note {k}: {note:?}, the next {beat:.3} s later");
        }
    }
}
