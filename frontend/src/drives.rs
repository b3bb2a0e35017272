//! Drives on the command line: `--hda` to `--hdd` (IDE disks), `--cdrom` (the secondary
//! master as a CD-ROM, as QEMU does), `--fda`/`--fdb` (floppies), `--boot` and `--snapshot`.
//! clap checks their form (`DriveSpec`, `parse_boot`); [`Drives::open`] opens the images, with
//! every error naming the option and the file, before the machine is built.

use anyhow::{anyhow, bail, Result};
use machine::block::{self, BlockDevice, Format, OpenOptions};
use machine::devices::fdc::{FdcError, FloppyKind};
use machine::Drive;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct DriveArgs {
    /// IDE primary master: a disk image (raw, VHD or qcow2, told apart by content), with
    /// options after commas: format=raw|vhd|qcow2|iso, readonly=on, snapshot=on, locking=off,
    /// media=cdrom (a ",," in the file name stands for a comma)
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive)]
    pub hda: Option<DriveSpec>,

    /// IDE primary slave (as --hda)
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive)]
    pub hdb: Option<DriveSpec>,

    /// IDE secondary master (as --hda)
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive)]
    pub hdc: Option<DriveSpec>,

    /// IDE secondary slave (as --hda)
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive)]
    pub hdd: Option<DriveSpec>,

    /// A CD-ROM drive on the IDE secondary master (the place of --hdc) with this image (ISO
    /// 9660 or any file of 2048-byte blocks), read-only
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive, conflicts_with = "hdc")]
    pub cdrom: Option<DriveSpec>,

    /// Floppy drive A: with this image (options as --hda)
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive)]
    pub fda: Option<DriveSpec>,

    /// Floppy drive B: (as --fda)
    #[arg(long, value_name = "FILE[,OPTION=VALUE...]", value_parser = parse_drive)]
    pub fdb: Option<DriveSpec>,

    /// Boot order for the firmware: c (first hard disk), d (CD-ROM), a or b (floppy), or
    /// several in order of preference, as in dca (order=dca works too)
    #[arg(long, value_name = "c|d|a|ORDER", value_parser = parse_boot)]
    pub boot: Option<String>,

    /// Give every drive a temporary overlay: the guest's writes are discarded when Ferrite
    /// exits and the image files stay as they were
    #[arg(long)]
    pub snapshot: bool,
}

/// A drive as written on the command line: the file and how to open it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveSpec {
    pub path: PathBuf,
    pub opts: OpenOptions,
    /// `media=cdrom`: an ATAPI CD-ROM rather than a hard disk.
    pub cdrom: bool,
}

/// `FILE[,key=value...]`, where `,,` is a comma in the file name and a bare key means `on`.
pub fn parse_drive(s: &str) -> Result<DriveSpec, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                cur.push(',');
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    let file = parts.remove(0);
    if file.is_empty() {
        return Err("needs an image file name, as in disk.img or disk.qcow2,snapshot=on".into());
    }
    let mut spec = DriveSpec { path: PathBuf::from(file), opts: OpenOptions::default(), cdrom: false };
    for part in parts {
        let (key, value) = part.split_once('=').unwrap_or((&part, "on"));
        match key {
            "media" => {
                spec.cdrom = match value {
                    "cdrom" => true,
                    "disk" => false,
                    _ => return Err(format!("media={value}: expected disk or cdrom")),
                }
            }
            "format" | "readonly" | "read-only" | "ro" | "snapshot" | "locking" | "lock" => spec.opts.set(key, value)?,
            _ => return Err(format!("unknown drive option {key:?} (format, readonly, snapshot, locking, media)")),
        }
    }
    Ok(spec)
}

/// A boot order: letters from a, b, c and d, each at most once.
pub fn parse_boot(s: &str) -> Result<String, String> {
    let order = s.strip_prefix("order=").unwrap_or(s).to_ascii_lowercase();
    if order.is_empty() {
        return Err("expected c (hard disk), d (CD-ROM), a (floppy) or an order such as dca".into());
    }
    for (i, c) in order.chars().enumerate() {
        match c {
            'a' | 'b' | 'c' | 'd' => {}
            'n'..='p' => return Err(format!("{c}: network boot is not available")),
            _ => return Err(format!("{c:?} is not a boot device: c (hard disk), d (CD-ROM), a or b (floppy)")),
        }
        if order.chars().take(i).any(|earlier| earlier == c) {
            return Err(format!("{c} appears twice in the boot order {order}"));
        }
    }
    Ok(order)
}

/// The opened drives, ready for `MachineConfig`.
pub struct Drives {
    pub ide: [Option<Drive>; 4],
    pub floppy: [Option<Box<dyn BlockDevice>>; 2],
    pub boot_order: Option<String>,
}

