//! `captioner features --spatial` (issue #14, item 1): the trunk's last feature map beside the pooled
//! feature, f16 in spatial.safetensors; the pooled file is the same bytes as without the flag;
//! the maps agree with the library's trunk; a pooled-only cache gains its maps on a rerun with
//! the flag; shards and their merge give the one-process bytes; and a rerun without the flag
//! keeps the maps.

use crate::common::{self, features_cmd, init_resnet18, ok};
use candle_core::{DType, Device, Tensor};
use captioner::features::{FeatureCache, SpatialFeatures, SPATIAL_FILE};
use captioner::model::resnet::{Arch, ResNetTrunk};
use std::path::Path;

/// Image side 64: a 2×2 grid of 512 channels for ResNet-18.
const SMALL: [&str; 6] = [
    "--batch-size",
    "3",
    "--chunk-images",
    "4",
    "--image-size",
    "64",
];

fn features(data: &Path, bb: &Path, cache: &Path, extra: &[&str]) -> String {
    let mut cmd = features_cmd(data, bb, cache, &SMALL);
    cmd.args(extra);
    ok(cmd.output().unwrap())
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn spatial_maps_beside_the_same_pooled_features_through_reruns_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::synth(&data, 10);
    let bb = dir.path().join("r18.safetensors");
    init_resnet18(&bb, Some(3));

    let pooled = dir.path().join("pooled");
    features(&data, &bb, &pooled, &[]);
    assert!(!pooled.join(SPATIAL_FILE).exists());

    let full = dir.path().join("full");
    let out = features(&data, &bb, &full, &["--spatial"]);
    assert!(
        out.contains("0 reused, 10 computed") && out.contains("2×2 maps"),
        "{out}"
    );
    assert_eq!(
        bytes(&pooled.join("features.safetensors")),
        bytes(&full.join("features.safetensors")),
        "--spatial changed the pooled features"
    );

    // The file: one f16 tensor [N, P, C], read by the safetensors crate and by the cache.
    let t = candle_core::safetensors::load(full.join(SPATIAL_FILE), &Device::Cpu)
        .unwrap()
        .remove("spatial")
        .unwrap();
    assert_eq!(t.dims(), &[10, 4, 512]);
    assert_eq!(t.dtype(), DType::F16);
    let cache = FeatureCache::open(&full).unwrap();
    assert_eq!(cache.grid, Some([2, 2]));
    let maps = cache.spatial.as_ref().unwrap();
    assert_eq!((maps.len(), maps.cells(), maps.dim()), (10, 4, 512));

    // Each row is the f16 of the trunk's map, and the pooled row is its mean over the cells.
    let trunk = ResNetTrunk::load(&bb, Arch::ResNet18, &Device::Cpu).unwrap();
    let name = &cache.names[7];
    let px = captioner::vision::preprocess::preprocess_batch_sized(
        &[data.join("Images").join(name)],
        64,
    )
    .remove(0)
    .unwrap();
    let x = Tensor::from_vec(px, (1, 3, 64, 64), &Device::Cpu).unwrap();
    let expected = trunk
        .forward_map(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut row = Vec::new();
    maps.row_into(7, &mut row);
    assert_eq!(row.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (a, b) in row.iter().zip(&expected) {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs().max(scale * 1e-2),
            "{a} vs {b}"
        );
    }
    let pooled_row = cache.features.get(7).unwrap().to_vec1::<f32>().unwrap();
    for c in 0..512 {
        let mean = (0..4).map(|p| expected[p * 512 + c]).sum::<f32>() / 4.0;
        assert!(
            (mean - pooled_row[c]).abs() <= 1e-5 * scale,
            "{mean} vs {}",
            pooled_row[c]
        );
    }

    // A rerun without the flag reuses everything and keeps the maps as they are.
    let before = bytes(&full.join(SPATIAL_FILE));
    let out = features(&data, &bb, &full, &[]);
    assert!(
        out.contains("10 reused, 0 computed") && out.contains("2×2 maps"),
        "{out}"
    );
    assert_eq!(bytes(&full.join(SPATIAL_FILE)), before);

    // A pooled-only cache gains its maps: every image is computed again, to the same bytes.
    let out = features(&data, &bb, &pooled, &["--spatial"]);
    assert!(out.contains("0 reused, 10 computed"), "{out}");
    assert_eq!(bytes(&pooled.join(SPATIAL_FILE)), before);
    assert_eq!(
        bytes(&pooled.join("features.safetensors")),
        bytes(&full.join("features.safetensors"))
    );

    // Shards write maps into their chunks; the merge assembles the one-process bytes.
    let shared = dir.path().join("shared");
    for s in ["0/2", "1/2"] {
        features(&data, &bb, &shared, &["--spatial", "--shard", s]);
    }
    assert!(!shared.join(SPATIAL_FILE).exists(), "a shard merged");
    let out = features(&data, &bb, &shared, &["--spatial"]);
    assert!(out.contains("10 reused, 0 computed"), "{out}");
    assert_eq!(bytes(&shared.join(SPATIAL_FILE)), before);
    for f in ["features.safetensors", "images.json", "cache.json"] {
        assert_eq!(bytes(&shared.join(f)), bytes(&full.join(f)), "{f}");
    }
    assert!(!shared.join("chunks").exists());
}

#[test]
fn a_damaged_spatial_file_is_named_when_the_cache_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::synth(&data, 3);
    let bb = dir.path().join("r18.safetensors");
    init_resnet18(&bb, Some(3));
    let cache = dir.path().join("cache");
    features(&data, &bb, &cache, &["--spatial"]);
    let path = cache.join(SPATIAL_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let err = FeatureCache::open(&cache).unwrap_err().to_string();
    assert!(err.contains(SPATIAL_FILE), "{err}");
    assert!(SpatialFeatures::open(&path).is_err());
}
