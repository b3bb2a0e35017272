//! Where the guest's sound goes: `--audio-out FILE.wav` (every frame the machine mixes, at
//! `machine::audio::RATE`, 16-bit stereo, through hound) and the host's sound card (cpal).
//! The machine mixes in virtual time on the emulator's thread and pushes frames into a
//! lock-free ring; the sound card's callback takes what is there, resampled to the device's
//! rate, and plays silence when the ring runs dry (refilling a little before it plays again,
//! so an emulator that falls behind is heard as gaps, never as repeated buffers). With no
//! sound card Ferrite runs silently.

use anyhow::{anyhow, Result};
use crossbeam::queue::ArrayQueue;
use machine::audio::{to_i16, AudioSink, Frame, RATE};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `--audio-out`: a WAV file of everything the guest plays.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    error: Option<String>,
}

impl WavSink {
    pub fn create(path: &Path) -> Result<WavSink> {
        let spec =
            hound::WavSpec { channels: 2, sample_rate: RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| anyhow!("--audio-out {}: {e}", path.display()))?;
        Ok(WavSink { path: path.to_path_buf(), writer: Some(writer), error: None })
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, frames: &[Frame]) {
        let Some(w) = self.writer.as_mut() else { return };
        for f in frames {
            for &x in f {
                if let Err(e) = w.write_sample(to_i16(x)) {
                    // Keep the first error for the end of the run; stop writing.
                    self.error = Some(e.to_string());
                    self.writer = None;
                    return;
                }
            }
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        let what = |e: &dyn std::fmt::Display| format!("--audio-out {}: {e}", self.path.display());
        if let Some(e) = &self.error {
            return Err(what(e));
        }
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| what(&e)),
            None => Ok(()),
        }
    }
}

/// Frames the ring holds: 250 ms. More than that and the emulator runs ahead of the card
/// (a deterministic run faster than real time): the newest frames are dropped.
const RING_FRAMES: usize = (RATE / 4) as usize;
/// After running dry, the card waits for this much (40 ms) before playing again.
const REFILL_FRAMES: usize = (RATE / 25) as usize;

/// The machine's end of the ring.
struct RingSink {
    ring: Arc<ArrayQueue<Frame>>,
    dropped: u64,
}

impl AudioSink for RingSink {
    fn write(&mut self, frames: &[Frame]) {
        for &f in frames {
            if self.ring.push(f).is_err() {
                self.dropped += 1;
                if self.dropped == 1 {
                    tracing::debug!("host audio: the guest is running ahead of the sound card; dropping frames");
                }
            }
        }
    }
}

/// The card's end of the ring: resamples from `RATE` to the device's rate (linear), plays
/// silence when the ring is dry.
struct Playback {
    ring: Arc<ArrayQueue<Frame>>,
    playing: bool,
    /// Source frames per device frame.
    step: f64,
    pos: f64,
    prev: Frame,
    cur: Frame,
}

impl Playback {
    fn next_frame(&mut self) -> Frame {
        if !self.playing && self.ring.len() >= REFILL_FRAMES {
            self.playing = true;
        }
        while self.pos >= 1.0 {
            self.pos -= 1.0;
            self.prev = self.cur;
            self.cur = match self.ring.pop() {
                Some(f) if self.playing => f,
                Some(_) => [0.0; 2],
                None => {
                    self.playing = false;
                    [0.0; 2]
                }
            };
        }
        let t = self.pos as f32;
        let out = [self.prev[0] + (self.cur[0] - self.prev[0]) * t, self.prev[1] + (self.cur[1] - self.prev[1]) * t];
        self.pos += self.step;
        out
    }

    fn fill<T: cpal::SizedSample + cpal::FromSample<f32>>(&mut self, data: &mut [T], channels: usize) {
        for out in data.chunks_mut(channels) {
            let f = self.next_frame();
            for (i, s) in out.iter_mut().enumerate() {
                let x = match channels {
                    1 => (f[0] + f[1]) / 2.0,
                    _ => f.get(i).copied().unwrap_or(0.0),
                };
                *s = T::from_sample(x.clamp(-1.0, 1.0));
            }
        }
    }
}

/// The host's sound card, while it plays. Dropping it stops the sound.
pub struct HostAudio {
    _stream: cpal::Stream,
}

/// Whether the kernel knows any sound card. Without one, ALSA is not asked at all: asking it
/// fills standard error with its own complaints on a headless machine.
fn host_has_sound_card() -> bool {
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string("/proc/asound/cards") {
            Ok(cards) => !cards.contains("no soundcards") && !cards.trim().is_empty(),
            Err(_) => false,
        }
    } else {
        true
    }
}

