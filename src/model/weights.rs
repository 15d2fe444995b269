//! TODO(weights)
