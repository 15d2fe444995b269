//! A command's results on standard output, buffered. When the reader goes away early
//! (`captioner search ... | head`), the next write fails with a broken pipe; [`Output`] marks that
//! error as [`ReaderGone`], so `main` can end the command quietly with status 0 instead of
//! reporting a failure. Only writes to standard output are marked: a broken pipe elsewhere (a
//! socket, a child's stdin) stays an error.

use std::fmt;
use std::io::{self, BufWriter, StdoutLock, Write};

/// Buffered standard output whose broken-pipe errors carry [`ReaderGone`].
pub struct Output(BufWriter<StdoutLock<'static>>);

impl Output {
    /// Locks standard output for the command's results.
    pub fn stdout() -> Self {
        Self(BufWriter::new(io::stdout().lock()))
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// The reader of standard output has gone: what it read, it wanted.
#[derive(Debug)]
pub struct ReaderGone;

impl fmt::Display for ReaderGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the reader of standard output has gone")
    }
}

impl std::error::Error for ReaderGone {}

fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, ReaderGone)
    } else {
        e
    }
}

/// Whether `err` is a write to [`Output`] whose reader had gone.
pub fn reader_gone(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .is_some_and(|inner| inner.is::<ReaderGone>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_broken_pipes_are_marked() {
        let gone = anyhow::Error::from(mark(io::ErrorKind::BrokenPipe.into()));
        assert!(reader_gone(&gone.context("writing a caption")));
        let full = anyhow::Error::from(mark(io::ErrorKind::StorageFull.into()));
        assert!(!reader_gone(&full));
        // A broken pipe that did not come through `Output` (a socket, a child's stdin).
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!reader_gone(&other));
    }
}
