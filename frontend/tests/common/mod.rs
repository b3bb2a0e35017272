//! What the `ferrite` binary's tests share: running it as a user does, and describing a run
//! for an assertion message. (Each test file is its own crate; not all use every item.)
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `ferrite` with `args` to its end, without RUST_LOG and with no standard input (as
/// `Command::output` gives), capturing both output streams.
pub fn ferrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite")).args(args).env_remove("RUST_LOG").output().expect("run ferrite")
}

/// A run's status and output, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A PNG as `--screenshot` writes it: size, colour type and pixel bytes.
pub struct Png {
    pub width: u32,
    pub height: u32,
    pub color_type: png::ColorType,
    pub pixels: Vec<u8>,
}

/// Reads the PNG at `path` (a test failure if it is missing or not a PNG).
pub fn read_png(path: &Path) -> Png {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG of a sane size")];
    let info = reader.next_frame(&mut pixels).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pixels.truncate(info.buffer_size());
    Png { width: info.width, height: info.height, color_type: info.color_type, pixels }
}
