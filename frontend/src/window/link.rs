//! Between the emulation thread and the window's thread. Frames go to the window through a
//! one-place mailbox: a new picture replaces one the window has not taken yet (frames are
//! dropped, never queued, when the window lags), and buffers come back for reuse, so a frame
//! costs no allocation. Commands (reset, quit) come back through a channel; pause and resume go to the run loop directly (`accel::VmControl`). The
//! emulation side wakes the window with one event per waiting frame.

use accel::{RunStats, Watch};
use machine::{Frame, Machine};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the emulation thread looks for a new picture and for commands: about once a
/// 60 Hz refresh.
pub const POLL_INTERVAL: Duration = Duration::from_millis(16);
/// How often the window's title is told how the guest runs.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// What the window asks of the emulation thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Reset,
    /// Stop the guest (the window was closed).
    Quit,
}

/// How the guest runs, for the title.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub paused: bool,
    /// Millions of instructions a second, where the backend counts them.
    pub mips: Option<f64>,
    /// The share of wall time the CPU was not halted, 0 to 1.
    pub busy: f64,
}

/// What the emulation thread tells the window's event loop.
#[derive(Debug)]
pub enum UserEvent {
    /// A frame waits in the mailbox.
    Frame,
    Status(Status),
    /// The run ended with this exit status (or Ferrite's own failure).
    Ended(Result<u8, String>),
}

#[derive(Default)]
struct Slot {
    ready: Option<Frame>,
    spare: Vec<Frame>,
}

/// The one-place frame mailbox.
#[derive(Default)]
pub struct Mailbox {
    slot: Mutex<Slot>,
    /// A wake-up event is on its way to the window.
    woken: AtomicBool,
    /// Frames replaced before the window took them.
    dropped: std::sync::atomic::AtomicU64,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The emulation side: hands over the picture in `work`, taking an old buffer in exchange
    /// (its pixels are stale, but its generation says it holds the picture just handed over,
    /// so the display draws into it only when the picture changes again). Returns whether the
    /// window needs waking.
    pub fn post(&self, work: &mut Frame) -> bool {
        let mut slot = self.lock();
        let (mut buffer, replaced) = match slot.ready.take() {
            Some(old) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                (old, true)
            }
            None => (slot.spare.pop().unwrap_or_default(), false),
        };
        std::mem::swap(work, &mut buffer);
        if replaced {
            // The window never saw the picture replaced: the rows that changed in it change
            // in this one too.
            buffer.changed_rows = union(&buffer.changed_rows, &work.changed_rows);
        }
        work.generation = buffer.generation;
        slot.ready = Some(buffer);
        drop(slot);
        !self.woken.swap(true, Ordering::AcqRel)
    }

    /// The window side: the newest picture, if one came since the last call.
    pub fn take(&self) -> Option<Frame> {
        self.woken.store(false, Ordering::Release);
        self.lock().ready.take()
    }

    /// The window side: a buffer it no longer needs.
    pub fn give_back(&self, frame: Frame) {
        let mut slot = self.lock();
        if slot.spare.len() < 2 {
            slot.spare.push(frame);
        }
    }

    /// A picture waits that the window has not taken yet.
    fn lagging(&self) -> bool {
        self.lock().ready.is_some()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The rows in either range (as one range).
pub fn union(a: &Range<u32>, b: &Range<u32>) -> Range<u32> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.clone(),
        (_, true) => a.clone(),
        _ => a.start.min(b.start)..a.end.max(b.end),
    }
}

/// Frame costs for the benchmark (`FERRITE_FRAME_STATS=1` prints them at exit): wall time,
/// and the CPU time of the thread that did the work (on a busy 2-core machine the wall time
/// counts the waits for a core too).
#[derive(Default)]
pub struct Costs {
    pub count: u64,
    pub total: Duration,
    pub cpu: Duration,
    pub max: Duration,
}

/// A cost being measured: started with [`Costs::start`], ended with [`Costs::add`].
pub struct Started {
    wall: Instant,
    cpu: Duration,
}

impl Costs {
    pub fn start() -> Started {
        Started { wall: Instant::now(), cpu: thread_cpu_time() }
    }

    pub fn add(&mut self, started: &Started) {
        let d = started.wall.elapsed();
        self.count += 1;
        self.total += d;
        self.cpu += thread_cpu_time().saturating_sub(started.cpu);
        self.max = self.max.max(d);
    }

