//! Exceptions and interrupts: what a handler returns when an instruction cannot complete, and
//! their delivery through the interrupt vector table, with the double-fault and shutdown
//! rules of the Intel SDM, vol. 3, 6.15 (table 6-5).

use crate::bus::Bus;
use crate::cpu::{Cpu, Stop};
use crate::state::{flags, reg, sreg};

/// Exception vectors.
pub(crate) mod vec {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
}

/// What raised an event being delivered: decides the gate DPL check and the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// INT n, INT3, INTO: the gate's DPL must allow the current CPL.
    Soft,
    /// An interrupt from outside (the PIC, NMI).
    External,
    /// An exception, with its error code if it has one.
    Exception(Option<u32>),
}

/// Kept to 6 bytes (error codes are 16 bits wide in everything implemented: selectors, IDT
/// indexes, #PF bits), so that a handler's `Result<(), Fault>` comes back in a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A fault: RIP is rolled back to the instruction and the exception is delivered.
    Exception { vector: u8, error: Option<u16> },
    /// An external interrupt (or NMI) taken between instructions.
    Interrupt(u8),
    /// The debug trap after an instruction (single-step, data or I/O breakpoint): DR6 has
    /// already been set.
    DebugTrap,
}

impl Fault {
    /// An exception with an error code (which fits 16 bits: see above).
    pub(crate) fn with_error(vector: u8, error: u32) -> Fault {
        debug_assert!(error <= 0xFFFF, "error code {error:#x}");
        Fault::Exception { vector, error: Some(error as u16) }
    }
    pub(crate) fn gp(error: u32) -> Fault {
        Fault::with_error(vec::GP, error)
    }
    pub(crate) fn ss(error: u32) -> Fault {
        Fault::with_error(vec::SS, error)
    }
    pub(crate) fn np(error: u32) -> Fault {
        Fault::with_error(vec::NP, error)
    }
    pub(crate) fn ts(error: u32) -> Fault {
        Fault::with_error(vec::TS, error)
    }
    pub(crate) fn ud() -> Fault {
        Fault::Exception { vector: vec::UD, error: None }
    }
    pub(crate) fn de() -> Fault {
        Fault::Exception { vector: vec::DE, error: None }
    }
    pub(crate) fn exc(vector: u8) -> Fault {
        Fault::Exception { vector, error: None }
    }

    fn vector(&self) -> u8 {
        match *self {
            Fault::Exception { vector, .. } => vector,
            Fault::Interrupt(v) => v,
            Fault::DebugTrap => vec::DB,
        }
    }
}

fn contributory(v: u8) -> bool {
    matches!(v, vec::DE | vec::TS | vec::NP | vec::SS | vec::GP)
}

impl Cpu {
    /// Delivers a fault or interrupt, escalating to #DF and to shutdown as hardware does when
    /// the delivery itself faults.
    pub(crate) fn raise(&mut self, bus: &mut dyn Bus, fault: Fault) {
        self.stop_block();
        self.attention = true;
        if let Fault::Exception { vector, .. } = fault {
            // Faults push RF set, so that returning to the instruction does not hit an
            // instruction breakpoint on it again; a #DB for one is the exception.
            if vector != vec::DB {
                self.materialize_flags();
                self.s.rflags |= flags::RF;
            }
        }
        if let Fault::Exception { vector, error } = fault {
            tracing::trace!(target: "cpu::exceptions", "exception {vector} error {error:?} at {:04x}:{:x} cr2={:x}", self.s.seg[crate::state::sreg::CS].selector, self.s.rip, self.s.cr2);
        }
        let mut current = fault;
        loop {
            let v = current.vector();
            let source = match current {
                Fault::Exception { error, .. } => Source::Exception(error.map(u32::from)),
                Fault::Interrupt(_) => Source::External,
                Fault::DebugTrap => Source::Exception(None),
            };
            match self.deliver(bus, v, source) {
                Ok(()) => return,
                Err(second) => {
                    let second_v = second.vector();
                    if v == vec::DF {
                        self.shutdown(format!("triple fault: exception {second_v} while delivering a double fault"));
                        return;
                    }
                    let first_is_exception = matches!(current, Fault::Exception { .. });
                    current = if first_is_exception
                        && ((contributory(v) && contributory(second_v)) || (v == vec::PF && (contributory(second_v) || second_v == vec::PF)))
                    {
                        Fault::Exception { vector: vec::DF, error: Some(0) }
                    } else {
                        second
                    };
                }
            }
        }
    }

    pub(crate) fn shutdown(&mut self, why: String) {
        tracing::debug!("CPU shutdown: {why}");
        self.stop_block();
        self.stop = Some(Stop::Shutdown(why));
    }

    /// Software interrupt (INT n, INT3, INTO): RIP already points past the instruction.
    pub(crate) fn soft_interrupt(&mut self, bus: &mut dyn Bus, vector: u8) -> Result<(), Fault> {
        self.stop_block();
        if self.vm86() && self.iopl() < 3 {
            // INT n in virtual-8086 mode with IOPL < 3 is a #GP for the monitor to emulate.
            return Err(Fault::gp(0));
        }
        self.deliver(bus, vector, Source::Soft)
    }

    /// Delivers an event through the IVT (real mode), or the IDT (protected and long mode).
    pub(crate) fn deliver(&mut self, bus: &mut dyn Bus, vector: u8, source: Source) -> Result<(), Fault> {
        if !self.protected() {
            return self.deliver_real(bus, vector);
        }
        if self.long_mode() {
            self.deliver_long(bus, vector, source)
        } else {
            self.deliver_protected(bus, vector, source)
        }
    }

    /// Real-mode delivery through the IVT: push FLAGS, CS, IP; clear IF, TF, AC; jump.
    fn deliver_real(&mut self, bus: &mut dyn Bus, vector: u8) -> Result<(), Fault> {
        let entry = u64::from(vector) * 4;
        if entry + 3 > u64::from(self.s.idtr.limit) {
            return Err(Fault::gp(u32::from(vector) * 8 + 2));
        }
        let base = self.s.idtr.base;
        let ip = self.read(bus, (base + entry) & 0xFFFF_FFFF, 2)?;
        let cs = self.read(bus, (base + entry + 2) & 0xFFFF_FFFF, 2)?;
        let fl = self.rflags();
        let old_sp = self.s.gpr[reg::RSP];
        let pushed = (|| {
            self.push(bus, 2, fl & 0xFFFF)?;
            self.push(bus, 2, u64::from(self.s.seg[sreg::CS].selector))?;
            self.push(bus, 2, self.s.rip & 0xFFFF)
        })();
        if let Err(f) = pushed {
            self.s.gpr[reg::RSP] = old_sp;
            return Err(f);
        }
        self.materialize_flags();
        self.s.rflags &= !(flags::IF | flags::TF | flags::AC | flags::RF);
        self.load_seg_real(sreg::CS, cs as u16);
        self.s.rip = ip;
        self.s.halted = false;
        Ok(())
    }
}
