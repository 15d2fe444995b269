//! Generated scenes corpus: rendered shapes with five true captions each, written in the Kaggle
//! Flickr8k layout, so tests and the demo have data without any download.
//!
//! Image `i` depends only on `(seed, i)` (its own ChaCha8 stream), so a corpus is byte-identical
//! across runs and thread counts, and the first `k` images are the same whatever `--images` is.

mod captions;
mod render;
mod scene;
mod write;

pub use captions::captions;
pub use render::render;
pub use scene::{
    Colour, Layout, Object, Position, Relation, Scene, Shape, Size, Texture, RING_HALF_WIDTH,
    RING_MID,
};
pub use write::{generate, SynthOptions, SynthSummary};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One generated example before it is written: file name, scene and its five captions.
#[derive(Debug, Clone)]
pub struct SynthSample {
    /// `scene_000001.jpg` for index 0.
    pub name: String,
    /// What the image shows.
    pub scene: Scene,
    /// Five true captions of the scene.
    pub captions: [String; 5],
}

/// The file name of image `index` (0-based; names count from 1).
pub fn image_name(index: usize) -> String {
    format!("scene_{:06}.jpg", index + 1)
}

/// The scene and captions of image `index` of the corpus generated with `seed`, without rendering.
pub fn sample(seed: u64, index: usize) -> SynthSample {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let scene = Scene::random(&mut rng);
    let captions = captions(&scene, &mut rng);
    SynthSample {
        name: image_name(index),
        scene,
        captions,
    }
}
