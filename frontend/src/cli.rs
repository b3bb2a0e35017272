//! The command line: every option of `ferrite`, parsed and checked for form by clap. Checks that
//! need the host (files, KVM) happen in `session.rs`, still before the guest starts.

use accel::AccelChoice;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Guest memory limits, as `machine::Memory` enforces them.
const MIN_MEMORY: u64 = 1 << 20;
const MAX_MEMORY: u64 = 1 << 40;

#[derive(Parser, Debug)]
#[command(
    name = "ferrite",
    version,
    about = "Ferrite: a full-system x86 PC emulator",
    long_about = "Ferrite: a full-system x86 PC emulator.\n\nIt runs headless with Ferrite's own \
                  BIOS, which boots the drives given (--hda, --cdrom, --fda, ...) in --boot order; \
                  COM1 goes to standard output. Given no drive, --boot, --bios or --kernel it boots its \
                  built-in demo, a tour of the machine (with --display window: keys echo until Esc). The exit status is the guest's (written to port 0xF4), 124 on \
                  --timeout, 121 when the guest halts for good, 122 on a triple fault under \
                  --no-reboot, 2 for bad options or files, 125 when Ferrite itself fails.",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// How to run the CPU: `interp` (the portable interpreter), `kvm`, or `auto` (KVM where
    /// the host has hardware virtualization, else the interpreter)
    #[arg(long, value_name = "interp|kvm|auto", default_value = "auto", value_parser = parse_accel)]
    pub accel: AccelChoice,

    /// Guest RAM: a whole number with an optional K, M, G or T suffix (binary units); a plain
    /// number means MiB
    #[arg(short = 'm', long, value_name = "SIZE", default_value = "128M", value_parser = parse_memory_size)]
    pub memory: u64,

    /// BIOS image to boot (a multiple of 64 KiB, at most 16 MiB) instead of Ferrite's own
    /// BIOS
    #[arg(long, value_name = "FILE")]
    pub bios: Option<PathBuf>,

    /// Boot this kernel directly, with no firmware running first: a Linux bzImage, or a
    /// multiboot (version 1 or 2) kernel as an ELF file or with load addresses in its header
    #[arg(long, value_name = "FILE", conflicts_with = "bios")]
    pub kernel: Option<PathBuf>,

    /// With --kernel: the initrd of a Linux kernel (several files are concatenated), or the
    /// modules of a multiboot kernel, separated by commas (a doubled comma is a comma in a
    /// name). A multiboot module is given the whole entry as its string, so `mod.bin arg`
    /// loads mod.bin and passes "mod.bin arg"
    #[arg(long, value_name = "FILE[,FILE...]", requires = "kernel")]
    pub initrd: Option<String>,

    /// With --kernel: the kernel command line (a multiboot kernel gets it after its file name,
    /// as GRUB passes it)
    #[arg(long, value_name = "TEXT", requires = "kernel", allow_hyphen_values = true)]
    pub append: Option<String>,

    /// Option ROM for the VGA card (for SeaBIOS: /usr/share/seabios/vgabios-stdvga.bin from
    /// the Debian package `seabios`), at most 1 MiB
    #[arg(long, value_name = "FILE")]
    pub vga_rom: Option<PathBuf>,

    /// Where COM1 goes: `stdio` (output to standard output, input from standard input),
    /// `file:PATH` (output to PATH), or `none`
    #[arg(long, value_name = "stdio|file:PATH|none", default_value = "stdio", value_parser = parse_char_spec)]
    pub serial: CharSpec,

    /// Where the debug console (port 0xE9, and 0x402 where SeaBIOS writes its log) goes: `stdio`, `file:PATH` or `none`
    #[arg(long, value_name = "stdio|file:PATH|none", default_value = "none", value_parser = parse_char_spec)]
    pub debugcon: CharSpec,

    /// `window` (a desktop window with the guest's screen, keyboard and mouse; the clock runs
    /// in real time) or `none` (headless)
    #[arg(long, value_enum, value_name = "window|none", default_value_t = Display::None)]
    pub display: Display,

    /// How the window scales the guest's screen: `integer` (the largest whole multiple that
    /// fits, crisp) or `fit` (fills the window, keeping the aspect ratio)
    #[arg(long, value_enum, value_name = "integer|fit", default_value_t = Scaling::Integer)]
    pub scaling: Scaling,

    /// The shape of the guest's pixels in the window: `auto` (the VGA's own modes, up to
    /// 720x480, fill a 4:3 screen as on a monitor; larger modes have square pixels) or
    /// `square`
    #[arg(long, value_enum, value_name = "auto|square", default_value_t = Aspect::Auto)]
    pub aspect: Aspect,

    /// The window's size as a whole multiple of the guest's screen, 1 to 8 (default: the
    /// largest that fits the monitor); kept through mode changes until the window is resized
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub window_scale: Option<u32>,

    /// Start the window full screen (Ctrl+Alt+F toggles)
    #[arg(long)]
    pub fullscreen: bool,

    /// How the window draws: `auto` (wgpu on a hardware graphics adapter, else the CPU),
    /// `vulkan` or `gl` (wgpu on that API only, else the CPU), `x11` (the CPU), `soft` (the CPU,
    /// through softbuffer). The CPU draws through the X server's shared memory where it can
    /// (X11, MIT-SHM), else through softbuffer
    #[arg(long, value_enum, value_name = "auto|vulkan|gl|x11|soft", env = "FERRITE_RENDERER", default_value_t = Renderer::Auto)]
    pub renderer: Renderer,

    /// Stop after this many seconds of wall time (fractions allowed), print the CPU state and
    /// the last instructions, and exit with status 124
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, allow_negative_numbers = true)]
    pub timeout: Option<Duration>,

    /// Run on a deterministic virtual clock (the headless default; needs the interpreter)
    #[arg(long, conflicts_with = "realtime")]
    pub deterministic: bool,

    /// Run the interpreter on the host's real-time clock instead (guest time is wall time, as
    /// under KVM): timing loops take as long as on hardware, runs are not reproducible
    #[arg(long)]
    pub realtime: bool,

    /// Exit instead of rebooting when the guest resets the machine or triple-faults
    #[arg(long)]
    pub no_reboot: bool,

    /// Write a PNG of the screen to PATH about once a second while the guest runs, and at
    /// exit (replaced atomically)
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,

    /// Write the text of the screen to PATH about once a second and at exit (replaced
    /// atomically): one line per row in text modes, a line naming the mode otherwise
    #[arg(long, value_name = "PATH")]
    pub screen_text: Option<PathBuf>,

    /// End with status 0 as soon as the serial output (COM1) matches REGEX; may be given
    /// several times (with --expect-screen too): all must match. A guest that ends first
    /// gives status 123; --timeout reports what was last seen
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub expect_serial: Vec<regex::Regex>,

    /// End with status 0 as soon as the text of the screen (as --screen-text writes it)
    /// matches REGEX; may be given several times: all must match, each at some moment
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub expect_screen: Vec<regex::Regex>,

    /// Record everything the guest plays (PC speaker, Sound Blaster 16, OPL FM) to a WAV file:
    /// 48 kHz, 16-bit stereo, in virtual time (so a --deterministic run records the same file
    /// every time), whatever the display
    #[arg(long, value_name = "FILE.wav")]
    pub audio_out: Option<PathBuf>,

    /// Play the guest's sound on the host's sound card (`host`) or not (`none`); the default is
    /// `host` with a window and `none` headless. Without a sound card Ferrite runs silently
    #[arg(long, value_enum, value_name = "host|none")]
    pub audio: Option<Audio>,

    /// Number of processors, 1 to 64
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_smp)]
    pub smp: u32,

    #[command(flatten)]
    pub drives: crate::drives::DriveArgs,

    #[command(subcommand)]
    pub command: Option<crate::img::Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Audio {
    Host,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Display {
    Window,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scaling {
    Integer,
    Fit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Aspect {
    Auto,
    Square,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Renderer {
    Auto,
    Vulkan,
    Gl,
    X11,
    Soft,
}

/// The host end of a character device, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CharSpec {
    Stdio,
    File(PathBuf),
    None,
}

impl std::fmt::Display for CharSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CharSpec::Stdio => write!(f, "stdio"),
            CharSpec::File(p) => write!(f, "file:{}", p.display()),
            CharSpec::None => write!(f, "none"),
        }
    }
}

