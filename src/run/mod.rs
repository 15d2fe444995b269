//! A run directory (`train --run DIR`): the names of its files ([`RunDir`]) and the configuration
//! that lets every later command rebuild the model exactly as it was trained ([`RunConfig`]).

mod config;
mod dir;

pub use config::{AttentionConfig, BnStatistics, DecoderKind, RunConfig, TrainConfig, RUN_FORMAT};
pub use dir::*;
