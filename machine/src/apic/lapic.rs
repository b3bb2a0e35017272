//! A local APIC in xAPIC mode (Intel SDM vol. 3, chapter 10): ID, TPR/PPR, IRR/ISR/TMR,
//! EOI with the broadcast to the I/O APIC for level-triggered vectors, the spurious vector
//! register, the LVT (timer, LINT0 as virtual wire for the 8259A, LINT1 as NMI, error), the
//! timer in one-shot, periodic and TSC-deadline mode counting virtual time (the TSC counts
//! virtual nanoseconds, so a deadline is a virtual time), and the ICR for IPIs.
//!
//! At reset the bootstrap processor's LINT0 is ExtINT and unmasked, as QEMU leaves it, so the
//! 8259A's interrupts reach a processor whose firmware never touched its APIC.

use super::{delivery, Message};
use crate::device::{DeviceSnapshot, SnapshotError};
use serde::{Deserialize, Serialize};

/// IA32_APIC_BASE: the BSP flag and the global enable.
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER: usize = 0;
const LVT_THERMAL: usize = 1;
const LVT_PERF: usize = 2;
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
const LVT_ERROR: usize = 5;
const LVT_CMCI: usize = 6;

/// Timer period of one count before division: the APIC timer runs at 1 GHz of virtual time.
const NS_PER_TICK: u64 = 1;

/// What the board must do after an access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// An EOI for a level-triggered vector: tell the I/O APIC.
    pub eoi: Option<u8>,
    /// An inter-processor interrupt to route (destination shorthand already applied into
    /// `ipi_targets`).
    pub ipi: Option<(Message, Shorthand)>,
    /// The timer deadline changed.
    pub timer_changed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    None,
    SelfOnly,
    All,
    AllButSelf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lapic {
    pub base: u64,
    id: u8,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    irr: [u32; 8],
    isr: [u32; 8],
    tmr: [u32; 8],
    esr: u32,
    icr: u64,
    lvt: [u32; 7],
    initial: u32,
    divide: u32,
    /// Virtual time the current count started from `initial`.
    timer_start: u64,
    timer_armed: bool,
    /// TSC-deadline mode: the virtual time IA32_TSC_DEADLINE asked for, while armed.
    #[serde(default)]
    tsc_deadline: Option<u64>,
    nmi: bool,
}

/// LVT timer modes (bits 17-18).
const TIMER_PERIODIC: u32 = 1;
const TIMER_TSC_DEADLINE: u32 = 2;

fn bit(v: &[u32; 8], n: u8) -> bool {
    v[usize::from(n >> 5)] & (1 << (n & 31)) != 0
}

fn set(v: &mut [u32; 8], n: u8, on: bool) {
    let w = &mut v[usize::from(n >> 5)];
    if on {
        *w |= 1 << (n & 31);
    } else {
        *w &= !(1 << (n & 31));
    }
}

fn highest(v: &[u32; 8]) -> Option<u8> {
    (0..8).rev().find(|&k| v[k] != 0).map(|k| (k * 32 + 31 - v[k].leading_zeros() as usize) as u8)
}

impl Lapic {
    pub fn new(id: u8, bsp: bool) -> Lapic {
        let mut l = Lapic {
            base: super::LAPIC_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 },
            id,
            tpr: 0,
            ldr: 0,
            dfr: 0xFFFF_FFFF,
            svr: 0xFF,
            irr: [0; 8],
            isr: [0; 8],
            tmr: [0; 8],
            esr: 0,
            icr: 0,
            lvt: [LVT_MASKED; 7],
            initial: 0,
            divide: 0,
            timer_start: 0,
            timer_armed: false,
            tsc_deadline: None,
            nmi: false,
        };
        if bsp {
            l.lvt[LVT_LINT0] = u32::from(delivery::EXTINT) << 8;
            l.lvt[LVT_LINT1] = u32::from(delivery::NMI) << 8;
        }
        l
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// IA32_APIC_BASE bit 11: the APIC is on at all.
    pub fn globally_enabled(&self) -> bool {
        self.base & APIC_BASE_ENABLE != 0
    }

    fn software_enabled(&self) -> bool {
        self.svr & 0x100 != 0
    }

    pub fn write_base(&mut self, v: u64) -> bool {
        // Address bits above 40 and the reserved low bits are refused.
        if v & !0x0000_00FF_FFFF_F900 != 0 {
            return false;
        }
        if self.globally_enabled() && v & APIC_BASE_ENABLE == 0 {
            // Disabling the APIC puts it in its reset state, keeping the ID and base.
            let bsp = self.base & APIC_BASE_BSP != 0;
            *self = Lapic::new(self.id, bsp);
        }
        self.base = v;
        true
    }

    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    pub fn set_tpr(&mut self, v: u8) {
        self.tpr = v;
    }

