//! captioner: image captioning with a ResNet encoder and an LSTM decoder ("Show and Tell"),
//! on candle. The library holds the whole pipeline; `src/main.rs` is a thin CLI over it.
//!
//! The data flow (see `../shared/DESIGN.md`): corpus → split → vocabulary; image → preprocess →
//! ResNet trunk → cached feature; feature + tokens → head → LSTM decoder → loss / captions.

pub mod captioner;
pub mod data;
pub mod decode;
pub mod device;
pub mod error;
pub mod export;
pub mod features;
pub mod fetch;
pub mod fsutil;
pub mod metrics;
pub mod model;
pub mod pool;
pub mod report;
pub mod run;
pub mod serve;
pub mod text;
pub mod train;
pub mod vision;

pub use captioner::{CaptionOptions, Captioner, ModelInfo};
pub use error::{Error, Result};
