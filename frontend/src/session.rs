//! One run of Ferrite: the checks that need the host (files, KVM) and the machine build, all
//! before the guest starts ([`Session::prepare`]), then the run and how its ending becomes
//! the exit status ([`Session::run`]).

use crate::cli::{Args, Audio, CharSpec, Display};
use crate::expect::Expectations;
use crate::screen::ScreenOutputs;
use accel::interp::Interp;
use accel::select::{choose_backend, probe_host};
use accel::vm::{Watch, WATCH_INTERVAL};
use accel::{AccelChoice, AccelError, AccelKind, Backend, RunLimits, RunOutcome, RunStats, Vm};
use anyhow::{anyhow, bail, Context, Result};
use cpu::CpuState;
use machine::host::{CharBackend, FileChar, NullChar, StdioChar, TeeChar};
use machine::firmware::boot::{BootFile, BootFiles, BootModule, DirectBoot};
use machine::memory::MemoryError;
use machine::{Clock, ClockMode, Machine, MachineConfig, MachineError};
use std::path::Path;
use std::time::Duration;

/// Reads a VGA option ROM: it must look like one (the 0x55 0xAA signature) and fit a 1 MiB
/// expansion ROM BAR.
fn read_vga_rom(path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| format!("--vga-rom {}", path.display()))?;
    if data.len() < 3 || data[0] != 0x55 || data[1] != 0xAA {
        bail!("--vga-rom {}: not an option ROM (it does not start with the 55 AA signature)", path.display());
    }
    if data.len() > 1 << 20 {
        bail!("--vga-rom {}: the image is {} bytes; at most 1 MiB fits the VGA's ROM", path.display(), data.len());
    }
    Ok(data)
}

/// Exit statuses that Ferrite gives of its own accord; any other is the guest's.
pub mod status {
    /// Bad options or files: nothing ran.
    pub const USAGE: u8 = 2;
    /// The CPU halted with nothing left that could wake it.
    pub const STUCK: u8 = 121;
    /// The CPU shut down (triple fault) under `--no-reboot`.
    pub const TRIPLE_FAULT: u8 = 122;
    /// The guest ended before every `--expect-serial`/`--expect-screen` matched.
    pub const EXPECT_UNMET: u8 = 123;
    /// `--timeout` ran out.
    pub const TIMEOUT: u8 = 124;
    /// Ferrite itself failed while the guest ran (a KVM error, say).
    pub const INTERNAL: u8 = 125;
}

pub struct Session {
    vm: Vm,
    limits: RunLimits,
    /// --screenshot and --screen-text.
    screen: ScreenOutputs,
    /// --expect-serial and --expect-screen.
    expect: Expectations,
    /// The host's sound card while it plays (--audio host).
    _host_audio: Option<crate::audio::HostAudio>,
    /// When `prepare` began (as good as process start), for the startup time.
    started: std::time::Instant,
}

