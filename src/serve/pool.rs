//! The inference pool: a fixed number of OS threads fed by a bounded channel, so model work never
//! blocks the async executor and at most `workers` running + `queue` waiting jobs exist at once.
//!
//! A worker takes the requests waiting together, up to [`Batching::max`], and captions them as one
//! batch (one trunk pass, one decoding): under concurrent load the network's fixed costs are shared.
//! A lone request never waits for company; while another worker is busy (so requests are
//! arriving together), a batch may wait up to [`Batching::wait`] to fill.

use super::engine::CaptionEngine;
use crate::captioner::Attended;
use crate::{Error, Result};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How requests are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most requests captioned together (1: one at a time).
    pub max: usize,
    /// Longest a batch waits to fill while other captions are running.
    pub wait: Duration,
}

/// One caption request waiting for a worker.
struct Job {
    bytes: axum::body::Bytes,
    beam: usize,
    /// Whether the requester wants where each word looked (run alone, not in a batch).
    attention: bool,
    reply: oneshot::Sender<Answer>,
}

/// A worker's answer: the engine's result (with `words` and `attention` only for a job that
/// asked for them), or `None` when the engine panicked.
pub type Answer = Option<Result<Attended>>;

/// A plain caption as an answer.
fn plain(caption: String) -> Attended {
    Attended {
        caption,
        words: Vec::new(),
        attention: None,
    }
}

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
    /// Starts `workers` threads (at least one) with room for `queue` waiting jobs, captioning
    /// waiting jobs together as `batching` says.
    pub fn new(
        engine: Arc<dyn CaptionEngine>,
        workers: usize,
        queue: usize,
        batching: Batching,
    ) -> Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(Load::default());
        for i in 0..workers.max(1) {
            let (rx, engine, load) = (Arc::clone(&rx), Arc::clone(&engine), Arc::clone(&load));
            std::thread::Builder::new()
                .name(format!("caption-worker-{i}"))
                .spawn(move || work(&rx, engine.as_ref(), &load, batching))
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
        attention: bool,
    ) -> std::result::Result<oneshot::Receiver<Answer>, Rejected> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending, so a fast worker never finishes a job that is not counted yet.
        self.load.admitted.fetch_add(1, Ordering::SeqCst);
        let job = Job {
            bytes,
            beam,
            attention,
            reply,
        };
        let refused = match self.jobs.try_send(job) {
            Ok(()) => return Ok(answer),
            Err(TrySendError::Full(_)) => Rejected::QueueFull,
            Err(TrySendError::Disconnected(_)) => Rejected::Closed,
        };
        self.load.admitted.fetch_sub(1, Ordering::SeqCst);
        Err(refused)
    }
}

/// A worker's loop: take the waiting jobs (a batch), run those whose requester still waits, reply.
fn work(rx: &Mutex<Receiver<Job>>, engine: &dyn CaptionEngine, load: &Load, batching: Batching) {
    // A batch means requests are queueing: the cores are better spent on the workers' batches side
    // by side than on splitting each operation across threads, so a batch runs on this worker's
    // own one-thread pool. A lone request keeps the shared pool (all cores, the lowest latency).
    let own = rayon::ThreadPoolBuilder::new().num_threads(1).build().ok();
    loop {
        // The lock is held only while gathering the next batch, never while captioning.
        let batch = match rx.lock() {
            Ok(guard) => next_batch(&guard, load, batching),
            Err(_) => return,
        };
        let Some(batch) = batch else { return };
        let taken = batch.len();
        // Jobs whose requester timed out while they were queued are skipped: nobody waits.
        let live: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        // Those that want the attention, one by one.
        let (attended, live): (Vec<Job>, Vec<Job>) = live.into_iter().partition(|j| j.attention);
        for job in attended {
            load.running.fetch_add(1, Ordering::SeqCst);
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                engine.caption_attended(&job.bytes, job.beam)
            }))
            .ok();
            load.running.fetch_sub(1, Ordering::SeqCst);
            let _ = job.reply.send(answer);
        }
        // One engine call per beam size, in arrival order.
        let mut beams: Vec<usize> = live.iter().map(|j| j.beam).collect();
        beams.sort_unstable();
        beams.dedup();
        let mut jobs = live;
        for beam in beams {
            let (group, rest): (Vec<Job>, Vec<Job>) =
                jobs.into_iter().partition(|j| j.beam == beam);
            jobs = rest;
            load.running.fetch_add(group.len(), Ordering::SeqCst);
            let answers = match (&own, group.len()) {
                (Some(own), 2..) => own.install(|| run_group(engine, &group, beam)),
                _ => run_group(engine, &group, beam),
            };
            load.running.fetch_sub(group.len(), Ordering::SeqCst);
            for (job, answer) in group.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
        }
        load.admitted.fetch_sub(taken, Ordering::SeqCst);
    }
}

