//! The Intel 8254 interval timer (ports 0x40-0x43) and PC/AT system control port B (0x61: counter
//! 2 gate, speaker enable, refresh toggle, counter 2 OUT). Follows the Intel 8254 datasheet and
//! the PIIX3 NMI status/control register; counts are computed from virtual time, never ticked.

use crate::audio::{SoundSource, SoundStream, RATE};
use crate::device::{Device, DeviceContext, DeviceSnapshot, SnapshotError};
use crate::devices::pcspk::SpeakerSynth;
use serde::{Deserialize, Serialize};

const NAME: &str = "pit";
const VERSION: u32 = 1;

/// The PIT's CLK input: the 14.31818 MHz crystal divided by 12.
pub const PIT_HZ: u64 = 1_193_182;
const NS_PER_S: u64 = 1_000_000_000;
/// Port 0x61 bit 4 flips once per DRAM refresh request: 18 PIT clocks, about 15 µs.
const REFRESH_NS: u64 = 15_085;
/// At most this many OUT events of counter 0 are replayed one by one when time has jumped;
/// beyond that only the final level (and one edge, so the PIC sees it) is reported.
const MAX_REPLAYED_EVENTS: u32 = 16;

/// CLK pulses that have occurred by virtual time `ns`.
fn tick_at(ns: u64) -> u64 {
    (ns as u128 * PIT_HZ as u128 / NS_PER_S as u128) as u64
}

