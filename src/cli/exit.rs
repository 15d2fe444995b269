//! Exit statuses, from whose fault an error is (README, "Exit status"):
//! 0 the work is done; 1 the work ran but (part of) it failed: an unreadable image among many, a
//! failed download, a bad input file, or captioner's own fault; 2 a usage error: a bad flag or
//! value, a missing or unusable `--model`, `--data`, `--backbone`, `--db` or `--library` (clap
//! exits 2 for the flags it refuses itself); 130 interrupted (Ctrl-C, SIGTERM).

use std::fmt;
use std::path::Path;

/// The work ran, and (part of) it failed.
pub const FAILED: i32 = 1;
/// The command line asked for something that cannot be done.
pub const USAGE: i32 = 2;
/// The user stopped the work.
pub const INTERRUPTED: i32 = 130;

/// Marks an error as the command line's fault: attached as context, it makes the exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error with this message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// For results whose failure means a flag named something unusable.
pub trait UsageContext<T> {
    /// On error: adds `msg()` as context and makes the exit status 2.
    fn usage_context(self, msg: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> UsageContext<T> for Result<T, E> {
    fn usage_context(self, msg: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(Usage(msg())))
    }
}

/// Refuses a path given by `flag` that does not exist, before any work starts.
pub fn require_path(flag: &str, path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(usage(format!(
            "{flag} {}: no such file or directory",
            path.display()
        )))
    }
}

/// The exit status for `err`.
pub fn code(err: &anyhow::Error) -> i32 {
    let library = || {
        err.chain()
            .filter_map(|e| e.downcast_ref::<captioner::Error>())
            .map(captioner::Error::fault)
    };
    if library().any(|f| f == captioner::Fault::Interrupted) {
        INTERRUPTED
    } else if err.downcast_ref::<Usage>().is_some()
        || err.chain().any(|e| e.is::<Usage>())
        || library().next() == Some(captioner::Fault::Usage)
    {
        USAGE
    } else {
        FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn statuses_follow_whose_fault_it_is() {
        let interrupted = anyhow::Error::new(captioner::Error::Interrupted).context("training");
        assert_eq!(code(&interrupted), INTERRUPTED);
        let bad_flag = anyhow::Error::new(captioner::Error::Invalid("--beam 0".into()));
        assert_eq!(code(&bad_flag), USAGE);
        let missing: Result<(), _> = Err(captioner::Error::io(
            "m.safetensors",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
        let unusable = missing
            .usage_context(|| "cannot load the model m.safetensors".into())
            .context("caption")
            .unwrap_err();
        assert_eq!(code(&unusable), USAGE);
        assert!(format!("{unusable:#}").contains("cannot load the model m.safetensors"));
        let bad_image = anyhow::Error::new(captioner::Error::Image {
            path: "a.jpg".into(),
            msg: "truncated".into(),
        });
        assert_eq!(code(&bad_image), FAILED);
        let ours = anyhow::Error::new(captioner::Error::Internal("worker died".into()));
        assert_eq!(code(&ours), FAILED);
        assert_eq!(code(&anyhow::anyhow!("disk full")), FAILED);
        assert_eq!(code(&usage("--timeout-s must be positive")), USAGE);
        assert_eq!(
            code(&require_path("--data", Path::new("/no/such/dir")).unwrap_err()),
            USAGE
        );
    }
}