    fn ppr(&self) -> u8 {
        let isrv = highest(&self.isr).unwrap_or(0);
        if (self.tpr & 0xF0) >= (isrv & 0xF0) {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// Does this APIC accept a message addressed to `dest`?
    pub fn matches(&self, logical: bool, dest: u8) -> bool {
        if !logical {
            return dest == 0xFF || dest == self.id;
        }
        let ldr = (self.ldr >> 24) as u8;
        if self.dfr >> 28 == 0xF {
            // Flat model: a bit per APIC.
            ldr & dest != 0
        } else {
            // Cluster model: high nibble the cluster, low nibble the members.
            dest == 0xFF || ((ldr >> 4) == (dest >> 4) && (ldr & dest & 0xF) != 0)
        }
    }

    /// Accepts a fixed, lowest-priority or NMI message (the board handles INIT/SIPI).
    pub fn accept(&mut self, m: &Message) {
        match m.delivery {
            delivery::FIXED | delivery::LOWEST => {
                if m.vector < 16 {
                    self.esr |= 1 << 6; // received illegal vector
                    return;
                }
                set(&mut self.irr, m.vector, true);
                set(&mut self.tmr, m.vector, m.level);
            }
            delivery::NMI => self.nmi = true,
            _ => tracing::debug!("local APIC {}: message with delivery mode {} not taken here", self.id, m.delivery),
        }
    }

    /// Takes a pending NMI (from LINT1, an IPI or a message).
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }

    /// Raises LINT1 (the board's NMI line) as the LVT says.
    pub fn lint1(&mut self) {
        let l = self.lvt[LVT_LINT1];
        if l & LVT_MASKED == 0 && ((l >> 8) & 7) as u8 == delivery::NMI {
            self.nmi = true;
        }
    }

    /// Whether the 8259A's INTR reaches the processor through LINT0 (virtual wire): when the
    /// APIC is off, or LINT0 is unmasked.
    pub fn accepts_pic(&self) -> bool {
        !self.globally_enabled() || self.lvt[LVT_LINT0] & LVT_MASKED == 0
    }

    /// The vector of an APIC interrupt the processor should take now.
    pub fn pending(&self) -> Option<u8> {
        if !self.globally_enabled() || !self.software_enabled() {
            return None;
        }
        let v = highest(&self.irr)?;
        ((v & 0xF0) > (self.ppr() & 0xF0)).then_some(v)
    }

    /// Interrupt acknowledge: IRR to ISR.
    pub fn ack(&mut self) -> Option<u8> {
        let v = self.pending()?;
        set(&mut self.irr, v, false);
        set(&mut self.isr, v, true);
        Some(v)
    }

    fn eoi(&mut self) -> Option<u8> {
        let v = highest(&self.isr)?;
        set(&mut self.isr, v, false);
        bit(&self.tmr, v).then_some(v)
    }

    fn divisor(&self) -> u64 {
        let d = (self.divide & 3) | ((self.divide >> 1) & 4);
        if d == 7 {
            1
        } else {
            2 << d
        }
    }

    fn timer_period_ns(&self) -> u64 {
        u64::from(self.initial) * self.divisor() * NS_PER_TICK
    }

    fn timer_mode(&self) -> u32 {
        (self.lvt[LVT_TIMER] >> 17) & 3
    }

    /// IA32_TSC_DEADLINE was written: arm the timer for virtual time `at` (`None` disarms).
    /// Ignored unless the timer is in TSC-deadline mode, as on hardware.
    pub fn set_tsc_deadline(&mut self, at: Option<u64>) {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline = at;
        }
    }

