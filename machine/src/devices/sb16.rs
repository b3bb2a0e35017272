//! Creative Sound Blaster 16: the DSP (version 4.05) and the CT1745 mixer at base 0x220, as
//! Creative's "Sound Blaster Series Hardware Programming Guide" describes them: DSP reset at
//! 0x226 (0xAA after it), read data 0x22A, write command/data 0x22C, read-buffer status 0x22E
//! (reading it acknowledges the 8-bit interrupt) and 0x22F (the 16-bit one); mixer address
//! 0x224 and data 0x225. Playback and recording run by ISA DMA at the programmed rate in
//! virtual time: 8-bit on DMA 1, 16-bit on HDMA 5, single-cycle and auto-init, with the
//! interrupt (IRQ 5) at each block's end. The IRQ and DMA settings are mixer registers 0x80
//! and 0x81, as DOS drivers read them (BLASTER=A220 I5 D1 H5 T6). The OPL chip at
//! 0x220-0x223 and 0x228-0x229 is `opl.rs`; MIDI (MPU-401) is not modelled. Recording
//! returns silence.

use crate::audio::{frame_time, SoundSource, SoundStream};
use crate::device::{open_bus, Device, DeviceContext, DeviceSnapshot, SnapshotError};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const NAME: &str = "sb16";
const VERSION: u32 = 1;

/// The DSP's and mixer's ports (the OPL's are `opl::SB_PORTS`).
pub const PORTS: [(u16, u16); 2] = [(0x224, 3), (0x22A, 6)];

const DSP_VERSION: [u8; 2] = [4, 5];
const COPYRIGHT: &[u8] = b"COPYRIGHT (C) CREATIVE TECHNOLOGY LTD, 1992.\0";
/// How long the DSP takes after a reset before 0xAA is in its read buffer.
const RESET_NS: u64 = 20_000;
/// While a transfer runs, the DSP moves what is due at least this often (1 ms).
const DMA_STEP_NS: u64 = 1_000_000;
/// The rate after a reset (the time constant's default).
const DEFAULT_RATE: u32 = 11_025;

/// Mixer register 0x80 bits and the IRQ lines they select (bit 0 is IRQ 2, wired to 9 on an AT).
const IRQ_SELECT: [(u8, u8); 4] = [(0x01, 9), (0x02, 5), (0x04, 7), (0x08, 10)];
/// Mixer register 0x81 bits: 8-bit DMA channels 0, 1, 3 and 16-bit channels 5, 6, 7.
const DMA8_SELECT: [(u8, u8); 3] = [(0x01, 0), (0x02, 1), (0x08, 3)];
const DMA16_SELECT: [(u8, u8); 3] = [(0x20, 5), (0x40, 6), (0x80, 7)];

/// The CT1745's registers after a mixer reset (register 0x00), and the IRQ 5 / DMA 1 / HDMA 5
/// jumpers of a default card.
fn mixer_defaults() -> Vec<u8> {
    let mut m = vec![0u8; 256];
    m[0x30..=0x35].fill(0xC0); // master, voice, MIDI: 24 of 31 (-14 dB)
    m[0x3C] = 0x1F;
    m[0x3D] = 0x15;
    m[0x3E] = 0x0B;
    m[0x44..=0x47].fill(0x80);
    m[0x80] = 0x02;
    m[0x81] = 0x22;
    m
}

/// A DMA transfer the DSP runs, with its timing: frame j (counted from `origin_ns`) is due at
/// origin + j / rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Transfer {
    bits16: bool,
    stereo: bool,
    signed: bool,
    auto_init: bool,
    /// Recording: the DSP writes (silence) to memory.
    input: bool,
    /// Command 0x80: silence for a count of samples, no DMA.
    no_dma: bool,
    /// Frames per second.
    rate: u32,
    origin_ns: u64,
    /// Frames moved since the origin.
    done: u64,
    /// The frame (since the origin) at which the current block ends.
    block_end: u64,
    block_frames: u64,
    paused_at: Option<u64>,
    /// 0xD9/0xDA: stop at the end of this block.
    exit_at_block_end: bool,
    /// Bytes of a frame that came without the rest of it.
    partial: Vec<u8>,
}

impl Transfer {
    fn frame_bytes(&self) -> usize {
        (if self.bits16 { 2 } else { 1 }) * (if self.stereo { 2 } else { 1 })
    }

    /// Frames due by `now` since the origin, up to the block's end.
    fn due(&self, now: u64) -> u64 {
        let at = self.paused_at.unwrap_or(now);
        let n = (at.saturating_sub(self.origin_ns) as u128 * self.rate as u128 / 1_000_000_000) as u64;
        n.min(self.block_end)
    }

    fn time_of(&self, frame: u64) -> u64 {
        self.origin_ns + (frame as u128 * 1_000_000_000).div_ceil(self.rate as u128) as u64
    }

