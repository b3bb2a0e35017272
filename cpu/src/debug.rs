//! Debug registers (Intel SDM vol. 3, chapter 17): instruction, data and I/O breakpoints in
//! DR0-DR3 enabled by DR7, reported in DR6; single-step (TF) and the resume flag (RF); the
//! general-detect fault on debug-register access.
//!
//! Checks cost nothing while no breakpoint is enabled and TF is clear: the run loop switches
//! to a careful one-instruction-at-a-time path only when `Cpu::debug_active` says so, and
//! pages holding data breakpoints never get TLB entries, so data accesses to them take the
//! slow path where they are checked.

use crate::bus::Bus;
use crate::cpu::Cpu;
use crate::fault::Fault;
use crate::state::{flags, sreg};

pub(crate) const DR6: usize = 4;
pub(crate) const DR7: usize = 5;
const DR6_BD: u64 = 1 << 13;
const DR6_BS: u64 = 1 << 14;
pub(crate) const DR7_GD: u64 = 1 << 13;
const CR4_DE: u64 = 1 << 3;

/// What the enabled breakpoints look at, recomputed when DR7 or CR4 changes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Breakpoints {
    /// Bit n: DRn is an enabled instruction breakpoint.
    pub exec: u8,
    /// Bit n: DRn is an enabled data write (or read/write when `rw` bit n) breakpoint.
    pub data: u8,
    pub data_rw: u8,
    /// Bit n: DRn is an enabled I/O breakpoint (CR4.DE).
    pub io: u8,
    /// Any of the above.
    pub any: bool,
}

impl Cpu {
    pub(crate) fn refresh_breakpoints(&mut self) {
        let dr7 = self.s.dr[DR7];
        let mut b = Breakpoints::default();
        for n in 0..4 {
            if (dr7 >> (2 * n)) & 3 == 0 {
                continue;
            }
            match (dr7 >> (16 + 4 * n)) & 3 {
                0 => b.exec |= 1 << n,
                1 => b.data |= 1 << n,
                2 if self.s.cr4 & CR4_DE != 0 => b.io |= 1 << n,
                3 => {
                    b.data |= 1 << n;
                    b.data_rw |= 1 << n;
                }
                _ => {}
            }
        }
        b.any = b.exec | b.data | b.io != 0;
        self.bp = b;
        self.flush_tlb();
    }

    /// Whether instructions must run one at a time with debug checks.
    #[inline(always)]
    pub(crate) fn debug_active(&self) -> bool {
        self.s.rflags & (flags::TF | flags::RF) != 0 || self.bp.any
    }

    fn bp_len(&self, n: usize) -> u64 {
        match (self.s.dr[DR7] >> (18 + 4 * n)) & 3 {
            0 => 1,
            1 => 2,
            2 => 8,
            _ => 4,
        }
    }

    /// The DR6 bits of the instruction breakpoints that fire at CS:RIP, if RF allows them.
    pub(crate) fn exec_breakpoints(&self) -> u64 {
        if self.bp.exec == 0 || self.s.rflags & flags::RF != 0 {
            return 0;
        }
        let lin = self.wrap_lin(self.s.seg[sreg::CS].base.wrapping_add(self.s.rip));
        (0..4).filter(|&n| self.bp.exec & (1 << n) != 0 && self.s.dr[n] == lin).fold(0, |m, n| m | (1 << n))
    }

    /// Does any data breakpoint lie on the 4 KiB page of `lin`?
    pub(crate) fn page_has_data_bp(&self, lin: u64) -> bool {
        (0..4).any(|n| self.bp.data & (1 << n) != 0 && (self.s.dr[n] & !0xFFF) == (lin & !0xFFF))
    }

    /// Notes data breakpoints hit by an access; they fire after the instruction.
    pub(crate) fn check_data_bp(&mut self, lin: u64, size: u8, write: bool) {
        for n in 0..4 {
            let bit = 1u8 << n;
            if self.bp.data & bit == 0 || (!write && self.bp.data_rw & bit == 0) {
                continue;
            }
            let len = self.bp_len(n);
            let start = self.s.dr[n] & !(len - 1);
            if lin < start + len && start < lin + u64::from(size) {
                self.db_pending |= 1 << n;
            }
        }
    }

    pub(crate) fn check_io_bp(&mut self, port: u16, size: u8) {
        for n in 0..4 {
            if self.bp.io & (1 << n) == 0 {
                continue;
            }
            let len = self.bp_len(n);
            let start = self.s.dr[n] & 0xFFFF & !(len - 1);
            let p = u64::from(port);
            if p < start + len && start < p + u64::from(size) {
                self.db_pending |= 1 << n;
            }
        }
    }

    /// MOV to or from a debug register with DR7.GD set: a #DB fault with DR6.BD.
    pub(crate) fn general_detect(&mut self) -> Result<(), Fault> {
        if self.s.dr[DR7] & DR7_GD != 0 {
            self.s.dr[DR7] &= !DR7_GD;
            self.s.dr[DR6] |= DR6_BD;
            return Err(Fault::exc(crate::fault::vec::DB));
        }
        Ok(())
    }

    /// Executes one instruction with every debug check: instruction breakpoints before it,
    /// data and I/O breakpoints and single-step after it. Returns (retired, keep going).
    pub(crate) fn exec_one_debug(&mut self, bus: &mut dyn Bus, insn: &crate::decode::Insn) -> (u64, bool) {
        let hits = self.exec_breakpoints();
        if hits != 0 {
            self.s.dr[DR6] = (self.s.dr[DR6] & !0xF) | hits;
            self.raise(bus, Fault::exc(crate::fault::vec::DB));
            return (0, false);
        }
        let tf = self.s.rflags & flags::TF != 0;
        self.db_pending = 0;
        self.rf_loaded = false;
        let ip = self.s.rip;
        self.s.rip = ip.wrapping_add(u64::from(insn.len)) & insn.ip_mask;
        if let Err(fault) = (insn.exec)(self, bus, insn) {
            self.s.rip = ip;
            self.raise(bus, fault);
            return (0, false);
        }
        self.materialize_flags();
        // RF clears after any instruction except one that loaded it (IRET).
        if !self.rf_loaded {
            self.s.rflags &= !flags::RF;
        }
        // MOV SS and POP SS hold debug traps back until after the next instruction.
        if self.ss_shadow {
            self.ss_shadow = false;
            self.held_db |= u64::from(self.db_pending) | if tf { DR6_BS } else { 0 };
            return (1, false);
        }
        let mut dr6 = u64::from(self.db_pending) | std::mem::take(&mut self.held_db) & 0xF;
        if tf {
            dr6 |= DR6_BS;
        }
        if dr6 != 0 {
            self.s.dr[DR6] = (self.s.dr[DR6] & !0xF) | dr6;
            self.raise(bus, Fault::DebugTrap);
            return (1, false);
        }
        (1, !self.end_block)
    }
}
