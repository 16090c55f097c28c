//! Reader for LPIPS-style linear-layer weights ("lin" taps).
//!
//! LPIPS and E-LPIPS weight every feature channel of every network tap with a
//! non-negative scalar, stored as a 1x1 convolution `lin{i}.model.1.weight`.
//! This module reads those weights, without Python, from:
//!
//! * **E-LPIPS `.npy` files** (`vgg_full_avg.npy`, `vgg_maxpool.npy`, ...):
//!   `np.save` of a Python dict, i.e. a 0-d object array whose payload is a
//!   pickle of `{"lin{i}.model.1.weight": ndarray[1, 1, C, 1]}`.
//! * **LPIPS `.pth` files**, legacy (non-zip) torch serialization, as shipped in
//!   the `lpips` pip package (`lpips/weights/v0.1/vgg.pth`, ...): a sequence of
//!   pickles (magic number, protocol version, sys info, the state dict, the
//!   storage keys) followed by the raw storages.
//! * **PyTorch zip checkpoints** (`torch.save` default since torch 1.6), as
//!   long as the entries are stored uncompressed, which is what torch writes.
//! * A bare pickle (protocol 2-5) of such a dict.
//!
//! Everything goes through a small pickle virtual machine that builds a
//! generic object graph (globals, reduce calls, dicts, ...) without executing
//! anything; the numpy and torch objects are then recognised in that graph.
//! Malformed input never panics: all reads are bounds-checked, the object
//! count is capped, and decoded data is bounded by the size of the input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Per-tap linear weights, in tap order (`lin0`, `lin1`, ...). Each `Vec` has the
/// tap's channel count.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearWeights {
    pub taps: Vec<Vec<f32>>,
}

/// Why linear weights could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LinearWeightsError {
    /// The file could not be read (the message leaves the path to the caller,
    /// who usually prefixes it; it is in `path`).
    #[error("cannot read the linear weights file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "unrecognized linear weights format (file starts with {prefix}): expected a NumPy .npy \
         file holding a pickled dict (E-LPIPS), a PyTorch .pth state dict (LPIPS) or a pickle"
    )]
    UnknownFormat { prefix: String },
    #[error("unsupported linear weights file: {0}")]
    Unsupported(String),
    #[error("malformed .npy file: {0}")]
    Npy(String),
    #[error("malformed PyTorch file: {0}")]
    Torch(String),
    #[error("malformed zip archive: {0}")]
    Zip(String),
    #[error("malformed pickle data at byte offset {offset}: {message}")]
    Pickle { offset: usize, message: String },
    #[error("unsupported pickle opcode 0x{opcode:02x} ({name}) at byte offset {offset}")]
    UnsupportedOpcode {
        opcode: u8,
        name: &'static str,
        offset: usize,
    },
    #[error("unexpected structure in {context}: expected {expected}, found {found}")]
    Structure {
        context: String,
        expected: String,
        found: String,
    },
    #[error(
        "no linear-layer weights found: expected keys like `lin0.model.1.weight` (found keys: {found})"
    )]
    NoTaps { found: String },
    #[error(
        "missing key `lin{index}.model.1.weight`: tap indices must run from 0 without gaps \
         (found taps {found:?})"
    )]
    MissingTap { index: usize, found: Vec<usize> },
    #[error("tap {index} is given twice: `{first}` and `{second}`")]
    DuplicateTap {
        index: usize,
        first: String,
        second: String,
    },
    #[error(
        "unexpected key `{key}`: only `lin<i>.model.1.weight` weights (1x1 convolutions without \
         bias) are supported"
    )]
    UnexpectedKey { key: String },
    #[error(
        "`{key}` has shape {shape:?}: expected a single channel axis, such as [1, C, 1, 1] or \
         [1, 1, C, 1] with C >= 1"
    )]
    BadShape { key: String, shape: Vec<i64> },
    #[error(
        "`{key}` has unsupported element type {dtype}: expected float32 (float64, float16 and \
         bfloat16 are converted)"
    )]
    UnsupportedDtype { key: String, dtype: String },
    #[error("`{key}` channel {channel}: weight {value} is not finite")]
    NonFinite {
        key: String,
        channel: usize,
        value: f32,
    },
    #[error("`{key}` channel {channel}: weight {value} is negative (LPIPS weights are >= 0)")]
    Negative {
        key: String,
        channel: usize,
        value: f32,
    },
}

type Result<T> = std::result::Result<T, LinearWeightsError>;

impl LinearWeights {
    /// Reads linear weights from a `.npy`, `.pth` or pickle file (format sniffed from content).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| LinearWeightsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Parses linear weights from the bytes of a `.npy`, `.pth` or pickle file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(NPY_MAGIC) {
            parse_npy(bytes)
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            parse_torch_zip(bytes)
        } else if bytes.first() == Some(&0x80) {
            let first = pickle::load(bytes, 0, "pickle")?;
            let view = View::new(&first);
            if view.as_i128(first.root) == Some(TORCH_LEGACY_MAGIC) {
                parse_torch_legacy(bytes, first.end)
            } else {
                let mut budget = Budget::new(bytes.len());
                extract_taps(&view, first.root, None, &mut budget)
            }
        } else if matches!(bytes.first(), Some(b'(' | b'}' | b']' | b')' | b'c')) {
            // Possibly a protocol 0/1 pickle (no PROTO opcode).
            match pickle::load(bytes, 0, "pickle") {
                Ok(p) => {
                    let mut budget = Budget::new(bytes.len());
                    extract_taps(&View::new(&p), p.root, None, &mut budget)
                }
                Err(_) => Err(LinearWeightsError::UnknownFormat {
                    prefix: describe_prefix(bytes),
                }),
            }
        } else if bytes.starts_with(b"PK") {
            Err(LinearWeightsError::Zip(
                "file starts with `PK` but not with a zip local file header".into(),
            ))
        } else {
            Err(LinearWeightsError::UnknownFormat {
                prefix: describe_prefix(bytes),
            })
        }
    }

    /// Channel count of every tap, in tap order.
    pub fn channels(&self) -> Vec<usize> {
        self.taps.iter().map(Vec::len).collect()
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// `torch.serialization.MAGIC_NUMBER`.
const TORCH_LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// `torch.serialization.PROTOCOL_VERSION`.
const TORCH_LEGACY_PROTOCOL: i64 = 1001;

fn describe_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: the file is empty".into();
    }
    let head = &bytes[..bytes.len().min(8)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!("bytes {}", hex.join(" "))
}

// ---------------------------------------------------------------------------
// .npy

fn parse_npy(bytes: &[u8]) -> Result<LinearWeights> {
    let npy_err = |m: String| LinearWeightsError::Npy(m);
    let major = *bytes
        .get(6)
        .ok_or_else(|| npy_err("truncated header".into()))?;
    let (header_len, start) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or_else(|| npy_err("truncated header".into()))?;
            (u16::from_le_bytes([b[0], b[1]]) as usize, 10usize)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| npy_err("truncated header".into()))?;
            (
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                12usize,
            )
        }
        v => return Err(npy_err(format!("unsupported format version {v}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            npy_err(format!(
                "header of {header_len} bytes runs past the end of the {}-byte file",
                bytes.len()
            ))
        })?;
    // The header is a Python dict literal in ASCII (latin-1 / UTF-8 in v2 / v3);
    // only `descr` matters here.
    let header = String::from_utf8_lossy(&bytes[start..end]);
    let descr = npy_header_str(&header, "descr")
        .ok_or_else(|| npy_err(format!("no 'descr' in header {:?}", header.trim_end())))?;
    if !matches!(descr.as_str(), "|O" | "O" | "<O" | ">O" | "=O") {
        return Err(LinearWeightsError::Unsupported(format!(
            ".npy file holds a plain array of dtype {descr:?}, not a pickled dict of linear \
             weights (E-LPIPS .npy weight files are np.save of a Python dict)"
        )));
    }
    let p = pickle::load(bytes, end, ".npy payload")?;
    let view = View::new(&p);
    let mut budget = Budget::new(bytes.len());
    extract_taps(&view, p.root, None, &mut budget)
}

/// Value of the string entry `key` in a `.npy` header dict literal.
fn npy_header_str(header: &str, key: &str) -> Option<String> {
    let needle_a = format!("'{key}'");
    let needle_b = format!("\"{key}\"");
    let pos = header
        .find(&needle_a)
        .map(|p| p + needle_a.len())
        .or_else(|| header.find(&needle_b).map(|p| p + needle_b.len()))?;
    let rest = header[pos..].trim_start().strip_prefix(':')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &rest[1..];
    let close = body.find(quote)?;
    Some(body[..close].to_string())
}

// ---------------------------------------------------------------------------
// PyTorch

fn parse_torch_legacy(bytes: &[u8], after_magic: usize) -> Result<LinearWeights> {
    let terr = |m: String| LinearWeightsError::Torch(m);
    let version = pickle::load(bytes, after_magic, "torch protocol version")?;
    let vv = View::new(&version);
    match vv.as_int(version.root) {
        Some(TORCH_LEGACY_PROTOCOL) => {}
        Some(v) => {
            return Err(terr(format!(
                "unsupported legacy serialization protocol version {v} (expected {TORCH_LEGACY_PROTOCOL})"
            )))
        }
        None => {
            return Err(terr(format!(
                "expected the protocol version number after the magic number, found {}",
                vv.describe(version.root)
            )))
        }
    }
    let sys_info = pickle::load(bytes, version.end, "torch sys_info")?;
    let sv = View::new(&sys_info);
    if let Some(pairs) = sv.dict_pairs(sys_info.root) {
        for (k, v) in pairs {
            if sv.as_str(k) == Some("little_endian") && sv.as_bool(v) == Some(false) {
                return Err(LinearWeightsError::Unsupported(
                    "PyTorch file was written on a big-endian machine".into(),
                ));
            }
        }
    } else {
        return Err(terr(format!(
            "expected the sys_info dict, found {}",
            sv.describe(sys_info.root)
        )));
    }
    let main = pickle::load(bytes, sys_info.end, "torch state dict")?;
    let mv = View::new(&main);
    let keys_p = pickle::load(bytes, main.end, "torch storage key list")?;
    let kv = View::new(&keys_p);
    let key_ids = kv.seq_items(keys_p.root).ok_or_else(|| {
        terr(format!(
            "expected the list of storage keys after the state dict, found {}",
            kv.describe(keys_p.root)
        ))
    })?;

    // Element size of every storage, from the persistent ids in the state dict.
    let mut elsize: HashMap<String, usize> = HashMap::new();
    for obj in &main.objs {
        if let pickle::Obj::PersId(pid) = obj {
            if let Ok(s) = mv.storage_ref(*pid, "torch state dict") {
                elsize.insert(s.key.to_string(), s.elsize);
            }
        }
    }

    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = keys_p.end;
    for &kid in key_ids {
        let key = kv.as_str(kid).ok_or_else(|| {
            terr(format!(
                "storage keys must be strings, found {}",
                kv.describe(kid)
            ))
        })?;
        let size = *elsize.get(key).ok_or_else(|| {
            terr(format!(
                "storage `{key}` is listed but not referenced by the state dict"
            ))
        })?;
        let count_bytes = bytes.get(pos..pos.saturating_add(8)).ok_or_else(|| {
            terr(format!(
                "file truncated: storage `{key}` header at byte {pos} is missing"
            ))
        })?;
        let mut c = [0u8; 8];
        c.copy_from_slice(count_bytes);
        let count = i64::from_le_bytes(c);
        let nbytes = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(size))
            .filter(|&n| n <= bytes.len() - pos - 8)
            .ok_or_else(|| {
                terr(format!(
                    "storage `{key}` claims {count} elements of {size} bytes but only {} bytes \
                     remain (truncated file?)",
                    bytes.len() - pos - 8
                ))
            })?;
        let data_start = pos + 8;
        storages.insert(key.to_string(), &bytes[data_start..data_start + nbytes]);
        pos = data_start + nbytes;
    }
    let source = StorageSource::Legacy(storages);
    let mut budget = Budget::new(bytes.len());
    extract_taps(&mv, main.root, Some(&source), &mut budget)
}

fn parse_torch_zip(bytes: &[u8]) -> Result<LinearWeights> {
    let archive = zip::Archive::parse(bytes)?;
    let pkl_names: Vec<&str> = archive
        .names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .collect();
    let pkl_name = match pkl_names.as_slice() {
        [one] => *one,
        [] => {
            return Err(LinearWeightsError::Unsupported(
                "zip file has no `data.pkl` entry: not a PyTorch checkpoint".into(),
            ))
        }
        many => {
            // Prefer the top-level record of a torch archive (`<name>/data.pkl`).
            let mut best: Vec<&str> = many
                .iter()
                .copied()
                .filter(|n| n.matches('/').count() <= 1)
                .collect();
            if best.len() != 1 {
                return Err(LinearWeightsError::Unsupported(format!(
                    "zip file has several `data.pkl` entries: {many:?}"
                )));
            }
            best.remove(0)
        }
    };
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    if let Some(order) = archive.find(&format!("{prefix}byteorder")) {
        let order = archive.data(order)?;
        if order != b"little" {
            return Err(LinearWeightsError::Unsupported(format!(
                "PyTorch checkpoint byte order is {:?}, only little-endian is supported",
                String::from_utf8_lossy(&order[..order.len().min(16)])
            )));
        }
    }
    let idx = archive
        .find(pkl_name)
        .ok_or_else(|| LinearWeightsError::Zip(format!("entry `{pkl_name}` disappeared")))?;
    let pkl = archive.data(idx)?;
    let main = pickle::load(pkl, 0, pkl_name)?;
    let view = View::new(&main);
    let source = StorageSource::Zip {
        archive: &archive,
        prefix: prefix.to_string(),
    };
    let mut budget = Budget::new(bytes.len());
    extract_taps(&view, main.root, Some(&source), &mut budget)
}

enum StorageSource<'a> {
    /// Legacy format: storage key -> raw data following the pickles.
    Legacy(HashMap<String, &'a [u8]>),
    /// Zip format: storage `key` is entry `{prefix}data/{key}`.
    Zip {
        archive: &'a zip::Archive<'a>,
        prefix: String,
    },
}

