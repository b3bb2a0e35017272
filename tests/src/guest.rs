//! Booting guests from drives with Ferrite's own BIOS, in-process: a machine with disk,
//! CD-ROM and floppy images attached (opened as snapshots, so the images never change), its
//! serial port and debug console captured.

use crate::{BackendKind, RomRun, RunError};
use accel::{Backend, RunLimits, Vm};
use cpu::CpuState;
use machine::block::{self, OpenOptions};
use machine::host::CaptureChar;
use machine::{ClockMode, Drive, Machine, MachineConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a guest boot is given.
#[derive(Clone, Debug)]
pub struct GuestSetup {
    pub backend: BackendKind,
    pub hda: Option<PathBuf>,
    pub cdrom: Option<PathBuf>,
    pub fda: Option<PathBuf>,
    /// `--boot` letters.
    pub boot: String,
    pub ram_size: u64,
    pub timeout: Duration,
}

impl GuestSetup {
    pub fn new(backend: BackendKind) -> GuestSetup {
        GuestSetup { backend, hda: None, cdrom: None, fda: None, boot: "cda".into(), ram_size: 256 << 20, timeout: Duration::from_secs(600) }
    }
}

fn open(path: &Path, cdrom: bool) -> Result<Box<dyn block::BlockDevice>, RunError> {
    let opts = OpenOptions { read_only: cdrom, snapshot: !cdrom, locking: false, ..OpenOptions::default() };
    block::open(path, &opts).map_err(|e| RunError::Machine(format!("{}: {e}", path.display())))
}

/// Boots the drives with `roms::BIOS` until the guest exits, powers off, gets stuck or the
/// timeout passes (a reset ends the run).
pub fn run_guest(s: &GuestSetup) -> Result<RomRun, RunError> {
    let serial = CaptureChar::new();
    let debugcon = CaptureChar::new();
    let mut ide = [None, None, None, None];
    if let Some(p) = &s.hda {
        ide[0] = Some(Drive { media: open(p, false)?, cdrom: false });
    }
    if let Some(p) = &s.cdrom {
        ide[2] = Some(Drive { media: open(p, true)?, cdrom: true });
    }
    let floppy = [s.fda.as_deref().map(|p| open(p, false)).transpose()?, None];
    let machine = Machine::new(MachineConfig {
        ram_size: s.ram_size,
        bios: roms::BIOS.to_vec(),
        clock: if s.backend == BackendKind::Kvm { ClockMode::RealTime } else { ClockMode::Deterministic },
        serial: Box::new(serial.clone()),
        debugcon: Box::new(debugcon.clone()),
        ide,
        floppy,
        boot_order: s.boot.clone(),
        ..MachineConfig::default()
    })
    .map_err(|e| RunError::Machine(e.to_string()))?;
    let backend: Box<dyn Backend> = match s.backend {
        BackendKind::Interp => Box::new(accel::interp::Interp::new()),
        BackendKind::Kvm => crate::kvm_backend(&machine)?,
    };
    let mut vm = Vm::new(machine, backend, CpuState::default()).map_err(|e| RunError::Unavailable(e.to_string()))?;
    let limits = RunLimits { timeout: Some(s.timeout), no_reboot: true };
    let outcome = vm.run(&limits);
    let report = vm.report();
    let outcome = outcome.map_err(|e| RunError::Backend(e, report.clone()))?;
    let serial = serial.output.lock().unwrap().clone();
    let debugcon = debugcon.output.lock().unwrap().clone();
    Ok(RomRun { backend: s.backend, outcome, serial, debugcon, state: vm.backend.state(0), report })
}