/// The first virtual time at which CLK pulse `tick` has occurred.
fn time_of(tick: u64) -> u64 {
    let ns = (tick as u128 * NS_PER_S as u128).div_ceil(PIT_HZ as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Read/write access selected by RW1-RW0 of the control word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Access {
    Lsb,
    Msb,
    /// Least significant byte first, then most significant byte.
    Word,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// The counting element holds no new count: after a control word, during the first byte
    /// of a two-byte count in mode 0, and in modes 1 and 5 until the first trigger.
    Idle,
    /// The count register moves into the counting element on this CLK pulse.
    Loading(u64),
    Counting,
}

/// One of the three counters, its state valid as of CLK pulse `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Counter {
    /// M2-M0 as written (6 and 7 are aliases of 2 and 3, but the status byte shows them).
    mode_bits: u8,
    bcd: bool,
    access: Access,
    /// The count register, 1 to 65536 (10000 in BCD; a written 0 means the maximum). None
    /// after a control word until a count is written.
    cr: Option<u32>,
    null_count: bool,
    /// Low byte of a two-byte count, waiting for the high byte.
    write_lsb: Option<u8>,
    /// Two-byte reads: the next byte read is the most significant one.
    read_msb: bool,
    latched_count: Option<u16>,
    latched_status: Option<u8>,
    gate: bool,
    phase: Phase,
    at: u64,
    /// The counting element (all modes but 3; 0 stands for the maximum count).
    ce: u32,
    /// Mode 3: the count in effect, which half-cycle runs and how far into it.
    n: u32,
    high: bool,
    pos: u64,
    /// Modes 0, 1, 4, 5: the terminal count of this load or trigger has not happened yet.
    armed: bool,
    out: bool,
}

impl Counter {
    fn new(gate: bool) -> Counter {
        Counter {
            mode_bits: 0,
            bcd: false,
            access: Access::Word,
            cr: None,
            null_count: true,
            write_lsb: None,
            read_msb: false,
            latched_count: None,
            latched_status: None,
            gate,
            phase: Phase::Idle,
            at: 0,
            ce: 0,
            n: 1,
            high: true,
            pos: 0,
            armed: false,
            out: false,
        }
    }

    fn mode(&self) -> u8 {
        match self.mode_bits {
            6 => 2,
            7 => 3,
            m => m,
        }
    }

    fn modulus(&self) -> u32 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// Modes 1 and 5 count regardless of GATE (it only triggers them); the others stop.
    fn enabled(&self) -> bool {
        matches!(self.mode(), 1 | 5) || self.gate
    }

    fn half_len(n: u32, high: bool) -> u64 {
        if high {
            (n as u64).div_ceil(2)
        } else {
            n as u64 / 2
        }
    }

    /// `ce` counted down by `k` pulses, wrapping at zero as the 8254 does in every mode.
    fn wrapped(&self, k: u64) -> u32 {
        let m = self.modulus() as u64;
        ((self.ce as u64 % m + m - k % m) % m) as u32
    }

    /// Moves the state forward to CLK pulse `t`.
    fn advance_to(&mut self, t: u64) {
        if t <= self.at {
            return;
        }
        if let Phase::Loading(l) = self.phase {
            if l > t {
                self.at = t;
                return;
            }
            self.at = self.at.max(l);
            self.load();
        }
        if self.phase == Phase::Counting && self.enabled() {
            self.count(t - self.at);
        }
        self.at = t;
    }

    /// The count register enters the counting element.
    fn load(&mut self) {
        let n = self.cr.unwrap_or(self.modulus());
        self.phase = Phase::Counting;
        self.null_count = false;
        self.ce = n;
        match self.mode() {
            0 | 1 => {
                self.armed = true;
                self.out = false;
            }
            2 => self.out = !(n == 1 && self.gate),
            3 => {
                self.n = n;
                self.high = true;
                self.pos = 0;
                self.out = true;
            }
            _ => {
                self.armed = true;
                self.out = true;
            }
        }
    }

    fn count(&mut self, k: u64) {
        match self.mode() {
            0 | 1 => {
                if self.armed && k >= self.ce as u64 {
                    self.armed = false;
                    self.out = true;
                }
                self.ce = self.wrapped(k);
            }
            2 => {
                let ce = self.ce.max(1) as u64;
                if k < ce {
                    self.ce = (ce - k) as u32;
                } else {
                    // Reloads happen with the count register as it is now: a count written
                    // during counting takes effect at the end of the current period.
                    let n = self.cr.unwrap_or(self.modulus()) as u64;
                    self.null_count = false;
                    self.ce = (n - (k - ce) % n) as u32;
                }
                self.out = self.ce != 1;
            }
            3 => {
                let mut k = k;
                loop {
                    let rem = Self::half_len(self.n, self.high).saturating_sub(self.pos);
                    if k < rem {
                        self.pos += k;
                        break;
                    }
                    k -= rem;
                    // End of a half-cycle: OUT flips and the count register reloads.
                    self.high = !self.high;
                    self.pos = 0;
                    self.n = self.cr.unwrap_or(self.modulus());
                    self.null_count = false;
                    k %= self.n as u64;
                }
                self.out = self.high;
            }
            _ => {
                if self.armed {
                    let ce = self.ce as u64;
                    if ce == 0 {
                        // Sitting on the strobe pulse: it ends on the next CLK.
                        if k >= 1 {
                            self.armed = false;
                            self.out = true;
                        }
                    } else if k == ce {
                        self.out = false;
                    } else if k > ce {
                        self.armed = false;
                        self.out = true;
                    }
                }
                self.ce = self.wrapped(k);
            }
        }
    }

    /// The next CLK pulse after `at` at which the state changes on its own (a load, a reload,
    /// a terminal count), or None if it never will without a write or a GATE edge.
    fn next_event(&self) -> Option<u64> {
        match self.phase {
            Phase::Idle => None,
            Phase::Loading(l) => Some(l.max(self.at + 1)),
            Phase::Counting if !self.enabled() => None,
            Phase::Counting => match self.mode() {
                0 | 1 => (self.armed && self.ce > 0).then(|| self.at + self.ce as u64),
                2 => {
                    if self.ce >= 2 {
                        Some(self.at + self.ce as u64 - 1)
                    } else if self.cr.unwrap_or(self.modulus()) >= 2 {
                        Some(self.at + 1)
                    } else {
                        None // count 1: OUT stays low
                    }
                }
                3 => {
                    if self.n == 1 && self.cr == Some(1) {
                        None // count 1: OUT stays high
                    } else {
                        Some(self.at + Self::half_len(self.n, self.high).saturating_sub(self.pos).max(1))
                    }
                }
                _ => match (self.armed, self.ce) {
                    (false, _) => None,
                    (true, 0) => Some(self.at + 1),
                    (true, ce) => Some(self.at + ce as u64),
                },
            },
        }
    }

    /// The counting element's value, binary, below the modulus.
    fn raw_count(&self) -> u32 {
        let v = if self.phase == Phase::Counting && self.mode() == 3 {
            // Mode 3 counts down by two; an odd count first drops by one (high half) or
            // three (low half).
            let (n, pos) = (self.n as u64, self.pos);
            if n % 2 == 0 {
                n.saturating_sub(2 * pos)
            } else if pos == 0 {
                n
            } else if self.high {
                (n + 1).saturating_sub(2 * pos)
            } else {
                (n - 1).saturating_sub(2 * pos)
            }
        } else {
            self.ce as u64
        };
        (v % self.modulus() as u64) as u32
    }

    /// The count as the guest reads it (binary, or BCD digits in BCD mode).
    fn readout(&self) -> u16 {
        let v = self.raw_count();
        if self.bcd {
            let v = v as u16;
            ((v / 1000) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10)
        } else {
            v as u16
        }
    }

    fn status(&self) -> u8 {
        let rw = match self.access {
            Access::Lsb => 1,
            Access::Msb => 2,
            Access::Word => 3,
        };
        (self.out as u8) << 7 | (self.null_count as u8) << 6 | rw << 4 | self.mode_bits << 1 | self.bcd as u8
    }

    /// A control word with RW bits other than 00: new mode, everything else reset.
    fn program(&mut self, t: u64, value: u8) {
        self.advance_to(t);
        // The counting element stops where it is; it reads back that value until reloaded.
        self.ce = self.raw_count();
        self.access = match (value >> 4) & 3 {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Word,
        };
        self.mode_bits = (value >> 1) & 7;
        self.bcd = value & 1 != 0;
        self.cr = None;
        self.null_count = true;
        self.write_lsb = None;
        self.read_msb = false;
        self.latched_count = None;
        self.latched_status = None;
        self.phase = Phase::Idle;
        self.armed = false;
        self.out = self.mode() != 0;
    }

    fn latch_count(&mut self, t: u64) {
        // A second latch before the first is read is ignored.
        if self.latched_count.is_none() {
            self.advance_to(t);
            self.latched_count = Some(self.readout());
        }
    }

    fn latch_status(&mut self, t: u64) {
        if self.latched_status.is_none() {
            self.advance_to(t);
            self.latched_status = Some(self.status());
        }
    }

    /// A count as written, in 1..=modulus.
    fn decode(&self, raw: u16) -> u32 {
        let v = if self.bcd {
            let digits = [raw >> 12, (raw >> 8) & 15, (raw >> 4) & 15, raw & 15];
            if digits.iter().any(|&d| d > 9) {
                tracing::debug!(raw, "PIT: count written in BCD mode is not BCD");
            }
            digits.iter().fold(0u32, |acc, &d| acc * 10 + d as u32) % 10_000
        } else {
            raw as u32
        };
        if v == 0 {
            self.modulus()
        } else {
            v
        }
    }

    fn write(&mut self, t: u64, byte: u8) {
        self.advance_to(t);
        let raw = match self.access {
            Access::Lsb => byte as u16,
            Access::Msb => (byte as u16) << 8,
            Access::Word => match self.write_lsb.take() {
                None => {
                    self.write_lsb = Some(byte);
                    if self.mode() == 0 {
                        // Mode 0: the first byte stops counting and drops OUT at once.
                        self.phase = Phase::Idle;
                        self.armed = false;
                        self.out = false;
                    }
                    return;
                }
                Some(lsb) => lsb as u16 | (byte as u16) << 8,
            },
        };
        self.cr = Some(self.decode(raw));
        self.null_count = true;
        match self.mode() {
            0 => {
                self.armed = false;
                self.out = false;
                self.phase = Phase::Loading(t + 1);
            }
            // Waits for a trigger on GATE.
            1 | 5 => {}
            2 | 3 => {
                if self.phase == Phase::Idle {
                    self.phase = Phase::Loading(t + 1);
                }
            }
            _ => self.phase = Phase::Loading(t + 1),
        }
    }

    fn pick_byte(&mut self, value: u16) -> (u8, bool) {
        match self.access {
            Access::Lsb => (value as u8, true),
            Access::Msb => ((value >> 8) as u8, true),
            Access::Word => {
                self.read_msb = !self.read_msb;
                if self.read_msb {
                    (value as u8, false)
                } else {
                    ((value >> 8) as u8, true)
                }
            }
        }
    }

    fn read(&mut self, t: u64) -> u8 {
        // A latched status comes first, whichever was latched first.
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        if let Some(c) = self.latched_count {
            let (b, done) = self.pick_byte(c);
            if done {
                self.latched_count = None;
            }
            return b;
        }
        self.advance_to(t);
        let c = self.readout();
        self.pick_byte(c).0
    }

    fn set_gate(&mut self, t: u64, level: bool) {
        self.advance_to(t);
        let rising = level && !self.gate;
        let falling = !level && self.gate;
        self.gate = level;
        match self.mode() {
            1 | 5 if rising && self.cr.is_some() => self.phase = Phase::Loading(t + 1),
            2 | 3 if falling => self.out = true,
            2 | 3 if rising && self.cr.is_some() => self.phase = Phase::Loading(t + 1),
            _ => {}
        }
    }
}

/// What the PC speaker is fed: counter 2's output, gated through port 0x61.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpeakerState {
    /// Port 0x61 bit 0: counter 2's GATE.
    pub gate: bool,
    /// Port 0x61 bit 1: counter 2's OUT reaches the speaker.
    pub data_enable: bool,
    /// Counter 2's mode (0-5).
    pub mode: u8,
    /// Counter 2's output level as of its last update.
    pub out: bool,
    /// The tone, when counter 2 runs a periodic mode (2 or 3) with its gate open.
    pub frequency_hz: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    counters: [Counter; 3],
    /// Port 0x61 bits 0-3 as written.
    port_b: u8,
    /// The level last driven on IRQ 0.
    irq0: bool,
    /// The speaker's sound as rendered so far.
    #[serde(default)]
    speaker: SpeakerSynth,
}

