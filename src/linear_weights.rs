//! Reader for LPIPS-style linear-layer weights ("lin" taps), from safetensors files only.
//!
//! LPIPS and E-LPIPS weight every feature channel of every network tap with a non-negative
//! scalar. This module owns reading those weights from a file a user names (`--lin-weights`,
//! `ElpipsOptions.linear_weights`) and checking each value; whether the taps fit a metric is the
//! metric's check (`Metric::new`), which knows the channel counts.
//!
//! The file is a [safetensors](https://huggingface.co/docs/safetensors) file (parsed by the
//! `safetensors` crate) holding one float32 tensor per tap, named `lin<i>` or, as in an lpips
//! state dict, `lin<i>.model.1.weight` (optionally behind a module prefix such as `module.`),
//! of shape `[C]`, `[1, C, 1, 1]` (torch) or `[1, 1, C, 1]` (the authors' TensorFlow layout).
//! Tensors without a `lin<i>` segment (a whole lpips state dict's backbone) are ignored.
//!
//! The authors' `.npy` dicts and lpips `.pth` files are pickles, and loading a pickle can run
//! code, so they are never parsed here: they are recognised by their magic bytes and refused
//! with the command that converts them (`weights/convert.py safetensors`, whose unpickler
//! allows an exact list of globals).

use std::fmt;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// Per-tap linear weights, in tap order (`lin0`, `lin1`, ...). Each `Vec` has the
/// tap's channel count.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearWeights {
    /// One `Vec` per tap, each value finite and >= 0.
    pub taps: Vec<Vec<f32>>,
}

/// The command that turns the authors' `.npy` dicts and lpips `.pth` files into safetensors.
pub const CONVERT_COMMAND: &str = "python3 weights/convert.py safetensors IN OUT";

/// Why linear weights could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LinearWeightsError {
    /// The file could not be read (the message leaves the path to the caller,
    /// who usually prefixes it; it is in `path`).
    #[error("cannot read the linear weights file: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pickle-based file (`.npy`, `.pth`, pickle): refused unread, since unpickling can run code.
    #[error(
        "it is {format} file; elpips reads linear weights from safetensors only (pickles can run \
         code): convert it with `{CONVERT_COMMAND}`"
    )]
    PickleBased {
        /// What the magic bytes say it is ("a NumPy .npy", ...).
        format: &'static str,
    },
    #[error(
        "not a safetensors file (it starts with {prefix}); linear weights are safetensors, and \
         `{CONVERT_COMMAND}` converts the authors' .npy dicts and lpips .pth files"
    )]
    /// Neither safetensors nor a recognised pickle-based format.
    UnknownFormat {
        /// The first bytes, in hex (or that the file is empty).
        prefix: String,
    },
    /// The safetensors header or offsets are invalid (the crate's message).
    #[error("malformed safetensors file: {0}")]
    Safetensors(String),
    #[error(
        "no linear-layer weights found: expected tensors `lin0`, `lin1`, ... or \
         `lin0.model.1.weight`, ... (found: {found})"
    )]
    /// No tensor is a tap.
    NoTaps {
        /// Some of the tensor names found.
        found: String,
    },
    #[error(
        "missing tap {index} (`lin{index}` or `lin{index}.model.1.weight`): tap indices must run \
         from 0 without gaps (found taps {found:?})"
    )]
    /// The tap indices have a gap.
    MissingTap {
        /// The first missing index.
        index: usize,
        /// The indices present.
        found: Vec<usize>,
    },
    #[error("tap {index} is given twice: `{first}` and `{second}`")]
    /// Two tensors name the same tap.
    DuplicateTap {
        /// The tap.
        index: usize,
        /// The two tensor names.
        first: String,
        /// See `first`.
        second: String,
    },
    #[error(
        "unexpected tensor `{key}`: a tap is named `lin<i>` or `lin<i>.model.1.weight` (a 1x1 \
         convolution without bias)"
    )]
    /// A `lin<i>` tensor that is not a tap's weight (a bias, say).
    UnexpectedKey {
        /// Its name.
        key: String,
    },
    #[error("`{key}` has shape {shape:?}: expected [C], [1, C, 1, 1] or [1, 1, C, 1] with C >= 1")]
    /// A tap whose shape is not `[C]`, `[1, C, 1, 1]` or `[1, 1, C, 1]`.
    BadShape {
        /// The tensor.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    #[error("`{key}` has element type {dtype}: expected F32 (float32)")]
    /// A tap that is not float32.
    UnsupportedDtype {
        /// The tensor.
        key: String,
        /// Its safetensors dtype.
        dtype: String,
    },
    #[error("`{key}` channel {channel}: weight {value} is not finite")]
    /// A weight that is NaN or infinite.
    NonFinite {
        /// The tensor.
        key: String,
        /// The channel.
        channel: usize,
        /// The value.
        value: f32,
    },
    #[error("`{key}` channel {channel}: weight {value} is negative (LPIPS weights are >= 0)")]
    /// A negative weight.
    Negative {
        /// The tensor.
        key: String,
        /// The channel.
        channel: usize,
        /// The value.
        value: f32,
    },
}

