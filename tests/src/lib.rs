//! Shared helpers for the integration tests: boot a ROM in-process on either backend with its
//! serial port and debug console captured, and compare what two runs left behind.

pub mod diff;
pub mod framebuffer;
pub mod guest;

use accel::{AccelError, Backend, RunLimits, RunOutcome, Vm};
use cpu::CpuState;
use machine::firmware::boot::{BootFiles, DirectBoot};
use machine::host::CaptureChar;
use machine::{ClockMode, Machine, MachineConfig};
use std::time::Duration;

/// Guest RAM for ROM runs: enough for anything a 64 KiB test program touches.
pub const ROM_RAM_SIZE: u64 = 16 << 20;

/// Which backend runs the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Interp,
    Kvm,
}

/// How one run of a ROM ended and what it left behind.
#[derive(Clone, Debug)]
pub struct RomRun {
    pub backend: BackendKind,
    pub outcome: RunOutcome,
    pub serial: Vec<u8>,
    pub debugcon: Vec<u8>,
    pub state: CpuState,
    /// `Vm::report()`: the CPU state and recent instructions, for failure messages.
    pub report: String,
}

impl RomRun {
    pub fn serial_text(&self) -> String {
        String::from_utf8_lossy(&self.serial).into_owned()
    }

    pub fn debugcon_text(&self) -> String {
        String::from_utf8_lossy(&self.debugcon).into_owned()
    }

    /// A description for assertion messages: outcome, output and the report.
    pub fn describe(&self) -> String {
        format!(
            "{:?} run ended {:?}\n--- serial ---\n{}\n--- report ---\n{}",
            self.backend,
            self.outcome,
            self.serial_text(),
            self.report
        )
    }
}

/// Why a run could not be made or did not finish.
#[derive(Debug)]
pub enum RunError {
    /// The backend could not be created (KVM missing or refused).
    Unavailable(String),
    /// The backend failed while running the guest.
    Backend(AccelError, String),
    Machine(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Unavailable(why) => write!(f, "backend unavailable: {why}"),
            RunError::Backend(e, report) => write!(f, "backend failed: {e}\n{report}"),
            RunError::Machine(e) => write!(f, "cannot build the machine: {e}"),
        }
    }
}

/// What one ROM run is given.
#[derive(Clone, Debug)]
pub struct RomSetup<'a> {
    pub image: &'a [u8],
    pub backend: BackendKind,
    /// Ignored under KVM, whose time is always real time.
    pub clock: ClockMode,
    /// Bytes waiting in the serial port's input before the guest starts.
    pub serial_input: &'a [u8],
    pub timeout: Duration,
}

