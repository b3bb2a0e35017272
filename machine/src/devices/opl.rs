//! The Yamaha YMF262 (OPL3) FM synthesiser of the Sound Blaster 16, which software also finds
//! as the AdLib's YM3812 (OPL2): the address latches and register file (two banks), the two
//! timers, the status register and the OPL2/OPL3 differences software can see, following the
//! YM3812 and YMF262 application manuals. Ports 0x388-0x38B (AdLib) and 0x220-0x223 and
//! 0x228-0x229 (Sound Blaster) reach the same chip. The synthesis (operators, envelopes, LFOs,
//! rhythm, 4-operator voices, stereo) is the `oplon` crate, fed every register write and run
//! at the mixer's rate. The timers interrupt nothing: neither card wires the OPL's IRQ.

use crate::audio::{SoundSource, SoundStream, RATE};
use crate::device::{open_bus, Device, DeviceContext, DeviceSnapshot, SnapshotError};
use serde::{Deserialize, Serialize};

const NAME: &str = "opl";
const VERSION: u32 = 1;

/// The AdLib's ports.
pub const ADLIB_PORTS: [(u16, u16); 1] = [(0x388, 4)];
/// The Sound Blaster 16's OPL ports.
pub const SB_PORTS: [(u16, u16); 2] = [(0x220, 4), (0x228, 2)];

/// Timer 1 counts every 80 µs, timer 2 every 320 µs, from their preset up to 256.
const TIMER_UNIT_NS: [u64; 2] = [80_000, 320_000];
/// Status register bits.
const ST_IRQ: u8 = 0x80;
const ST_FT1: u8 = 0x40;
const ST_FT2: u8 = 0x20;
/// The synthesiser's output for a full-scale sum (the YMF262's 16-bit DAC range).
const FULL_SCALE: f32 = 32768.0;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Timer {
    preset: u8,
    running: bool,
    /// When the counter was loaded.
    start: u64,
    masked: bool,
    flag: bool,
    /// Overflows after this time set the flag (the last start, flag reset or unmask).
    armed_from: u64,
}

impl Timer {
    fn period(&self, unit: u64) -> u64 {
        (256 - self.preset as u64) * unit
    }

