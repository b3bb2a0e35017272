//! The drive options as a user meets them: images attached, errors that name the option and
//! the file before anything runs, `--snapshot` keeping the image as it was, and the machine
//! options that come with drives (`--boot`, `--smp`).

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{describe, ferrite};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_status(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", describe(o));
}

/// A usage error whose message has all of `words`.
#[track_caller]
fn assert_refused(o: &Output, words: &[&str]) {
    assert_status(o, 2);
    let e = stderr(o);
    for w in words {
        assert!(e.contains(w), "{w:?} missing from the error\n{}", describe(o));
    }
}

/// A scratch directory for one test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("ferrite-drives-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn file(&self, name: &str, content: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 64 KiB BIOS with `code` at F000:0000 and the reset vector jumping there.
fn bios_with(code: &[u8]) -> Vec<u8> {
    let mut b = vec![0xF4; 0x10000];
    b[..code.len()].copy_from_slice(code);
    b[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0x00, 0x00, 0xF0]);
    b
}

/// Writes sector 0 of the primary master with 0xABCD words by PIO (WRITE SECTORS), then exits
/// with the status register's ERR bit as its status.
const WRITE_SECTOR_0: &[u8] = &[
    0xBA, 0xF6, 0x01, 0xB0, 0xE0, 0xEE, // device: master, LBA
    0xBA, 0xF2, 0x01, 0xB0, 0x01, 0xEE, // one sector
    0xBA, 0xF3, 0x01, 0xB0, 0x00, 0xEE, 0x42, 0xEE, 0x42, 0xEE, // LBA 0
    0xBA, 0xF7, 0x01, 0xB0, 0x30, 0xEE, // WRITE SECTORS
    0xBA, 0xF0, 0x01, 0xB9, 0x00, 0x01, 0xB8, 0xCD, 0xAB, // 256 words of 0xABCD
    0xEF, 0xE2, 0xFD, // out dx, ax; loop
    0xBA, 0xF7, 0x01, 0xEC, 0x24, 0x01, // status & ERR
    0xE6, 0xF4, 0xF4, // exit with it
];

fn sector0(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()[..512].to_vec()
}

#[test]
fn a_guest_writes_the_disk_and_snapshot_keeps_it_unchanged() {
    let dir = Scratch::new("write");
    let bios = dir.file("write.bin", &bios_with(WRITE_SECTOR_0));
    let disk = dir.file("disk.img", &vec![0u8; 1 << 20]);
    let written: Vec<u8> = [0xCD, 0xAB].repeat(256);

    let o = ferrite(&["--accel", "interp", "--bios", &bios, "--hda", &disk, "--snapshot"]);
    assert_status(&o, 0);
    assert!(sector0(&disk).iter().all(|&b| b == 0), "--snapshot: the image is unchanged");

    let o = ferrite(&["--accel", "interp", "--bios", &bios, "--hda", &format!("{disk},snapshot=on")]);
    assert_status(&o, 0);
    assert!(sector0(&disk).iter().all(|&b| b == 0), "snapshot=on: the image is unchanged");

    let o = ferrite(&["--accel", "interp", "--bios", &bios, "--hda", &format!("{disk},readonly=on")]);
    assert_status(&o, 1);
    assert!(sector0(&disk).iter().all(|&b| b == 0), "readonly=on: the write failed");

    let o = ferrite(&["--accel", "interp", "--bios", &bios, "--hda", &disk]);
    assert_status(&o, 0);
    assert_eq!(sector0(&disk), written, "the guest's write is in the file");
}

