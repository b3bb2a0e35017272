//! The run loop: one virtual PC, one backend, and the policy between them. The backend runs
//! until the nearest device deadline (never ticking every device after every instruction);
//! the loop then runs the due timers, handles the machine's events (exit, reset, power off)
//! and decides what a halted CPU waits for.

use crate::{AccelError, Backend, Exit};
use cpu::CpuState;
use machine::{Machine, MachineEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    /// Wall time spent paused by a [`VmControl`].
    pub paused: Duration,
}

pub struct Vm {
    pub machine: Machine,
    pub backend: Box<dyn Backend>,
    /// The bootstrap processor's state after a reset; the others wait for a STARTUP IPI.
    pub reset_state: CpuState,
    control: VmControl,
}

/// Gets a backend's processors out of the guest at once (see `Backend::watch_interrupts`).
pub type Kick = Arc<dyn Fn() + Send + Sync>;

/// Pauses, resumes, stops and interrupts a running [`Vm`] from any thread (a window, a
/// debugger, a test); cheap to clone. A request reaches the run loop between two backend
/// runs, after every processor has completed its current instruction and any I/O access it
/// was making (KVM is kicked out of KVM_RUN), so nothing the guest does is lost or half done.
#[derive(Clone, Default)]
pub struct VmControl(Arc<Control>);

#[derive(Default)]
struct Control {
    /// Something was asked: the loop looks at once.
    flag: Arc<AtomicBool>,
    state: Mutex<Asked>,
    resumed: Condvar,
    kick: Mutex<Option<Kick>>,
}

#[derive(Default)]
struct Asked {
    paused: bool,
    stop: Option<i32>,
    /// The watcher should be called at the next chance.
    watch: bool,
}

impl VmControl {
    /// Stops the guest where it is, its time standing still, until `resume`.
    pub fn pause(&self) {
        self.ask(|a| a.paused = true);
    }

    pub fn resume(&self) {
        self.ask(|a| a.paused = false);
    }

    pub fn is_paused(&self) -> bool {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner()).paused
    }

    /// Ends the run with `RunOutcome::Stopped(code)` (paused or not).
    pub fn stop(&self, code: i32) {
        self.ask(|a| a.stop = Some(code));
    }

    /// Calls the run's watcher as soon as the processors can be stopped, instead of at its
    /// next interval (a window with a command for it).
    pub fn interrupt(&self) {
        self.ask(|a| a.watch = true);
    }

    fn ask(&self, f: impl FnOnce(&mut Asked)) {
        f(&mut self.0.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.0.flag.store(true, Ordering::Release);
        self.0.resumed.notify_all();
        if let Some(kick) = self.0.kick.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            kick();
        }
    }
}

impl Vm {
    pub fn new(machine: Machine, backend: Box<dyn Backend>, reset_state: CpuState) -> Result<Vm, AccelError> {
        let mut vm = Vm { machine, backend, reset_state, control: VmControl::default() };
        vm.reset_processors()?;
        Ok(vm)
    }

    fn reset(&mut self) -> Result<(), AccelError> {
        tracing::info!("machine reset");
        self.machine.reset();
        self.reset_processors()
    }

    fn reset_processors(&mut self) -> Result<(), AccelError> {
        let s = self.reset_state.clone();
        self.backend.set_state(0, &s)?;
        for cpu in 1..self.machine.cpu_count() {
            self.backend.set_state(cpu, &crate::interp::application_processor())?;
        }
        Ok(())
    }

