//! Datasets: corpus readers (Kaggle Flickr8k, Flickr8k token file, Karpathy JSON), the split by image,
//! and the generated scenes corpus used by tests and the demo.
pub mod synth;