fn parse_accel(s: &str) -> Result<AccelChoice, String> {
    s.parse()
}

pub fn parse_char_spec(s: &str) -> Result<CharSpec, String> {
    match s {
        "stdio" => Ok(CharSpec::Stdio),
        "none" => Ok(CharSpec::None),
        _ => match s.strip_prefix("file:") {
            Some("") => Err("file: needs a path, as in file:serial.log".into()),
            Some(path) => Ok(CharSpec::File(PathBuf::from(path))),
            None => Err("expected stdio, file:PATH or none".into()),
        },
    }
}

/// A size as QEMU's `-m` takes it: `512K`, `64M`, `1G`, `1T`, `64` (MiB), optionally with
/// `B` or `iB` after the unit letter; `4096B` is bytes.
pub fn parse_memory_size(s: &str) -> Result<u64, String> {
    const FORM: &str = "expected a whole number with an optional K, M, G or T suffix, as in 512M or 1G";
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return Err(FORM.into());
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(FORM.into()),
    };
    let range = "guest memory must be from 1M to 1T";
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s} is too large: {range}"))?;
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
        return Err(format!("{s} is {bytes} bytes: {range}"));
    }
    Ok(bytes)
}

/// Splits an `--initrd` list at single commas (`,,` stands for a comma): each entry is a
/// file name, optionally followed by a space and the rest of a multiboot module's string.
pub fn split_initrd_list(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                out.last_mut().expect("never empty").push(',');
            }
            ',' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

