//! Training: the loop, loss, optimiser, checkpoints and metrics of a run directory.
