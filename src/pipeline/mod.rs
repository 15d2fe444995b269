//! The pipeline behind the command line, as library calls: read a corpus and its split
//! ([`CorpusSpec`]), train a run end to end ([`train_run`]), score a model on a split
//! ([`evaluate_model`]). Each takes a [`crate::progress::Progress`] for what it has to say.

mod corpus;
mod evaluate;
mod train;

pub use corpus::CorpusSpec;
pub use evaluate::{choose_split, evaluate_model, part_name, EvalRequest, Evaluation};
pub use train::{
    extract_features_shard, prepare_run, train_run, PreparedRun, Preset, TrainReport, TrainRequest,
    DEFAULT_EPOCHS, DEFAULT_PATIENCE,
};
