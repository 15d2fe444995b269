//! The feature cache: ResNet features computed once per image, keyed by backbone, preprocessing and image.
