//! The LSTM's input projection of a teacher-forced batch as one CPU op: the image step's rows
//! `image · W_ihᵀ` and each word's `embed[w] · W_ihᵀ`, computed once per distinct word.
//!
//! A batch of 64 captions has ~1300 word positions but far fewer distinct words (the pads and
//! `startofseq` alone are one word each; a vocabulary of 63 has at most 63). Projecting the
//! distinct words' embeddings and copying rows replaces the `[T·B, E] · [E, 4H]` product, and in
//! backward the gradient rows are first summed per word, so `dW_ih` and the embedding's gradient
//! (a scatter into the rows used) are products over the distinct words too. The same sums as
//! embedding lookup followed by the full product, in another order (tested against it).

use crate::model::cpu_math::{f32_data, matmul_into, with_data, View};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// `CustomOp3(embed [V, E], W_ih [4H, E], image [B, E])` → `xp [(1 + S)·B, 4H]`, time-major: the
/// image step, then the `S` steps of word ids `inputs [S, B]` (held by the op).
pub(crate) struct TokenProjection {
    /// The distinct word ids, ascending.
    words: Vec<u32>,
    /// For every input position (time-major), its index in `words`.
    slot: Vec<u32>,
    batch: usize,
}

impl TokenProjection {
    /// The op for time-major word ids `inputs` (`S·B` of them) of `batch` columns.
    pub fn new(inputs: &[u32], batch: usize) -> Self {
        let mut words = inputs.to_vec();
        words.sort_unstable();
        words.dedup();
        let slot = inputs
            .iter()
            .map(|w| words.binary_search(w).unwrap_or(0) as u32)
            .collect();
        Self { words, slot, batch }
    }

    /// Sizes `(V, E, 4H)`, checked against the op's ids and batch.
    pub(crate) fn sizes(
        &self,
        embed: &Shape,
        w: &Shape,
        image: &Shape,
    ) -> candle_core::Result<(usize, usize, usize)> {
        let (v, e) = embed.dims2()?;
        let (g4, e2) = w.dims2()?;
        let (b, e3) = image.dims2()?;
        if e2 != e || e3 != e || b != self.batch || !self.slot.len().is_multiple_of(b.max(1)) {
            candle_core::bail!(
                "token projection: embed {:?}, W_ih {:?}, image {:?} for {} ids of batch {}",
                embed.dims(),
                w.dims(),
                image.dims(),
                self.slot.len(),
                self.batch
            );
        }
        if let Some(&bad) = self.words.iter().find(|&&w| w as usize >= v) {
            candle_core::bail!("token projection: word id {bad} outside vocabulary of {v}");
        }
        Ok((v, e, g4))
    }

    /// `xp [(1 + S)·B, 4H]` from `embed [V, E]`, `W_ih [4H, E]` and `image [B, E]` (sizes as
    /// checked by [`TokenProjection::sizes`]).
    pub(crate) fn forward(
        &self,
        embed: &[f32],
        w: &[f32],
        image: &[f32],
        (e, g4): (usize, usize),
    ) -> candle_core::Result<Vec<f32>> {
        let (table, index) = self.forward_table(embed, w, image, (e, g4))?;
        let mut xp = vec![0f32; index.len() * g4];
        xp.par_chunks_mut(g4.max(1))
            .zip(&index)
            .for_each(|(row, &s)| {
                row.copy_from_slice(&table[s as usize * g4..(s as usize + 1) * g4])
            });
        Ok(xp)
    }

