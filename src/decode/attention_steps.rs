//! The attention decoder as a [`StepModel`]: its first state comes from each image's mean cell,
//! then each step attends over the image's feature map, through the same step function training
//! uses ([`crate::model::attention::step`]). Beam search reorders rows by selecting rows of
//! `h`, `c` and the image each row belongs to.

use super::step_model::log_softmax_in_place;
use super::StepModel;
use crate::model::attention::step::{initial_state, project_cells, step, word_gates, wt, StepOut};
use crate::model::attention::{AttentionDecoder, Param};
use crate::model::cpu_math::View;
use crate::text::START;
use crate::{Error, Result};

/// Decoding steps of `decoder` over the feature maps of a batch of images.
pub struct AttentionSteps<'a> {
    decoder: &'a AttentionDecoder,
    /// Feature maps `[N, P, C]`.
    maps: Vec<f32>,
    cells: usize,
    /// `encoder_att` of every cell, `[N·P, A]`.
    att1: Vec<f32>,
}

/// The rows' state: `h` and `c` `[rows, H]`, each row's image, and each row's attention weights
/// at its last step `[rows, P]`.
#[derive(Debug, Clone)]
pub struct AttentionState {
    h: Vec<f32>,
    c: Vec<f32>,
    image: Vec<usize>,
    /// α of the step that produced each row's last word (empty before the first word).
    pub alpha: Vec<f32>,
}

impl<'a> AttentionSteps<'a> {
    /// Prepares decoding of feature maps `maps [N, P·C]` (row-major cells of C channels).
    pub fn new(decoder: &'a AttentionDecoder, maps: Vec<f32>, images: usize) -> Result<Self> {
        let c = decoder.dims().channels;
        let per_image = maps.len() / images.max(1);
        if images == 0
            || per_image == 0
            || !per_image.is_multiple_of(c)
            || per_image * images != maps.len()
        {
            return Err(Error::Invalid(format!(
                "{} feature-map values for {images} images do not divide into cells of the \
                 decoder's {c} channels",
                maps.len()
            )));
        }
        let cells = per_image / c;
        let att1 = project_cells(decoder, &maps, images, cells)?;
        Ok(Self {
            decoder,
            maps,
            cells,
            att1,
        })
    }

    /// Grid cells P per image.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Number of images.
    pub fn images(&self) -> usize {
        self.maps.len() / (self.cells * self.decoder.dims().channels)
    }

    /// Where the model looked for each of `words` (one row of P weights per word) when it is
    /// fed `startofseq w1 … w(n−1)` on image `image`: the maps of a caption it generated.
    pub fn attention_of(&self, image: usize, words: &[u32]) -> Result<Vec<Vec<f32>>> {
        let mut state = self.select(&self.start(self.images())?, &[image])?;
        let mut out = Vec::with_capacity(words.len());
        let mut fed = START;
        for &w in words {
            let (_, next) = self.step(&[fed], &state)?;
            out.push(next.alpha.clone());
            state = next;
            fed = w;
        }
        Ok(out)
    }
}

impl StepModel for AttentionSteps<'_> {
    type State = AttentionState;

    fn start(&self, images: usize) -> Result<AttentionState> {
        if images != self.images() {
            return Err(Error::Invalid(format!(
                "asked to decode {images} images, feature maps were given for {}",
                self.images()
            )));
        }
        let (h, c, _) = initial_state(self.decoder, &self.maps, images, self.cells)?;
        Ok(AttentionState {
            h,
            c,
            image: (0..images).collect(),
            alpha: Vec::new(),
        })
    }

    fn step(
        &self,
        tokens: &[u32],
        state: &AttentionState,
    ) -> Result<(Vec<Vec<f32>>, AttentionState)> {
        let d = self.decoder.dims();
        let (n, p, cc, a, h, v) = (
            tokens.len(),
            self.cells,
            d.channels,
            d.attention,
            d.hidden,
            d.vocab,
        );
        if state.image.len() != n {
            return Err(Error::Internal(format!(
                "{n} tokens for a state of {} rows",
                state.image.len()
            )));
        }
        // Each row's map and its projection (rows of one image repeat under beam search).
        let identity = state.image.iter().enumerate().all(|(r, &i)| r == i) && n == self.images();
        let (maps, att1) = if identity {
            (
                std::borrow::Cow::Borrowed(&self.maps[..]),
                std::borrow::Cow::Borrowed(&self.att1[..]),
            )
        } else {
            let mut maps = Vec::with_capacity(n * p * cc);
            let mut att1 = Vec::with_capacity(n * p * a);
            for &i in &state.image {
                maps.extend_from_slice(&self.maps[i * p * cc..(i + 1) * p * cc]);
                att1.extend_from_slice(&self.att1[i * p * a..(i + 1) * p * a]);
            }
            (std::borrow::Cow::Owned(maps), std::borrow::Cow::Owned(att1))
        };
        let xw = word_gates(self.decoder, tokens)?;
        let mut next = AttentionState {
            h: vec![0.0; n * h],
            c: vec![0.0; n * h],
            image: state.image.clone(),
            alpha: vec![0.0; n * p],
        };
        let (mut att2, mut ctx, mut gate, mut z, mut gates) = (
            vec![0.0; n * a],
            vec![0.0; n * cc],
            vec![0.0; n * cc],
            vec![0.0; n * cc],
            vec![0.0; n * 4 * h],
        );
        step(
            self.decoder,
            n,
            p,
            &maps,
            &att1,
            &state.h,
            &state.c,
            &xw,
            StepOut {
                att2: &mut att2,
                alpha: &mut next.alpha,
                context: &mut ctx,
                gate: &mut gate,
                z: &mut z,
                gates: &mut gates,
                c: &mut next.c,
                h: &mut next.h,
            },
        )?;
        let mut logits = vec![0.0; n * v];
        crate::model::attention::step::linear(
            &mut logits,
            View::row_major(&next.h, n, h),
            wt(self.decoder.param(Param::FcW), v, h),
            Some(self.decoder.param(Param::FcB)),
            false,
        )?;
        let rows = logits
            .chunks(v)
            .map(|r| {
                let mut r = r.to_vec();
                log_softmax_in_place(&mut r);
                r
            })
            .collect();
        Ok((rows, next))
    }

    fn select(&self, state: &AttentionState, rows: &[usize]) -> Result<AttentionState> {
        let h = self.decoder.dims().hidden;
        let p = self.cells;
        let pick = |v: &[f32], w: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                .collect()
        };
        Ok(AttentionState {
            h: pick(&state.h, h),
            c: pick(&state.c, h),
            image: rows.iter().map(|&r| state.image[r]).collect(),
            alpha: if state.alpha.is_empty() {
                Vec::new()
            } else {
                pick(&state.alpha, p)
            },
        })
    }
}
