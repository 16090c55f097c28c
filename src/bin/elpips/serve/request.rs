//! The requests of `elpips serve`: one JSON object per line, typed ([`Request`]) and checked by
//! serde (unknown fields and ops refused, every number within its type) before the server sees
//! it. Depends on nothing of the command line but the JSON message helper its parent provides,
//! so the fuzz harness includes it as it is.

use std::path::PathBuf;

use elpips::Error;
use serde::Deserialize;
use serde_json::Value;

use super::json_message;

/// One request, less its `id` (any JSON value, echoed back).
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The distance of a pair (as `elpips compare`).
    Compare {
        reference: PathBuf,
        candidate: PathBuf,
        #[serde(default)]
        metric: Option<String>,
        #[serde(default)]
        seed: Option<u64>,
        #[serde(default)]
        samples: Option<u32>,
    },
    /// Whether the distance is at most `max_distance` (as `elpips check`).
    Decide {
        reference: PathBuf,
        candidate: PathBuf,
        max_distance: f64,
        #[serde(default)]
        metric: Option<String>,
        #[serde(default)]
        seed: Option<u64>,
        #[serde(default)]
        error_rate: Option<f64>,
        #[serde(default)]
        min_samples: Option<u32>,
        #[serde(default)]
        max_samples: Option<u32>,
    },
    /// Loads a reference once for many candidates; answers its `handle`.
    PrepareReference {
        reference: PathBuf,
        #[serde(default)]
        metric: Option<String>,
    },
    /// A candidate against a prepared reference.
    CompareReference {
        handle: u64,
        candidate: PathBuf,
        #[serde(default)]
        seed: Option<u64>,
        #[serde(default)]
        samples: Option<u32>,
    },
    /// Forgets a prepared reference.
    ReleaseReference { handle: u64 },
    /// Encodes `image` with a built-in codec shim (for clients without an encoder of their own):
    /// writes the file to `output` if given and the decoded pixels to `decoded` (PNG).
    Encode {
        image: PathBuf,
        codec: String,
        quality: i32,
        decoded: PathBuf,
        #[serde(default)]
        output: Option<PathBuf>,
    },
}

/// A line's `id` (any JSON value, `null` when absent) and its request; or the `id` (when the
/// line got that far) and the error message to answer with.
pub fn parse(line: &[u8]) -> Result<(Value, Request), (Value, String)> {
    let mut value: Value = serde_json::from_slice(line).map_err(|e| (Value::Null, format!("not a JSON request: {}; send one JSON object per line", json_message(&e))))?;
    let Some(object) = value.as_object_mut() else {
        return Err((Value::Null, "a request is a JSON object with \"op\" (compare, decide, prepare_reference, compare_reference, release_reference, encode)".into()));
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    match serde_json::from_value::<Request>(value) {
        Ok(r) => Ok((id, r)),
        Err(e) => Err((id, Error::InvalidArgument(format!("bad request: {e}")).to_string())),
    }
}
