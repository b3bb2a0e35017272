//! `--screenshot` and `--screen-text` as a user runs them: a tiny BIOS sets 80x25 text mode
//! through the VGA ports (no VGA BIOS), writes a line of text and exits; the files show it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn ferrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run ferrite")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-screen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Mode 3 as a VGA BIOS programs it: (port, value) pairs in order.
fn mode3_writes() -> Vec<(u16, u8)> {
    let mut w = vec![(0x3C2, 0x67)];
    for (i, v) in [0x03, 0x00, 0x03, 0x00, 0x02].into_iter().enumerate() {
        w.extend([(0x3C4, i as u8), (0x3C5, v)]);
    }
    w.extend([(0x3D4, 0x11), (0x3D5, 0x00)]);
    let crtc = [
        0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00, 0x00, 0x9C, 0x8E,
        0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
    ];
    for (i, v) in crtc.into_iter().enumerate() {
        w.extend([(0x3D4, i as u8), (0x3D5, v)]);
    }
    for (i, v) in [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF].into_iter().enumerate() {
        w.extend([(0x3CE, i as u8), (0x3CF, v)]);
    }
    let ac = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x0C, 0x00, 0x0F, 0x08, 0x00];
    for (i, v) in ac.into_iter().enumerate() {
        w.extend([(0x3C0, i as u8), (0x3C0, v)]);
    }
    w.push((0x3C0, 0x20)); // palette address source: display on
    w
}

/// A 64 KiB BIOS: programs the ports from a table, copies `text` (attribute 0x1F) to B800:0000
/// and writes 0 to the exit port.
fn bios(text: &str) -> Vec<u8> {
    const TABLE: usize = 0x100;
    const TEXT: usize = 0x800;
    let mut b = vec![0xF4; 0x10000];
    #[rustfmt::skip]
    let code = [
        0xFA,                                   // cli
        0x8C, 0xC8, 0x8E, 0xD8,                 // mov ax, cs; mov ds, ax
        0xBE, TABLE as u8, (TABLE >> 8) as u8,  // mov si, TABLE
        0xAD,                                   // 08: lodsw (port)
        0x85, 0xC0, 0x74, 0x06,                 // test ax, ax; jz 13
        0x89, 0xC2, 0xAC, 0xEE,                 // mov dx, ax; lodsb; out dx, al
        0xEB, 0xF5,                             // jmp 08
        0xB8, 0x00, 0xB8, 0x8E, 0xC0,           // 13: mov ax, 0xB800; mov es, ax
        0x31, 0xFF,                             // xor di, di
        0xBE, TEXT as u8, (TEXT >> 8) as u8,    // mov si, TEXT
        0xB9, text.len() as u8, 0x00,           // mov cx, len
        0xF3, 0xA5,                             // rep movsw
        0xB0, 0x00, 0xE6, 0xF4,                 // mov al, 0; out 0xF4, al
        0xF4,                                   // hlt
    ];
    b[..code.len()].copy_from_slice(&code);
    let mut at = TABLE;
    for (port, v) in mode3_writes() {
        b[at..at + 3].copy_from_slice(&[port as u8, (port >> 8) as u8, v]);
        at += 3;
    }
    b[at..at + 2].copy_from_slice(&[0, 0]);
    for (i, ch) in text.bytes().enumerate() {
        b[TEXT + 2 * i..TEXT + 2 * i + 2].copy_from_slice(&[ch, 0x1F]);
    }
    b[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0x00, 0x00, 0xF0]); // jmp F000:0000
    b
}

#[test]
fn screen_text_and_screenshot_at_exit() {
    let image = scratch("text.bin");
    std::fs::write(&image, bios("Ferrite says hello")).unwrap();
    let (text, png) = (scratch("screen.txt"), scratch("screen.png"));
    let o = ferrite(&[
        "--accel",
        "interp",
        "--bios",
        image.to_str().unwrap(),
        "--screen-text",
        text.to_str().unwrap(),
        "--screenshot",
        png.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let screen = std::fs::read_to_string(&text).unwrap();
    assert_eq!(screen, format!("Ferrite says hello\n{}", "\n".repeat(24)));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let reader = decoder.read_info().expect("a PNG");
    let info = reader.info();
    assert_eq!((info.width, info.height), (720, 400), "80x25 characters of 9x16");
}

#[test]
fn unwritable_paths_are_refused_before_the_guest_starts() {
    for option in ["--screenshot", "--screen-text"] {
        let o = ferrite(&[option, "/nonexistent/ferrite/dir/out"]);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{option} /nonexistent/ferrite/dir/out: No such file or directory")),
            "{err}"
        );
    }
}

#[test]
fn power_on_screen_is_reported_as_off() {
    let text = scratch("off.txt");
    let o = ferrite(&["--accel", "interp", "--serial", "none", "--screen-text", text.to_str().unwrap()]);
    assert!(o.status.code().is_some(), "{}", describe(&o));
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "display off\n", "the built-in guest sets no video mode");
}
