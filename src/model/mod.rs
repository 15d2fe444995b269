//! Models: the ResNet trunk (torchvision names), weight loading, the head and the LSTM decoder,
//! and [`CaptionModel`] (head + decoder), used alike by training and inference.

pub mod activation;
pub mod attention;
pub mod bf16;
pub mod caption_model;
pub(crate) mod cpu_math;
pub mod decoder;
pub mod decoder_model;
pub(crate) mod f32_panels;
pub mod head;
pub(crate) mod head_pass;
pub mod lstm;
pub mod precision;
pub mod pth;
pub mod resnet;
pub mod state_dict;
pub(crate) mod token_projection;
pub mod weights;
pub(crate) mod wide;

pub use caption_model::{CaptionModel, Scratch};
pub use decoder_model::DecoderModel;
pub use precision::Precision;
