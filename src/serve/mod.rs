//! `captioner serve`: the captioning page and JSON API over HTTP (axum), with inference on a
//! bounded pool of threads and a graceful shutdown that lets in-flight requests finish.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use captioner::serve::{self, FakeEngine, ServeConfig};
//! # use captioner::progress::Silent;
//! serve::run(Arc::new(FakeEngine::new()), ServeConfig::default(), Arc::new(Silent))?;
//! # Ok::<(), captioner::Error>(())
//! ```

mod api;
mod engine;
mod errors;
mod library;
mod pool;
mod router;
mod shutdown;

pub use engine::{check_beam, colour_name, CaptionEngine, FakeEngine, MAX_BEAM};
pub use library::NoModel;
pub use shutdown::wait_for_signal;

use crate::progress::{Level, Progress, Silent};
use crate::{Error, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How the server listens and how much work it takes on.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Captions computed at once (inference threads).
    pub workers: usize,
    /// Requests allowed to wait for a worker; more are refused with 503.
    pub queue: usize,
    /// Largest accepted image, in bytes (413 above).
    pub max_upload_bytes: usize,
    /// Longest a request may wait for its caption, queueing included (504 after).
    pub timeout: Duration,
    /// Most waiting requests captioned together as one batch (1: one at a time).
    pub max_batch: usize,
    /// Longest a batch waits to fill while other captions are running (a lone request never
    /// waits).
    pub batch_wait: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7860)),
            workers: 2,
            queue: 64,
            max_upload_bytes: 20 << 20,
            timeout: Duration::from_secs(30),
            max_batch: 8,
            batch_wait: Duration::from_millis(2),
        }
    }
}

impl ServeConfig {
    /// Refuses settings the server cannot work with.
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(Error::Invalid("--workers must be at least 1".into()));
        }
        if self.max_upload_bytes == 0 {
            return Err(Error::Invalid("--max-upload-mb must be above 0".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Invalid("--timeout-s must be above 0".into()));
        }
        if self.max_batch == 0 {
            return Err(Error::Invalid("--max-batch must be at least 1".into()));
        }
        Ok(())
    }
}

/// Serves `engine` until SIGINT or SIGTERM, then finishes the requests in flight and returns.
/// The address, the shutdown and the details of internal errors are logged through `progress`.
pub fn run(
    engine: Arc<dyn CaptionEngine>,
    cfg: ServeConfig,
    progress: Arc<dyn Progress>,
) -> Result<()> {
    let server = start_logged(Some(engine), None, cfg, Arc::clone(&progress))?;
    until_signal(server, progress.as_ref())
}

/// [`run`] with a library (`serve --library`): its gallery and search API, and the captioning
/// page and API when there is an `engine` too.
pub fn run_with_library(
    engine: Option<Arc<dyn CaptionEngine>>,
    library: Arc<crate::library::Library>,
    cfg: ServeConfig,
    progress: Arc<dyn Progress>,
) -> Result<()> {
    let server = start_logged(engine, Some(library), cfg, Arc::clone(&progress))?;
    until_signal(server, progress.as_ref())
}

fn until_signal(server: ServerHandle, progress: &dyn Progress) -> Result<()> {
    progress.log(
        Level::Info,
        &format!("captioner: serving on http://{}", server.addr()),
    );
    wait_for_signal()?;
    progress.log(
        Level::Info,
        "captioner: shutting down, finishing requests in flight",
    );
    server.shutdown()
}

/// A server running on its own threads; [`ServerHandle::shutdown`] stops it gracefully.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ServerHandle {
    /// The address actually bound (the real port when the configuration asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, waits for the requests in flight, then returns.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Binds `cfg.addr` and serves `engine` on background threads until the handle is shut down.
/// Internal errors are answered 500 and not logged: [`start_logged`] logs them.
pub fn start(engine: Arc<dyn CaptionEngine>, cfg: ServeConfig) -> Result<ServerHandle> {
    start_logged(Some(engine), None, cfg, Arc::new(Silent))
}

/// [`start`] with a library mounted at `/library` and `/api/search`; without an `engine` the
/// server has the library alone.
pub fn start_with_library(
    engine: Option<Arc<dyn CaptionEngine>>,
    library: Arc<crate::library::Library>,
    cfg: ServeConfig,
) -> Result<ServerHandle> {
    start_logged(engine, Some(library), cfg, Arc::new(Silent))
}

/// The general form of [`start`]: an engine, a library or both, and a `log` that receives the
/// detail of every internal error (the client reads only that the server failed).
pub fn start_logged(
    engine: Option<Arc<dyn CaptionEngine>>,
    library: Option<Arc<crate::library::Library>>,
    cfg: ServeConfig,
    log: Arc<dyn Progress>,
) -> Result<ServerHandle> {
    let mount = library.map(|library| library::Mount::new(library, engine.is_some()));
    let engine = engine.unwrap_or_else(|| Arc::new(NoModel));
    start_inner(engine, mount, cfg, log)
}

fn start_inner(
    engine: Arc<dyn CaptionEngine>,
    library: Option<library::Mount>,
    cfg: ServeConfig,
    log: Arc<dyn Progress>,
) -> Result<ServerHandle> {
    cfg.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve-io")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let listener = {
        let _inside = runtime.enter();
        bind(cfg.addr)?
    };
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(cfg.addr.to_string(), e))?;
    let batching = pool::Batching {
        max: cfg.max_batch,
        wait: cfg.batch_wait,
    };
    let pool = Arc::new(pool::Pool::new(
        Arc::clone(&engine),
        cfg.workers,
        cfg.queue,
        batching,
    )?);
    let grace = cfg.timeout + Duration::from_secs(5);
    let app = router::router(api::AppState { engine, pool, cfg }, library, log);
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("serve".into())
        .spawn(move || runtime.block_on(serve(listener, app, stopped, grace)))
        .map_err(|e| Error::Internal(format!("cannot start the server thread: {e}")))?;
    Ok(ServerHandle {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Listens on `addr` with a backlog deep enough for a burst of hundreds of clients (the standard
/// library's `bind` asks for 128). Socket errors name the address the way file errors name the file.
fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let at = |e| Error::io(addr.to_string(), e);
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(at)?;
    socket.set_reuseaddr(true).map_err(at)?;
    socket.bind(addr).map_err(at)?;
    socket.listen(1024).map_err(at)
}

/// Runs the server until `stop` fires, then drains for at most `grace`.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: oneshot::Receiver<()>,
    grace: Duration,
) -> Result<()> {
    let stopping = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&stopping);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.await;
        notify.notify_one();
    });
    // A client that never finishes its upload must not hold the shutdown forever.
    let deadline = async move {
        stopping.notified().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r.map_err(|e| Error::Internal(format!("server failed: {e}"))),
        _ = deadline => Ok(()),
    }
}