/// Opens the host's default output device and returns the sink the machine feeds, or None
/// (said in the log) when there is no device or it cannot play: the guest then runs silently.
pub fn open_host() -> Option<(HostAudio, Box<dyn AudioSink>)> {
    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
    if !host_has_sound_card() {
        tracing::info!("no sound card: running without sound");
        return None;
    }
    let device = cpal::default_host().default_output_device().or_else(|| {
        tracing::info!("no audio output device: running without sound");
        None
    })?;
    // Prefer the machine's own rate (no resampling); else the device's default.
    let config = device
        .supported_output_configs()
        .ok()
        .and_then(|mut c| {
            c.find(|c| c.channels() <= 2 && c.min_sample_rate().0 <= RATE && RATE <= c.max_sample_rate().0)
        })
        .map(|c| c.with_sample_rate(cpal::SampleRate(RATE)))
        .or_else(|| device.default_output_config().ok());
    let Some(config) = config else {
        tracing::warn!("the audio output device offers no usable format: running without sound");
        return None;
    };
    let ring = Arc::new(ArrayQueue::new(RING_FRAMES));
    let channels = config.channels() as usize;
    let mut playback = Playback {
        ring: ring.clone(),
        playing: false,
        step: RATE as f64 / config.sample_rate().0 as f64,
        pos: 0.0,
        prev: [0.0; 2],
        cur: [0.0; 2],
    };
    let on_error = |e| tracing::warn!("audio output: {e}");
    let stream_config = config.config();
    let stream = match config.sample_format() {
        cpal::SampleFormat::F32 => device.build_output_stream(
            &stream_config,
            move |d: &mut [f32], _: &_| playback.fill(d, channels),
            on_error,
            None,
        ),
        cpal::SampleFormat::I16 => device.build_output_stream(
            &stream_config,
            move |d: &mut [i16], _: &_| playback.fill(d, channels),
            on_error,
            None,
        ),
        cpal::SampleFormat::U16 => device.build_output_stream(
            &stream_config,
            move |d: &mut [u16], _: &_| playback.fill(d, channels),
            on_error,
            None,
        ),
        other => {
            tracing::warn!("the audio output device wants {other:?} samples: running without sound");
            return None;
        }
    };
    let played = stream.map_err(|e| e.to_string()).and_then(|s| s.play().map(|_| s).map_err(|e| e.to_string()));
    let stream = match played {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot play on the audio output device ({e}): running without sound");
            return None;
        }
    };
    Some((HostAudio { _stream: stream }, Box::new(RingSink { ring, dropped: 0 })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playback(step: f64) -> (Arc<ArrayQueue<Frame>>, Playback) {
        let ring = Arc::new(ArrayQueue::new(RING_FRAMES));
        let p = Playback { ring: ring.clone(), playing: false, step, pos: 0.0, prev: [0.0; 2], cur: [0.0; 2] };
        (ring, p)
    }

    #[test]
    fn dry_ring_plays_silence_then_waits_for_a_refill() {
        let (ring, mut p) = playback(1.0);
        for _ in 0..10 {
            ring.push([0.5, 0.5]).unwrap();
        }
        // Too little to start: silence, and nothing is taken.
        assert_eq!(p.next_frame(), [0.0; 2]);
        for _ in 0..REFILL_FRAMES {
            ring.push([0.5, -0.5]).unwrap();
        }
        let played: Vec<Frame> = (0..REFILL_FRAMES + 20).map(|_| p.next_frame()).collect();
        assert!(played.contains(&[0.5, 0.5]));
        // Ran dry: silence, not the last frames again.
        assert!(played[played.len() - 5..].iter().all(|f| *f == [0.0; 2]));
        assert!(!p.playing);
    }

    #[test]
    fn resampling_keeps_the_rate() {
        // 48 kHz into a 44.1 kHz card: 441 frames out per 480 in.
        let (ring, mut p) = playback(RATE as f64 / 44_100.0);
        p.playing = true;
        for i in 0..4800 {
            ring.push([i as f32 / 4800.0, 0.0]).unwrap();
        }
        let mut n = 0;
        while !ring.is_empty() {
            p.next_frame();
            n += 1;
        }
        assert!((4409..=4411).contains(&n), "{n} frames");
    }

    #[test]
    fn wav_sink_writes_16_bit_stereo_at_the_machine_rate() {
        let path = std::env::temp_dir().join(format!("ferrite-wav-{}.wav", std::process::id()));
        let mut w = WavSink::create(&path).unwrap();
        w.write(&[[0.5, -0.5], [2.0, -2.0]]);
        w.finish().unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_rate, RATE);
        assert_eq!(r.spec().channels, 2);
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(s, vec![16384, -16384, 32767, -32767]);
        std::fs::remove_file(&path).unwrap();
        let e = WavSink::create(Path::new("/nonexistent/dir/x.wav")).err().expect("no such directory");
        assert!(e.to_string().starts_with("--audio-out"), "{e}");
    }
}
