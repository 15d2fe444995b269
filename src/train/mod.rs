//! Training: the loop, loss, optimiser, checkpoints and metrics of a run directory.

pub mod adam;
pub mod batches;
pub mod checkpoint;
pub mod dataset;
pub mod learner;
pub mod loss;
pub mod metrics_log;
pub mod plot;
pub mod projected_loss;
pub mod teacher_step;
pub mod trainer;

pub use batches::{Caption, TrainData};
pub use trainer::{evaluate, set_bn_statistics, train, TrainOptions, TrainOutcome};
