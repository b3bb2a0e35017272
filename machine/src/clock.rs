//! The virtual clock: one time line in nanoseconds that every device schedules against.
//! Real-time mode follows the host's monotonic clock; deterministic mode only moves when the
//! CPU backend says so (instructions retired at a nominal rate, or a jump to the next deadline
//! while the CPU is halted), so identical runs see identical times.

use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockMode {
    RealTime,
    Deterministic,
}

#[derive(Debug)]
pub struct Clock {
    mode: ClockMode,
    /// Deterministic: the current time. Real time: the time at `origin`.
    base: u64,
    origin: Instant,
}

impl Clock {
    pub fn new(mode: ClockMode) -> Clock {
        Clock { mode, base: 0, origin: Instant::now() }
    }

    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    pub fn is_deterministic(&self) -> bool {
        self.mode == ClockMode::Deterministic
    }

    /// Virtual nanoseconds since power-on.
    pub fn now(&self) -> u64 {
        match self.mode {
            ClockMode::Deterministic => self.base,
            ClockMode::RealTime => self.base + self.origin.elapsed().as_nanos() as u64,
        }
    }

    /// Deterministic mode: move time forward by `ns`. Ignored in real time, where the host
    /// clock moves on by itself.
    pub fn advance(&mut self, ns: u64) {
        if self.mode == ClockMode::Deterministic {
            self.base = self.base.saturating_add(ns);
        }
    }

    /// Deterministic mode: jump forward to `t` if it lies ahead.
    pub fn advance_to(&mut self, t: u64) {
        if self.mode == ClockMode::Deterministic && t > self.base {
            self.base = t;
        }
    }

    /// Restore a saved time (snapshots): the clock continues from `t`.
    pub fn set(&mut self, t: u64) {
        self.base = t;
        self.origin = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_clock_moves_only_when_told() {
        let mut c = Clock::new(ClockMode::Deterministic);
        assert_eq!(c.now(), 0);
        c.advance(500);
        c.advance_to(400);
        assert_eq!(c.now(), 500);
        c.advance_to(1_000);
        assert_eq!(c.now(), 1_000);
    }

    #[test]
    fn real_time_clock_follows_host() {
        let mut c = Clock::new(ClockMode::RealTime);
        c.set(1_000_000_000);
        let t0 = c.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(c.now() >= t0 + 1_000_000);
    }
}