    fn sample(&self, bytes: &[u8]) -> [f32; 2] {
        let one = |b: &[u8]| -> f32 {
            if self.bits16 {
                let v = u16::from_le_bytes([b[0], b[1]]);
                let v = if self.signed { v as i16 as i32 } else { v as i32 - 0x8000 };
                v as f32 / 32768.0
            } else {
                let v = if self.signed { b[0] as i8 as i32 } else { b[0] as i32 - 0x80 };
                v as f32 / 128.0
            }
        };
        if self.stereo {
            let half = bytes.len() / 2;
            [one(&bytes[..half]), one(&bytes[half..])]
        } else {
            let x = one(bytes);
            [x, x]
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    /// 0x226 bit 0 as last written: the reset happens on its falling edge.
    reset_latch: bool,
    /// When the reset completes (0xAA becomes readable).
    ready_at: Option<u64>,
    /// The DSP's read buffer.
    output: VecDeque<u8>,
    last_read: u8,
    /// A command waiting for its argument bytes.
    command: Option<u8>,
    args: Vec<u8>,
    test_register: u8,
    /// Samples per second as set by 0x40 (time constant) or 0x41.
    rate: u32,
    /// Set by the time constant (SB Pro stereo halves it per frame).
    rate_from_time_constant: bool,
    /// 0x48: bytes (8-bit) or samples (16-bit) per block, minus one.
    block_size: u16,
    speaker: bool,
    /// Interrupts raised and not acknowledged: 8-bit, 16-bit.
    irq8: bool,
    irq16: bool,
    /// The line the DSP drives now, and its level.
    irq_line: Option<u8>,
    transfer: Option<Transfer>,
    mixer_index: u8,
    mixer: Vec<u8>,
    /// Sound: input frames not yet fully shown (the newest last); the index of the first; the
    /// DAC's level when no transfer plays.
    dac: VecDeque<[f32; 2]>,
    dac_first: u64,
    held: [f32; 2],
}

impl State {
    fn new() -> State {
        State {
            reset_latch: false,
            ready_at: None,
            output: VecDeque::new(),
            last_read: 0xFF,
            command: None,
            args: Vec::new(),
            test_register: 0,
            rate: DEFAULT_RATE,
            rate_from_time_constant: false,
            block_size: 0x7FF,
            speaker: false,
            irq8: false,
            irq16: false,
            irq_line: None,
            transfer: None,
            mixer_index: 0,
            mixer: mixer_defaults(),
            dac: VecDeque::new(),
            dac_first: 0,
            held: [0.0; 2],
        }
    }
}

/// The Sound Blaster 16's DSP and mixer.
pub struct Sb16 {
    s: State,
    stream: SoundStream,
}

impl Default for Sb16 {
    fn default() -> Self {
        Sb16::new()
    }
}

/// The argument bytes a DSP command takes.
fn arg_count(cmd: u8) -> usize {
    match cmd {
        0x10 | 0x38 | 0x40 | 0xE0 | 0xE4 => 1,
        0x14 | 0x16 | 0x17 | 0x24 | 0x41 | 0x42 | 0x48 | 0x74..=0x77 | 0x80 => 2,
        0xB0..=0xCF => 3,
        _ => 0,
    }
}

/// A 5-bit CT1745 volume (bits 7-3) as a gain: 2 dB steps down from 0 dB at 31.
fn volume(reg: u8) -> f32 {
    let steps = 31 - (reg >> 3) as i32;
    10f32.powf(-2.0 * steps as f32 / 20.0)
}

impl Sb16 {
    pub fn new() -> Sb16 {
        Sb16 { s: State::new(), stream: SoundStream::new() }
    }

    fn irq_select(&self) -> Option<u8> {
        IRQ_SELECT.iter().find(|(bit, _)| self.s.mixer[0x80] & bit != 0).map(|&(_, line)| line)
    }

    fn dma8(&self) -> Option<u8> {
        DMA8_SELECT.iter().find(|(bit, _)| self.s.mixer[0x81] & bit != 0).map(|&(_, c)| c)
    }

    /// 16-bit transfers use the 8-bit channel when no 16-bit one is selected.
    fn dma16(&self) -> Option<u8> {
        DMA16_SELECT.iter().find(|(bit, _)| self.s.mixer[0x81] & bit != 0).map(|&(_, c)| c).or(self.dma8())
    }

    /// Drives the selected IRQ line from the pending interrupts.
    fn update_irq(&mut self, cx: &mut DeviceContext) {
        let want = if self.s.irq8 || self.s.irq16 { self.irq_select() } else { None };
        if want != self.s.irq_line {
            if let Some(old) = self.s.irq_line {
                cx.set_irq(old, false);
            }
            if let Some(new) = want {
                cx.set_irq(new, true);
            }
            self.s.irq_line = want;
        }
    }

    fn raise(&mut self, bits16: bool, cx: &mut DeviceContext) {
        if bits16 {
            self.s.irq16 = true;
        } else {
            self.s.irq8 = true;
        }
        self.update_irq(cx);
    }

    /// Brings the transfer and the sound up to `cx.now`: moves the frames due by DMA (ending
    /// blocks, interrupting, reloading auto-init), then renders the output.
    fn sync(&mut self, cx: &mut DeviceContext) {
        let now = cx.now;
        // A block may end more than once since the last sync (auto-init while nobody looked).
        for _ in 0..64 {
            let Some(t) = self.s.transfer.as_ref() else { break };
            let target = t.due(now);
            if target > t.done {
                self.move_frames(target, cx);
            }
            let t = self.s.transfer.as_mut().expect("still there");
            if t.done < t.block_end {
                break;
            }
            // The block is over: its interrupt, then the next block or the end.
            let bits16 = t.bits16;
            if t.auto_init && !t.exit_at_block_end {
                t.block_end += t.block_frames;
            } else {
                let end = t.time_of(t.block_end).min(now);
                self.render_to(end);
                self.s.transfer = None;
                // The DSP's output falls silent (it does not hold the last sample).
                self.s.dac.clear();
                self.s.held = [0.0; 2];
            }
            self.raise(bits16, cx);
        }
        self.render_to(now);
        self.schedule(cx);
    }

    /// Moves frames up to `target` through DMA. A channel that gives less (masked, at terminal
    /// count in single mode) stalls the DSP, which waits: the rest of the block moves later.
    fn move_frames(&mut self, target: u64, cx: &mut DeviceContext) {
        let ch = {
            let t = self.s.transfer.as_ref().expect("a transfer");
            if t.bits16 {
                self.dma16()
            } else {
                self.dma8()
            }
        };
        let t = self.s.transfer.as_mut().expect("a transfer");
        let want = (target - t.done) as usize;
        let fb = t.frame_bytes();
        if t.no_dma {
            t.done = target;
            for _ in 0..want {
                self.s.dac.push_back([0.0; 2]);
            }
            return;
        }
        let Some(ch) = ch else {
            tracing::debug!("SB16: no DMA channel selected in mixer register 0x81; the DSP waits");
            t.origin_ns = cx.now.saturating_sub(t.time_of(t.done) - t.origin_ns);
            return;
        };
        let need = want * fb - t.partial.len();
        let mut buf = vec![0u8; need];
        let mut got = 0;
        // Recording: what reaches memory is silence in the sample format.
        let silence: &[u8] = match (t.bits16, t.signed) {
            (false, false) => &[0x80],
            (true, false) => &[0x00, 0x80],
            (false, true) => &[0],
            (true, true) => &[0, 0],
        };
        while got < need {
            let r = if t.input {
                let data: Vec<u8> = (got..need).map(|i| silence[i % silence.len()]).collect();
                cx.dma_write(ch, &data)
            } else {
                cx.dma_read(ch, &mut buf[got..])
            };
            got += r.bytes;
            if r.bytes == 0 || !r.terminal_count {
                break;
            }
        }
        let mut bytes = std::mem::take(&mut t.partial);
        bytes.extend_from_slice(&buf[..got]);
        let frames = bytes.len() / fb;
        for f in bytes[..frames * fb].chunks(fb) {
            let x = if t.input { [0.0; 2] } else { t.sample(f) };
            self.s.dac.push_back(x);
        }
        t.partial = bytes[frames * fb..].to_vec();
        t.done += frames as u64;
        if t.done < target {
            // Stalled: frame `done` is due now, not when the clock said.
            let lag = t.time_of(t.done) - t.origin_ns;
            t.origin_ns = cx.now.saturating_sub(lag);
        }
    }

    /// Renders output frames up to `now`: the DAC's input frames, one frame late and linearly
    /// interpolated to the output rate, through the mixer's master and voice volumes.
    fn render_to(&mut self, now: u64) {
        if !self.stream.enabled() {
            self.stream.skip_to(now);
            self.trim_dac(None);
            return;
        }
        let gain = [
            volume(self.s.mixer[0x30]) * volume(self.s.mixer[0x32]),
            volume(self.s.mixer[0x31]) * volume(self.s.mixer[0x33]),
        ];
        for _ in 0..self.stream.owed(now) {
            let t = frame_time(self.stream.position());
            let x = match &self.s.transfer {
                Some(tr) if !tr.input && t >= tr.origin_ns => {
                    let p = (t - tr.origin_ns) as f64 * tr.rate as f64 / 1e9 - 1.0;
                    self.dac_at(p)
                }
                _ => self.s.dac.back().copied().unwrap_or(self.s.held),
            };
            self.stream.push([x[0] * gain[0], x[1] * gain[1]]);
        }
        let keep = self.s.transfer.as_ref().filter(|tr| !tr.input).map(|tr| {
            let t = frame_time(self.stream.position());
            ((t.saturating_sub(tr.origin_ns)) as f64 * tr.rate as f64 / 1e9 - 1.0).floor().max(0.0) as u64
        });
        self.trim_dac(keep);
    }

    /// The DAC's input at fractional frame `p` of the transfer.
    fn dac_at(&self, p: f64) -> [f32; 2] {
        let last = self.s.dac.back().copied().unwrap_or(self.s.held);
        if p < 0.0 {
            return self.s.dac.front().copied().unwrap_or(self.s.held);
        }
        let i = p.floor() as u64;
        let f = (p - p.floor()) as f32;
        let get = |j: u64| j.checked_sub(self.s.dac_first).and_then(|k| self.s.dac.get(k as usize)).copied();
        match (get(i), get(i + 1)) {
            (Some(a), Some(b)) => [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f],
            (Some(a), None) => a,
            _ => last,
        }
    }

    /// Drops input frames before `keep` (all but the newest when there is no transfer).
    fn trim_dac(&mut self, keep: Option<u64>) {
        let keep = keep.unwrap_or(self.s.dac_first + self.s.dac.len().saturating_sub(1) as u64);
        while self.s.dac_first < keep && self.s.dac.len() > 1 {
            self.s.dac.pop_front();
            self.s.dac_first += 1;
        }
        if let Some(&b) = self.s.dac.back() {
            self.s.held = b;
        }
    }

    /// Wakes at the block's end, and every `DMA_STEP_NS` before it so that the DMA
    /// controller's address and count follow the playback for a guest that reads them.
    fn schedule(&self, cx: &mut DeviceContext) {
        let at = self.s.transfer.as_ref().filter(|t| t.paused_at.is_none()).map(|t| t.time_of(t.block_end));
        cx.set_deadline(at.map(|a| a.min(cx.now + DMA_STEP_NS).max(cx.now + 1)));
    }

    /// Starts a transfer; `frames_in_block` as the command counts them.
    fn start(&mut self, mut t: Transfer, cx: &mut DeviceContext) {
        if t.rate == 0 {
            t.rate = DEFAULT_RATE;
        }
        t.origin_ns = cx.now;
        t.block_end = t.block_frames.max(1);
        t.block_frames = t.block_end;
        // The DAC's input starts over with this transfer.
        let held = self.s.dac.back().copied().unwrap_or(self.s.held);
        self.s.held = held;
        self.s.dac.clear();
        self.s.dac_first = 0;
        self.s.transfer = Some(t);
    }

    fn classic(&self, auto_init: bool, input: bool, bytes: u64) -> Transfer {
        let stereo = self.s.mixer[0x0E] & 0x02 != 0 && !input;
        let rate = if stereo && self.s.rate_from_time_constant { self.s.rate / 2 } else { self.s.rate };
        Transfer {
            bits16: false,
            stereo,
            signed: false,
            auto_init,
            input,
            no_dma: false,
            rate,
            origin_ns: 0,
            done: 0,
            block_end: 0,
            block_frames: bytes / if stereo { 2 } else { 1 },
            paused_at: None,
            exit_at_block_end: false,
            partial: Vec::new(),
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        self.s.output.extend(bytes.iter().copied());
    }

    fn command(&mut self, cmd: u8, a: &[u8], cx: &mut DeviceContext) {
        let word = |lo: u8, hi: u8| u16::from_le_bytes([lo, hi]);
        match cmd {
            0x10 => {
                // Direct DAC: the level changes now, no interpolation.
                let x = (a[0] as f32 - 128.0) / 128.0;
                self.s.transfer = None;
                self.s.dac.clear();
                self.s.dac_first = 0;
                self.s.dac.push_back([x, x]);
                self.s.held = [x, x];
            }
            0x14 => {
                let t = self.classic(false, false, word(a[0], a[1]) as u64 + 1);
                self.start(t, cx);
            }
            0x1C | 0x90 => {
                let t = self.classic(true, false, self.s.block_size as u64 + 1);
                self.start(t, cx);
            }
            0x91 => {
                let t = self.classic(false, false, self.s.block_size as u64 + 1);
                self.start(t, cx);
            }
            0x24 => {
                let t = self.classic(false, true, word(a[0], a[1]) as u64 + 1);
                self.start(t, cx);
            }
            0x2C | 0x98 => {
                let t = self.classic(true, true, self.s.block_size as u64 + 1);
                self.start(t, cx);
            }
            0x99 => {
                let t = self.classic(false, true, self.s.block_size as u64 + 1);
                self.start(t, cx);
            }
            0x20 => self.reply(&[0x80]),
            0x40 => {
                self.s.rate = 1_000_000 / (256 - a[0] as u32);
                self.s.rate_from_time_constant = true;
            }
            0x41 | 0x42 => {
                self.s.rate = (word(a[1], a[0]) as u32).clamp(5_000, 45_000);
                self.s.rate_from_time_constant = false;
            }
            0x45 | 0x47 => {
                if let Some(t) = self.s.transfer.as_mut() {
                    t.exit_at_block_end = false;
                }
            }
            0x48 => self.s.block_size = word(a[0], a[1]),
            0x80 => {
                let mut t = self.classic(false, false, word(a[0], a[1]) as u64 + 1);
                t.no_dma = true;
                t.stereo = false;
                t.block_frames = word(a[0], a[1]) as u64 + 1;
                self.start(t, cx);
            }
            0xB0..=0xCF => {
                if cmd & 0x01 != 0 {
                    tracing::debug!(cmd, "SB16: reserved bit 0 set in a DMA command");
                }
                let bits16 = cmd < 0xC0;
                let stereo = a[0] & 0x20 != 0;
                let samples = word(a[1], a[2]) as u64 + 1;
                let t = Transfer {
                    bits16,
                    stereo,
                    signed: a[0] & 0x10 != 0,
                    auto_init: cmd & 0x04 != 0,
                    input: cmd & 0x08 != 0,
                    no_dma: false,
                    rate: self.s.rate,
                    origin_ns: 0,
                    done: 0,
                    block_end: 0,
                    block_frames: samples / if stereo { 2 } else { 1 },
                    paused_at: None,
                    exit_at_block_end: false,
                    partial: Vec::new(),
                };
                self.start(t, cx);
            }
            0xD0 | 0xD5 => {
                if let Some(t) = self.s.transfer.as_mut() {
                    if t.paused_at.is_none() && t.bits16 == (cmd == 0xD5) {
                        t.paused_at = Some(cx.now);
                    }
                }
            }
            // Continue (0xD4 8-bit, 0xD6 16-bit) and exit auto-init (0xDA 8-bit, 0xD9
            // 16-bit) act on a transfer of their width only.
            0xD4 | 0xD6 => {
                if let Some(t) = self.s.transfer.as_mut().filter(|t| t.bits16 == (cmd == 0xD6)) {
                    if let Some(p) = t.paused_at.take() {
                        t.origin_ns += cx.now.saturating_sub(p);
                    }
                }
            }
            0xD9 | 0xDA => {
                match self.s.transfer.as_mut().filter(|t| t.bits16 == (cmd == 0xD9)) {
                    Some(t) => t.exit_at_block_end = true,
                    None => tracing::debug!(cmd, "SB16: exit auto-init with no transfer of that width"),
                }
            }
            0xD1 => self.s.speaker = true,
            0xD3 => self.s.speaker = false,
            0xD8 => {
                let v = if self.s.speaker { 0xFF } else { 0x00 };
                self.reply(&[v]);
            }
            0xE0 => self.reply(&[!a[0]]),
            0xE1 => self.reply(&DSP_VERSION),
            0xE3 => self.reply(COPYRIGHT),
            0xE4 => self.s.test_register = a[0],
            0xE8 => self.reply(&[self.s.test_register]),
            0xF2 => self.raise(false, cx),
            0xF3 => self.raise(true, cx),
            0xF8 => self.reply(&[0]),
            0x30..=0x3F => tracing::debug!(cmd, "SB16: MIDI through the DSP is not modelled"),
            _ => tracing::debug!(cmd, args = ?a, "SB16: DSP command not modelled; ignored"),
        }
    }

    fn dsp_write(&mut self, v: u8, cx: &mut DeviceContext) {
        if self.s.ready_at.is_some_and(|t| cx.now < t) {
            tracing::debug!(v, "SB16: DSP write during reset: ignored");
            return;
        }
        let cmd = match self.s.command {
            Some(c) => {
                self.s.args.push(v);
                c
            }
            None => {
                self.s.args.clear();
                v
            }
        };
        if self.s.args.len() < arg_count(cmd) {
            self.s.command = Some(cmd);
            return;
        }
        self.s.command = None;
        let args = std::mem::take(&mut self.s.args);
        self.command(cmd, &args, cx);
    }

    fn reset_dsp(&mut self, now: u64) {
        self.s.output.clear();
        self.s.command = None;
        self.s.args.clear();
        self.s.transfer = None;
        self.s.speaker = false;
        self.s.rate = DEFAULT_RATE;
        self.s.rate_from_time_constant = false;
        self.s.block_size = 0x7FF;
        self.s.ready_at = Some(now + RESET_NS);
    }

    /// 0xAA enters the read buffer once the reset has taken its time.
    fn finish_reset(&mut self, now: u64) {
        if self.s.ready_at.is_some_and(|t| now >= t) {
            self.s.ready_at = None;
            self.s.output.clear();
            self.s.output.push_back(0xAA);
        }
    }

    fn mixer_read(&self) -> u8 {
        let m = &self.s.mixer;
        let pair = |l: usize, r: usize| (m[l] & 0xF0) | (m[r] >> 4);
        match self.s.mixer_index {
            // SB Pro registers, read from their SB16 counterparts.
            0x04 => pair(0x32, 0x33),
            0x0A => m[0x3A] >> 5,
            0x22 => pair(0x30, 0x31),
            0x26 => pair(0x34, 0x35),
            0x28 => pair(0x36, 0x37),
            0x2E => pair(0x38, 0x39),
            0x82 => (self.s.irq8 as u8) | (self.s.irq16 as u8) << 1,
            i => m[i as usize],
        }
    }

    fn mixer_write(&mut self, v: u8, cx: &mut DeviceContext) {
        let i = self.s.mixer_index as usize;
        let m = &mut self.s.mixer;
        let split = |m: &mut Vec<u8>, l: usize, r: usize| {
            m[l] = (v & 0xF0) | 0x08;
            m[r] = (v << 4) | 0x08;
        };
        match i {
            0x00 => {
                let (irq, dma) = (m[0x80], m[0x81]);
                *m = mixer_defaults();
                m[0x80] = irq;
                m[0x81] = dma;
            }
            0x04 => split(m, 0x32, 0x33),
            0x0A => m[0x3A] = (v & 0x07) << 5,
            0x22 => split(m, 0x30, 0x31),
            0x26 => split(m, 0x34, 0x35),
            0x28 => split(m, 0x36, 0x37),
            0x2E => split(m, 0x38, 0x39),
            0x80 => {
                m[0x80] = v & 0x0F;
                self.update_irq(cx);
            }
            0x81 => m[0x81] = v & 0xEB,
            0x82 => tracing::debug!(v, "SB16: the interrupt status register is read-only"),
            _ => m[i] = v,
        }
    }

    fn read_byte(&mut self, port: u16, cx: &mut DeviceContext) -> u8 {
        self.finish_reset(cx.now);
        match port {
            0x224 => self.s.mixer_index,
            0x225 => self.mixer_read(),
            0x22A => {
                if let Some(b) = self.s.output.pop_front() {
                    self.s.last_read = b;
                }
                self.s.last_read
            }
            // Write buffer status: bit 7 clear, ready for a byte.
            0x22C => 0x7F,
            0x22E => {
                self.s.irq8 = false;
                self.update_irq(cx);
                if self.s.output.is_empty() {
                    0x7F
                } else {
                    0xFF
                }
            }
            0x22F => {
                self.s.irq16 = false;
                self.update_irq(cx);
                0xFF
            }
            _ => 0xFF,
        }
    }

    fn write_byte(&mut self, port: u16, v: u8, cx: &mut DeviceContext) {
        self.finish_reset(cx.now);
        match port {
            0x224 => self.s.mixer_index = v,
            0x225 => self.mixer_write(v, cx),
            0x226 => {
                let bit = v & 1 != 0;
                if self.s.reset_latch && !bit {
                    self.reset_dsp(cx.now);
                }
                self.s.reset_latch = bit;
            }
            0x22C => self.dsp_write(v, cx),
            _ => tracing::debug!(port, v, "SB16: write to a read-only or unused port"),
        }
    }
}

impl Device for Sb16 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn io_read(&mut self, port: u16, size: u8, cx: &mut DeviceContext) -> u32 {
        self.sync(cx);
        if size != 1 {
            tracing::debug!(port, size, "SB16: wide read");
            return open_bus(size) as u32;
        }
        let v = self.read_byte(port, cx) as u32;
        self.schedule(cx);
        v
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, cx: &mut DeviceContext) {
        self.sync(cx);
        for i in 0..size.min(4) as u16 {
            self.write_byte(port + i, (value >> (8 * i)) as u8, cx);
        }
        self.schedule(cx);
    }

    fn tick(&mut self, cx: &mut DeviceContext) {
        self.sync(cx);
    }

    fn reset(&mut self) {
        self.s = State::new();
    }

    fn save(&self) -> DeviceSnapshot {
        DeviceSnapshot::new(NAME, VERSION, &self.s)
    }

    fn restore(&mut self, snapshot: &DeviceSnapshot) -> Result<(), SnapshotError> {
        let s: State = snapshot.decode(NAME, VERSION)?;
        if s.mixer.len() != 256 || s.transfer.as_ref().is_some_and(|t| t.rate == 0 || t.block_frames == 0) {
            return Err(SnapshotError::Malformed {
                device: NAME.into(),
                source: <serde_json::Error as serde::de::Error>::custom("SB16 state out of range"),
            });
        }
        self.s = s;
        Ok(())
    }

    fn as_sound(&mut self) -> Option<&mut dyn SoundSource> {
        Some(self)
    }
}

impl SoundSource for Sb16 {
    fn render(&mut self, cx: &mut DeviceContext) {
        self.sync(cx);
    }

    fn stream(&mut self) -> &mut SoundStream {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MachineEvent;
    use crate::devices::dma::{Dma, IsaDmaBus};
    use crate::memory::Memory;

    /// The SB16 with a DMA controller and memory on a fake clock; deadlines fire as the board
    /// fires them, and the test plays the mixer's part.
    struct Bench {
        sb: Sb16,
        dma: Dma,
        mem: Memory,
        now: u64,
        deadline: Option<u64>,
        /// (time, line, level) of every IRQ change.
        irqs: Vec<(u64, u8, bool)>,
    }

    impl Bench {
        fn new() -> Bench {
            let mut b = Bench {
                sb: Sb16::new(),
                dma: Dma::new(),
                mem: Memory::new(4 << 20, &vec![0u8; 64 * 1024]).unwrap(),
                now: 0,
                deadline: None,
                irqs: Vec::new(),
            };
            b.sb.stream = SoundStream::enabled_at(crate::audio::frames_due(0));
            // The cascade, as a BIOS sets it up.
            b.dma_out(0xD6, 0xC0);
            b.dma_out(0xD4, 0x00);
            b
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Sb16, &mut DeviceContext) -> R) -> R {
            let (mut irqs, mut events) = (Vec::new(), Vec::<MachineEvent>::new());
            let mut dl = self.deadline;
            let mut bus = IsaDmaBus { dma: &mut self.dma, memory: &mut self.mem };
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl).with_dma(&mut bus);
            let r = f(&mut self.sb, &mut cx);
            self.deadline = dl;
            for (line, level) in irqs {
                self.irqs.push((self.now, line, level));
            }
            r
        }

        fn dma_out(&mut self, port: u16, v: u8) {
            let (mut irqs, mut events, mut dl) = (Vec::new(), Vec::<MachineEvent>::new(), None);
            let mut cx = DeviceContext::new(self.now, &mut irqs, &mut events, &mut dl);
            self.dma.io_write(port, 1, v as u32, &mut cx);
        }

        fn out(&mut self, port: u16, v: u8) {
            self.with(|s, cx| s.io_write(port, 1, v as u32, cx));
        }

        fn inb(&mut self, port: u16) -> u8 {
            self.with(|s, cx| s.io_read(port, 1, cx)) as u8
        }

        fn dsp(&mut self, bytes: &[u8]) {
            for &b in bytes {
                assert_eq!(self.inb(0x22C) & 0x80, 0, "write buffer ready");
                self.out(0x22C, b);
            }
        }

        fn read_dsp(&mut self) -> Option<u8> {
            (self.inb(0x22E) & 0x80 != 0).then(|| self.inb(0x22A))
        }

        fn run_to(&mut self, t: u64) {
            while let Some(d) = self.deadline.filter(|&d| d <= t) {
                self.now = self.now.max(d);
                self.deadline = None;
                self.with(|s, cx| s.tick(cx));
            }
            self.now = t;
        }

        fn reset(&mut self) {
            self.out(0x226, 1);
            self.now += 3_000;
            self.out(0x226, 0);
            self.run_to(self.now + 100_000);
            assert_eq!(self.read_dsp(), Some(0xAA));
        }

        /// Byte channel `c` reading `len` bytes from `addr`, single or auto-init.
        fn program8(&mut self, c: u8, addr: u32, len: u32, auto: bool) {
            const PAGE: [u16; 4] = [0x87, 0x83, 0x81, 0x82];
            self.dma_out(0x0A, 4 | c);
            self.dma_out(0x0C, 0);
            self.dma_out(0x0B, 0x48 | if auto { 0x10 } else { 0 } | c);
            self.dma_out(c as u16 * 2, addr as u8);
            self.dma_out(c as u16 * 2, (addr >> 8) as u8);
            self.dma_out(PAGE[c as usize], (addr >> 16) as u8);
            self.dma_out(c as u16 * 2 + 1, (len - 1) as u8);
            self.dma_out(c as u16 * 2 + 1, ((len - 1) >> 8) as u8);
            self.dma_out(0x0A, c);
        }

        /// Word channel 5 reading `words` words from `addr` (even).
        fn program16(&mut self, addr: u32, words: u32, auto: bool) {
            self.dma_out(0xD4, 4 | 1);
            self.dma_out(0xD8, 0);
            self.dma_out(0xD6, 0x48 | if auto { 0x10 } else { 0 } | 1);
            let w = addr >> 1;
            self.dma_out(0xC4, w as u8);
            self.dma_out(0xC4, (w >> 8) as u8);
            self.dma_out(0x8B, (addr >> 16) as u8 & 0xFE);
            self.dma_out(0xC6, (words - 1) as u8);
            self.dma_out(0xC6, ((words - 1) >> 8) as u8);
            self.dma_out(0xD4, 1);
        }

        fn rising(&self, line: u8) -> Vec<u64> {
            self.irqs.iter().filter(|e| e.1 == line && e.2).map(|e| e.0).collect()
        }

        fn left(&self) -> Vec<f32> {
            self.sb.stream.frames().iter().map(|f| f[0]).collect()
        }
    }

    #[test]
    fn reset_answers_aa_after_a_delay() {
        let mut b = Bench::new();
        b.out(0x226, 1);
        b.now += 3_000;
        b.out(0x226, 0);
        assert_eq!(b.inb(0x22E) & 0x80, 0, "not yet");
        b.now += RESET_NS;
        assert_eq!(b.inb(0x22E) & 0x80, 0x80);
        assert_eq!(b.inb(0x22A), 0xAA);
        assert_eq!(b.inb(0x22E) & 0x80, 0, "read buffer empty again");
        assert_eq!(b.inb(0x22A), 0xAA, "an empty buffer repeats the last byte");
    }

    #[test]
    fn version_identification_copyright_and_test_register() {
        let mut b = Bench::new();
        b.reset();
        b.dsp(&[0xE1]);
        assert_eq!((b.read_dsp(), b.read_dsp()), (Some(4), Some(5)), "DSP 4.05");
        b.dsp(&[0xE0, 0x5A]);
        assert_eq!(b.read_dsp(), Some(0xA5));
        b.dsp(&[0xE4, 0x3C, 0xE8]);
        assert_eq!(b.read_dsp(), Some(0x3C));
        b.dsp(&[0xE3]);
        let text: Vec<u8> = std::iter::from_fn(|| b.read_dsp()).collect();
        assert_eq!(text, COPYRIGHT);
        b.dsp(&[0xD1, 0xD8]);
        assert_eq!(b.read_dsp(), Some(0xFF));
        b.dsp(&[0xD3, 0xD8]);
        assert_eq!(b.read_dsp(), Some(0x00));
    }

    #[test]
    fn mixer_reports_irq_and_dma_settings() {
        let mut b = Bench::new();
        let mixer = |b: &mut Bench, r: u8| {
            b.out(0x224, r);
            b.inb(0x225)
        };
        assert_eq!(mixer(&mut b, 0x80), 0x02, "IRQ 5");
        assert_eq!(mixer(&mut b, 0x81), 0x22, "DMA 1 and HDMA 5");
        assert_eq!(mixer(&mut b, 0x30), 0xC0);
        // SB Pro master volume maps onto the SB16 pair and reads back.
        b.out(0x224, 0x22);
        b.out(0x225, 0xF9);
        assert_eq!(mixer(&mut b, 0x30), 0xF8);
        assert_eq!(mixer(&mut b, 0x31), 0x98);
        assert_eq!(mixer(&mut b, 0x22), 0xF9);
        // A mixer reset restores volumes, not the jumpers.
        b.out(0x224, 0x80);
        b.out(0x225, 0x04);
        b.out(0x224, 0x00);
        b.out(0x225, 0x00);
        assert_eq!(mixer(&mut b, 0x30), 0xC0);
        assert_eq!(mixer(&mut b, 0x80), 0x04, "IRQ 7 now");
        // IRQ trigger commands go to the selected line and are acknowledged by reads.
        b.reset();
        b.dsp(&[0xF2]);
        assert_eq!(b.rising(7).len(), 1);
        assert_eq!(mixer(&mut b, 0x82) & 3, 1);
        b.inb(0x22E);
        assert_eq!(mixer(&mut b, 0x82) & 3, 0);
        b.dsp(&[0xF3]);
        assert_eq!(mixer(&mut b, 0x82) & 3, 2);
        b.inb(0x22F);
        assert_eq!(b.irqs.last(), Some(&(b.now, 7, false)));
    }

    /// 8-bit unsigned square wave: `period` bytes, half 0xC0, half 0x40.
    fn square8(len: usize, period: usize) -> Vec<u8> {
        (0..len).map(|i| if i % period < period / 2 { 0xC0 } else { 0x40 }).collect()
    }

    #[test]
    fn dma_8bit_single_cycle_plays_and_interrupts_at_the_end() {
        let mut b = Bench::new();
        b.reset();
        // Full volume, so the samples come out as they are.
        for r in 0x30..=0x33 {
            b.out(0x224, r);
            b.out(0x225, 0xF8);
        }
        let data = square8(8000, 20); // 8000 bytes at 8 kHz: 1 s of 400 Hz
        b.mem.write(0x2_0000, &data);
        b.program8(1, 0x2_0000, 8000, false);
        b.dsp(&[0x41, 0x1F, 0x40]); // 8000 Hz
        let start = b.now;
        b.dsp(&[0xC0, 0x00, 0x3F, 0x1F]); // 8-bit single-cycle, mono unsigned, 8000 samples
        b.run_to(start + 500_000_000);
        assert!(b.rising(5).is_empty(), "no interrupt half way");
        // Half way, the DMA controller's count says half the bytes have moved.
        b.dma_out(0x0C, 0);
        let lo = b.dma.io_read(0x03, 1, &mut DeviceContext::new(0, &mut Vec::new(), &mut Vec::new(), &mut None));
        let hi = b.dma.io_read(0x03, 1, &mut DeviceContext::new(0, &mut Vec::new(), &mut Vec::new(), &mut None));
        let left = lo | hi << 8;
        assert!((3995..=4005).contains(&left), "{left} bytes left at 0.5 s");
        b.run_to(start + 1_100_000_000);
        // The interrupt comes when the last sample is due: 8000 samples at 8 kHz.
        let irq = b.rising(5);
        assert_eq!(irq.len(), 1);
        assert!((irq[0] - start).abs_diff(1_000_000_000) < 200_000, "IRQ at {}", irq[0] - start);
        assert_eq!(b.inb(0x22E) & 0x80, 0);
        assert_eq!(b.irqs.last().map(|e| e.2), Some(false), "acknowledged");
        // The sound: 400 Hz, levels +-0.5, silence-held afterwards.
        b.with(|s, cx| s.render(cx));
        let f = b.left();
        let tone = &f[4800..43200];
        let ups = (1..tone.len()).filter(|&i| tone[i - 1] < 0.0 && tone[i] >= 0.0).count();
        assert!((319..=321).contains(&ups), "{ups} periods in 0.8 s");
        let peak = tone.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 0.01, "peak {peak}");
    }

