//! What every `captioner bench` table shares: the thread count both sides run with, and the median of
//! repeated timings after a warm-up call.

use std::time::Instant;

/// Sizes the compute threads (`requested`, else every core) and returns the count, so PyTorch can be given
/// the same: candle's GEMM reads `RAYON_NUM_THREADS`, our own kernels use rayon's global pool.
pub fn use_threads(requested: Option<usize>) -> usize {
    let threads = requested
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    // Fails only when the pool was already built, in which case it stays as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    threads
}

/// Median seconds of `iters` calls of `f` (at least one), after one warm-up call.
pub fn median_seconds(iters: usize, f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    median_seconds_after(iters, std::time::Duration::ZERO, f)
}

/// [`median_seconds`] with the machine left idle for `pause` before each timed call (not
/// counted): the cold start of a one-off command.
pub fn median_seconds_after(
    iters: usize,
    pause: std::time::Duration,
    f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    Ok(median(&mut seconds_after(iters, pause, f)?))
}

/// Seconds of each of `iters` calls of `f` (at least one) after one warm-up call, each after
/// `pause` idle.
pub fn seconds_after(
    iters: usize,
    pause: std::time::Duration,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    f()?;
    let mut t = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    Ok(t)
}

/// The median of `v` (the upper one for an even count), sorting it in place; `v` must not be empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds of a training step and its three phases, (total, phase 1, phase 2, phase 3), for
/// each of `steps` timed steps after `warmup` untimed ones: `step` runs one on a rayon worker (as
/// the trainer does, see `captioner::pool`) and returns the instants that bound its phases.
pub fn step_phase_samples(
    steps: usize,
    warmup: usize,
    mut step: impl FnMut() -> anyhow::Result<[std::time::Instant; 4]> + Send,
) -> anyhow::Result<Vec<[f64; 4]>> {
    let mut samples = Vec::with_capacity(steps);
    for k in 0..steps + warmup {
        let [t0, t1, t2, t3] = captioner::pool::in_pool(&mut step)?;
        if k >= warmup {
            let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
            samples.push([ms(t0, t3), ms(t0, t1), ms(t1, t2), ms(t2, t3)]);
        }
    }
    Ok(samples)
}

/// The two-row table of a training-step bench: captioner's ms/step, PyTorch's (or why it is
/// missing) and their ratio.
pub fn print_step_table(captioner_ms: f64, torch: &Result<(f64, String), String>) {
    println!("{:<22} {:>10}", "implementation", "ms/step");
    println!("{:<22} {:>10.1}", "captioner", captioner_ms);
    match torch {
        Ok((ms, version)) => {
            println!("{:<22} {:>10.1}", format!("pytorch {version}"), ms);
            println!(
                "ratio (pytorch ms / captioner ms): {:.2}x",
                ms / captioner_ms
            );
        }
        Err(why) => println!("{:<22} {:>10}   ({why})", "pytorch", "-"),
    }
}
