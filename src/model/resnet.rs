//! TODO(resnet)