impl<'a> RomSetup<'a> {
    pub fn new(image: &'a [u8], backend: BackendKind) -> RomSetup<'a> {
        RomSetup { image, backend, clock: ClockMode::Deterministic, serial_input: &[], timeout: Duration::from_secs(60) }
    }
}

fn machine_for(setup: &RomSetup, serial: &CaptureChar, debugcon: &CaptureChar) -> Result<Machine, RunError> {
    let clock = match setup.backend {
        BackendKind::Interp => setup.clock,
        BackendKind::Kvm => ClockMode::RealTime,
    };
    Machine::new(MachineConfig {
        ram_size: ROM_RAM_SIZE,
        bios: setup.image.to_vec(),
        clock,
        serial: Box::new(serial.clone()),
        debugcon: Box::new(debugcon.clone()),
        ..MachineConfig::default()
    })
    .map_err(|e| RunError::Machine(e.to_string()))
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) fn kvm_backend(m: &Machine) -> Result<Box<dyn Backend>, RunError> {
    match accel::kvm::Kvm::new(m) {
        Ok(k) => Ok(Box::new(k)),
        Err(e) => Err(RunError::Unavailable(e.to_string())),
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub(crate) fn kvm_backend(_m: &Machine) -> Result<Box<dyn Backend>, RunError> {
    Err(RunError::Unavailable("KVM exists only on Linux x86-64 hosts".into()))
}

/// Boots `setup.image` from the reset vector and runs it until it exits, gets stuck, or the
/// timeout passes (a reset ends the run, as under `--no-reboot`).
pub fn run_rom(setup: &RomSetup) -> Result<RomRun, RunError> {
    run_rom_keeping_output(setup).0
}

/// `run_rom`, also returning what the serial port got when the run fails, so that a run the
/// backend gave up on can still be compared as far as it got.
pub fn run_rom_keeping_output(setup: &RomSetup) -> (Result<RomRun, RunError>, Vec<u8>) {
    let serial = CaptureChar::new();
    serial.push_input(setup.serial_input);
    let debugcon = CaptureChar::new();
    let run = (|| {
        let machine = machine_for(setup, &serial, &debugcon)?;
        let backend: Box<dyn Backend> = match setup.backend {
            BackendKind::Interp => Box::new(accel::interp::Interp::new()),
            BackendKind::Kvm => kvm_backend(&machine)?,
        };
        let mut vm = Vm::new(machine, backend, CpuState::default()).map_err(|e| RunError::Unavailable(e.to_string()))?;
        let limits = RunLimits { timeout: Some(setup.timeout), no_reboot: true };
        let outcome = vm.run(&limits);
        let report = vm.report();
        let outcome = outcome.map_err(|e| RunError::Backend(e, report.clone()))?;
        let serial = serial.output.lock().unwrap().clone();
        let debugcon = debugcon.output.lock().unwrap().clone();
        Ok(RomRun { backend: setup.backend, outcome, serial, debugcon, state: vm.backend.state(0), report })
    })();
    let partial = serial.output.lock().unwrap().clone();
    (run, partial)
}

/// Boots `files` directly (no BIOS runs: `machine::firmware::boot`) with `ram` bytes of RAM
/// on `backend`, the serial port captured, until the guest exits, powers off, gets stuck, or
/// `timeout` passes (a reset ends the run).
pub fn run_kernel(files: BootFiles, ram: u64, backend: BackendKind, timeout: Duration) -> Result<RomRun, RunError> {
    run_kernel_smp(files, ram, 1, backend, timeout)
}

/// As [`run_kernel`], on a machine with `cpus` processors.
pub fn run_kernel_smp(files: BootFiles, ram: u64, cpus: u32, backend: BackendKind, timeout: Duration) -> Result<RomRun, RunError> {
    run_kernel_keeping_output(files, ram, cpus, backend, timeout).0
}

/// As [`run_kernel_smp`], with what the serial port printed whatever the outcome (a backend
/// that failed midway printed something first).
pub fn run_kernel_keeping_output(
    files: BootFiles,
    ram: u64,
    cpus: u32,
    backend: BackendKind,
    timeout: Duration,
) -> (Result<RomRun, RunError>, Vec<u8>) {
    let serial = CaptureChar::new();
    let run = kernel_run(files, ram, cpus, backend, timeout, &serial);
    let partial = serial.output.lock().unwrap().clone();
    (run, partial)
}

fn kernel_run(files: BootFiles, ram: u64, cpus: u32, backend: BackendKind, timeout: Duration, serial: &CaptureChar) -> Result<RomRun, RunError> {
    let serial = serial.clone();
    let clock = match backend {
        BackendKind::Interp => ClockMode::Deterministic,
        BackendKind::Kvm => ClockMode::RealTime,
    };
    let mut machine = Machine::new(MachineConfig {
        ram_size: ram,
        bios: machine::firmware::stub_rom::image(),
        clock,
        serial: Box::new(serial.clone()),
        cpus,
        ..MachineConfig::default()
    })
    .map_err(|e| RunError::Machine(e.to_string()))?;
    let boot = DirectBoot::new(files, machine.platform()).map_err(|e| RunError::Machine(e.to_string()))?;
    let entry = accel::boot::entry_cpu_state(&machine.set_direct_boot(boot));
    let backend_impl: Box<dyn Backend> = match backend {
        BackendKind::Interp => Box::new(accel::interp::Interp::new()),
        BackendKind::Kvm => kvm_backend(&machine)?,
    };
    let mut vm = Vm::new(machine, backend_impl, entry).map_err(|e| RunError::Unavailable(e.to_string()))?;
    let outcome = vm.run(&RunLimits { timeout: Some(timeout), no_reboot: true });
    let report = vm.report();
    let outcome = outcome.map_err(|e| RunError::Backend(e, report.clone()))?;
    let serial = serial.output.lock().unwrap().clone();
    Ok(RomRun { backend, outcome, serial, debugcon: Vec::new(), state: vm.backend.state(0), report })
}

/// Assembles `source` (a path under the `tests` crate) with NASM into a flat binary, with
/// `-D` definitions. `None`, with the reason printed, where NASM is missing.
pub fn nasm(source: &str, defines: &[&str]) -> Option<Vec<u8>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(source);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("ferrite-nasm-{}-{n}.bin", std::process::id()));
    let mut cmd = std::process::Command::new("nasm");
    cmd.args(["-f", "bin", "-Ox"]);
    // Includes are named relative to the source's directory.
    cmd.arg(format!("-I{}/", src.parent().expect("a file in a directory").display()));
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    let run = match cmd.arg("-o").arg(&out).arg(&src).output() {
        Ok(run) => run,
        Err(e) => {
            println!("skipped: {source} needs nasm (apt-get install nasm): {e}");
            return None;
        }
    };
    assert!(run.status.success(), "nasm {source} failed: {}", String::from_utf8_lossy(&run.stderr));
    let image = std::fs::read(&out).expect("nasm wrote its output");
    let _ = std::fs::remove_file(&out);
    Some(image)
}

/// Can KVM run guests here? `Err` says why not. A machine is built and `Kvm::new` tried on it,
/// the same as `run_rom` does.
pub fn kvm_usable() -> Result<(), String> {
    let setup = RomSetup::new(roms::HELLO, BackendKind::Kvm);
    let (serial, debugcon) = (CaptureChar::new(), CaptureChar::new());
    let machine = machine_for(&setup, &serial, &debugcon).map_err(|e| e.to_string())?;
    kvm_backend(&machine).map(|_| ()).map_err(|e| match e {
        RunError::Unavailable(why) => why,
        other => other.to_string(),
    })
}

/// Does the host run KVM guests on hardware virtualization (VMX or SVM)? Without it (a
/// paravirtual KVM such as PVM) real mode goes through the host kernel's instruction emulator,
/// which lacks instructions real hardware has (UD2's #UD, DAA, ENTER with nesting...).
pub fn kvm_has_hardware_virtualization() -> bool {
    accel::select::probe_host().hardware.is_some()
}

/// The parts of `CpuState` that two backends must agree on after the same program:
/// general registers, RIP, RFLAGS, segment selectors and bases. Returns the differences, one
/// per line.
///
/// Left out, and why:
/// - segment limits and attributes: KVM reports the hidden attribute bits its own way
///   (accessed bits, the "unusable" convention), and neither has any effect on real-mode code
///   that never leaves 64 KiB segments;
/// - descriptor tables, control, debug and model-specific registers, TSC: the ROMs never
///   change them, and KVM reports host-dependent values for some (CR0.ET, TSC);
/// - `halted` and pending events: a ROM ends by writing the exit port, not halted;
/// - RFLAGS bits other than the six status flags, TF, IF, DF, IOPL, NT and bit 1: RF, VM, AC,
///   VIF, VIP and ID are never set by real-mode code, and KVM may report RF after an exit.
pub fn state_differences(a: &CpuState, b: &CpuState) -> Vec<String> {
    use cpu::state::{flags, sreg};
    const NAMES: [&str; 16] =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    const COMPARED_FLAGS: u64 = flags::ARITH | flags::FIXED1 | flags::TF | flags::IF | flags::DF | flags::IOPL | flags::NT;
    let mut out = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        if a.gpr[i] != b.gpr[i] {
            out.push(format!("{name}: {:#x} vs {:#x}", a.gpr[i], b.gpr[i]));
        }
    }
    if a.rip != b.rip {
        out.push(format!("rip: {:#x} vs {:#x}", a.rip, b.rip));
    }
    if a.rflags & COMPARED_FLAGS != b.rflags & COMPARED_FLAGS {
        out.push(format!("rflags: {:#x} vs {:#x} (compared bits {COMPARED_FLAGS:#x})", a.rflags, b.rflags));
    }
    for (i, name) in sreg::NAMES.iter().enumerate() {
        if a.seg[i].selector != b.seg[i].selector {
            out.push(format!("{name}: {:#06x} vs {:#06x}", a.seg[i].selector, b.seg[i].selector));
        }
        if a.seg[i].base != b.seg[i].base {
            out.push(format!("{name} base: {:#x} vs {:#x}", a.seg[i].base, b.seg[i].base));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_states_have_no_differences() {
        let a = CpuState::real_mode_at(0xF000, 0x1234);
        assert!(state_differences(&a, &a.clone()).is_empty());
        let mut b = a.clone();
        b.gpr[3] = 7;
        b.rflags |= cpu::state::flags::CF;
        b.seg[cpu::state::sreg::DS].selector = 0x40;
        b.cr0 ^= 1 << 4; // not compared
        let d = state_differences(&a, &b);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("rbx"));
    }
}
