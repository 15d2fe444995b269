//! Waiting for the signals that end the server: Ctrl-C (SIGINT) and SIGTERM.

use crate::{Error, Result};

/// Blocks until SIGINT or SIGTERM arrives.
pub fn wait_for_signal() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the signal runtime: {e}")))?;
    runtime.block_on(signal())
}

async fn signal() -> Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| Error::Internal(format!("cannot listen for SIGTERM: {e}")))?;
        tokio::select! {
            r = ctrl_c => r.map_err(|e| Error::Internal(format!("cannot listen for Ctrl-C: {e}"))),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c
            .await
            .map_err(|e| Error::Internal(format!("cannot listen for Ctrl-C: {e}")))
    }
}