pub fn parse_smp(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err("expected a number of processors from 1 to 64".into()),
    }
}

pub fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    // The multi-line flag lets ^ and $ match at line ends, as a script expects of a log.
    regex::RegexBuilder::new(s).multi_line(true).build().map_err(|e| e.to_string())
}

pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| "expected a number of seconds, as in 10 or 0.5".to_string())?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err("the timeout must be a positive number of seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "the timeout is too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("64"), Ok(64 << 20));
        assert_eq!(parse_memory_size("64M"), Ok(64 << 20));
        assert_eq!(parse_memory_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_memory_size("1G"), Ok(1 << 30));
        assert_eq!(parse_memory_size("1024K"), Ok(1 << 20));
        assert_eq!(parse_memory_size("1T"), Ok(1 << 40));
        assert_eq!(parse_memory_size("2097152B"), Ok(2 << 20));
        for bad in ["", "M", "12X", "1.5G", "-1", " 64", "64 M"] {
            assert!(parse_memory_size(bad).unwrap_err().contains("expected"), "{bad:?}");
        }
        for out in ["512K", "0", "2T", "99999999999999999999", "9999999999999G"] {
            assert!(parse_memory_size(out).unwrap_err().contains("from 1M to 1T"), "{out:?}");
        }
    }

    #[test]
    fn char_specs() {
        assert_eq!(parse_char_spec("stdio"), Ok(CharSpec::Stdio));
        assert_eq!(parse_char_spec("none"), Ok(CharSpec::None));
        assert_eq!(parse_char_spec("file:a/b.log"), Ok(CharSpec::File("a/b.log".into())));
        assert!(parse_char_spec("file:").is_err());
        assert!(parse_char_spec("tcp:1234").is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("10"), Ok(Duration::from_secs(10)));
        for bad in ["0", "-1", "nan", "inf", "ten", "1e30"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn initrd_lists() {
        assert_eq!(split_initrd_list("a"), ["a"]);
        assert_eq!(split_initrd_list("a,b c,d"), ["a", "b c", "d"]);
        assert_eq!(split_initrd_list("a,,b,c"), ["a,b", "c"]);
        assert_eq!(split_initrd_list(""), [""]);
    }

    #[test]
    fn kernel_options_need_a_kernel() {
        assert!(Args::try_parse_from(["ferrite", "--initrd", "x"]).is_err());
        assert!(Args::try_parse_from(["ferrite", "--append", "x"]).is_err());
        assert!(Args::try_parse_from(["ferrite", "--kernel", "k", "--bios", "b"]).is_err());
        let a = Args::try_parse_from(["ferrite", "--kernel", "k", "--append", "-v quiet", "--initrd", "i"]).unwrap();
        assert_eq!(a.append.as_deref(), Some("-v quiet"));
    }

    #[test]
    fn processor_counts() {
        assert_eq!(parse_smp("1"), Ok(1));
        assert_eq!(parse_smp("64"), Ok(64));
        for bad in ["0", "65", "-1", "two", ""] {
            assert!(parse_smp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults() {
        let a = Args::parse_from(["ferrite"]);
        assert_eq!(a.accel, AccelChoice::Auto);
        assert_eq!(a.memory, 128 << 20);
        assert_eq!(a.serial, CharSpec::Stdio);
        assert_eq!(a.debugcon, CharSpec::None);
        assert_eq!(a.display, Display::None);
        assert!(a.bios.is_none() && a.timeout.is_none() && !a.deterministic && !a.no_reboot);
        assert!(a.screenshot.is_none() && a.screen_text.is_none());
        assert!(a.audio.is_none() && a.audio_out.is_none());
        let a = Args::parse_from(["ferrite", "--audio", "none", "--audio-out", "x.wav"]);
        assert_eq!(a.audio, Some(Audio::None));
        assert_eq!(a.audio_out.as_deref(), Some(std::path::Path::new("x.wav")));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
