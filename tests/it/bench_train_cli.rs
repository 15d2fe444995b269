//! `captioner bench train` without PyTorch: its batch (Flickr8k's caption lengths by default,
//! padded to the longest; `--words N` for captions all N long), its refusals, and (for every
//! command that prints) a reader that closes the pipe early.

use crate::common::{exe, first_line_then_close};
use std::process::Command;

/// One quick step per side, PyTorch skipped.
fn bench_train_cmd(args: &[&str]) -> Command {
    let mut cmd = exe();
    cmd.args(["bench", "train", "--no-python", "--threads", "1"])
        .args(["--steps", "1", "--rounds", "1", "--vocab", "40"])
        .args(args);
    cmd
}

fn bench_train(args: &[&str]) -> std::process::Output {
    bench_train_cmd(args).output().unwrap()
}

/// The header's "(A–B words, mean M; ...)" of the default batch, and its LSTM step count.
fn header_lengths(text: &str) -> (usize, usize, usize) {
    let head = text.lines().next().unwrap_or_default();
    let span = head
        .split_once("lengths (")
        .and_then(|(_, r)| r.split_once(" words"))
        .map(|(span, _)| span)
        .unwrap_or_else(|| panic!("no lengths in {head}"));
    let (min, max) = span.split_once('–').unwrap();
    let steps = head
        .split_once("), ")
        .and_then(|(_, r)| r.split_once(" LSTM steps"))
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("no LSTM steps in {head}"));
    (min.parse().unwrap(), max.parse().unwrap(), steps)
}

#[test]
fn the_default_batch_mixes_flickr8k_lengths_and_words_fixes_them() {
    let out = bench_train(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("64 captions of Flickr8k's lengths"), "{text}");
    let (min, max, steps) = header_lengths(&text);
    assert!(1 <= min && min < max && max <= 31, "{text}");
    // The image step and startofseq before the longest caption's words.
    assert_eq!(steps, max + 2, "{text}");
    assert!(text.lines().any(|l| l.starts_with("captioner ")), "{text}");

    let out = bench_train(&["--words", "5"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("64 captions of 5 words, 7 LSTM steps"),
        "{text}"
    );
}

#[test]
fn words_is_refused_where_it_means_nothing() {
    for args in [
        &["--words", "0"][..],
        &["--decoder", "attention", "--words", "5"],
    ] {
        let out = bench_train(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--words"), "{args:?}: {err}");
    }
}

#[test]
fn a_reader_that_leaves_early_ends_the_output_quietly() {
    // The header comes first; the table only after the step, by when the reader is gone.
    let (first, out) = first_line_then_close(bench_train_cmd(&[]));
    assert!(first.starts_with("training step: "), "{first}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
