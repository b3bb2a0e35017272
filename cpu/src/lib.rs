//! Ferrite's x86 interpreter. It knows no PC and no KVM: the outside world is a [`Bus`].
//!
//! Shape (see docs/ARCHITECTURE.md): instructions are decoded once by iced-x86 into compact
//! [`decode::Insn`]s with their handler chosen at decode time, cached in blocks keyed by the
//! host address of their first byte and the code size; status flags are computed lazily; RAM is
//! reached through a software TLB of host pointers; writes to pages holding decoded code drop
//! the blocks decoded from them.

pub mod bus;
pub mod flat;
pub mod pvclock;
pub mod state;

mod block;
mod cpu;
mod cpuid;
mod debug;
mod decode;
mod fault;
mod flags;
mod mem;
mod msr;
mod ops;
mod paging;
mod seg;
mod simd;
mod task;
mod transfer;
mod x87;

pub use block::CodeEvents;
pub use bus::{Bus, PageMapping};
pub use cpu::{Cpu, CpuConfig, RunResult, Stop};
pub use state::{CpuState, DescriptorTable, FpuState, Msrs, Segment, SseState, F80};