    #[test]
    fn dma_8bit_auto_init_interrupts_every_block_until_exit() {
        let mut b = Bench::new();
        b.reset();
        b.mem.write(0x3_0000, &square8(2000, 20));
        b.program8(1, 0x3_0000, 2000, true);
        b.dsp(&[0x40, 156]); // time constant: 10 kHz
        b.dsp(&[0x48, 0xE7, 0x03]); // blocks of 1000 bytes
        let start = b.now;
        b.dsp(&[0x1C]);
        for k in 1..=4u64 {
            b.run_to(start + k * 100_000_000 + 2_000_000);
            let irq = b.rising(5);
            assert_eq!(irq.len() as u64, k, "a block every 100 ms");
            assert!((irq[k as usize - 1] - start).abs_diff(k * 100_000_000) < 200_000);
            // Acknowledged, so the next block's interrupt is an edge again.
            b.inb(0x22E);
        }
        b.run_to(start + 450_000_000);
        b.dsp(&[0xDA]); // exit auto-init after this block
        b.run_to(start + 800_000_000);
        assert_eq!(b.rising(5).len(), 5, "one more block, then silence");
        assert!(b.sb.s.transfer.is_none());
    }

    #[test]
    fn dma_16bit_stereo_through_hdma5() {
        let mut b = Bench::new();
        b.reset();
        for r in 0x30..=0x33 {
            b.out(0x224, r);
            b.out(0x225, 0xF8);
        }
        // 22050 Hz stereo signed: left +0.25, right -0.25; 2205 frames = 100 ms per block.
        let mut data = Vec::new();
        for _ in 0..4410 {
            data.extend_from_slice(&8192i16.to_le_bytes());
            data.extend_from_slice(&(-8192i16).to_le_bytes());
        }
        b.mem.write(0x4_0000, &data);
        b.program16(0x4_0000, 8820, true);
        b.dsp(&[0x41, 0x56, 0x22]);
        let start = b.now;
        b.dsp(&[0xB6, 0x30, 0x89, 0x11]); // 16-bit auto-init, signed stereo, 4410 samples
        b.run_to(start + 350_000_000);
        let irq = b.rising(5);
        assert_eq!(irq.len(), 1, "the 16-bit interrupt stays up until 0x22F is read");
        b.out(0x224, 0x82);
        assert_eq!(b.inb(0x225) & 3, 2);
        b.inb(0x22F);
        b.run_to(start + 450_000_000);
        assert_eq!(b.rising(5).len(), 2);
        b.with(|s, cx| s.render(cx));
        let mid = b.sb.stream.frames()[10_000];
        assert!((mid[0] - 0.25).abs() < 1e-3 && (mid[1] + 0.25).abs() < 1e-3, "{mid:?}");
        // Pause: nothing moves, no interrupt; continue: on it goes.
        b.dsp(&[0xD5]);
        let paused = b.now;
        b.run_to(paused + 1_000_000_000);
        assert_eq!(b.rising(5).len(), 2);
        b.dsp(&[0xD6]);
        b.inb(0x22F);
        b.run_to(b.now + 100_000_000);
        assert_eq!(b.rising(5).len(), 3);
    }

