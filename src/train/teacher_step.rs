//! The seed decoder's training step — head, embedding, LSTM, output layer and loss — as explicit
//! forward and backward code on the CPU, with no autograd graph: [`forward`] keeps what the
//! backward pass needs, [`TeacherPass::backward`] computes every parameter's gradient once, in
//! its own buffer. The fused ops that [`crate::train::loss::batch_loss`] builds its graph from
//! (token projection, LSTM rows, projected loss) are the same code; what goes is candle's graph
//! walk, a zero-filled accumulator and an add per gradient, and the head's dozen small ops (see
//! docs/performance.md). Other devices keep the graph ([`loss_and_gradients`] picks).

use crate::model::cpu_math::host_data;
use crate::model::decoder::TeacherBatch;
use crate::model::head_pass::{self, HeadPass};
use crate::model::lstm::sequence::{InputRows, LstmRows};
use crate::model::token_projection::TokenProjection;
use crate::model::CaptionModel;
use crate::train::loss::batch_loss;
use crate::train::projected_loss::{self, Saved};
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Shape, Tensor};

/// A forward pass of the training step, holding what its backward pass reads.
pub struct TeacherPass {
    loss: f32,
    features: Tensor,
    head: HeadPass,
    /// The image embeddings `[B, E]`, the LSTM's first input.
    image: Vec<f32>,
    projection: TokenProjection,
    lstm: LstmRows,
    /// `(T, B, H)` of the recurrence.
    dims: (usize, usize, usize),
    /// Every step's `h | c | i f g o`.
    states: Vec<f32>,
    /// The scored rows' hidden states `[N, H]`.
    hidden: Vec<f32>,
    scored: Saved,
    vocab: usize,
}

/// The head in training mode (its running statistics updated), the decoder teacher-forced, and
/// the mean cross-entropy of the batch's real tokens. CPU only.
pub fn forward(
    model: &mut CaptionModel,
    features: &Tensor,
    batch: &TeacherBatch,
) -> Result<TeacherPass> {
    let b = batch.batch_size();
    let features = features.contiguous()?;
    if features.dims() != [b, model.head.feature_dim()] {
        return Err(Error::Internal(format!(
            "features of shape {:?} for a batch of {b}",
            features.dims()
        )));
    }
    let (image, head) = {
        let x = host_data(&features, "features")?;
        head_pass::forward_train(&mut model.head, &x, b)?
    };
    let dec = &model.decoder;
    let ids = batch.inputs.flatten_all()?.to_vec1::<u32>()?;
    let projection = TokenProjection::new(&ids, b);
    let (v, e, g4) = projection.sizes(
        dec.embed.shape(),
        dec.lstm.weight_ih.shape(),
        &Shape::from((b, dec.embed_size())),
    )?;
    let (table, index) = projection.forward_table(
        &host_data(dec.embed.as_tensor(), "embedding")?,
        &host_data(dec.lstm.weight_ih.as_tensor(), "W_ih")?,
        &image,
        (e, g4),
    )?;
    let h = dec.hidden_size();
    let dims = (index.len() / b.max(1), b, h);
    // The first LSTM step sees the image; its output is not scored.
    let rows: Vec<u32> = batch.positions.iter().map(|&p| p + b as u32).collect();
    let lstm = LstmRows::new(b, rows);
    let bias: Vec<f32> = {
        let (i, hh) = (
            host_data(dec.lstm.bias_ih.as_tensor(), "b_ih")?,
            host_data(dec.lstm.bias_hh.as_tensor(), "b_hh")?,
        );
        i.iter().zip(hh.iter()).map(|(&a, &b)| a + b).collect()
    };
    let xp = InputRows {
        table: &table,
        index: Some(&index),
    };
    let (hidden, states) = lstm.forward(
        xp,
        &host_data(dec.lstm.weight_hh.as_tensor(), "W_hh")?,
        &bias,
        dims,
    )?;
    drop(table);
    let targets = batch.targets.to_vec1::<u32>()?;
    let (loss, scored) = projected_loss::mean_loss(
        &hidden,
        &host_data(dec.linear_weight.as_tensor(), "output weight")?,
        &host_data(dec.linear_bias.as_tensor(), "output bias")?,
        &targets,
        h,
        model.scratch(),
    )?;
    Ok(TeacherPass {
        loss,
        features,
        head,
        image,
        projection,
        lstm,
        dims,
        states,
        hidden,
        scored,
        vocab: v,
    })
}

impl TeacherPass {
    /// The batch's mean cross-entropy.
    pub fn loss(&self) -> f32 {
        self.loss
    }

