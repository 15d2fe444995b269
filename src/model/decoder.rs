//! TODO(decoder)