    #[test]
    fn a_masked_channel_stalls_the_dsp() {
        let mut b = Bench::new();
        b.reset();
        b.mem.write(0x2_0000, &square8(1000, 10));
        b.program8(1, 0x2_0000, 1000, false);
        b.dma_out(0x0A, 4 | 1); // mask it again
        b.dsp(&[0x40, 156, 0x14, 0xE7, 0x03]); // 1000 bytes at 10 kHz
        let start = b.now;
        b.run_to(start + 300_000_000);
        assert!(b.rising(5).is_empty(), "no data, no end of block");
        b.dma_out(0x0A, 1);
        b.run_to(start + 300_000_000 + 150_000_000);
        assert_eq!(b.rising(5).len(), 1);
    }

    #[test]
    fn recording_writes_silence() {
        let mut b = Bench::new();
        b.reset();
        b.mem.write(0x2_0000, &[0x11; 100]);
        b.dma_out(0x0A, 4 | 1);
        b.dma_out(0x0C, 0);
        b.dma_out(0x0B, 0x44 | 1); // single, write (to memory)
        b.dma_out(0x02, 0);
        b.dma_out(0x02, 0);
        b.dma_out(0x83, 0x02);
        b.dma_out(0x03, 99);
        b.dma_out(0x03, 0);
        b.dma_out(0x0A, 1);
        b.dsp(&[0x40, 156, 0x24, 99, 0]);
        b.run_to(b.now + 20_000_000);
        let mut got = [0u8; 101];
        b.mem.read(0x2_0000, &mut got);
        assert!(got[..100].iter().all(|&x| x == 0x80));
        assert_eq!(got[100], 0);
        assert_eq!(b.rising(5).len(), 1);
    }

    #[test]
    fn nonsense_is_harmless_and_state_round_trips() {
        let mut b = Bench::new();
        b.reset();
        b.program8(1, 0x1000, 500, true);
        b.dsp(&[0x40, 0xA5, 0x48, 0x63, 0x00, 0x1C]);
        b.run_to(b.now + 12_345_678);
        let snap = b.sb.save();
        let mut c = Sb16::new();
        c.restore(&snap).unwrap();
        assert_eq!(c.save(), snap);
        let mut bad = snap.clone();
        bad.data["mixer"] = serde_json::json!([0]);
        assert!(c.restore(&bad).is_err());
        assert!(c.restore(&DeviceSnapshot::new("pit", VERSION, &())).is_err());
        let mut seed = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = [0x224, 0x225, 0x226, 0x22A, 0x22C, 0x22E, 0x22F][(seed % 7) as usize];
            if seed & 0x100 != 0 {
                b.out(port, (seed >> 24) as u8);
            } else {
                b.inb(port);
            }
            assert!(!matches!(b.deadline, Some(d) if d <= b.now));
            b.run_to(b.now + (seed >> 44) % 3_000_000);
        }
    }
}