    /// [`TokenProjection::forward`]'s rows without the copies: a table of the image rows
    /// `image · W_ihᵀ` (`B` of them) then each distinct word's `embed[w] · W_ihᵀ`, and for each of
    /// the `(1 + S)·B` positions its row in the table.
    pub(crate) fn forward_table(
        &self,
        embed: &[f32],
        w: &[f32],
        image: &[f32],
        (e, g4): (usize, usize),
    ) -> candle_core::Result<(Vec<f32>, Vec<u32>)> {
        let (b, u) = (self.batch, self.words.len());
        let w_t = View::row_major(w, g4, e).t();
        let mut table = vec![0f32; (b + u) * g4];
        let (first, words) = table.split_at_mut(b * g4);
        matmul_into(first, View::row_major(image, b, e), w_t, 1.0, false)?;
        matmul_into(
            words,
            View::row_major(&self.gather(embed, e), u, e),
            w_t,
            1.0,
            false,
        )?;
        let index = (0..b as u32)
            .chain(self.slot.iter().map(|&s| b as u32 + s))
            .collect();
        Ok((table, index))
    }

    /// The gradients `(d embed [V, E], d W_ih [4H, E], d image [B, E])` from `dxp`, the gradient
    /// of [`TokenProjection::forward`]'s output.
    pub(crate) fn backward(
        &self,
        dxp: &[f32],
        embed: &[f32],
        w: &[f32],
        image: &[f32],
        (v, e, g4): (usize, usize, usize),
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let (b, u) = (self.batch, self.words.len());
        if dxp.len() != (b + self.slot.len()) * g4 {
            candle_core::bail!("token projection: gradient of {} values", dxp.len());
        }
        let (d_first, d_words) = dxp.split_at(b * g4);
        // Each distinct word's summed gradient row, [U, 4H]: column blocks in parallel, the
        // positions in time-major order within each, so the sums do not depend on threads.
        const BLOCK: usize = 256;
        let mut summed = vec![0f32; u * g4];
        let mut blocks: Vec<Vec<f32>> = (0..g4.div_ceil(BLOCK))
            .map(|k| vec![0f32; u * (BLOCK.min(g4 - k * BLOCK))])
            .collect();
        blocks.par_iter_mut().enumerate().for_each(|(k, block)| {
            let (lo, width) = (k * BLOCK, block.len() / u.max(1));
            for (row, &s) in d_words.chunks_exact(g4).zip(&self.slot) {
                let dst = &mut block[s as usize * width..(s as usize + 1) * width];
                for (d, &g) in dst.iter_mut().zip(&row[lo..lo + width]) {
                    *d += g;
                }
            }
        });
        for (k, block) in blocks.iter().enumerate() {
            let (lo, width) = (k * BLOCK, block.len() / u.max(1));
            for (s, part) in block.chunks_exact(width.max(1)).enumerate() {
                summed[s * g4 + lo..s * g4 + lo + width].copy_from_slice(part);
            }
        }
        let summed = View::row_major(&summed, u, g4);
        let d_first = View::row_major(d_first, b, g4);
        let rows = self.gather(embed, e);
        let w_v = View::row_major(w, g4, e);
        // dW_ih = Σ_words summedᵀ · embed[words] + d_firstᵀ · image
        let mut d_w = vec![0f32; g4 * e];
        matmul_into(
            &mut d_w,
            summed.t(),
            View::row_major(&rows, u, e),
            1.0,
            false,
        )?;
        matmul_into(
            &mut d_w,
            d_first.t(),
            View::row_major(image, b, e),
            1.0,
            true,
        )?;
        // The embedding's gradient: the used rows only.
        let mut d_rows = vec![0f32; u * e];
        matmul_into(&mut d_rows, summed, w_v, 1.0, false)?;
        let mut d_embed = vec![0f32; v * e];
        for (&word, row) in self.words.iter().zip(d_rows.chunks_exact(e.max(1))) {
            d_embed[word as usize * e..(word as usize + 1) * e].copy_from_slice(row);
        }
        let mut d_image = vec![0f32; b * e];
        matmul_into(&mut d_image, d_first, w_v, 1.0, false)?;
        Ok((d_embed, d_w, d_image))
    }

