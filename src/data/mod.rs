//! Datasets: corpus readers (Kaggle Flickr8k, Flickr8k token file, Karpathy JSON), the split by image,
//! and the generated scenes corpus used by tests and the demo.

pub mod corpus;
pub mod jpeg_end;
pub mod kaggle;
pub mod karpathy;
pub mod layout;
pub mod parsed;
pub mod readable;
pub mod report;
pub mod split;
pub mod split_files;
pub mod synth;
pub mod token_file;
pub mod walk;

pub use corpus::{CaptionCorpus, ImageRecord, LoadOptions};
pub use layout::Layout;
pub use report::{LoadReport, Tally};
pub use split::{DatasetSplit, SplitName, SplitRatios};
