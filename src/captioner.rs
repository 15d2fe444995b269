//! [`Captioner`]: a trained model ready to speak — trunk, head, decoder and vocabulary loaded from a run
//! directory or an exported file — captioning images, files or precomputed features in batches.

use crate::data::DatasetSplit;
use crate::decode::{
    beam_search, beam_search_all, greedy, AttentionSteps, BeamOptions, Decoded, LstmSteps,
};
use crate::export::{load_run_backbone, read_export, run_backbone};
use crate::model::cpu_math::FEW_ROWS;
use crate::model::resnet::{check_state_dict, Arch, ResNetTrunk};
use crate::model::{DecoderModel, Precision};
use crate::run::DecoderKind;
use crate::run::{RunConfig, RunDir};
use crate::text::Vocabulary;
use crate::vision::decode::decode_rgb;
use crate::vision::preprocess::{preprocess_file_sized, preprocess_sized};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How to decode and how many images go through the network at once.
#[derive(Debug, Clone, Copy)]
pub struct CaptionOptions {
    /// Beam size; 1 is greedy decoding.
    pub beam: usize,
    /// Length normalisation of beam search (see [`BeamOptions::length_alpha`]).
    pub length_alpha: f32,
    /// Images per trunk forward pass.
    pub batch_size: usize,
}

/// Checks a beam size against `1..=max`.
pub fn check_beam(beam: usize, max: usize) -> Result<()> {
    if (1..=max).contains(&beam) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "beam must be between 1 (greedy) and {max}, got {beam}"
        )))
    }
}

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            beam: 1,
            length_alpha: 0.0,
            batch_size: 16,
        }
    }
}

/// What a loaded model is, for `--help`-level reports and the server's `/api/info`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The run directory or exported file the model came from.
    pub model_file: PathBuf,
    /// `run` or `export`.
    pub source: &'static str,
    /// ResNet architecture of the trunk.
    pub arch: String,
    /// File name of the backbone weights (inside the export for `export`).
    pub backbone: String,
    /// sha256 of the backbone weights, hex.
    pub backbone_sha256: String,
    /// Words in the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Size of the trunk's pooled feature.
    pub feature_dim: usize,
    /// The decoder (`lstm` or `attention`).
    pub decoder: DecoderKind,
    /// Embedding size of the decoder.
    pub embed: usize,
    /// LSTM hidden size.
    pub hidden: usize,
    /// Arithmetic of the trunk's convolutions (`f32`, or `bf16` after
    /// [`Captioner::with_precision`]).
    pub precision: Precision,
}

/// A caption with its words and, for the attention decoder, where each word looked.
#[derive(Debug, Clone, PartialEq)]
pub struct Attended {
    /// The caption.
    pub caption: String,
    /// Its words, one per decoded token (`<unk>` included).
    pub words: Vec<String>,
    /// The attention of each word (attention decoder only).
    pub attention: Option<WordAttention>,
}

/// Where the attention decoder looked for each word of a caption.
#[derive(Debug, Clone, PartialEq)]
pub struct WordAttention {
    /// The feature-map grid `[h, w]`.
    pub grid: [usize; 2],
    /// Per word, its `h·w` weights (row-major cells; they sum to 1).
    pub weights: Vec<Vec<f32>>,
}