    pub fn summary(&self) -> String {
        if self.count == 0 {
            return "none".into();
        }
        let per_frame = |d: Duration| d.as_secs_f64() * 1e3 / self.count as f64;
        format!(
            "{} frames, mean {:.3} ms ({:.3} ms CPU), max {:.3} ms",
            self.count,
            per_frame(self.total),
            per_frame(self.cpu),
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The emulation thread's end: called from the run loop's watcher.
pub struct GuestSide {
    mailbox: Arc<Mailbox>,
    wake: Box<dyn Fn(UserEvent) + Send>,
    commands: Receiver<Command>,
    work: Frame,
    last_status: Instant,
    last_instructions: Option<u64>,
    last_idle: Duration,
    last_paused: Duration,
    /// Rendering waits until then: a picture costs the guest at most a quarter of its time.
    next_render: Instant,
    pub render_costs: Costs,
}

impl GuestSide {
    pub fn new(mailbox: Arc<Mailbox>, wake: Box<dyn Fn(UserEvent) + Send>, commands: Receiver<Command>) -> GuestSide {
        GuestSide {
            mailbox,
            wake,
            commands,
            work: Frame::new(),
            last_status: Instant::now(),
            last_instructions: None,
            last_idle: Duration::ZERO,
            last_paused: Duration::ZERO,
            next_render: Instant::now(),
            render_costs: Costs::default(),
        }
    }

    /// One look from the run loop: commands, then the picture, then (now and then) the status.
    pub fn poll(&mut self, m: &mut Machine, stats: &RunStats) -> Watch {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Quit) | Err(TryRecvError::Disconnected) => return Watch::Stop(0),
                Ok(Command::Reset) => return Watch::Reset,
                Err(TryRecvError::Empty) => break,
            }
        }
        self.publish(m);
        if self.last_status.elapsed() >= STATUS_INTERVAL {
            let status = self.status(stats, false);
            (self.wake)(UserEvent::Status(status));
        }
        Watch::Continue
    }

    /// Renders the picture if it changed and hands it to the window. Not while the window has
    /// not taken the last one (it lags: the picture would be dropped anyway), and not sooner
    /// than three times the last picture's cost after it, so a guest that changes a large
    /// screen all the time still gets three quarters of the thread.
    fn publish(&mut self, m: &mut Machine) {
        let started = Costs::start();
        if started.wall < self.next_render || self.mailbox.lagging() {
            return;
        }
        let now = m.now();
        let Some(display) = m.display() else { return };
        if display.render(now, &mut self.work) {
            self.render_costs.add(&started);
            self.next_render = started.wall + started.wall.elapsed() * 4;
            if self.mailbox.post(&mut self.work) {
                (self.wake)(UserEvent::Frame);
            }
        }
    }

    fn status(&mut self, stats: &RunStats, paused: bool) -> Status {
        // A pause (`VmControl`, the run loop's) is not the guest's idle time nor its speed.
        let pause = stats.paused.saturating_sub(self.last_paused);
        self.last_paused = stats.paused;
        let wall = self.last_status.elapsed().saturating_sub(pause).as_secs_f64().max(1e-6);
        let mips = match (stats.instructions, self.last_instructions) {
            (Some(now), Some(before)) => Some(now.saturating_sub(before) as f64 / wall / 1e6),
            _ => None,
        };
        let idle = stats.idle.saturating_sub(self.last_idle).as_secs_f64();
        self.last_status = Instant::now();
        self.last_instructions = stats.instructions;
        self.last_idle = stats.idle;
        Status { paused, mips: mips.filter(|_| !paused), busy: (1.0 - idle / wall).clamp(0.0, 1.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(generation: u64, byte: u8) -> Frame {
        let mut f = Frame::new();
        f.resize(2, 1);
        f.pixels.fill(byte);
        f.generation = generation;
        f
    }

    #[test]
    fn a_lagging_window_gets_the_newest_frame_and_the_rest_are_dropped() {
        let mb = Mailbox::default();
        let mut work = frame(7, 1);
        assert!(mb.post(&mut work), "the first frame wakes the window");
        assert_eq!(work.generation, 7, "the emulation side knows the window has picture 7");
        work = frame(8, 2);
        assert!(!mb.post(&mut work), "a wake-up is already on its way");
        let got = mb.take().unwrap();
        assert_eq!((got.generation, got.pixels[0]), (8, 2));
        assert_eq!(mb.dropped(), 1);
        assert!(mb.take().is_none(), "nothing is queued behind it");
    }

    #[test]
    fn a_dropped_frame_passes_its_changed_rows_on() {
        let mb = Mailbox::default();
        let mut work = frame(1, 1);
        work.changed_rows = 10..20;
        mb.post(&mut work);
        let mut next = frame(2, 2);
        next.changed_rows = 5..6;
        mb.post(&mut next);
        assert_eq!(mb.take().unwrap().changed_rows, 5..20, "the window missed rows 10-19 of frame 1");
        let mut last = frame(3, 3);
        last.changed_rows = 7..8;
        mb.post(&mut last);
        assert_eq!(mb.take().unwrap().changed_rows, 7..8);
        assert_eq!(union(&(0..0), &(3..4)), 3..4);
    }

    #[test]
    fn buffers_come_back_for_reuse() {
        let mb = Mailbox::default();
        let mut work = frame(1, 1);
        mb.post(&mut work);
        let shown = mb.take().unwrap();
        mb.give_back(shown);
        let mut next = frame(2, 5);
        assert!(mb.post(&mut next), "the window took the last one: wake it again");
        assert_eq!(next.pixels.len(), 8, "the buffer given back is the one reused");
        assert_eq!(next.generation, 2);
        assert_eq!(mb.take().unwrap().pixels[0], 5);
    }
}
