//! Images: decoding to RGB the way Pillow does, and torchvision-exact preprocessing
//! (decode → RGB8 → Pillow bilinear 224×224 → ImageNet normalisation). EXIF orientation is not
//! applied, as in PIL.

pub mod decode;
pub mod header;
pub mod preprocess;
pub mod resize;

pub use preprocess::{preprocess_version, IMAGE_SIZE, PREPROCESS_VERSION};