type Result<T> = std::result::Result<T, LinearWeightsError>;

impl LinearWeights {
    /// Reads linear weights from a safetensors file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| LinearWeightsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Parses linear weights from the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if let Some(format) = pickle_based(bytes) {
            return Err(LinearWeightsError::PickleBased { format });
        }
        // A safetensors header is a JSON object right after its u64 length.
        if bytes.get(8) != Some(&b'{') {
            return Err(LinearWeightsError::UnknownFormat {
                prefix: describe_prefix(bytes),
            });
        }
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| LinearWeightsError::Safetensors(e.to_string()))?;
        let mut taps: Vec<(usize, String)> = Vec::new();
        let mut other: Vec<String> = Vec::new();
        for name in file.names() {
            match tap_index(name) {
                Tap::Index(i) => taps.push((i, name.to_string())),
                Tap::Other => other.push(format!("`{name}`")),
                Tap::Unexpected => {
                    return Err(LinearWeightsError::UnexpectedKey {
                        key: name.to_string(),
                    })
                }
            }
        }
        if taps.is_empty() {
            other.sort();
            other.truncate(8);
            return Err(LinearWeightsError::NoTaps {
                found: if other.is_empty() {
                    "no tensors".into()
                } else {
                    other.join(", ")
                },
            });
        }
        taps.sort();
        if let Some(w) = taps.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LinearWeightsError::DuplicateTap {
                index: w[0].0,
                first: w[0].1.clone(),
                second: w[1].1.clone(),
            });
        }
        if let Some(index) = taps.iter().enumerate().position(|(k, t)| t.0 != k) {
            return Err(LinearWeightsError::MissingTap {
                index,
                found: taps.iter().map(|t| t.0).collect(),
            });
        }
        let mut out = Vec::with_capacity(taps.len());
        for (_, key) in &taps {
            let view = file
                .tensor(key)
                .map_err(|e| LinearWeightsError::Safetensors(e.to_string()))?;
            out.push(channels(key, view.dtype(), view.shape(), view.data())?);
        }
        Ok(LinearWeights { taps: out })
    }

    /// Channel count of every tap, in tap order.
    pub fn channels(&self) -> Vec<usize> {
        self.taps.iter().map(Vec::len).collect()
    }
}

/// The pickle-based formats, by their magic bytes: what the user is told the file is.
fn pickle_based(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x93NUMPY") {
        Some("a NumPy .npy")
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some("a zip (PyTorch .pth)")
    } else if bytes.first() == Some(&0x80)
        && matches!(bytes.get(1), Some(2..=5))
        && bytes.get(8) != Some(&b'{')
    {
        // PROTO 2..5 opens every pickle a legacy `.pth` or `pickle.dump` writes. A safetensors
        // file whose header length happens to start with those bytes has `{` at byte 8.
        Some("a pickle (legacy PyTorch .pth)")
    } else {
        None
    }
}

fn describe_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: the file is empty".into();
    }
    let head = &bytes[..bytes.len().min(8)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!("bytes {}", hex.join(" "))
}

