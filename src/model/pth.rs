//! Reads PyTorch `torch.save` zip checkpoints (state_dicts) without trusting them: the pickle is
//! parsed by candle's pickle machine (which never calls anything), and every GLOBAL it names must
//! be on a short allowlist of tensor-rebuilding functions, or the file is refused.

use crate::{Error, Result};
use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

/// GLOBALs a state_dict needs; anything else (`os.system`, `builtins.eval`, ...) is refused.
const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "DoubleStorage"),
    ("torch", "LongStorage"),
    ("torch", "ByteStorage"),
];

/// Largest pickle we parse: a state_dict's pickle is kilobytes; the tensors live beside it.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Largest storage (one tensor's bytes) we read: a ResNet's largest is 8 MiB (fc of ResNet-50).
const MAX_STORAGE_BYTES: u64 = 1 << 30;

fn weights_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// A tensor described by the pickle: its storage entry in the zip, dtype, shape and strides.
struct TensorRef {
    name: String,
    storage: String,
    dtype: DType,
    storage_len: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Loads every tensor of a torch zip checkpoint, with the dtype it was saved in.
pub fn load_pth(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        weights_err(
            path,
            format!("not a readable PyTorch zip checkpoint (truncated or corrupt?): {e}"),
        )
    })?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| weights_err(path, "zip archive has no data.pkl: not a torch.save file"))?;
    let dir = pkl_name.trim_end_matches("data.pkl").to_string();
    let root = {
        let entry = zip
            .by_name(&pkl_name)
            .map_err(|e| weights_err(path, format!("{pkl_name}: {e}")))?;
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(weights_err(path, format!("{pkl_name} is too large")));
        }
        // Read whole (the declared size may lie), so each op's lengths can be checked against
        // what is really there before candle acts on them.
        let mut pickle = Vec::new();
        entry
            .take(MAX_PICKLE_BYTES + 1)
            .read_to_end(&mut pickle)
            .map_err(|e| weights_err(path, format!("reading {pkl_name}: {e}")))?;
        if pickle.len() as u64 > MAX_PICKLE_BYTES {
            return Err(weights_err(path, format!("{pkl_name} is too large")));
        }
        parse_pickle(path, &pickle)?
    };
    let refs = tensor_refs(path, root)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = HashMap::with_capacity(refs.len());
    for r in refs {
        if !storages.contains_key(&r.storage) {
            let entry_name = format!("{dir}data/{}", r.storage);
            let entry = zip.by_name(&entry_name).map_err(|e| {
                weights_err(
                    path,
                    format!("tensor {}: storage {entry_name}: {e}", r.name),
                )
            })?;
            let want = r
                .storage_len
                .checked_mul(r.dtype.size_in_bytes())
                .filter(|&n| n as u64 <= MAX_STORAGE_BYTES)
                .ok_or_else(|| {
                    weights_err(
                        path,
                        format!(
                            "tensor {}: storage {entry_name} declares {} elements, more than a \
                             weights file holds",
                            r.name, r.storage_len
                        ),
                    )
                })?;
            if entry.size() != want as u64 {
                return Err(weights_err(
                    path,
                    format!(
                        "tensor {}: storage {entry_name} has {} bytes, expected {want}",
                        r.name,
                        entry.size()
                    ),
                ));
            }
            // The declared size is the zip's word only: memory grows with what really inflates.
            let mut bytes = Vec::new();
            entry
                .take(want as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| {
                    weights_err(path, format!("reading {entry_name} (truncated file?): {e}"))
                })?;
            if bytes.len() != want {
                return Err(weights_err(
                    path,
                    format!(
                        "reading {entry_name}: {} bytes, expected {want}",
                        bytes.len()
                    ),
                ));
            }
            storages.insert(r.storage.clone(), bytes);
        }
        let bytes = &storages[&r.storage];
        // Two tensors may share a storage; each must describe it alike.
        if bytes.len() as u128 != r.storage_len as u128 * r.dtype.size_in_bytes() as u128 {
            return Err(weights_err(
                path,
                format!(
                    "tensor {}: storage {} is {} bytes, but this tensor says {} of {:?}",
                    r.name,
                    r.storage,
                    bytes.len(),
                    r.storage_len,
                    r.dtype
                ),
            ));
        }
        let t = strided_tensor(path, &r, bytes)?;
        out.insert(r.name, t);
    }
    Ok(out)
}

