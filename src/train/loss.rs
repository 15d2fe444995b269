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
    )
}

/// Mean cross-entropy of `logits [N, V]` (f32) against `targets [N]` (u32): PyTorch's
/// `CrossEntropyLoss(ignore_index=pad)` once pad positions have been dropped. A scalar tensor
/// that backpropagates into `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, targets)?)
}