impl State {
    fn new() -> State {
        // Counters 0 and 1 have GATE tied high on a PC; counter 2's comes from port 0x61.
        State {
            counters: [Counter::new(true), Counter::new(true), Counter::new(false)],
            port_b: 0,
            irq0: false,
            speaker: SpeakerSynth::new(),
        }
    }
}

/// Counter 2 periods shorter than two frames are above the output's Nyquist frequency: the
/// band-limited speaker shows only their average level.
const FASTEST_AUDIBLE_COUNT: u32 = (2 * PIT_HZ / RATE as u64) as u32;

/// The 8254 and port 0x61. Counter 0's OUT is IRQ 0; counter 2 feeds the speaker.
pub struct Pit {
    s: State,
    stream: SoundStream,
}

impl Default for Pit {
    fn default() -> Self {
        Pit::new()
    }
}

impl Pit {
    pub fn new() -> Pit {
        Pit { s: State::new(), stream: SoundStream::new() }
    }

    /// The speaker's input level now: counter 2's OUT through port 0x61 bit 1, or the average
    /// level of a tone above the audible band.
    fn speaker_level(&self) -> f32 {
        let c = &self.s.counters[2];
        if self.s.port_b & 2 == 0 {
            return 0.0;
        }
        if c.phase == Phase::Counting && c.gate && matches!(c.mode(), 2 | 3) {
            let n = if c.mode() == 3 { c.n } else { c.cr.unwrap_or(c.modulus()) };
            if n <= FASTEST_AUDIBLE_COUNT && c.cr.unwrap_or(c.modulus()) <= FASTEST_AUDIBLE_COUNT {
                let high = if c.mode() == 3 { n.div_ceil(2) } else { n.saturating_sub(1) };
                return high as f32 / n.max(1) as f32;
            }
        }
        if c.out {
            1.0
        } else {
            0.0
        }
    }

    /// Renders the speaker up to `now`: every OUT edge of counter 2 since the last render
    /// becomes a band-limited step at its own time.
    fn render_speaker(&mut self, now: u64) {
        let t = tick_at(now);
        if self.stream.enabled() {
            loop {
                let c = &self.s.counters[2];
                let Some(e) = c.next_event().filter(|&e| e <= t) else { break };
                if self.s.port_b & 2 == 0 || self.speaker_level().fract() != 0.0 {
                    // Silent, or too fast to follow edge by edge: nothing changes until an
                    // access does.
                    break;
                }
                self.s.counters[2].advance_to(e);
                let level = self.speaker_level();
                self.s.speaker.step(time_of(e), level, &mut self.stream);
            }
        }
        self.s.counters[2].advance_to(t);
        let level = self.speaker_level();
        // Without a sink the edges were skipped: the level is where they left it.
        self.s.speaker.step(now, level, &mut self.stream);
        self.s.speaker.render(now, &mut self.stream);
    }