impl Drives {
    /// Opens every image the options name (checking, detecting and locking each), or says
    /// which option and file failed and why.
    pub fn open(args: &DriveArgs) -> Result<Drives> {
        let mut ide: [Option<Drive>; 4] = Default::default();
        let hdc = match &args.cdrom {
            Some(cd) => Some(("--cdrom", DriveSpec { cdrom: true, ..cd.clone() })),
            None => args.hdc.clone().map(|s| ("--hdc", s)),
        };
        let slots = [args.hda.clone().map(|s| ("--hda", s)), args.hdb.clone().map(|s| ("--hdb", s)), hdc, args.hdd.clone().map(|s| ("--hdd", s))];
        for (slot, spec) in ide.iter_mut().zip(slots) {
            if let Some((option, spec)) = spec {
                *slot = Some(open_ide(option, &spec, args.snapshot)?);
            }
        }
        let mut floppy: [Option<Box<dyn BlockDevice>>; 2] = Default::default();
        for (slot, (option, spec)) in floppy.iter_mut().zip([("--fda", &args.fda), ("--fdb", &args.fdb)]) {
            if let Some(spec) = spec {
                let media = open_image(option, spec, args.snapshot)?;
                if FloppyKind::from_size(media.len()).is_none() {
                    bail!("{option}: {}", FdcError::UnknownSize { path: spec.path.clone(), size: media.len() });
                }
                *slot = Some(media);
            }
        }
        Ok(Drives { ide, floppy, boot_order: args.boot.clone() })
    }
}

fn open_ide(option: &str, spec: &DriveSpec, snapshot: bool) -> Result<Drive> {
    let path = spec.path.display();
    if spec.cdrom {
        // A CD is read-only whatever the options say; an overlay would change nothing.
        let opts = OpenOptions { read_only: true, snapshot: false, ..spec.opts.clone() };
        let media = block::open(&spec.path, &opts).map_err(|e| anyhow!("{option}: {}", tidy(e.to_string())))?;
        if media.len() < 2048 {
            bail!("{option} {path}: the image holds no 2048-byte block ({} bytes)", media.len());
        }
        return Ok(Drive { media, cdrom: true });
    }
    let media = open_image(option, spec, snapshot)?;
    if media.sector_count() == 0 {
        bail!("{option} {path}: the image holds no 512-byte sector ({} bytes)", media.len());
    }
    if media.format() == Format::Iso {
        eprintln!("ferrite: {option} {path}: an ISO 9660 CD image, attached as a read-only hard disk (--cdrom makes it a CD-ROM)");
    }
    Ok(Drive { media, cdrom: false })
}

fn open_image(option: &str, spec: &DriveSpec, snapshot: bool) -> Result<Box<dyn BlockDevice>> {
    let opts = OpenOptions { snapshot: spec.opts.snapshot || snapshot, ..spec.opts.clone() };
    block::open(&spec.path, &opts).map_err(|e| anyhow!("{option}: {}", tidy(e.to_string())))
}

/// A message without Rust's " (os error N)" after the system's words.
pub(crate) fn tidy(mut s: String) -> String {
    while let Some(i) = s.find(" (os error ") {
        match s[i..].find(')') {
            Some(j) => s.replace_range(i..i + j + 1, ""),
            None => break,
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_specs() {
        let d = parse_drive("a,,b.img,format=qcow2,snapshot=on,readonly").unwrap();
        assert_eq!(d.path, PathBuf::from("a,b.img"));
        assert_eq!(d.opts.format, Some(Format::Qcow2));
        assert!(d.opts.snapshot && d.opts.read_only && !d.cdrom);
        assert!(parse_drive("x.iso,media=cdrom").unwrap().cdrom);
        assert!(parse_drive("").is_err());
        assert!(parse_drive(",format=raw").is_err());
        let e = parse_drive("x.img,cache=none").unwrap_err();
        assert!(e.contains("cache"), "{e}");
        assert!(parse_drive("x.img,format=vmdk").unwrap_err().contains("vmdk"));
        assert!(parse_drive("x.img,media=tape").is_err());
    }

    #[test]
    fn boot_orders() {
        assert_eq!(parse_boot("c"), Ok("c".into()));
        assert_eq!(parse_boot("order=DCA"), Ok("dca".into()));
        assert!(parse_boot("").is_err());
        assert!(parse_boot("cc").unwrap_err().contains("twice"));
        assert!(parse_boot("n").unwrap_err().contains("network"));
        assert!(parse_boot("x").is_err());
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        assert_eq!(tidy("a: cannot open: No such file or directory (os error 2)".into()), "a: cannot open: No such file or directory");
    }
}
