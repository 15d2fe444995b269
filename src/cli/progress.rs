//! The binary's one progress renderer: the library's tasks as indicatif bars on stderr, its log
//! lines printed above them. `--no-progress` hides the bars and keeps the lines.

use captioner::progress::{Level, Progress, Silent, Task, Unit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Renders [`Progress`] on stderr. indicatif draws nothing when stderr is not a terminal.
pub struct Bars {
    multi: Option<MultiProgress>,
}

impl Bars {
    /// Bars when `show`, else log lines only.
    pub fn new(show: bool) -> Self {
        Self {
            multi: show.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Runs `f` with the bars cleared, for output written between them (stdout lines).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }
}

fn style(unit: Unit, known_total: bool) -> ProgressStyle {
    let template = match (unit, known_total) {
        (Unit::Images, _) => "{prefix} {bar:40} {pos}/{len} images  {per_sec}  ETA {eta}",
        (Unit::Batches, _) => "{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
        (Unit::Bytes, true) => {
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
        }
        (Unit::Bytes, false) => "{prefix} {bytes} {binary_bytes_per_sec}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One bar of a [`Bars`].
struct Bar(ProgressBar);

impl Task for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn set_position(&self, done: u64) {
        self.0.set_position(done);
        self.0.reset_eta();
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bars {
    fn task(&self, name: &str, total: Option<u64>, unit: Unit) -> Box<dyn Task> {
        let Some(multi) = &self.multi else {
            return Box::new(Silent);
        };
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        bar.set_style(style(unit, total.is_some()));
        bar.set_prefix(name.to_string());
        Box::new(Bar(multi.add(bar)))
    }

    fn log(&self, _level: Level, line: &str) {
        self.suspend(|| eprintln!("{line}"));
    }
}
