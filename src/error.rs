//! The library's error type. Every variant that concerns a file names it, so a user reading the
//! message knows which file to fix.

use std::path::PathBuf;

/// Everything that can go wrong in the captioner library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or address) concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its content is not what it should be (bad CSV row, bad JSON, ...).
    #[error("{}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// An image could not be decoded.
    #[error("{}: {msg}", path.display())]
    Image {
        /// The image file (`upload` for bytes from the network).
        path: PathBuf,
        /// Why it could not be decoded.
        msg: String,
    },

    /// An image is larger than the decompression-bomb limit (checked from its header).
    #[error("{}: image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels", path.display())]
    PixelLimit {
        /// The image file.
        path: PathBuf,
        /// Its width, pixels.
        width: u32,
        /// Its height, pixels.
        height: u32,
        /// Width × height.
        pixels: u64,
        /// The most pixels accepted.
        limit: u64,
    },

    /// A weights file is not usable: wrong architecture, truncated, unsafe pickle, bad checksum.
    #[error("{}: {msg}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// A checkpoint, run directory or exported model is missing pieces or inconsistent.
    #[error("{}: {msg}", path.display())]
    Checkpoint {
        /// The file or directory.
        path: PathBuf,
        /// What is missing or inconsistent.
        msg: String,
    },

    /// A library database (`captioner index`) cannot be opened, read or written: not a
    /// database, locked by another writer for too long, a disk that is full.
    #[error("{}: {msg}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said, and what to do about it.
        msg: String,
    },

    /// A download failed (network, HTTP status, checksum).
    #[error("{url}: {msg}")]
    Download {
        /// The address.
        url: String,
        /// What went wrong.
        msg: String,
    },

    /// An argument or configuration value is invalid.
    #[error("{0}")]
    Invalid(String),

    /// A fault of captioner itself, never of its input: a thread or runtime that failed, a result
    /// that did not come back.
    #[error("internal error: {0}")]
    Internal(String),

    /// The user interrupted a long-running job (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Whose fault an [`Error`] is, so that a caller can answer in kind: a command line exits 2 for
/// usage faults, 1 for bad input and internal faults, 130 when interrupted; a server answers 4xx
/// for the client's faults and 500, with the detail in its log only, for its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller asked for something that cannot be done: a bad flag, option or request value.
    Usage,
    /// A file, image, download or database the user supplied is missing or unusable; the error
    /// names it.
    Input,
    /// captioner itself failed (a thread, a runtime, a tensor operation, a result that did not
    /// come back): never the user's fault.
    Internal,
    /// The user stopped the work (Ctrl-C, SIGTERM).
    Interrupted,
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whose fault this is: the caller's ([`Fault::Usage`]), the input's ([`Fault::Input`]),
    /// captioner's own ([`Fault::Internal`]), or nobody's ([`Fault::Interrupted`]).
    pub fn fault(&self) -> Fault {
        match self {
            Error::Invalid(_) => Fault::Usage,
            Error::Io { .. }
            | Error::Format { .. }
            | Error::Image { .. }
            | Error::PixelLimit { .. }
            | Error::Weights { .. }
            | Error::Checkpoint { .. }
            | Error::Database { .. }
            | Error::Download { .. } => Fault::Input,
            Error::Internal(_) | Error::Candle(_) => Fault::Internal,
            Error::Interrupted => Fault::Interrupted,
        }
    }

    /// Whether the fault is captioner's own ([`Error::Internal`], a failed tensor operation) rather
    /// than its input's: a server answers 500 for these and 4xx for the rest.
    pub fn is_internal(&self) -> bool {
        self.fault() == Fault::Internal
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
