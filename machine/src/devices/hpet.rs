//! The High Precision Event Timer at 0xFED00000 (IA-PC HPET specification 1.0a) as QEMU's "pc"
//! machine has it: a 64-bit main counter at 100 MHz and three comparators, each one-shot or
//! periodic, 32- or 64-bit, edge or level, routed to I/O APIC pins 20-23 or, in
//! LegacyReplacement mode, to IRQ 0 and IRQ 8 in place of the 8254 and the RTC. The counter is
//! computed from virtual time; comparator matches are found when something looks (an access, or
//! the deadline of the next interrupt), never by ticking.

use crate::device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
use serde::{Deserialize, Serialize};

const NAME: &str = "hpet";
const VERSION: u32 = 1;

/// Where the register block lives (the ACPI HPET table and DSDT say so too).
pub const BASE: u64 = 0xFED0_0000;
/// The register block: 1 KiB.
pub const LEN: u64 = 0x400;
/// Number of comparators.
pub const TIMERS: usize = 3;
/// Main counter tick in femtoseconds: 10 ns, 100 MHz (QEMU's rate).
pub const PERIOD_FS: u64 = 10_000_000;
const NS_PER_TICK: u64 = PERIOD_FS / 1_000_000;
/// The low half of the General Capabilities and ID register, which the ACPI HPET table repeats
/// as the event timer block ID: vendor 8086 (bits 31:16), LEG_RT_CAP (15), COUNT_SIZE_CAP
/// (13: 64-bit), NUM_TIM_CAP (12:8: the last timer's number), REV_ID 1.
pub const EVENT_TIMER_BLOCK_ID: u32 = 0x8086 << 16 | 1 << 15 | 1 << 13 | ((TIMERS as u32 - 1) << 8) | 1;
const CAPABILITIES: u64 = PERIOD_FS << 32 | EVENT_TIMER_BLOCK_ID as u64;
/// Tn_INT_ROUTE_CAP of every timer: I/O APIC inputs 20-23, pins no other device uses.
pub const INT_ROUTE_CAP: u32 = 0x00F0_0000;

// Register offsets (specification section 2.3.1).
const GEN_CAP: u64 = 0x000;
const GEN_CONF: u64 = 0x010;
const GEN_INT_STATUS: u64 = 0x020;
const MAIN_COUNTER: u64 = 0x0F0;
const TIMER_REGS: u64 = 0x100;
const TIMER_STRIDE: u64 = 0x20;
const TN_CONF: u64 = 0x00;
const TN_COMPARATOR: u64 = 0x08;
const TN_FSB_ROUTE: u64 = 0x10;

// General configuration.
const ENABLE_CNF: u64 = 1 << 0;
const LEG_RT_CNF: u64 = 1 << 1;

// Timer configuration and capabilities.
const TN_INT_TYPE_LEVEL: u64 = 1 << 1;
const TN_INT_ENB: u64 = 1 << 2;
const TN_TYPE_PERIODIC: u64 = 1 << 3;
const TN_PER_INT_CAP: u64 = 1 << 4;
const TN_SIZE_CAP: u64 = 1 << 5;
const TN_VAL_SET: u64 = 1 << 6;
const TN_32MODE: u64 = 1 << 8;
const TN_INT_ROUTE_SHIFT: u32 = 9;
const TN_INT_ROUTE: u64 = 0x1F << TN_INT_ROUTE_SHIFT;
/// What software can write. Tn_FSB_EN_CNF stays 0: Tn_FSB_INT_DEL_CAP is 0.
const TN_WRITABLE: u64 = TN_INT_TYPE_LEVEL | TN_INT_ENB | TN_TYPE_PERIODIC | TN_VAL_SET | TN_32MODE | TN_INT_ROUTE;
/// The read-only capability bits every timer reports: periodic capable, 64-bit, the routes.
const TN_CAPS: u64 = TN_PER_INT_CAP | TN_SIZE_CAP | (INT_ROUTE_CAP as u64) << 32;

/// The ISA lines LegacyReplacement Route gives timers 0 and 1.
const LEGACY_LINES: [u8; 2] = [0, 8];

/// One comparator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Timer {
    /// The writable bits of the configuration register (the capabilities are constants).
    config: u64,
    /// The comparator; in periodic mode the accumulator that each match advances.
    comparator: u64,
    /// The last value written to the comparator: what periodic mode adds on each match.
    period: u64,
    /// The FSB interrupt route register: kept as written, never used (no FSB delivery).
    fsb_route: u64,
}

impl Timer {
    fn is(&self, bit: u64) -> bool {
        self.config & bit != 0
    }

    /// All ones over the bits the comparison uses: 32 in 32-bit mode, else 64.
    fn mask(&self) -> u64 {
        if self.is(TN_32MODE) {
            u32::MAX as u64
        } else {
            u64::MAX
        }
    }

    fn route(&self) -> u8 {
        ((self.config & TN_INT_ROUTE) >> TN_INT_ROUTE_SHIFT) as u8
    }

