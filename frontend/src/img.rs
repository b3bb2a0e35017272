//! `ferrite img`: disk images without a guest. `create` makes raw, VHD (dynamic, fixed,
//! differencing) and qcow2 images through `machine::block::create`; `check` and `info` report
//! what `machine::block::check` finds. Nothing is ever overwritten.

use crate::drives::tidy;
use machine::block::{self, CheckReport, CreateFormat, Format, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit statuses of `ferrite img`.
pub mod status {
    pub const OK: u8 = 0;
    /// The image, an option or a file is bad (nothing was written).
    pub const BAD: u8 = 2;
    /// `check`: the image is usable, with harmless oddities (leaked space, a stale copy).
    pub const WARNINGS: u8 = 3;
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Disk images: create, check and describe them without running a guest
    #[command(subcommand)]
    Img(ImgCommand),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ImgCommand {
    /// Create a new image (never replaces an existing file)
    Create {
        /// raw, vhd (dynamic; with --parent a differencing VHD), vhd-fixed or qcow2
        #[arg(short = 'f', long, value_name = "raw|vhd|vhd-fixed|qcow2", value_parser = parse_create_format)]
        format: CreateFormat,
        /// The disk's size: bytes, or with a K, M, G or T suffix (binary units), as in 10G;
        /// optional with --parent (the parent's size)
        #[arg(short = 's', long, value_name = "SIZE", value_parser = parse_image_size)]
        size: Option<u64>,
        /// A parent image whose data the new one starts from (qcow2 or vhd only)
        #[arg(short = 'b', long, value_name = "FILE")]
        parent: Option<PathBuf>,
        /// The image to create
        file: PathBuf,
    },
    /// Check an image and its parents; exit 0 when all is well, 3 for harmless oddities,
    /// 2 when the image is damaged
    Check {
        /// raw, iso, vhd or qcow2 (found from the content when not given)
        #[arg(short = 'f', long, value_name = "FORMAT", value_parser = parse_format)]
        format: Option<Format>,
        file: PathBuf,
    },
    /// Describe an image: format, sizes, parents
    Info {
        #[arg(short = 'f', long, value_name = "FORMAT", value_parser = parse_format)]
        format: Option<Format>,
        file: PathBuf,
    },
}

fn parse_create_format(s: &str) -> Result<CreateFormat, String> {
    s.parse()
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// A size as qemu-img takes it: bytes, or a number (fractions allowed) with K, M, G or T
/// (binary units; a trailing B or iB is accepted), as in 64M or 1.5G.
pub fn parse_image_size(s: &str) -> Result<u64, String> {
    const FORM: &str = "expected a size in bytes or with a K, M, G or T suffix, as in 64M or 10G";
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(end);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(FORM.into()),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(FORM.into());
    }
    let too_large = || format!("{s} is too large");
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
    let mut bytes = whole.checked_mul(1 << shift).ok_or_else(too_large)?;
    if !frac.is_empty() {
        // The fraction in whole bytes: digits / 10^len * 2^shift, exactly or refused.
        let digits: u128 = frac.parse().map_err(|_| too_large())?;
        let scale = 10u128.checked_pow(frac.len() as u32).ok_or_else(too_large)?;
        let part = digits * (1u128 << shift);
        if part % scale != 0 {
            return Err(format!("{s} is not a whole number of bytes"));
        }
        bytes = bytes.checked_add((part / scale) as u64).ok_or_else(too_large)?;
    }
    if bytes == 0 {
        return Err("the size must be more than 0".into());
    }
    Ok(bytes)
}

/// Runs a `ferrite img` command; errors name the file and the problem.
pub fn run(cmd: &Command) -> ExitCode {
    let Command::Img(cmd) = cmd;
    let r = match cmd {
        ImgCommand::Create { format, size, parent, file } => create(*format, *size, parent.as_deref(), file),
        ImgCommand::Check { format, file } => check(*format, file, true),
        ImgCommand::Info { format, file } => check(*format, file, false),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ferrite img: {e}");
            ExitCode::from(status::BAD)
        }
    }
}

fn create(format: CreateFormat, size: Option<u64>, parent: Option<&Path>, file: &Path) -> Result<u8, String> {
    let size = match (size, parent) {
        (Some(s), _) => s.div_ceil(512) * 512,
        (None, Some(_)) => 0,
        (None, None) => return Err("create needs --size (or --parent, whose size it takes)".into()),
    };
    let got = block::create(file, format, size, parent).map_err(|e| tidy(e.to_string()))?;
    let name = match format {
        CreateFormat::Raw => "raw",
        CreateFormat::VhdFixed => "vhd (fixed)",
        CreateFormat::VhdDynamic if parent.is_some() => "vhd (differencing)",
        CreateFormat::VhdDynamic => "vhd (dynamic)",
        CreateFormat::Qcow2 => "qcow2",
    };
    print!("created {}: {name}, {}", file.display(), human(got));
    if let Some(p) = parent {
        print!(", parent {}", p.display());
    }
    println!();
    Ok(status::OK)
}

fn check(format: Option<Format>, file: &Path, verdict: bool) -> Result<u8, String> {
    let report = block::check(file, &OpenOptions { format, ..OpenOptions::default() }).map_err(|e| tidy(e.to_string()))?;
    print!("{}", describe(&report));
    if !verdict {
        return Ok(status::OK);
    }
    if report.warnings.is_empty() {
        println!("no problems found");
        Ok(status::OK)
    } else {
        println!("usable, with {} warning(s)", report.warnings.len());
        Ok(status::WARNINGS)
    }
}

fn describe(r: &CheckReport) -> String {
    let mut s = format!("image: {}\nformat: {} ({})\nvirtual size: {}\nallocated: {}\n", r.path.display(), r.format, r.detail, human(r.virtual_size), human(r.allocated));
    for p in &r.parents {
        s += &format!("parent: {}\n", p.display());
    }
    for w in &r.warnings {
        s += &format!("warning: {w}\n");
    }
    s
}

/// `64 MiB (67108864 bytes)`.
fn human(bytes: u64) -> String {
    let units = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    match units.iter().find(|&&(shift, _)| bytes >= 1 << shift) {
        Some(&(shift, unit)) => {
            let v = bytes as f64 / (1u64 << shift) as f64;
            format!("{} {unit} ({bytes} bytes)", if v.fract() == 0.0 { format!("{v}") } else { format!("{v:.2}") })
        }
        None => format!("{bytes} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes() {
        assert_eq!(parse_image_size("512"), Ok(512));
        assert_eq!(parse_image_size("64M"), Ok(64 << 20));
        assert_eq!(parse_image_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_image_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_image_size("1T"), Ok(1 << 40));
        for bad in ["", "M", "1X", "1.2.3G", "-1", "0", "0.1"] {
            assert!(parse_image_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_image_size("99999999999999999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(64 << 20), "64 MiB (67108864 bytes)");
        assert_eq!(human(1536), "1.50 KiB (1536 bytes)");
        assert_eq!(human(100), "100 bytes");
    }
}
