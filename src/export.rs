//! The self-contained model file (`captioner export`): one `.safetensors` holding the backbone's
//! torchvision tensors (`trunk.*`), the head (`encoder.*`) and the decoder (`decoder.*`), with the
//! vocabulary, the run's configuration and its split as JSON in its metadata — all that `caption` and `serve` need.

use crate::data::DatasetSplit;
use crate::model::resnet::{check_state_dict, Arch};
use crate::model::state_dict::MappedSafetensors;
use crate::model::weights::{load_state_dict, sha256_file};
use crate::model::DecoderModel;
use crate::run::{RunConfig, RunDir};
use crate::text::Vocabulary;
use crate::{fsutil, Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Value of the `format` metadata key of an exported model.
pub const EXPORT_FORMAT: &str = "captioner-model-v1";
/// Prefix of the backbone's tensors in an exported model.
pub const TRUNK_PREFIX: &str = "trunk.";

/// An exported model, read back: tensors split by part, vocabulary and configuration.
#[derive(Debug)]
pub struct ExportedModel {
    /// The backbone's state_dict under its torchvision names (prefix removed), mapped from the
    /// file and read tensor by tensor.
    pub trunk: MappedSafetensors,
    /// Head and decoder tensors under their checkpoint names (`encoder.*`, `decoder.*`).
    pub model: HashMap<String, Tensor>,
    /// The decoder's vocabulary.
    pub vocab: Vocabulary,
    /// The run's configuration.
    pub config: RunConfig,
    /// The run's split by image, when the run had one (so `eval` scores the run's own test images).
    pub split: Option<DatasetSplit>,
}

/// What [`export_run`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Tensors in it.
    pub tensors: usize,
    /// The trunk's architecture.
    pub arch: Arch,
    /// Words in the vocabulary.
    pub vocab_size: usize,
}

/// The backbone file of a run: as recorded, or beside the run directory when it was moved with it.
pub fn run_backbone(run_dir: &Path, cfg: &RunConfig) -> PathBuf {
    if cfg.backbone.is_file() {
        return cfg.backbone.clone();
    }
    match cfg.backbone.file_name() {
        Some(name) if run_dir.join(name).is_file() => run_dir.join(name),
        _ => cfg.backbone.clone(),
    }
}

/// Loads the run's backbone state_dict, refusing a file whose sha256 is not the one it was trained with.
pub fn load_run_backbone(
    run_dir: &Path,
    cfg: &RunConfig,
) -> Result<(Arch, HashMap<String, Tensor>)> {
    let arch: Arch = cfg.arch.parse()?;
    let path = run_backbone(run_dir, cfg);
    let sha = sha256_file(&path)?;
    if sha != cfg.backbone_sha256 {
        return Err(Error::Weights {
            path,
            msg: format!(
                "sha256 is {sha}, but the run in {} was trained with a backbone whose sha256 is {}",
                run_dir.display(),
                cfg.backbone_sha256
            ),
        });
    }
    let sd = load_state_dict(&path)?;
    check_state_dict(&path, arch, &sd)?;
    Ok((arch, sd))
}

/// Writes the run in `run_dir` (its best weights, backbone, vocabulary, configuration) as one file, atomically.
/// The backbone's `fc.*` is left out: captioning never uses it.
pub fn export_run(run_dir: &Path, out: &Path) -> Result<ExportSummary> {
    let files = RunDir::new(run_dir);
    let cfg = RunConfig::load(run_dir)?;
    let vocab = Vocabulary::load(&files.vocab())?;
    let model = DecoderModel::load(&files.best(), &Device::Cpu)?;
    if model.vocab_size() != vocab.len() {
        return Err(Error::Checkpoint {
            path: files.best(),
            msg: format!(
                "decoder has {} words, {} has {}",
                model.vocab_size(),
                files.vocab().display(),
                vocab.len()
            ),
        });
    }
    let (arch, trunk) = load_run_backbone(run_dir, &cfg)?;
    let mut tensors: Vec<(String, Tensor)> = trunk
        .into_iter()
        .filter(|(name, _)| !name.starts_with("fc."))
        .map(|(name, t)| (format!("{TRUNK_PREFIX}{name}"), t))
        .collect();
    tensors.extend(model.tensors()?);
    let mut metadata = HashMap::from([
        ("format".to_string(), EXPORT_FORMAT.to_string()),
        ("vocab".to_string(), to_json(&vocab)?),
        ("config".to_string(), to_json(&cfg)?),
    ]);
    let split_path = files.split();
    if split_path.is_file() {
        metadata.insert("split".into(), to_json(&DatasetSplit::load(&split_path)?)?);
    }
    let count = tensors.len();
    // candle's `View` for `&Tensor` gives each tensor's bytes as the file is written, so the
    // whole model is never copied in memory at once.
    let views = tensors.iter().map(|(name, t)| (name, t));
    fsutil::write_atomic_with(out, |tmp| {
        safetensors::serialize_to_file(views, Some(metadata), tmp).map_err(|e| Error::Checkpoint {
            path: out.to_path_buf(),
            msg: format!("writing the model: {e}"),
        })
    })?;
    let bytes = std::fs::metadata(out).map_err(|e| Error::io(out, e))?.len();
    Ok(ExportSummary {
        path: out.to_path_buf(),
        bytes,
        tensors: count,
        arch,
        vocab_size: vocab.len(),
    })
}

/// Reads a file written by [`export_run`].
pub fn read_export(path: &Path) -> Result<ExportedModel> {
    let file = MappedSafetensors::open(path).map_err(|e| match e {
        // A model file, not a backbone: the same message under the model file's error kind.
        Error::Weights { msg, .. } => Error::format(path, msg),
        e => e,
    })?;
    let meta = file.metadata();
    if meta.get("format").map(String::as_str) != Some(EXPORT_FORMAT) {
        return Err(Error::format(
            path,
            format!(
                "not a captioner model (metadata format is {:?}, expected {EXPORT_FORMAT:?}): \
                 pass a run directory or a file written by `captioner export`",
                meta.get("format")
            ),
        ));
    }
    let field = |key: &str| {
        meta.get(key)
            .ok_or_else(|| Error::format(path, format!("metadata has no {key:?}")))
    };
    let vocab: Vocabulary = serde_json::from_str(field("vocab")?)
        .map_err(|e| Error::format(path, format!("metadata vocab: {e}")))?;
    let config: RunConfig = serde_json::from_str(field("config")?)
        .map_err(|e| Error::format(path, format!("metadata config: {e}")))?;
    let split: Option<DatasetSplit> = match meta.get("split") {
        Some(s) => Some(
            serde_json::from_str(s)
                .map_err(|e| Error::format(path, format!("metadata split: {e}")))?,
        ),
        None => None,
    };
    // The head and decoder are read now; the trunk's tensors as the trunk folds them.
    let model = file.load_where(|n| !n.starts_with(TRUNK_PREFIX))?;
    let trunk = file.with_prefix(TRUNK_PREFIX);
    Ok(ExportedModel {
        trunk,
        model,
        vocab,
        config,
        split,
    })
}

/// A value as a JSON string, for the metadata.
fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(format!("cannot serialise metadata: {e}")))
}