    /// After an access: the speaker follows whatever the access changed.
    fn update_speaker(&mut self, now: u64) {
        let level = self.speaker_level();
        self.s.speaker.step(now, level, &mut self.stream);
    }

    /// Counter 2 and the speaker bits of port 0x61, for the sound output.
    pub fn speaker_output(&self) -> SpeakerState {
        let c = &self.s.counters[2];
        let periodic = c.phase == Phase::Counting && matches!(c.mode(), 2 | 3) && c.gate;
        let n = if c.mode() == 3 { c.n } else { c.cr.unwrap_or(c.modulus()) };
        SpeakerState {
            gate: self.s.port_b & 1 != 0,
            data_enable: self.s.port_b & 2 != 0,
            mode: c.mode(),
            out: c.out,
            frequency_hz: periodic.then(|| PIT_HZ as f64 / n as f64),
        }
    }

    /// Brings counter 0 up to `cx.now`, replaying its OUT transitions on IRQ 0.
    fn sync(&mut self, cx: &mut DeviceContext) {
        let t = tick_at(cx.now);
        let State { counters, irq0, .. } = &mut self.s;
        let c = &mut counters[0];
        let mut replayed = 0;
        while let Some(e) = c.next_event().filter(|&e| e <= t) {
            if replayed == MAX_REPLAYED_EVENTS {
                // Far behind (a long host stall, a restored snapshot): report where OUT is,
                // with one edge on the way if it ends where it started, so the PIC latches it.
                c.advance_to(t);
                if c.out == *irq0 {
                    cx.set_irq(0, !c.out);
                }
                cx.set_irq(0, c.out);
                *irq0 = c.out;
                return;
            }
            c.advance_to(e);
            replayed += 1;
            if c.out != *irq0 {
                *irq0 = c.out;
                cx.set_irq(0, c.out);
            }
        }
        c.advance_to(t);
        if c.out != *irq0 {
            *irq0 = c.out;
            cx.set_irq(0, c.out);
        }
    }

    /// Asks to be woken at counter 0's next rising OUT edge: the one the (edge-triggered)
    /// IRQ 0 cares about. The falling edge before it is replayed then.
    fn schedule(&self, cx: &mut DeviceContext) {
        let mut c = self.s.counters[0].clone();
        let mut wake = None;
        for _ in 0..4 {
            let Some(e) = c.next_event() else { break };
            let before = c.out;
            c.advance_to(e);
            wake = Some(e);
            if !before && c.out {
                break;
            }
        }
        cx.set_deadline(wake.map(time_of));
    }

    fn read_byte(&mut self, port: u16, cx: &mut DeviceContext) -> u8 {
        let t = tick_at(cx.now);
        match port {
            0x40..=0x42 => self.s.counters[(port - 0x40) as usize].read(t),
            0x43 => {
                tracing::debug!("PIT: read of the write-only control word register");
                0xFF
            }
            0x61 => {
                let c2 = &mut self.s.counters[2];
                c2.advance_to(t);
                let refresh = (cx.now / REFRESH_NS) & 1 != 0;
                self.s.port_b & 0x0F | (refresh as u8) << 4 | (c2.out as u8) << 5
            }
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, value: u8, cx: &mut DeviceContext) {
        let t = tick_at(cx.now);
        match port {
            0x40..=0x42 => self.s.counters[(port - 0x40) as usize].write(t, value),
            0x43 => self.control(t, value),
            0x61 => {
                if value & 0xF0 != 0 {
                    tracing::trace!(value, "port 0x61: bits 4-7 are read-only");
                }
                self.s.port_b = value & 0x0F;
                self.s.counters[2].set_gate(t, value & 1 != 0);
            }
            _ => {}
        }
    }

    fn control(&mut self, t: u64, value: u8) {
        let sc = value >> 6;
        if sc == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 3-1
            // select counters 2, 1, 0.
            if value & 1 != 0 {
                tracing::debug!(value, "PIT read-back: reserved bit 0 set");
            }
            for (i, c) in self.s.counters.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    c.latch_count(t);
                }
                if value & 0x10 == 0 {
                    c.latch_status(t);
                }
            }
            return;
        }
        let c = &mut self.s.counters[sc as usize];
        if value & 0x30 == 0 {
            c.latch_count(t);
        } else {
            c.program(t, value);
        }
    }

    /// Every access: counter 0 caught up first (so its edges land in order), then the access,
    /// then counter 0 again (a control word can move OUT at once) and its next deadline.
    /// The speaker is rendered up to now before anything changes, and follows after.
    fn access<R>(&mut self, cx: &mut DeviceContext, f: impl FnOnce(&mut Self, &mut DeviceContext) -> R) -> R {
        self.render_speaker(cx.now);
        self.sync(cx);
        let r = f(self, cx);
        self.sync(cx);
        self.schedule(cx);
        self.update_speaker(cx.now);
        r
    }

    /// Whether `port` belongs to this device (for accesses wider than a byte).
    fn owns(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | 0x61)
    }
}

