//! STUB: the KVM backend is being written.
use crate::{AccelError, Backend, Exit};
use cpu::CpuState;
use machine::Machine;

pub struct Kvm;

impl Kvm {
    pub fn new(_machine: &Machine) -> Result<Kvm, AccelError> {
        Err(AccelError::KvmUnavailable("not written yet".into()))
    }
}

impl Backend for Kvm {
    fn name(&self) -> &'static str {
        "kvm"
    }
    fn run(&mut self, _m: &mut Machine, _until: u64) -> Result<Exit, AccelError> {
        Err(AccelError::Kvm("not written yet".into()))
    }
    fn state(&mut self) -> CpuState {
        CpuState::default()
    }
    fn set_state(&mut self, _s: &CpuState) -> Result<(), AccelError> {
        Ok(())
    }
}