impl Session {
    /// Everything short of running the guest. An error here means bad options, files or host
    /// support, and its message names the option.
    pub fn prepare(args: &Args) -> Result<Session> {
        let started = std::time::Instant::now();
        if args.deterministic && args.accel == AccelChoice::Kvm {
            bail!("--deterministic cannot be used with --accel kvm: under KVM the guest's time is always real time");
        }
        let boot_files = match &args.kernel {
            Some(kernel) => Some(read_boot_files(kernel, args.initrd.as_deref(), args.append.as_deref())?),
            None => None,
        };
        let bios = match (&args.bios, &boot_files) {
            (Some(path), _) => read_bios(path)?,
            // Direct boot: no BIOS runs; the ROM holds what a BIOS leaves for the kernel.
            (None, Some(_)) => machine::firmware::stub_rom::image(),
            (None, None) => roms::DEFAULT.to_vec(),
        };
        let vga_rom = match &args.vga_rom {
            Some(path) => Some(read_vga_rom(path)?),
            None => None,
        };
        let mut drives = crate::drives::Drives::open(&args.drives)?;
        let demo = crate::demo::wanted(args);
        if demo {
            drives.floppy[0] = Some(crate::demo::floppy());
            drives.boot_order = Some("a".into());
        }
        let expect = Expectations::new(&args.expect_serial, &args.expect_screen);
        let mut serial = char_backend("--serial", &args.serial, true)?;
        if expect.wants_serial() {
            serial = Box::new(TeeChar(vec![serial, Box::new(expect.serial_tap())]));
        }
        let debugcon = char_backend("--debugcon", &args.debugcon, false)?;

        let (kind, why) = if args.deterministic && args.accel == AccelChoice::Auto {
            (AccelKind::Interp, "interpreter (--deterministic needs it)".to_string())
        } else {
            choose_backend(args.accel, &probe_host()).map_err(|e| anyhow!(e))?
        };
        // Headless runs are deterministic unless KVM runs them or --realtime asks; the window
        // runs in real time (a person is watching) unless --deterministic asks otherwise.
        let deterministic = args.deterministic || (args.display == Display::None && !args.realtime);
        let clock_for = |kind| match kind {
            AccelKind::Kvm => ClockMode::RealTime,
            AccelKind::Interp if deterministic => ClockMode::Deterministic,
            AccelKind::Interp => ClockMode::RealTime,
        };
        let mut machine = Machine::new(MachineConfig {
            ram_size: args.memory,
            bios,
            clock: clock_for(kind),
            serial,
            debugcon,
            ide: drives.ide,
            floppy: drives.floppy,
            boot_order: drives.boot_order.unwrap_or_else(|| MachineConfig::default().boot_order),
            cpus: args.smp,
            vga_rom,
            fw_cfg_files: crate::demo::fw_cfg_files(args),
            ..MachineConfig::default()
        })
        .map_err(|e| machine_error(args, e))?;
        // Direct boot, before the backend maps memory: the kernel is checked, then loaded into
        // a machine left as a BIOS leaves it.
        let reset_state = match boot_files {
            Some(files) => {
                let kernel_name = files.kernel.name.clone();
                let boot = DirectBoot::new(files, machine.platform()).map_err(|e| {
                    let option = if e.file == kernel_name { "--kernel" } else { "--initrd" };
                    anyhow!("{option} {e}")
                })?;
                tracing::info!("direct boot: {}", boot.describe());
                accel::boot::entry_cpu_state(&machine.set_direct_boot(boot))
            }
            None => CpuState::default(),
        };

        let (backend, kind, why, mut machine) = match kind {
            AccelKind::Interp => (Box::new(Interp::new()) as Box<dyn Backend>, kind, why, machine),
            AccelKind::Kvm => match kvm_backend(&machine) {
                Ok(b) => (b, kind, why, machine),
                Err(e) if args.accel == AccelChoice::Kvm => bail!("--accel kvm: {e}"),
                Err(e) => {
                    let why = format!("interpreter (KVM was chosen but failed to start: {e})");
                    (Box::new(Interp::new()) as Box<dyn Backend>, AccelKind::Interp, why, machine)
                }
            },
        };
        if machine.clock().mode() != clock_for(kind) {
            // Nothing has run yet: the fallback to the interpreter gets its own clock.
            *machine.clock_mut() = Clock::new(clock_for(kind));
        }
        let clock = match machine.clock().mode() {
            ClockMode::Deterministic => "deterministic clock",
            ClockMode::RealTime => "real-time clock",
        };
        eprintln!("ferrite: accelerator: {why}; {clock}");
        if demo {
            eprintln!("ferrite: no drive, --boot, --bios or --kernel given: booting the built-in demo (ferrite --help lists the options)");
        }

        // Sound: the WAV file is created now, so a bad path is an error before the guest runs.
        if let Some(path) = &args.audio_out {
            machine.add_audio_sink(Box::new(crate::audio::WavSink::create(path)?));
        }
        let play = args.audio.unwrap_or(match args.display {
            Display::Window => Audio::Host,
            Display::None => Audio::None,
        });
        let host_audio = match play {
            Audio::Host => crate::audio::open_host().map(|(host, sink)| {
                machine.add_audio_sink(sink);
                host
            }),
            Audio::None => None,
        };

        let mut vm = Vm::new(machine, backend, reset_state).context("cannot start the CPU")?;
        // The first write shows the power-on screen and finds unusable paths before the run.
        let mut screen = ScreenOutputs::new(args.screenshot.clone(), args.screen_text.clone());
        screen.refresh(&mut vm.machine)?;
        Ok(Session {
            vm,
            limits: RunLimits { timeout: args.timeout, no_reboot: args.no_reboot },
            screen,
            expect,
            _host_audio: host_audio,
            started,
        })
    }

    /// The machine, for a front end to take its handles (keyboard and mouse input) before
    /// the run.
    pub fn machine(&mut self) -> &mut Machine {
        &mut self.vm.machine
    }

