//! The PC speaker's sound: a two-level signal (PIT counter 2's OUT gated by port 0x61 bit 1,
//! or port 0x61 bit 1 alone) rendered as a band-limited waveform. Each level change is a step
//! placed at its exact virtual time between frames and smoothed with a windowed-sinc
//! band-limited step (BLEP), so a square wave has no aliasing and an edge is never a
//! frame-quantised click; the speaker cone passes no DC, which a one-pole high-pass models.
//! The PIT (`pit.rs`) finds the level changes and feeds them here.

use crate::audio::{frames_at, SoundStream};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::OnceLock;

/// Half the BLEP kernel, in frames: frames come out this much after the signal they show.
const HALF: usize = 8;
const TAPS: usize = 2 * HALF;
/// Table resolution: kernel points per frame.
const PHASES: usize = 64;
/// The kernel's cutoff as a fraction of the frame rate (0.5 is Nyquist): 20.2 kHz at 48 kHz.
const CUTOFF: f64 = 0.42;
/// Output for a high speaker input before the high-pass (the square wave swings half of it).
const AMPLITUDE: f32 = 0.4;
/// The high-pass pole: about 30 Hz at 48 kHz (exp(-2π·30/48000)), about where a PC speaker's
/// response ends.
const DC_POLE: f32 = 0.996_08;

/// The band-limited unit step at `PHASES` points per frame over `-HALF..HALF` frames
/// (a Blackman-windowed sinc, integrated and normalised).
fn step_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let n = TAPS * PHASES;
        let kernel = |x: f64| {
            let w = 0.42 + 0.5 * (std::f64::consts::PI * x / HALF as f64).cos()
                + 0.08 * (2.0 * std::f64::consts::PI * x / HALF as f64).cos();
            let s = if x == 0.0 {
                2.0 * CUTOFF
            } else {
                (2.0 * std::f64::consts::PI * CUTOFF * x).sin() / (std::f64::consts::PI * x)
            };
            w * s
        };
        // Integrate with the midpoint rule, 16 sub-steps per table point.
        const SUB: usize = 16;
        let dx = 1.0 / (PHASES * SUB) as f64;
        let mut integral = Vec::with_capacity(n + 1);
        let mut acc = 0.0;
        integral.push(0.0);
        for i in 0..n {
            for j in 0..SUB {
                let x = -(HALF as f64) + (i * SUB + j) as f64 * dx + dx / 2.0;
                acc += kernel(x) * dx;
            }
            integral.push(acc);
        }
        let total = acc;
        integral.iter().map(|v| (v / total) as f32).collect()
    })
}

/// The residual at `x` frames from a step (zero outside `-HALF..HALF`).
fn residual(x: f64) -> f32 {
    let pos = (x + HALF as f64) * PHASES as f64;
    if !(0.0..(TAPS * PHASES) as f64).contains(&pos) {
        return 0.0;
    }
    let t = step_table();
    let i = pos as usize;
    let f = (pos - i as f64) as f32;
    let ideal = if x >= 0.0 { 1.0 } else { 0.0 };
    t[i] + (t[i + 1] - t[i]) * f - ideal
}

/// The renderer's state (plain data, saved with the PIT).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeakerSynth {
    /// The input level (0.0..=1.0) after every step handed in so far.
    level: f32,
    /// The level the frames being output show (steps up to `HALF` frames ago).
    shown: f32,
    /// Steps not yet reached by the output: (time in frames, height).
    pending: VecDeque<(f64, f32)>,
    /// Residual corrections for the next `TAPS` frames, from frame `next` on.
    corrections: Vec<f32>,
    /// The frame the corrections start at.
    next: u64,
    /// High-pass memory: last input and output.
    dc_x: f32,
    dc_y: f32,
}

impl Default for SpeakerSynth {
    fn default() -> Self {
        SpeakerSynth::new()
    }
}

impl SpeakerSynth {
    pub fn new() -> SpeakerSynth {
        SpeakerSynth {
            level: 0.0,
            shown: 0.0,
            pending: VecDeque::new(),
            corrections: vec![0.0; TAPS],
            next: 0,
            dc_x: 0.0,
            dc_y: 0.0,
        }
    }

    pub fn level(&self) -> f32 {
        self.level
    }

    /// The input moves to `level` at virtual time `ns` (not before earlier steps); the frames
    /// up to then are rendered first.
    pub fn step(&mut self, ns: u64, level: f32, stream: &mut SoundStream) {
        let h = level - self.level;
        if h == 0.0 {
            return;
        }
        self.render(ns, stream);
        self.level = level;
        // Frame k shows the signal at k - HALF, so a step at `tau` touches frames tau..tau+TAPS:
        // all of them still ahead, as the PIT renders up to a step's time before making it.
        let tau = frames_at(ns).max(self.next as f64 - HALF as f64);
        self.pending.push_back((tau, h));
        for (j, c) in self.corrections.iter_mut().enumerate() {
            let k = self.next + j as u64;
            *c += h * residual(k as f64 - HALF as f64 - tau);
        }
    }

