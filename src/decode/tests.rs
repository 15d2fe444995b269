//! Search tests on hand-made models whose best captions are known.

use super::step_model::log_softmax_in_place;
use super::*;
use crate::text::vocab::{END, START};
use crate::Result;

/// A first-order Markov model: the next-token distribution depends on the image and the last token.
struct Table {
    /// [image][last token] → logits over the vocabulary.
    logits: Vec<Vec<Vec<f32>>>,
}

impl StepModel for Table {
    type State = Vec<usize>; // the image of each row

    fn start(&self, images: usize) -> Result<Self::State> {
        Ok((0..images).collect())
    }

    fn step(&self, tokens: &[u32], state: &Self::State) -> Result<(Vec<Vec<f32>>, Self::State)> {
        let rows = tokens
            .iter()
            .zip(state)
            .map(|(&t, &img)| {
                let mut row = self.logits[img][t as usize].clone();
                log_softmax_in_place(&mut row);
                row
            })
            .collect();
        Ok((rows, state.clone()))
    }

    fn select(&self, state: &Self::State, rows: &[usize]) -> Result<Self::State> {
        Ok(rows.iter().map(|&r| state[r]).collect())
    }
}

const V: usize = 8;

fn probs_to_logits(p: &[f32]) -> Vec<f32> {
    p.iter().map(|&x| x.max(1e-9).ln()).collect()
}

/// Image 0: greedy goes 4 (0.6) then is stuck with 0.34 at best; beam finds 5 (0.4) then END (0.9).
fn trap() -> Table {
    let mut t = vec![vec![vec![0.0f32; V]; V]];
    let uniformish = |hot: usize, p: f32| {
        let mut row = vec![(1.0 - p) / (V as f32 - 1.0); V];
        row[hot] = p;
        row
    };
    t[0][START as usize] = probs_to_logits(&{
        let mut r = vec![0.0; V];
        r[4] = 0.6;
        r[5] = 0.4;
        r
    });
    t[0][4] = probs_to_logits(&{
        let mut r = vec![0.06; V];
        r[6] = 0.34;
        r[END as usize] = 0.3;
        r
    });
    t[0][5] = probs_to_logits(&uniformish(END as usize, 0.9));
    t[0][6] = probs_to_logits(&uniformish(END as usize, 0.9));
    // Every other row (startofseq's excepted) ends the caption at once.
    for w in [0usize, 2, 3, 7] {
        t[0][w] = probs_to_logits(&uniformish(END as usize, 0.9));
    }
    Table { logits: t }
}

fn random_table(images: usize, seed: u64) -> Table {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let logits = (0..images)
        .map(|_| {
            (0..V)
                .map(|_| (0..V).map(|_| rng.random_range(-3.0f32..3.0)).collect())
                .collect()
        })
        .collect();
    Table { logits }
}

#[test]
fn greedy_follows_the_argmax_and_stops_at_end() {
    let d = greedy(&trap(), 1).unwrap();
    assert_eq!(d[0].tokens, vec![4, 6]);
    assert!(d[0].ended);
    let expected = 0.6f32.ln() + 0.34f32.ln() + 0.9f32.ln();
    assert!(
        (d[0].log_prob - expected).abs() < 1e-4,
        "{} vs {expected}",
        d[0].log_prob
    );
}

#[test]
fn beam_finds_the_better_caption_that_greedy_misses() {
    let d = beam_search(
        &trap(),
        1,
        BeamOptions {
            beam: 2,
            length_alpha: 0.0,
        },
    )
    .unwrap();
    assert_eq!(d[0].tokens, vec![5]);
    assert!((d[0].log_prob - (0.4f32.ln() + 0.9f32.ln())).abs() < 1e-4);
}

#[test]
fn beam_search_all_keeps_the_other_finished_captions_best_first() {
    let opts = BeamOptions {
        beam: 2,
        length_alpha: 0.0,
    };
    let all = beam_search_all(&trap(), 1, opts).unwrap();
    let tokens: Vec<Vec<u32>> = all[0].iter().map(|d| d.tokens.clone()).collect();
    // [5] ends with 0.4 × 0.9; [4] ends with 0.6 × 0.3.
    assert_eq!(tokens, vec![vec![5], vec![4]]);
    assert!(all[0][0].log_prob > all[0][1].log_prob);
    assert_eq!(all[0][0], beam_search(&trap(), 1, opts).unwrap()[0]);
}

#[test]
fn beam_of_one_equals_greedy_on_random_models() {
    for seed in 0..20 {
        let m = random_table(3, seed);
        let g = greedy(&m, 3).unwrap();
        let b = beam_search(
            &m,
            3,
            BeamOptions {
                beam: 1,
                length_alpha: 0.0,
            },
        )
        .unwrap();
        for (g, b) in g.iter().zip(&b) {
            assert_eq!(g.tokens, b.tokens, "seed {seed}");
            assert!((g.log_prob - b.log_prob).abs() < 1e-4);
        }
    }
}

#[test]
fn wider_beams_never_score_worse_than_greedy_on_random_models() {
    for seed in 0..20 {
        let m = random_table(2, 100 + seed);
        let g = greedy(&m, 2).unwrap();
        let b = beam_search(
            &m,
            2,
            BeamOptions {
                beam: 4,
                length_alpha: 0.0,
            },
        )
        .unwrap();
        for (g, b) in g.iter().zip(&b) {
            if g.ended && b.ended {
                assert!(
                    b.log_prob >= g.log_prob - 1e-4,
                    "seed {seed}: beam {b:?} greedy {g:?}"
                );
            }
        }
    }
}

#[test]
fn captions_without_end_stop_at_the_word_limit() {
    // END is never likely: every row puts almost all mass on token 7.
    let mut row = vec![-20.0f32; V];
    row[7] = 5.0;
    let m = Table {
        logits: vec![vec![row; V]],
    };
    let g = greedy(&m, 1).unwrap();
    assert_eq!(g[0].tokens, vec![7; MAX_WORDS]);
    assert!(!g[0].ended);
    let b = beam_search(
        &m,
        1,
        BeamOptions {
            beam: 3,
            length_alpha: 0.7,
        },
    )
    .unwrap();
    assert_eq!(b[0].tokens.len(), MAX_WORDS);
    assert!(!b[0].ended);
}

#[test]
fn images_in_a_batch_do_not_affect_each_other() {
    let m = random_table(4, 7);
    let together = beam_search(
        &m,
        4,
        BeamOptions {
            beam: 3,
            length_alpha: 0.0,
        },
    )
    .unwrap();
    for (i, both) in together.iter().enumerate() {
        let alone = Table {
            logits: vec![m.logits[i].clone()],
        };
        let one = beam_search(
            &alone,
            1,
            BeamOptions {
                beam: 3,
                length_alpha: 0.0,
            },
        )
        .unwrap();
        assert_eq!(one[0].tokens, both.tokens);
    }
    let _ = greedy(&m, 0).unwrap();
}
