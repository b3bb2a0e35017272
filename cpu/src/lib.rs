//! Ferrite's x86 interpreter. It knows no PC and no KVM: the outside world is a [`Bus`].

pub mod bus;
pub mod state;

pub use bus::{Bus, PageMapping};
pub use state::{CpuState, DescriptorTable, Segment};
pub mod interp;
pub use interp::{Cpu, RunResult, Stop};
