//! Models: the ResNet trunk (torchvision names), weight loading, the head and the LSTM decoder.

pub mod activation;
pub(crate) mod cpu_math;
pub mod decoder;
pub mod head;
pub mod lstm;
pub mod pth;
pub mod resnet;
pub mod weights;