/// Runs the pickle machine op by op; a GLOBAL always lands on top of the stack, so checking the
/// top after each op catches every one before anything could refer to it. Each op is checked
/// first by [`check_op`].
fn parse_pickle(path: &Path, pickle: &[u8]) -> Result<Object> {
    let mut r = pickle;
    let mut stack = Stack::empty();
    let mut shapes = Shapes::new(pickle.len());
    loop {
        check_op(r).map_err(|m| weights_err(path, format!("corrupt pickle: {m}")))?;
        let op = OpShape::of(r);
        let before = stack.stack().len();
        let done = stack
            .read(&mut r)
            .map_err(|e| weights_err(path, format!("unsupported or corrupt pickle: {e}")))?;
        shapes
            .after(op, before, stack.stack().len())
            .map_err(|m| weights_err(path, format!("refusing the pickle: {m}")))?;
        if let Some(Object::Class {
            module_name,
            class_name,
        }) = stack.stack().last()
        {
            let ok = ALLOWED_GLOBALS
                .iter()
                .any(|(m, c)| m == module_name && c == class_name);
            if !ok {
                return Err(weights_err(
                    path,
                    format!(
                        "refusing to load: the pickle references {module_name}.{class_name}, \
                         which is not a tensor-rebuilding function (a state_dict never needs it)"
                    ),
                ));
            }
        }
        if done {
            break;
        }
    }
    stack
        .finalize()
        .map_err(|e| weights_err(path, format!("corrupt pickle: {e}")))
}

/// Deepest nesting a pickle may build: a state_dict is a few levels deep (dict, tensor, its
/// arguments, a tuple of sizes). A hostile pickle nests a million tuples in a kilobyte of
/// deflated zip, and dropping (or printing) that recurses until the stack overflows.
const MAX_PICKLE_DEPTH: u32 = 64;

/// What an op does to the shape of candle's stack, read from its opcode (and memo index).
#[derive(Clone, Copy)]
enum OpShape {
    /// Pops its parts and pushes a container of them (TUPLE*, REDUCE, NEWOBJ, BUILD, BINPERSID).
    Wraps,
    /// Pops items into the list or dict below them (APPEND(S), SETITEM(S)).
    Fills,
    /// Pushes a copy of a memo entry (BINGET, LONG_BINGET).
    Get(Option<u32>),
    /// Copies the top into the memo (BINPUT, LONG_BINPUT).
    Put(Option<u32>),
    /// Anything else: pushes at most one fresh leaf.
    Leaf,
}

impl OpShape {
    fn of(rest: &[u8]) -> Self {
        let arg = |wide: bool| {
            if wide {
                rest.get(1..5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            } else {
                rest.get(1).map(|&b| u32::from(b))
            }
        };
        match rest.first() {
            Some(b't' | 0x85 | 0x86 | 0x87 | b'R' | 0x81 | b'b' | b'Q') => Self::Wraps,
            Some(b'a' | b'e' | b's' | b'u') => Self::Fills,
            Some(b'h') => Self::Get(arg(false)),
            Some(b'j') => Self::Get(arg(true)),
            Some(b'q') => Self::Put(arg(false)),
            Some(b'r') => Self::Put(arg(true)),
            _ => Self::Leaf,
        }
    }
}

/// Depth and size (in objects) of each entry of candle's stack and memo, followed op by op, so
/// that a pickle is refused as soon as it nests deeper than [`MAX_PICKLE_DEPTH`] or its memo
/// copies (each BINPUT and BINGET clones a whole object) add up to more than its length could
/// honestly need: a few ops that get and put an object twice its size each time would
/// otherwise take memory exponential in the pickle's length.
struct Shapes {
    stack: Vec<(u32, u64)>,
    memo: HashMap<u32, (u32, u64)>,
    copied: u64,
    copy_budget: u64,
}

impl Shapes {
    fn new(pickle_len: usize) -> Self {
        Self {
            stack: Vec::new(),
            memo: HashMap::new(),
            copied: 0,
            copy_budget: (1 << 20) + 16 * pickle_len as u64,
        }
    }

