//! Output the commands share: the metric table of `eval` and `demo`.

use captioner::metrics::Scores;

/// The metric table, one line a metric.
pub fn print_scores(scores: &Scores) {
    for (name, v) in [
        ("BLEU-1", scores.bleu1),
        ("BLEU-2", scores.bleu2),
        ("BLEU-3", scores.bleu3),
        ("BLEU-4", scores.bleu4),
        ("ROUGE-L", scores.rouge_l),
        ("CIDEr-D", scores.cider),
    ] {
        println!("{name:>8} {v:.4}");
    }
}
