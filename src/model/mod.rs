//! Models: the ResNet trunk (torchvision names), weight loading, the head and the LSTM decoder.

pub mod activation;
pub mod decoder;
pub mod head;
pub mod lstm;
pub mod pth;
pub mod resnet;
pub mod weights;
