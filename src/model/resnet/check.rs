//! Checks a loaded state_dict against an architecture before anything is built from it, so a
//! wrong file fails with the names that differ instead of a shape error deep in the network.

use super::Arch;
use crate::model::state_dict::TensorSource;
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// How many names of each kind an error message lists.
const SHOWN: usize = 5;

/// Differences between a state_dict and what `arch` expects (empty when it fits).
#[derive(Debug, Default)]
struct Mismatch {
    missing: Vec<String>,
    unexpected: Vec<String>,
    shapes: Vec<String>,
}

impl Mismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shapes.is_empty()
    }
}

fn compare(arch: Arch, sd: &dyn TensorSource) -> Mismatch {
    let expected = arch.param_shapes();
    let names: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut m = Mismatch::default();
    for (name, shape) in &expected {
        match sd.dims(name) {
            // fc may be missing or sized for another number of classes: it is not used.
            None if name.starts_with("fc.") => {}
            None => m.missing.push(name.clone()),
            Some(_) if name.starts_with("fc.") => {}
            Some(dims) if dims != *shape => m
                .shapes
                .push(format!("{name}: file {dims:?}, {arch} {shape:?}")),
            Some(_) => {}
        }
    }
    if let (Some(w), Some(b)) = (sd.dims("fc.weight"), sd.dims("fc.bias")) {
        let ok = w.len() == 2 && w[1] == arch.feature_dim() && b == [w[0]];
        if !ok {
            m.shapes.push(format!(
                "fc: file weight {w:?} bias {b:?}, {arch} wants [n, {}] and [n]",
                arch.feature_dim()
            ));
        }
    }
    let mut unexpected: Vec<String> = sd
        .names()
        .into_iter()
        .filter(|k| !names.contains(k.as_str()) && !k.ends_with("num_batches_tracked"))
        .collect();
    unexpected.sort();
    m.unexpected = unexpected;
    m
}

fn list(v: &[String]) -> String {
    let mut s = v.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > SHOWN {
        s.push_str(&format!(", ... ({} in all)", v.len()));
    }
    s
}

/// Fails with [`Error::Weights`] naming the first missing and unexpected keys and shape
/// mismatches, and which architecture the file does fit, if any.
pub fn check_state_dict(path: &Path, arch: Arch, sd: &dyn TensorSource) -> Result<()> {
    let m = compare(arch, sd);
    if m.is_empty() {
        return Ok(());
    }
    let mut msg = format!("not {arch} weights:");
    if !m.missing.is_empty() {
        msg.push_str(&format!(" missing {}.", list(&m.missing)));
    }
    if !m.unexpected.is_empty() {
        msg.push_str(&format!(" unexpected {}.", list(&m.unexpected)));
    }
    if !m.shapes.is_empty() {
        msg.push_str(&format!(" shape mismatch {}.", list(&m.shapes)));
    }
    if let Some(fits) = Arch::ALL.into_iter().find(|a| compare(*a, sd).is_empty()) {
        msg.push_str(&format!(
            " The file holds {fits} weights (use --arch {fits})."
        ));
    }
    Err(Error::Weights {
        path: path.to_path_buf(),
        msg,
    })
}
