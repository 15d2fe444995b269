//! Runs a whole computation on one of rayon's worker threads. Called from any other thread, every
//! parallel section inside it (each matrix product, each fused op) is injected into the pool while
//! the caller sleeps until it ends; on 2 cores those wake-ups cost ~10% of a batch-1 ResNet-50
//! forward (`bench encoder`: 56 → 50 ms). On a worker, nested sections fork in place.

/// `f()`, run on a rayon worker (in place when already on one).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