    /// Distance in counter ticks from `from` to the next value at which this timer fires:
    /// the comparator match, and for a 32-bit one-shot timer also the wrap of the low 32
    /// bits, as the specification has it. Between 1 and the counter's range (which stands for
    /// "not before a full wrap").
    fn next_event(&self, from: u64) -> u128 {
        let span = self.mask() as u128 + 1;
        let ahead = |target: u64| match (target.wrapping_sub(from) & self.mask()) as u128 {
            0 => span,
            d => d,
        };
        let matched = ahead(self.comparator);
        if self.is(TN_32MODE) && !self.is(TN_TYPE_PERIODIC) {
            matched.min(ahead(0))
        } else {
            matched
        }
    }

    /// The comparator moved on past every periodic match up to `elapsed` ticks after the
    /// first one, `first` ticks away.
    fn advance_periodic(&mut self, first: u128, elapsed: u128) {
        let span = self.mask() as u128 + 1;
        let step = match self.period as u128 % span {
            0 => span,
            p => p,
        };
        let matches = 1 + (elapsed - first) / step;
        self.comparator = ((self.comparator as u128 + matches * step) % span) as u64;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// General configuration: ENABLE_CNF and LEG_RT_CNF.
    config: u64,
    /// General interrupt status: bit n set while level-triggered timer n's interrupt is active.
    status: u64,
    /// The main counter: its value while halted; while running, its value at `origin`.
    counter: u64,
    /// While running: the virtual time (ns) at which the counter held `counter`.
    origin: u64,
    /// The counter value up to which comparator matches have been handled (running only).
    checked: u64,
    timers: [Timer; TIMERS],
    /// Interrupt lines this device holds high (bit n: line n; 0 and 8 ISA, 20-23 I/O APIC).
    lines: u32,
}

pub struct Hpet {
    s: State,
}

impl Default for Hpet {
    fn default() -> Self {
        Hpet::new()
    }
}

impl Hpet {
    pub fn new() -> Hpet {
        Hpet { s: State::default() }
    }

    fn enabled(&self) -> bool {
        self.s.config & ENABLE_CNF != 0
    }

    fn legacy(&self) -> bool {
        self.s.config & LEG_RT_CNF != 0
    }

    /// Whole ticks since the counter last started.
    fn elapsed(&self, now: u64) -> u64 {
        now.saturating_sub(self.s.origin) / NS_PER_TICK
    }

    /// The main counter at virtual time `now`.
    fn counter(&self, now: u64) -> u64 {
        if self.enabled() {
            self.s.counter.wrapping_add(self.elapsed(now))
        } else {
            self.s.counter
        }
    }

    /// The line timer `n` interrupts on now: IRQ 0 / IRQ 8 for timers 0 and 1 under
    /// LegacyReplacement Route, else its Tn_INT_ROUTE_CNF (none while that is not a route the
    /// timer has, as after reset).
    fn line_of(&self, n: usize) -> Option<u8> {
        if n < 2 && self.legacy() {
            return Some(LEGACY_LINES[n]);
        }
        let route = self.s.timers[n].route();
        (INT_ROUTE_CAP & 1 << route != 0).then_some(route)
    }

    /// Handles every comparator match between the last look and `now`.
    fn sync(&mut self, cx: &mut DeviceContext) {
        if !self.enabled() {
            return;
        }
        let now_count = self.counter(cx.now);
        let elapsed = now_count.wrapping_sub(self.s.checked) as u128;
        if elapsed == 0 {
            return;
        }
        for n in 0..TIMERS {
            let t = &mut self.s.timers[n];
            let first = t.next_event(self.s.checked);
            if first > elapsed {
                continue;
            }
            if t.is(TN_TYPE_PERIODIC) {
                t.advance_periodic(first, elapsed);
            }
            // Missed matches (a stalled host, a restored snapshot) collapse into one interrupt.
            self.fire(n, cx);
        }
        self.s.checked = now_count;
    }

    /// Timer `n` matched: a level-triggered timer sets its status bit (its line follows in
    /// `update_lines`), an edge-triggered one pulses its line if interrupts are enabled.
    fn fire(&mut self, n: usize, cx: &mut DeviceContext) {
        let t = &self.s.timers[n];
        if t.is(TN_INT_TYPE_LEVEL) {
            self.s.status |= 1 << n;
            return;
        }
        if !t.is(TN_INT_ENB) {
            return;
        }
        match self.line_of(n) {
            // A line held high by a level-triggered timer shows no edge.
            Some(line) if self.s.lines & 1 << line == 0 => cx.pulse_irq(line),
            Some(_) => {}
            None => tracing::debug!("HPET timer {n} fired with no valid interrupt route ({})", t.route()),
        }
    }

    /// Drives each line to the OR of the level-triggered interrupts routed to it.
    fn update_lines(&mut self, cx: &mut DeviceContext) {
        let mut want = 0u32;
        if self.enabled() {
            for n in 0..TIMERS {
                let t = &self.s.timers[n];
                if t.is(TN_INT_TYPE_LEVEL) && t.is(TN_INT_ENB) && self.s.status & 1 << n != 0 {
                    if let Some(line) = self.line_of(n) {
                        want |= 1 << line;
                    }
                }
            }
        }
        let changed = want ^ self.s.lines;
        for line in 0..32u8 {
            if changed & 1 << line != 0 {
                cx.set_irq(line, want & 1 << line != 0);
            }
        }
        self.s.lines = want;
    }