impl<'a> StorageSource<'a> {
    fn bytes(&self, key: &str) -> Result<&'a [u8]> {
        match self {
            StorageSource::Legacy(map) => map.get(key).copied().ok_or_else(|| {
                LinearWeightsError::Torch(format!(
                    "storage `{key}` is referenced but missing from the storage key list"
                ))
            }),
            StorageSource::Zip { archive, prefix } => {
                let name = format!("{prefix}data/{key}");
                let idx = archive.find(&name).ok_or_else(|| {
                    LinearWeightsError::Torch(format!(
                        "storage `{key}` is referenced but the archive has no entry `{name}`"
                    ))
                })?;
                archive.data(idx)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Interpretation of the object graph

/// Bounds the bytes decoded from the object graph by the size of the input, so
/// that shared references (a pickle can reference one buffer many times) cannot
/// blow up memory or time.
struct Budget {
    left: usize,
}

impl Budget {
    fn new(input_len: usize) -> Self {
        // Each tap's data is read once as raw bytes and once more when a
        // protocol-2 latin-1 string is re-encoded: twice the input suffices.
        Budget {
            left: input_len.saturating_mul(2).saturating_add(4096),
        }
    }

    fn spend(&mut self, n: usize, what: &str) -> Result<()> {
        if n > self.left {
            return Err(LinearWeightsError::Structure {
                context: what.to_string(),
                expected: "array data no larger than the file (each array stored once)".into(),
                found: format!("{n} more bytes of array data, shared or repeated references"),
            });
        }
        self.left -= n;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Elem {
    F16,
    BF16,
    F32,
    F64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F16 | Elem::BF16 => 2,
            Elem::F32 => 4,
            Elem::F64 => 8,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Dtype {
    elem: Elem,
    big_endian: bool,
}

/// A strided view of array data: element `idx` (multi-index) is at
/// `offset + sum(idx[k] * strides[k])` elements from the start of `data`.
struct ArrayData<'a> {
    dtype: Dtype,
    data: Cow<'a, [u8]>,
    offset: usize,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

struct StorageRef<'p> {
    key: &'p str,
    elem: Option<Elem>,
    elem_name: &'p str,
    elsize: usize,
    /// Number of elements (torch's `numel`).
    numel: Option<usize>,
    /// Legacy views: (offset, size) in elements within the root storage.
    view: Option<(usize, usize)>,
}

/// What a dict key means for the tap list.
enum KeyKind {
    Tap(usize),
    Ignore,
    Unexpected,
}

/// `lin{i}.model.1.weight` (or `lin{i}.model.weight`, `lin{i}.weight`), optionally
/// behind a module prefix such as `module.` or `net.`.
fn classify_key(key: &str) -> KeyKind {
    let segs: Vec<&str> = key.split('.').collect();
    let Some(pos) = segs.iter().position(|s| {
        s.len() > 3 && s.starts_with("lin") && s[3..].bytes().all(|b| b.is_ascii_digit())
    }) else {
        return KeyKind::Ignore;
    };
    let Ok(index) = segs[pos][3..].parse::<usize>() else {
        return KeyKind::Unexpected;
    };
    match &segs[pos + 1..] {
        ["model", "1", "weight"] | ["model", "weight"] | ["weight"] => KeyKind::Tap(index),
        _ => KeyKind::Unexpected,
    }
}

fn extract_taps(
    view: &View<'_>,
    root: pickle::Id,
    storages: Option<&StorageSource<'_>>,
    budget: &mut Budget,
) -> Result<LinearWeights> {
    let dict = view.unwrap_object_array(root)?;
    let pairs = view
        .dict_pairs(dict)
        .ok_or_else(|| LinearWeightsError::Structure {
            context: "the weights file".into(),
            expected: "a dict (or OrderedDict) mapping `lin<i>.model.1.weight` to arrays".into(),
            found: view.describe(dict),
        })?;
    let mut taps: Vec<(usize, &str, pickle::Id)> = Vec::new();
    let mut other_keys: Vec<String> = Vec::new();
    for (k, v) in pairs {
        let key = view
            .as_str(k)
            .ok_or_else(|| LinearWeightsError::Structure {
                context: "the weights dict".into(),
                expected: "string keys".into(),
                found: view.describe(k),
            })?;
        match classify_key(key) {
            KeyKind::Tap(i) => taps.push((i, key, v)),
            KeyKind::Ignore => {
                if other_keys.len() < 8 {
                    other_keys.push(format!("`{key}`"));
                }
            }
            KeyKind::Unexpected => {
                return Err(LinearWeightsError::UnexpectedKey {
                    key: key.to_string(),
                })
            }
        }
    }
    if taps.is_empty() {
        return Err(LinearWeightsError::NoTaps {
            found: if other_keys.is_empty() {
                "none".into()
            } else {
                other_keys.join(", ")
            },
        });
    }
    taps.sort_by_key(|t| t.0);
    for w in taps.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(LinearWeightsError::DuplicateTap {
                index: w[0].0,
                first: w[0].1.to_string(),
                second: w[1].1.to_string(),
            });
        }
    }
    if let Some(index) = taps.iter().enumerate().position(|(k, t)| t.0 != k) {
        return Err(LinearWeightsError::MissingTap {
            index,
            found: taps.iter().map(|t| t.0).collect(),
        });
    }
    let mut out = Vec::with_capacity(taps.len());
    for (_, key, id) in taps {
        let arr = view.array(id, key, storages, budget)?;
        out.push(decode_channels(key, &arr, budget)?);
    }
    Ok(LinearWeights { taps: out })
}

/// Flattens a `[1, .., C, .., 1]` array to its `C` values and validates them.
fn decode_channels(key: &str, arr: &ArrayData<'_>, budget: &mut Budget) -> Result<Vec<f32>> {
    let bad_shape = || LinearWeightsError::BadShape {
        key: key.to_string(),
        shape: arr.shape.clone(),
    };
    if arr.shape.len() != arr.strides.len() || arr.shape.iter().any(|&d| d < 1) {
        return Err(bad_shape());
    }
    let axes: Vec<usize> = (0..arr.shape.len())
        .filter(|&k| arr.shape[k] != 1)
        .collect();
    let (channels, stride) = match axes.as_slice() {
        [] => (1usize, 0usize),
        [axis] => {
            let c = usize::try_from(arr.shape[*axis]).map_err(|_| bad_shape())?;
            let s = usize::try_from(arr.strides[*axis]).map_err(|_| bad_shape())?;
            (c, s)
        }
        _ => return Err(bad_shape()),
    };
    let es = arr.dtype.elem.size();
    // Last element index, then byte range, all checked.
    let last = channels
        .checked_sub(1)
        .and_then(|c| c.checked_mul(stride))
        .and_then(|x| x.checked_add(arr.offset))
        .and_then(|x| x.checked_add(1))
        .and_then(|x| x.checked_mul(es));
    match last {
        Some(end) if end <= arr.data.len() => {}
        _ => {
            return Err(LinearWeightsError::Structure {
                context: format!("`{key}`"),
                expected: format!(
                "{channels} elements of {es} bytes (offset {}, stride {stride}) inside the data",
                arr.offset
            ),
                found: format!("{} bytes of data", arr.data.len()),
            })
        }
    }
    budget.spend(channels.saturating_mul(es), &format!("`{key}`"))?;
    let mut out = Vec::with_capacity(channels);
    for c in 0..channels {
        let at = (arr.offset + c * stride) * es;
        let b = &arr.data[at..at + es];
        let v = decode_elem(arr.dtype, b);
        if !v.is_finite() {
            return Err(LinearWeightsError::NonFinite {
                key: key.to_string(),
                channel: c,
                value: v,
            });
        }
        if v < 0.0 {
            return Err(LinearWeightsError::Negative {
                key: key.to_string(),
                channel: c,
                value: v,
            });
        }
        out.push(v);
    }
    Ok(out)
}

fn decode_elem(dtype: Dtype, b: &[u8]) -> f32 {
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    if dtype.big_endian {
        buf[..n].reverse();
    }
    match dtype.elem {
        Elem::F32 => f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]),
        Elem::F64 => f64::from_le_bytes(buf) as f32,
        Elem::F16 => f16_to_f32(u16::from_le_bytes([buf[0], buf[1]])),
        Elem::BF16 => f32::from_bits((u16::from_le_bytes([buf[0], buf[1]]) as u32) << 16),
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Read-only helpers over a loaded pickle's object graph. None of them recurse
/// over the graph (it may be cyclic or an exponentially large DAG).
struct View<'p> {
    p: &'p pickle::Pickle,
}

impl<'p> View<'p> {
    fn new(p: &'p pickle::Pickle) -> Self {
        View { p }
    }

    fn obj(&self, id: pickle::Id) -> &'p pickle::Obj {
        // Ids are only ever created by the VM for its own arena.
        &self.p.objs[id]
    }

    fn as_str(&self, id: pickle::Id) -> Option<&'p str> {
        match self.obj(id) {
            pickle::Obj::Str(s) => Some(s),
            pickle::Obj::ByteStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    fn as_int(&self, id: pickle::Id) -> Option<i64> {
        match self.obj(id) {
            pickle::Obj::Int(i) => Some(*i),
            pickle::Obj::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    fn as_i128(&self, id: pickle::Id) -> Option<i128> {
        match self.obj(id) {
            pickle::Obj::Int(i) => Some(*i as i128),
            pickle::Obj::BigInt(b) if b.len() <= 16 => {
                let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                    0xff
                } else {
                    0
                };
                let mut buf = [fill; 16];
                buf[..b.len()].copy_from_slice(b);
                Some(i128::from_le_bytes(buf))
            }
            _ => None,
        }
    }

    fn as_bool(&self, id: pickle::Id) -> Option<bool> {
        match self.obj(id) {
            pickle::Obj::Bool(b) => Some(*b),
            pickle::Obj::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    fn is_none(&self, id: pickle::Id) -> bool {
        matches!(self.obj(id), pickle::Obj::None)
    }

    /// Items of a tuple or list.
    fn seq_items(&self, id: pickle::Id) -> Option<&'p [pickle::Id]> {
        match self.obj(id) {
            pickle::Obj::Tuple(v) | pickle::Obj::List(v) => Some(v),
            _ => None,
        }
    }

    fn global(&self, id: pickle::Id) -> Option<(&'p str, &'p str)> {
        match self.obj(id) {
            pickle::Obj::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// For an object built by calling a global (REDUCE / NEWOBJ / OBJ / INST):
    /// the global's module and name, and the object.
    fn call(&self, id: pickle::Id) -> Option<(&'p str, &'p str, &'p pickle::Call)> {
        match self.obj(id) {
            pickle::Obj::Call(c) => {
                let (m, n) = self.global(c.callable)?;
                Some((m, n, c))
            }
            _ => None,
        }
    }

    fn describe(&self, id: pickle::Id) -> String {
        use pickle::Obj;
        match self.obj(id) {
            Obj::None => "None".into(),
            Obj::Bool(b) => format!("bool {}", if *b { "True" } else { "False" }),
            Obj::Int(i) => format!("int {i}"),
            Obj::BigInt(b) => format!("a {}-byte int", b.len()),
            Obj::Float(f) => format!("float {f}"),
            Obj::Str(_) | Obj::ByteStr(_) if self.as_str(id).is_some() => {
                let s = self.as_str(id).unwrap_or_default();
                let short: String = s.chars().take(40).collect();
                if short.len() < s.len() {
                    format!("str {short:?}...")
                } else {
                    format!("str {short:?}")
                }
            }
            Obj::Str(_) | Obj::ByteStr(_) => "a byte string".into(),
            Obj::Bytes(b) => format!("{} bytes", b.len()),
            Obj::Tuple(v) => format!("a tuple of {} items", v.len()),
            Obj::List(v) => format!("a list of {} items", v.len()),
            Obj::Dict(v) => format!("a dict of {} items", v.len()),
            Obj::Set(v) => format!("a set of {} items", v.len()),
            Obj::Global { module, name } => format!("global {module}.{name}"),
            Obj::Call(c) => match self.global(c.callable) {
                Some((m, n)) => format!("an object made by {m}.{n}"),
                None => "an object made by a non-global callable".into(),
            },
            Obj::PersId(_) => "a persistent id".into(),
        }
    }

    fn structure_err(
        &self,
        context: &str,
        expected: &str,
        found: pickle::Id,
    ) -> LinearWeightsError {
        LinearWeightsError::Structure {
            context: context.to_string(),
            expected: expected.to_string(),
            found: self.describe(found),
        }
    }

    /// Key/value pairs of a dict, or of an `OrderedDict` (built from a list of
    /// pairs, from SETITEMS, or both).
    fn dict_pairs(&self, id: pickle::Id) -> Option<Vec<(pickle::Id, pickle::Id)>> {
        match self.obj(id) {
            pickle::Obj::Dict(v) => Some(v.clone()),
            pickle::Obj::Call(c) => {
                let (m, n) = self.global(c.callable)?;
                let dict_like = matches!(
                    (m, n),
                    ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict")
                );
                if !dict_like {
                    return None;
                }
                let mut out = Vec::new();
                let args = self.seq_items(c.args)?;
                match args {
                    [] => {}
                    [items] => {
                        if let Some(d) = match self.obj(*items) {
                            pickle::Obj::Dict(d) => Some(d),
                            _ => None,
                        } {
                            out.extend_from_slice(d);
                        } else {
                            for &pair in self.seq_items(*items)? {
                                match self.seq_items(pair)? {
                                    [k, v] => out.push((*k, *v)),
                                    _ => return None,
                                }
                            }
                        }
                    }
                    _ => return None,
                }
                out.extend_from_slice(&c.dict_items);
                Some(out)
            }
            _ => None,
        }
    }

    /// numpy's `_reconstruct` (any numpy version's module path).
    fn is_np_reconstruct(m: &str, n: &str) -> bool {
        n == "_reconstruct" && matches!(m, "numpy.core.multiarray" | "numpy._core.multiarray")
    }

    /// `(shape, dtype, is_fortran, rawdata)` of a pickled ndarray.
    fn np_state(&self, c: &'p pickle::Call, context: &str) -> Result<&'p [pickle::Id]> {
        let expected = "ndarray state (version, shape, dtype, is_fortran, data)";
        let state = c.state.ok_or_else(|| LinearWeightsError::Structure {
            context: context.to_string(),
            expected: expected.into(),
            found: "no state (no BUILD)".into(),
        })?;
        match self.seq_items(state) {
            Some(items) if items.len() == 5 => Ok(&items[1..]),
            Some(items) if items.len() == 4 => Ok(items),
            _ => Err(self.structure_err(context, expected, state)),
        }
    }

    /// If `id` is a 0-d numpy object array (what `np.save(dict)` writes), its
    /// single element; otherwise `id` itself.
    fn unwrap_object_array(&self, id: pickle::Id) -> Result<pickle::Id> {
        let Some((m, n, c)) = self.call(id) else {
            return Ok(id);
        };
        if !Self::is_np_reconstruct(m, n) {
            return Ok(id);
        }
        let ctx = "the .npy object array";
        let st = self.np_state(c, ctx)?;
        let data = st[3];
        match self.seq_items(data) {
            Some([one]) => Ok(*one),
            Some(items) => Err(LinearWeightsError::Structure {
                context: ctx.into(),
                expected: "a 0-d object array holding one dict (np.save of a dict)".into(),
                found: format!("an object array of {} elements", items.len()),
            }),
            None => Err(self.structure_err(
                ctx,
                "a 0-d object array holding one dict (np.save of a dict)",
                id,
            )),
        }
    }

    /// Raw bytes of a `bytes`-like value: bytes, a Python 2 str, or the
    /// protocol-2 encodings `_codecs.encode(str, 'latin1')` / `bytes()` /
    /// `bytearray(...)`.
    fn bytes_of(
        &self,
        id: pickle::Id,
        context: &str,
        budget: &mut Budget,
    ) -> Result<Cow<'p, [u8]>> {
        let expected = "raw bytes (bytes, or _codecs.encode(str, 'latin1'))";
        match self.obj(id) {
            pickle::Obj::Bytes(b) | pickle::Obj::ByteStr(b) => return Ok(Cow::Borrowed(b)),
            pickle::Obj::Call(_) => {}
            _ => return Err(self.structure_err(context, expected, id)),
        }
        let Some((m, n, c)) = self.call(id) else {
            return Err(self.structure_err(context, expected, id));
        };
        let args = self
            .seq_items(c.args)
            .ok_or_else(|| self.structure_err(context, "an argument tuple", c.args))?;
        let builtin = matches!(m, "builtins" | "__builtin__");
        match (m, n, args) {
            (_, "bytes" | "bytearray", []) if builtin => Ok(Cow::Borrowed(&[])),
            (_, "bytes" | "bytearray", [x]) if builtin => match self.obj(*x) {
                pickle::Obj::Bytes(b) | pickle::Obj::ByteStr(b) => Ok(Cow::Borrowed(b)),
                _ => Err(self.structure_err(context, expected, *x)),
            },
            ("_codecs", "encode", [s, enc]) | (_, "bytes" | "bytearray", [s, enc])
                if m == "_codecs" || builtin =>
            {
                let enc = self
                    .as_str(*enc)
                    .ok_or_else(|| self.structure_err(context, "an encoding name", *enc))?;
                let s = match self.obj(*s) {
                    pickle::Obj::Str(s) => s,
                    _ => return Err(self.structure_err(context, "a str to encode", *s)),
                };
                let latin1 = matches!(
                    enc.to_ascii_lowercase().replace('_', "-").as_str(),
                    "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1"
                );
                if !latin1 {
                    return Err(LinearWeightsError::Structure {
                        context: context.to_string(),
                        expected: "latin-1 encoded bytes".into(),
                        found: format!("encoding {enc:?}"),
                    });
                }
                budget.spend(s.len(), context)?;
                // UTF-8 of code points up to U+00FF: ASCII bytes, or 0xC2/0xC3 + one
                // continuation byte.
                let b = s.as_bytes();
                let mut out = Vec::with_capacity(b.len());
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        x @ 0..=0x7f => {
                            out.push(x);
                            i += 1;
                        }
                        lead @ (0xc2 | 0xc3) if i + 1 < b.len() => {
                            out.push(((lead & 0x1f) << 6) | (b[i + 1] & 0x3f));
                            i += 2;
                        }
                        _ => {
                            let ch = s[i..].chars().next().map_or(0, u32::from);
                            return Err(LinearWeightsError::Structure {
                                context: context.to_string(),
                                expected: "latin-1 characters (U+0000..U+00FF)".into(),
                                found: format!("U+{ch:04X}"),
                            });
                        }
                    }
                }
                Ok(Cow::Owned(out))
            }
            _ => Err(self.structure_err(context, expected, id)),
        }
    }

    fn int_tuple(&self, id: pickle::Id, context: &str, what: &str) -> Result<Vec<i64>> {
        let items = self
            .seq_items(id)
            .ok_or_else(|| self.structure_err(context, &format!("{what} (a tuple of ints)"), id))?;
        items
            .iter()
            .map(|&x| {
                self.as_int(x)
                    .ok_or_else(|| self.structure_err(context, &format!("{what} (ints)"), x))
            })
            .collect()
    }

    /// Element type of a pickled `numpy.dtype`.
    fn np_dtype(&self, id: pickle::Id, key: &str) -> Result<Dtype> {
        let ctx = format!("the dtype of `{key}`");
        let expected = "numpy.dtype('f4', ...)";
        let Some((m, n, c)) = self.call(id) else {
            return Err(self.structure_err(&ctx, expected, id));
        };
        if !(n == "dtype" && m.starts_with("numpy")) {
            return Err(self.structure_err(&ctx, expected, id));
        }
        let args = self
            .seq_items(c.args)
            .ok_or_else(|| self.structure_err(&ctx, expected, c.args))?;
        let descr = args
            .first()
            .and_then(|&a| self.as_str(a))
            .ok_or_else(|| self.structure_err(&ctx, expected, c.args))?;
        let (mut order, code) = match descr.as_bytes().first() {
            Some(b'<' | b'>' | b'=' | b'|') => (&descr[..1], &descr[1..]),
            _ => ("=", descr),
        };
        // The state (version, byteorder, ...) carries the byte order.
        if let Some(state) = c.state {
            if let Some(o) = self
                .seq_items(state)
                .and_then(|s| s.get(1))
                .and_then(|&o| self.as_str(o))
            {
                order = o;
            }
        }
        let elem = match code {
            "f4" => Elem::F32,
            "f8" => Elem::F64,
            "f2" => Elem::F16,
            _ => {
                return Err(LinearWeightsError::UnsupportedDtype {
                    key: key.to_string(),
                    dtype: format!("numpy {descr:?}"),
                })
            }
        };
        let big_endian = match order {
            ">" => true,
            "<" | "|" => false,
            // Native order of the writer; numpy records '<' or '>' explicitly for
            // multi-byte types, so this only happens for hand-made pickles.
            _ => cfg!(target_endian = "big"),
        };
        Ok(Dtype { elem, big_endian })
    }

    /// Persistent id `('storage', torch.XStorage, key, location, numel[, view])`.
    fn storage_ref(&self, pid: pickle::Id, context: &str) -> Result<StorageRef<'p>> {
        let expected = "a storage id ('storage', torch.<T>Storage, key, location, numel)";
        let items = self
            .seq_items(pid)
            .filter(|it| it.len() >= 5 && self.as_str(it[0]) == Some("storage"))
            .ok_or_else(|| self.structure_err(context, expected, pid))?;
        let (m, n) = self
            .global(items[1])
            .ok_or_else(|| self.structure_err(context, expected, items[1]))?;
        if !m.starts_with("torch") {
            return Err(self.structure_err(context, expected, items[1]));
        }
        let key = self
            .as_str(items[2])
            .ok_or_else(|| self.structure_err(context, "a storage key string", items[2]))?;
        let (elem, elsize) = match n {
            "FloatStorage" => (Some(Elem::F32), 4),
            "DoubleStorage" => (Some(Elem::F64), 8),
            "HalfStorage" => (Some(Elem::F16), 2),
            "BFloat16Storage" => (Some(Elem::BF16), 2),
            "LongStorage" | "ComplexFloatStorage" => (None, 8),
            "IntStorage" => (None, 4),
            "ShortStorage" => (None, 2),
            "CharStorage" | "ByteStorage" | "BoolStorage" | "QInt8Storage" | "QUInt8Storage" => {
                (None, 1)
            }
            "ComplexDoubleStorage" => (None, 16),
            _ => return Err(self.structure_err(context, expected, items[1])),
        };
        let numel = self.as_int(items[4]).and_then(|v| usize::try_from(v).ok());
        let view = match items.get(5) {
            None => None,
            Some(&v) if self.is_none(v) => None,
            Some(&v) => {
                let vm = self.seq_items(v).filter(|x| x.len() == 3).ok_or_else(|| {
                    self.structure_err(context, "view metadata (key, offset, size)", v)
                })?;
                let off = self.as_int(vm[1]).and_then(|x| usize::try_from(x).ok());
                let size = self.as_int(vm[2]).and_then(|x| usize::try_from(x).ok());
                match (off, size) {
                    (Some(o), Some(s)) => Some((o, s)),
                    _ => {
                        return Err(self.structure_err(
                            context,
                            "view metadata (key, offset, size)",
                            v,
                        ))
                    }
                }
            }
        };
        Ok(StorageRef {
            key,
            elem,
            elem_name: n,
            elsize,
            numel,
            view,
        })
    }

    /// The numpy array or torch tensor stored under `key`.
    fn array<'x>(
        &self,
        id: pickle::Id,
        key: &str,
        storages: Option<&StorageSource<'x>>,
        budget: &mut Budget,
    ) -> Result<ArrayData<'x>>
    where
        'p: 'x,
    {
        let ctx = format!("`{key}`");
        let expected = "a numpy array or a torch tensor";
        let mut id = id;
        // torch.nn.Parameter wraps a tensor: `_rebuild_parameter(tensor, ...)`.
        for _ in 0..4 {
            match self.call(id) {
                Some((m, n, c)) if m == "torch._utils" && n.starts_with("_rebuild_parameter") => {
                    id = *self
                        .seq_items(c.args)
                        .and_then(|a| a.first())
                        .ok_or_else(|| self.structure_err(&ctx, "parameter data", c.args))?;
                }
                _ => break,
            }
        }
        let Some((m, n, c)) = self.call(id) else {
            return Err(self.structure_err(&ctx, expected, id));
        };
        if Self::is_np_reconstruct(m, n) {
            let st = self.np_state(c, &ctx)?;
            let shape = self.int_tuple(st[0], &ctx, "the array shape")?;
            let dtype = self.np_dtype(st[1], key)?;
            let fortran = self.as_bool(st[2]).unwrap_or(false);
            let data = self.bytes_of(st[3], &ctx, budget)?;
            return np_array(key, dtype, shape, fortran, data);
        }
        if matches!(
            (m, n),
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer")
        ) {
            // Protocol 5: _frombuffer(buffer, dtype, shape, order).
            let args = self
                .seq_items(c.args)
                .filter(|a| a.len() == 4)
                .ok_or_else(|| {
                    self.structure_err(&ctx, "_frombuffer(buffer, dtype, shape, order)", c.args)
                })?;
            let data = self.bytes_of(args[0], &ctx, budget)?;
            let dtype = self.np_dtype(args[1], key)?;
            let shape = self.int_tuple(args[2], &ctx, "the array shape")?;
            let fortran = self.as_str(args[3]) == Some("F");
            return np_array(key, dtype, shape, fortran, data);
        }
        if m == "torch._utils" && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor") {
            let args = self
                .seq_items(c.args)
                .filter(|a| a.len() >= 4)
                .ok_or_else(|| {
                    self.structure_err(
                        &ctx,
                        "_rebuild_tensor_v2(storage, offset, size, stride, ...)",
                        c.args,
                    )
                })?;
            let pid = match self.obj(args[0]) {
                pickle::Obj::PersId(p) => *p,
                _ => return Err(self.structure_err(&ctx, "a storage (persistent id)", args[0])),
            };
            let sref = self.storage_ref(pid, &ctx)?;
            let elem = sref
                .elem
                .ok_or_else(|| LinearWeightsError::UnsupportedDtype {
                    key: key.to_string(),
                    dtype: format!("torch.{}", sref.elem_name),
                })?;
            let source = storages.ok_or_else(|| {
                LinearWeightsError::Unsupported(format!(
                    "`{key}` is a torch tensor, but the file is not a PyTorch checkpoint with storages"
                ))
            })?;
            let mut data = source.bytes(sref.key)?;
            if let Some((off, size)) = sref.view {
                let range = off
                    .checked_mul(sref.elsize)
                    .and_then(|a| Some((a, a.checked_add(size.checked_mul(sref.elsize)?)?)))
                    .filter(|&(_, b)| b <= data.len())
                    .ok_or_else(|| {
                        LinearWeightsError::Torch(format!(
                        "storage view of `{key}` (offset {off}, size {size}) exceeds storage `{}`",
                        sref.key
                    ))
                    })?;
                data = &data[range.0..range.1];
            } else if let Some(numel) = sref.numel {
                match numel.checked_mul(sref.elsize) {
                    Some(nb) if nb <= data.len() => data = &data[..nb],
                    _ => {
                        return Err(LinearWeightsError::Torch(format!(
                            "storage `{}` of `{key}` should hold {numel} elements but has {} bytes",
                            sref.key,
                            data.len()
                        )))
                    }
                }
            }
            let offset = self
                .as_int(args[1])
                .and_then(|o| usize::try_from(o).ok())
                .ok_or_else(|| self.structure_err(&ctx, "a storage offset >= 0", args[1]))?;
            let shape = self.int_tuple(args[2], &ctx, "the tensor size")?;
            let strides = self.int_tuple(args[3], &ctx, "the tensor stride")?;
            return Ok(ArrayData {
                dtype: Dtype {
                    elem,
                    big_endian: false,
                },
                data: Cow::Borrowed(data),
                offset,
                shape,
                strides,
            });
        }
        Err(self.structure_err(&ctx, expected, id))
    }
}

fn np_array<'a>(
    key: &str,
    dtype: Dtype,
    shape: Vec<i64>,
    fortran: bool,
    data: Cow<'a, [u8]>,
) -> Result<ArrayData<'a>> {
    let bad_shape = || LinearWeightsError::BadShape {
        key: key.to_string(),
        shape: shape.clone(),
    };
    let mut count: usize = 1;
    for &d in &shape {
        let d = usize::try_from(d).map_err(|_| bad_shape())?;
        count = count.checked_mul(d).ok_or_else(bad_shape)?;
    }
    let es = dtype.elem.size();
    if count.checked_mul(es) != Some(data.len()) {
        return Err(LinearWeightsError::Structure {
            context: format!("`{key}`"),
            expected: format!("{count} elements x {es} bytes of data for shape {shape:?}"),
            found: format!("{} bytes", data.len()),
        });
    }
    // Contiguous strides, in elements (no overflow: the product fits).
    let mut strides = vec![0i64; shape.len()];
    let mut acc: i64 = 1;
    let order: Vec<usize> = if fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for k in order {
        strides[k] = acc;
        acc = acc.saturating_mul(shape[k].max(1));
    }
    Ok(ArrayData {
        dtype,
        data,
        offset: 0,
        shape,
        strides,
    })
}

