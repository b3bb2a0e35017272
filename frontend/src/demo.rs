//! The default guest: given nothing to boot (no drive, `--boot`, `--bios` or `--kernel`),
//! Ferrite boots its own demo program (`roms::DEMO`, source `roms/boot/demo.asm`) from a
//! read-only floppy built in memory, so `ferrite` alone shows what the machine does. Whether anyone sees the
//! screen reaches every guest as the fw_cfg file [`HEADLESS_FILE`]; the demo ends its tour
//! there when headless and stays interactive in a window.

use crate::cli::{Args, Display};
use machine::block::{BlockDevice, MemoryDisk};

/// fw_cfg file holding "1" when the run is headless (`--display none`), "0" in a window. User
/// files go under `opt/` (QEMU's convention for `-fw_cfg name=...`).
pub const HEADLESS_FILE: &str = "opt/ferrite/headless";

/// What error messages call the built-in floppy.
const FLOPPY_NAME: &str = "<built-in demo floppy>";

/// True when the options name nothing to boot: then the demo runs.
pub fn wanted(args: &Args) -> bool {
    let d = &args.drives;
    let drives = [&d.hda, &d.hdb, &d.hdc, &d.hdd, &d.cdrom, &d.fda, &d.fdb];
    args.bios.is_none() && args.kernel.is_none() && d.boot.is_none() && drives.iter().all(|drive| drive.is_none())
}

/// The demo on a 1.44 MB floppy for drive A:.
pub fn floppy() -> Box<dyn BlockDevice> {
    Box::new(MemoryDisk::new(FLOPPY_NAME, roms::floppy_image(roms::DEMO)))
}

/// The fw_cfg files the front end gives every guest.
pub fn fw_cfg_files(args: &Args) -> Vec<(String, Vec<u8>)> {
    let headless = if args.display == Display::None { b"1" } else { b"0" };
    vec![(HEADLESS_FILE.to_string(), headless.to_vec())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(a: &[&str]) -> Args {
        Args::parse_from(std::iter::once("ferrite").chain(a.iter().copied()))
    }

    #[test]
    fn only_when_nothing_to_boot_is_named() {
        assert!(wanted(&args(&[])));
        assert!(wanted(&args(&["--display", "window", "-m", "64M", "--serial", "none"])));
        for given in [
            &["--bios", "x.bin"][..],
            &["--hda", "d.img"],
            &["--hdb", "d.img"],
            &["--hdc", "d.img"],
            &["--hdd", "d.img"],
            &["--cdrom", "cd.iso"],
            &["--fda", "f.img"],
            &["--fdb", "f.img"],
            &["--boot", "c"],
            &["--kernel", "bzImage"],
        ] {
            assert!(!wanted(&args(given)), "{given:?}");
        }
    }

    #[test]
    fn headless_file_follows_the_display() {
        assert_eq!(fw_cfg_files(&args(&[])), [(HEADLESS_FILE.to_string(), b"1".to_vec())]);
        assert_eq!(fw_cfg_files(&args(&["--display", "window"])), [(HEADLESS_FILE.to_string(), b"0".to_vec())]);
    }

    #[test]
    fn the_floppy_boots_the_demo() {
        let mut f = floppy();
        assert_eq!(f.len(), 1_474_560);
        assert!(f.is_read_only());
        let mut sector = [0u8; 512];
        f.read_sectors(0, &mut sector).unwrap();
        assert_eq!(&sector[..], &roms::DEMO[..512]);
    }
}