    /// Sets the flag if an unmasked overflow has happened by `now`.
    fn update(&mut self, now: u64, unit: u64) {
        if !self.running || self.masked || self.flag {
            return;
        }
        let p = self.period(unit);
        let since = self.armed_from.saturating_sub(self.start);
        let next = self.start + (since / p + 1) * p;
        if next <= now {
            self.flag = true;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    /// The latched register address: bank 1 as 0x100-0x1FF.
    address: u16,
    /// Every register as written, bank 0 then bank 1.
    regs: Vec<u8>,
    timers: [Timer; 2],
}

impl State {
    fn new() -> State {
        State { address: 0, regs: vec![0; 512], timers: Default::default() }
    }

    /// OPL3 mode (bank 1 register 0x05 bit 0, "NEW").
    fn opl3(&self) -> bool {
        self.regs[0x105] & 1 != 0
    }
}

/// The OPL3.
pub struct Opl {
    s: State,
    chip: oplon::Opl2,
    stream: SoundStream,
}

impl Default for Opl {
    fn default() -> Self {
        Opl::new()
    }
}

impl Opl {
    pub fn new() -> Opl {
        Opl { s: State::new(), chip: oplon::Opl2::new(RATE), stream: SoundStream::new() }
    }

    fn update_timers(&mut self, now: u64) {
        for (t, unit) in self.s.timers.iter_mut().zip(TIMER_UNIT_NS) {
            t.update(now, unit);
        }
    }

    fn status(&mut self, now: u64) -> u8 {
        self.update_timers(now);
        let t1 = if self.s.timers[0].flag { ST_FT1 } else { 0 };
        let t2 = if self.s.timers[1].flag { ST_FT2 } else { 0 };
        let irq = if t1 | t2 != 0 { ST_IRQ } else { 0 };
        // The YM3812 reads 1s in bits 1-2; the YMF262 0s (how software tells them apart).
        irq | t1 | t2 | if self.s.opl3() { 0 } else { 0x06 }
    }

    /// Register 0x04 (bank 0): timer control.
    fn timer_control(&mut self, v: u8, now: u64) {
        self.update_timers(now);
        if v & 0x80 != 0 {
            // IRQ reset: clears both flags; the other bits are ignored.
            for t in &mut self.s.timers {
                t.flag = false;
                t.armed_from = now;
            }
            return;
        }
        for (i, t) in self.s.timers.iter_mut().enumerate() {
            let masked = v & (0x40 >> i) != 0;
            if t.masked && !masked {
                t.armed_from = now;
            }
            t.masked = masked;
            let start = v & (1 << i) != 0;
            if start && !t.running {
                t.start = now;
                t.armed_from = now;
            }
            t.running = start;
        }
    }

    /// The waveform select a synthesiser register gets: OPL2 mode without the wave select
    /// enable (register 0x01 bit 5) plays sine only.
    fn effective(&self, reg: u16, v: u8) -> u8 {
        let wse = self.s.regs[0x01] & 0x20 != 0;
        if (0xE0..=0xF5).contains(&(reg & 0xFF)) && !self.s.opl3() && !wse {
            0
        } else {
            v
        }
    }

    /// Hands a register to the synthesiser.
    fn feed(&mut self, reg: u16, v: u8) {
        let v = self.effective(reg, v);
        if reg & 0x100 != 0 {
            self.chip.write_reg_high(reg as u8, v);
        } else {
            self.chip.write_reg(reg as u8, v);
        }
    }

    fn write_register(&mut self, v: u8, now: u64) {
        let reg = self.s.address;
        match reg {
            0x02 => self.s.timers[0].preset = v,
            0x03 => self.s.timers[1].preset = v,
            0x04 => {
                self.timer_control(v, now);
                return;
            }
            _ => {}
        }
        self.s.regs[reg as usize] = v;
        match reg {
            // Wave select enable or OPL3 mode: every waveform register may read differently.
            0x01 | 0x105 => {
                if reg == 0x105 {
                    self.feed(reg, v);
                }
                for bank in [0u16, 0x100] {
                    for r in 0xE0..=0xF5u16 {
                        self.feed(bank | r, self.s.regs[(bank | r) as usize]);
                    }
                }
            }
            0x02..=0x04 | 0x08 => {}
            _ => self.feed(reg, v),
        }
    }

    /// Renders the synthesiser up to `now` (nothing while no sink listens).
    fn render_to(&mut self, now: u64) {
        if !self.stream.enabled() {
            self.stream.skip_to(now);
            return;
        }
        for _ in 0..self.stream.owed(now) {
            let (l, r) = self.chip.render_frame();
            self.stream.push([l as f32 / FULL_SCALE, r as f32 / FULL_SCALE]);
        }
    }

    /// A fresh synthesiser given every register (after a restore): the voices sound as
    /// programmed, their envelopes start over.
    fn rebuild_chip(&mut self) {
        self.chip = oplon::Opl2::new(RATE);
        let order = [0x105u16, 0x104, 0x01, 0x08]
            .into_iter()
            .chain([0u16, 0x100].into_iter().flat_map(|bank| {
                (0x20..=0x35)
                    .chain(0x40..=0x55)
                    .chain(0x60..=0x75)
                    .chain(0x80..=0x95)
                    .chain(0xE0..=0xF5)
                    .chain(0xA0..=0xA8)
                    .chain(0xC0..=0xC8)
                    .chain(0xB0..=0xB8)
                    .map(move |r| bank | r)
            }))
            .chain([0xBD]);
        for reg in order {
            self.feed(reg, self.s.regs[reg as usize]);
        }
    }

    fn read_byte(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x388 | 0x220 | 0x228 => self.status(now),
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8, now: u64) {
        match port {
            0x388 | 0x220 | 0x228 => self.s.address = v as u16,
            0x38A | 0x222 => self.s.address = 0x100 | v as u16,
            0x389 | 0x38B | 0x221 | 0x223 | 0x229 => {
                // Bank 1 registers other than 0x04-0x05 need OPL3 mode.
                let reg = self.s.address;
                if reg & 0x100 != 0 && !self.s.opl3() && !matches!(reg & 0xFF, 0x04 | 0x05) {
                    tracing::trace!(reg, v, "OPL: bank 1 write in OPL2 mode: stored");
                }
                self.write_register(v, now);
            }
            _ => {}
        }
    }
}

impl Device for Opl {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        if size != 1 {
            return open_bus(size) as u32;
        }
        self.read_byte(port, cx.now) as u32
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        // What was playing plays up to now, then the write takes effect.
        self.render_to(cx.now);
        for i in 0..size.min(4) as u16 {
            self.write_byte(port + i, (value >> (8 * i)) as u8, cx.now);
        }
    }

    fn reset(&mut self) {
        self.s = State::new();
        self.rebuild_chip();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        if s.regs.len() != 512 || s.address > 0x1FF {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom("OPL state out of range"),
            });
        }
        self.s = s;
        self.rebuild_chip();
        Ok(())
    }

    fn as_sound(&mut self) -> Option<&mut dyn SoundSource> {
        Some(self)
    }
}