// ---------------------------------------------------------------------------
// Pickle virtual machine

mod pickle {
    use super::LinearWeightsError;
    use std::collections::HashMap;

    pub(super) type Id = usize;

    /// Upper bound on objects in one pickle (a weights file has a few hundred).
    const MAX_OBJECTS: usize = 1 << 20;

    /// An object built by calling `callable` (REDUCE, NEWOBJ, OBJ, INST), with
    /// what BUILD / SETITEMS / APPENDS later added to it.
    #[derive(Debug)]
    pub(super) struct Call {
        pub callable: Id,
        pub args: Id,
        pub state: Option<Id>,
        pub dict_items: Vec<(Id, Id)>,
        pub list_items: Vec<Id>,
    }

    #[derive(Debug)]
    pub(super) enum Obj {
        None,
        Bool(bool),
        Int(i64),
        /// Little-endian two's complement, for ints that do not fit an i64.
        BigInt(Vec<u8>),
        Float(f64),
        Str(String),
        /// Python 2 `str` (STRING / BINSTRING / SHORT_BINSTRING).
        ByteStr(Vec<u8>),
        Bytes(Vec<u8>),
        Tuple(Vec<Id>),
        List(Vec<Id>),
        Dict(Vec<(Id, Id)>),
        Set(Vec<Id>),
        Global {
            module: String,
            name: String,
        },
        Call(Call),
        PersId(Id),
    }

    pub(super) struct Pickle {
        pub objs: Vec<Obj>,
        pub root: Id,
        /// Offset just past the STOP opcode.
        pub end: usize,
    }