enum Tap {
    Index(usize),
    /// No `lin<i>` segment: another tensor of a state dict, ignored.
    Other,
    /// A `lin<i>` segment followed by something that is not a tap's weight (e.g. a bias).
    Unexpected,
}

/// `lin{i}` or `lin{i}.model.1.weight`, optionally behind a module prefix (`module.`, `net.`).
fn tap_index(key: &str) -> Tap {
    let segs: Vec<&str> = key.split('.').collect();
    let Some(pos) = segs.iter().position(|s| {
        s.len() > 3 && s.starts_with("lin") && s[3..].bytes().all(|b| b.is_ascii_digit())
    }) else {
        return Tap::Other;
    };
    let Ok(index) = segs[pos][3..].parse::<usize>() else {
        return Tap::Unexpected;
    };
    match &segs[pos + 1..] {
        [] | ["model", "1", "weight"] => Tap::Index(index),
        _ => Tap::Unexpected,
    }
}

/// A tap's `C` little-endian float32 values, each finite and >= 0.
fn channels(key: &str, dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<Vec<f32>> {
    if dtype != Dtype::F32 {
        return Err(LinearWeightsError::UnsupportedDtype {
            key: key.to_string(),
            dtype: format!("{dtype:?}"),
        });
    }
    let c = match *shape {
        [c] | [1, c, 1, 1] | [1, 1, c, 1] if c >= 1 => c,
        _ => {
            return Err(LinearWeightsError::BadShape {
                key: key.to_string(),
                shape: shape.to_vec(),
            })
        }
    };
    // The crate checked that the data is exactly shape x 4 bytes; this guards the invariant.
    if data.len() != c * 4 {
        return Err(LinearWeightsError::Safetensors(format!(
            "`{key}` holds {} bytes for {c} float32 values",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(c);
    for (channel, b) in data.chunks_exact(4).enumerate() {
        let value = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !value.is_finite() {
            return Err(LinearWeightsError::NonFinite {
                key: key.to_string(),
                channel,
                value,
            });
        }
        if value < 0.0 {
            return Err(LinearWeightsError::Negative {
                key: key.to_string(),
                channel,
                value,
            });
        }
        out.push(value);
    }
    Ok(out)
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

    /// A converted upstream file written by the set-up (`weights/setup.py`: `.cache/linear/`).
    fn converted(name: &str) -> PathBuf {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".cache/linear")
            .join(name);
        assert!(
            p.is_file(),
            "{} is missing: run `make setup` first",
            p.display()
        );
        p
    }

    /// A safetensors file with the given tensors (name, dtype, shape, raw data), in order.
    fn safetensors(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let start = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let mut h = serde_json::Value::Object(header).to_string().into_bytes();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(data);
        out
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn err(bytes: &[u8]) -> String {
        LinearWeights::from_bytes(bytes).unwrap_err().to_string()
    }

    /// Reference values computed with numpy 2.4 from the original files
    /// (`np.load(allow_pickle=True)`; for `.pth`, Python's pickle with a persistent-id loader):
    /// the converted safetensors must hold exactly the same float32 values.
    struct Expected {
        channels: &'static [usize],
        /// float64 sum of each tap's float32 values.
        sums: &'static [f64],
        first_bits: &'static [u32],
        last_bits: &'static [u32],
        max_bits: &'static [u32],
    }

    fn check(name: &str, e: &Expected) {
        let w = LinearWeights::from_file(&converted(name)).unwrap();
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

    #[test]
    fn converted_upstream_files_match_numpy() {
        check(
            "vgg_full_avg.safetensors",
            &Expected {
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
                    0x38f4496b, 0x38ad975b, 0x3797d769, 0, 0, 0, 0x38c13a98, 0x38fe3a94,
                    0x3987275e, 0x3b68089e, 0x3bd49069, 0x3ca9e0dc, 0x3ca8e433, 0x39dbd2b0,
                ],
                last_bits: &[
                    0x3c046d70, 0, 0x380d5c38, 0, 0x371f7ef0, 0x3981b142, 0x38134fb2, 0x381d25b0,
                    0x39fa0c56, 0x389788ad, 0x3966e208, 0x3e05061a, 0x3c991e2b, 0x399c1382,
                ],
                max_bits: &[
                    0x3c046d70, 0x3e56caa2, 0x3e3895c2, 0x3bae9161, 0x3e496875, 0x3e948ae2,
                    0x3e13ab62, 0x3e4edcc7, 0x3ea8c211, 0x3e5ff424, 0x3e197996, 0x3e15f530,
                    0x3dee3f28, 0x3df27e8a,
                ],
            },
        );
        check(
            "vgg_maxpool.safetensors",
            &Expected {
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
            },
        );
        check(
            "lpips_vgg.safetensors",
            &Expected {
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
            },
        );
        check(
            "lpips_alex.safetensors",
            &Expected {
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
            },
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = LinearWeights::from_file(Path::new("/nonexistent/w.safetensors")).unwrap_err();
        assert!(matches!(e, LinearWeightsError::Io { .. }), "{e}");
    }

    #[test]
    fn names_shapes_and_ignored_tensors() {
        let st = safetensors(&[
            ("lin0", "F32", &[2], f32s(&[0.5, 0.0])),
            (
                "module.lin1.model.1.weight",
                "F32",
                &[1, 3, 1, 1],
                f32s(&[1.0, 2.0, 3.0]),
            ),
            ("lin2.model.1.weight", "F32", &[1, 1, 1, 1], f32s(&[4.0])),
            ("lin3", "F32", &[1, 1, 2, 1], f32s(&[5.0, 6.0])),
            (
                "net.slice1.0.weight",
                "F32",
                &[2, 2],
                f32s(&[-1.0, f32::NAN, 0.0, 0.0]),
            ),
            ("scaling_layer.shift", "F64", &[1], vec![0; 8]),
        ]);
        let w = LinearWeights::from_bytes(&st).unwrap();
        assert_eq!(
            w.taps,
            vec![
                vec![0.5, 0.0],
                vec![1.0, 2.0, 3.0],
                vec![4.0],
                vec![5.0, 6.0]
            ]
        );
        assert_eq!(w.to_string(), "4 taps, channels [2, 3, 1, 2]");
    }

    #[test]
    fn tap_errors() {
        let one = || f32s(&[1.0]);
        let e = err(&safetensors(&[("net.0.weight", "F32", &[1], one())]));
        assert!(
            e.contains("no linear-layer weights found") && e.contains("`net.0.weight`"),
            "{e}"
        );
        assert!(err(&safetensors(&[])).contains("(found: no tensors)"));
        let e = err(&safetensors(&[
            ("lin0", "F32", &[1], one()),
            ("lin2", "F32", &[1], one()),
        ]));
        assert!(e.contains("missing tap 1") && e.contains("[0, 2]"), "{e}");
        let e = err(&safetensors(&[("lin1", "F32", &[1], one())]));
        assert!(e.contains("missing tap 0"), "{e}");
        let e = err(&safetensors(&[
            ("lin0", "F32", &[1], one()),
            ("lin0.model.1.weight", "F32", &[1], one()),
        ]));
        assert!(e.contains("tap 0 is given twice"), "{e}");
        let e = err(&safetensors(&[("lin0.model.1.bias", "F32", &[1], one())]));
        assert!(e.contains("unexpected tensor `lin0.model.1.bias`"), "{e}");
        let e = err(&safetensors(&[(
            "lin99999999999999999999999",
            "F32",
            &[1],
            one(),
        )]));
        assert!(e.contains("unexpected tensor"), "{e}");
    }

    #[test]
    fn value_shape_and_dtype_errors() {
        let e = err(&safetensors(&[("lin0", "F32", &[2], f32s(&[1.0, -0.5]))]));
        assert!(
            e.contains("`lin0` channel 1: weight -0.5 is negative"),
            "{e}"
        );
        let e = err(&safetensors(&[(
            "lin0",
            "F32",
            &[2],
            f32s(&[f32::INFINITY, 1.0]),
        )]));
        assert!(e.contains("channel 0: weight inf is not finite"), "{e}");
        let e = err(&safetensors(&[("lin0", "F32", &[1], f32s(&[f32::NAN]))]));
        assert!(e.contains("is not finite"), "{e}");
        for shape in [
            &[2usize, 2][..],
            &[0],
            &[1, 2],
            &[2, 1, 1, 1],
            &[1, 1, 1, 2],
            &[],
        ] {
            let n: usize = shape.iter().product();
            let e = err(&safetensors(&[("lin0", "F32", shape, f32s(&vec![1.0; n]))]));
            assert!(
                e.contains("expected [C], [1, C, 1, 1] or [1, 1, C, 1]"),
                "{shape:?}: {e}"
            );
        }
        let e = err(&safetensors(&[("lin0", "F64", &[1], vec![0; 8])]));
        assert!(e.contains("element type F64: expected F32"), "{e}");
        let e = err(&safetensors(&[("lin0", "F16", &[2], vec![0; 4])]));
        assert!(e.contains("element type F16"), "{e}");
    }

    #[test]
    fn malformed_safetensors() {
        let good = safetensors(&[("lin0", "F32", &[2], f32s(&[1.0, 2.0]))]);
        let e = err(&good[..good.len() - 1]);
        assert!(e.starts_with("malformed safetensors file"), "{e}");
        let mut extra = good.clone();
        extra.push(0);
        assert!(err(&extra).starts_with("malformed safetensors file"));
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&huge).starts_with("malformed safetensors file"));
        let mut json = good.clone();
        json[9] = b'#';
        assert!(err(&json).starts_with("malformed safetensors file"));
        // Overlapping data: the crate requires the offsets to tile the buffer.
        let mut st = safetensors(&[
            ("lin0", "F32", &[1], f32s(&[1.0])),
            ("lin1", "F32", &[1], f32s(&[2.0])),
        ]);
        let text = String::from_utf8_lossy(&st).replace("[4,8]", "[0,4]");
        st = text.into_bytes();
        assert!(err(&st).starts_with("malformed safetensors file"));
    }

    #[test]
    fn pickle_based_and_unknown_files_are_refused_unread() {
        for (bytes, what) in [
            (
                &b"\x93NUMPY\x01\x00v\x00{'descr': '|O'"[..],
                "a NumPy .npy file",
            ),
            (b"PK\x03\x04\x14\x00\x00\x00", "a zip (PyTorch .pth) file"),
            (
                b"PK\x05\x06\x00\x00\x00\x00\x00\x00",
                "a zip (PyTorch .pth) file",
            ),
            (
                b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",
                "a pickle (legacy PyTorch .pth) file",
            ),
            (
                b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00",
                "a pickle (legacy PyTorch .pth) file",
            ),
        ] {
            let e = err(bytes);
            assert!(e.contains(what) && e.contains(CONVERT_COMMAND), "{e}");
        }
        for bytes in [&b""[..], b"nope", b"cos\nsystem\n(S'touch x'\ntR."] {
            let e = err(bytes);
            assert!(
                e.starts_with("not a safetensors file") && e.contains(CONVERT_COMMAND),
                "{e}"
            );
        }
        assert!(err(b"").contains("nothing: the file is empty"));
        // A safetensors file whose header length begins like a pickle is still read.
        let mut st = safetensors(&[("lin0", "F32", &[1], f32s(&[1.0]))]);
        let header_len = 0x0280usize;
        let body = st.split_off(8);
        let (header, data) =
            body.split_at(u64::from_le_bytes(st[..8].try_into().unwrap()) as usize);
        let mut h = header.to_vec();
        h.resize(header_len, b' ');
        let mut file = (header_len as u64).to_le_bytes().to_vec();
        file.extend(h);
        file.extend(data);
        assert_eq!(&file[..2], b"\x80\x02");
        assert_eq!(
            LinearWeights::from_bytes(&file).unwrap().taps,
            vec![vec![1.0]]
        );
    }
}