    /// Asks for the tick of the next match of a timer whose interrupt is enabled (matches of
    /// the others only change registers, which the next access brings up to date).
    fn schedule(&self, cx: &mut DeviceContext) {
        if !self.enabled() {
            cx.set_deadline(None);
            return;
        }
        let ticks = self.elapsed(cx.now) as u128;
        let next = self
            .s
            .timers
            .iter()
            .filter(|t| t.is(TN_INT_ENB))
            .map(|t| t.next_event(self.s.checked))
            .min();
        let at = next.and_then(|d| u64::try_from((ticks + d) * NS_PER_TICK as u128 + self.s.origin as u128).ok());
        cx.set_deadline(at);
    }

    /// Every access: matches caught up first, then the access, then the lines and deadline.
    fn access<R>(&mut self, cx: &mut DeviceContext, f: impl FnOnce(&mut Self, &mut DeviceContext) -> R) -> R {
        self.sync(cx);
        let r = f(self, cx);
        self.update_lines(cx);
        self.schedule(cx);
        r
    }

    /// The 64-bit register at `reg` (8-byte aligned).
    fn read_reg(&self, reg: u64, now: u64) -> u64 {
        match reg {
            GEN_CAP => CAPABILITIES,
            GEN_CONF => self.s.config,
            GEN_INT_STATUS => self.s.status,
            MAIN_COUNTER => self.counter(now),
            _ => match timer_reg(reg) {
                Some((n, TN_CONF)) => self.s.timers[n].config | TN_CAPS,
                Some((n, TN_COMPARATOR)) => self.s.timers[n].comparator,
                Some((n, TN_FSB_ROUTE)) => self.s.timers[n].fsb_route,
                _ => 0,
            },
        }
    }

    /// A write of `len` bits of `value` at bit `shift` of the 64-bit register at `reg`.
    fn write_reg(&mut self, reg: u64, shift: u32, len: u32, value: u64, cx: &mut DeviceContext) {
        match reg {
            GEN_CAP => tracing::debug!("HPET: write to the read-only capabilities register"),
            GEN_CONF => {
                let new = deposit(self.s.config, shift, len, value) & (ENABLE_CNF | LEG_RT_CNF);
                self.write_config(new, cx);
            }
            GEN_INT_STATUS => {
                // Write 1 to clear; only level-triggered timers ever set their bit.
                self.s.status &= !deposit(0, shift, len, value);
            }
            MAIN_COUNTER => {
                if self.enabled() {
                    tracing::debug!("HPET: main counter written while running; ignored (as QEMU)");
                } else {
                    self.s.counter = deposit(self.s.counter, shift, len, value);
                }
            }
            _ => match timer_reg(reg) {
                Some((n, TN_CONF)) => self.write_timer_config(n, deposit(self.s.timers[n].config, shift, len, value)),
                Some((n, TN_COMPARATOR)) => self.write_comparator(n, shift, len, value),
                Some((n, TN_FSB_ROUTE)) => {
                    let t = &mut self.s.timers[n];
                    t.fsb_route = deposit(t.fsb_route, shift, len, value);
                }
                _ => tracing::debug!(reg, value, "HPET: write to a reserved register"),
            },
        }
    }

    fn write_config(&mut self, new: u64, cx: &mut DeviceContext) {
        let old = self.s.config;
        if (old ^ new) & ENABLE_CNF != 0 {
            if new & ENABLE_CNF != 0 {
                // The counter starts from where it stood; matches count from the next tick.
                self.s.origin = cx.now;
                self.s.checked = self.s.counter;
            } else {
                self.s.counter = self.counter(cx.now);
            }
        }
        self.s.config = new;
        if (old ^ new) & LEG_RT_CNF != 0 {
            cx.event(MachineEvent::LegacyReplacement(new & LEG_RT_CNF != 0));
        }
    }

    fn write_timer_config(&mut self, n: usize, value: u64) {
        let t = &mut self.s.timers[n];
        let mut new = value & TN_WRITABLE;
        let route = ((new & TN_INT_ROUTE) >> TN_INT_ROUTE_SHIFT) as u32;
        if INT_ROUTE_CAP & 1 << route == 0 {
            // The specification: an unsupported route does not read back as written.
            if route != t.route() as u32 {
                tracing::debug!("HPET timer {n}: interrupt route {route} is not one it has; kept {}", t.route());
            }
            new = new & !TN_INT_ROUTE | t.config & TN_INT_ROUTE;
        }
        if new & TN_32MODE != 0 {
            t.comparator &= u32::MAX as u64;
            t.period &= u32::MAX as u64;
        }
        t.config = new;
        if new & TN_INT_TYPE_LEVEL == 0 {
            // Edge-triggered timers have no status to report.
            self.s.status &= !(1 << n);
        }
    }

