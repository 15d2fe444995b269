//! The Ctrl-C flag: the binary installs the handler, the trainer polls the flag after each batch
//! so an interrupted run finishes its batch, writes `last/` and stops cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The process-wide flag set by Ctrl-C (also usable to stop a run programmatically).
pub fn global() -> Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

/// Installs the Ctrl-C / SIGTERM handler: the first signal sets the flag, a second one exits at
/// once with status 130 (for a user who does not want to wait for the batch to finish).
pub fn install_handler() -> crate::Result<()> {
    let flag = global();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| crate::Error::Invalid(format!("cannot install the Ctrl-C handler: {e}")))
}

/// Whether an interrupt was requested.
pub fn requested() -> bool {
    global().load(Ordering::SeqCst)
}
