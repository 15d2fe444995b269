//! `captioner serve`: the captioning page and JSON API.

use anyhow::Context;
use captioner::library::Library;
use captioner::serve::{self, CaptionEngine, FakeEngine, ServeConfig};
use captioner::Captioner;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Flags of `captioner serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory or a file written by `captioner export`.
    #[arg(long, required_unless_present_any = ["fake_engine", "library"])]
    model: Option<PathBuf>,
    /// A library database (`captioner index`): serves its gallery at /library and /api/search;
    /// without --model, the library alone.
    #[arg(long, value_name = "FILE")]
    library: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7860")]
    addr: SocketAddr,
    /// Captions computed at once (inference threads sharing the one model).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Largest accepted upload, in MiB.
    #[arg(long, default_value_t = 20)]
    max_upload_mb: usize,
    /// Requests that may wait for a worker; beyond that the server answers 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Longest a request may take, queueing included, before it gets 504 (seconds).
    #[arg(long, default_value_t = 30.0)]
    timeout_s: f64,
    /// Most waiting requests captioned together (one trunk pass, one decoding); 1 captions one
    /// request at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    max_batch: u64,
    /// Longest a batch waits to fill, in milliseconds, while other captions are running (a lone
    /// request never waits).
    #[arg(long, default_value_t = 2)]
    batch_wait_ms: u64,
    /// Serve a stand-in model that names the image's mean colour (for load tests and demos).
    #[arg(long, hide = true)]
    fake_engine: bool,
    /// With --fake-engine: milliseconds each fake caption takes.
    #[arg(long, hide = true, default_value_t = 0)]
    fake_delay_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if !(args.timeout_s.is_finite() && args.timeout_s > 0.0) {
        anyhow::bail!("--timeout-s must be a positive number of seconds");
    }
    let max_upload_bytes = args
        .max_upload_mb
        .checked_mul(1 << 20)
        .ok_or_else(|| anyhow::anyhow!("--max-upload-mb is too large"))?;
    let cfg = ServeConfig {
        addr: args.addr,
        workers: args.workers,
        queue: args.queue,
        max_upload_bytes,
        timeout: Duration::from_secs_f64(args.timeout_s),
        max_batch: args.max_batch as usize,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
    };
    let engine: Option<Arc<dyn CaptionEngine>> = match (&args.model, args.fake_engine) {
        (_, true) => Some(Arc::new(FakeEngine::with_delay(Duration::from_millis(
            args.fake_delay_ms,
        )))),
        (Some(model), false) => Some(load_engine(model)?),
        (None, false) => None,
    };
    let bars = super::progress::Bars::new(false);
    match (&args.library, engine) {
        (Some(db), engine) => {
            let library = Arc::new(Library::open(db)?);
            serve::run_with_library(engine, library, cfg, &bars)?
        }
        (None, Some(engine)) => serve::run(engine, cfg, &bars)?,
        (None, None) => anyhow::bail!("--model is required (or --library for a gallery alone)"),
    }
    Ok(0)
}

/// Loads the model (run directory or exported file) once; every worker shares it.
fn load_engine(model: &Path) -> anyhow::Result<Arc<dyn CaptionEngine>> {
    let device = captioner::device::default_device();
    let captioner = Captioner::load(model, &device)
        .with_context(|| format!("cannot load the model {}", model.display()))?;
    Ok(Arc::new(captioner))
}