    /// A comparator write: sets the comparator in one-shot mode or with Tn_VAL_SET_CNF (which
    /// then clears), and is always the value periodic mode adds ("the last value written").
    fn write_comparator(&mut self, n: usize, shift: u32, len: u32, value: u64) {
        let t = &mut self.s.timers[n];
        let (len, value) = if t.is(TN_32MODE) {
            if shift != 0 {
                tracing::debug!("HPET timer {n}: write to the comparator's upper half in 32-bit mode; ignored");
                return;
            }
            (64, value & u32::MAX as u64)
        } else {
            (len, value)
        };
        if !t.is(TN_TYPE_PERIODIC) || t.is(TN_VAL_SET) {
            t.comparator = deposit(t.comparator, shift, len, value);
        }
        t.period = deposit(t.period, shift, len, value);
        t.config &= !TN_VAL_SET;
    }
}

/// Timer number and register (TN_CONF, TN_COMPARATOR, TN_FSB_ROUTE or reserved) of `reg`.
fn timer_reg(reg: u64) -> Option<(usize, u64)> {
    let n = reg.checked_sub(TIMER_REGS)? / TIMER_STRIDE;
    (n < TIMERS as u64).then(|| (n as usize, (reg - TIMER_REGS) % TIMER_STRIDE))
}

/// `old` with bits `shift..shift + len` replaced by the low `len` bits of `value`.
fn deposit(old: u64, shift: u32, len: u32, value: u64) -> u64 {
    let field = if len >= 64 { u64::MAX } else { (1u64 << len) - 1 } << shift;
    old & !field | (value << shift) & field
}

/// QEMU's accesses: 4 or 8 bytes, naturally aligned. Anything else reads 0 and writes nothing.
fn valid_access(offset: u64, size: u8) -> bool {
    matches!(size, 4 | 8) && offset.is_multiple_of(u64::from(size))
}

impl Device for Hpet {
    fn name(&self) -> &'static str {
        NAME
    }

    fn mmio_read(&mut self, offset: u64, size: u8, cx: &mut DeviceContext) -> u64 {
        if !valid_access(offset, size) {
            tracing::debug!(offset, size, "HPET: read of unsupported size or alignment reads 0");
            return 0;
        }
        self.access(cx, |h, cx| {
            let v = h.read_reg(offset & !7, cx.now) >> ((offset & 4) * 8);
            if size == 4 {
                v & u32::MAX as u64
            } else {
                v
            }
        })
    }

    fn mmio_write(&mut self, offset: u64, size: u8, value: u64, cx: &mut DeviceContext) {
        if !valid_access(offset, size) {
            tracing::debug!(offset, size, value, "HPET: write of unsupported size or alignment ignored");
            return;
        }
        self.access(cx, |h, cx| {
            let shift = (offset & 4) as u32 * 8;
            h.write_reg(offset & !7, shift, size as u32 * 8, value, cx)
        })
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    fn reset(&mut self) {
        self.s = State::default();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        self.s = snapshot.decode(NAME, VERSION)?;
        Ok(())
    }
}

/// The chipset's half of LegacyReplacement Route, kept by the board: ISA lines 0 and 8 come
/// from the 8254 and the RTC, or, while the HPET's LEG_RT_CNF is set, from HPET timers 0 and 1
/// only (the specification's "the 8254/RTC will not cause any interrupts"). Both sides' last
/// levels are kept, so switching brings the selected side's level onto the line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyRoute {
    enabled: bool,
    /// Levels last driven on IRQ 0 and IRQ 8 by the 8254 and the RTC.
    legacy: [bool; 2],
    /// Levels last driven on IRQ 0 and IRQ 8 by the HPET.
    hpet: [bool; 2],
}

impl LegacyRoute {
    /// Whether `line` is one LegacyReplacement Route decides.
    pub fn switches(line: u8) -> bool {
        LEGACY_LINES.contains(&line)
    }

    /// A source (the HPET, or else the 8254 or RTC) drove `line` (0 or 8) to `level`: the
    /// level the line takes, if that source is the one connected now.
    pub fn drive(&mut self, from_hpet: bool, line: u8, level: bool) -> Option<bool> {
        let i = usize::from(line == LEGACY_LINES[1]);
        let side = if from_hpet { &mut self.hpet } else { &mut self.legacy };
        side[i] = level;
        (from_hpet == self.enabled).then_some(level)
    }

