//! The process's one signal handler (ctrlc: SIGINT, SIGTERM and SIGHUP), installed once, whatever
//! a command runs: `demo --serve` trains and then serves under the same handler.
//!
//! - A long job (training) gets a fresh stop flag from [`job`]: the first signal sets it and the
//!   library stops after its batch (writing `last/`); a second exits at once with status 130.
//!   When the job ends its flag is retired, so a later job in the same process starts clean.
//! - A server calls [`serving`] and waits: the first signal starts the graceful drain, later ones
//!   are ignored (the drain is bounded by the server's own deadline).
//! - With neither, a signal exits with status 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// What the handler does with a signal.
enum Mode {
    /// Exit 130.
    Exit,
    /// Set the job's flag; exit 130 if it was set already.
    Job(Arc<AtomicBool>),
    /// Count it for [`Serving::wait`]; never exit.
    Serve,
}

struct Handler {
    mode: Mutex<Mode>,
    signals: Mutex<u64>,
    arrived: Condvar,
}

static HANDLER: OnceLock<Handler> = OnceLock::new();

fn handler() -> anyhow::Result<&'static Handler> {
    if let Some(h) = HANDLER.get() {
        return Ok(h);
    }
    let h = HANDLER.get_or_init(|| Handler {
        mode: Mutex::new(Mode::Exit),
        signals: Mutex::new(0),
        arrived: Condvar::new(),
    });
    // ctrlc runs this on a thread of its own, not in the signal handler: locks are allowed.
    ctrlc::set_handler(move || {
        let h = HANDLER.get().expect("set before the handler is installed");
        *lock(&h.signals) += 1;
        h.arrived.notify_all();
        match &*lock(&h.mode) {
            Mode::Serve => {}
            Mode::Job(flag) if !flag.swap(true, Ordering::SeqCst) => {}
            Mode::Job(_) | Mode::Exit => std::process::exit(super::exit::INTERRUPTED),
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    Ok(h)
}

/// A mutex poisoned by a panic elsewhere still holds a valid value here.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A job's stop flag; dropping it retires the flag (signals exit 130 again).
pub struct Job {
    flag: Arc<AtomicBool>,
    handler: &'static Handler,
}

impl Job {
    /// The flag the library polls between batches.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let mut mode = lock(&self.handler.mode);
        if matches!(&*mode, Mode::Job(f) if Arc::ptr_eq(f, &self.flag)) {
            *mode = Mode::Exit;
        }
    }
}

/// Starts a job with a fresh stop flag.
pub fn job() -> anyhow::Result<Job> {
    let handler = handler()?;
    let flag = Arc::new(AtomicBool::new(false));
    *lock(&handler.mode) = Mode::Job(Arc::clone(&flag));
    Ok(Job { flag, handler })
}

/// Switches to serving: from now on signals never exit the process; [`Serving::wait`] returns
/// after the first one, so a server can drain.
pub fn serving() -> anyhow::Result<Serving> {
    let handler = handler()?;
    let signals = lock(&handler.signals);
    *lock(&handler.mode) = Mode::Serve;
    Ok(Serving {
        handler,
        seen: *signals,
    })
}

/// A server waiting for its signal (see [`serving`]).
pub struct Serving {
    handler: &'static Handler,
    seen: u64,
}

impl Serving {
    /// Blocks until a signal has arrived since [`serving`].
    pub fn wait(self) {
        let mut signals = lock(&self.handler.signals);
        while *signals == self.seen {
            signals = self
                .handler
                .arrived
                .wait(signals)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}