impl Device for Pit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        self.access(cx, |pit, cx| {
            // A wide access is a run of byte accesses on the 8-bit ISA bus.
            (0..size.min(4)).fold(0u32, |acc, i| {
                let p = port.wrapping_add(i as u16);
                let b = if Pit::owns(p) { pit.read_byte(p, cx) } else { 0xFF };
                acc | (b as u32) << (8 * i)
            })
        })
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.access(cx, |pit, cx| {
            for i in 0..size.min(4) {
                let p = port.wrapping_add(i as u16);
                if Pit::owns(p) {
                    pit.write_byte(p, (value >> (8 * i)) as u8, cx);
                }
            }
        })
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.access(cx, |_, _| {})
    }

    /// The 8254's power-on state is undefined; like QEMU, every counter starts in mode 3 with
    /// the maximum count, so IRQ 0 runs at 18.2 Hz before anything programs it.
    fn power_on(&mut self, cx: &mut DeviceContext) {
        let t = tick_at(cx.now);
        for c in &mut self.s.counters {
            c.at = t;
            c.program(t, 0x36);
            c.write(t, 0);
            c.write(t, 0);
        }
        self.s.irq0 = self.s.counters[0].out;
        cx.set_irq(0, self.s.irq0);
        self.schedule(cx);
    }

    fn reset(&mut self) {
        self.s = State::new();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn as_sound(&mut self) -> Option<&mut dyn SoundSource> {
        Some(self)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        // Counting divides by these: refuse values no running 8254 could hold.
        let sane = |c: &Counter| {
            c.mode_bits < 8 && c.n >= 1 && c.cr.iter().all(|n| (1..=c.modulus()).contains(n))
        };
        if !s.counters.iter().all(sane) {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom("counter state out of range"),
            });
        }
        self.s = s;
        Ok(())
    }
}

impl SoundSource for Pit {
    fn render(&mut self, cx: &mut DeviceContext) {
        self.render_speaker(cx.now);
    }

    fn stream(&mut self) -> &mut SoundStream {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;

    /// A PIT on a fake clock: the test moves `now`, deadlines fire as the board would fire them.
    struct Bench {
        pit: Pit,
        now: u64,
        deadline: Option<u64>,
        /// (time, level) of every change driven on IRQ 0.
        irq0: Vec<(u64, bool)>,
    }

    impl Bench {
        fn new() -> Bench {
            let mut b = Bench { pit: Pit::new(), now: 0, deadline: None, irq0: Vec::new() };
            b.with(|p, cx| p.power_on(cx));
            b.irq0.clear();
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Pit, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::<MachineEvent>::new());
            let mut dl = self.deadline;
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            let r = f(&mut self.pit, &mut cx);
            self.deadline = dl;
            for (line, level) in irqs {
                assert_eq!(line, 0, "the PIT only drives IRQ 0");
                self.irq0.push((self.now, level));
            }
            r
        }

        fn out(&mut self, port: u16, value: u8) {
            self.with(|p, cx| p.io_write(port, 1, value as u32, cx));
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|p, cx| p.io_read(port, 1, cx)) as u8
        }