impl SoundSource for Opl {
    fn render(&mut self, cx: &mut DeviceContext) {
        self.render_to(cx.now);
    }

    fn stream(&mut self) -> &mut SoundStream {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;

    struct Bench {
        opl: Opl,
        now: u64,
    }

    impl Bench {
        fn new() -> Bench {
            let mut opl = Opl::new();
            opl.stream = SoundStream::enabled_at(crate::audio::frames_due(0));
            Bench { opl, now: 0 }
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Opl, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events, mut dl) = (Vec::new(), Vec::<MachineEvent>::new(), None);
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            let r = f(&mut self.opl, &mut cx);
            assert!(irqs.is_empty() && dl.is_none(), "the OPL interrupts nothing and needs no ticks");
            r
        }

        fn out(&mut self, port: u16, v: u8) {
            self.with(|o, cx| o.io_write(port, 1, v as u32, cx));
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|o, cx| o.io_read(port, 1, cx)) as u8
        }

        /// Writes a register through the AdLib ports.
        fn reg(&mut self, r: u16, v: u8) {
            if r & 0x100 != 0 {
                self.out(0x38A, r as u8);
                self.out(0x38B, v);
            } else {
                self.out(0x388, r as u8);
                self.out(0x389, v);
            }
        }
    }

    #[test]
    fn adlib_detection_sequence() {
        // The sequence from the AdLib programming guide, as every DOS game runs it.
        let mut b = Bench::new();
        b.reg(0x04, 0x60); // mask both timers
        b.reg(0x04, 0x80); // reset the IRQ flags
        let before = b.inb(0x388);
        b.reg(0x02, 0xFF); // timer 1: one count to overflow
        b.reg(0x04, 0x21); // start timer 1, mask timer 2
        b.now += 79_000;
        assert_eq!(b.inb(0x388) & 0xE0, 0x00, "not yet: 80 µs per count");
        b.now += 2_000;
        let after = b.inb(0x388);
        b.reg(0x04, 0x60);
        b.reg(0x04, 0x80);
        assert_eq!(before & 0xE0, 0x00);
        assert_eq!(after & 0xE0, 0xC0, "IRQ and timer 1 flags");
        assert_eq!(b.inb(0x388) & 0xE0, 0x00, "reset again");
        // OPL2 until OPL3 mode is on: bits 1-2 of the status tell them apart.
        assert_eq!(b.inb(0x388) & 0x06, 0x06);
        b.reg(0x105, 0x01);
        assert_eq!(b.inb(0x388) & 0x06, 0x00);
        assert_eq!(b.inb(0x220) & 0xE0, 0x00, "the same chip at the Sound Blaster's ports");
        assert_eq!(b.inb(0x389), 0xFF, "the data port reads open bus");
    }

    #[test]
    fn timer2_masks_and_periods() {
        let mut b = Bench::new();
        b.reg(0x03, 0xF0); // 16 counts of 320 µs
        b.reg(0x04, 0x42); // start timer 2, mask timer 1
        b.now += 16 * 320_000 - 1;
        assert_eq!(b.inb(0x388) & 0xE0, 0);
        b.now += 1;
        assert_eq!(b.inb(0x388) & 0xE0, 0xA0, "IRQ and timer 2");
        // A masked timer's overflow sets nothing.
        b.reg(0x04, 0x80);
        b.reg(0x04, 0x22);
        b.now += 10 * 16 * 320_000;
        assert_eq!(b.inb(0x388) & 0xE0, 0);
        // Unmasked again: the next overflow counts.
        b.reg(0x04, 0x02);
        b.now += 16 * 320_000;
        assert_eq!(b.inb(0x388) & 0xE0, 0xA0);
        // Stopped timers never overflow.
        b.reg(0x04, 0x80);
        b.reg(0x04, 0x00);
        b.now += 1_000_000_000;
        assert_eq!(b.inb(0x388) & 0xE0, 0);
    }

    /// A sustained sine note on channel 0 (the modulator silent).
    fn note(b: &mut Bench, fnum: u16, block: u8) {
        for (r, v) in [(0x20, 0x21), (0x23, 0x21), (0x40, 0x3F), (0x43, 0x00), (0x60, 0xF0), (0x63, 0xF0), (0x80, 0x0F), (0x83, 0x0F), (0xC0, 0x01)] {
            b.reg(r, v);
        }
        b.reg(0xA0, fnum as u8);
        b.reg(0xB0, 0x20 | block << 2 | (fnum >> 8) as u8);
    }

    fn crossings(f: &[f32]) -> usize {
        (1..f.len()).filter(|&i| f[i - 1] < 0.0 && f[i] >= 0.0).count()
    }

    #[test]
    fn a_note_plays_at_its_frequency() {
        // f = fnum * 49716 / 2^(20 - block): fnum 0x244, block 4 is 440.0 Hz.
        let mut b = Bench::new();
        note(&mut b, 0x244, 4);
        b.now = 1_000_000_000;
        b.with(|o, cx| o.render(cx));
        let f: Vec<f32> = b.opl.stream.frames().iter().map(|x| x[0]).collect();
        let hz = crossings(&f[4800..]) as f64 / 0.9;
        let expect = 0x244 as f64 * 49_716.0 / (1 << 16) as f64;
        assert!((hz - expect).abs() < 2.0, "{hz} Hz, expected {expect}");
        let peak = f.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.05 && peak < 0.5, "peak {peak}");
        // Key off: the release (rate 15) silences it quickly.
        b.reg(0xB0, 0x10);
        b.now += 200_000_000;
        b.with(|o, cx| o.render(cx));
        let tail = &b.opl.stream.frames()[b.opl.stream.frames().len() - 4800..];
        assert!(tail.iter().all(|x| x[0].abs() < 1e-3));
    }

    #[test]
    fn waveform_select_needs_wse_on_an_opl2() {
        // Waveform 2 (|sin|) has no negative half: without WSE it plays as a sine.
        let play = |wse: bool| {
            let mut b = Bench::new();
            if wse {
                b.reg(0x01, 0x20);
            }
            b.reg(0xE3, 0x02);
            note(&mut b, 0x244, 4);
            b.now = 100_000_000;
            b.with(|o, cx| o.render(cx));
            b.opl.stream.frames().iter().fold(0f32, |m, x| m.min(x[0]))
        };
        assert!(play(false) < -0.05, "sine: negative half present");
        assert!(play(true) > -0.01, "|sin|: no negative half");
    }

    #[test]
    fn state_round_trips_and_nonsense_is_harmless() {
        let mut b = Bench::new();
        note(&mut b, 0x2AE, 5);
        b.reg(0x02, 0x80);
        b.reg(0x04, 0x01);
        b.now += 5_000_000;
        let snap = b.opl.save();
        let mut c = Opl::new();
        c.restore(&snap).unwrap();
        assert_eq!(c.save(), snap);
        let status = |o: &mut Opl, now: u64| o.status(now);
        assert_eq!(status(&mut b.opl, b.now + 20_000_000), status(&mut c, b.now + 20_000_000));
        let mut bad = snap.clone();
        bad.data["regs"] = serde_json::json!([1, 2]);
        assert!(c.restore(&bad).is_err());
        let mut seed = 0xDEAD_BEEF_1234_5678u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = [0x388, 0x389, 0x38A, 0x38B, 0x220, 0x221, 0x222, 0x223, 0x228, 0x229][(seed % 10) as usize];
            if seed & 0x100 != 0 {
                b.out(port, (seed >> 24) as u8);
            } else {
                b.inb(port);
            }
            b.now += (seed >> 50) % 10_000;
        }
    }
}