/// A loaded captioning model: trunk, head, decoder and vocabulary. Shared across threads (`&self`
/// everywhere).
///
/// ```
/// # use captioner::data::synth::{generate, SynthOptions};
/// # use captioner::model::resnet::{init::random_state_dict, Arch};
/// # use captioner::model::weights::save_safetensors;
/// # use captioner::pipeline::{train_run, CorpusSpec, TrainRequest};
/// # use captioner::progress::Silent;
/// use captioner::{CaptionOptions, Captioner};
/// # let dir = tempfile::tempdir()?;
/// # let scenes = dir.path().join("scenes");
/// # generate(&scenes, &SynthOptions { images: 40, seed: 0, force: false })?;
/// # let backbone = dir.path().join("resnet18.safetensors");
/// # save_safetensors(&backbone, &random_state_dict(Arch::ResNet18, 0)?)?;
/// # let mut request = TrainRequest::new(CorpusSpec::new(&scenes), &backbone, dir.path().join("run"));
/// # request.arch = Arch::ResNet18;
/// # request.image_size = 32;
/// # request.epochs = Some(1);
/// # train_run(&request, &Silent, Default::default())?;
/// # let run_dir = dir.path().join("run");
/// # let photo = scenes.join("Images").join("scene_000002.jpg");
/// // A run directory written by `captioner train`, or a file written by `captioner export`.
/// let model = Captioner::load(&run_dir, &captioner::device::default_device())?;
///
/// // Files, in batches; each gets its own result (an unreadable file does not stop the others).
/// let greedy = model.caption_paths(&[photo.clone()], &CaptionOptions::default());
/// println!("{}", greedy[0].as_ref().unwrap());
///
/// // Encoded bytes (an upload), with beam search.
/// let beam = CaptionOptions { beam: 3, ..CaptionOptions::default() };
/// let caption = model.caption_bytes(&std::fs::read(&photo)?, &beam)?;
/// assert!(!caption.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Captioner {
    trunk: ResNetTrunk,
    model: DecoderModel,
    vocab: Vocabulary,
    config: RunConfig,
    split: Option<DatasetSplit>,
    info: ModelInfo,
}

impl Captioner {
    /// Loads `model`: a run directory (its `best.safetensors`, `vocab.json` and the backbone named in
    /// `config.json`, checked by sha256) or a file written by `captioner export`.
    pub fn load(model: &Path, device: &Device) -> Result<Self> {
        if model.is_dir() {
            Self::load_run(model, device)
        } else {
            Self::load_export(model, device)
        }
    }

    fn load_run(dir: &Path, device: &Device) -> Result<Self> {
        let files = RunDir::new(dir);
        let config = RunConfig::load(dir)?;
        let vocab = Vocabulary::load(&files.vocab())?;
        let model = DecoderModel::load(&files.best(), device)?;
        let (arch, sd) = load_run_backbone(dir, &config)?;
        let trunk = ResNetTrunk::from_state_dict(arch, &sd, device)?;
        let backbone = run_backbone(dir, &config);
        let split_path = files.split();
        let split = if split_path.is_file() {
            Some(DatasetSplit::load(&split_path)?)
        } else {
            None
        };
        let mut c = Self::assemble(dir, "run", backbone, trunk, model, vocab, config)?;
        c.split = split;
        Ok(c)
    }

