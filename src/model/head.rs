//! TODO(head)