#[test]
fn drives_boot_order_and_processors_are_accepted() {
    let dir = Scratch::new("accept");
    let disk = dir.file("disk.img", &vec![0u8; 1 << 20]);
    let second = dir.file("second.img", &vec![0u8; 1 << 20]);
    let mut iso = vec![0u8; 20 * 2048];
    iso[16 * 2048..16 * 2048 + 6].copy_from_slice(b"\x01CD001");
    let iso = dir.file("cd.iso", &iso);
    let floppy = dir.file("a.img", &vec![0u8; 1_474_560]);
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin");
    let o = ferrite(&["--bios", hello, "--hda", &disk, "--hdb", &format!("{second},snapshot=on"), "--cdrom", &iso, "--fda", &floppy, "--boot", "dca", "--smp", "2"]);
    assert_status(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Hello from Ferrite!"), "{}", describe(&o));
}

#[test]
fn missing_and_malformed_images_are_refused_by_name() {
    let dir = Scratch::new("bad");
    let missing = dir.path("missing.img");
    assert_refused(&ferrite(&["--hda", &missing]), &["--hda", "missing.img", "No such file or directory"]);
    assert_refused(&ferrite(&["--cdrom", &missing]), &["--cdrom", "missing.img"]);
    assert_refused(&ferrite(&["--fdb", &missing]), &["--fdb", "missing.img"]);
    let mut qcow = b"QFI\xfb\x00\x00\x00\x07".to_vec();
    qcow.resize(4096, 0);
    let bad = dir.file("bad.qcow2", &qcow);
    assert_refused(&ferrite(&["--hdb", &bad]), &["--hdb", "bad.qcow2", "qcow2"]);
    let empty = dir.file("empty.img", b"");
    assert_refused(&ferrite(&["--hdd", &empty]), &["--hdd", "empty.img", "no 512-byte sector"]);
    let tiny = dir.file("tiny.iso", &[0u8; 1000]);
    assert_refused(&ferrite(&["--cdrom", &tiny]), &["--cdrom", "tiny.iso", "2048-byte"]);
    let odd = dir.file("odd.img", &[0u8; 1000]);
    assert_refused(&ferrite(&["--fda", &odd]), &["--fda", "odd.img", "not a floppy image size"]);
    let raw = dir.file("raw.img", &[0u8; 4096]);
    assert_refused(&ferrite(&["--hda", &format!("{raw},format=qcow2")]), &["--hda", "raw.img"]);
}

#[test]
fn a_locked_image_is_refused() {
    let dir = Scratch::new("locked");
    let disk = dir.file("disk.img", &vec![0u8; 1 << 20]);
    // Another user (this test) holds the image for writing.
    let _held = machine::block::open(Path::new(&disk), &machine::block::OpenOptions::default()).unwrap();
    assert_refused(&ferrite(&["--hda", &disk]), &["--hda", "disk.img"]);
    // Read-only users may share it; --snapshot wants nobody writing.
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../roms/build/hello.bin");
    let o = ferrite(&["--bios", hello, "--hda", &format!("{disk},readonly=on")]);
    assert_status(&o, 0);
    assert_refused(&ferrite(&["--hda", &disk, "--snapshot"]), &["--hda", "disk.img"]);
}

#[test]
fn malformed_options_are_refused() {
    assert_refused(&ferrite(&["--hda", "x.img,cache=none"]), &["--hda", "unknown drive option \"cache\""]);
    assert_refused(&ferrite(&["--hda", "x.img,format=vmdk"]), &["--hda", "vmdk"]);
    assert_refused(&ferrite(&["--hda", ""]), &["--hda", "needs an image file name"]);
    assert_refused(&ferrite(&["--hdc", "a.img", "--cdrom", "b.iso"]), &["--hdc", "--cdrom", "cannot be used with"]);
    assert_refused(&ferrite(&["--boot", "z"]), &["--boot", "not a boot device"]);
    assert_refused(&ferrite(&["--boot", "cc"]), &["--boot", "twice"]);
    assert_refused(&ferrite(&["--smp", "0"]), &["--smp", "1 to 64"]);
    assert_refused(&ferrite(&["--smp", "65"]), &["--smp", "1 to 64"]);
}

/// A boot sector (loaded at 0:7C00) that prints `message` on COM1 and exits with `status`.
fn boot_code(message: &str, status: u8) -> Vec<u8> {
    let mut code = vec![
        0xFA, 0x31, 0xC0, 0x8E, 0xD8, // cli; ds = 0
        0xBE, 0x18, 0x7C, // si = the message
        0xBA, 0xF8, 0x03, // dx = COM1
        0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, // print until the NUL
        0xB0, status, 0xE6, 0xF4, 0xF4, // exit with the status
    ];
    code.extend(message.bytes());
    code.extend(b"\r\n\0");
    code
}

/// An ISO 9660 image with an El Torito boot catalog whose no-emulation boot image is `code`.
fn el_torito(code: &[u8]) -> Vec<u8> {
    const B: usize = 2048;
    let mut iso = vec![0u8; 40 * B];
    let descriptor = |iso: &mut Vec<u8>, block: usize, kind: u8| {
        iso[block * B] = kind;
        iso[block * B + 1..block * B + 7].copy_from_slice(b"CD001\x01");
    };
    descriptor(&mut iso, 16, 1); // primary volume descriptor
    descriptor(&mut iso, 17, 0); // boot record
    iso[17 * B + 7..17 * B + 30].copy_from_slice(b"EL TORITO SPECIFICATION");
    iso[17 * B + 0x47..17 * B + 0x4B].copy_from_slice(&19u32.to_le_bytes());
    descriptor(&mut iso, 18, 255); // terminator
    let cat = &mut iso[19 * B..20 * B];
    cat[0] = 1; // validation entry, x86
    cat[0x1E] = 0x55;
    cat[0x1F] = 0xAA;
    let sum = cat[..32].chunks(2).fold(0u16, |s, w| s.wrapping_add(u16::from_le_bytes([w[0], w[1]])));
    cat[0x1C..0x1E].copy_from_slice(&sum.wrapping_neg().to_le_bytes());
    cat[0x20] = 0x88; // bootable, no emulation, default load segment
    cat[0x26] = 4; // four 512-byte sectors
    cat[0x28..0x2C].copy_from_slice(&20u32.to_le_bytes());
    iso[20 * B..20 * B + code.len()].copy_from_slice(code);
    iso
}

/// Debian's SeaBIOS image, or `None` (the test named says it skips) where it is missing.
fn seabios(test: &str) -> Option<&'static str> {
    let seabios = "/usr/share/seabios/bios-256k.bin";
    if Path::new(seabios).exists() {
        Some(seabios)
    } else {
        eprintln!("skipping {test}: {seabios} is missing (apt-get install seabios)");
        None
    }
}

