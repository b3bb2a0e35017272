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
pub use vm::{RunLimits, RunOutcome, RunStats, Vm, Watch};

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

/// One way of running the machine's CPU.
pub trait Backend {
    /// "interp" or "kvm".
    fn name(&self) -> &'static str;
    /// Runs guest code until virtual time `until` (nanoseconds), a halt, or something the
    /// machine must handle.
    fn run(&mut self, machine: &mut machine::Machine, until: u64) -> Result<Exit, AccelError>;
    fn state(&mut self) -> CpuState;
    fn set_state(&mut self, state: &CpuState) -> Result<(), AccelError>;
    /// Is the CPU halted (and so waiting for an interrupt)?
    fn halted(&mut self) -> bool {
        self.state().halted
    }
    /// Are maskable interrupts enabled (IF set)?
    fn interrupts_enabled(&mut self) -> bool {
        self.state().rflags & cpu::state::flags::IF != 0
    }
    /// Instructions retired since the backend was made, where it counts them.
    fn instructions_retired(&self) -> Option<u64> {
        None
    }
    /// The last instructions executed, newest last, for fault and timeout reports.
    fn recent_instructions(&mut self, _machine: &machine::Machine) -> Vec<String> {
        Vec::new()
    }
}
