//! Runs a [`machine::Machine`] on a CPU backend. Two backends drive the very same machine: the
//! portable interpreter ([`interp::Interp`], wrapping the `cpu` crate) and, on Linux x86-64,
//! KVM ([`kvm::Kvm`]). Neither owns the devices; both reach them through the machine.

pub mod boot;
pub mod interp;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod kvm;
pub mod select;
pub mod vm;

pub use cpu::CpuState;
pub use select::{choose_backend, AccelChoice, AccelKind};
pub use vm::{RunLimits, RunOutcome, RunStats, Vm, VmControl, Watch};

/// Why a backend returned from `run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Virtual time reached the deadline it was given.
    Deadline,
    /// The CPU executed HLT and waits for an interrupt.
    Halted,
    /// The machine wants attention (an event, a reprogrammed timer, an interrupt to look at).
    Attention,
    /// The CPU shut down (triple fault); the text says why.
    Shutdown(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("KVM is not available: {0}")]
    KvmUnavailable(String),
    #[error("KVM: {0}")]
    Kvm(String),
    #[error("the guest stopped the CPU: {0}")]
    Guest(String),
}

/// One way of running the machine's processors. Processor 0 is the bootstrap processor;
/// the others start waiting for a STARTUP IPI (`CpuState::wait_for_sipi`).
pub trait Backend {
    /// "interp" or "kvm".
    fn name(&self) -> &'static str;
    /// Runs guest code until virtual time `until` (nanoseconds), every processor halted, or
    /// something the machine must handle.
    fn run(&mut self, machine: &mut machine::Machine, until: u64) -> Result<Exit, AccelError>;
    /// Adds what the backend knows of guest writes to directly mapped device memory (KVM's
    /// dirty log of the framebuffer) to the machine's own log, so that devices can be told
    /// (`Machine::deliver_device_writes`, which `Machine::display` calls). The interpreter's
    /// writes reach the machine's log as they happen.
    fn collect_device_writes(&mut self, _machine: &mut machine::Machine) -> Result<(), AccelError> {
        Ok(())
    }
    /// Makes `run` return `Exit::Attention` soon after `flag` is set (by a [`vm::VmControl`]
    /// on another thread). Returns what gets the processors out of the guest at once (KVM:
    /// kicks out of KVM_RUN); without it (the interpreter) the run ends when its current slice
    /// does, within 10 ms of virtual time.
    fn watch_interrupts(&mut self, _flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Option<vm::Kick> {
        None
    }
    /// How many processors it runs.
    fn cpu_count(&self) -> usize {
        1
    }
    fn state(&mut self, cpu: usize) -> CpuState;
    fn set_state(&mut self, cpu: usize, state: &CpuState) -> Result<(), AccelError>;
    /// `set_state` for a state the processor reached by itself (INIT, STARTUP): its
    /// time-stamp counter runs on rather than being loaded from `state`, or it would fall
    /// behind the other processors'. Backends whose `set_state` loads the TSC override this.
    fn set_state_keeping_tsc(&mut self, cpu: usize, state: &CpuState) -> Result<(), AccelError> {
        self.set_state(cpu, state)
    }
    /// INIT for processor `cpu`: an application processor then waits for a STARTUP IPI, the
    /// bootstrap processor restarts at the reset vector.
    fn init(&mut self, cpu: usize) -> Result<(), AccelError> {
        let mut s = self.state(cpu).after_init();
        s.wait_for_sipi = cpu != 0;
        self.set_state_keeping_tsc(cpu, &s)
    }
    /// A STARTUP IPI with `vector` for processor `cpu` (ignored unless it waits for one).
    fn startup(&mut self, cpu: usize, vector: u8) -> Result<(), AccelError> {
        let mut s = self.state(cpu);
        if !s.wait_for_sipi {
            return Ok(());
        }
        s.startup(vector);
        self.set_state_keeping_tsc(cpu, &s)
    }
    /// Is the processor halted, or waiting for a STARTUP IPI (and so waiting for something)?
    fn halted(&mut self, cpu: usize) -> bool {
        let s = self.state(cpu);
        s.halted || s.wait_for_sipi
    }
    /// Would a maskable interrupt reach the processor (IF set, not waiting for SIPI)?
    fn interrupts_enabled(&mut self, cpu: usize) -> bool {
        let s = self.state(cpu);
        s.rflags & cpu::state::flags::IF != 0 && !s.wait_for_sipi
    }
    /// Instructions retired since the backend was made, where it counts them.
    fn instructions_retired(&self) -> Option<u64> {
        None
    }
    /// The last instructions processor `cpu` executed, newest last, for fault and timeout
    /// reports.
    fn recent_instructions(&mut self, _cpu: usize, _machine: &machine::Machine) -> Vec<String> {
        Vec::new()
    }
}