    /// The CPU backend's name ("interp" or "kvm").
    pub fn backend_name(&self) -> &'static str {
        self.vm.backend.name()
    }

    /// Pauses, resumes or stops the guest from another thread (the window's hotkeys).
    pub fn control(&self) -> accel::VmControl {
        self.vm.control()
    }

    /// Runs the guest headless to its end and returns the exit status. An error is Ferrite's
    /// own failure while running (its state is reported first).
    pub fn run(self) -> Result<u8> {
        self.run_with(WATCH_INTERVAL, &mut |_, _| Watch::Continue)
    }

    /// As [`Session::run`], with a front end beside the run (the window): `frontend` is
    /// called about every `interval` of wall time on the emulation thread, after the checks
    /// of the screen, and may stop or reset the machine. At the end, however it comes, the
    /// disk images are flushed.
    pub fn run_with(
        mut self,
        interval: Duration,
        frontend: &mut dyn FnMut(&mut Machine, &RunStats) -> Watch,
    ) -> Result<u8> {
        tracing::info!(
            "startup: {:.1} ms from process start to the first guest instruction",
            self.started.elapsed().as_secs_f64() * 1000.0
        );
        let screen = &mut self.screen;
        let expect = &mut self.expect;
        let mut all_matched = false;
        // The watcher runs about every `interval` of wall time: the screen files, the
        // expectations, then the front end.
        let mut watch = |m: &mut Machine, stats: &RunStats| {
            screen.poll(m);
            if expect.check(m) {
                all_matched = true;
                return Watch::Stop(0);
            }
            frontend(m, stats)
        };
        let run_started = std::time::Instant::now();
        let result = self.vm.run_watched(&self.limits, interval, &mut watch);
        self.vm.machine.flush_media();
        if let Some(n) = self.vm.backend.instructions_retired() {
            let secs = run_started.elapsed().as_secs_f64();
            tracing::info!(
                "{:.1} M guest instructions in {secs:.2} s ({:.0} M a second of wall time, halted time included)",
                n as f64 / 1e6,
                n as f64 / secs.max(1e-9) / 1e6
            );
        }
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                eprint!("{}", self.vm.report());
                let _ = self.screen.refresh(&mut self.vm.machine);
                let _ = self.vm.machine.finish_audio();
                return Err(anyhow!(e).context("the run stopped"));
            }
        };
        if all_matched {
            eprintln!("ferrite: every --expect-serial/--expect-screen matched; stopping the guest");
            if let Err(e) = self.screen.refresh(&mut self.vm.machine) {
                eprintln!("ferrite: {e:#}");
                return Ok(status::INTERNAL);
            }
            return Ok(self.finish_audio().unwrap_or(0));
        }
        // The guest ended on its own first: a last look, since it may have written its last
        // words since the watcher's.
        let unmet = !self.expect.is_empty() && !self.expect.check(&mut self.vm.machine);
        if unmet && !matches!(outcome, RunOutcome::Timeout) {
            eprintln!("ferrite: the guest ended before every --expect matched:\n{}", self.expect.report());
        }
        let code = match outcome {
            RunOutcome::Exit(code) => code,
            RunOutcome::PowerOff => 0,
            RunOutcome::Stopped(code) => code.clamp(0, 255) as u8,
            RunOutcome::Reset(why) => {
                eprintln!("ferrite: {why}; exiting instead of rebooting (--no-reboot)");
                0
            }
            RunOutcome::Timeout => {
                let secs = self.limits.timeout.map_or(0.0, |t| t.as_secs_f64());
                eprintln!("ferrite: timeout: the guest was still running after {secs} s (--timeout); its state:");
                eprint!("{}", self.vm.report());
                if !self.expect.is_empty() {
                    eprint!("ferrite: the expectations at the timeout:\n{}", self.expect.report());
                }
                status::TIMEOUT
            }
            RunOutcome::TripleFault(why) => {
                eprintln!("ferrite: triple fault ({why}); exiting instead of rebooting (--no-reboot); the CPU's state:");
                eprint!("{}", self.vm.report());
                status::TRIPLE_FAULT
            }
            RunOutcome::Stuck(why) => {
                eprintln!("ferrite: the guest is stuck: {why}; the CPU's state:");
                eprint!("{}", self.vm.report());
                status::STUCK
            }
        };
        // The screen as the guest left it, and the sound up to its end.
        if let Err(e) = self.screen.refresh(&mut self.vm.machine) {
            eprintln!("ferrite: {e:#}");
            return Ok(status::INTERNAL);
        }
        if let Some(failed) = self.finish_audio() {
            return Ok(failed);
        }
        if unmet && code != status::TIMEOUT {
            return Ok(status::EXPECT_UNMET);
        }
        Ok(code)
    }
}

