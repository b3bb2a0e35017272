//! Sound as the frontends take it. Every sound device renders its output, in virtual time, as
//! stereo frames at one rate ([`RATE`]): frame k plays at k / RATE seconds of virtual time. A
//! device renders up to "now" whenever it is about to change what it plays and when the board
//! asks; the board's [`Mixer`] sums the devices' streams every few milliseconds of virtual time
//! and hands the result to the sinks the frontend attached (a WAV file, the host's sound card).
//! With no sink attached nothing is rendered, but devices still run their clocks (DMA, IRQs),
//! so the guest cannot tell.

use crate::device::DeviceContext;

/// Frames per second of virtual time.
pub const RATE: u32 = 48_000;
/// How often the board mixes, in virtual nanoseconds.
pub const MIX_INTERVAL_NS: u64 = 5_000_000;
const NS_PER_S: u128 = 1_000_000_000;

/// One stereo frame, each side in -1.0..=1.0 (louder is clipped by the sinks).
pub type Frame = [f32; 2];

/// How many frames have begun by virtual time `now` (frame 0 plays at time 0).
pub fn frames_due(now: u64) -> u64 {
    (now as u128 * RATE as u128 / NS_PER_S) as u64 + 1
}

/// The virtual time at which frame `k` plays (the first nanosecond at or after it).
pub fn frame_time(k: u64) -> u64 {
    u64::try_from((k as u128 * NS_PER_S).div_ceil(RATE as u128)).unwrap_or(u64::MAX)
}

/// Virtual time `ns` in frames, with the fraction (for band-limited steps between frames).
pub fn frames_at(ns: u64) -> f64 {
    ns as f64 * RATE as f64 / 1e9
}

/// What a sound device has rendered and the mixer has not taken yet. `position` is the index
/// of the next frame the device owes; while no sink is attached the stream is disabled and a
/// device only moves the position on.
#[derive(Debug, Default)]
pub struct SoundStream {
    enabled: bool,
    position: u64,
    frames: Vec<Frame>,
}

impl SoundStream {
    pub fn new() -> SoundStream {
        SoundStream::default()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The index of the next frame to render.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Frames owed up to virtual time `now`.
    pub fn owed(&self, now: u64) -> u64 {
        frames_due(now).saturating_sub(self.position)
    }

    /// Appends the next frame.
    pub fn push(&mut self, frame: Frame) {
        if self.enabled {
            self.frames.push(frame);
        }
        self.position += 1;
    }

    /// Disabled streams: moves the position to `now` without rendering.
    pub fn skip_to(&mut self, now: u64) {
        self.position = self.position.max(frames_due(now));
    }

    /// The board starts (or stops) taking frames from here on.
    pub(crate) fn set_enabled(&mut self, on: bool, position: u64) {
        self.enabled = on;
        self.position = position;
        self.frames.clear();
    }

    /// The frames rendered and not yet mixed (device tests look at them).
    #[cfg(test)]
    pub(crate) fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// A test's stand-in for the board: the stream takes frames from `position` on.
    #[cfg(test)]
    pub(crate) fn enabled_at(position: u64) -> SoundStream {
        SoundStream { enabled: true, position, frames: Vec::new() }
    }

    fn take_into(&mut self, start: u64, out: &mut [Frame]) {
        // The frames held begin at `position - len`; the mixer's window begins at `start`.
        let first = self.position - self.frames.len() as u64;
        for (i, f) in self.frames.iter().enumerate() {
            let k = first + i as u64;
            if let Some(o) = k.checked_sub(start).and_then(|j| out.get_mut(j as usize)) {
                o[0] += f[0];
                o[1] += f[1];
            }
        }
        self.frames.clear();
    }
}

/// A device that makes sound (reached through `Device::as_sound`).
pub trait SoundSource {
    /// Renders every frame due by `cx.now` into the stream (the context gives ISA DMA).
    fn render(&mut self, cx: &mut DeviceContext);
    fn stream(&mut self) -> &mut SoundStream;
}

/// Where mixed sound goes: a WAV file, the host's sound card. Called on the emulator's thread;
/// must not block for long.
pub trait AudioSink: Send {
    fn write(&mut self, frames: &[Frame]);
    /// The run is over: finish the file. Errors are reported to the user.
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// The board's mixer: sums the sound devices' streams and feeds the sinks.
pub struct Mixer {
    sinks: Vec<Box<dyn AudioSink>>,
    /// The index of the next frame to mix.
    next: u64,
    /// When the board mixes next.
    pub(crate) next_mix: u64,
    buf: Vec<Frame>,
}

impl Mixer {
    pub(crate) fn new(now: u64) -> Mixer {
        Mixer { sinks: Vec::new(), next: frames_due(now), next_mix: now + MIX_INTERVAL_NS, buf: Vec::new() }
    }

    pub(crate) fn add_sink(&mut self, sink: Box<dyn AudioSink>) {
        self.sinks.push(sink);
    }

    pub(crate) fn start_position(&self) -> u64 {
        self.next
    }

    /// Mixes the frames due by `now` from `streams` (each already rendered up to `now`).
    pub(crate) fn mix<'a>(&mut self, now: u64, streams: impl Iterator<Item = &'a mut SoundStream>) {
        let end = frames_due(now);
        self.next_mix = now + MIX_INTERVAL_NS;
        if end <= self.next {
            return;
        }
        self.buf.clear();
        self.buf.resize((end - self.next) as usize, [0.0; 2]);
        for s in streams {
            s.take_into(self.next, &mut self.buf);
        }
        self.next = end;
        for sink in &mut self.sinks {
            sink.write(&self.buf);
        }
    }

    pub(crate) fn finish(&mut self) -> Vec<String> {
        self.sinks.iter_mut().filter_map(|s| s.finish().err()).collect()
    }
}

/// A frame as 16-bit PCM, clipped.
pub fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_times_and_counts_agree() {
        assert_eq!(frames_due(0), 1);
        for k in [1u64, 2, 47_999, 48_000, 123_456_789] {
            let t = frame_time(k);
            assert_eq!(frames_due(t), k + 1, "frame {k} has begun at its time");
            assert_eq!(frames_due(t - 1), k, "and not a nanosecond before");
        }
        assert_eq!(frames_due(1_000_000_000), RATE as u64 + 1);
    }

    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<Frame>>>);
    impl AudioSink for Collect {
        fn write(&mut self, frames: &[Frame]) {
            self.0.lock().unwrap().extend_from_slice(frames);
        }
    }

    #[test]
    fn mixer_sums_streams_from_a_common_position() {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut m = Mixer::new(0);
        m.add_sink(Box::new(Collect(got.clone())));
        let (mut a, mut b) = (SoundStream::new(), SoundStream::new());
        a.set_enabled(true, m.start_position());
        b.set_enabled(true, m.start_position());
        let now = frame_time(9);
        for _ in 0..a.owed(now) {
            a.push([0.25, -0.25]);
        }
        // b renders late frames only from its second one (a device that was quiet).
        b.skip_to(frame_time(1));
        for _ in 0..b.owed(now) {
            b.push([0.5, 0.5]);
        }
        m.mix(now, [&mut a, &mut b].into_iter());
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 9, "frames 1..=9 (frame 0 was due before the mixer started)");
        assert_eq!(got[0], [0.25, -0.25]);
        assert_eq!(got[8], [0.75, 0.25]);
        assert_eq!(to_i16(2.0), 32767);
        assert_eq!(to_i16(-0.5), -16384);
    }
}
