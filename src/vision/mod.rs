//! Images: decoding to RGB the way Pillow does, and torchvision-exact preprocessing.

pub mod header;