    /// Every trainable parameter's gradient of the mean loss, keyed by `model`'s variables (the
    /// model the pass ran on, not yet updated).
    pub fn backward(self, model: &CaptionModel) -> Result<GradStore> {
        let dec = &model.decoder;
        let h = self.dims.2;
        let (v, e, g4) = (self.vocab, dec.embed_size(), 4 * h);
        let n = self.hidden.len() / h.max(1);
        let (d_hidden, d_linear_w, d_linear_b) = projected_loss::gradients(
            self.scored,
            &self.hidden,
            &host_data(dec.linear_weight.as_tensor(), "output weight")?,
            (n, h, v),
            1.0,
            model.scratch(),
        )?;
        let (d_xp, d_w_hh, d_bias) = self.lstm.backward(
            &self.states,
            &d_hidden,
            &host_data(dec.lstm.weight_hh.as_tensor(), "W_hh")?,
            self.dims,
        )?;
        drop(self.states);
        let (d_embed, d_w_ih, d_image) = self.projection.backward(
            &d_xp,
            &host_data(dec.embed.as_tensor(), "embedding")?,
            &host_data(dec.lstm.weight_ih.as_tensor(), "W_ih")?,
            &self.image,
            (v, e, g4),
        )?;
        drop(d_xp);
        let head = head_pass::backward(
            &model.head,
            &self.head,
            &host_data(&self.features, "features")?,
            &d_image,
        )?;
        let dev = self.features.device();
        let d_bias = Tensor::from_vec(d_bias, g4, dev)?;
        let f = model.head.feature_dim();
        let mut grads = GradStore::default();
        let mut put = |var: &candle_core::Var, g: Vec<f32>, shape: Shape| -> Result<()> {
            grads.insert(var.as_tensor(), Tensor::from_vec(g, shape, dev)?);
            Ok(())
        };
        put(&model.head.linear_weight, head.linear_weight, (e, f).into())?;
        put(&model.head.linear_bias, head.linear_bias, e.into())?;
        put(&model.head.bn_weight, head.bn_weight, e.into())?;
        put(&model.head.bn_bias, head.bn_bias, e.into())?;
        put(&dec.embed, d_embed, (v, e).into())?;
        put(&dec.lstm.weight_ih, d_w_ih, (g4, e).into())?;
        put(&dec.lstm.weight_hh, d_w_hh, (g4, h).into())?;
        put(&dec.linear_weight, d_linear_w, (v, h).into())?;
        put(&dec.linear_bias, d_linear_b, v.into())?;
        // b_ih and b_hh enter as their sum: the same gradient.
        grads.insert(dec.lstm.bias_ih.as_tensor(), d_bias.clone());
        grads.insert(dec.lstm.bias_hh.as_tensor(), d_bias);
        Ok(grads)
    }
}

/// The batch's mean loss and every parameter's gradient: [`forward`] and
/// [`TeacherPass::backward`] on the CPU, candle's graph ([`batch_loss`]) elsewhere.
pub fn loss_and_gradients(
    model: &mut CaptionModel,
    features: &Tensor,
    batch: &TeacherBatch,
) -> Result<(f32, GradStore)> {
    if features.device().is_cpu() {
        let pass = forward(model, features, batch)?;
        let loss = pass.loss();
        return Ok((loss, pass.backward(model)?));
    }
    let loss = batch_loss(model, features, batch, true)?;
    let grads = loss.backward()?;
    Ok((loss.to_scalar::<f32>()?, grads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The largest difference over the largest magnitude of `b`, which may be all but zero (the
    /// linear bias before BatchNorm has a gradient of zero up to rounding): gaps below 1e-6 are 0.
    fn max_relative_gap(a: &Tensor, b: &Tensor) -> f32 {
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .filter(|&d| d > 1e-6)
            .fold(0f32, |m, d| m.max(d / scale))
    }

    /// The explicit step gives the graph's loss, every parameter's gradient and the same running
    /// statistics, on captions of mixed lengths (dead rows in later steps), repeated words and a
    /// vocabulary with unused rows, over two steps of Adam so the second runs on updated weights.
    #[test]
    fn explicit_step_matches_candles_graph() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (f, v, e, h) = (24, 37, 12, 20);
        let explicit_model = CaptionModel::new(f, v, e, h, &mut rng, &dev).unwrap();
        let mut graph_model = explicit_model.clone();
        let mut explicit_model = explicit_model;
        let caps: Vec<Vec<u32>> = [9usize, 7, 7, 4, 2, 0]
            .iter()
            .map(|&len| {
                (0..len)
                    .map(|_| rng.random_range(4..v as u32 - 5))
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = caps.iter().map(|c| c.as_slice()).collect();
        let batch = TeacherBatch::new(&refs, &dev).unwrap();
        let feats: Vec<f32> = (0..refs.len() * f)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let feats = Tensor::from_vec(feats, (refs.len(), f), &dev).unwrap();
        let cfg = crate::train::adam::AdamConfig::default();
        let mut opt_explicit = crate::train::adam::Adam::new(explicit_model.vars(), cfg).unwrap();
        let mut opt_graph = crate::train::adam::Adam::new(graph_model.vars(), cfg).unwrap();
        for step in 0..2 {
            let (loss, grads) = loss_and_gradients(&mut explicit_model, &feats, &batch).unwrap();
            let want = batch_loss(&mut graph_model, &feats, &batch, true).unwrap();
            let want_grads = want.backward().unwrap();
            let want = want.to_scalar::<f32>().unwrap();
            assert!(
                (loss - want).abs() <= 1e-5 * want.abs(),
                "step {step}: loss {loss} vs {want}"
            );
            for ((name, var), (_, graph_var)) in
                explicit_model.vars().iter().zip(graph_model.vars())
            {
                let got = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("no {name}"));
                let want = want_grads.get(graph_var.as_tensor()).unwrap();
                let gap = max_relative_gap(got, want);
                assert!(
                    gap < 1e-4,
                    "step {step}: {name} differs by {gap} of its largest"
                );
            }
            for (got, want) in [
                (
                    &explicit_model.head.running_mean,
                    &graph_model.head.running_mean,
                ),
                (
                    &explicit_model.head.running_var,
                    &graph_model.head.running_var,
                ),
            ] {
                assert!(max_relative_gap(got, want) < 1e-5);
            }
            opt_explicit.step(&grads).unwrap();
            opt_graph.step(&want_grads).unwrap();
        }
    }
}
