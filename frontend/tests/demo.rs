//! The default guest: `ferrite` with nothing to boot runs its built-in demo (`roms/boot/
//! demo.asm` on a built-in floppy). Headless it prints every stage of its tour to COM1, leaves
//! its picture on the screen and exits 0, the same way each run; anything to boot (a drive,
//! `--boot`, `--bios`) keeps it away. The window's side (keys echo until Esc) is in
//! `window.rs`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn ferrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("start ferrite")
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (320, 200, png::ColorType::Rgba));
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()].chunks(4).map(|p| [p[0], p[1], p[2]]).collect();
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
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin");
    let (f, d) = (floppy_path.to_str().unwrap(), disk_path.to_str().unwrap());
    for (args, status, says) in [
        (&["--fda", f][..], 7, ""),
        (&["--fda", f, "--boot", "a"], 7, ""),
        (&["--hda", d], 7, ""),
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