    /// LegacyReplacement Route switched on or off: the levels lines 0 and 8 take.
    pub fn set_enabled(&mut self, on: bool) -> [(u8, bool); 2] {
        self.enabled = on;
        let side = if on { self.hpet } else { self.legacy };
        [(LEGACY_LINES[0], side[0]), (LEGACY_LINES[1], side[1])]
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const T0: u64 = TIMER_REGS;
    const T1: u64 = TIMER_REGS + TIMER_STRIDE;
    const T2: u64 = TIMER_REGS + 2 * TIMER_STRIDE;
    /// Timer configuration: interrupt enabled, routed to I/O APIC pin 20.
    const PIN20: u64 = TN_INT_ENB | 20 << TN_INT_ROUTE_SHIFT;

    /// An HPET on a fake clock: the test moves `now`, deadlines fire as the board fires them.
    struct Bench {
        hpet: Hpet,
        now: u64,
        deadline: Option<u64>,
        /// (time, line, level) of every change driven.
        irqs: Vec<(u64, u8, bool)>,
        events: Vec<MachineEvent>,
    }

    impl Bench {
        fn new() -> Bench {
            let mut b = Bench { hpet: Hpet::new(), now: 0, deadline: None, irqs: Vec::new(), events: Vec::new() };
            b.with(|h, cx| h.power_on(cx));
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Hpet, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::new());
            let mut dl = self.deadline;
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            let r = f(&mut self.hpet, &mut cx);
            self.deadline = dl;
            self.irqs.extend(irqs.into_iter().map(|(l, v)| (self.now, l, v)));
            self.events.extend(events);
            r
        }

        fn read(&mut self, offset: u64, size: u8) -> u64 {
            self.with(|h, cx| h.mmio_read(offset, size, cx))
        }

        fn read32(&mut self, offset: u64) -> u32 {
            self.read(offset, 4) as u32
        }

        fn read64(&mut self, offset: u64) -> u64 {
            self.read(offset, 8)
        }

        fn write(&mut self, offset: u64, size: u8, value: u64) {
            self.with(|h, cx| h.mmio_write(offset, size, value, cx));
        }

        fn write32(&mut self, offset: u64, value: u32) {
            self.write(offset, 4, value as u64)
        }

        fn write64(&mut self, offset: u64, value: u64) {
            self.write(offset, 8, value)
        }

        /// Runs to `t`, firing each deadline at its time.
        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                assert!(d >= self.now, "deadline {d} in the past at {}", self.now);
                self.now = d;
                self.deadline = None;
                self.with(|h, cx| h.tick(cx));
            }
            self.now = t;
        }

        fn start(&mut self) {
            self.write32(GEN_CONF, ENABLE_CNF as u32);
        }

        /// Times of the rising edges on `line`.
        fn rises(&self, line: u8) -> Vec<u64> {
            self.irqs.iter().filter(|e| e.1 == line && e.2).map(|e| e.0).collect()
        }

        /// Whether `line` is high after the changes so far.
        fn level(&self, line: u8) -> bool {
            self.irqs.iter().rev().find(|e| e.1 == line).is_some_and(|e| e.2)
        }
    }

    #[test]
    fn capabilities_match_the_acpi_table_and_qemu() {
        let mut b = Bench::new();
        assert_eq!(EVENT_TIMER_BLOCK_ID, 0x8086_A201);
        assert_eq!(b.read32(GEN_CAP), 0x8086_A201);
        assert_eq!(b.read32(GEN_CAP + 4), 10_000_000, "10 ns per tick");
        assert_eq!(b.read64(GEN_CAP), 0x0098_9680_8086_A201);
        for t in [T0, T1, T2] {
            assert_eq!(b.read32(t), 0x30, "periodic capable, 64-bit, everything off");
            assert_eq!(b.read32(t + 4), INT_ROUTE_CAP);
            assert_eq!(b.read64(t + TN_COMPARATOR), 0, "comparator after reset");
        }
        // Read-only bits stay.
        b.write64(GEN_CAP, 0);
        b.write32(T0, 0xFFFF_FFFF);
        b.write32(T0 + 4, 0);
        assert_eq!(b.read64(GEN_CAP), CAPABILITIES);
        let cfg = b.read64(T0);
        assert_eq!(cfg >> 32, INT_ROUTE_CAP as u64);
        assert_eq!(cfg & 0xFFFF_FFFF, 0x0000_014E | 0x30, "writable bits set, FSB and reserved bits clear, route kept");
        assert_eq!(b.read32(GEN_CONF + 4), 0);
        b.write64(GEN_CONF, u64::MAX);
        assert_eq!(b.read64(GEN_CONF), 3);
    }

    #[test]
    fn reserved_registers_and_odd_accesses_read_zero() {
        let mut b = Bench::new();
        b.start();
        b.write32(T2, PIN20 as u32);
        for off in [0x008, 0x018, 0x028, 0x030, 0x0E0, 0x0F8, T0 + 0x18, T2 + 0x18, 0x160, 0x200, 0x3F8] {
            b.write32(off, 0xFFFF_FFFF);
            assert_eq!(b.read64(off), 0, "{off:#x}");
        }
        b.run_to(MS);
        // Byte, word and misaligned accesses: 0, and writes do nothing.
        for (off, size) in [(GEN_CAP, 1), (GEN_CAP, 2), (GEN_CAP + 2, 4), (GEN_CAP + 4, 8), (MAIN_COUNTER, 1)] {
            assert_eq!(b.read(off, size), 0, "{off:#x}/{size}");
        }
        b.write(GEN_CONF, 1, 0);
        b.write(GEN_CONF + 2, 4, 0);
        b.write(T2, 2, 0);
        assert_eq!(b.read32(GEN_CONF), 1, "still enabled");
        assert_eq!(b.read32(T2), (PIN20 | TN_CAPS) as u32);
        // The FSB route register keeps what is written (no FSB delivery behind it).
        b.write64(T1 + TN_FSB_ROUTE, 0x1234_5678_9ABC_DEF0);
        assert_eq!(b.read32(T1 + TN_FSB_ROUTE + 4), 0x1234_5678);
    }

    #[test]
    fn the_counter_runs_at_100_mhz_only_while_enabled() {
        let mut b = Bench::new();
        b.run_to(MS);
        assert_eq!(b.read64(MAIN_COUNTER), 0, "halted after reset");
        b.start();
        b.run_to(2 * MS);
        assert_eq!(b.read64(MAIN_COUNTER), 100_000);
        b.run_to(2 * MS + 19);
        assert_eq!(b.read32(MAIN_COUNTER), 100_001);
        b.run_to(3 * MS + 5);
        assert_eq!(b.read32(MAIN_COUNTER), 200_000);
        b.write32(GEN_CONF, 0);
        b.run_to(1_000 * MS);
        assert_eq!(b.read64(MAIN_COUNTER), 200_000, "halted keeps its value");
        b.start();
        b.run_to(1_001 * MS);
        assert_eq!(b.read64(MAIN_COUNTER), 300_000, "and goes on from it");
        assert_eq!(b.deadline, None, "nothing to interrupt");
    }

    #[test]
    fn counter_writes_while_halted_both_halves() {
        let mut b = Bench::new();
        b.write32(MAIN_COUNTER, 0xFFFF_FFF0);
        b.write32(MAIN_COUNTER + 4, 0x0000_0001);
        assert_eq!(b.read64(MAIN_COUNTER), 0x1_FFFF_FFF0);
        b.write64(MAIN_COUNTER, 0x0000_0002_FFFF_FFFE);
        assert_eq!(b.read32(MAIN_COUNTER + 4), 2);
        b.start();
        b.run_to(50);
        // Both halves read live: the carry into the upper half shows.
        assert_eq!(b.read32(MAIN_COUNTER), 3);
        assert_eq!(b.read32(MAIN_COUNTER + 4), 3);
        b.write64(MAIN_COUNTER, 0);
        assert_eq!(b.read64(MAIN_COUNTER), 0x3_0000_0003, "ignored while running, as QEMU");
        b.write32(GEN_CONF, 0);
        b.write32(MAIN_COUNTER + 4, 0);
        assert_eq!(b.read64(MAIN_COUNTER), 3);
    }

    #[test]
    fn one_shot_edge_interrupt_fires_once_at_the_match() {
        let mut b = Bench::new();
        b.write32(T0, PIN20 as u32);
        b.write64(T0 + TN_COMPARATOR, 1_000);
        assert_eq!(b.deadline, None, "counter halted");
        b.start();
        assert_eq!(b.deadline, Some(10 * US));
        b.run_to(MS);
        assert_eq!(b.rises(20), vec![10 * US]);
        assert!(!b.level(20), "a pulse");
        assert_eq!(b.read32(GEN_INT_STATUS), 0, "no status for edge interrupts");
        // A 64-bit one-shot comparator behind the counter fires only after a full wrap.
        assert_eq!(b.deadline, None);
        b.run_to(1_000 * MS);
        assert_eq!(b.rises(20).len(), 1);
        // Rearmed ahead of the counter: fires again.
        let now = b.read64(MAIN_COUNTER);
        b.write64(T0 + TN_COMPARATOR, now + 500);
        b.run_to(1_001 * MS);
        assert_eq!(b.rises(20), vec![10 * US, 1_000 * MS + 5 * US]);
    }

    #[test]
    fn a_comparator_at_the_counter_waits_for_the_next_pass() {
        let mut b = Bench::new();
        b.write32(T1, (PIN20 | TN_32MODE) as u32);
        b.start();
        b.run_to(10 * US);
        b.write32(T1 + TN_COMPARATOR, 1_000);
        b.run_to(20 * US);
        assert!(b.rises(20).is_empty(), "the match is a counter value to come");
        // Next: the wrap of the low half (a 32-bit one-shot interrupts there too), then the
        // match a whole wrap later.
        assert_eq!(b.deadline, Some((1u64 << 32) * 10));
        b.write32(T1, PIN20 as u32);
        assert_eq!(b.deadline, None, "over 64 bits the next pass is centuries away");
    }

    #[test]
    fn level_interrupt_holds_until_status_is_cleared() {
        let mut b = Bench::new();
        b.write32(T2, (PIN20 | TN_INT_TYPE_LEVEL) as u32);
        b.write64(T2 + TN_COMPARATOR, 100);
        b.start();
        b.run_to(MS);
        assert_eq!(b.rises(20), vec![US]);
        assert!(b.level(20));
        assert_eq!(b.read32(GEN_INT_STATUS), 1 << 2);
        b.write32(GEN_INT_STATUS, 0b011);
        assert!(b.level(20), "writing 1 to other bits, or 0, does nothing");
        assert_eq!(b.read32(GEN_INT_STATUS), 1 << 2);
        b.write32(GEN_INT_STATUS, 1 << 2);
        assert!(!b.level(20));
        assert_eq!(b.read32(GEN_INT_STATUS), 0);
    }

    #[test]
    fn level_status_without_interrupt_enable_and_across_halting() {
        let mut b = Bench::new();
        b.write32(T0, (TN_INT_TYPE_LEVEL | 21 << TN_INT_ROUTE_SHIFT) as u32);
        b.write64(T0 + TN_COMPARATOR, 100);
        b.start();
        assert_eq!(b.deadline, None, "nothing to interrupt");
        b.run_to(MS);
        assert_eq!(b.read32(GEN_INT_STATUS), 1, "the timer still sets its status bit");
        assert!(b.irqs.is_empty());
        b.write32(T0, (TN_INT_TYPE_LEVEL | TN_INT_ENB | 21 << TN_INT_ROUTE_SHIFT) as u32);
        assert!(b.level(21), "enabling the interrupt raises the active status");
        b.write32(GEN_CONF, 0);
        assert!(!b.level(21), "halted: no interrupts");
        assert_eq!(b.read32(GEN_INT_STATUS), 1);
        b.start();
        assert!(b.level(21));
        // Switching to edge drops the status and the line.
        b.write32(T0, (TN_INT_ENB | 21 << TN_INT_ROUTE_SHIFT) as u32);
        assert!(!b.level(21));
        assert_eq!(b.read32(GEN_INT_STATUS), 0);
    }

    #[test]
    fn periodic_accumulator_and_period() {
        let mut b = Bench::new();
        // As Linux: VAL_SET and the first expiry, then the period in a second write.
        b.write32(T0, (PIN20 | TN_TYPE_PERIODIC | TN_VAL_SET) as u32);
        assert_eq!(b.read32(T0) as u64 & TN_VAL_SET, TN_VAL_SET);
        b.write64(T0 + TN_COMPARATOR, 1_000);
        assert_eq!(b.read32(T0) as u64 & TN_VAL_SET, 0, "VAL_SET clears itself");
        b.write64(T0 + TN_COMPARATOR, 500);
        assert_eq!(b.read64(T0 + TN_COMPARATOR), 1_000, "without VAL_SET only the period changes");
        b.start();
        b.run_to(35 * US);
        assert_eq!(b.rises(20), vec![10 * US, 15 * US, 20 * US, 25 * US, 30 * US, 35 * US]);
        assert_eq!(b.read64(T0 + TN_COMPARATOR), 4_000, "the accumulator: the next match");
        // Time jumps (a long host stall): one interrupt, the accumulator past the counter.
        b.deadline = None;
        b.run_to(1_000_072 * 10);
        b.with(|h, cx| h.tick(cx));
        assert_eq!(b.rises(20).len(), 7);
        assert_eq!(b.read64(T0 + TN_COMPARATOR), 1_000_500);
        assert_eq!(b.deadline, Some(1_000_500 * 10));
    }

    #[test]
    fn periodic_32bit_mode_wraps_the_accumulator() {
        let mut b = Bench::new();
        b.write64(MAIN_COUNTER, 0x7_FFFF_FF00);
        b.write32(T1, (PIN20 | TN_TYPE_PERIODIC | TN_VAL_SET | TN_32MODE) as u32);
        b.write32(T1 + TN_COMPARATOR, 0xFFFF_FFC0);
        b.write32(T1 + TN_COMPARATOR, 0x80);
        b.write32(T1 + TN_COMPARATOR + 4, 0x1234);
        assert_eq!(b.read64(T1 + TN_COMPARATOR), 0xFFFF_FFC0, "upper half ignored in 32-bit mode");
        b.start();
        b.run_to(0x300 * 10);
        // Matches at counter low halves FFFFFFC0, 00000040, 000000C0, 00000140 ...
        assert_eq!(b.rises(20), vec![0xC0 * 10, 0x140 * 10, 0x1C0 * 10, 0x240 * 10, 0x2C0 * 10]);
        assert_eq!(b.read64(T1 + TN_COMPARATOR), 0x240, "the next match: counter 0x7_FFFF_FF00 + 0x340");
        // Leaving 32-bit mode: the comparator is compared over 64 bits, so 0x240 lies far
        // behind the counter (0x8_0000_0200).
        b.write32(T1, (PIN20 | TN_TYPE_PERIODIC) as u32);
        b.run_to(0x400 * 10);
        assert_eq!(b.rises(20).len(), 5);
        assert_eq!(b.deadline, None);
    }

    #[test]
    fn one_shot_32bit_fires_at_the_wrap_and_at_the_match() {
        let mut b = Bench::new();
        b.write64(MAIN_COUNTER, 0xFFFF_FFF0);
        b.write32(T2, (PIN20 | TN_32MODE) as u32);
        b.write32(T2 + TN_COMPARATOR, 0x10);
        b.start();
        b.run_to(100 * 10);
        assert_eq!(b.rises(20), vec![0x10 * 10, 0x20 * 10]);
        assert_eq!(b.read64(MAIN_COUNTER), 0x1_0000_0054);
    }

    #[test]
    fn legacy_replacement_routes_timers_0_and_1_to_irq_0_and_8() {
        let mut b = Bench::new();
        for t in [T0, T1, T2] {
            b.write32(t, (TN_INT_ENB | TN_TYPE_PERIODIC | TN_VAL_SET | 22 << TN_INT_ROUTE_SHIFT) as u32);
        }
        b.write64(T0 + TN_COMPARATOR, 100);
        b.write64(T1 + TN_COMPARATOR, 300);
        b.write64(T2 + TN_COMPARATOR, 1_000);
        b.write32(GEN_CONF, (ENABLE_CNF | LEG_RT_CNF) as u32);
        assert_eq!(b.events, vec![MachineEvent::LegacyReplacement(true)]);
        b.run_to(30 * US);
        assert_eq!(b.rises(0), vec![US, 2 * US, 3 * US, 4 * US, 5 * US, 6 * US, 7 * US, 8 * US, 9 * US, 10 * US, 11 * US, 12 * US, 13 * US, 14 * US, 15 * US, 16 * US, 17 * US, 18 * US, 19 * US, 20 * US, 21 * US, 22 * US, 23 * US, 24 * US, 25 * US, 26 * US, 27 * US, 28 * US, 29 * US, 30 * US]);
        assert_eq!(b.rises(8), (1..=10).map(|k| 3 * k * US).collect::<Vec<_>>());
        assert_eq!(b.rises(22), vec![10 * US, 20 * US, 30 * US], "timer 2 keeps its own route");
        b.write32(GEN_CONF, ENABLE_CNF as u32);
        assert_eq!(b.events[1], MachineEvent::LegacyReplacement(false));
        b.irqs.clear();
        b.run_to(40 * US);
        assert!(b.rises(0).is_empty() && b.rises(8).is_empty());
        assert_eq!(b.rises(22).len(), 10 + 3 + 1, "all three on pin 22 now");
    }

    #[test]
    fn level_lines_move_with_the_legacy_route() {
        let mut b = Bench::new();
        b.write32(T0, (TN_INT_ENB | TN_INT_TYPE_LEVEL | 23 << TN_INT_ROUTE_SHIFT) as u32);
        b.write64(T0 + TN_COMPARATOR, 10);
        b.start();
        b.run_to(US);
        assert!(b.level(23));
        b.write32(GEN_CONF, (ENABLE_CNF | LEG_RT_CNF) as u32);
        assert!(!b.level(23) && b.level(0));
        b.write32(GEN_INT_STATUS, 1);
        assert!(!b.level(0));
    }

    #[test]
    fn unsupported_routes_do_not_read_back() {
        let mut b = Bench::new();
        b.write32(T0, (21 << TN_INT_ROUTE_SHIFT) as u32);
        b.write32(T0, (5 << TN_INT_ROUTE_SHIFT) as u32);
        assert_eq!(b.read32(T0) as u64 & TN_INT_ROUTE, 21 << TN_INT_ROUTE_SHIFT);
        // A timer never given a route interrupts nowhere.
        b.write32(T1, TN_INT_ENB as u32);
        b.write64(T1 + TN_COMPARATOR, 10);
        b.start();
        b.run_to(MS);
        assert!(b.irqs.is_empty());
    }

    #[test]
    fn the_board_side_switches_irq_0_and_8() {
        let mut r = LegacyRoute::default();
        assert!(LegacyRoute::switches(0) && LegacyRoute::switches(8) && !LegacyRoute::switches(2));
        assert_eq!(r.drive(false, 0, true), Some(true), "the 8254 drives IRQ 0");
        assert_eq!(r.drive(true, 8, true), None, "the HPET is not connected yet");
        assert_eq!(r.set_enabled(true), [(0, false), (8, true)]);
        assert_eq!(r.drive(false, 0, false), None, "the 8254 is cut off");
        assert_eq!(r.drive(false, 8, true), None, "so is the RTC");
        assert_eq!(r.drive(true, 0, true), Some(true));
        assert_eq!(r.set_enabled(false), [(0, false), (8, true)], "back: the 8254 low, the RTC high");
        assert!(!r.enabled());
    }

    #[test]
    fn save_restore_continues_identically() {
        let mut a = Bench::new();
        a.write32(T0, (PIN20 | TN_TYPE_PERIODIC | TN_VAL_SET | TN_32MODE) as u32);
        a.write32(T0 + TN_COMPARATOR, 700);
        a.write32(T0 + TN_COMPARATOR, 300);
        a.write32(T2, (TN_INT_ENB | TN_INT_TYPE_LEVEL | 21 << TN_INT_ROUTE_SHIFT) as u32);
        a.write64(T2 + TN_COMPARATOR, 2_000);
        a.write32(GEN_CONF, (ENABLE_CNF | LEG_RT_CNF) as u32);
        a.run_to(12_345);
        let snap = a.hpet.save();

        let mut b = Bench::new();
        b.hpet.restore(&snap).unwrap();
        b.now = a.now;
        b.deadline = a.deadline;
        a.irqs.clear();
        for bench in [&mut a, &mut b] {
            bench.run_to(50 * US);
            bench.write32(GEN_INT_STATUS, 4);
            bench.run_to(60 * US);
        }
        assert_eq!(a.irqs, b.irqs);
        assert!(!a.irqs.is_empty());
        assert_eq!(a.read64(MAIN_COUNTER), b.read64(MAIN_COUNTER));
        assert_eq!(a.hpet.save(), b.hpet.save());
        assert!(b.hpet.restore(&DeviceSnapshot::new("pit", VERSION, &())).is_err());
        assert!(b.hpet.restore(&DeviceSnapshot::new(NAME, VERSION + 1, &a.hpet.s)).is_err());
    }

    #[test]
    fn random_accesses_never_panic_and_deadlines_lie_ahead() {
        let mut b = Bench::new();
        let mut r: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let off = (r >> 8) % LEN;
            let size = [1, 2, 4, 8][(r & 3) as usize];
            // Mostly the registers that matter, with interesting values.
            let off = if r & 0x30 == 0 { off } else { [0x10, 0x20, 0xF0, 0xF4, T0, T0 + 8, T1, T1 + 12, T2, T2 + 8][(r >> 40) as usize % 10] };
            let v = if r & 0x40 != 0 { r >> 16 } else { (r >> 20) & 0xFFFF };
            if r & 0x80 != 0 {
                b.write(off, size, v);
            } else {
                b.read(off, size);
            }
            assert!(!matches!(b.deadline, Some(d) if d <= b.now), "deadline {:?} at {}", b.deadline, b.now);
            b.run_to(b.now + (r >> 44) % 30_000);
        }
    }
}