    pub(super) fn opcode_name(op: u8) -> &'static str {
        match op {
            b'(' => "MARK",
            b'.' => "STOP",
            b'0' => "POP",
            b'1' => "POP_MARK",
            b'2' => "DUP",
            b'F' => "FLOAT",
            b'I' => "INT",
            b'J' => "BININT",
            b'K' => "BININT1",
            b'L' => "LONG",
            b'M' => "BININT2",
            b'N' => "NONE",
            b'P' => "PERSID",
            b'Q' => "BINPERSID",
            b'R' => "REDUCE",
            b'S' => "STRING",
            b'T' => "BINSTRING",
            b'U' => "SHORT_BINSTRING",
            b'V' => "UNICODE",
            b'X' => "BINUNICODE",
            b'a' => "APPEND",
            b'b' => "BUILD",
            b'c' => "GLOBAL",
            b'd' => "DICT",
            b'}' => "EMPTY_DICT",
            b'e' => "APPENDS",
            b'g' => "GET",
            b'h' => "BINGET",
            b'i' => "INST",
            b'j' => "LONG_BINGET",
            b'l' => "LIST",
            b']' => "EMPTY_LIST",
            b'o' => "OBJ",
            b'p' => "PUT",
            b'q' => "BINPUT",
            b'r' => "LONG_BINPUT",
            b's' => "SETITEM",
            b't' => "TUPLE",
            b')' => "EMPTY_TUPLE",
            b'u' => "SETITEMS",
            b'G' => "BINFLOAT",
            0x80 => "PROTO",
            0x81 => "NEWOBJ",
            0x82 => "EXT1",
            0x83 => "EXT2",
            0x84 => "EXT4",
            0x85 => "TUPLE1",
            0x86 => "TUPLE2",
            0x87 => "TUPLE3",
            0x88 => "NEWTRUE",
            0x89 => "NEWFALSE",
            0x8a => "LONG1",
            0x8b => "LONG4",
            b'B' => "BINBYTES",
            b'C' => "SHORT_BINBYTES",
            0x8c => "SHORT_BINUNICODE",
            0x8d => "BINUNICODE8",
            0x8e => "BINBYTES8",
            0x8f => "EMPTY_SET",
            0x90 => "ADDITEMS",
            0x91 => "FROZENSET",
            0x92 => "NEWOBJ_EX",
            0x93 => "STACK_GLOBAL",
            0x94 => "MEMOIZE",
            0x95 => "FRAME",
            0x96 => "BYTEARRAY8",
            0x97 => "NEXT_BUFFER",
            0x98 => "READONLY_BUFFER",
            _ => "not a pickle opcode",
        }
    }

    struct Vm<'a> {
        data: &'a [u8],
        pos: usize,
        /// Offset of the opcode being executed, for error messages.
        op_pos: usize,
        what: &'a str,
        objs: Vec<Obj>,
        stack: Vec<Id>,
        /// Stack lengths at each MARK.
        marks: Vec<usize>,
        memo: HashMap<u64, Id>,
    }

    /// Runs the pickle starting at `data[start]` up to its STOP opcode. `what`
    /// names the pickle in error messages; offsets are absolute in `data`.
    pub(super) fn load(
        data: &[u8],
        start: usize,
        what: &str,
    ) -> Result<Pickle, LinearWeightsError> {
        let mut vm = Vm {
            data,
            pos: start,
            op_pos: start,
            what,
            objs: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        };
        let root = vm.run()?;
        Ok(Pickle {
            objs: vm.objs,
            root,
            end: vm.pos,
        })
    }

    impl<'a> Vm<'a> {
        fn err(&self, message: impl Into<String>) -> LinearWeightsError {
            LinearWeightsError::Pickle {
                offset: self.op_pos,
                message: format!("{} ({})", message.into(), self.what),
            }
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], LinearWeightsError> {
            let remaining = self.data.len().saturating_sub(self.pos);
            if n > remaining {
                return Err(self.err(format!(
                    "{} needs {n} bytes but only {remaining} remain (truncated file?)",
                    opcode_name(self.data.get(self.op_pos).copied().unwrap_or(0))
                )));
            }
            let s = &self.data[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        }

        fn arr<const N: usize>(&mut self) -> Result<[u8; N], LinearWeightsError> {
            let s = self.take(N)?;
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            Ok(a)
        }

        fn len_u32(&mut self) -> Result<usize, LinearWeightsError> {
            Ok(u32::from_le_bytes(self.arr()?) as usize)
        }

        fn len_u64(&mut self) -> Result<usize, LinearWeightsError> {
            let v = u64::from_le_bytes(self.arr()?);
            // Larger than the input: `take` reports the truncation.
            Ok(usize::try_from(v).unwrap_or(usize::MAX))
        }

        /// A text line (without its '\n').
        fn line(&mut self) -> Result<&'a [u8], LinearWeightsError> {
            let rest = self.data.get(self.pos..).unwrap_or(&[]);
            match rest.iter().position(|&b| b == b'\n') {
                Some(n) => {
                    let l = &rest[..n];
                    self.pos += n + 1;
                    Ok(l)
                }
                None => Err(self.err("unterminated text argument (truncated file?)")),
            }
        }

        fn line_str(&mut self) -> Result<&'a str, LinearWeightsError> {
            let l = self.line()?;
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            std::str::from_utf8(l).map_err(|_| self.err("text argument is not valid UTF-8"))
        }

        fn alloc(&mut self, o: Obj) -> Result<Id, LinearWeightsError> {
            if self.objs.len() >= MAX_OBJECTS {
                return Err(self.err(format!("more than {MAX_OBJECTS} objects")));
            }
            self.objs.push(o);
            Ok(self.objs.len() - 1)
        }

        fn push_new(&mut self, o: Obj) -> Result<(), LinearWeightsError> {
            let id = self.alloc(o)?;
            self.stack.push(id);
            Ok(())
        }

        fn floor(&self) -> usize {
            self.marks.last().copied().unwrap_or(0)
        }

        fn pop(&mut self) -> Result<Id, LinearWeightsError> {
            if self.stack.len() <= self.floor() {
                return Err(self.err("stack underflow"));
            }
            self.stack.pop().ok_or_else(|| self.err("stack underflow"))
        }

        fn top(&self) -> Result<Id, LinearWeightsError> {
            if self.stack.len() <= self.floor() {
                return Err(self.err("stack underflow"));
            }
            self.stack
                .last()
                .copied()
                .ok_or_else(|| self.err("stack underflow"))
        }

        /// Items pushed since the last MARK, removing the mark.
        fn pop_mark(&mut self) -> Result<Vec<Id>, LinearWeightsError> {
            let m = self
                .marks
                .pop()
                .ok_or_else(|| self.err("no MARK on the stack"))?;
            if m > self.stack.len() {
                return Err(self.err("MARK above the stack top"));
            }
            Ok(self.stack.split_off(m))
        }

        fn memo_put(&mut self, key: u64) -> Result<(), LinearWeightsError> {
            let id = self.top()?;
            self.memo.insert(key, id);
            Ok(())
        }

        fn memo_get(&mut self, key: u64) -> Result<(), LinearWeightsError> {
            let id = *self
                .memo
                .get(&key)
                .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
            self.stack.push(id);
            Ok(())
        }

        fn int_obj_from_le(bytes: &[u8]) -> Obj {
            if bytes.is_empty() {
                return Obj::Int(0);
            }
            let neg = bytes[bytes.len() - 1] & 0x80 != 0;
            let fill = if neg { 0xff } else { 0 };
            if bytes.len() <= 8 {
                let mut b = [fill; 8];
                b[..bytes.len()].copy_from_slice(bytes);
                return Obj::Int(i64::from_le_bytes(b));
            }
            // Fits an i64 if the high bytes are only sign extension.
            if bytes[8..].iter().all(|&x| x == fill) && ((bytes[7] & 0x80 != 0) == neg) {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[..8]);
                return Obj::Int(i64::from_le_bytes(b));
            }
            Obj::BigInt(bytes.to_vec())
        }

        fn parse_text_int(&self, s: &str) -> Result<Obj, LinearWeightsError> {
            let t = s.trim().trim_end_matches('L');
            match t {
                "00" => return Ok(Obj::Bool(false)),
                "01" => return Ok(Obj::Bool(true)),
                _ => {}
            }
            if let Ok(v) = t.parse::<i64>() {
                return Ok(Obj::Int(v));
            }
            match t.parse::<i128>() {
                Ok(v) => Ok(Obj::BigInt(v.to_le_bytes().to_vec())),
                Err(_) => Err(self.err(format!("bad integer literal {t:?}"))),
            }
        }

        /// The dict/object that SETITEM(S) applies to, at `self.stack[idx]`.
        fn set_items(
            &mut self,
            target: Id,
            pairs: Vec<(Id, Id)>,
        ) -> Result<(), LinearWeightsError> {
            match &mut self.objs[target] {
                Obj::Dict(d) => d.extend(pairs),
                Obj::Call(c) => c.dict_items.extend(pairs),
                _ => return Err(self.err("SETITEM(S) on an object that is not a dict")),
            }
            Ok(())
        }

        fn append_items(&mut self, target: Id, items: Vec<Id>) -> Result<(), LinearWeightsError> {
            match &mut self.objs[target] {
                Obj::List(l) => l.extend(items),
                Obj::Call(c) => c.list_items.extend(items),
                _ => return Err(self.err("APPEND(S) on an object that is not a list")),
            }
            Ok(())
        }

        fn push_call(&mut self, callable: Id, args: Id) -> Result<(), LinearWeightsError> {
            self.push_new(Obj::Call(Call {
                callable,
                args,
                state: None,
                dict_items: Vec::new(),
                list_items: Vec::new(),
            }))
        }

        fn run(&mut self) -> Result<Id, LinearWeightsError> {
            loop {
                self.op_pos = self.pos;
                let op = match self.data.get(self.pos) {
                    Some(&b) => b,
                    None => {
                        return Err(self.err("unexpected end of data before STOP (truncated file?)"))
                    }
                };
                self.pos += 1;
                match op {
                    0x80 => {
                        let v = self.arr::<1>()?[0];
                        if v > 5 {
                            return Err(self.err(format!("unsupported pickle protocol {v}")));
                        }
                    }
                    0x95 => {
                        // FRAME: framing is transparent to the data we read.
                        self.arr::<8>()?;
                    }
                    b'.' => {
                        let root = self.pop()?;
                        return Ok(root);
                    }
                    b'(' => self.marks.push(self.stack.len()),
                    b'0' => {
                        self.pop()?;
                    }
                    b'1' => {
                        self.pop_mark()?;
                    }
                    b'2' => {
                        let t = self.top()?;
                        self.stack.push(t);
                    }
                    // Constants and scalars.
                    b'N' => self.push_new(Obj::None)?,
                    0x88 => self.push_new(Obj::Bool(true))?,
                    0x89 => self.push_new(Obj::Bool(false))?,
                    b'J' => {
                        let v = i32::from_le_bytes(self.arr()?);
                        self.push_new(Obj::Int(v as i64))?
                    }
                    b'K' => {
                        let v = self.arr::<1>()?[0];
                        self.push_new(Obj::Int(v as i64))?
                    }
                    b'M' => {
                        let v = u16::from_le_bytes(self.arr()?);
                        self.push_new(Obj::Int(v as i64))?
                    }
                    0x8a => {
                        let n = self.arr::<1>()?[0] as usize;
                        let b = self.take(n)?;
                        self.push_new(Self::int_obj_from_le(b))?
                    }
                    0x8b => {
                        let n = i32::from_le_bytes(self.arr()?);
                        let n =
                            usize::try_from(n).map_err(|_| self.err("negative LONG4 length"))?;
                        let b = self.take(n)?;
                        self.push_new(Self::int_obj_from_le(b))?
                    }
                    b'I' | b'L' => {
                        let s = self.line_str()?;
                        let o = self.parse_text_int(s)?;
                        self.push_new(o)?
                    }
                    b'G' => {
                        let v = f64::from_be_bytes(self.arr()?);
                        self.push_new(Obj::Float(v))?
                    }
                    b'F' => {
                        let s = self.line_str()?;
                        let v: f64 = s
                            .trim()
                            .parse()
                            .map_err(|_| self.err(format!("bad float literal {s:?}")))?;
                        self.push_new(Obj::Float(v))?
                    }
                    // Strings and bytes.
                    b'X' | 0x8c | 0x8d => {
                        let n = match op {
                            b'X' => self.len_u32()?,
                            0x8c => self.arr::<1>()?[0] as usize,
                            _ => self.len_u64()?,
                        };
                        let b = self.take(n)?;
                        let s = std::str::from_utf8(b)
                            .map_err(|_| self.err("string is not valid UTF-8"))?;
                        self.push_new(Obj::Str(s.to_string()))?
                    }
                    b'V' => {
                        let l = self.line()?;
                        let s = raw_unicode_escape(l)
                            .ok_or_else(|| self.err("bad raw-unicode-escape string"))?;
                        self.push_new(Obj::Str(s))?
                    }
                    b'T' | b'U' => {
                        let n = if op == b'T' {
                            let n = i32::from_le_bytes(self.arr()?);
                            usize::try_from(n).map_err(|_| self.err("negative BINSTRING length"))?
                        } else {
                            self.arr::<1>()?[0] as usize
                        };
                        let b = self.take(n)?;
                        self.push_new(Obj::ByteStr(b.to_vec()))?
                    }
                    b'S' => {
                        let l = self.line()?;
                        let l = l.strip_suffix(b"\r").unwrap_or(l);
                        let s = unquote_string(l).ok_or_else(|| self.err("bad STRING literal"))?;
                        self.push_new(Obj::ByteStr(s))?
                    }
                    b'B' | b'C' | 0x8e | 0x96 => {
                        let n = match op {
                            b'B' => self.len_u32()?,
                            b'C' => self.arr::<1>()?[0] as usize,
                            _ => self.len_u64()?,
                        };
                        let b = self.take(n)?;
                        self.push_new(Obj::Bytes(b.to_vec()))?
                    }
                    0x98 => {
                        // READONLY_BUFFER: no-op on the top of the stack.
                        self.top()?;
                    }
                    // Containers.
                    b'}' => self.push_new(Obj::Dict(Vec::new()))?,
                    b']' => self.push_new(Obj::List(Vec::new()))?,
                    b')' => self.push_new(Obj::Tuple(Vec::new()))?,
                    0x8f => self.push_new(Obj::Set(Vec::new()))?,
                    b'd' => {
                        let items = self.pop_mark()?;
                        if items.len() % 2 != 0 {
                            return Err(self.err("DICT with an odd number of items"));
                        }
                        let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                        self.push_new(Obj::Dict(pairs))?
                    }
                    b'l' => {
                        let items = self.pop_mark()?;
                        self.push_new(Obj::List(items))?
                    }
                    b't' => {
                        let items = self.pop_mark()?;
                        self.push_new(Obj::Tuple(items))?
                    }
                    0x91 => {
                        let items = self.pop_mark()?;
                        self.push_new(Obj::Set(items))?
                    }
                    0x85..=0x87 => {
                        let n = (op - 0x84) as usize;
                        let mut items = vec![0; n];
                        for slot in items.iter_mut().rev() {
                            *slot = self.pop()?;
                        }
                        self.push_new(Obj::Tuple(items))?
                    }
                    b'a' => {
                        let v = self.pop()?;
                        let t = self.top()?;
                        self.append_items(t, vec![v])?
                    }
                    b'e' => {
                        let items = self.pop_mark()?;
                        let t = self.top()?;
                        self.append_items(t, items)?
                    }
                    b's' => {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        let t = self.top()?;
                        self.set_items(t, vec![(k, v)])?
                    }
                    b'u' => {
                        let items = self.pop_mark()?;
                        if items.len() % 2 != 0 {
                            return Err(self.err("SETITEMS with an odd number of items"));
                        }
                        let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                        let t = self.top()?;
                        self.set_items(t, pairs)?
                    }
                    0x90 => {
                        let items = self.pop_mark()?;
                        let t = self.top()?;
                        match &mut self.objs[t] {
                            Obj::Set(s) => s.extend(items),
                            _ => return Err(self.err("ADDITEMS on an object that is not a set")),
                        }
                    }
                    // Memo.
                    b'q' => {
                        let k = self.arr::<1>()?[0] as u64;
                        self.memo_put(k)?
                    }
                    b'r' => {
                        let k = u32::from_le_bytes(self.arr()?) as u64;
                        self.memo_put(k)?
                    }
                    0x94 => {
                        let k = self.memo.len() as u64;
                        self.memo_put(k)?
                    }
                    b'p' => {
                        let s = self.line_str()?;
                        let k = s
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| self.err(format!("bad PUT index {s:?}")))?;
                        self.memo_put(k)?
                    }
                    b'h' => {
                        let k = self.arr::<1>()?[0] as u64;
                        self.memo_get(k)?
                    }
                    b'j' => {
                        let k = u32::from_le_bytes(self.arr()?) as u64;
                        self.memo_get(k)?
                    }
                    b'g' => {
                        let s = self.line_str()?;
                        let k = s
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| self.err(format!("bad GET index {s:?}")))?;
                        self.memo_get(k)?
                    }
                    // Globals and object construction (recorded, never executed).
                    b'c' => {
                        let module = self.line_str()?.to_string();
                        let name = self.line_str()?.to_string();
                        self.push_new(Obj::Global { module, name })?
                    }
                    0x93 => {
                        let name = self.pop()?;
                        let module = self.pop()?;
                        let (Obj::Str(m), Obj::Str(n)) = (&self.objs[module], &self.objs[name])
                        else {
                            return Err(self.err("STACK_GLOBAL needs two strings"));
                        };
                        let (module, name) = (m.clone(), n.clone());
                        self.push_new(Obj::Global { module, name })?
                    }
                    b'R' | 0x81 => {
                        let args = self.pop()?;
                        let callable = self.pop()?;
                        self.push_call(callable, args)?
                    }
                    0x92 => {
                        let _kwargs = self.pop()?;
                        let args = self.pop()?;
                        let callable = self.pop()?;
                        self.push_call(callable, args)?
                    }
                    b'o' => {
                        let items = self.pop_mark()?;
                        let Some((&callable, rest)) = items.split_first() else {
                            return Err(self.err("OBJ without a class"));
                        };
                        let args = self.alloc(Obj::Tuple(rest.to_vec()))?;
                        self.push_call(callable, args)?
                    }
                    b'i' => {
                        let module = self.line_str()?.to_string();
                        let name = self.line_str()?.to_string();
                        let items = self.pop_mark()?;
                        let callable = self.alloc(Obj::Global { module, name })?;
                        let args = self.alloc(Obj::Tuple(items))?;
                        self.push_call(callable, args)?
                    }
                    b'b' => {
                        let state = self.pop()?;
                        let t = self.top()?;
                        match &mut self.objs[t] {
                            Obj::Call(c) => c.state = Some(state),
                            _ => {
                                return Err(self.err("BUILD on an object that was not constructed"))
                            }
                        }
                    }
                    b'Q' => {
                        let pid = self.pop()?;
                        self.push_new(Obj::PersId(pid))?
                    }
                    b'P' => {
                        let s = self.line_str()?.to_string();
                        let pid = self.alloc(Obj::Str(s))?;
                        self.push_new(Obj::PersId(pid))?
                    }
                    _ => {
                        return Err(LinearWeightsError::UnsupportedOpcode {
                            opcode: op,
                            name: opcode_name(op),
                            offset: self.op_pos,
                        })
                    }
                }
            }
        }
    }

    /// Decodes Python's raw-unicode-escape (`\uXXXX`, `\UXXXXXXXX`, other bytes latin-1).
    fn raw_unicode_escape(b: &[u8]) -> Option<String> {
        let mut out = String::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 1 < b.len() && (b[i + 1] == b'u' || b[i + 1] == b'U') {
                let n = if b[i + 1] == b'u' { 4 } else { 8 };
                let hex = b.get(i + 2..i + 2 + n)?;
                let v = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(char::from_u32(v)?);
                i += 2 + n;
            } else {
                out.push(char::from(b[i]));
                i += 1;
            }
        }
        Some(out)
    }

    /// Decodes a STRING argument: a quoted Python 2 `repr` of a byte string.
    fn unquote_string(l: &[u8]) -> Option<Vec<u8>> {
        let q = *l.first()?;
        if !(q == b'\'' || q == b'"') || l.len() < 2 || *l.last()? != q {
            return None;
        }
        let b = &l[1..l.len() - 1];
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let c = *b.get(i + 1)?;
            i += 2;
            match c {
                b'\\' | b'\'' | b'"' => out.push(c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'a' => out.push(7),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'v' => out.push(11),
                b'\n' => {}
                b'x' => {
                    let hex = b.get(i..i + 2)?;
                    out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                    i += 2;
                }
                b'0'..=b'7' => {
                    let mut v = (c - b'0') as u32;
                    for _ in 0..2 {
                        match b.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v * 8 + (d - b'0') as u32;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push((v & 0xff) as u8);
                }
                _ => {
                    out.push(b'\\');
                    out.push(c);
                }
            }
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------
// Minimal zip reader (stored entries, zip64 aware), for PyTorch checkpoints.

mod zip {
    use super::LinearWeightsError;

    pub(super) struct Entry<'a> {
        pub name: String,
        method: u16,
        flags: u16,
        local_offset: usize,
        comp_size: usize,
        data: &'a [u8],
    }

    pub(super) struct Archive<'a> {
        entries: Vec<Entry<'a>>,
    }

    fn err(m: impl Into<String>) -> LinearWeightsError {
        LinearWeightsError::Zip(m.into())
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            b.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            b.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }

    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(
            b.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    }

    fn to_usize(v: u64) -> usize {
        usize::try_from(v).unwrap_or(usize::MAX)
    }

    const EOCD: u32 = 0x0605_4b50;
    const ZIP64_LOCATOR: u32 = 0x0706_4b50;
    const ZIP64_EOCD: u32 = 0x0606_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const LOCAL: u32 = 0x0403_4b50;

    impl<'a> Archive<'a> {
        pub(super) fn parse(data: &'a [u8]) -> Result<Self, LinearWeightsError> {
            // End of central directory: 22 bytes + a comment of up to 65535.
            if data.len() < 22 {
                return Err(err("file too short for a zip archive (truncated?)"));
            }
            let lowest = data.len().saturating_sub(22 + 0xffff);
            let eocd = (lowest..=data.len() - 22)
                .rev()
                .find(|&p| u32_at(data, p) == Some(EOCD))
                .ok_or_else(|| err("no end-of-central-directory record (truncated file?)"))?;
            let mut count = u16_at(data, eocd + 10).unwrap_or(0) as u64;
            let mut cd_size = u32_at(data, eocd + 12).unwrap_or(0) as u64;
            let mut cd_off = u32_at(data, eocd + 16).unwrap_or(0) as u64;
            if count == 0xffff || cd_size == 0xffff_ffff || cd_off == 0xffff_ffff {
                let loc = eocd
                    .checked_sub(20)
                    .filter(|&l| u32_at(data, l) == Some(ZIP64_LOCATOR))
                    .ok_or_else(|| err("zip64 archive without a zip64 locator"))?;
                let z = to_usize(u64_at(data, loc + 8).unwrap_or(u64::MAX));
                if u32_at(data, z) != Some(ZIP64_EOCD) {
                    return Err(err("bad zip64 end-of-central-directory record"));
                }
                count = u64_at(data, z + 32).ok_or_else(|| err("truncated zip64 record"))?;
                cd_size = u64_at(data, z + 40).ok_or_else(|| err("truncated zip64 record"))?;
                cd_off = u64_at(data, z + 48).ok_or_else(|| err("truncated zip64 record"))?;
            }
            let (cd_off, cd_size) = (to_usize(cd_off), to_usize(cd_size));
            let cd = cd_off
                .checked_add(cd_size)
                .and_then(|end| data.get(cd_off..end))
                .ok_or_else(|| err("central directory lies outside the file"))?;
            // Each central entry takes at least 46 bytes.
            if count > (cd.len() / 46) as u64 {
                return Err(err(format!(
                    "{count} entries cannot fit a {}-byte central directory",
                    cd.len()
                )));
            }
            let mut entries = Vec::with_capacity(count as usize);
            let mut p = 0usize;
            for _ in 0..count {
                if u32_at(cd, p) != Some(CENTRAL) {
                    return Err(err("bad central directory entry"));
                }
                let field = |o: usize| u16_at(cd, p + o).ok_or_else(|| err("truncated entry"));
                let flags = field(8)?;
                let method = field(10)?;
                let name_len = field(28)? as usize;
                let extra_len = field(30)? as usize;
                let comment_len = field(32)? as usize;
                let mut comp = u32_at(cd, p + 20).ok_or_else(|| err("truncated entry"))? as u64;
                let mut uncomp = u32_at(cd, p + 24).ok_or_else(|| err("truncated entry"))? as u64;
                let mut local = u32_at(cd, p + 42).ok_or_else(|| err("truncated entry"))? as u64;
                let name = cd
                    .get(p + 46..p + 46 + name_len)
                    .ok_or_else(|| err("truncated entry name"))?;
                let extra = cd
                    .get(p + 46 + name_len..p + 46 + name_len + extra_len)
                    .ok_or_else(|| err("truncated entry extra field"))?;
                // Zip64 extended information (header id 1).
                let mut e = 0usize;
                while e + 4 <= extra.len() {
                    let id = u16_at(extra, e).unwrap_or(0);
                    let len = u16_at(extra, e + 2).unwrap_or(0) as usize;
                    let body = extra.get(e + 4..e + 4 + len).unwrap_or(&[]);
                    if id == 1 {
                        let mut q = 0usize;
                        for v in [&mut uncomp, &mut comp, &mut local] {
                            if *v == 0xffff_ffff {
                                *v = u64_at(body, q).ok_or_else(|| err("short zip64 field"))?;
                                q += 8;
                            }
                        }
                    }
                    e += 4 + len;
                }
                let _ = uncomp;
                let name = String::from_utf8_lossy(name).into_owned();
                entries.push(Entry {
                    name,
                    method,
                    flags,
                    local_offset: to_usize(local),
                    comp_size: to_usize(comp),
                    data: &[],
                });
                p += 46 + name_len + extra_len + comment_len;
            }
            // Locate each entry's data through its local header.
            for en in &mut entries {
                let lo = en.local_offset;
                if u32_at(data, lo) != Some(LOCAL) {
                    return Err(err(format!("bad local header for `{}`", en.name)));
                }
                let n =
                    u16_at(data, lo + 26).ok_or_else(|| err("truncated local header"))? as usize;
                let x =
                    u16_at(data, lo + 28).ok_or_else(|| err("truncated local header"))? as usize;
                let start = lo + 30 + n + x;
                en.data = start
                    .checked_add(en.comp_size)
                    .and_then(|end| data.get(start..end))
                    .ok_or_else(|| {
                        err(format!(
                            "data of `{}` runs past the end of the file",
                            en.name
                        ))
                    })?;
            }
            Ok(Archive { entries })
        }

        pub(super) fn names(&self) -> impl Iterator<Item = &str> {
            self.entries.iter().map(|e| e.name.as_str())
        }

        pub(super) fn find(&self, name: &str) -> Option<usize> {
            self.entries.iter().position(|e| e.name == name)
        }

        /// The stored bytes of entry `idx`.
        pub(super) fn data(&self, idx: usize) -> Result<&'a [u8], LinearWeightsError> {
            let e = self.entries.get(idx).ok_or_else(|| err("no such entry"))?;
            if e.flags & 1 != 0 {
                return Err(err(format!("entry `{}` is encrypted", e.name)));
            }
            if e.method != 0 {
                return Err(LinearWeightsError::Unsupported(format!(
                    "zip entry `{}` is compressed (method {}); PyTorch writes stored entries - \
                     re-save with torch.save, or use the legacy format \
                     (torch.save(obj, f, _use_new_zipfile_serialization=False))",
                    e.name, e.method
                )));
            }
            Ok(e.data)
        }
    }
}

