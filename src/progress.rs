//! How long library work talks to its caller: progress of counted tasks (images, batches, bytes)
//! and log lines for the user. The library never prints; the caller supplies a [`Progress`]
//! (the binary draws bars on stderr, a program embedding captioner can use [`Silent`] or its own).

/// What a task counts, so a renderer can show rates in the right unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Images read, encoded or captioned.
    Images,
    /// Training batches of an epoch.
    Batches,
    /// Bytes downloaded.
    Bytes,
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// What happened: a summary, a count, a step done.
    Info,
    /// Something the user should look at, although the work went on (a skipped image, a plot that
    /// could not be drawn).
    Warn,
}

/// One counted piece of work, started by [`Progress::task`]. Dropping it without
/// [`Task::finish`] means the work stopped early (interrupted or failed).
pub trait Task: Send + Sync {
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// Sets the units done so far (a resumed task starts part-way).
    fn set_position(&self, done: u64);
    /// A short status shown beside the count (the current loss, a file name).
    fn set_message(&self, message: &str);
    /// The task completed.
    fn finish(&self);
}

/// Where the library reports progress and log lines. Implementations must be cheap to call:
/// tasks advance once per batch or per image.
pub trait Progress: Send + Sync {
    /// Starts a task called `name` ("features", "epoch 3/30", a file name) of `total` units, if
    /// known.
    fn task(&self, name: &str, total: Option<u64>, unit: Unit) -> Box<dyn Task>;
    /// A line for the user.
    fn log(&self, level: Level, line: &str);
}

/// Reports nothing: for library callers that want no output, and for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Task for Silent {
    fn advance(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
    fn finish(&self) {}
}

impl Progress for Silent {
    fn task(&self, _: &str, _: Option<u64>, _: Unit) -> Box<dyn Task> {
        Box::new(Silent)
    }
    fn log(&self, _: Level, _: &str) {}
}

/// Keeps every log line in memory (tests, and callers that show them later).
#[derive(Debug, Default)]
pub struct Collect {
    lines: std::sync::Mutex<Vec<(Level, String)>>,
}

impl Collect {
    /// The lines logged so far, oldest first.
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Progress for Collect {
    fn task(&self, _: &str, _: Option<u64>, _: Unit) -> Box<dyn Task> {
        Box::new(Silent)
    }
    fn log(&self, level: Level, line: &str) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push((level, line.to_string()));
        }
    }
}