    /// The distinct words' embedding rows, `[U, E]`.
    fn gather(&self, embed: &[f32], e: usize) -> Vec<f32> {
        let mut rows = Vec::with_capacity(self.words.len() * e);
        for &w in &self.words {
            rows.extend_from_slice(&embed[w as usize * e..(w as usize + 1) * e]);
        }
        rows
    }
}

impl CustomOp3 for TokenProjection {
    fn name(&self) -> &'static str {
        "token-projection"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, e, g4) = self.sizes(l1.shape(), l2.shape(), l3.shape())?;
        let xp = self.forward(
            f32_data(s1, l1, "token projection: embed")?,
            f32_data(s2, l2, "token projection: W_ih")?,
            f32_data(s3, l3, "token projection: image")?,
            (e, g4),
        )?;
        let rows = self.batch + self.slot.len();
        Ok((CpuStorage::F32(xp), Shape::from((rows, g4))))
    }

    fn bwd(
        &self,
        embed: &Tensor,
        w: &Tensor,
        image: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (v, e, g4) = self.sizes(embed.shape(), w.shape(), image.shape())?;
        let grad = grad_res.contiguous()?;
        let (d_embed, d_w, d_image) = with_data(&grad, |dxp| {
            with_data(embed, |emb| {
                with_data(w, |wd| {
                    with_data(image, |img| self.backward(dxp, emb, wd, img, (v, e, g4)))
                })
            })
        })?;
        let dev = embed.device();
        Ok((
            Some(Tensor::from_vec(d_embed, (v, e), dev)?),
            Some(Tensor::from_vec(d_w, (g4, e), dev)?),
            Some(Tensor::from_vec(d_image, (self.batch, e), dev)?),
        ))
    }
}

/// `xp [(1 + S)·B, 4H]`: the image step `image · W_ihᵀ`, then `embed[inputs] · W_ihᵀ` for the
/// time-major word ids `inputs [S, B]`, backpropagating into `embed`, `w_ih` and `image`.
pub(crate) fn project_tokens(
    embed: &Tensor,
    w_ih: &Tensor,
    image: &Tensor,
    inputs: &Tensor,
) -> candle_core::Result<Tensor> {
    let b = image.dim(0)?;
    let ids = inputs.flatten_all()?.to_vec1::<u32>()?;
    embed.contiguous()?.apply_op3(
        &w_ih.contiguous()?,
        &image.contiguous()?,
        TokenProjection::new(&ids, b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Embedding lookup, the image row prepended, and candle's matmul: the same outputs and
    /// gradients, with repeated words, unused vocabulary rows and a width that is not a multiple
    /// of the column blocks.
    #[test]
    fn matches_lookup_then_matmul() {
        let dev = Device::Cpu;
        let (v, e, g4, b, s) = (11, 6, 300, 3, 4);
        let var = |shape: (usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap()
        };
        let (embed, w, image) = (var((v, e)), var((g4, e)), var((b, e)));
        let ids: Vec<u32> = vec![1, 1, 1, 5, 7, 5, 0, 9, 5, 0, 0, 2];
        let inputs = Tensor::from_vec(ids.clone(), (s, b), &dev).unwrap();
        let weights = Tensor::randn(0f32, 1.0, ((1 + s) * b, g4), &dev).unwrap();

        let words = embed
            .as_tensor()
            .index_select(&inputs.flatten_all().unwrap(), 0)
            .unwrap();
        let x = Tensor::cat(&[image.as_tensor(), &words], 0).unwrap();
        let want = x.matmul(&w.as_tensor().t().unwrap()).unwrap();
        let want_grads = (&want * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();

        let got = project_tokens(&embed, &w, &image, &inputs).unwrap();
        let d = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
        let grads = (&got * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, var) in [("embed", &embed), ("w_ih", &w), ("image", &image)] {
            let (g, e) = (grads.get(var).unwrap(), want_grads.get(var).unwrap());
            let d = (g - e).unwrap().abs().unwrap().max_all().unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "grad of {name} differs by {d}");
        }
    }
}
