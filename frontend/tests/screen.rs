//! `--screenshot` and `--screen-text` as a user runs them: a tiny BIOS sets 80x25 text mode
//! through the VGA ports (no VGA BIOS), writes a line of text and exits; the files show it.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{describe, ferrite, read_png};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-screen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
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
    let shot = read_png(std::path::Path::new(&png));
    assert_eq!((shot.width, shot.height), (720, 400), "80x25 characters of 9x16");
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
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin");
    let o = ferrite(&["--accel", "interp", "--bios", hello, "--serial", "none", "--screen-text", text.to_str().unwrap()]);
    assert!(o.status.code().is_some(), "{}", describe(&o));
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "display off\n", "the hello ROM sets no video mode");
}

#[test]
fn the_bios_shows_its_messages_in_text_mode() {
    let text = scratch("bios.txt");
    let o = ferrite(&["--accel", "interp", "--boot", "c", "--serial", "none", "--screen-text", text.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(121), "{}", describe(&o));
    let screen = std::fs::read_to_string(&text).unwrap();
    assert!(screen.starts_with("Ferrite BIOS\nNo bootable device.\n"), "{screen}");
    assert_eq!(screen.lines().count(), 25, "80x25 text: {screen}");
}

/// SeaBIOS's VGA BIOS for this device, from the Debian package `seabios`.
const SEABIOS_VGA: &str = "/usr/share/seabios/vgabios-stdvga.bin";

/// A 128 KiB BIOS around SeaBIOS's VGA BIOS (at E000:0000; this code at F000:0000): shadows it
/// to C0000, maps the VGA's BARs, calls its initialisation in big real mode (as SeaBIOS calls
/// option ROMs), then uses INT 10h as a guest would and exits through port 0xF4. `-DMODE13`
/// draws in mode 13h, `-DVBE` in VBE mode 0x112 (640x480, 24 bpp) through the framebuffer.
const VGABIOS_GUEST: &str = r#"
bits 16
section vga start=0
incbin @VGABIOS_PATH@
section code start=0x10000 vstart=0
start:
    cli
    xor ax, ax
    mov ss, ax
    mov sp, 0x7000
    lgdt [cs:gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    mov bx, 8
    mov ds, bx
    mov es, bx
    mov fs, bx
    mov gs, bx
    and al, 0xFE
    mov cr0, eax
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    xor di, di
    mov cx, 256
.ivt:
    mov word [di], iret_stub
    mov word [di+2], 0xF000
    add di, 4
    loop .ivt
    mov ebx, 0x80000058         ; i440FX PAM1/PAM2: C0000-CFFFF is RAM
    call cfg_read
    or eax, 0x33330000
    call cfg_write
    push ds
    mov ax, 0xE000
    mov ds, ax
    mov ax, 0xC000
    mov es, ax
    xor si, si
    xor di, di
    mov cx, 0x8000
    rep movsw
    pop ds
    mov ebx, 0x80001010         ; VGA BAR0: framebuffer
    mov eax, 0xFD000000
    call cfg_write
    mov ebx, 0x80001018         ; VGA BAR2: registers
    mov eax, 0xFEBF0000
    call cfg_write
    mov ebx, 0x80001004
    mov eax, 3
    call cfg_write
    mov ax, 0x0010              ; 00:02.0
    call 0xC000:0x0003
    xor ax, ax                  ; the ROM's initialisation may leave other segments loaded
    mov ds, ax
    mov es, ax
%ifdef MODE13
    mov ax, 0x0013
    int 0x10
    push es
    mov ax, 0xA000
    mov es, ax
    xor di, di
    mov cx, 320
.pixels:
    mov ax, di
    stosb
    loop .pixels
    pop es
%elifdef VBE
    mov ax, 0x4F02
    mov bx, 0x4112
    int 0x10
    cmp ax, 0x004F
    jne fail
    mov ax, 0x4F01
    mov cx, 0x0112
    mov di, 0x8000
    int 0x10
    cmp ax, 0x004F
    jne fail
    mov edi, [0x8000 + 0x28]    ; PhysBasePtr
    mov byte [edi + 2], 0xFF    ; pixel (0, 0): blue, green, red
    mov byte [edi + 3 + 1], 0xFF ; pixel (1, 0): green
%else
    mov ax, 0x0003
    int 0x10
    mov si, msg
.print:
    cs lodsb
    test al, al
    jz .done
    mov ah, 0x0E
    mov bx, 0x0007
    int 0x10
    jmp .print
.done:
%endif
    mov al, 0
    out 0xF4, al
    hlt
fail:
    mov al, 1
    out 0xF4, al
    hlt
cfg_read:
    mov dx, 0xCF8
    mov eax, ebx
    out dx, eax
    mov dx, 0xCFC
    in eax, dx
    ret
cfg_write:
    push eax
    mov dx, 0xCF8
    mov eax, ebx
    out dx, eax
    pop eax
    mov dx, 0xCFC
    out dx, eax
    ret
iret_stub:
    iret
msg: db "Hello from SeaVGABIOS", 13, 10, "through INT 10h", 0
align 8
gdt:
    dq 0
    dq 0x00CF92000000FFFF
gdt_desc:
    dw 15
    dd 0xF0000 + gdt
times 0xFFF0 - ($ - $$) db 0xF4
    jmp 0xF000:start
times 0x10000 - ($ - $$) db 0xF4
"#;

/// Assembles the SeaBIOS VGA guest with `define` (or none), or says why it cannot.
fn vgabios_guest(define: Option<&str>) -> Result<PathBuf, String> {
    if !std::path::Path::new(SEABIOS_VGA).exists() {
        return Err(format!("seabios ({SEABIOS_VGA}; apt-get install seabios)"));
    }
    let name = define.unwrap_or("TEXT");
    let src = scratch(&format!("vgabios-{name}.asm"));
    let out = scratch(&format!("vgabios-{name}.bin"));
    std::fs::write(&src, VGABIOS_GUEST.replace("@VGABIOS_PATH@", &format!("\"{SEABIOS_VGA}\""))).unwrap();
    let mut nasm = Command::new("nasm");
    nasm.args(["-f", "bin", "-o"]).arg(&out).arg(&src);
    if let Some(d) = define {
        nasm.arg(format!("-D{d}"));
    }
    match nasm.output() {
        Err(_) => Err("nasm (apt-get install nasm)".into()),
        Ok(o) if !o.status.success() => panic!("nasm failed: {}", String::from_utf8_lossy(&o.stderr)),
        Ok(_) => Ok(out),
    }
}

/// Runs a SeaBIOS VGA guest; returns the screen text and the screenshot's size and pixels.
fn run_vgabios_guest(test: &str, define: Option<&str>) -> Option<(String, u32, u32, Vec<u8>)> {
    let image = match vgabios_guest(define) {
        Ok(p) => p,
        Err(needs) => {
            eprintln!("skipped: {test} needs {needs}");
            return None;
        }
    };
    let name = define.unwrap_or("TEXT");
    let (text, png) = (scratch(&format!("vgabios-{name}.txt")), scratch(&format!("vgabios-{name}.png")));
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
        "60",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let shot = read_png(&png);
    Some((std::fs::read_to_string(&text).unwrap(), shot.width, shot.height, shot.pixels))
}

#[test]
fn seabios_vgabios_text_mode() {
    let Some((text, w, h, pixels)) = run_vgabios_guest("seabios_vgabios_text_mode", None) else { return };
    assert!(text.starts_with("Hello from SeaVGABIOS\nthrough INT 10h\n"), "{text}");
    assert_eq!(text.lines().count(), 25);
    assert_eq!((w, h), (720, 400));
    // The BIOS's font drew something in light grey on black where the text is.
    let row0 = &pixels[..720 * 16 * 4];
    assert!(row0.chunks(4).any(|p| p == [0xAA, 0xAA, 0xAA, 0xFF]), "glyph pixels");
    assert!(pixels[720 * 16 * 4 * 3..].chunks(4).all(|p| p == [0, 0, 0, 0xFF]), "empty rows are black");
}

#[test]
fn seabios_vgabios_mode_13h() {
    let Some((text, w, h, pixels)) = run_vgabios_guest("seabios_vgabios_mode_13h", Some("MODE13")) else { return };
    assert_eq!(text, "graphics mode 320x200, 256 colours\n");
    assert_eq!((w, h), (320, 200));
    let px = |x: usize, y: usize| &pixels[(y * 320 + x) * 4..][..4];
    assert_eq!(px(15, 0), [0xFF, 0xFF, 0xFF, 0xFF], "colour 15 of the default palette is white");
    assert_eq!(px(1, 0), [0, 0, 0xAA, 0xFF], "colour 1 is blue");
    assert_eq!(px(15, 1), [0, 0, 0, 0xFF], "line 1 was not drawn");
}

#[test]
fn seabios_vgabios_vbe_linear_framebuffer() {
    let Some((text, w, h, pixels)) = run_vgabios_guest("seabios_vgabios_vbe_linear_framebuffer", Some("VBE")) else {
        return;
    };
    assert_eq!(text, "VBE mode 640x480, 24 bpp\n");
    assert_eq!((w, h), (640, 480));
    assert_eq!(&pixels[..8], [0xFF, 0, 0, 0xFF, 0, 0xFF, 0, 0xFF]);
    assert!(pixels[8..].chunks(4).all(|p| p == [0, 0, 0, 0xFF]), "cleared on mode set");
}