    fn load_export(path: &Path, device: &Device) -> Result<Self> {
        let ex = read_export(path)?;
        let arch: Arch = ex.config.arch.parse()?;
        check_state_dict(path, arch, &ex.trunk)?;
        let trunk = ResNetTrunk::from_state_dict(arch, &ex.trunk, device)?;
        let tensors = ex
            .model
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(device)?)))
            .collect::<Result<_>>()?;
        let model = DecoderModel::from_tensors(&tensors).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let backbone = ex.config.backbone.clone();
        let mut c = Self::assemble(path, "export", backbone, trunk, model, ex.vocab, ex.config)?;
        c.split = ex.split;
        Ok(c)
    }

    fn assemble(
        source_path: &Path,
        source: &'static str,
        backbone: PathBuf,
        trunk: ResNetTrunk,
        model: DecoderModel,
        vocab: Vocabulary,
        config: RunConfig,
    ) -> Result<Self> {
        let mismatch = |msg: String| Error::Checkpoint {
            path: source_path.to_path_buf(),
            msg,
        };
        if model.feature_dim() != trunk.feature_dim() {
            return Err(mismatch(format!(
                "the decoder reads {}-d features, the {} trunk gives {}",
                model.feature_dim(),
                trunk.arch(),
                trunk.feature_dim()
            )));
        }
        if model.vocab_size() != vocab.len() {
            return Err(mismatch(format!(
                "the decoder has {} words, the vocabulary {}",
                model.vocab_size(),
                vocab.len()
            )));
        }
        let (embed, hidden) = match &model {
            DecoderModel::Lstm(m) => (m.decoder.embed_size(), m.decoder.hidden_size()),
            DecoderModel::Attention(d) => (d.dims().embed, d.dims().hidden),
        };
        let info = ModelInfo {
            model_file: source_path.to_path_buf(),
            source,
            arch: trunk.arch().to_string(),
            backbone: backbone
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            backbone_sha256: config.backbone_sha256.clone(),
            vocab_size: vocab.len(),
            feature_dim: trunk.feature_dim(),
            decoder: model.kind(),
            embed,
            hidden,
            precision: trunk.precision(),
        };
        Ok(Self {
            trunk,
            model,
            vocab,
            config,
            split: None,
            info,
        })
    }

    /// The same model with its trunk computing in `precision` (the decoder stays f32): bf16 needs
    /// the CPU and AMX-BF16 or AVX512-BF16, else an [`Error::Invalid`] says so.
    pub fn with_precision(self, precision: Precision) -> Result<Self> {
        self.with_precision_from(precision, crate::model::resnet::F32_STAGES_IN_BF16)
    }

    /// [`Self::with_precision`] keeping the first `f32_stages` stages of the trunk in f32 (see
    /// [`ResNetTrunk::with_precision_from`]).
    pub fn with_precision_from(self, precision: Precision, f32_stages: usize) -> Result<Self> {
        let Captioner {
            trunk,
            model,
            vocab,
            config,
            split,
            mut info,
        } = self;
        let trunk = trunk.with_precision_from(precision, f32_stages)?;
        info.precision = precision;
        Ok(Captioner {
            trunk,
            model,
            vocab,
            config,
            split,
            info,
        })
    }

    /// What the model is (sources, sizes), as `/api/info` shows it.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The vocabulary the decoder speaks.
    pub fn vocab(&self) -> &Vocabulary {
        &self.vocab
    }

    /// The training run's configuration (from `config.json` or the export's metadata).
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The training run's split by image (`split.json`, or the export's copy), if it had one.
    pub fn split(&self) -> Option<&DatasetSplit> {
        self.split.as_ref()
    }

    /// The frozen ResNet trunk.
    pub fn trunk(&self) -> &ResNetTrunk {
        &self.trunk
    }

    /// The decoder (with the LSTM decoder's head).
    pub fn model(&self) -> &DecoderModel {
        &self.model
    }

    /// Side of the square the model's images are resized to (224 unless trained otherwise).
    pub fn image_size(&self) -> usize {
        self.config.image_size
    }

    /// What the decoder reads of preprocessed images (`B` CHW planes of 3×S×S, concatenated, S =
    /// [`Captioner::image_size`]): the pooled trunk features `[B, D]` for the LSTM decoder, the
    /// feature maps `[B, P·D]` (P cells of D channels, row-major) for the attention decoder.
    pub fn encode(&self, pixels: Vec<f32>, images: usize) -> Result<Tensor> {
        let side = self.image_size();
        let x = Tensor::from_vec(pixels, (images, 3, side, side), self.trunk.device())?;
        match &self.model {
            DecoderModel::Lstm(_) => self.trunk.forward(&x),
            DecoderModel::Attention(_) => {
                let map = self.trunk.forward_map(&x)?;
                let (b, h, w, d) = map.dims4()?;
                Ok(map.reshape((b, h * w * d))?)
            }
        }
    }

    /// [`Captioner::encode`] of decoded images, preprocessed in parallel.
    fn encode_images(&self, images: &[RgbImage]) -> Result<Tensor> {
        let side = self.image_size();
        let planes: Vec<Vec<f32>> = images
            .par_iter()
            .map(|img| preprocess_sized(img, side))
            .collect();
        self.encode(planes.concat(), images.len())
    }

    /// The feature-map grid `[h, w]` of an image for the attention decoder (`None` for the LSTM
    /// decoder): the trunk halves the side five times.
    pub fn grid(&self) -> Option<[usize; 2]> {
        match &self.model {
            DecoderModel::Lstm(_) => None,
            DecoderModel::Attention(_) => {
                let mut s = self.image_size();
                for _ in 0..5 {
                    s = (s - 1) / 2 + 1;
                }
                Some([s, s])
            }
        }
    }

    /// Where the attention decoder looked for each word of `decoded[i]` on image `i` of
    /// `features` (from [`Captioner::encode`]): per caption, one row of P weights per word.
    /// `None` for the LSTM decoder.
    pub fn attention(
        &self,
        features: &Tensor,
        decoded: &[Decoded],
    ) -> Result<Option<Vec<Vec<Vec<f32>>>>> {
        let DecoderModel::Attention(dec) = &self.model else {
            return Ok(None);
        };
        let n = features.dim(0)?;
        let maps = features
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        crate::pool::in_pool(|| {
            let steps = AttentionSteps::new(dec, maps, n)?;
            decoded
                .iter()
                .enumerate()
                .map(|(i, d)| steps.attention_of(i, &d.tokens))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        })
    }

    /// Captions of decoded images with where the attention decoder looked for each word
    /// (`attention: None` for the LSTM decoder), decoded `opts.batch_size` images at a time as
    /// [`Captioner::caption_images`] does.
    pub fn caption_images_attended(
        &self,
        images: &[RgbImage],
        opts: &CaptionOptions,
    ) -> Result<Vec<Attended>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(opts.batch_size.max(1)) {
            let features = self.encode_images(chunk)?;
            let decoded = self.decode_features(&features, opts)?;
            let maps = self.attention(&features, &decoded)?;
            for (k, d) in decoded.iter().enumerate() {
                out.push(Attended {
                    caption: self.vocab.decode(&d.tokens),
                    words: d
                        .tokens
                        .iter()
                        .map(|&t| self.vocab.word(t).unwrap_or("<unk>").to_string())
                        .collect(),
                    attention: match (&maps, self.grid()) {
                        (Some(m), Some(grid)) => Some(WordAttention {
                            grid,
                            weights: m[k].clone(),
                        }),
                        _ => None,
                    },
                });
            }
        }
        Ok(out)
    }

    /// Decodes with whichever decoder the model has.
    fn search<R>(
        &self,
        features: &Tensor,
        lstm: impl FnOnce(&LstmSteps<'_>, usize) -> Result<R>,
        attention: impl FnOnce(&AttentionSteps<'_>, usize) -> Result<R>,
    ) -> Result<R> {
        let n = features.dim(0)?;
        match &self.model {
            DecoderModel::Lstm(m) => lstm(&LstmSteps::new(m, features)?, n),
            DecoderModel::Attention(d) => {
                let [h, w] = self.grid().unwrap_or([1, 1]);
                let expected = h * w * d.dims().channels;
                if features.dim(1)? != expected {
                    return Err(Error::Invalid(format!(
                        "{} values per image: the attention decoder reads {h}×{w} feature maps \
                         of {} channels ({expected} values)",
                        features.dim(1)?,
                        d.dims().channels
                    )));
                }
                let maps = features
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                attention(&AttentionSteps::new(d, maps, n)?, n)
            }
        }
    }

    /// Decodes `features [B, D]` (greedy for beam 1, else beam search) into word ids.
    pub fn decode_features(
        &self,
        features: &Tensor,
        opts: &CaptionOptions,
    ) -> Result<Vec<Decoded>> {
        let n = features.dim(0)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let beam = BeamOptions {
            beam: opts.beam,
            length_alpha: opts.length_alpha,
        };
        crate::pool::in_pool(|| {
            if opts.beam <= 1 {
                self.search(features, |s, n| greedy(s, n), |s, n| greedy(s, n))
            } else {
                self.search(
                    features,
                    |s, n| beam_search(s, n, beam),
                    |s, n| beam_search(s, n, beam),
                )
            }
        })
    }

    /// Like [`Captioner::decode_features`], with every finished caption of the beam, best first
    /// (one each for greedy decoding).
    pub fn decode_features_all(
        &self,
        features: &Tensor,
        opts: &CaptionOptions,
    ) -> Result<Vec<Vec<Decoded>>> {
        if opts.beam <= 1 {
            return Ok(self
                .decode_features(features, opts)?
                .into_iter()
                .map(|d| vec![d])
                .collect());
        }
        let n = features.dim(0)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let beam = BeamOptions {
            beam: opts.beam,
            length_alpha: opts.length_alpha,
        };
        crate::pool::in_pool(|| {
            self.search(
                features,
                |s, n| beam_search_all(s, n, beam),
                |s, n| beam_search_all(s, n, beam),
            )
        })
    }

    /// Captions of `features [N, D]`, decoded `opts.batch_size` images at a time, batches in parallel.
    pub fn caption_features(
        &self,
        features: &Tensor,
        opts: &CaptionOptions,
    ) -> Result<Vec<String>> {
        let n = features.dim(0)?;
        let size = opts.batch_size.max(1);
        let starts: Vec<usize> = (0..n).step_by(size).collect();
        let parts = starts
            .par_iter()
            .map(|&s| {
                let rows = features.narrow(0, s, size.min(n - s))?;
                self.decode_features(&rows.to_device(self.trunk.device())?, opts)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(parts
            .into_iter()
            .flatten()
            .map(|d| self.vocab.decode(&d.tokens))
            .collect())
    }

    /// Captions of decoded images, in order.
    pub fn caption_images(
        &self,
        images: &[RgbImage],
        opts: &CaptionOptions,
    ) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(opts.batch_size.max(1)) {
            let features = self.encode_images(chunk)?;
            let decoded = self.decode_features(&features, opts)?;
            out.extend(decoded.iter().map(|d| self.vocab.decode(&d.tokens)));
        }
        Ok(out)
    }

    /// Captions of image files; a file that cannot be read or decoded gets its own error and the
    /// others go on. Results are in the order of `paths`.
    pub fn caption_paths(&self, paths: &[PathBuf], opts: &CaptionOptions) -> Vec<Result<String>> {
        let mut out: Vec<Option<Result<String>>> = (0..paths.len()).map(|_| None).collect();
        self.caption_paths_each(paths, opts, |i, r| out[i] = Some(r));
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("image was not captioned".into()))))
            .collect()
    }

    /// Like [`Captioner::caption_paths`], handing each result to `each(index, result)` as soon as its
    /// batch is done (in order). The next batch is read and preprocessed on other threads while the
    /// network runs on the current one.
    pub fn caption_paths_each(
        &self,
        paths: &[PathBuf],
        opts: &CaptionOptions,
        mut each: impl FnMut(usize, Result<String>),
    ) {
        self.caption_paths_all_each(paths, opts, |i, r| {
            each(i, r.map(|all| all.into_iter().next().unwrap_or_default()))
        });
    }

    /// Like [`Captioner::caption_paths_each`], with every different caption the beam finished,
    /// best first: the first is the caption, the others are the beam's alternatives (none for
    /// greedy decoding).
    pub fn caption_paths_all_each(
        &self,
        paths: &[PathBuf],
        opts: &CaptionOptions,
        mut each: impl FnMut(usize, Result<Vec<String>>),
    ) {
        let size = opts.batch_size.max(1);
        let side = self.image_size();
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Result<Vec<f32>>>)>(1);
        std::thread::scope(|s| {
            s.spawn(move || {
                for (b, chunk) in paths.chunks(size).enumerate() {
                    let pixels = chunk
                        .par_iter()
                        .map(|p| preprocess_file_sized(p, side))
                        .collect();
                    if tx.send((b * size, pixels)).is_err() {
                        return;
                    }
                }
            });
            for (first, pixels) in rx {
                let mut ok = Vec::new();
                let mut data = Vec::new();
                let mut results: Vec<Option<Result<Vec<String>>>> =
                    Vec::with_capacity(pixels.len());
                for (k, px) in pixels.into_iter().enumerate() {
                    match px {
                        Ok(px) => {
                            ok.push(k);
                            data.extend_from_slice(&px);
                            results.push(None);
                        }
                        Err(e) => results.push(Some(Err(e))),
                    }
                }
                if !ok.is_empty() {
                    let captions = self
                        .encode(data, ok.len())
                        .and_then(|f| self.decode_features_all(&f, opts));
                    match captions {
                        Ok(decoded) => {
                            for (&k, all) in ok.iter().zip(decoded) {
                                let mut texts: Vec<String> = Vec::with_capacity(all.len());
                                for d in &all {
                                    let text = self.vocab.decode(&d.tokens);
                                    if !texts.contains(&text) {
                                        texts.push(text);
                                    }
                                }
                                if texts.is_empty() {
                                    texts.push(String::new());
                                }
                                results[k] = Some(Ok(texts));
                            }
                        }
                        // The model failed, not the images: an internal error for each of them.
                        Err(e) => {
                            let msg = e.to_string();
                            for &k in &ok {
                                results[k] = Some(Err(Error::Internal(format!(
                                    "captioning {} failed: {msg}",
                                    paths[first + k].display()
                                ))));
                            }
                        }
                    }
                }
                for (k, r) in results.into_iter().enumerate() {
                    let r =
                        r.unwrap_or_else(|| Err(Error::Internal("image was not captioned".into())));
                    each(first + k, r);
                }
            }
        });
    }

    /// Captions of several encoded images at once (the server's batches): each is decoded on its
    /// own (a bad one gets its own error), then the good ones go through the trunk together and
    /// through the decoder in groups of up to 8 rows. Each caption is the one
    /// [`Captioner::caption_bytes`] gives for that image alone: no row of that arithmetic depends
    /// on the other rows of its batch.
    pub fn caption_bytes_batch(
        &self,
        images: &[&[u8]],
        opts: &CaptionOptions,
    ) -> Vec<Result<String>> {
        let decoded: Vec<Result<RgbImage>> = images
            .par_iter()
            .map(|bytes| decode_rgb(bytes, Path::new("upload")))
            .collect();
        let mut results: Vec<Option<Result<String>>> = Vec::with_capacity(images.len());
        let mut good = Vec::new();
        let mut slots = Vec::new();
        for (k, d) in decoded.into_iter().enumerate() {
            match d {
                Ok(img) => {
                    good.push(img);
                    slots.push(k);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !good.is_empty() {
            match self.caption_decoded_together(&good, opts) {
                Ok(captions) if captions.len() == good.len() => {
                    for (&k, c) in slots.iter().zip(captions) {
                        results[k] = Some(Ok(c));
                    }
                }
                Ok(captions) => {
                    let msg = format!(
                        "{} captions came back for {} images",
                        captions.len(),
                        good.len()
                    );
                    for &k in &slots {
                        results[k] = Some(Err(Error::Internal(msg.clone())));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for &k in &slots {
                        results[k] =
                            Some(Err(Error::Internal(format!("captioning failed: {msg}"))));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("image was not captioned".into()))))
            .collect()
    }

    /// Captions of decoded images, as each alone would get: one trunk pass over all of them (a
    /// row of the trunk does not depend on the others), then decoding in groups whose rows (images
    /// × beam) stay within the decoder's few-rows kernel, whose arithmetic per row is the one a
    /// lone caption gets. A larger matrix product would sum in another order.
    fn caption_decoded_together(
        &self,
        images: &[RgbImage],
        opts: &CaptionOptions,
    ) -> Result<Vec<String>> {
        let features = self.encode_images(images)?;
        let group = (FEW_ROWS / opts.beam.max(1)).max(1);
        let mut out = Vec::with_capacity(images.len());
        for start in (0..images.len()).step_by(group) {
            let rows = features.narrow(0, start, group.min(images.len() - start))?;
            let decoded = self.decode_features(&rows, opts)?;
            out.extend(decoded.iter().map(|d| self.vocab.decode(&d.tokens)));
        }
        Ok(out)
    }

    /// Caption of an encoded image (any supported format, recognised by content; the pixel limit
    /// holds).
    pub fn caption_bytes(&self, bytes: &[u8], opts: &CaptionOptions) -> Result<String> {
        let image = decode_rgb(bytes, Path::new("upload"))?;
        self.caption_images(std::slice::from_ref(&image), opts)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("no caption came back".into()))
    }
}
