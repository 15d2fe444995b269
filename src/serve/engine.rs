//! What the server needs from a model: caption an uploaded image, describe itself. The real
//! ResNet + LSTM captioner implements [`CaptionEngine`]; [`FakeEngine`] stands in for it in tests
//! and load runs.

use crate::captioner::{Attended, CaptionOptions, Captioner};
use crate::vision::header::probe_bytes;
use crate::{Error, Result};
use std::time::Duration;

/// The largest beam the API accepts; 1 is greedy decoding.
pub const MAX_BEAM: usize = 10;

/// A loaded captioning model, shared by all the server's workers.
pub trait CaptionEngine: Send + Sync + 'static {
    /// Decodes the image bytes (format from content), checks the pixel limit, captions it.
    fn caption_bytes(&self, bytes: &[u8], beam: usize) -> Result<String>;
    /// Captions several uploads with the same beam at once (the pool's batches); each result must
    /// be what [`CaptionEngine::caption_bytes`] gives for that upload alone. The default captions
    /// them one by one; a real model encodes and decodes them together.
    fn caption_batch(&self, images: &[&[u8]], beam: usize) -> Vec<Result<String>> {
        images
            .iter()
            .map(|bytes| self.caption_bytes(bytes, beam))
            .collect()
    }
    /// Facts for GET /api/info: backbone, vocabulary size, model file, ...
    fn info(&self) -> serde_json::Value;
    /// Whether [`CaptionEngine::caption_attended`] gives where each word looked (an attention
    /// model).
    fn has_attention(&self) -> bool {
        false
    }
    /// The caption of one upload with its words and, for an attention model, where each word
    /// looked. The default has no attention.
    fn caption_attended(&self, bytes: &[u8], beam: usize) -> Result<Attended> {
        let caption = self.caption_bytes(bytes, beam)?;
        Ok(Attended {
            words: caption.split_whitespace().map(str::to_string).collect(),
            caption,
            attention: None,
        })
    }
}

/// Checks a beam size against `1..=MAX_BEAM`.
pub fn check_beam(beam: usize) -> Result<()> {
    crate::captioner::check_beam(beam, MAX_BEAM)
}

impl CaptionEngine for Captioner {
    fn caption_bytes(&self, bytes: &[u8], beam: usize) -> Result<String> {
        check_beam(beam)?;
        let opts = CaptionOptions {
            beam,
            ..CaptionOptions::default()
        };
        Captioner::caption_bytes(self, bytes, &opts)
    }

    fn caption_batch(&self, images: &[&[u8]], beam: usize) -> Vec<Result<String>> {
        if let Err(e) = check_beam(beam) {
            let msg = e.to_string();
            return images
                .iter()
                .map(|_| Err(Error::Invalid(msg.clone())))
                .collect();
        }
        let opts = CaptionOptions {
            beam,
            ..CaptionOptions::default()
        };
        self.caption_bytes_batch(images, &opts)
    }

    fn has_attention(&self) -> bool {
        self.grid().is_some()
    }

    fn caption_attended(&self, bytes: &[u8], beam: usize) -> Result<Attended> {
        check_beam(beam)?;
        let opts = CaptionOptions {
            beam,
            ..CaptionOptions::default()
        };
        let image = crate::vision::decode::decode_rgb(bytes, std::path::Path::new("upload"))?;
        self.caption_images_attended(std::slice::from_ref(&image), &opts)?
            .pop()
            .ok_or_else(|| Error::Internal("no caption came back".into()))
    }

    fn info(&self) -> serde_json::Value {
        let info = Captioner::info(self);
        let mut value = serde_json::to_value(info).unwrap_or(serde_json::Value::Null);
        // Visitors see the model's file name, never where it lives on the server.
        if let Some(name) = info.model_file.file_name() {
            value["model_file"] = name.to_string_lossy().into_owned().into();
        }
        value
    }
}

/// A stand-in model: really decodes the upload (after the same header and pixel-limit checks as
/// the real one), names its mean colour ("a mostly red picture") and sleeps `delay` to play the
/// part of a slow network, so queueing and timeouts can be exercised.
#[derive(Debug, Clone, Default)]
pub struct FakeEngine {
    delay: Duration,
}

impl FakeEngine {
    /// A fake engine that answers as soon as the image is decoded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, sleeping `delay` per caption.
    pub fn with_delay(delay: Duration) -> Self {
        Self { delay }
    }
}

impl CaptionEngine for FakeEngine {
    fn caption_bytes(&self, bytes: &[u8], beam: usize) -> Result<String> {
        check_beam(beam)?;
        let header = probe_bytes(bytes, "upload")?;
        let rgb = image::load_from_memory(bytes)
            .map_err(|e| Error::Image {
                path: "upload".into(),
                msg: format!("cannot decode image: {e}"),
            })?
            .to_rgb8();
        let mut sum = [0u64; 3];
        for p in rgb.pixels() {
            for (s, &c) in sum.iter_mut().zip(p.0.iter()) {
                *s += u64::from(c);
            }
        }
        let n = u64::from(header.width) * u64::from(header.height);
        let mean = sum.map(|s| (s / n.max(1)) as u8);
        std::thread::sleep(self.delay);
        Ok(format!("a mostly {} picture", colour_name(mean)))
    }

    fn info(&self) -> serde_json::Value {
        serde_json::json!({
            "backbone": "fake (mean colour)",
            "vocab_size": PALETTE.len() + 4,
            "model_file": null,
            "delay_ms": self.delay.as_millis() as u64,
        })
    }
}

/// Named colours the fake engine can say, as sRGB.
const PALETTE: [(&str, [u8; 3]); 11] = [
    ("black", [0, 0, 0]),
    ("white", [255, 255, 255]),
    ("gray", [128, 128, 128]),
    ("red", [220, 30, 30]),
    ("green", [40, 170, 60]),
    ("blue", [40, 70, 220]),
    ("yellow", [240, 220, 40]),
    ("orange", [245, 140, 30]),
    ("purple", [130, 50, 170]),
    ("pink", [245, 150, 190]),
    ("brown", [120, 75, 35]),
];

/// The palette colour nearest to `rgb`.
pub fn colour_name(rgb: [u8; 3]) -> &'static str {
    let dist = |c: [u8; 3]| -> i32 {
        (0..3)
            .map(|i| (i32::from(c[i]) - i32::from(rgb[i])).pow(2))
            .sum()
    };
    PALETTE
        .iter()
        .min_by_key(|(_, c)| dist(*c))
        .map_or("gray", |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(rgb: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(8, 6, image::Rgb(rgb));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn fake_engine_names_the_mean_colour() {
        let e = FakeEngine::new();
        assert_eq!(
            e.caption_bytes(&png([230, 20, 25]), 1).unwrap(),
            "a mostly red picture"
        );
        assert_eq!(
            e.caption_bytes(&png([30, 60, 200]), 3).unwrap(),
            "a mostly blue picture"
        );
    }

    #[test]
    fn fake_engine_refuses_bad_input() {
        let e = FakeEngine::new();
        assert!(matches!(
            e.caption_bytes(b"not an image", 1),
            Err(Error::Image { .. })
        ));
        assert!(matches!(
            e.caption_bytes(&png([0, 0, 0]), 0),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            e.caption_bytes(&png([0, 0, 0]), MAX_BEAM + 1),
            Err(Error::Invalid(_))
        ));
    }
}
