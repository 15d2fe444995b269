//! captioner: image captioning with a ResNet encoder and an LSTM decoder ("Show and Tell"), on
//! candle. The library holds the whole pipeline — corpora, preprocessing, the feature cache,
//! training with exact resume, greedy and beam decoding, the metrics, the server — and the
//! `captioner` binary is a thin command line over it.
//!
//! From nothing to a caption: a generated corpus, a random backbone, a short training run, then
//! the trained model captions a file. Long work reports through a [`progress::Progress`] the
//! caller supplies ([`progress::Silent`] here); the library never prints.
//!
//! ```
//! use captioner::data::synth::{generate, SynthOptions};
//! use captioner::model::resnet::{init::random_state_dict, Arch};
//! use captioner::model::weights::save_safetensors;
//! use captioner::pipeline::{train_run, CorpusSpec, TrainRequest};
//! use captioner::progress::Silent;
//! use captioner::{CaptionOptions, Captioner};
//! use std::sync::{atomic::AtomicBool, Arc};
//!
//! let dir = tempfile::tempdir()?;
//! let scenes = dir.path().join("scenes");
//! generate(&scenes, &SynthOptions { images: 40, seed: 0, force: false })?;
//! let backbone = dir.path().join("resnet18.safetensors");
//! save_safetensors(&backbone, &random_state_dict(Arch::ResNet18, 0)?)?;
//!
//! let mut request = TrainRequest::new(CorpusSpec::new(&scenes), &backbone, dir.path().join("run"));
//! request.arch = Arch::ResNet18;
//! request.image_size = 32;
//! request.epochs = Some(1);
//! let stop = Arc::new(AtomicBool::new(false)); // set it to stop after the current batch
//! let report = train_run(&request, &Silent, stop)?;
//! assert_eq!(report.outcome.epochs_done, 1);
//!
//! let model = Captioner::load(report.run.dir(), &captioner::device::default_device())?;
//! let image = scenes.join("Images").join("scene_000001.jpg");
//! let captions = model.caption_paths(&[image], &CaptionOptions::default());
//! assert!(!captions[0].as_ref().unwrap().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The data flow (see `docs/` and the README): corpus → split → vocabulary; image → preprocess →
//! ResNet trunk → cached feature; feature + tokens → head → LSTM decoder → loss / captions. The
//! modules follow it in layers, each using only those before it: plumbing ([`error`], [`fsutil`],
//! [`device`], [`pool`], [`progress`], [`shard`]); [`data`], [`text`], [`vision`]; [`model`] and [`run`];
//! [`features`], [`train`], [`decode`], [`metrics`]; [`captioner`] (the inference API),
//! [`export`], [`fetch`]; [`pipeline`], [`report`], [`library`] (the captioned photo library) and
//! [`serve`].

#![warn(missing_docs)]

pub mod captioner;
pub mod data;
pub mod decode;
pub mod device;
pub mod error;
pub mod export;
pub mod features;
pub mod fetch;
pub mod fsutil;
pub mod library;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod pool;
pub mod progress;
pub mod report;
pub mod run;
pub mod serve;
pub mod shard;
pub mod text;
pub mod train;
pub mod vision;

pub use captioner::{Attended, CaptionOptions, Captioner, ModelInfo, WordAttention};
pub use error::{Error, Fault, Result};
pub use model::DecoderModel;
