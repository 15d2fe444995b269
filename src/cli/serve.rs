//! `captioner serve`: the captioning page and JSON API.

use super::exit::UsageContext;
use captioner::library::Library;
use captioner::model::Precision;
use captioner::progress::{Level, Progress};
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
    #[command(flatten)]
    precision: super::precision_arg::PrecisionArg,
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
        return Err(super::exit::usage(
            "--timeout-s must be a positive number of seconds",
        ));
    }
    let max_upload_bytes = args
        .max_upload_mb
        .checked_mul(1 << 20)
        .ok_or_else(|| super::exit::usage("--max-upload-mb is too large"))?;
    let precision = args.precision.checked()?;
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
        (Some(model), false) => Some(load_engine(model, precision)?),
        (None, false) => None,
    };
    let library = match &args.library {
        Some(db) => {
            super::exit::require_path("--library", db)?;
            let library = Library::open(db)
                .usage_context(|| format!("--library {}: not a usable library", db.display()))?;
            Some(Arc::new(library))
        }
        None => None,
    };
    if engine.is_none() && library.is_none() {
        return Err(super::exit::usage(
            "--model is required (or --library for a gallery alone)",
        ));
    }
    cfg.validate()
        .map_err(|e| super::exit::usage(e.to_string()))?;
    let log: Arc<dyn Progress> = Arc::new(super::progress::Bars::new(false));
    // The process's one signal handler (interrupt.rs): the first signal drains, later ones are
    // ignored until the drain ends (at most --timeout-s + 5 s).
    let signals = super::interrupt::serving()?;
    let server = serve::start_logged(engine, library, cfg, Arc::clone(&log))?;
    log.log(
        Level::Info,
        &format!("captioner: serving on http://{}", server.addr()),
    );
    signals.wait();
    log.log(
        Level::Info,
        "captioner: shutting down, finishing requests in flight",
    );
    server.shutdown()?;
    Ok(0)
}

/// Loads the model (run directory or exported file) once; every worker shares it.
fn load_engine(model: &Path, precision: Precision) -> anyhow::Result<Arc<dyn CaptionEngine>> {
    let device = captioner::device::default_device();
    let captioner = Captioner::load(model, &device)
        .usage_context(|| format!("cannot load the model {}", model.display()))?
        .with_precision(precision)?;
    Ok(Arc::new(captioner))
}
