//! The run loop: one virtual PC, one backend, and the policy between them. The backend runs
//! until the nearest device deadline (never ticking every device after every instruction);
//! the loop then runs the due timers, handles the machine's events (exit, reset, power off)
//! and decides what a halted CPU waits for.

use crate::{AccelError, Backend, Exit};
use cpu::CpuState;
use machine::{Machine, MachineEvent};
use std::time::{Duration, Instant};

/// The longest stretch of virtual time the backend runs before the loop looks at the wall
/// clock (timeouts) and the watcher (screenshots, expected output).
const MAX_SLICE_NS: u64 = 10_000_000;
/// How often the watcher of [`Vm::run`]'s callers is called by default, in wall time.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, Default)]
pub struct RunLimits {
    /// Wall-clock limit for the whole run.
    pub timeout: Option<Duration>,
    /// A reset (triple fault, keyboard-controller reset) ends the run instead of rebooting.
    pub no_reboot: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest wrote this status to the exit device.
    Exit(u8),
    /// The guest powered the machine off.
    PowerOff,
    /// `--timeout` ran out.
    Timeout,
    /// The guest asked for a reset under `--no-reboot`; says how.
    Reset(String),
    /// The CPU shut down (triple fault) under `--no-reboot`; says why.
    TripleFault(String),
    /// The CPU is halted and nothing can ever wake it (interrupts disabled, or no interrupt
    /// source left); says which.
    Stuck(String),
    /// The watcher asked to stop, with this status.
    Stopped(i32),
}

/// What the watcher tells the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    Continue,
    Stop(i32),
    /// Reset the machine (as the reset button does) and go on.
    Reset,
}

/// How the run is going, for the watcher (a window's title shows the speed).
#[derive(Clone, Copy, Debug)]
pub struct RunStats {
    /// When the run started.
    pub started: Instant,
    /// Instructions the backend retired so far, where it counts them (the interpreter).
    pub instructions: Option<u64>,
    /// Wall time spent waiting with the CPU halted.
    pub idle: Duration,
}

pub struct Vm {
    pub machine: Machine,
    pub backend: Box<dyn Backend>,
    /// The CPU state a reset returns to.
    pub reset_state: CpuState,
}

impl Vm {
    pub fn new(machine: Machine, mut backend: Box<dyn Backend>, reset_state: CpuState) -> Result<Vm, AccelError> {
        backend.set_state(&reset_state)?;
        Ok(Vm { machine, backend, reset_state })
    }

    fn reset(&mut self) -> Result<(), AccelError> {
        tracing::info!("machine reset");
        self.machine.reset();
        let s = self.reset_state.clone();
        self.backend.set_state(&s)
    }

    /// Runs until the guest exits, powers off, gets stuck, or a limit is reached.
    pub fn run(&mut self, limits: &RunLimits) -> Result<RunOutcome, AccelError> {
        self.run_watched(limits, WATCH_INTERVAL, &mut |_, _| Watch::Continue)
    }

    /// As [`Vm::run`], calling `watch` about every `interval` of wall time (as often as the
    /// loop comes round, which is at least every 10 ms of virtual time).
    pub fn run_watched(
        &mut self,
        limits: &RunLimits,
        interval: Duration,
        watch: &mut dyn FnMut(&mut Machine, &RunStats) -> Watch,
    ) -> Result<RunOutcome, AccelError> {
        let start = Instant::now();
        let mut last_watch = start;
        let mut stats = RunStats { started: start, instructions: None, idle: Duration::ZERO };
        loop {
            for e in self.machine.take_events() {
                match e {
                    MachineEvent::Exit(code) => return Ok(RunOutcome::Exit(code)),
                    MachineEvent::PowerOff => return Ok(RunOutcome::PowerOff),
                    MachineEvent::Reset if limits.no_reboot => {
                        return Ok(RunOutcome::Reset("the guest reset the machine".into()))
                    }
                    MachineEvent::Reset => self.reset()?,
                    MachineEvent::A20(_) | MachineEvent::Pam { .. } | MachineEvent::LegacyReplacement(_) => {}
                    MachineEvent::Init { cpu } | MachineEvent::Startup { cpu, .. } => {
                        tracing::debug!("INIT/SIPI for processor {cpu}: one processor only until SMP lands");
                    }
                }
            }
            let wall = Instant::now();
            if limits.timeout.is_some_and(|t| wall.duration_since(start) >= t) {
                return Ok(RunOutcome::Timeout);
            }
            if wall.duration_since(last_watch) >= interval {
                last_watch = wall;
                stats.instructions = self.backend.instructions_retired();
                match watch(&mut self.machine, &stats) {
                    Watch::Continue => {}
                    Watch::Stop(code) => return Ok(RunOutcome::Stopped(code)),
                    Watch::Reset => {
                        self.reset()?;
                        continue;
                    }
                }
            }
            self.machine.run_timers();
            if self.machine.take_attention() {
                continue;
            }
            let now = self.machine.now();
            let until = self.machine.next_deadline().unwrap_or(u64::MAX).min(now + MAX_SLICE_NS);
            match self.backend.run(&mut self.machine, until)? {
                Exit::Deadline | Exit::Attention => {}
                Exit::Shutdown(why) if limits.no_reboot => return Ok(RunOutcome::TripleFault(why)),
                Exit::Shutdown(why) => {
                    tracing::warn!("CPU shutdown ({why}); resetting");
                    self.reset()?;
                }
                Exit::Halted => {
                    if let Some(outcome) = self.wait_halted(&mut stats.idle) {
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    /// The CPU is halted: move time on to the next event, or say that none can come.
    fn wait_halted(&mut self, idle: &mut Duration) -> Option<RunOutcome> {
        let enabled = self.backend.interrupts_enabled();
        if enabled && self.machine.intr_pending() {
            return None;
        }
        if !enabled {
            return Some(RunOutcome::Stuck("the CPU halted with interrupts disabled".into()));
        }
        let Some(next) = self.machine.next_deadline() else {
            return Some(RunOutcome::Stuck("the CPU halted and no device has anything scheduled".into()));
        };
        let now = self.machine.now();
        if next > now {
            if self.machine.clock().is_deterministic() {
                self.machine.clock_mut().advance_to(next);
            } else {
                let wait = Duration::from_nanos((next - now).min(MAX_SLICE_NS));
                let slept = Instant::now();
                std::thread::sleep(wait);
                *idle += slept.elapsed();
            }
        }
        None
    }

    /// The CPU state and the last instructions, for reports on timeout or shutdown.
    pub fn report(&mut self) -> String {
        let mut out = String::new();
        out += &format!("backend: {}\n", self.backend.name());
        out += &self.backend.state().report();
        let recent = self.backend.recent_instructions(&self.machine);
        if !recent.is_empty() {
            out += "last instructions executed (oldest first):\n";
            for line in recent {
                out += "  ";
                out += &line;
                out += "\n";
            }
        }
        out
    }
}