#[test]
fn seabios_boots_a_disk_and_a_cd_through_the_ide_controller() {
    let Some(seabios) = seabios("seabios_boots_a_disk_and_a_cd_through_the_ide_controller") else { return };
    let dir = Scratch::new("seabios");
    let mut disk = vec![0u8; 4 << 20];
    let mbr = boot_code("DISK BOOT OK", 0x42);
    disk[..mbr.len()].copy_from_slice(&mbr);
    disk[510..512].copy_from_slice(&[0x55, 0xAA]);
    let disk = dir.file("boot.img", &disk);
    let iso = dir.file("boot.iso", &el_torito(&boot_code("CD BOOT OK", 0x43)));
    let run = |extra: &[&str]| {
        let mut args = vec!["--accel", "interp", "--bios", seabios, "--timeout", "60"];
        args.extend(extra);
        ferrite(&args)
    };
    let o = run(&["--hda", &disk]);
    assert_status(&o, 0x42);
    assert!(String::from_utf8_lossy(&o.stdout).contains("DISK BOOT OK"), "{}", describe(&o));
    let o = run(&["--hda", &disk, "--cdrom", &iso, "--boot", "d"]);
    assert_status(&o, 0x43);
    assert!(String::from_utf8_lossy(&o.stdout).contains("CD BOOT OK"), "{}", describe(&o));
    let o = run(&["--hda", &disk, "--cdrom", &iso, "--boot", "c"]);
    assert_status(&o, 0x42);
}

/// SeaBIOS boots a 1.44 MB floppy through the 82077AA and ISA DMA, and the boot sector reads
/// its second sector through SeaBIOS's INT 13h (the floppy driver waits for IRQ 6 in a
/// one-instruction `sti ; nop ; cli` window, which the interpreter once closed before the
/// interrupt got through: "Timeout at floppy_wait_irq").
#[test]
fn seabios_boots_a_floppy_and_reads_it_through_int_13h() {
    let Some(seabios) = seabios("seabios_boots_a_floppy_and_reads_it_through_int_13h") else { return };
    let dir = Scratch::new("seabios-floppy");
    #[rustfmt::skip]
    let boot = [
        0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0, 0xBC, 0x00, 0x7C, 0xFB, // segments 0, sp 7C00, sti
        0xB8, 0x01, 0x02, 0xB9, 0x02, 0x00, 0xBA, 0x00, 0x00, 0xBB, 0x00, 0x7E, // one sector: C0 H0 S2 of drive 0 to 0:7E00
        0xCD, 0x13, 0x72, 0x13, // int 13h; jc fail
        0xBE, 0x00, 0x7E, 0xBA, 0xF8, 0x03, // si = the sector, dx = COM1
        0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, // print until the NUL
        0xB0, 0x44, 0xE6, 0xF4, 0xF4, // exit 0x44
        0xB0, 0x45, 0xE6, 0xF4, 0xF4, // fail: exit 0x45
    ];
    let mut floppy = vec![0u8; 1_474_560];
    floppy[..boot.len()].copy_from_slice(&boot);
    floppy[510..512].copy_from_slice(&[0x55, 0xAA]);
    floppy[512..512 + 26].copy_from_slice(b"SECTOR TWO FROM THE FDC\r\n\0");
    let floppy = dir.file("floppy.img", &floppy);
    let o = ferrite(&["--accel", "interp", "--bios", seabios, "--timeout", "60", "--fda", &floppy, "--boot", "a"]);
    assert_status(&o, 0x44);
    assert!(String::from_utf8_lossy(&o.stdout).contains("SECTOR TWO FROM THE FDC"), "{}", describe(&o));
}