    /// A handle to pause, resume, stop or interrupt this VM's runs from another thread.
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }

    /// Looks at what the `VmControl` asked: `Some` ends the run; `true` in the second place
    /// asks for the watcher now. A pause waits here until resumed or stopped, with the
    /// guest's time standing still: the machine's clock is set back to where it stopped, and
    /// each processor gets back the state it had (its TSC, and KVM's paravirtual clock with
    /// it, which the backend would otherwise let run on in host time).
    fn requests(&mut self, paused: &mut Duration) -> Result<(Option<RunOutcome>, bool), AccelError> {
        let c = self.control.0.clone();
        if !c.flag.swap(false, Ordering::AcqRel) {
            return Ok((None, false));
        }
        let mut asked = c.state.lock().unwrap_or_else(|e| e.into_inner());
        let watch = std::mem::take(&mut asked.watch);
        if let Some(code) = asked.stop.take() {
            return Ok((Some(RunOutcome::Stopped(code)), watch));
        }
        if !asked.paused {
            return Ok((None, watch));
        }
        drop(asked);
        self.backend.collect_device_writes(&mut self.machine)?;
        let frozen_at = self.machine.now();
        let states: Vec<CpuState> = (0..self.machine.cpu_count()).map(|i| self.backend.state(i)).collect();
        tracing::debug!("paused");
        let since = Instant::now();
        let mut asked = c.state.lock().unwrap_or_else(|e| e.into_inner());
        while asked.paused && asked.stop.is_none() {
            asked = c.resumed.wait(asked).unwrap_or_else(|e| e.into_inner());
        }
        let stop = asked.stop.take();
        let watch = watch || std::mem::take(&mut asked.watch);
        drop(asked);
        *paused += since.elapsed();
        tracing::debug!("resumed");
        self.machine.clock_mut().set(frozen_at);
        for (i, s) in states.iter().enumerate() {
            self.backend.set_state(i, s)?;
        }
        Ok((stop.map(RunOutcome::Stopped), watch))
    }

    /// How many processors the machine has.
    pub fn cpu_count(&self) -> usize {
        self.machine.cpu_count()
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
        let outcome = self.run_loop(limits, interval, watch);
        // However the run ended, the machine's log holds every write to device memory (a
        // last screenshot shows them).
        self.backend.collect_device_writes(&mut self.machine)?;
        outcome
    }

    fn run_loop(
        &mut self,
        limits: &RunLimits,
        interval: Duration,
        watch: &mut dyn FnMut(&mut Machine, &RunStats) -> Watch,
    ) -> Result<RunOutcome, AccelError> {
        let start = Instant::now();
        let mut last_watch = start;
        let mut stats = RunStats { started: start, instructions: None, idle: Duration::ZERO, paused: Duration::ZERO };
        let mut force_watch = false;
        let kick = self.backend.watch_interrupts(self.control.0.flag.clone());
        *self.control.0.kick.lock().unwrap_or_else(|e| e.into_inner()) = kick;
        loop {
            let (end, watch_now) = self.requests(&mut stats.paused)?;
            if let Some(outcome) = end {
                return Ok(outcome);
            }
            force_watch |= watch_now;
            for e in self.machine.take_events() {
                match e {
                    MachineEvent::Exit(code) => return Ok(RunOutcome::Exit(code)),
                    MachineEvent::PowerOff => return Ok(RunOutcome::PowerOff),
                    MachineEvent::Reset if limits.no_reboot => {
                        return Ok(RunOutcome::Reset("the guest reset the machine".into()))
                    }
                    MachineEvent::Reset => self.reset()?,
                    MachineEvent::A20(_) | MachineEvent::Pam { .. } | MachineEvent::LegacyReplacement(_) => {}
                    MachineEvent::Init { cpu } => {
                        tracing::debug!("INIT for processor {cpu}");
                        self.machine.init_cpu(cpu as usize);
                        self.backend.init(cpu as usize)?;
                    }
                    MachineEvent::Startup { cpu, vector } => {
                        tracing::debug!("STARTUP IPI for processor {cpu}, vector {vector:#04x}");
                        self.backend.startup(cpu as usize, vector)?;
                    }
                }
            }
            let wall = Instant::now();
            // The timeout does not count time spent paused.
            if limits.timeout.is_some_and(|t| wall.duration_since(start).saturating_sub(stats.paused) >= t) {
                return Ok(RunOutcome::Timeout);
            }
            if force_watch || wall.duration_since(last_watch) >= interval {
                force_watch = false;
                last_watch = wall;
                stats.instructions = self.backend.instructions_retired();
                self.backend.collect_device_writes(&mut self.machine)?;
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

    /// Every processor is halted: move time on to the next event, or say that none can come.
    fn wait_halted(&mut self, idle: &mut Duration) -> Option<RunOutcome> {
        let n = self.machine.cpu_count();
        let mut wakeable = false;
        for cpu in 0..n {
            if self.backend.interrupts_enabled(cpu) {
                wakeable = true;
                self.machine.set_current_cpu(cpu);
                if self.machine.intr_pending() {
                    return None;
                }
            }
        }
        if !wakeable {
            let why = if n == 1 {
                "the CPU halted with interrupts disabled".to_string()
            } else {
                format!("all {n} processors are halted with interrupts disabled or wait for a STARTUP IPI")
            };
            return Some(RunOutcome::Stuck(why));
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

    /// The processors' states and their last instructions, for reports on timeout or
    /// shutdown. Processors still waiting for a STARTUP IPI get one line.
    pub fn report(&mut self) -> String {
        let mut out = String::new();
        out += &format!("backend: {}\n", self.backend.name());
        let n = self.machine.cpu_count();
        for cpu in 0..n {
            let s = self.backend.state(cpu);
            if n > 1 {
                if s.wait_for_sipi {
                    out += &format!("processor {cpu}: waiting for a STARTUP IPI\n");
                    continue;
                }
                out += &format!("processor {cpu}:\n");
            }
            out += &s.report();
            let recent = self.backend.recent_instructions(cpu, &self.machine);
            if !recent.is_empty() {
                out += "last instructions executed (oldest first):\n";
                for line in recent {
                    out += "  ";
                    out += &line;
                    out += "\n";
                }
            }
        }
        out
    }
}
