//! Checks a loaded state_dict against an architecture before anything is built from it, so a
//! wrong file fails with the names that differ instead of a shape error deep in the network.

use super::Arch;
use crate::{Error, Result};
use candle_core::Tensor;
use std::collections::{HashMap, HashSet};
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

fn compare(arch: Arch, sd: &HashMap<String, Tensor>) -> Mismatch {
    let expected = arch.param_shapes();
    let names: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut m = Mismatch::default();
    for (name, shape) in &expected {
        match sd.get(name) {
            // fc may be missing or sized for another number of classes: it is not used.
            None if name.starts_with("fc.") => {}
            None => m.missing.push(name.clone()),
            Some(_) if name.starts_with("fc.") => {}
            Some(t) if t.dims() != shape.as_slice() => {
                m.shapes
                    .push(format!("{name}: file {:?}, {arch} {:?}", t.dims(), shape))
            }
            Some(_) => {}
        }
    }
    if let (Some(w), Some(b)) = (sd.get("fc.weight"), sd.get("fc.bias")) {
        let ok = w.rank() == 2 && w.dims()[1] == arch.feature_dim() && b.dims() == [w.dims()[0]];
        if !ok {
            m.shapes.push(format!(
                "fc: file weight {:?} bias {:?}, {arch} wants [n, {}] and [n]",
                w.dims(),
                b.dims(),
                arch.feature_dim()
            ));
        }
    }
    let mut unexpected: Vec<String> = sd
        .keys()
        .filter(|k| !names.contains(k.as_str()) && !k.ends_with("num_batches_tracked"))
        .cloned()
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
pub fn check_state_dict(path: &Path, arch: Arch, sd: &HashMap<String, Tensor>) -> Result<()> {
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
