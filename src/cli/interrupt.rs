//! Ctrl-C and SIGTERM for long jobs: the first signal sets the stop flag the library polls after
//! each batch (the run finishes its batch, writes `last/` and stops cleanly), a second one exits
//! at once with status 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The flag of this process's job. A process runs one training, so one handler and one flag.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handler (once) and returns the flag it sets.
pub fn install() -> anyhow::Result<Arc<AtomicBool>> {
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    Ok(FLAG.get_or_init(|| flag).clone())
}
