//! Output the commands share: the metric table of `eval` and `demo`.

use captioner::metrics::Scores;

/// The metric table, one line a metric.
pub fn print_scores(scores: &Scores) {
    for (name, v) in scores.named() {
        println!("{name:>8} {v:.4}");
    }
}
