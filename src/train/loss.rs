//! The training loss: [`batch_loss`] of a teacher-forced batch (output layer and cross-entropy as
//! one fused op), and [`cross_entropy`] with candle's own log-softmax and gather — the reference
//! that the fused op ([`super::projected_loss`]) is tested against, and its path on devices other
//! than the CPU.

use crate::model::decoder::TeacherBatch;
use crate::model::CaptionModel;
use crate::train::projected_loss::projected_cross_entropy;
use crate::Result;
use candle_core::Tensor;

/// Mean cross-entropy of the batch's real tokens; the head in training mode when `train`.
/// The output layer and the loss are one op ([`projected_cross_entropy`]).
pub fn batch_loss(
    model: &mut CaptionModel,
    features: &Tensor,
    batch: &TeacherBatch,
    train: bool,
) -> Result<Tensor> {
    let image = model.image(features, train)?;
    let hidden = model.decoder.hidden_teacher(&image, batch)?;
    projected_cross_entropy(
        &hidden,
        model.decoder.linear_weight.as_tensor(),
        model.decoder.linear_bias.as_tensor(),
        &batch.targets,
        model.scratch(),
    )
}

/// Mean cross-entropy of `logits [N, V]` (f32) against `targets [N]` (u32): PyTorch's
/// `CrossEntropyLoss(ignore_index=pad)` once pad positions have been dropped. A scalar tensor
/// that backpropagates into `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, targets)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The output layer's `[N, V]` buffer is kept by the model that made it, for its next step:
    /// two models training side by side never take each other's (it was one process-wide buffer),
    /// and a clone starts without one.
    #[test]
    fn each_model_keeps_its_own_loss_buffer() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut a = CaptionModel::new(8, 40, 6, 5, &mut rng, &dev).unwrap();
        let mut b = CaptionModel::new(8, 40, 6, 5, &mut rng, &dev).unwrap();
        let features = Tensor::randn(0f32, 1.0, (2, 8), &dev).unwrap();
        let batch = TeacherBatch::new(&[&[5, 6, 7], &[8]], &dev).unwrap();
        let need = batch.tokens * 40 * 4;
        assert_eq!(a.scratch().held_bytes(), 0);
        let loss = batch_loss(&mut a, &features, &batch, true).unwrap();
        loss.backward().unwrap();
        drop(loss);
        assert!(a.scratch().held_bytes() >= need);
        assert_eq!(b.scratch().held_bytes(), 0, "b sees a's buffer");
        let loss = batch_loss(&mut b, &features, &batch, true).unwrap();
        loss.backward().unwrap();
        drop(loss);
        assert!(a.scratch().held_bytes() >= need, "b took a's buffer");
        assert!(b.scratch().held_bytes() >= need);
        assert_eq!(a.clone().scratch().held_bytes(), 0);
    }
}