impl Session {
    /// Ends the sound at the guest's end (the WAV file's header written); a failure is
    /// reported and gives the status to exit with.
    fn finish_audio(&mut self) -> Option<u8> {
        let audio_errors = self.vm.machine.finish_audio();
        for e in &audio_errors {
            eprintln!("ferrite: {e}");
        }
        (!audio_errors.is_empty()).then_some(status::INTERNAL)
    }
}

/// Reads a BIOS image and checks its size as the machine will (a multiple of 64 KiB, from
/// 64 KiB to 16 MiB), so the error names the file.
fn read_bios(path: &Path) -> Result<Vec<u8>> {
    let image = std::fs::read(path).map_err(|e| anyhow!("--bios {}: {}", path.display(), io_message(&e)))?;
    let len = image.len();
    if len == 0 || len % (64 * 1024) != 0 || len > 16 << 20 {
        bail!(
            "--bios {}: the image is {len} bytes; it must be a multiple of 64 KiB, from 64 KiB to 16 MiB",
            path.display()
        );
    }
    Ok(image)
}

/// Reads the files of a direct boot; an error names the option and the file.
fn read_boot_files(kernel: &Path, initrd: Option<&str>, append: Option<&str>) -> Result<BootFiles> {
    let read = |option: &str, path: &Path| {
        std::fs::read(path).map_err(|e| anyhow!("{option} {}: {}", path.display(), io_message(&e)))
    };
    let name = kernel.display().to_string();
    let kernel = BootFile { data: read("--kernel", kernel)?, name };
    let mut modules = Vec::new();
    for entry in initrd.map(crate::cli::split_initrd_list).unwrap_or_default() {
        let path = entry.split(' ').next().unwrap_or_default();
        if path.is_empty() {
            bail!("--initrd: an empty file name in the list");
        }
        let data = read("--initrd", Path::new(path))?;
        modules.push(BootModule { file: BootFile { name: path.to_string(), data }, string: entry.clone() });
    }
    Ok(BootFiles { kernel, modules, cmdline: append.unwrap_or_default().to_string() })
}

fn char_backend(option: &str, spec: &CharSpec, with_input: bool) -> Result<Box<dyn CharBackend>> {
    Ok(match spec {
        CharSpec::Stdio => Box::new(StdioChar::new(with_input)),
        CharSpec::None => Box::new(NullChar),
        CharSpec::File(path) => Box::new(
            FileChar::create(path).map_err(|e| anyhow!("{option} file:{}: {}", path.display(), io_message(&e)))?,
        ),
    })
}

fn machine_error(args: &Args, e: MachineError) -> anyhow::Error {
    match e {
        MachineError::Memory(MemoryError::Alloc(why)) => {
            anyhow!("-m/--memory {} MiB: cannot allocate guest memory: {why}", args.memory >> 20)
        }
        MachineError::Memory(m @ (MemoryError::TooSmall(_) | MemoryError::TooLarge(_))) => anyhow!("-m/--memory: {m}"),
        other => anyhow!("cannot build the machine: {other}"),
    }
}

/// An I/O error as the system says it, without Rust's " (os error N)".
fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn kvm_backend(machine: &Machine) -> Result<Box<dyn Backend>, AccelError> {
    Ok(Box::new(accel::kvm::Kvm::new(machine)?))
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn kvm_backend(_machine: &Machine) -> Result<Box<dyn Backend>, AccelError> {
    Err(AccelError::KvmUnavailable("KVM exists only on Linux x86-64 hosts".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_drop_the_os_error_number() {
        let e = std::fs::read("/nonexistent/ferrite/x.bin").unwrap_err();
        assert_eq!(io_message(&e), "No such file or directory");
    }

    #[test]
    fn bios_sizes_are_checked_with_the_file_name() {
        let dir = std::env::temp_dir().join(format!("ferrite-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.bin");
        std::fs::write(&small, [0u8; 1000]).unwrap();
        let e = read_bios(&small).unwrap_err().to_string();
        assert!(e.starts_with("--bios ") && e.contains("small.bin: the image is 1000 bytes"), "{e}");
        let good = dir.join("good.bin");
        std::fs::write(&good, roms::HELLO).unwrap();
        assert_eq!(read_bios(&good).unwrap(), roms::HELLO);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
