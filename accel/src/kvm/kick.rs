//! Getting the vCPU out of `KVM_RUN` at a deadline when the guest runs without exits.
//!
//! Firecracker's scheme: a signal with an empty-effect handler, installed without
//! `SA_RESTART`, is sent to the vCPU thread; the handler sets `immediate_exit` in the vCPU's
//! `kvm_run` through a thread-local pointer. A signal that lands inside `KVM_RUN` makes it
//! return `EINTR`; one that lands just before makes the next `KVM_RUN` return at once, so no
//! kick is lost between the deadline check and the ioctl. A timer thread per backend sends
//! the signal when the deadline comes.

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

thread_local! {
    /// The `immediate_exit` byte of the `kvm_run` area of the vCPU this thread is running,
    /// or null outside `Kvm::run`. Const-initialised and without destructor, so the signal
    /// handler can read it without allocating.
    static IMMEDIATE_EXIT: AtomicPtr<u8> = const { AtomicPtr::new(std::ptr::null_mut()) };
    /// The kick signal is known to be unblocked on this thread.
    static UNBLOCKED: Cell<bool> = const { Cell::new(false) };
}

/// The real-time signal used for kicks. glibc keeps the first two for itself and `SIGRTMIN()`
/// already skips them; the offset keeps clear of programs that take `SIGRTMIN` itself.
pub(super) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_signal: libc::c_int) {
    let p = IMMEDIATE_EXIT.with(|p| p.load(Ordering::Relaxed));
    if !p.is_null() {
        // SAFETY: a non-null pointer is only published while `Kvm::run` executes on this very
        // thread, and points into that vCPU's `kvm_run` mapping, which outlives the call.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// Installs the handler (once per process) and unblocks the signal on the calling thread
/// (once per thread).
fn prepare_thread() -> Result<(), String> {
    if UNBLOCKED.with(Cell::get) {
        return Ok(());
    }
    static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALL
        .get_or_init(|| {
            // SAFETY: plain sigaction with a handler that only touches a thread-local atomic
            // and the kvm_run byte; no SA_RESTART, so a signal makes KVM_RUN return EINTR.
            let r = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = 0;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(kick_signal(), &sa, std::ptr::null_mut())
            };
            if r == 0 {
                Ok(())
            } else {
                Err(format!("cannot install the vCPU kick signal handler: {}", std::io::Error::last_os_error()))
            }
        })
        .clone()?;
    // SAFETY: sigset manipulation on a local set; pthread_sigmask only affects this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    UNBLOCKED.with(|u| u.set(true));
    Ok(())
}

#[derive(Default)]
struct KickState {
    /// The thread to signal and when; `None` when nothing is armed.
    target: Option<(libc::pthread_t, Instant)>,
    quit: bool,
}

type Shared = Arc<(Mutex<KickState>, Condvar)>;

/// The timer thread that kicks the vCPU thread out of `KVM_RUN`.
pub(super) struct Kicker {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Kicker {
    pub(super) fn new() -> Result<Kicker, String> {
        let shared: Shared = Arc::default();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kvm-kick".into())
            .spawn(move || kick_loop(&s))
            .map_err(|e| format!("cannot start the vCPU kick thread: {e}"))?;
        Ok(Kicker { shared, thread: Some(thread) })
    }

    /// Publishes `immediate_exit` for the calling thread's signal handler; the returned guard
    /// disarms the timer and withdraws the pointer when the run ends, however it ends.
    pub(super) fn enter(&self, immediate_exit: *mut u8) -> Result<KickGuard<'_>, String> {
        prepare_thread()?;
        IMMEDIATE_EXIT.with(|p| p.store(immediate_exit, Ordering::Relaxed));
        Ok(KickGuard { kicker: self, armed: None })
    }

    /// Only an earlier deadline (or another thread) wakes the timer thread: for a later one
    /// or none it wakes at the old time anyway and looks again.
    fn set(&self, target: Option<(libc::pthread_t, Instant)>) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        let wake = match (st.target, target) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((old_thread, old_at)), Some((thread, at))) => at < old_at || thread != old_thread,
        };
        st.target = target;
        drop(st);
        if wake {
            cv.notify_one();
        }
    }
}

/// Kicks, from any thread, whichever thread the kicker's timer aims at (a vCPU thread in a
/// run), now rather than at its deadline.
#[derive(Clone)]
pub(super) struct KickNow(Shared);

impl KickNow {
    pub(super) fn kick(&self) {
        let (lock, cv) = &*self.0;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((thread, _)) = st.target {
            st.target = Some((thread, Instant::now()));
            drop(st);
            cv.notify_one();
        }
    }
}

impl Kicker {
    pub(super) fn kick_now(&self) -> KickNow {
        KickNow(self.shared.clone())
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).quit = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn kick_loop(shared: &Shared) {
    let (lock, cv) = &**shared;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if st.quit {
            return;
        }
        match st.target {
            None => st = cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some((thread, at)) => {
                let now = Instant::now();
                if now >= at {
                    // Sent with the lock held: the guard disarms under the same lock before
                    // its thread leaves `run`, so the target thread is alive here.
                    // SAFETY: `thread` is a live thread (see above); the signal has a handler.
                    unsafe { libc::pthread_kill(thread, kick_signal()) };
                    st.target = None;
                } else {
                    st = cv.wait_timeout(st, at - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }
}

/// Alive for one `Kvm::run`.
pub(super) struct KickGuard<'a> {
    kicker: &'a Kicker,
    armed: Option<Instant>,
}

impl KickGuard<'_> {
    /// Makes sure the calling thread is kicked at `at` (wall time).
    pub(super) fn arm(&mut self, at: Instant) {
        if self.armed != Some(at) {
            self.armed = Some(at);
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() };
            self.kicker.set(Some((me, at)));
        }
    }

    /// The timer may have fired (KVM_RUN was interrupted): the next `arm` sets it again.
    pub(super) fn disarmed(&mut self) {
        self.armed = None;
    }
}

impl Drop for KickGuard<'_> {
    fn drop(&mut self) {
        // Always: after `disarmed` the timer may still be set, if another signal ended KVM_RUN.
        self.kicker.set(None);
        IMMEDIATE_EXIT.with(|p| p.store(std::ptr::null_mut(), Ordering::Relaxed));
    }
}
