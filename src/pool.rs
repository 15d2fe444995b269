//! Runs a whole computation on one of rayon's worker threads, with the other workers kept awake
//! for it. Called from any other thread, every parallel section inside it (each matrix product,
//! each fused op) would be injected into the pool while the caller sleeps until it ends; on 2
//! cores those wake-ups cost ~10% of a batch-1 ResNet-50 forward (`bench encoder`: 56 → 50 ms).
//! On a worker, nested sections fork in place.
//!
//! Between two parallel sections rayon's idle workers go to sleep within microseconds, and the
//! next section wakes them. So while a computation runs, every other worker spins in a
//! keep-awake job, running the computation's parallel work as it appears (OpenMP's threads spin
//! the same way, for 200 ms); it gives up after 2 ms without work, so a worker that picked the
//! job up while waiting inside other work is never held for long. Measured (A/B of the two
//! binaries, docs/performance.md): batch-1 ResNet-50 22.7, 23.6 → 24.8, 26.1 images/s, a greedy
//! caption 65.5 → 59.8 ms; the slower passes after a few idle seconds did not change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a keep-awake job spins without finding work before it lets its worker sleep.
const SPIN_IDLE: Duration = Duration::from_millis(2);

/// `f()`, run on a rayon worker (in place when already on one), the other workers spinning for
/// its parallel sections instead of sleeping between them.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = &AtomicBool::new(false);
    rayon::scope(|s| {
        let owner = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            s.spawn(move |_| keep_awake(done, owner));
        }
        let r = f();
        done.store(true, Ordering::Release);
        r
    })
}

/// Runs the pool's pending work until `done`, spinning between jobs; returns at once on the
/// owner's thread, and after [`SPIN_IDLE`] with nothing to do.
fn keep_awake(done: &AtomicBool, owner: Option<usize>) {
    if rayon::current_thread_index() == owner {
        return;
    }
    let mut idle_since = Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = Instant::now(),
            _ => {
                if idle_since.elapsed() > SPIN_IDLE {
                    return;
                }
                std::hint::spin_loop();
            }
        }
    }
}
