//! STUB
use crate::{Bus, CpuState};

pub enum Stop {
    Budget,
    Halted,
    Bus,
    Shutdown(String),
}

pub struct RunResult {
    pub retired: u64,
    pub stop: Stop,
}

pub struct Cpu {
    s: CpuState,
}

impl Cpu {
    pub fn new() -> Cpu {
        Cpu { s: CpuState::default() }
    }
    pub fn state(&self) -> CpuState {
        self.s.clone()
    }
    pub fn set_state(&mut self, s: &CpuState) {
        self.s = s.clone();
    }
    pub fn run(&mut self, _bus: &mut dyn Bus, _max: u64) -> RunResult {
        RunResult { retired: 0, stop: Stop::Halted }
    }
    pub fn is_halted(&self) -> bool {
        self.s.halted
    }
    pub fn interrupts_enabled(&self) -> bool {
        self.s.rflags & crate::state::flags::IF != 0
    }
    pub fn recent_instructions(&self) -> Vec<String> {
        Vec::new()
    }
}
