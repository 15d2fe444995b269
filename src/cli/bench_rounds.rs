//! The training-step and encoder benches run both sides in alternating rounds: captioner's steps
//! (or calls), then PyTorch's in a Python process kept alive between rounds, then captioner's
//! again. On a shared
//! 2-core VM the same binary's step time drifts by up to 1.8× over minutes (docs/performance.md);
//! with one block per side, whichever ran in the slow minute lost. Alternating rounds give both
//! sides the same minutes, and each round's own ratio shows how far the machine moved.

use super::bench_common::median;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Idle time before each side's round, so the other side's spinning threads (OpenMP's spin for
/// up to 200 ms after a parallel region) have stopped before the clock starts.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The PyTorch side of a bench: a Python process that has built its model (and, for a step
/// bench, run its warm-up steps) and answers each line it is given on stdin with one round.
pub struct TorchRounds {
    python: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: std::fs::File,
    /// torch's version, from the ready line.
    pub version: String,
}

impl TorchRounds {
    /// Starts `python -c script --interleaved args…` and waits for its ready line.
    pub fn start(python: &str, script: &str, args: &[String]) -> Result<Self, String> {
        let stderr = tempfile::tempfile().map_err(|e| format!("cannot make a temp file: {e}"))?;
        let err_handle = stderr
            .try_clone()
            .map_err(|e| format!("cannot share a temp file: {e}"))?;
        let mut child = Command::new(python)
            .arg("-c")
            .arg(script)
            .arg("--interleaved")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_handle)
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("{python}: no pipes"));
        };
        let mut rounds = Self {
            python: python.to_string(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr,
            version: String::new(),
        };
        let ready = rounds.line()?;
        rounds.version = ready["torch"].as_str().unwrap_or("?").to_string();
        Ok(rounds)
    }

    /// One round of a step bench: PyTorch's per-step milliseconds.
    pub fn round(&mut self) -> Result<Vec<f64>, String> {
        let v = self.request("go")?;
        let ms = json_floats(&v, "ms");
        if ms.is_empty() {
            return Err(format!("no timings from {}", self.python));
        }
        Ok(ms)
    }

    /// Sends `line` to the script and returns the first JSON line of its answer (read the
    /// others with [`TorchRounds::line`]).
    pub fn request(&mut self, line: &str) -> Result<serde_json::Value, String> {
        let sent = self
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{line}").and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.failure());
        }
        self.line()
    }

    /// The next JSON line of the script's output.
    pub fn line(&mut self) -> Result<serde_json::Value, String> {
        let mut text = String::new();
        match self.stdout.read_line(&mut text) {
            Ok(n) if n > 0 => serde_json::from_str(text.trim())
                .map_err(|e| format!("unexpected output from {}: {e}", self.python)),
            _ => Err(self.failure()),
        }
    }

    /// Why the script stopped: the last line it wrote to stderr.
    fn failure(&mut self) -> String {
        self.stdin = None;
        let _ = self.child.wait();
        let mut err = String::new();
        let _ = self.stderr.rewind();
        let _ = self.stderr.read_to_string(&mut err);
        format!(
            "{} failed: {}",
            self.python,
            err.lines().last().unwrap_or("no message")
        )
    }
}

