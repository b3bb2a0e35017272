//! `ferrite`: the command line's edge. Parses the options, sets up logging, and turns the
//! session's result into the exit status (see `session::status` and README.md).

mod audio;
mod cli;
mod demo;
mod drives;
mod expect;
mod img;
mod screen;
mod session;
mod window;

use clap::Parser;
use session::{status, Session};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    init_logging();
    if let Some(cmd) = &args.command {
        return img::run(cmd);
    }
    if args.display == cli::Display::Window {
        return ExitCode::from(window::run(&args));
    }
    let session = match Session::prepare(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferrite: {e:#}");
            return ExitCode::from(status::USAGE);
        }
    };
    match session.run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ferrite: {e:#}");
            ExitCode::from(status::INTERNAL)
        }
    }
}

/// Log lines go to standard error, filtered by RUST_LOG (default: warnings and errors; only
/// errors from the window system and graphics libraries, whose warnings are about the host's
/// setup and not for the user to act on).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,winit=error,wgpu_core=error,wgpu_hal=error,naga=error,sctk=error")
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
