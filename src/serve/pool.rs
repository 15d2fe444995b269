//! The inference pool: a fixed number of OS threads fed by a bounded channel, so model work never
//! blocks the async executor and at most `workers` running + `queue` waiting jobs exist at once.

use super::engine::CaptionEngine;
use crate::{Error, Result};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One caption request waiting for a worker.
struct Job {
    bytes: axum::body::Bytes,
    beam: usize,
    reply: oneshot::Sender<Answer>,
}

/// A worker's answer: the engine's result, or `None` when the engine panicked.
pub type Answer = Option<Result<String>>;

/// Why a job was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// All workers are busy and `queue` jobs already wait.
    QueueFull,
    /// The pool's workers are gone (the server is shutting down).
    Closed,
}

/// A bounded pool of inference threads sharing one engine. Dropping it lets the workers finish
/// their current job and exit.
pub struct Pool {
    jobs: SyncSender<Job>,
    load: Arc<Load>,
}

/// Jobs accepted and not yet answered, and how many of them a worker holds.
#[derive(Default)]
struct Load {
    admitted: AtomicUsize,
    running: AtomicUsize,
}

impl Pool {
    /// Starts `workers` threads (at least one) with room for `queue` waiting jobs.
    pub fn new(engine: Arc<dyn CaptionEngine>, workers: usize, queue: usize) -> Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(Load::default());
        for i in 0..workers.max(1) {
            let (rx, engine, load) = (Arc::clone(&rx), Arc::clone(&engine), Arc::clone(&load));
            std::thread::Builder::new()
                .name(format!("caption-worker-{i}"))
                .spawn(move || work(&rx, engine.as_ref(), &load))
                .map_err(|e| Error::Internal(format!("cannot start a worker thread: {e}")))?;
        }
        Ok(Self { jobs, load })
    }

    /// (running, waiting): captions being computed, and accepted ones waiting for a worker.
    pub fn load(&self) -> (usize, usize) {
        let running = self.load.running.load(Ordering::SeqCst);
        let admitted = self.load.admitted.load(Ordering::SeqCst);
        (running, admitted.saturating_sub(running))
    }

    /// Queues a job; the answer comes back on the returned channel.
    pub fn submit(
        &self,
        bytes: axum::body::Bytes,
        beam: usize,
    ) -> std::result::Result<oneshot::Receiver<Answer>, Rejected> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending, so a fast worker never finishes a job that is not counted yet.
        self.load.admitted.fetch_add(1, Ordering::SeqCst);
        let refused = match self.jobs.try_send(Job { bytes, beam, reply }) {
            Ok(()) => return Ok(answer),
            Err(TrySendError::Full(_)) => Rejected::QueueFull,
            Err(TrySendError::Disconnected(_)) => Rejected::Closed,
        };
        self.load.admitted.fetch_sub(1, Ordering::SeqCst);
        Err(refused)
    }
}

/// A worker's loop: take a job, run it unless its requester gave up, reply.
fn work(rx: &Mutex<Receiver<Job>>, engine: &dyn CaptionEngine, load: &Load) {
    loop {
        // The lock is held only while waiting for the next job, never while captioning.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A job whose requester timed out while it was queued is skipped: nobody waits for it.
        if !job.reply.is_closed() {
            load.running.fetch_add(1, Ordering::SeqCst);
            // A panicking engine must cost one request, not a worker.
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                engine.caption_bytes(&job.bytes, job.beam)
            }))
            .ok();
            load.running.fetch_sub(1, Ordering::SeqCst);
            let _ = job.reply.send(answer);
        }
        load.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}