    /// Renders the frames owed up to virtual time `now` into `stream`.
    pub fn render(&mut self, now: u64, stream: &mut SoundStream) {
        if !stream.enabled() {
            stream.skip_to(now);
            self.resync(stream.position());
            return;
        }
        if stream.position() != self.next {
            self.resync(stream.position());
        }
        for _ in 0..stream.owed(now) {
            let k = self.next;
            while let Some(&(tau, h)) = self.pending.front() {
                if tau > k as f64 - HALF as f64 {
                    break;
                }
                self.shown += h;
                self.pending.pop_front();
            }
            let x = (self.shown + self.corrections[0]) * AMPLITUDE;
            self.corrections.rotate_left(1);
            self.corrections[TAPS - 1] = 0.0;
            self.next += 1;
            let y = x - self.dc_x + DC_POLE * self.dc_y;
            self.dc_x = x;
            self.dc_y = y;
            stream.push([y, y]);
        }
    }

    /// The output jumped (no sink was attached, or a snapshot): settle at the current level.
    fn resync(&mut self, position: u64) {
        self.pending.clear();
        self.corrections.iter_mut().for_each(|c| *c = 0.0);
        self.shown = self.level;
        self.next = position;
        self.dc_x = self.level * AMPLITUDE;
        self.dc_y = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{frame_time, RATE};

    #[test]
    fn residual_is_a_step_correction() {
        assert!(residual(-(HALF as f64) - 0.1).abs() < 1e-6);
        assert!(residual(HALF as f64 + 0.1).abs() < 1e-6);
        // Half way up at the step, from either side.
        assert!((residual(-1e-9) - 0.5).abs() < 0.01, "{}", residual(-1e-9));
        assert!((residual(0.0) + 0.5).abs() < 0.01);
        // Near the ends of the kernel it has died down.
        assert!(residual(-(HALF as f64) + 0.5).abs() < 0.01);
        assert!(residual(HALF as f64 - 0.5).abs() < 0.01);
    }

    fn stream() -> SoundStream {
        let mut s = SoundStream::new();
        s.set_enabled(true, 0);
        s
    }

    #[test]
    fn a_square_wave_has_its_frequency_and_no_dc() {
        let mut synth = SpeakerSynth::new();
        let mut s = stream();
        // 1 kHz for 300 ms: a step every 500 µs.
        for i in 0..600u64 {
            synth.step(i * 500_000 + 123, if i % 2 == 0 { 1.0 } else { 0.0 }, &mut s);
        }
        synth.render(300_000_000, &mut s);
        let f: Vec<f32> = s.frames().iter().map(|f| f[0]).collect();
        assert_eq!(f.len() as u64, crate::audio::frames_due(300_000_000));
        // Once the high-pass has settled (its time constant is 5 ms): upward zero crossings
        // over the last 200 ms, 200 periods of 48 frames.
        let start = (RATE / 10) as usize;
        let ups: Vec<usize> = (start..f.len() - 1).filter(|&i| f[i] < 0.0 && f[i + 1] >= 0.0).collect();
        assert!((199..=201).contains(&ups.len()), "{} crossings", ups.len());
        let period = (ups[ups.len() - 1] - ups[0]) as f64 / (ups.len() - 1) as f64;
        assert!((period - 48.0).abs() < 0.1, "period {period} frames");
        let peak = f[start..].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.15 && peak < 0.3, "peak {peak}");
        let mean = f[start..].iter().sum::<f32>() / (f.len() - start) as f32;
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn an_edge_between_frames_is_placed_by_its_fraction() {
        // The same step a quarter and three quarters of a frame after frame 100: the later one
        // shows less in the frames around it.
        let render = |offset_ns: u64| {
            let mut synth = SpeakerSynth::new();
            let mut s = stream();
            synth.render(frame_time(90), &mut s);
            synth.step(frame_time(100) + offset_ns, 1.0, &mut s);
            synth.render(frame_time(130), &mut s);
            s.frames().iter().map(|f| f[0]).collect::<Vec<f32>>()
        };
        let (early, late) = (render(5_000), render(15_000));
        let at = 100 + HALF;
        assert!(early[at] > late[at], "{} vs {}", early[at], late[at]);
        assert!((early[at] - late[at]).abs() < 0.2);
        // Both settle at the same level once past the kernel.
        assert!((early[at + HALF + 2] - late[at + HALF + 2]).abs() < 1e-3);
    }

    #[test]
    fn disabled_streams_only_move_on() {
        let mut synth = SpeakerSynth::new();
        let mut s = SoundStream::new();
        synth.step(1_000, 1.0, &mut s);
        synth.render(1_000_000, &mut s);
        assert!(s.frames().is_empty());
        assert_eq!(s.position(), crate::audio::frames_due(1_000_000));
        let state = serde_json::to_value(&synth).unwrap();
        let back: SpeakerSynth = serde_json::from_value(state).unwrap();
        assert_eq!(back, synth);
    }
}
