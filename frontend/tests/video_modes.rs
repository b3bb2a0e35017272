//! The standard VGA modes of Ferrite's own video BIOS (INT 10h AH=00h), each set by a boot
//! sector (on a small disk) that draws 16 bars of colour with AH=0Ch, reads one pixel back with AH=0Dh, and
//! writes a word with the teletype, run once with Ferrite's BIOS and once with SeaBIOS and its
//! VGA BIOS (`vgabios-stdvga.bin`, Debian package `seabios`) on the same VGA model: the two
//! screenshots must have the same size and the same bars, and the screen text must agree.
//! Without NASM or SeaBIOS the comparison is skipped, saying why (Ferrite's own runs are
//! still checked).

mod common;

use common::{describe, ferrite, read_png};
use std::path::{Path, PathBuf};
use std::process::Command;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const VGABIOS: &str = "/usr/share/seabios/vgabios-stdvga.bin";

const GUEST: &str = r#"
bits 16
org 0x7C00
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    mov ax, MODE
    int 0x10
%if GRAPHICS
    ; 16 bars, 4 pixels wide and 4 high: colour c (masked to the mode's colours) at x = 4c.
    xor bx, bx
    xor dx, dx
.row:
    xor cx, cx
.col:
    mov ax, cx
    shr ax, 2
    and al, COLOURS - 1
    mov ah, 0x0C
    int 0x10
    inc cx
    cmp cx, 64
    jb .col
    inc dx
    cmp dx, 4
    jb .row
    mov ah, 0x0D
    xor bh, bh
    mov cx, 21
    mov dx, 2
    int 0x10
    cmp al, 5 & (COLOURS - 1)
    jne fail
%endif
    mov ah, 0x02
    xor bh, bh
    mov dx, 0x0200
    int 0x10
    mov si, msg
.print:
    lodsb
    test al, al
    jz .done
    mov ah, 0x0E
    xor bh, bh
    mov bl, COLOURS - 1
    int 0x10
    jmp .print
.done:
    cmp byte [0x449], MODE
    jne fail
    mov al, 0
    out 0xF4, al
fail:
    mov al, 1
    out 0xF4, al
    hlt
msg: db "Ferrite", 0
times 510 - ($ - $$) db 0
dw 0xAA55
times 1474560 - ($ - $$) db 0
"#;

/// (mode, graphics, colours, width, height)
const MODES: &[(u8, bool, u32, u32, u32)] = &[
    (0x00, false, 16, 360, 400),
    (0x01, false, 16, 360, 400),
    (0x03, false, 16, 720, 400),
    (0x04, true, 4, 320, 200),
    (0x06, true, 2, 640, 200),
    (0x07, false, 16, 720, 400),
    (0x0D, true, 16, 320, 200),
    (0x0E, true, 16, 640, 200),
    (0x10, true, 16, 640, 350),
    (0x11, true, 2, 640, 480),
    (0x12, true, 16, 640, 480),
    (0x13, true, 16, 320, 200),
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-video-modes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The boot disk for `mode`, or why it cannot be built.
fn floppy(mode: u8, graphics: bool, colours: u32) -> Result<PathBuf, String> {
    let src = scratch(&format!("mode{mode:02x}.asm"));
    let out = scratch(&format!("mode{mode:02x}.img"));
    std::fs::write(&src, GUEST).unwrap();
    let o = Command::new("nasm")
        .args(["-f", "bin", &format!("-DMODE={mode:#x}"), &format!("-DGRAPHICS={}", graphics as u8), &format!("-DCOLOURS={colours}"), "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| format!("nasm (apt-get install nasm): {e}"))?;
    assert!(o.status.success(), "nasm: {}", String::from_utf8_lossy(&o.stderr));
    Ok(out)
}

struct Shot {
    text: String,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Shot {
    fn px(&self, x: u32, y: u32) -> [u8; 4] {
        let at = ((y * self.width + x) * 4) as usize;
        self.pixels[at..at + 4].try_into().unwrap()
    }
}

fn run(floppy: &Path, mode: u8, bios: &[&str], who: &str) -> Shot {
    let png = scratch(&format!("mode{mode:02x}-{who}.png"));
    let text = scratch(&format!("mode{mode:02x}-{who}.txt"));
    let disk = format!("{},snapshot=on", floppy.display());
    let mut args = vec!["--accel", "interp", "--hda", &disk, "--boot", "c", "--timeout", "60"];
    args.extend_from_slice(bios);
    args.extend_from_slice(&["--screenshot", png.to_str().unwrap(), "--screen-text", text.to_str().unwrap()]);
    let o = ferrite(&args);
    assert_eq!(o.status.code(), Some(0), "mode {mode:#04x} with {who}: {}", describe(&o));
    let shot = read_png(&png);
    Shot { text: std::fs::read_to_string(&text).unwrap_or_default(), width: shot.width, height: shot.height, pixels: shot.pixels }
}

#[test]
fn standard_modes_match_seabios_vga_bios() {
    let seabios = Path::new(SEABIOS).exists() && Path::new(VGABIOS).exists();
    if !seabios {
        eprintln!("partly skipped: no SeaBIOS to compare with ({SEABIOS}, {VGABIOS}: apt-get install seabios)");
    }
    let mut differences = Vec::new();
    for &(mode, graphics, colours, width, height) in MODES {
        let img = match floppy(mode, graphics, colours) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("skipped: the video mode test needs {why}");
                return;
            }
        };
        let ours = run(&img, mode, &[], "ferrite");
        assert_eq!((ours.width, ours.height), (width, height), "mode {mode:#04x}: screen size");
        if graphics {
            // The bars: distinct colours side by side, the same colour down each bar.
            for c in 0..16u32 {
                let top = ours.px(4 * c + 1, 0);
                assert_eq!(ours.px(4 * c + 2, 3), top, "mode {mode:#04x}: bar {c} is one colour");
            }
            let distinct: std::collections::HashSet<[u8; 4]> = (0..colours.min(16)).map(|c| ours.px(4 * c, 1)).collect();
            assert_eq!(distinct.len() as u32, colours.min(16), "mode {mode:#04x}: {colours} colours drawn");
        } else {
            assert_eq!(ours.text.lines().nth(2), Some("Ferrite"), "mode {mode:#04x}: text\n{}", ours.text);
        }
        if !seabios {
            continue;
        }
        let theirs = run(&img, mode, &["--bios", SEABIOS, "--vga-rom", VGABIOS], "seabios");
        if (ours.width, ours.height) != (theirs.width, theirs.height) {
            differences.push(format!("mode {mode:#04x}: {}x{} here, {}x{} with SeaBIOS", ours.width, ours.height, theirs.width, theirs.height));
            continue;
        }
        if graphics {
            for c in 0..16u32 {
                let (a, b) = (ours.px(4 * c + 1, 1), theirs.px(4 * c + 1, 1));
                if a != b {
                    differences.push(format!("mode {mode:#04x}: bar {c} is {a:?} here, {b:?} with SeaBIOS"));
                }
            }
        } else if ours.text != theirs.text {
            differences.push(format!("mode {mode:#04x}: screen text differs:\n{}\nwith SeaBIOS:\n{}", ours.text, theirs.text));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
