//! What the `ferrite` binary's tests share: running it as a user does, and describing a run
//! for an assertion message. (Each test file is its own crate; not all use every item.)
#![allow(dead_code)]

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