impl Drop for TorchRounds {
    fn drop(&mut self) {
        // End of input ends the script's loop.
        self.stdin = None;
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The numbers listed under `key` in a line from a PyTorch script (none when it is missing).
pub fn json_floats(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default()
}

/// What an interleaved step bench measured: medians of every timed step of every round.
pub struct StepRounds {
    /// captioner's (total, phase 1, phase 2, phase 3) medians, ms.
    pub captioner: [f64; 4],
    /// PyTorch's median ms and torch's version, or why it did not run.
    pub torch: Result<(f64, String), String>,
    /// Each round's medians: (captioner, PyTorch when it ran).
    pub per_round: Vec<(f64, Option<f64>)>,
}

/// Runs `rounds` rounds of `steps` timed steps of captioner's `step` (see
/// [`super::bench_common::step_phase_samples`]; 2 warm-up steps before the first round) and,
/// when `torch` started, as many of PyTorch's after each.
pub fn interleaved_steps(
    rounds: usize,
    steps: usize,
    mut torch: Result<TorchRounds, String>,
    mut step: impl FnMut() -> anyhow::Result<[Instant; 4]> + Send,
) -> anyhow::Result<StepRounds> {
    let mut ours: Vec<[f64; 4]> = Vec::new();
    let mut theirs: Vec<f64> = Vec::new();
    let mut per_round = Vec::with_capacity(rounds);
    for r in 0..rounds.max(1) {
        std::thread::sleep(SETTLE);
        let warmup = if r == 0 { 2 } else { 0 };
        let mut samples = super::bench_common::step_phase_samples(steps, warmup, &mut step)?;
        let mine = median(&mut samples.iter().map(|s| s[0]).collect::<Vec<_>>());
        ours.append(&mut samples);
        let mut other = None;
        if let Ok(t) = &mut torch {
            std::thread::sleep(SETTLE);
            match t.round() {
                Ok(mut ms) => {
                    other = Some(median(&mut ms.clone()));
                    theirs.append(&mut ms);
                }
                Err(e) => torch = Err(e),
            }
        }
        per_round.push((mine, other));
    }
    let captioner =
        std::array::from_fn(|i| median(&mut ours.iter().map(|s| s[i]).collect::<Vec<_>>()));
    let torch = torch.map(|t| (median(&mut theirs), t.version.clone()));
    Ok(StepRounds {
        captioner,
        torch,
        per_round,
    })
}

/// Prints each round's medians and ratio (when there was more than one round).
pub fn print_rounds(per_round: &[(f64, Option<f64>)]) {
    if per_round.len() < 2 {
        return;
    }
    for (r, (mine, other)) in per_round.iter().enumerate() {
        match other {
            Some(t) => println!(
                "round {}: captioner {mine:.1} ms, pytorch {t:.1} ms, {:.2}x",
                r + 1,
                t / mine
            ),
            None => println!("round {}: captioner {mine:.1} ms", r + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a PyTorch script, run by `sh -c` as the bench runs `python -c`: its
    /// arguments arrive as `$0 $1 …` (`$0` is `--interleaved`).
    const FAKE: &str = r#"
[ "$0" = --interleaved ] || { echo "not interleaved: $0" >&2; exit 3; }
echo '{"ready": true, "torch": "9.9-fake"}'
n=0
while read -r line; do
  n=$((n + 1))
  [ "$1" = fail ] && [ $n = 2 ] && { echo 'RuntimeError: out of patience' >&2; exit 1; }
  echo "{\"ms\": [$n, $((n * 10)), $((n * 100))]}"
done
"#;

    #[test]
    fn rounds_read_each_answer_and_report_a_failure_by_its_last_line() {
        let mut t = TorchRounds::start("sh", FAKE, &[]).unwrap();
        assert_eq!(t.version, "9.9-fake");
        assert_eq!(t.round().unwrap(), vec![1.0, 10.0, 100.0]);
        assert_eq!(t.round().unwrap(), vec![2.0, 20.0, 200.0]);

        let mut failing = TorchRounds::start("sh", FAKE, &["fail".to_string()]).unwrap();
        assert_eq!(failing.round().unwrap(), vec![1.0, 10.0, 100.0]);
        let err = failing.round().unwrap_err();
        assert_eq!(err, "sh failed: RuntimeError: out of patience");
        assert!(TorchRounds::start("/nonexistent/python", FAKE, &[])
            .err()
            .is_some_and(|e| e.starts_with("cannot run /nonexistent/python")));
    }

    #[test]
    fn interleaved_steps_pool_every_round_and_keep_each_rounds_medians() {
        let torch = TorchRounds::start("sh", FAKE, &[]).unwrap();
        let mut k = 0u32;
        let measured = interleaved_steps(2, 3, Ok(torch), || {
            k += 1;
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(if k <= 5 { 1 } else { 30 }));
            let t1 = Instant::now();
            Ok([t0, t1, t1, t1])
        })
        .unwrap();
        // 2 warm-up steps, then 3 timed steps per round: the second round's are the slow ones.
        assert_eq!(k, 2 + 2 * 3);
        let (first, second) = (measured.per_round[0], measured.per_round[1]);
        assert!(first.0 < 20.0 && second.0 >= 30.0, "{first:?} {second:?}");
        assert_eq!((first.1, second.1), (Some(10.0), Some(20.0)));
        // Pooled: PyTorch's six steps are 1, 10, 100, 2, 20, 200 (upper median 20).
        let (ms, version) = measured.torch.unwrap();
        assert_eq!((ms, version.as_str()), (20.0, "9.9-fake"));
        assert!(measured.captioner[0] >= 30.0);
    }
}
