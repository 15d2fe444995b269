//! Training: the loop, loss, optimiser, checkpoints and metrics of a run directory.

pub mod adam;
pub mod loss;
pub mod model;

pub use model::CaptionModel;
