//! The two sides: the interpreter on a flat bus, and KVM on a `machine::Machine`, each given
//! the same memory image and the same `CpuState` for every case.

use super::env::{self, CODE, CODE_SIZE, DATA, DATA_SIZE, KSTACK_TOP};
use cpu::flat::FlatBus;
use cpu::{Cpu, CpuState, Stop};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Halted in an exception stub (the usual end).
    Halted,
    /// Still running when the budget ran out.
    Timeout,
    /// Triple fault.
    Shutdown(String),
    /// The backend failed (KVM internal error...).
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub end: End,
    pub state: CpuState,
    pub data: Vec<u8>,
    /// The top `KSTACK_COMPARED` bytes of the ring-0 stack (the exception frame).
    pub kstack: Vec<u8>,
}

/// What one case gives both sides.
pub struct Input<'a> {
    pub code: &'a [u8],
    pub data: &'a [u8],
    pub state: &'a CpuState,
}

pub trait Side {
    fn name(&self) -> &'static str;
    fn run(&mut self, input: &Input) -> Outcome;
}

/// The code page as it is written: the program, then HLT to the end (a jump past the program
/// ends in #GP there).
fn code_page(code: &[u8]) -> Vec<u8> {
    let mut page = vec![0xF4u8; CODE_SIZE as usize];
    page[..code.len()].copy_from_slice(code);
    page
}

const KSTACK_CLEAR: usize = 0x100;

pub struct InterpSide {
    cpu: Cpu,
    bus: FlatBus,
    /// Instructions before a run counts as a timeout.
    pub budget: u64,
}

impl InterpSide {
    pub fn new() -> InterpSide {
        let mut bus = FlatBus::new(env::IMAGE_SIZE);
        bus.ram_mut().copy_from_slice(&env::base_image());
        InterpSide { cpu: Cpu::new(), bus, budget: 100_000 }
    }
}

impl Default for InterpSide {
    fn default() -> Self {
        InterpSide::new()
    }
}

impl Side for InterpSide {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn run(&mut self, input: &Input) -> Outcome {
        let ram = self.bus.ram_mut();
        ram[CODE as usize..(CODE + CODE_SIZE) as usize].copy_from_slice(&code_page(input.code));
        ram[DATA as usize..(DATA + DATA_SIZE) as usize].copy_from_slice(input.data);
        ram[KSTACK_TOP as usize - KSTACK_CLEAR..KSTACK_TOP as usize].fill(0);
        // The flat bus does not tell the CPU about host writes: drop decoded code by hand.
        self.cpu.flush_caches();
        self.cpu.set_state(input.state);
        let mut n = 0;
        let end = loop {
            let r = self.cpu.run(&mut self.bus, self.budget.saturating_sub(n).max(1));
            n += r.retired;
            match r.stop {
                Stop::Halted => break End::Halted,
                Stop::Shutdown(why) => break End::Shutdown(why),
                Stop::Budget | Stop::Bus | Stop::Yield if n < self.budget => {}
                Stop::Budget | Stop::Bus | Stop::Yield => break End::Timeout,
            }
        };
        let ram = self.bus.ram();
        Outcome {
            end,
            state: self.cpu.state(),
            data: ram[DATA as usize..(DATA + DATA_SIZE) as usize].to_vec(),
            kstack: ram[(KSTACK_TOP - env::KSTACK_COMPARED) as usize..KSTACK_TOP as usize].to_vec(),
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub use kvm_side::KvmSide;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod kvm_side {
    use super::*;
    use accel::kvm::Kvm;
    use accel::{AccelError, Backend, Exit};
    use machine::host::NullChar;
    use machine::{ClockMode, Machine, MachineConfig};
    use vm_memory::{Bytes, GuestAddress};

    pub struct KvmSide {
        kvm: Kvm,
        m: Machine,
        /// Wall-clock limit of one case.
        pub timeout_ns: u64,
        scratch: Vec<u64>,
    }

    impl KvmSide {
        /// `Err` says why KVM cannot be used here.
        pub fn new() -> Result<KvmSide, String> {
            let mut m = Machine::new(MachineConfig {
                ram_size: env::MACHINE_RAM,
                bios: vec![0xF4; 0x10000],
                clock: ClockMode::RealTime,
                serial: Box::new(NullChar),
                debugcon: Box::new(NullChar),
                ..MachineConfig::default()
            })
            .map_err(|e| format!("cannot build the machine: {e}"))?;
            m.memory_mut().write_ram(0, &env::base_image());
            // Initialise the 8259A pair and mask every line: cases run with IF set.
            for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFF)] {
                m.io_write(port, 1, v);
            }
            for (port, v) in [(0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01), (0xA1, 0xFF)] {
                m.io_write(port, 1, v);
            }
            let kvm = match Kvm::new(&m) {
                Ok(k) => k,
                Err(AccelError::KvmUnavailable(why)) => return Err(why),
                Err(e) => return Err(format!("KVM is there but the backend cannot start: {e}")),
            };
            Ok(KvmSide { kvm, m, timeout_ns: 2_000_000_000, scratch: Vec::new() })
        }

        fn read(&self, addr: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0u8; len];
            self.m.memory().guest_memory().read_slice(&mut v, GuestAddress(addr)).expect("RAM");
            v
        }

        /// A new vCPU after a failure that may have left the old one unusable.
        fn renew(&mut self) {
            if let Ok(k) = Kvm::new(&self.m) {
                self.kvm = k;
            }
        }
    }

    impl Side for KvmSide {
        fn name(&self) -> &'static str {
            "kvm"
        }

        fn run(&mut self, input: &Input) -> Outcome {
            let mem = self.m.memory_mut();
            mem.write_ram(CODE, &code_page(input.code));
            mem.write_ram(DATA, input.data);
            mem.write_ram(KSTACK_TOP - KSTACK_CLEAR as u64, &[0u8; KSTACK_CLEAR]);
            // Nobody else takes the written-pages list here; keep it from growing.
            mem.take_written(&mut self.scratch);
            self.scratch.clear();
            let end = match self.kvm.set_state(0, input.state) {
                Err(e) => End::Failed(format!("set_state: {e}")),
                Ok(()) => {
                    let until = self.m.now() + self.timeout_ns;
                    loop {
                        match self.kvm.run(&mut self.m, until) {
                            Ok(Exit::Halted) => break End::Halted,
                            Ok(Exit::Deadline) => break End::Timeout,
                            Ok(Exit::Attention) => {
                                self.m.take_events();
                            }
                            Ok(Exit::Shutdown(why)) => break End::Shutdown(why),
                            Err(e) => break End::Failed(e.to_string()),
                        }
                    }
                }
            };
            let state = self.kvm.state(0);
            if matches!(end, End::Failed(_)) {
                self.renew();
            }
            Outcome {
                end,
                state,
                data: self.read(DATA, DATA_SIZE as usize),
                kstack: self.read(KSTACK_TOP - env::KSTACK_COMPARED, env::KSTACK_COMPARED as usize),
            }
        }
    }

}