    fn current_count(&self, now: u64) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            // The count registers are unused in TSC-deadline mode and read 0.
            return 0;
        }
        if !self.timer_armed || self.initial == 0 {
            return 0;
        }
        let ticks = now.saturating_sub(self.timer_start) / (self.divisor() * NS_PER_TICK);
        let periodic = self.timer_mode() == TIMER_PERIODIC;
        if periodic {
            let i = u64::from(self.initial);
            (i - ticks % i) as u32
        } else {
            u64::from(self.initial).saturating_sub(ticks) as u32
        }
    }

    /// When the timer fires next, if it is counting.
    pub fn deadline(&self) -> Option<u64> {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return self.tsc_deadline;
        }
        (self.timer_armed && self.initial != 0).then(|| self.timer_start + self.timer_period_ns())
    }

    /// The timer reached its deadline: raise its interrupt, reload or stop.
    pub fn timer_expired(&mut self, now: u64) {
        let l = self.lvt[LVT_TIMER];
        if l & LVT_MASKED == 0 && l as u8 >= 16 {
            set(&mut self.irr, l as u8, true);
            set(&mut self.tmr, l as u8, false);
        }
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            // One shot: the deadline is consumed.
            self.tsc_deadline = None;
        } else if self.timer_mode() == TIMER_PERIODIC {
            let p = self.timer_period_ns().max(1);
            // Catch up whole periods if time jumped.
            let elapsed = now.saturating_sub(self.timer_start);
            self.timer_start += (elapsed / p).max(1) * p;
        } else {
            self.timer_armed = false;
        }
    }

    /// A register read at `offset` in the 4 KiB window.
    pub fn read(&self, offset: u64, now: u64) -> u32 {
        let r = (offset >> 4) as usize;
        match r {
            0x02 => u32::from(self.id) << 24,
            0x03 => 0x0005_0014,
            0x08 => u32::from(self.tpr),
            0x09 => 0,
            0x0A => u32::from(self.ppr()),
            0x0D => self.ldr,
            0x0E => self.dfr,
            0x0F => self.svr,
            0x10..=0x17 => self.isr[r - 0x10],
            0x18..=0x1F => self.tmr[r - 0x18],
            0x20..=0x27 => self.irr[r - 0x20],
            0x28 => self.esr,
            0x2F => self.lvt[LVT_CMCI],
            0x30 => self.icr as u32 & !(1 << 12),
            0x31 => (self.icr >> 32) as u32,
            0x32 => self.lvt[LVT_TIMER],
            0x33 => self.lvt[LVT_THERMAL],
            0x34 => self.lvt[LVT_PERF],
            0x35 => self.lvt[LVT_LINT0],
            0x36 => self.lvt[LVT_LINT1],
            0x37 => self.lvt[LVT_ERROR],
            0x38 => self.initial,
            0x39 => self.current_count(now),
            0x3E => self.divide,
            _ => 0,
        }
    }

    /// A register write; says what the board must do about it.
    pub fn write(&mut self, offset: u64, v: u32, now: u64) -> Effects {
        let mut fx = Effects::default();
        let r = (offset >> 4) as usize;
        match r {
            0x02 => self.id = (v >> 24) as u8,
            0x08 => self.tpr = v as u8,
            0x0B => fx.eoi = self.eoi(),
            0x0D => self.ldr = v & 0xFF00_0000,
            0x0E => self.dfr = v | 0x0FFF_FFFF,
            0x0F => {
                self.svr = v & 0x13FF;
                if !self.software_enabled() {
                    // Software disable masks every LVT entry.
                    for l in self.lvt.iter_mut() {
                        *l |= LVT_MASKED;
                    }
                }
            }
            0x28 => self.esr = 0,
            0x30 => {
                self.icr = (self.icr & !0xFFFF_FFFF) | u64::from(v & !(1 << 12));
                let m = Message {
                    vector: v as u8,
                    delivery: ((v >> 8) & 7) as u8,
                    logical: v & (1 << 11) != 0,
                    dest: (self.icr >> 56) as u8,
                    level: v & (1 << 15) != 0,
                };
                let sh = match (v >> 18) & 3 {
                    0 => Shorthand::None,
                    1 => Shorthand::SelfOnly,
                    2 => Shorthand::All,
                    _ => Shorthand::AllButSelf,
                };
                // An INIT level de-assert does nothing on modern processors.
                let deassert = m.delivery == delivery::INIT && v & (1 << 14) == 0;
                if !deassert {
                    fx.ipi = Some((m, sh));
                }
            }
            0x31 => self.icr = (self.icr & 0xFFFF_FFFF) | (u64::from(v) << 32),
            0x32 | 0x2F | 0x33..=0x37 => {
                let k = match r {
                    0x32 => LVT_TIMER,
                    0x2F => LVT_CMCI,
                    0x33 => LVT_THERMAL,
                    0x34 => LVT_PERF,
                    0x35 => LVT_LINT0,
                    0x36 => LVT_LINT1,
                    _ => LVT_ERROR,
                };
                let mut v = v;
                if !self.software_enabled() {
                    v |= LVT_MASKED;
                }
                let old_mode = self.timer_mode();
                self.lvt[k] = v;
                if k == LVT_TIMER && self.timer_mode() != old_mode {
                    if old_mode == TIMER_TSC_DEADLINE || self.timer_mode() == TIMER_TSC_DEADLINE {
                        // Changing to or from TSC-deadline mode disarms the timer (SDM
                        // 10.5.4.1); one-shot and periodic share a running count.
                        self.timer_armed = false;
                        self.initial = 0;
                        self.tsc_deadline = None;
                    }
                    fx.timer_changed = true;
                }
            }
            0x38 if self.timer_mode() == TIMER_TSC_DEADLINE => {
                // The initial count is ignored in TSC-deadline mode.
            }
            0x38 => {
                self.initial = v;
                self.timer_start = now;
                self.timer_armed = v != 0;
                fx.timer_changed = true;
            }
            0x3E => {
                // Keep the count where it is across a divider change.
                let cur = self.current_count(now);
                self.divide = v & 0xB;
                if self.timer_armed {
                    let done = u64::from(self.initial.saturating_sub(cur)) * self.divisor();
                    self.timer_start = now.saturating_sub(done);
                }
                fx.timer_changed = true;
            }
            _ => tracing::debug!("local APIC {}: write of {v:#x} to read-only or reserved register {offset:#x}", self.id),
        }
        fx
    }

    pub fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new("lapic", 1, self)
    }

    pub fn restore(&mut self, s: &DeviceSnapshot) -> Result<(), SnapshotError> {
        *self = s.decode("lapic", 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tsc_deadline_mode_fires_once_at_the_deadline() {
        let mut l = Lapic::new(0, true);
        l.write(0xF0, 0x1FF, 0); // software enable
        l.write(0x320, (TIMER_TSC_DEADLINE << 17) | 0x40, 0);
        // The initial count does not arm it; the MSR does, and only in this mode.
        l.write(0x380, 1000, 0);
        assert_eq!(l.deadline(), None);
        l.set_tsc_deadline(Some(5000));
        assert_eq!(l.deadline(), Some(5000));
        assert_eq!(l.read(0x390, 100), 0);
        l.timer_expired(5000);
        assert_eq!(l.deadline(), None);
        assert_eq!(l.pending(), Some(0x40));
        // Back to one-shot: disarmed, and the MSR is ignored.
        l.set_tsc_deadline(Some(9000));
        l.write(0x320, 0x41, 6000);
        assert_eq!(l.deadline(), None);
        l.set_tsc_deadline(Some(9000));
        assert_eq!(l.deadline(), None);
    }

    use super::*;

    fn enabled() -> Lapic {
        let mut l = Lapic::new(0, true);
        l.write(0xF0, 0x1FF, 0);
        l
    }

    #[test]
    fn priority_and_eoi() {
        let mut l = enabled();
        l.accept(&Message { vector: 0x41, delivery: 0, logical: false, dest: 0, level: false });
        l.accept(&Message { vector: 0x82, delivery: 0, logical: false, dest: 0, level: true });
        assert_eq!(l.ack(), Some(0x82));
        assert_eq!(l.pending(), None, "0x41 is below the in-service 0x82's class");
        assert_eq!(l.write(0xB0, 0, 0).eoi, Some(0x82), "level: EOI broadcast");
        assert_eq!(l.ack(), Some(0x41));
        l.write(0x80, 0x50, 0);
        assert_eq!(l.write(0xB0, 0, 0).eoi, None);
        l.accept(&Message { vector: 0x45, delivery: 0, logical: false, dest: 0, level: false });
        assert_eq!(l.pending(), None, "TPR 0x50 holds 0x45 off");
        l.write(0x80, 0x30, 0);
        assert_eq!(l.pending(), Some(0x45));
    }

    #[test]
    fn periodic_timer() {
        let mut l = enabled();
        l.write(0x3E0, 0xB, 0); // divide by 1
        l.write(0x320, (1 << 17) | 0x30, 0);
        l.write(0x380, 1000, 0);
        assert_eq!(l.deadline(), Some(1000));
        assert_eq!(l.read(0x390, 400), 600);
        l.timer_expired(1000);
        assert_eq!(l.ack(), Some(0x30));
        assert_eq!(l.deadline(), Some(2000));
        l.write(0x380, 0, 1500);
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn virtual_wire_and_disable() {
        let mut l = Lapic::new(0, true);
        assert!(l.accepts_pic(), "BSP LINT0 is ExtINT at reset");
        l.write(0xF0, 0x1FF, 0);
        l.write(0x350, LVT_MASKED, 0);
        assert!(!l.accepts_pic());
        assert!(l.write_base(0xFEE0_0000));
        assert!(l.accepts_pic(), "globally disabled: the PIC goes straight through");
    }

    #[test]
    fn logical_destinations() {
        let mut l = enabled();
        l.write(0xD0, 0x0400_0000, 0);
        assert!(l.matches(true, 0x04));
        assert!(!l.matches(true, 0x02));
        l.write(0xE0, 0x0FFF_FFFF, 0);
        l.write(0xD0, 0x2100_0000, 0);
        assert!(l.matches(true, 0x21) && !l.matches(true, 0x11));
    }
}