impl fmt::Display for LinearWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} taps, channels {:?}",
            self.taps.len(),
            self.channels()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    // ----- locating optional external files ---------------------------------

    /// An E-LPIPS weights file from the upstream checkout: `$ELPIPS_UPSTREAM_DIR`
    /// first, then `../shared/upstream` beside the crate. `None` (with a note)
    /// when absent, so that the test passes where the files are not laid out.
    fn upstream_file(name: &str) -> Option<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(d) = std::env::var_os("ELPIPS_UPSTREAM_DIR") {
            let d = PathBuf::from(d);
            dirs.push(d.join("elpips").join("elpips"));
            dirs.push(d.join("elpips"));
            dirs.push(d);
        }
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        dirs.push(manifest.join("../shared/upstream/elpips/elpips"));
        // The crate's set-up cache mirrors the same layout.
        dirs.push(manifest.join(".cache/upstream/elpips/elpips"));
        let found = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        if found.is_none() {
            println!("note: skipping checks on {name}: not found (set ELPIPS_UPSTREAM_DIR)");
        }
        found
    }

    /// A `.pth` file of the lpips 0.1.4 wheel, unpacked under
    /// `$ELPIPS_LPIPS_WHEEL_DIR` (e.g. `rel` = `v0.1/vgg.pth`).
    fn lpips_file(rel: &str) -> Option<PathBuf> {
        let found = std::env::var_os("ELPIPS_LPIPS_WHEEL_DIR").and_then(|d| {
            let d = PathBuf::from(d);
            [
                d.join("lpips/weights").join(rel),
                d.join("weights").join(rel),
                d.join(rel),
            ]
            .into_iter()
            .find(|p| p.is_file())
        });
        if found.is_none() {
            println!(
                "note: skipping checks on lpips {rel}: not found (set ELPIPS_LPIPS_WHEEL_DIR to \
                 the unpacked lpips-0.1.4 wheel)"
            );
        }
        found
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Reference values computed with numpy 2.4 (`np.load(allow_pickle=True)`)
    /// and, for `.pth`, Python's pickle with a persistent-id loader.
    struct Expected {
        channels: &'static [usize],
        /// float64 sum of each tap's float32 values.
        sums: &'static [f64],
        first_bits: &'static [u32],
        last_bits: &'static [u32],
        max_bits: &'static [u32],
    }

    fn check(name: &str, w: &LinearWeights, e: &Expected) {
        assert_eq!(w.channels(), e.channels, "{name}: channels");
        for (i, tap) in w.taps.iter().enumerate() {
            let sum: f64 = tap.iter().map(|&x| x as f64).sum();
            let tol = 1e-6 * e.sums[i].abs().max(1e-12);
            assert!(
                (sum - e.sums[i]).abs() <= tol,
                "{name} tap {i}: sum {sum} vs numpy {}",
                e.sums[i]
            );
            let max = tap.iter().copied().fold(f32::MIN, f32::max);
            assert_eq!(tap[0].to_bits(), e.first_bits[i], "{name} tap {i}: first");
            assert_eq!(
                tap[tap.len() - 1].to_bits(),
                e.last_bits[i],
                "{name} tap {i}: last"
            );
            assert_eq!(max.to_bits(), e.max_bits[i], "{name} tap {i}: max");
        }
    }

    const VGG_FULL_AVG: Expected = Expected {
        channels: &[
            3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
        ],
        sums: &[
            0.008553611340175848,
            1.6359509364304756,
            0.5478619995939198,
            0.020262748310798884,
            0.2668497849624032,
            1.0150138960661934,
            0.46246673814814443,
            0.46392748956026253,
            2.110677610254527,
            2.8396672346977425,
            3.99940768432387,
            6.710127910915617,
            6.6765006647437986,
            8.840884405026827,
        ],
        first_bits: &[
            0x38f4496b, 0x38ad975b, 0x3797d769, 0, 0, 0, 0x38c13a98, 0x38fe3a94, 0x3987275e,
            0x3b68089e, 0x3bd49069, 0x3ca9e0dc, 0x3ca8e433, 0x39dbd2b0,
        ],
        last_bits: &[
            0x3c046d70, 0, 0x380d5c38, 0, 0x371f7ef0, 0x3981b142, 0x38134fb2, 0x381d25b0,
            0x39fa0c56, 0x389788ad, 0x3966e208, 0x3e05061a, 0x3c991e2b, 0x399c1382,
        ],
        max_bits: &[
            0x3c046d70, 0x3e56caa2, 0x3e3895c2, 0x3bae9161, 0x3e496875, 0x3e948ae2, 0x3e13ab62,
            0x3e4edcc7, 0x3ea8c211, 0x3e5ff424, 0x3e197996, 0x3e15f530, 0x3dee3f28, 0x3df27e8a,
        ],
    };

    const VGG_MAXPOOL: Expected = Expected {
        channels: &[64, 128, 256, 512, 512],
        sums: &[
            1.214005202819635,
            0.3052779531631131,
            0.4910639169680735,
            6.472949715743141,
            6.729606095916097,
        ],
        first_bits: &[0, 0, 0x36e22791, 0x3bc12b6b, 0x3bbaf313],
        last_bits: &[0, 0x370f8cd5, 0x3a054a43, 0x3b24b2a0, 0x39bfa19c],
        max_bits: &[0x3e9379d7, 0x3dbb1f64, 0x3e2f84c3, 0x3e284137, 0x3e1c787e],
    };

    const SQUEEZE: Expected = Expected {
        channels: &[64, 128, 256, 384, 384, 512, 512],
        sums: &[
            1.3532053156450274,
            0.12083318294207857,
            1.6305357446842663,
            9.812845754232967,
            3.9845794455495707,
            2.9682779605062706,
            3.7650817627438187,
        ],
        first_bits: &[
            0x3d14801e, 0x39734361, 0x3c3cb85f, 0x3ca071b2, 0x39a660da, 0x39dc1ccd, 0x39a911f8,
        ],
        last_bits: &[
            0x3a251327, 0x38dffc22, 0x3944bed0, 0x39ec7f5e, 0x3b0eaf51, 0x3884ea8d, 0x3babb066,
        ],
        max_bits: &[
            0x3e9b7029, 0x3c6df319, 0x3e479a87, 0x3e6e6279, 0x3e5588f3, 0x3e12bd6c, 0x3d95f8cc,
        ],
    };

    const SQUEEZE_FULL_MAXPOOL: Expected = Expected {
        channels: &[3, 64, 128, 128, 256, 256, 384, 384, 512, 512],
        sums: &[
            0.0003928501537302509,
            1.576486608288178,
            2.8031728167314895,
            0.0013801196422775774,
            6.09859138662091,
            1.4565863300453827,
            18.8389511340105,
            7.729688572802104,
            5.63771002594553,
            4.962215361793611,
        ],
        first_bits: &[
            0, 0x3b8fdb9a, 0, 0, 0x3d15b34d, 0x3d0c873b, 0x3d1b18a2, 0, 0, 0,
        ],
        last_bits: &[
            0x398d0d3e, 0x38c7c6ee, 0x38c8160c, 0, 0, 0, 0, 0x391f3f89, 0, 0x3c5c6604,
        ],
        max_bits: &[
            0x398d0d3e, 0x3eb1a473, 0x3e9c38d2, 0x39ec2c34, 0x3eb26829, 0x3e7cd656, 0x3ed4000e,
            0x3ea33de6, 0x3e6cd231, 0x3dde14b2,
        ],
    };

    const LPIPS_VGG: Expected = Expected {
        channels: &[64, 128, 256, 512, 512],
        sums: &[
            6.925991700962186,
            8.858334008604288,
            17.5150060467422,
            51.521323032677174,
            47.03485375829041,
        ],
        first_bits: &[0x3d4d41e2, 0x3d216bb9, 0x3d6d4c0f, 0x3d6cc818, 0x3d2ed1a6],
        last_bits: &[0x3d0d286e, 0x3d92e45b, 0x3d82a90f, 0x3d7f8941, 0x3d6ed24c],
        max_bits: &[0x3fa43352, 0x3ef38c5c, 0x3f01ad08, 0x3f165804, 0x3eeab846],
    };

    const LPIPS_ALEX: Expected = Expected {
        channels: &[64, 192, 384, 256, 256],
        sums: &[
            2.3495323137195783,
            16.1430274810632,
            39.26843924544403,
            27.197178440931964,
            20.317177099761324,
        ],
        first_bits: &[0x367e3544, 0, 0x38e3555f, 0x3e12076b, 0x3e45a651],
        last_bits: &[0, 0x3f22e104, 0x3d9121d7, 0x3dd073da, 0x3dad23a4],
        max_bits: &[0x3efbf9a0, 0x3f86092d, 0x3fa96aa4, 0x3f3f6ba2, 0x3ed37ddb],
    };

    const LPIPS_SQUEEZE: Expected = Expected {
        channels: &[64, 128, 256, 384, 384, 512, 512],
        sums: &[
            5.69010078176899,
            1.1852794939355817,
            16.326565414529796,
            71.01262408646244,
            37.37072320704965,
            24.26287240253683,
            17.590552752050012,
        ],
        first_bits: &[
            0x3e519f41, 0x37c84552, 0x3dcb4565, 0x3ed28c13, 0x3eb9bc5e, 0x3896b8b9, 0x3d1b5540,
        ],
        last_bits: &[
            0x3e015c21, 0x386ce51d, 0x37962c53, 0x39464fea, 0x39f687e0, 0, 0x3d48ccba,
        ],
        max_bits: &[
            0x3f613635, 0x3e847da5, 0x3fa1eece, 0x3f9ec80f, 0x3f7021cf, 0x3f56a8d0, 0x3e7276c0,
        ],
    };

    // ----- files written by the real numpy / torch ----------------------------
    // Small weight dicts saved by numpy 2.4 / 1.26 and torch 1.12.1 (whose
    // sources are noted beside each constant) so that the format paths are
    // tested against genuine writers without any external file.

    /// torch 1.12.1, `torch.save(d, f, _use_new_zipfile_serialization=False)` of
    /// `lin0.model.1.weight`: Parameter(base[2:5].view(1,3,1,1)),
    /// `lin1.model.1.weight`: base[::3].view(1,4,1,1) (strided, shared storage),
    /// `lin2.model.weight`: float64 arange(5)/8 as (1,1,5,1),
    /// `lin3.model.1.weight`: float16 [0, 0.25] as (1,2,1,1),
    /// `net.slice1.0.weight`: int64 zeros(2,2); base = arange(1,13)/16.
    /// `TORCH_ZIP_MIXED` is the same dict in the default zip format.
    const TORCH_LEGACY_MIXED: &str = "\
        80028a0a6cfc9c46f9206aa850192e80024de9032e80027d710028581000000070726f746f636f6c5f766572\
        73696f6e71014de903580d0000006c6974746c655f656e6469616e710288580a000000747970655f73697a65\
        7371037d710428580500000073686f727471054b025803000000696e7471064b0458040000006c6f6e677107\
        4b0475752e800263636f6c6c656374696f6e730a4f726465726564446963740a710029527101285813000000\
        6c696e302e6d6f64656c2e312e776569676874710263746f7263682e5f7574696c730a5f72656275696c645f\
        706172616d657465720a710363746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f7632\
        0a71042828580700000073746f72616765710563746f7263680a466c6f617453746f726167650a7106580e00\
        000039343839313131323835373133367107580300000063707571084b0c4e747109514b02284b014b034b01\
        4b0174710a284b034b014b014b0174710b8968002952710c74710d52710e8968002952710f87711052711158\
        130000006c696e312e6d6f64656c2e312e77656967687471126804282868056806580e000000393438393131\
        3132383537313336711368084b0c4e747114514b00284b014b044b014b01747115284b0c4b034b034b037471\
        168968002952711774711852711958110000006c696e322e6d6f64656c2e776569676874711a680428286805\
        63746f7263680a446f75626c6553746f726167650a711b580e0000003934383931313633393530333532711c\
        68084b054e74711d514b00284b014b014b054b0174711e284b054b054b014b0174711f896800295271207471\
        2152712258130000006c696e332e6d6f64656c2e312e776569676874712368042828680563746f7263680a48\
        616c6653746f726167650a7124580e0000003934383931313132383537303430712568084b024e747126514b\
        00284b014b024b014b01747127284b024b014b014b017471288968002952712974712a52712b58130000006e\
        65742e736c696365312e302e776569676874712c68042828680563746f7263680a4c6f6e6753746f72616765\
        0a712d580e0000003934383931313633393531343838712e68084b044e74712f514b004b024b028671304b02\
        4b0186713189680029527132747133527134752e80025d710028580e00000039343839313131323835373034\
        307101580e00000039343839313131323835373133367102580e000000393438393131363339353033353271\
        03580e00000039343839313136333935313438387104652e0200000000000000000000340c00000000000000\
        0000803d0000003e0000403e0000803e0000a03e0000c03e0000e03e0000003f0000103f0000203f0000303f\
        0000403f05000000000000000000000000000000000000000000c03f000000000000d03f000000000000d83f\
        000000000000e03f040000000000000000000000000000000000000000000000000000000000000000000000\
        00000000\
    ";
    const TORCH_ZIP_MIXED: &str = "\
        504b03040000080800000000000000000000000000000000000010001200617263686976652f646174612e70\
        6b6c46420e005a5a5a5a5a5a5a5a5a5a5a5a5a5a800263636f6c6c656374696f6e730a4f7264657265644469\
        63740a7100295271012858130000006c696e302e6d6f64656c2e312e776569676874710263746f7263682e5f\
        7574696c730a5f72656275696c645f706172616d657465720a710363746f7263682e5f7574696c730a5f7265\
        6275696c645f74656e736f725f76320a71042828580700000073746f72616765710563746f7263680a466c6f\
        617453746f726167650a71065801000000307107580300000063707571084b0c747109514b02284b014b034b\
        014b0174710a284b034b014b014b0174710b8968002952710c74710d52710e8968002952710f877110527111\
        58130000006c696e312e6d6f64656c2e312e77656967687471126804282868056806680768084b0c74711351\
        4b00284b014b044b014b01747114284b0c4b034b034b03747115896800295271167471175271185811000000\
        6c696e322e6d6f64656c2e776569676874711968042828680563746f7263680a446f75626c6553746f726167\
        650a711a580100000031711b68084b0574711c514b00284b014b014b054b0174711d284b054b054b014b0174\
        711e8968002952711f74712052712158130000006c696e332e6d6f64656c2e312e7765696768747122680428\
        28680563746f7263680a48616c6653746f726167650a7123580100000032712468084b02747125514b00284b\
        014b024b014b01747126284b024b014b014b017471278968002952712874712952712a58130000006e65742e\
        736c696365312e302e776569676874712b68042828680563746f7263680a4c6f6e6753746f726167650a712c\
        580100000033712d68084b0474712e514b004b024b0286712f4b024b01867130896800295271317471325271\
        33752e504b070808e2f8658302000083020000504b0304000008080000000000000000000000000000000000\
        000e004100617263686976652f646174612f3046423d005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\
        5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a0000803d\
        0000003e0000403e0000803e0000a03e0000c03e0000e03e0000003f0000103f0000203f0000303f0000403f\
        504b070875ce96603000000030000000504b0304000008080000000000000000000000000000000000000e00\
        1400617263686976652f646174612f31464210005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a0000000000000000\
        000000000000c03f000000000000d03f000000000000d83f000000000000e03f504b0708fcd8f2e528000000\
        28000000504b0304000008080000000000000000000000000000000000000e001c00617263686976652f6461\
        74612f32464218005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a00000034504b0708a92bf000\
        0400000004000000504b0304000008080000000000000000000000000000000000000e004000617263686976\
        652f646174612f3346423c005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\
        5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a00000000000000000000000000000000\
        00000000000000000000000000000000504b0708ad550a192000000020000000504b03040000080800000000\
        00000000000000000000000000000f002300617263686976652f76657273696f6e46421f005a5a5a5a5a5a5a\
        5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a330a504b0708d19e67550200000002000000504b\
        010200000000080800000000000008e2f8658302000083020000100000000000000000000000000000000000\
        617263686976652f646174612e706b6c504b010200000000080800000000000075ce96603000000030000000\
        0e00000000000000000000000000d3020000617263686976652f646174612f30504b01020000000008080000\
        00000000fcd8f2e528000000280000000e0000000000000000000000000080030000617263686976652f6461\
        74612f31504b0102000000000808000000000000a92bf00004000000040000000e0000000000000000000000\
        0000f8030000617263686976652f646174612f32504b0102000000000808000000000000ad550a1920000000\
        200000000e0000000000000000000000000054040000617263686976652f646174612f33504b010200000000\
        0808000000000000d19e675502000000020000000f00000000000000000000000000f0040000617263686976\
        652f76657273696f6e504b06062c000000000000001e032d0000000000000000000600000000000000060000\
        00000000006b010000000000005205000000000000504b060700000000bd0600000000000001000000504b05\
        0600000000060006006b010000520500000000\
    ";
    const NUMPY2_NPY: &str = "\
        934e554d5059010076007b276465736372273a20277c4f272c2027666f727472616e5f6f72646572273a2046\
        616c73652c20277368617065273a2028292c207d202020202020202020202020202020202020202020202020\
        2020202020202020202020202020202020202020202020202020202020202020202020202020200a80049540\
        010000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e73747275\
        63749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b012968038c\
        0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f7494\
        62895d947d94288c136c696e302e6d6f64656c2e312e77656967687494680268054b00859468078794529428\
        4b01284b014b014b034b017494680b8c02663494898887945294284b038c013c944e4e4e4affffffff4affff\
        ffff4b0074946289430c0000003f0000803e0000003e947494628c136c696e312e6d6f64656c2e312e776569\
        67687494680268054b008594680787945294284b01284b014b044b014b017494681a8943100000803f000000\
        4000000000000080409474946275617494622e\
    ";
    const NUMPY1_NPY_F8_BE: &str = "\
        934e554d5059010076007b276465736372273a20277c4f272c2027666f727472616e5f6f72646572273a2046\
        616c73652c20277368617065273a2028292c207d202020202020202020202020202020202020202020202020\
        2020202020202020202020202020202020202020202020202020202020202020202020202020200a8003636e\
        756d70792e636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e\
        6461727261790a71014b008571024301627103877104527105284b0129636e756d70790a64747970650a7106\
        58020000004f3871078988877108527109284b0358010000007c710a4e4e4e4affffffff4affffffff4b3f74\
        710b62895d710c7d710d2858130000006c696e302e6d6f64656c2e312e776569676874710e680068014b0085\
        710f6803877110527111284b01284b014b014b034b0174711268065802000000663871138988877114527115\
        284b0358010000003e71164e4e4e4affffffff4affffffff4b00747117628943183fe00000000000003fd000\
        00000000003fc000000000000071187471196258130000006c696e312e6d6f64656c2e312e77656967687471\
        1a680068014b0085711b680387711c52711d284b01284b014b044b014b0174711e680658020000006638711f\
        8988877120527121284b0368164e4e4e4affffffff4affffffff4b00747122628943203ff000000000000040\
        00000000000000000000000000000040100000000000007123747124627561747125622e\
    ";
    const NUMPY2_NPY_FORTRAN_F2: &str = "\
        934e554d5059010076007b276465736372273a20277c4f272c2027666f727472616e5f6f72646572273a2046\
        616c73652c20277368617065273a2028292c207d202020202020202020202020202020202020202020202020\
        2020202020202020202020202020202020202020202020202020202020202020202020202020200a80049532\
        010000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e73747275\
        63749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b012968038c\
        0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f7494\
        62895d947d94288c136c696e302e6d6f64656c2e312e77656967687494680268054b00859468078794529428\
        4b01284b014b014b034b017494680b8c02663294898887945294284b038c013c944e4e4e4affffffff4affff\
        ffff4b00749462894306003800340030947494628c136c696e312e6d6f64656c2e312e776569676874946802\
        68054b008594680787945294284b01284b014b044b014b017494681a894308003c0040000000449474946275\
        617494622e\
    ";
    const NUMPY2_PICKLE_P0: &str = "\
        286470300a566c696e302e6d6f64656c2e312e7765696768740a70310a636e756d70792e5f636f72652e6d75\
        6c746961727261790a5f7265636f6e7374727563740a70320a28636e756d70790a6e6461727261790a70330a\
        2849300a7470340a635f636f646563730a656e636f64650a70350a2856620a70360a566c6174696e310a7037\
        0a7470380a5270390a747031300a527031310a2849310a2849310a49310a49330a49310a747031320a636e75\
        6d70790a64747970650a7031330a285666340a7031340a4930300a4930310a747031350a527031360a284933\
        0a563c0a7031370a4e4e4e492d310a492d310a49300a747031380a624930300a67350a28565c75303030305c\
        75303030305c75303030303f5c75303030305c7530303030803e5c75303030305c75303030305c7530303030\
        3e0a7031390a67370a747032300a527032310a747032320a6273566c696e312e6d6f64656c2e312e77656967\
        68740a7032330a67320a2867330a2849300a747032340a67390a747032350a527032360a2849310a2849310a\
        49340a49310a49310a747032370a6731360a4930300a67350a28565c75303030305c7530303030803f5c7530\
        3030305c75303030305c7530303030405c75303030305c75303030305c75303030305c75303030305c753030\
        30305c753030303080400a7032380a67370a747032390a527033300a747033310a62732e\
    ";
    const NUMPY2_PICKLE_P5: &str = "\
        800595e7000000000000007d94288c136c696e302e6d6f64656c2e312e776569676874948c136e756d70792e\
        5f636f72652e6e756d65726963948c0b5f66726f6d62756666657294939428960c000000000000000000003f\
        0000803e0000003e948c056e756d7079948c0564747970659493948c02663494898887945294284b038c013c\
        944e4e4e4affffffff4affffffff4b00749462284b014b014b034b0174948c014394749452948c136c696e31\
        2e6d6f64656c2e312e776569676874946804289610000000000000000000803f000000400000000000008040\
        94680b284b014b044b014b017494680f74945294752e\
    ";

    fn mixed_expected() -> Vec<Vec<f32>> {
        vec![
            vec![0.1875, 0.25, 0.3125],
            vec![0.0625, 0.25, 0.4375, 0.625],
            vec![0.0, 0.125, 0.25, 0.375, 0.5],
            vec![0.0, 0.25],
        ]
    }

    /// Every numpy sample holds `lin0` = [0.5, 0.25, 0.125] as (1,1,3,1) and
    /// `lin1` = [1, 2, 0, 4] as (1,4,1,1).
    fn numpy_expected() -> Vec<Vec<f32>> {
        vec![vec![0.5, 0.25, 0.125], vec![1.0, 2.0, 0.0, 4.0]]
    }

    /// (name, file bytes, expected taps).
    type Sample = (&'static str, Vec<u8>, Vec<Vec<f32>>);

    fn genuine_samples() -> Vec<Sample> {
        vec![
            ("torch legacy", hex(TORCH_LEGACY_MIXED), mixed_expected()),
            ("torch zip", hex(TORCH_ZIP_MIXED), mixed_expected()),
            ("numpy 2 npy", hex(NUMPY2_NPY), numpy_expected()),
            ("numpy 1 npy >f8", hex(NUMPY1_NPY_F8_BE), numpy_expected()),
            (
                "numpy 2 npy fortran f2",
                hex(NUMPY2_NPY_FORTRAN_F2),
                numpy_expected(),
            ),
            (
                "numpy 2 pickle protocol 0",
                hex(NUMPY2_PICKLE_P0),
                numpy_expected(),
            ),
            (
                "numpy 2 pickle protocol 5",
                hex(NUMPY2_PICKLE_P5),
                numpy_expected(),
            ),
        ]
    }

    // ----- a tiny pickle writer for synthetic files ----------------------------

    const TUPLE1: u8 = 0x85;
    const TUPLE2: u8 = 0x86;
    const TUPLE3: u8 = 0x87;
    const NEWTRUE: u8 = 0x88;
    const NEWFALSE: u8 = 0x89;

    #[derive(Default)]
    struct Pk {
        b: Vec<u8>,
    }

    impl Pk {
        fn op(&mut self, o: u8) -> &mut Self {
            self.b.push(o);
            self
        }
        fn raw(&mut self, x: &[u8]) -> &mut Self {
            self.b.extend_from_slice(x);
            self
        }
        fn proto(&mut self, v: u8) -> &mut Self {
            self.raw(&[0x80, v])
        }
        fn int(&mut self, v: i64) -> &mut Self {
            if (0..256).contains(&v) {
                self.raw(&[b'K', v as u8])
            } else if (0..65536).contains(&v) {
                self.op(b'M').raw(&(v as u16).to_le_bytes())
            } else if i32::try_from(v).is_ok() {
                self.op(b'J').raw(&(v as i32).to_le_bytes())
            } else {
                self.raw(&[0x8a, 8]).raw(&v.to_le_bytes())
            }
        }
        fn uni(&mut self, s: &str) -> &mut Self {
            self.op(b'X')
                .raw(&(s.len() as u32).to_le_bytes())
                .raw(s.as_bytes())
        }
        fn sbs(&mut self, s: &[u8]) -> &mut Self {
            self.raw(&[b'U', s.len() as u8]).raw(s)
        }
        fn binstring(&mut self, s: &[u8]) -> &mut Self {
            self.op(b'T').raw(&(s.len() as i32).to_le_bytes()).raw(s)
        }
        fn global(&mut self, m: &str, n: &str) -> &mut Self {
            self.op(b'c')
                .raw(m.as_bytes())
                .op(b'\n')
                .raw(n.as_bytes())
                .op(b'\n')
        }
        fn put(&mut self, i: u8) -> &mut Self {
            self.raw(&[b'q', i])
        }
        fn get(&mut self, i: u8) -> &mut Self {
            self.raw(&[b'h', i])
        }
        fn int_tuple(&mut self, v: &[i64]) -> &mut Self {
            self.op(b'(');
            for &x in v {
                self.int(x);
            }
            self.op(b't')
        }
    }

    /// Bytes as a Python 3 str of latin-1 code points (UTF-8 encoded), as
    /// protocol 2 pickles `bytes`.
    fn latin1_str(b: &[u8]) -> String {
        b.iter().map(|&c| char::from(c)).collect()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    struct NpyTap<'a> {
        key: &'a str,
        shape: Vec<i64>,
        descr: &'a str,
        order: &'a str,
        raw: Vec<u8>,
    }

    fn f32_tap<'a>(key: &'a str, shape: &[i64], v: &[f32]) -> NpyTap<'a> {
        NpyTap {
            key,
            shape: shape.to_vec(),
            descr: "f4",
            order: "<",
            raw: f32_bytes(v),
        }
    }

    fn npy_wrap(payload: &[u8]) -> Vec<u8> {
        let mut header = String::from("{'descr': '|O', 'fortran_order': False, 'shape': (), }");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The pickle of an E-LPIPS `.npy` (a 0-d object array holding the dict),
    /// laid out as numpy writes it with protocol 2. With `py2`, keys and data
    /// are Python 2 byte strings (SHORT_BINSTRING / BINSTRING) instead.
    fn elpips_pickle(taps: &[NpyTap], py2: bool) -> Vec<u8> {
        let mut p = Pk::default();
        p.proto(2);
        p.global("numpy.core.multiarray", "_reconstruct").put(0);
        p.global("numpy", "ndarray").put(1);
        p.int(0).op(TUPLE1).put(2);
        p.global("_codecs", "encode").put(3);
        p.uni("b")
            .put(4)
            .uni("latin1")
            .put(5)
            .op(TUPLE2)
            .op(b'R')
            .put(7);
        p.op(TUPLE3).op(b'R').put(9);
        p.op(b'(').int(1).op(b')');
        p.global("numpy", "dtype")
            .put(10)
            .uni("O8")
            .int(0)
            .int(1)
            .op(TUPLE3)
            .op(b'R');
        p.op(b'(').int(3).uni("|").op(b'N').op(b'N').op(b'N');
        p.int(-1).int(-1).int(63).op(b't').op(b'b');
        p.op(NEWFALSE).op(b']').op(b'}').op(b'(');
        for t in taps {
            if py2 {
                p.sbs(t.key.as_bytes());
            } else {
                p.uni(t.key);
            }
            p.get(0).get(1).int(0).op(TUPLE1).get(7).op(TUPLE3).op(b'R');
            p.op(b'(').int(1).int_tuple(&t.shape);
            p.get(10).uni(t.descr).int(0).int(1).op(TUPLE3).op(b'R');
            p.op(b'(').int(3).uni(t.order).op(b'N').op(b'N').op(b'N');
            p.int(-1).int(-1).int(0).op(b't').op(b'b');
            p.op(NEWFALSE);
            if py2 {
                p.binstring(&t.raw);
            } else {
                p.get(3).uni(&latin1_str(&t.raw)).get(5).op(TUPLE2).op(b'R');
            }
            p.op(b't').op(b'b');
        }
        p.op(b'u').op(b'a').op(b't').op(b'b').op(b'.');
        p.b
    }

    fn elpips_npy(taps: &[NpyTap]) -> Vec<u8> {
        npy_wrap(&elpips_pickle(taps, false))
    }

    struct TorchTap<'a> {
        key: &'a str,
        storage: &'a str,
        storage_type: &'a str,
        offset: i64,
        size: Vec<i64>,
        stride: Vec<i64>,
        /// Legacy view metadata (view key, offset, size).
        view: Option<(&'a str, i64, i64)>,
    }

    fn tensor(key: &str, storage: &'static str, size: &[i64]) -> TorchTap<'static> {
        let key: &'static str = Box::leak(key.to_string().into_boxed_str());
        let mut stride = vec![1i64; size.len()];
        for k in (0..size.len().saturating_sub(1)).rev() {
            stride[k] = stride[k + 1] * size[k + 1];
        }
        TorchTap {
            key,
            storage,
            storage_type: "FloatStorage",
            offset: 0,
            size: size.to_vec(),
            stride,
            view: None,
        }
    }

    /// A legacy (non-zip) torch file, laid out as lpips' `vgg.pth`: magic,
    /// protocol, sys_info, `OrderedDict([[key, tensor], ...])`, storage keys,
    /// then each storage as an i64 element count and raw data.
    fn legacy_torch(taps: &[TorchTap], storages: &[(&str, usize, Vec<u8>)]) -> Vec<u8> {
        let mut p = Pk::default();
        p.proto(2).raw(&[0x8a, 10]);
        p.raw(&TORCH_LEGACY_MAGIC.to_le_bytes()[..10]).op(b'.');
        p.proto(2).int(1001).op(b'.');
        p.proto(2).op(b'}').op(b'(');
        p.sbs(b"protocol_version").int(1001);
        p.sbs(b"little_endian").op(NEWTRUE);
        p.sbs(b"type_sizes").op(b'}').op(b'(');
        p.sbs(b"int")
            .int(4)
            .sbs(b"short")
            .int(2)
            .sbs(b"long")
            .int(4)
            .op(b'u');
        p.op(b'u').op(b'.');
        p.proto(2)
            .global("collections", "OrderedDict")
            .op(b']')
            .op(b'(');
        for t in taps {
            let numel = storages
                .iter()
                .find(|s| s.0 == t.storage)
                .map_or(0, |s| (s.2.len() / s.1) as i64);
            p.op(b']').op(b'(').sbs(t.key.as_bytes());
            p.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
            p.op(b'(').sbs(b"storage").global("torch", t.storage_type);
            p.sbs(t.storage.as_bytes()).sbs(b"cpu").int(numel);
            match t.view {
                None => p.op(b'N'),
                Some((k, o, s)) => p.op(b'(').sbs(k.as_bytes()).int(o).int(s).op(b't'),
            };
            p.op(b't').op(b'Q');
            p.int(t.offset).int_tuple(&t.size).int_tuple(&t.stride);
            p.op(NEWFALSE)
                .global("collections", "OrderedDict")
                .op(b')')
                .op(b'R');
            p.op(b't').op(b'R').op(b'e');
        }
        p.op(b'e').op(TUPLE1).op(b'R').op(b'.');
        p.proto(2).op(b']').op(b'(');
        for s in storages {
            p.sbs(s.0.as_bytes());
        }
        p.op(b'e').op(b'.');
        for (_, elsize, data) in storages {
            p.raw(&((data.len() / elsize) as i64).to_le_bytes())
                .raw(data);
        }
        p.b
    }

    /// A zip archive of stored (or, with `method` != 0, claimed-compressed)
    /// entries; CRCs are left zero (the reader does not check them).
    fn zip_archive(entries: &[(&str, &[u8], u16)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, method) in entries {
            let offset = out.len() as u32;
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]); // extra, comment, disk, attrs
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    fn err_of(bytes: &[u8]) -> LinearWeightsError {
        match LinearWeights::from_bytes(bytes) {
            Ok(w) => panic!("expected an error, got {w}"),
            Err(e) => e,
        }
    }

    // ----- the upstream files ---------------------------------------------------

    #[test]
    fn elpips_vgg_full_avg_matches_numpy() {
        let Some(path) = upstream_file("vgg_full_avg.npy") else {
            return;
        };
        let w = LinearWeights::from_file(&path).unwrap();
        check("vgg_full_avg.npy", &w, &VGG_FULL_AVG);
    }

    #[test]
    fn elpips_vgg_maxpool_matches_numpy() {
        let Some(path) = upstream_file("vgg_maxpool.npy") else {
            return;
        };
        let w = LinearWeights::from_file(&path).unwrap();
        check("vgg_maxpool.npy", &w, &VGG_MAXPOOL);
    }

    #[test]
    fn elpips_squeeze_files_match_numpy() {
        for (name, e) in [
            ("squeeze.npy", &SQUEEZE),
            ("squeeze_full_maxpool.npy", &SQUEEZE_FULL_MAXPOOL),
        ] {
            if let Some(path) = upstream_file(name) {
                check(name, &LinearWeights::from_file(&path).unwrap(), e);
            }
        }
    }

    #[test]
    fn lpips_pth_files_match_reference() {
        for (rel, e) in [
            ("v0.1/vgg.pth", &LPIPS_VGG),
            ("v0.1/alex.pth", &LPIPS_ALEX),
            ("v0.1/squeeze.pth", &LPIPS_SQUEEZE),
        ] {
            if let Some(path) = lpips_file(rel) {
                check(rel, &LinearWeights::from_file(&path).unwrap(), e);
            }
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = LinearWeights::from_file(Path::new("/nonexistent/dir/vgg.npy")).unwrap_err();
        match &e {
            LinearWeightsError::Io { path, source } => {
                assert_eq!(path, Path::new("/nonexistent/dir/vgg.npy"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            _ => panic!("expected an io error, got {e}"),
        }
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }

    // ----- genuine numpy / torch output -------------------------------------------

    #[test]
    fn genuine_numpy_and_torch_files() {
        for (name, bytes, expected) in genuine_samples() {
            let w = LinearWeights::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(w.taps, expected, "{name}");
        }
    }

    #[test]
    fn zip64_end_of_central_directory() {
        // torch writes a zip64 end record too; force the reader to use it by
        // saturating the classic record's fields, as a >4 GiB archive would.
        let mut z = hex(TORCH_ZIP_MIXED);
        let eocd = (0..z.len() - 21)
            .rev()
            .find(|&p| z[p..p + 4] == [0x50, 0x4b, 0x05, 0x06])
            .unwrap();
        z[eocd + 8..eocd + 12].copy_from_slice(&[0xff; 4]);
        z[eocd + 16..eocd + 20].copy_from_slice(&[0xff; 4]);
        let w = LinearWeights::from_bytes(&z).unwrap();
        assert_eq!(w.taps, mixed_expected());
    }

    // ----- synthetic files --------------------------------------------------------

    #[test]
    fn synthetic_elpips_npy() {
        let bytes = elpips_npy(&[
            f32_tap("lin1.model.1.weight", &[1, 1, 2, 1], &[0.5, 1.5]),
            f32_tap("lin0.model.1.weight", &[1, 1, 3, 1], &[0.0, 0.25, 2.0]),
            f32_tap("lin2.model.1.weight", &[1, 1, 1, 1], &[7.0]),
        ]);
        let w = LinearWeights::from_bytes(&bytes).unwrap();
        assert_eq!(w.channels(), vec![3, 2, 1]);
        assert_eq!(
            w.taps,
            vec![vec![0.0, 0.25, 2.0], vec![0.5, 1.5], vec![7.0]]
        );
        // Bytes that are not ASCII survive the latin-1 round trip.
        let v = [f32::from_bits(0x3f80_80ff), 1e-30, 123.456];
        let w =
            LinearWeights::from_bytes(&elpips_npy(&[f32_tap("lin0.weight", &[1, 3, 1, 1], &v)]))
                .unwrap();
        assert_eq!(bits(&w.taps[0]), bits(&v));
    }

    #[test]
    fn synthetic_python2_pickle_strings() {
        let taps = [
            f32_tap("lin0.model.1.weight", &[1, 1, 2, 1], &[0.5, 1.5]),
            f32_tap("lin1.model.1.weight", &[1, 1, 1, 1], &[3.0]),
        ];
        let w = LinearWeights::from_bytes(&npy_wrap(&elpips_pickle(&taps, true))).unwrap();
        assert_eq!(w.taps, vec![vec![0.5, 1.5], vec![3.0]]);
        // The same pickle on its own (a bare `.pkl`).
        let w = LinearWeights::from_bytes(&elpips_pickle(&taps, false)).unwrap();
        assert_eq!(w.taps, vec![vec![0.5, 1.5], vec![3.0]]);
    }

    #[test]
    fn synthetic_dtypes_are_converted() {
        let f64_be: Vec<u8> = [0.5f64, 2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let f16: Vec<u8> = [0x3c00u16, 0x3800, 0x0001, 0x7bff]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f32_be: Vec<u8> = [1.25f32].iter().flat_map(|x| x.to_be_bytes()).collect();
        let bytes = elpips_npy(&[
            NpyTap {
                key: "lin0.model.1.weight",
                shape: vec![1, 1, 2, 1],
                descr: "f8",
                order: ">",
                raw: f64_be,
            },
            NpyTap {
                key: "lin1.model.1.weight",
                shape: vec![4],
                descr: "f2",
                order: "<",
                raw: f16,
            },
            NpyTap {
                key: "lin2.model.1.weight",
                shape: vec![1, 1],
                descr: "f4",
                order: ">",
                raw: f32_be,
            },
        ]);
        let w = LinearWeights::from_bytes(&bytes).unwrap();
        assert_eq!(w.taps[0], vec![0.5, 2.0]);
        assert_eq!(w.taps[1], vec![1.0, 0.5, 2f32.powi(-24), 65504.0]);
        assert_eq!(w.taps[2], vec![1.25]);
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn synthetic_legacy_torch() {
        // Storage "s0" holds 8 floats; lin0 is elements 1..4, lin1 every other
        // element from 2 (stride 2), lin2 a legacy view of storage "s1".
        let s0: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
        let s1: Vec<f32> = vec![9.0, 8.0, 7.0, 6.0];
        let mut lin0 = tensor("lin0.model.1.weight", "s0", &[1, 3, 1, 1]);
        lin0.offset = 1;
        let mut lin1 = tensor("lin1.model.1.weight", "s0", &[1, 3, 1, 1]);
        lin1.offset = 2;
        lin1.stride = vec![6, 2, 2, 2];
        let mut lin2 = tensor("lin2.model.1.weight", "s1", &[1, 2, 1, 1]);
        lin2.view = Some(("s1v", 1, 3));
        lin2.offset = 1;
        let bytes = legacy_torch(
            &[lin2, lin0, lin1],
            &[("s0", 4, f32_bytes(&s0)), ("s1", 4, f32_bytes(&s1))],
        );
        let w = LinearWeights::from_bytes(&bytes).unwrap();
        assert_eq!(w.channels(), vec![3, 3, 2]);
        assert_eq!(w.taps[0], vec![0.5, 1.0, 1.5]);
        assert_eq!(w.taps[1], vec![1.0, 2.0, 3.0]);
        assert_eq!(w.taps[2], vec![7.0, 6.0]);
    }

    #[test]
    fn synthetic_torch_zip() {
        // A zip checkpoint made of a bare-pickle state dict with persistent ids.
        let mut p = Pk::default();
        p.proto(2).op(b'}').op(b'(').uni("lin0.model.1.weight");
        p.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        p.op(b'(').uni("storage").global("torch", "FloatStorage");
        p.uni("0").uni("cpu").int(2).op(b't').op(b'Q');
        p.int(0)
            .int_tuple(&[1, 2, 1, 1])
            .int_tuple(&[2, 1, 1, 1])
            .op(NEWFALSE);
        p.global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(b't')
            .op(b'R');
        p.op(b'u').op(b'.');
        let data = f32_bytes(&[0.75, 0.5]);
        let ok = zip_archive(&[
            ("w/data.pkl", &p.b, 0),
            ("w/byteorder", b"little", 0),
            ("w/data/0", &data, 0),
            ("w/version", b"3\n", 0),
        ]);
        assert_eq!(
            LinearWeights::from_bytes(&ok).unwrap().taps,
            vec![vec![0.75, 0.5]]
        );

        let deflated = zip_archive(&[("w/data.pkl", &p.b, 0), ("w/data/0", &data, 8)]);
        let e = err_of(&deflated);
        assert!(matches!(e, LinearWeightsError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("compressed"), "{e}");

        let big_endian = zip_archive(&[
            ("w/data.pkl", &p.b, 0),
            ("w/byteorder", b"big", 0),
            ("w/data/0", &data, 0),
        ]);
        assert!(err_of(&big_endian).to_string().contains("little-endian"));

        let no_storage = zip_archive(&[("w/data.pkl", &p.b, 0)]);
        assert!(err_of(&no_storage).to_string().contains("w/data/0"));

        let not_torch = zip_archive(&[("readme.txt", b"hello", 0)]);
        assert!(err_of(&not_torch).to_string().contains("data.pkl"));
    }

    #[test]
    fn key_variants_and_ignored_keys() {
        let bytes = elpips_npy(&[
            f32_tap("module.lin1.model.weight", &[1, 1, 1, 1], &[2.0]),
            f32_tap("net.slice1.0.weight", &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]),
            f32_tap("lin0.weight", &[1, 1, 1, 1], &[1.0]),
        ]);
        let w = LinearWeights::from_bytes(&bytes).unwrap();
        assert_eq!(w.taps, vec![vec![1.0], vec![2.0]]);
    }

    // ----- errors -----------------------------------------------------------------

    #[test]
    fn tap_index_errors() {
        let one = |k: &'static str| f32_tap(k, &[1, 1, 1, 1], &[1.0]);
        let e = err_of(&elpips_npy(&[
            one("lin0.model.1.weight"),
            one("lin2.model.1.weight"),
        ]));
        assert!(
            matches!(e, LinearWeightsError::MissingTap { index: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("lin1.model.1.weight"), "{e}");

        let e = err_of(&elpips_npy(&[one("lin1.model.1.weight")]));
        assert!(
            matches!(e, LinearWeightsError::MissingTap { index: 0, .. }),
            "{e}"
        );

        let e = err_of(&elpips_npy(&[
            one("lin0.model.1.weight"),
            one("lin0.model.weight"),
        ]));
        assert!(
            matches!(e, LinearWeightsError::DuplicateTap { index: 0, .. }),
            "{e}"
        );

        let e = err_of(&elpips_npy(&[
            one("lin0.model.1.weight"),
            one("lin0.model.1.bias"),
        ]));
        assert!(matches!(e, LinearWeightsError::UnexpectedKey { .. }), "{e}");

        let e = err_of(&elpips_npy(&[one("lin99999999999999999999999.weight")]));
        assert!(matches!(e, LinearWeightsError::UnexpectedKey { .. }), "{e}");

        let e = err_of(&elpips_npy(&[one("conv.weight"), one("scaling.shift")]));
        assert!(matches!(e, LinearWeightsError::NoTaps { .. }), "{e}");
        assert!(e.to_string().contains("conv.weight"), "{e}");

        let e = err_of(&elpips_npy(&[
            one("lin1.model.1.weight"),
            one("lin3.model.1.weight"),
        ]));
        assert!(e.to_string().contains("[1, 3]"), "{e}");
    }

    #[test]
    fn value_and_shape_errors() {
        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[1, 2, 3, 1],
            &[1.0; 6],
        )]));
        assert!(matches!(e, LinearWeightsError::BadShape { .. }), "{e}");
        assert!(e.to_string().contains("[1, 2, 3, 1]"), "{e}");

        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[1, 0, 1, 1],
            &[],
        )]));
        assert!(matches!(e, LinearWeightsError::BadShape { .. }), "{e}");

        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[1, 4, 1, 1],
            &[1.0; 3],
        )]));
        assert!(matches!(e, LinearWeightsError::Structure { .. }), "{e}");

        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[3],
            &[1.0, -0.5, 2.0],
        )]));
        assert!(
            matches!(e, LinearWeightsError::Negative { channel: 1, .. }),
            "{e}"
        );
        // -0.0 is not negative.
        assert!(
            LinearWeights::from_bytes(&elpips_npy(&[f32_tap("lin0.weight", &[1], &[-0.0])]))
                .is_ok()
        );

        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[2],
            &[1.0, f32::NAN],
        )]));
        assert!(
            matches!(e, LinearWeightsError::NonFinite { channel: 1, .. }),
            "{e}"
        );
        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[1],
            &[f32::INFINITY],
        )]));
        assert!(matches!(e, LinearWeightsError::NonFinite { .. }), "{e}");

        let e = err_of(&elpips_npy(&[NpyTap {
            key: "lin0.model.1.weight",
            shape: vec![2],
            descr: "i4",
            order: "<",
            raw: vec![0; 8],
        }]));
        assert!(
            matches!(e, LinearWeightsError::UnsupportedDtype { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("i4"), "{e}");

        let mut t = tensor("lin0.model.1.weight", "s", &[1, 2, 1, 1]);
        t.storage_type = "LongStorage";
        let e = err_of(&legacy_torch(&[t], &[("s", 8, vec![0; 16])]));
        assert!(
            matches!(e, LinearWeightsError::UnsupportedDtype { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("LongStorage"), "{e}");

        // A tensor reaching past its storage.
        let mut t = tensor("lin0.model.1.weight", "s", &[1, 2, 1, 1]);
        t.offset = 1;
        let e = err_of(&legacy_torch(&[t], &[("s", 4, f32_bytes(&[1.0, 2.0]))]));
        assert!(matches!(e, LinearWeightsError::Structure { .. }), "{e}");
    }

    #[test]
    fn format_errors() {
        let e = err_of(b"");
        assert!(matches!(e, LinearWeightsError::UnknownFormat { .. }), "{e}");
        let e = err_of(b"hello world");
        assert!(matches!(e, LinearWeightsError::UnknownFormat { .. }), "{e}");
        assert!(e.to_string().contains("68 65 6c 6c"), "{e}");
        // A plain numeric .npy array.
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }          \n";
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        npy.extend_from_slice(&1f32.to_le_bytes());
        let e = err_of(&npy);
        assert!(matches!(e, LinearWeightsError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("<f4"), "{e}");
        // Unknown pickle opcode: named with its byte and offset.
        let e = err_of(b"\x80\x02\xff");
        assert!(
            matches!(
                e,
                LinearWeightsError::UnsupportedOpcode {
                    opcode: 0xff,
                    offset: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("0xff") && e.to_string().contains("offset 2"),
            "{e}"
        );
        let e = err_of(b"\x80\x02\x82\x01.");
        assert!(e.to_string().contains("EXT1"), "{e}");
        // Not a dict at the top.
        let e = err_of(b"\x80\x02K\x05.");
        assert!(matches!(e, LinearWeightsError::Structure { .. }), "{e}");
        assert!(e.to_string().contains("int 5"), "{e}");
        // A zip torch file whose zip structure is broken.
        let e = err_of(b"PK\x03\x04 not really a zip");
        assert!(matches!(e, LinearWeightsError::Zip(_)), "{e}");
        // Legacy torch with a wrong protocol version.
        let mut bad = legacy_torch(&[], &[]);
        let pos = bad
            .windows(3)
            .position(|w| w == [b'M', 0xe9, 0x03])
            .unwrap();
        bad[pos + 1] = 0xea;
        let e = err_of(&bad);
        assert!(e.to_string().contains("1002"), "{e}");
    }

    #[test]
    fn pickle_vm_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x80\x02", "end of data"),
            (b"\x80\x02h\x07.", "memo key 7"),
            (b"\x80\x02.", "stack underflow"),
            (b"\x80\x02(.", "stack underflow"),
            (b"\x80\x02K\x01a.", "stack underflow"),
            (b"\x80\x02K\x01K\x02a.", "not a list"),
            (b"\x80\x02t.", "no MARK"),
            (b"\x80\x02X\xff\xff\xff\xffabc", "needs 4294967295 bytes"),
            (
                b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7fabc",
                "bytes but only",
            ),
            (b"\x80\x02\x8b\xff\xff\xff\xff", "negative LONG4"),
            (b"\x80\x09.", "protocol 9"),
            (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "UTF-8"),
            (b"\x80\x02cnumpy", "unterminated"),
            (b"\x80\x02K\x01K\x02\x93.", "two strings"),
        ];
        for (bytes, needle) in cases {
            let e = err_of(bytes);
            assert!(
                matches!(e, LinearWeightsError::Pickle { .. }),
                "{bytes:?}: expected a pickle error, got {e}"
            );
            assert!(e.to_string().contains(needle), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn shared_data_cannot_blow_up() {
        // Many taps referencing one memoized 64 KiB buffer: the decoded data
        // would be far larger than the file, which is refused.
        let raw = f32_bytes(&vec![0.5f32; 16384]);
        let mut p = Pk::default();
        p.proto(2).op(b'}').op(b'(');
        for i in 0..400 {
            p.uni(&format!("lin{i}.weight"));
            p.global("numpy.core.multiarray", "_reconstruct")
                .op(b'(')
                .op(b't')
                .op(b'R');
            p.op(b'(').int(1).int_tuple(&[16384]);
            p.global("numpy", "dtype").uni("f4").op(TUPLE1).op(b'R');
            p.op(NEWFALSE);
            if i == 0 {
                p.op(b'B')
                    .raw(&(raw.len() as u32).to_le_bytes())
                    .raw(&raw)
                    .put(1);
            } else {
                p.get(1);
            }
            p.op(b't').op(b'b');
        }
        p.op(b'u').op(b'.');
        let e = err_of(&p.b);
        assert!(matches!(e, LinearWeightsError::Structure { .. }), "{e}");
        assert!(e.to_string().contains("shared or repeated"), "{e}");
    }

    #[test]
    fn hostile_sizes_are_refused_without_allocating() {
        // A shape whose element count overflows.
        let e = err_of(&elpips_npy(&[f32_tap(
            "lin0.model.1.weight",
            &[1, 1 << 40, 1 << 40, 1],
            &[1.0],
        )]));
        assert!(matches!(e, LinearWeightsError::BadShape { .. }), "{e}");
        // A legacy storage claiming 2^60 elements.
        let mut bytes = legacy_torch(
            &[tensor("lin0.model.1.weight", "s", &[1, 1, 1, 1])],
            &[("s", 4, f32_bytes(&[1.0]))],
        );
        let n = bytes.len();
        bytes[n - 12..n - 4].copy_from_slice(&(1i64 << 60).to_le_bytes());
        let e = err_of(&bytes);
        assert!(matches!(e, LinearWeightsError::Torch(_)), "{e}");
        // A huge tensor stride.
        let mut t = tensor("lin0.model.1.weight", "s", &[1, 2, 1, 1]);
        t.stride = vec![2, i64::MAX, 1, 1];
        let e = err_of(&legacy_torch(&[t], &[("s", 4, f32_bytes(&[1.0, 2.0]))]));
        assert!(matches!(e, LinearWeightsError::Structure { .. }), "{e}");
        // A negative tensor stride.
        let mut t = tensor("lin0.model.1.weight", "s", &[1, 2, 1, 1]);
        t.stride = vec![2, -1, 1, 1];
        let e = err_of(&legacy_torch(&[t], &[("s", 4, f32_bytes(&[1.0, 2.0]))]));
        assert!(matches!(e, LinearWeightsError::BadShape { .. }), "{e}");
        // Memo indices are not allocated densely.
        assert!(LinearWeights::from_bytes(b"\x80\x02}r\xff\xff\xff\xff.").is_err());
        // A zip central directory claiming 65535 entries.
        let mut z = zip_archive(&[("a/data.pkl", b"\x80\x02}.", 0)]);
        let n = z.len();
        z[n - 12..n - 10].copy_from_slice(&[0xff, 0xff]);
        z[n - 14..n - 12].copy_from_slice(&[0xff, 0xff]);
        assert!(matches!(err_of(&z), LinearWeightsError::Zip(_)));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        // 200k nested lists, and a tuple DAG whose expansion is 2^100000:
        // nothing walks the graph recursively.
        let mut p = Pk::default();
        p.proto(2);
        for _ in 0..200_000 {
            p.op(b']');
        }
        for _ in 0..199_999 {
            p.op(b'a');
        }
        p.op(b'.');
        assert!(matches!(err_of(&p.b), LinearWeightsError::Structure { .. }));
        let mut p = Pk::default();
        p.proto(2).op(b')');
        for _ in 0..100_000 {
            p.op(b'2').op(TUPLE2);
        }
        p.op(b'.');
        assert!(matches!(err_of(&p.b), LinearWeightsError::Structure { .. }));
    }

    // ----- robustness: damaged files only ever give errors ----------------------

    fn no_panic(label: &str, bytes: &[u8]) {
        if catch_unwind(AssertUnwindSafe(|| LinearWeights::from_bytes(bytes))).is_err() {
            panic!("{label}: panicked");
        }
    }

    /// Truncates at every `cut_step`-th offset and damages every `flip_step`-th
    /// byte in a few ways; also applies pseudo-random multi-byte damage.
    /// Nothing may panic, and no truncation may be accepted.
    fn fuzz(name: &str, bytes: &[u8], cut_step: usize, flip_step: usize, random_rounds: usize) {
        for cut in (0..bytes.len()).step_by(cut_step) {
            let r = catch_unwind(AssertUnwindSafe(|| {
                LinearWeights::from_bytes(&bytes[..cut])
            }));
            match r {
                Err(_) => panic!("{name}: truncation at {cut} panicked"),
                // Every sample needs all of its bytes.
                Ok(r) => assert!(r.is_err(), "{name}: truncation at {cut} was accepted"),
            }
        }
        let mut m = bytes.to_vec();
        for i in (0..bytes.len()).step_by(flip_step) {
            for v in [
                bytes[i] ^ 0xff,
                bytes[i] ^ 0x01,
                bytes[i] ^ 0x80,
                0x00,
                0x7f,
            ] {
                m[i] = v;
                no_panic(&format!("{name}: byte {i} set to {v:#04x}"), &m);
            }
            m[i] = bytes[i];
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..random_rounds {
            let mut m = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                m[i] = next() as u8;
            }
            no_panic(&format!("{name}: random round {round}"), &m);
        }
    }

    #[test]
    fn fuzz_synthetic_and_genuine_files() {
        let mut samples = genuine_samples()
            .into_iter()
            .map(|(n, b, _)| (n.to_string(), b))
            .collect::<Vec<_>>();
        let s: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let mut t = tensor("lin1.model.1.weight", "s", &[1, 2, 1, 1]);
        t.view = Some(("v", 2, 4));
        samples.push((
            "synthetic legacy torch".into(),
            legacy_torch(
                &[tensor("lin0.model.1.weight", "s", &[1, 3, 1, 1]), t],
                &[("s", 4, f32_bytes(&s))],
            ),
        ));
        samples.push((
            "synthetic npy".into(),
            elpips_npy(&[
                f32_tap("lin0.model.1.weight", &[1, 1, 3, 1], &[0.0, 0.25, 2.0]),
                f32_tap("lin1.model.1.weight", &[1, 1, 2, 1], &[0.5, 1.5]),
            ]),
        ));
        for (name, bytes) in &samples {
            fuzz(name, bytes, 1, 1, 1000);
        }
    }

    #[test]
    fn fuzz_upstream_files() {
        // Strided, to keep debug-build test time in check.
        for (name, cut_step, flip_step) in
            [("vgg_maxpool.npy", 13, 29), ("vgg_full_avg.npy", 97, 193)]
        {
            let Some(path) = upstream_file(name) else {
                continue;
            };
            let bytes = std::fs::read(path).unwrap();
            fuzz(name, &bytes, cut_step, flip_step, 150);
        }
        if let Some(path) = lpips_file("v0.1/vgg.pth") {
            fuzz("lpips vgg.pth", &std::fs::read(path).unwrap(), 11, 23, 200);
        }
    }
}