/// The next batch: one job (waiting for it), then those already queued, then, while another
/// worker is busy, those arriving within `batching.wait`; at most `batching.max`. `None` when the
/// pool is closed.
fn next_batch(rx: &Receiver<Job>, load: &Load, batching: Batching) -> Option<Vec<Job>> {
    let first = rx.recv().ok()?;
    let mut batch = vec![first];
    let deadline = Instant::now() + batching.wait;
    while batch.len() < batching.max.max(1) {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Alone, a request goes at once: waiting would only add latency.
                let busy = load.running.load(Ordering::SeqCst) > 0;
                let left = deadline.saturating_duration_since(Instant::now());
                if !busy || left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(job) => batch.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }
    Some(batch)
}

/// Captions a group of jobs with the same beam as one batch. A panicking engine must cost one
/// request, not a worker nor the whole batch: after a panic each job is run alone.
fn run_group(engine: &dyn CaptionEngine, group: &[Job], beam: usize) -> Vec<Answer> {
    let alone = |job: &Job| -> Answer {
        std::panic::catch_unwind(AssertUnwindSafe(|| engine.caption_bytes(&job.bytes, beam)))
            .ok()
            .map(|r| r.map(plain))
    };
    if group.len() == 1 {
        return vec![alone(&group[0])];
    }
    let images: Vec<&[u8]> = group.iter().map(|j| j.bytes.as_ref()).collect();
    match std::panic::catch_unwind(AssertUnwindSafe(|| engine.caption_batch(&images, beam))) {
        Ok(results) if results.len() == group.len() => {
            results.into_iter().map(|r| Some(r.map(plain))).collect()
        }
        _ => group.iter().map(alone).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Captions `b"ok"`, sleeps on `b"slow"`, panics on `b"boom"` (alone or in a batch), and
    /// records the batch sizes it is given.
    #[derive(Default)]
    struct Touchy {
        batches: Mutex<Vec<usize>>,
        slow_started: AtomicBool,
    }
    impl CaptionEngine for Touchy {
        fn caption_bytes(&self, bytes: &[u8], _: usize) -> Result<String> {
            match bytes {
                b"slow" => {
                    self.slow_started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    Ok("slow".into())
                }
                b"boom" => panic!("boom"),
                other => Ok(String::from_utf8_lossy(other).into_owned()),
            }
        }
        fn caption_batch(&self, images: &[&[u8]], beam: usize) -> Vec<Result<String>> {
            self.batches.lock().unwrap().push(images.len());
            images.iter().map(|b| self.caption_bytes(b, beam)).collect()
        }
        fn info(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    #[test]
    fn waiting_jobs_run_as_one_batch_and_a_panic_costs_one_request() {
        let engine = Arc::new(Touchy::default());
        let batching = Batching {
            max: 8,
            wait: Duration::ZERO,
        };
        let pool = Pool::new(engine.clone(), 1, 16, batching).unwrap();
        let slow = pool.submit("slow".into(), 1, false).unwrap();
        while !engine.slow_started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let waiting: Vec<_> = ["a", "boom", "b", "c"]
            .iter()
            .map(|s| pool.submit(s.as_bytes().to_vec().into(), 1, false).unwrap())
            .collect();
        let beam3 = pool.submit("d".into(), 3, false).unwrap();
        let attended = pool.submit("e f".into(), 1, true).unwrap();
        assert_eq!(
            slow.blocking_recv().unwrap().unwrap().unwrap().caption,
            "slow"
        );
        let answers: Vec<Answer> = waiting
            .into_iter()
            .map(|r| r.blocking_recv().unwrap())
            .collect();
        let caption = |a: &Answer| a.as_ref().unwrap().as_ref().unwrap().caption.clone();
        assert_eq!(caption(&answers[0]), "a");
        assert!(answers[1].is_none(), "the panicking request fails");
        assert_eq!(caption(&answers[2]), "b");
        assert_eq!(caption(&answers[3]), "c");
        assert_eq!(
            beam3.blocking_recv().unwrap().unwrap().unwrap().caption,
            "d"
        );
        // The attention job ran alone, through caption_attended (the default: words, no maps).
        let a = attended.blocking_recv().unwrap().unwrap().unwrap();
        assert_eq!(
            (a.caption.as_str(), a.words.len(), a.attention),
            ("e f", 2, None)
        );
        // The four greedy jobs went in as one batch (which panicked, then ran one by one); the
        // beam-3 job alone, so not through caption_batch.
        assert_eq!(*engine.batches.lock().unwrap(), vec![4]);
        // The counts drop once the worker is done with the whole batch, just after its replies.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.load() != (0, 0) {
            assert!(Instant::now() < deadline, "{:?}", pool.load());
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