        /// Runs to `t`, firing each deadline at its time.
        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                self.now = self.now.max(d);
                self.deadline = None;
                self.with(|p, cx| p.tick(cx));
            }
            self.now = t;
        }

        fn run_ticks(&mut self, ticks: u64) {
            let t = time_of(tick_at(self.now) + ticks);
            self.run_to(t);
        }

        fn rising_edges(&self) -> Vec<u64> {
            self.irq0.iter().filter(|e| e.1).map(|e| e.0).collect()
        }

        fn falling_edges(&self) -> Vec<u64> {
            self.irq0.iter().filter(|e| !e.1).map(|e| e.0).collect()
        }

        /// Counter 0 programmed with `control` and a two-byte `count` at time 0 (tick 0).
        fn counter0(control: u8, count: u16) -> Bench {
            let mut b = Bench::new();
            b.out(0x43, control);
            b.out(0x40, count as u8);
            b.out(0x40, (count >> 8) as u8);
            b.irq0.clear();
            b
        }

        /// Counter 0's OUT, through a read-back of its status.
        fn out0(&mut self) -> bool {
            self.out(0x43, 0xE2);
            self.inb(0x40) & 0x80 != 0
        }

        fn latch_read(&mut self, counter: u16) -> u16 {
            self.out(0x43, (counter as u8) << 6);
            let lo = self.inb(0x40 + counter);
            let hi = self.inb(0x40 + counter);
            lo as u16 | (hi as u16) << 8
        }
    }

    #[test]
    fn clock_conversions_round_trip() {
        assert_eq!(time_of(0), 0);
        for tick in [1, 2, 1193, 1_193_182, 123_456_789_012] {
            assert_eq!(tick_at(time_of(tick)), tick);
            assert_eq!(tick_at(time_of(tick) - 1), tick - 1, "time_of is the first such nanosecond");
        }
        assert_eq!(tick_at(1_000_000_000), PIT_HZ);
    }

    #[test]
    fn power_on_runs_counter0_at_18hz() {
        let mut b = Bench::new();
        b.run_to(1_000_000_000);
        let n = b.rising_edges().len();
        assert!((18..=19).contains(&n), "{n} IRQ 0 edges in a second");
    }

    #[test]
    fn mode2_rate_generator_period_and_irq_edges() {
        let mut b = Bench::counter0(0x34, 1193);
        assert!(b.irq0.is_empty(), "OUT stays high when the count is written");
        b.run_to(10_000_000);
        // Loaded on tick 1; OUT low while the count is 1, high again on each reload.
        let rises: Vec<u64> = (1..=10).map(|k| time_of(1 + k * 1193)).collect();
        assert_eq!(b.rising_edges(), rises);
        // The one-clock low pulse is replayed when the rising edge's deadline fires.
        assert_eq!(b.falling_edges(), rises);
        let mut c = Bench::counter0(0x34, 1193);
        c.run_to(time_of(1193) - 1);
        assert!(c.out0());
        c.run_to(time_of(1193));
        assert!(!c.out0(), "low while the count is 1");
        c.run_to(time_of(1194));
        assert!(c.out0());
    }

    #[test]
    fn mode2_count_sequence_and_new_count_at_period_end() {
        let mut b = Bench::counter0(0x34, 100);
        b.run_ticks(11); // tick 11: loaded at 1, ten pulses since
        assert_eq!(b.latch_read(0), 90);
        b.out(0x40, 50);
        b.out(0x40, 0);
        assert_eq!(b.latch_read(0), 90, "a new count waits for the end of the period");
        b.out(0x43, 0xE2); // read-back status of counter 0
        assert_eq!(b.inb(0x40) & 0x40, 0x40, "null count until the reload");
        b.irq0.clear();
        b.run_to(time_of(1 + 100 + 50 + 50));
        assert_eq!(b.rising_edges(), vec![time_of(101), time_of(151), time_of(201)]);
        b.out(0x43, 0xE2);
        assert_eq!(b.inb(0x40) & 0x40, 0);
    }

    #[test]
    fn mode3_square_wave_even_and_odd() {
        let mut b = Bench::counter0(0x36, 1000);
        b.run_ticks(2500);
        assert_eq!(b.rising_edges(), vec![time_of(1001), time_of(2001)]);
        assert_eq!(b.falling_edges(), vec![time_of(1001), time_of(2001)], "replayed at each rise");
        let levels = |n: u16, ticks: u64| {
            let mut b = Bench::counter0(0x36, n);
            (1..=ticks)
                .map(|t| {
                    b.run_to(time_of(t));
                    b.out0()
                })
                .collect::<Vec<_>>()
        };
        let (h, l) = (true, false);
        // Even: half high, half low, from the load on tick 1.
        assert_eq!(levels(4, 9), vec![h, h, l, l, h, h, l, l, h]);
        // Odd: high for (N+1)/2, low for (N-1)/2.
        assert_eq!(levels(5, 11), vec![h, h, h, l, l, h, h, h, l, l, h]);
    }

    #[test]
    fn mode3_counts_down_by_two() {
        let mut b = Bench::counter0(0x36, 10);
        let mut seen = Vec::new();
        for _ in 0..10 {
            b.run_ticks(1);
            seen.push(b.latch_read(0));
        }
        assert_eq!(seen, vec![10, 8, 6, 4, 2, 10, 8, 6, 4, 2]);
        assert!(!b.out0(), "second half-cycle: OUT low");
        let mut b = Bench::counter0(0x36, 7);
        let mut seen = Vec::new();
        for _ in 0..8 {
            b.run_ticks(1);
            seen.push(b.latch_read(0));
        }
        // Odd: down by one then two in the high half, by three then two in the low half.
        assert_eq!(seen, vec![7, 6, 4, 2, 7, 4, 2, 7]);
    }

    #[test]
    fn mode0_interrupt_on_terminal_count() {
        let mut b = Bench::new();
        b.out(0x43, 0x30);
        assert_eq!(b.irq0, vec![(0, false)], "the control word drops OUT");
        b.out(0x40, 100);
        b.out(0x40, 0);
        b.run_to(1_000_000_000);
        // OUT goes high N+1 clocks after the count is written, and stays there.
        assert_eq!(b.irq0, vec![(0, false), (time_of(101), true)]);
        assert_eq!(b.deadline, None);
        // The counter wraps on after the terminal count.
        let t = tick_at(b.now);
        let expect = (0x1_0000 - (t - 101) % 0x1_0000) % 0x1_0000;
        assert_eq!(b.latch_read(0) as u64, expect);
    }

    #[test]
    fn mode0_rewrite_restarts_and_first_byte_stops_counting() {
        let mut b = Bench::counter0(0x30, 1000);
        b.run_ticks(500);
        b.out(0x40, 0x20); // first byte only: counting stops
        let frozen = b.latch_read(0);
        b.run_ticks(2000);
        assert_eq!(b.latch_read(0), frozen);
        assert!(b.rising_edges().is_empty());
        b.out(0x40, 0x00); // count 0x0020
        let t = tick_at(b.now);
        b.run_ticks(100);
        assert_eq!(b.rising_edges(), vec![time_of(t + 1 + 0x20)]);
    }

    #[test]
    fn mode4_software_strobe() {
        let mut b = Bench::counter0(0x38, 10);
        b.run_ticks(100);
        // The one-clock strobe (tick 11) is replayed at the rising edge's deadline.
        assert_eq!(b.irq0, vec![(time_of(12), false), (time_of(12), true)]);
        let mut c = Bench::counter0(0x38, 10);
        c.run_to(time_of(11));
        assert!(!c.out0());
        c.run_to(time_of(12));
        assert!(c.out0());
        assert_eq!(b.deadline, None, "one strobe per count written");
    }

    #[test]
    fn counter_latch_freezes_the_read_value() {
        let mut b = Bench::counter0(0x34, 0x1234);
        b.run_ticks(0x34);
        b.out(0x43, 0x00);
        b.out(0x43, 0x00); // ignored: already latched
        b.run_ticks(0x100);
        assert_eq!(b.inb(0x40), 0x01);
        b.run_ticks(0x100);
        assert_eq!(b.inb(0x40), 0x12);
        // Latch released: reads follow the counter again.
        let live = b.inb(0x40) as u16 | (b.inb(0x40) as u16) << 8;
        assert_eq!(live, 0x1234 - (0x34 - 1) - 0x200);
    }

    #[test]
    fn access_modes_lsb_only_and_msb_only() {
        let mut b = Bench::new();
        b.out(0x43, 0x54); // counter 1, LSB only, mode 2
        b.out(0x41, 0x80);
        b.run_ticks(1);
        assert_eq!(b.inb(0x41), 0x80);
        assert_eq!(b.inb(0x41), 0x80, "LSB only: no flip-flop");
        b.out(0x43, 0x64); // counter 1, MSB only, mode 2
        b.out(0x41, 0x02);
        b.run_ticks(1);
        assert_eq!(b.inb(0x41), 0x02);
        b.run_ticks(2);
        assert_eq!(b.inb(0x41), 0x01, "0x200 - 2 = 0x1FE");
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let mut b = Bench::new();
        b.out(0x43, 0xB4); // counter 2, word, mode 2, binary
        assert_eq!(b.inb(0x61) & 0x20, 0x20, "mode 2 OUT starts high");
        b.out(0x43, 0xE8); // read-back status of counter 2
        assert_eq!(b.inb(0x42), 0b1111_0100, "OUT high, null count, RW=3, mode 2");
        b.out(0x42, 0x10);
        b.out(0x42, 0x00);
        b.out(0x61, 0x01);
        b.run_ticks(5);
        b.out(0x43, 0xC8);
        assert_eq!(b.inb(0x42), 0b1011_0100, "count loaded: null count clear");
        assert_eq!(b.inb(0x42), 0x10 - 4, "gate opened on tick 0, loaded on tick 1");
        assert_eq!(b.inb(0x42), 0x00);
        // Status only, for counters 0 and 2; mode bits as written (7 reads back as 7).
        b.out(0x43, 0x3E);
        b.out(0x43, 0xEA);
        assert_eq!(b.inb(0x40), 0b1111_1110, "mode 7 is mode 3: OUT high");
        assert_eq!(b.inb(0x42) & 0x0F, 0b0100);
    }

    #[test]
    fn bcd_counting() {
        let mut b = Bench::counter0(0x35, 0x0100); // mode 2, BCD, 100 counts
        b.run_ticks(11);
        assert_eq!(b.latch_read(0), 0x0090);
        b.run_to(time_of(1 + 300));
        assert_eq!(b.rising_edges(), vec![time_of(101), time_of(201), time_of(301)]);
        // 0 in BCD is 10000 counts.
        let mut b = Bench::counter0(0x35, 0x0000);
        b.run_ticks(3);
        assert_eq!(b.latch_read(0), 0x9998);
    }

    #[test]
    fn counter2_gate_and_out_on_port_61() {
        let mut b = Bench::new();
        b.out(0x43, 0xB6); // counter 2, mode 3
        b.out(0x42, 100);
        b.out(0x42, 0);
        b.run_ticks(200);
        assert_eq!(b.inb(0x42), 100, "gate low: no counting");
        assert_eq!(b.inb(0x61) & 0x20, 0x20, "mode 3 with gate low: OUT high");
        b.out(0x61, 0x03);
        assert_eq!(b.inb(0x61) & 0x0F, 0x03);
        let speaker = b.pit.speaker_output();
        assert!(speaker.gate && speaker.data_enable);
        b.run_ticks(60);
        assert_eq!(b.inb(0x61) & 0x20, 0, "second half-cycle");
        let f = b.pit.speaker_output().frequency_hz.unwrap();
        assert!((f - PIT_HZ as f64 / 100.0).abs() < 1e-6);
        b.out(0x61, 0x02);
        assert_eq!(b.inb(0x61) & 0x20, 0x20, "gate low forces OUT high");
        assert_eq!(b.pit.speaker_output().frequency_hz, None);
    }

    /// Counter 2 in mode 3 with `count`, the speaker on, for `ms` milliseconds, rendered
    /// (the mixer's part played by the test); the frames of the left side.
    fn speaker_tone(count: u16, ms: u64) -> Vec<f32> {
        let mut b = Bench::new();
        b.pit.stream = SoundStream::enabled_at(crate::audio::frames_due(0));
        b.out(0x43, 0xB6);
        b.out(0x42, count as u8);
        b.out(0x42, (count >> 8) as u8);
        b.out(0x61, 0x03);
        // Render in 5 ms pieces, as the board does.
        for k in 1..=ms / 5 {
            b.run_to(k * 5_000_000);
            b.with(|p, cx| p.render(cx));
        }
        b.out(0x61, 0x00);
        b.pit.stream.frames().iter().map(|f| f[0]).collect()
    }

    #[test]
    fn speaker_plays_counter2_square_wave() {
        let f = speaker_tone(1193, 500);
        assert_eq!(f.len() as u64, crate::audio::frames_due(500_000_000) - 1);
        // After the high-pass settles: zero crossings give the period, 1193182 / 1193 Hz.
        let start = f.len() / 5;
        let ups: Vec<usize> = (start..f.len() - 1).filter(|&i| f[i] < 0.0 && f[i + 1] >= 0.0).collect();
        let period = (ups[ups.len() - 1] - ups[0]) as f64 / (ups.len() - 1) as f64;
        let hz = crate::audio::RATE as f64 / period;
        assert!((hz - PIT_HZ as f64 / 1193.0).abs() < 0.5, "{hz} Hz");
        let peak = f[start..].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((0.15..0.3).contains(&peak), "peak {peak}");
    }

    #[test]
    fn speaker_above_the_audible_band_is_quiet() {
        // 1193182 / 20 = 60 kHz: only its average reaches the output, which the cone blocks.
        let f = speaker_tone(20, 200);
        let tail = &f[f.len() / 2..];
        let peak = tail.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(peak < 0.01, "peak {peak}");
        // Gate off: the speaker holds, no sound (and no rendering work).
        let mut b = Bench::new();
        b.pit.stream = SoundStream::enabled_at(crate::audio::frames_due(0));
        b.out(0x61, 0x02);
        b.run_to(100_000_000);
        b.with(|p, cx| p.render(cx));
        let tail = &b.pit.stream.frames()[2400..];
        assert!(tail.iter().all(|x| x[0].abs() < 0.05));
    }

    #[test]
    fn mode1_one_shot_triggered_by_gate() {
        let mut b = Bench::new();
        b.out(0x43, 0xB2); // counter 2, mode 1
        b.out(0x42, 50);
        b.out(0x42, 0);
        b.run_ticks(100);
        assert_eq!(b.inb(0x61) & 0x20, 0x20, "no trigger yet");
        b.out(0x61, 0x01);
        b.run_ticks(2);
        assert_eq!(b.inb(0x61) & 0x20, 0, "OUT low for the one-shot");
        b.run_ticks(30);
        b.out(0x61, 0x00);
        b.out(0x61, 0x01); // retrigger: 50 more
        b.run_ticks(49);
        assert_eq!(b.inb(0x61) & 0x20, 0);
        b.run_ticks(2);
        assert_eq!(b.inb(0x61) & 0x20, 0x20);
    }

    #[test]
    fn mode5_hardware_strobe() {
        let mut b = Bench::new();
        b.out(0x43, 0xBA); // counter 2, mode 5
        b.out(0x42, 10);
        b.out(0x42, 0);
        b.out(0x61, 0x01);
        let t = tick_at(b.now);
        b.run_to(time_of(t + 11));
        assert_eq!(b.inb(0x61) & 0x20, 0, "strobe on the terminal count");
        b.run_ticks(1);
        assert_eq!(b.inb(0x61) & 0x20, 0x20);
    }

    #[test]
    fn refresh_toggle_flips_every_15us() {
        let mut b = Bench::new();
        let a = b.inb(0x61) & 0x10;
        b.run_to(REFRESH_NS);
        assert_ne!(b.inb(0x61) & 0x10, a);
        b.run_to(2 * REFRESH_NS);
        assert_eq!(b.inb(0x61) & 0x10, a);
    }

    #[test]
    fn late_ticks_still_give_an_edge() {
        let mut b = Bench::counter0(0x34, 100);
        // The host stalls for a million clocks: one tick at the end.
        b.now = time_of(1_000_050) + 7;
        b.deadline = None;
        b.with(|p, cx| p.tick(cx));
        assert!(b.irq0.len() >= 2);
        assert_eq!(b.irq0.last().map(|e| e.1), Some(true));
        assert!(b.irq0.iter().any(|e| !e.1));
        assert!(b.deadline.unwrap() > b.now);
    }

    #[test]
    fn nonsense_gets_hardware_answers() {
        let mut b = Bench::new();
        assert_eq!(b.inb(0x43), 0xFF);
        b.out(0x43, 0xFF); // read-back with reserved bit
        b.out(0x43, 0x3F); // counter 0, mode 7 (= 3), BCD
        b.out(0x40, 0xFF); // not BCD
        b.out(0x40, 0xFF);
        b.run_ticks(10);
        let wide = b.with(|p, cx| p.io_read(0x61, 2, cx));
        assert_eq!(wide >> 8, 0xFF, "port 0x62 is not the PIT's");
        b.with(|p, cx| p.io_write(0x40, 4, 0xFFFF_FFFF, cx));
        for v in 0..=255u8 {
            b.out(0x43, v);
            b.out(0x40 + (v as u16 % 3), v);
            b.out(0x61, v);
            b.inb(0x40 + (v as u16 % 4));
            b.run_ticks(v as u64);
        }
        // A seeded random walk over the ports and time: never a panic, and the deadline the
        // board gets is always ahead of now (a deadline in the past would spin the run loop).
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const PORTS: [u16; 5] = [0x40, 0x41, 0x42, 0x43, 0x61];
        for _ in 0..20_000 {
            let r = next();
            let port = PORTS[(r % 5) as usize];
            if r & 0x100 != 0 {
                b.out(port, (r >> 16) as u8);
            } else {
                b.inb(port);
            }
            assert!(!matches!(b.deadline, Some(d) if d <= b.now), "deadline {:?} at {}", b.deadline, b.now);
            b.run_to(b.now + (r >> 40) % 200_000);
        }
    }

    #[test]
    fn save_restore_continues_identically() {
        let mut a = Bench::counter0(0x34, 1000);
        a.out(0x43, 0xB6);
        a.out(0x42, 77);
        a.out(0x42, 0);
        a.out(0x61, 0x03);
        a.run_ticks(1500);
        a.out(0x43, 0x00); // latch pending across the snapshot
        a.run_ticks(3);
        let snap = a.pit.save();

        let mut b = Bench::new();
        b.pit.restore(&snap).unwrap();
        b.now = a.now;
        b.deadline = a.deadline;
        a.irq0.clear();
        b.irq0.clear();
        for bench in [&mut a, &mut b] {
            let latched = bench.inb(0x40) as u16 | (bench.inb(0x40) as u16) << 8;
            assert_eq!(latched, 1000 - 499);
            bench.run_ticks(5000);
        }
        assert_eq!(a.irq0, b.irq0);
        assert_eq!(a.latch_read(2), b.latch_read(2));
        assert_eq!(a.inb(0x61) & 0x2F, b.inb(0x61) & 0x2F);
        assert_eq!(a.pit.save(), b.pit.save());
        assert!(b.pit.restore(&DeviceSnapshot::new("uart", VERSION, &())).is_err());
        let mut bad = snap.clone();
        bad.data["counters"][0]["n"] = serde_json::json!(0);
        assert!(b.pit.restore(&bad).is_err());
    }
}