    /// Follows `op`, which took candle's stack from `before` entries to `after`.
    fn after(
        &mut self,
        op: OpShape,
        before: usize,
        after: usize,
    ) -> std::result::Result<(), String> {
        self.stack.resize(before, (1, 1));
        let from = after.saturating_sub(1).min(before);
        let total = |s: &[(u32, u64)]| {
            s.iter().fold((0u32, 0u64), |(d, n), &(d2, n2)| {
                (d.max(d2), n.saturating_add(n2))
            })
        };
        match op {
            OpShape::Wraps => {
                let (d, n) = total(&self.stack[from..]);
                self.stack.truncate(from);
                self.stack.push((d + 1, n.saturating_add(1)));
            }
            OpShape::Fills if from < before => {
                let (cd, cn) = self.stack[from];
                let (d, n) = total(&self.stack[from + 1..]);
                self.stack.truncate(from);
                self.stack.push((cd.max(d + 1), cn.saturating_add(n)));
            }
            OpShape::Get(id) => {
                let shape = id
                    .and_then(|id| self.memo.get(&id).copied())
                    .unwrap_or((1, 1));
                self.copied = self.copied.saturating_add(shape.1);
                self.stack.push(shape);
            }
            OpShape::Put(Some(id)) => {
                if let Some(&shape) = self.stack.last() {
                    self.copied = self.copied.saturating_add(shape.1);
                    self.memo.insert(id, shape);
                }
            }
            _ => {
                if after > before {
                    self.stack.push((1, 1));
                }
            }
        }
        self.stack.resize(after, (1, 1));
        if let Some(&(depth, _)) = self.stack.last() {
            if depth > MAX_PICKLE_DEPTH {
                return Err(format!(
                    "it nests objects deeper than {MAX_PICKLE_DEPTH} levels"
                ));
            }
        }
        if self.copied > self.copy_budget {
            return Err("its memo copies add up to more than a state_dict needs".into());
        }
        Ok(())
    }
}

/// Refuses the op at the start of `rest` if candle would act on a length the pickle does not
/// hold: BINUNICODE allocates its declared length (up to 4 GiB) before reading a byte; LONG1
/// shifts each of its bytes into an i64, past bit 63 from the ninth on.
fn check_op(rest: &[u8]) -> std::result::Result<(), String> {
    match rest {
        [b'X', a, b, c, d, tail @ ..] => {
            let len = u32::from_le_bytes([*a, *b, *c, *d]);
            if len as usize > tail.len() {
                return Err(format!(
                    "a string of {len} bytes runs past the end of the pickle"
                ));
            }
        }
        [0x8a, n, ..] if *n > 8 => {
            return Err(format!("a {n}-byte integer (at most 8 fit)"));
        }
        _ => {}
    }
    Ok(())
}

/// Finds the state_dict (the top-level dict, or its `state_dict` entry) and its tensors.
fn tensor_refs(path: &Path, root: Object) -> Result<Vec<TensorRef>> {
    let entries = match root {
        Object::Dict(d) => d,
        Object::Build { callable, args } => match (*callable, *args) {
            (Object::Dict(d), _) => d,
            _ => return Err(weights_err(path, "pickle does not hold a state_dict")),
        },
        _ => return Err(weights_err(path, "pickle does not hold a state_dict")),
    };
    let entries = match entries
        .iter()
        .position(|(k, _)| matches!(k, Object::Unicode(s) if s == "state_dict"))
    {
        Some(i) => match entries.into_iter().nth(i) {
            Some((_, Object::Dict(d))) => d,
            _ => return Err(weights_err(path, "`state_dict` entry is not a dict")),
        },
        None => entries,
    };
    let mut refs = Vec::new();
    for (k, v) in entries {
        let Object::Unicode(name) = k else { continue };
        if let Some(r) = tensor_ref(v).map_err(|m| weights_err(path, format!("{name}: {m}")))? {
            refs.push(TensorRef { name, ..r });
        }
    }
    Ok(refs)
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, possibly inside
/// `_rebuild_parameter(tensor, ...)`; other values (e.g. `_metadata`) are not tensors.
fn tensor_ref(v: Object) -> std::result::Result<Option<TensorRef>, String> {
    let Object::Reduce { callable, args } = v else {
        return Ok(None);
    };
    let (callable, args) = match (*callable, *args) {
        (Object::Class { class_name, .. }, Object::Tuple(mut a))
            if class_name == "_rebuild_parameter" && !a.is_empty() =>
        {
            match a.swap_remove(0) {
                Object::Reduce { callable, args } => (*callable, *args),
                _ => return Ok(None),
            }
        }
        (c, a) => (c, a),
    };
    match callable {
        Object::Class { class_name, .. } if class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let Object::Tuple(a) = args else {
        return Err("bad _rebuild_tensor_v2 arguments".into());
    };
    if a.len() < 4 {
        return Err("bad _rebuild_tensor_v2 arguments".into());
    }
    let ints = |o: &Object| -> std::result::Result<Vec<usize>, String> {
        match o {
            Object::Tuple(v) => v.iter().map(as_usize).collect(),
            _ => Err("expected a tuple of ints".into()),
        }
    };
    let offset = as_usize(&a[1])?;
    let shape = ints(&a[2])?;
    let stride = ints(&a[3])?;
    let Object::PersistentLoad(pid) = &a[0] else {
        return Err("tensor storage is not a persistent id".into());
    };
    let Object::Tuple(pid) = pid.as_ref() else {
        return Err("bad persistent id".into());
    };
    if pid.len() < 5 {
        return Err("bad persistent id".into());
    }
    let dtype = match &pid[1] {
        Object::Class { class_name, .. } => match class_name.as_str() {
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "ByteStorage" => DType::U8,
            other => return Err(format!("unsupported storage type {other}")),
        },
        _ => return Err("bad storage type".into()),
    };
    let Object::Unicode(storage) = &pid[2] else {
        return Err("bad storage key".into());
    };
    if storage.contains('/') || storage.contains("..") {
        return Err(format!("bad storage key {storage:?}"));
    }
    Ok(Some(TensorRef {
        name: String::new(),
        storage: storage.clone(),
        dtype,
        storage_len: as_usize(&pid[4])?,
        offset,
        shape,
        stride,
    }))
}

fn as_usize(o: &Object) -> std::result::Result<usize, String> {
    match o {
        Object::Int(i) if *i >= 0 => Ok(*i as usize),
        Object::Long(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!("expected a non-negative int, got {other:?}")),
    }
}

/// Copies the (possibly strided) elements out of the storage bytes into a contiguous tensor,
/// checking every index stays inside the storage.
fn strided_tensor(path: &Path, r: &TensorRef, bytes: &[u8]) -> Result<Tensor> {
    let bad = |m: &str| weights_err(path, format!("tensor {}: {m}", r.name));
    if r.shape.len() != r.stride.len() {
        return Err(bad("shape and stride differ in rank"));
    }
    let es = r.dtype.size_in_bytes();
    let numel = r
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad("its size overflows"))?;
    let last = r
        .shape
        .iter()
        .zip(&r.stride)
        .try_fold(r.offset, |at, (&n, &s)| {
            n.saturating_sub(1)
                .checked_mul(s)
                .and_then(|x| at.checked_add(x))
        });
    if numel > 0 && last.is_none_or(|last| last >= r.storage_len) {
        return Err(bad("extends past the end of its storage"));
    }
    // A zero or overlapping stride repeats elements: a tensor of 2^31 elements over a storage
    // of one. A state_dict's tensors never hold more elements than their storage, and refusing
    // those that do keeps memory within what the file holds.
    if numel > r.storage_len {
        return Err(bad(&format!(
            "has {numel} elements, more than its storage's {}",
            r.storage_len
        )));
    }
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (&n, &s) in r.shape.iter().zip(&r.stride).rev() {
            if n > 1 && s != expect {
                ok = false;
            }
            expect = expect.saturating_mul(n);
        }
        ok
    };
    let data: Vec<u8> = if numel == 0 {
        Vec::new()
    } else if contiguous {
        bytes[r.offset * es..(r.offset + numel) * es].to_vec()
    } else {
        let mut out = Vec::with_capacity(numel * es);
        let mut idx = vec![0usize; r.shape.len()];
        for _ in 0..numel {
            let at = r.offset + idx.iter().zip(&r.stride).map(|(i, s)| i * s).sum::<usize>();
            out.extend_from_slice(&bytes[at * es..(at + 1) * es]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < r.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    };
    Ok(Tensor::from_raw_buffer(
        &data,
        r.dtype,
        &r.shape,
        &Device::Cpu,
    )?)
}
