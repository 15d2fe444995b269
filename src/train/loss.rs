//! Mean cross-entropy of logits against targets, with candle's own log-softmax and gather: the
//! reference that the fused output layer + loss of training ([`super::projected_loss`]) is tested
//! against, and the loss of that op on devices other than the CPU.

use crate::Result;
use candle_core::Tensor;

/// Mean cross-entropy of `logits [N, V]` (f32) against `targets [N]` (u32): PyTorch's
/// `CrossEntropyLoss(ignore_index=pad)` once pad positions have been dropped. A scalar tensor
/// that backpropagates into `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, targets)?)
}
