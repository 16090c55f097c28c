//! The manifests of `elpips check --manifest`: the pairs to check, as CSV with a header or as
//! JSON lines, parsed into typed [`Row`]s (serde) with every field checked before use, each
//! mistake one line naming the file and line. Read from a regular file of at most
//! [`MAX_MANIFEST_BYTES`]. Depends only on serde, csv, serde_json and the library, so the fuzz
//! targets (`fuzz/harness.rs`) include this file as it is.

use std::fmt;
use std::path::{Path, PathBuf};

use elpips::Error;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Largest manifest read (a million rows of long paths fit many times over).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The columns (CSV) or keys (JSON lines) of a row.
const COLUMNS: [&str; 8] = ["reference", "candidate", "max_distance", "name", "pixel_threshold", "max_fail_percent", "hard_fail", "preset"];

/// One row as written in the manifest.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object {\"reference\": ..., \"candidate\": ...}")]
pub struct Row {
    pub reference: String,
    pub candidate: String,
    #[serde(default)]
    pub max_distance: Option<Threshold>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pixel_threshold: Option<PixelThreshold>,
    #[serde(default)]
    pub max_fail_percent: Option<FailPercent>,
    #[serde(default)]
    pub hard_fail: Option<HardFail>,
    /// A tolerance set of `--presets` by name (its values apply where the row gives none).
    #[serde(default)]
    pub preset: Option<String>,
}

/// A row's numbers, each checked as it is read (so the error carries the line): the type, the
/// column it is read from, what it must be, and the test. A string that is not a number is
/// refused in both forms (the CSV reader hands over numbers as numbers).
macro_rules! number_column {
    ($($(#[$doc:meta])* $name:ident $column:literal $must:literal $ok:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name(pub f64);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!($column, ", ", $must))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$name, E> {
                        let ok: fn(f64) -> bool = $ok;
                        if ok(v) {
                            Ok($name(v))
                        } else {
                            Err(E::custom(format!(concat!($column, " must be ", $must, ", not {}"), v)))
                        }
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_f64(v as f64)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        self.visit_f64(v as f64)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Err(E::custom(format!(concat!($column, " `{}` is not a number"), v)))
                    }
                    fn visit_bool<E: de::Error>(self, v: bool) -> Result<$name, E> {
                        Err(E::custom(format!(concat!($column, " `{}` is not a number"), v)))
                    }
                }
                d.deserialize_any(V)
            }
        }
    )*};
}

number_column! {
    /// A row's `max_distance`: a finite distance >= 0.
    Threshold "max_distance" "a finite distance >= 0" |v| v.is_finite() && v >= 0.0;
    /// A row's `pixel_threshold`: a finite heatmap value >= 0.
    PixelThreshold "pixel_threshold" "a finite heatmap value >= 0" |v| v.is_finite() && v >= 0.0;
    /// A row's `max_fail_percent`: a percentage of the pixels.
    FailPercent "max_fail_percent" "a percentage from 0 to 100" |v| (0.0..=100.0).contains(&v);
    /// A row's `hard_fail`: a finite heatmap value >= 0.
    HardFail "hard_fail" "a finite heatmap value >= 0" |v| v.is_finite() && v >= 0.0;
}

/// One pair to check.
pub struct Case {
    /// Row in the manifest (0-based, data rows only); 0 for a single pair.
    pub row: usize,
    pub name: String,
    /// As written (relative paths stay relative, for the report).
    pub reference: String,
    pub candidate: String,
    /// Resolved against the manifest's folder.
    pub reference_path: PathBuf,
    pub candidate_path: PathBuf,
    pub max_distance: Option<f64>,
    /// The row's own map rules and preset name (resolved against `--presets` by the caller).
    pub pixel_threshold: Option<f64>,
    pub max_fail_percent: Option<f64>,
    pub hard_fail: Option<f64>,
    pub preset: Option<String>,
}

/// A manifest read from disk: its pairs (in file order, numbered from 0) and the sha256 of its
/// bytes (summaries carry it, so --merge can tell shards of different manifests apart).
pub struct Manifest {
    pub path: PathBuf,
    pub sha256: String,
    pub cases: Vec<Case>,
}

pub fn read_manifest(path: &Path) -> Result<Manifest, Error> {
    let bytes = read_input(path, MAX_MANIFEST_BYTES, "manifest", "split it into several manifests")?;
    let rows = parse_manifest(&bytes, path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let cases = rows
        .into_iter()
        .enumerate()
        .map(|(row, r)| Case {
            row,
            name: r.name.unwrap_or_else(|| r.candidate.clone()),
            reference_path: base.join(&r.reference),
            candidate_path: base.join(&r.candidate),
            reference: r.reference,
            candidate: r.candidate,
            max_distance: r.max_distance.map(|t| t.0),
            pixel_threshold: r.pixel_threshold.map(|t| t.0),
            max_fail_percent: r.max_fail_percent.map(|t| t.0),
            hard_fail: r.hard_fail.map(|t| t.0),
            preset: r.preset,
        })
        .collect();
    Ok(Manifest { path: path.to_owned(), sha256: elpips::integrity::sha256_hex(&bytes), cases })
}

/// Reads one of check's text inputs (`what`): a regular file within `max_bytes`, or a one-line
/// error (with `advice` when it is too large).
pub fn read_input(path: &Path, max_bytes: u64, what: &str, advice: &str) -> Result<Vec<u8>, Error> {
    elpips::integrity::read_regular_file(path, max_bytes).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::IsADirectory => format!("{e}; the {what} must be a regular file"),
            std::io::ErrorKind::FileTooLarge => format!("{e}; {advice}"),
            _ => e.to_string(),
        };
        Error::Io { path: path.to_owned(), reason }
    })
}

/// The rows of a manifest's bytes (`path` names it in errors and picks the form by extension:
/// `.csv`, or `.jsonl` / `.ndjson` / `.json`; otherwise JSON lines when it starts with `{`).
/// At least one row, or an error.
pub fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Vec<Row>, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid(format!("manifest {} is not UTF-8 text", path.display())))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let json_lines = match ext.as_str() {
        "jsonl" | "ndjson" | "json" => true,
        "csv" => false,
        _ => text.trim_start().starts_with('{'),
    };
    let rows = if json_lines { parse_json_lines(text, path)? } else { parse_csv(text, path)? };
    if rows.is_empty() {
        return Err(invalid(format!("manifest {} lists no pairs", path.display())));
    }
    Ok(rows)
}

pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<Row>, Error> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes());
    let csv_err = |e: csv::Error| {
        let line = match e.kind() {
            csv::ErrorKind::Deserialize { pos: Some(p), err } => return invalid(format!("{}:{}: {}", path.display(), p.line(), deserialize_message(err))),
            _ => e.position().map(|p| p.line()),
        };
        match line {
            Some(line) => invalid(format!("{}:{line}: {e}", path.display())),
            None => invalid(format!("manifest {}: {e}", path.display())),
        }
    };
    let headers = reader.headers().map_err(csv_err)?.clone();
    // The header is checked here rather than by deny_unknown_fields: it is one line, and a
    // misspelt column should be named once, not on every row.
    for h in headers.iter() {
        if !COLUMNS.contains(&h) {
            return Err(invalid(format!(
                "manifest {}: unknown column `{h}` (columns: {})",
                path.display(),
                COLUMNS.join(", ")
            )));
        }
    }
    let mut seen = Vec::new();
    for h in headers.iter() {
        if seen.contains(&h) {
            return Err(invalid(format!("manifest {}: column `{h}` appears twice", path.display())));
        }
        seen.push(h);
    }
    if !(seen.contains(&"reference") && seen.contains(&"candidate")) {
        return Err(invalid(format!(
            "manifest {}: the first line must name the columns, with at least `reference,candidate`",
            path.display()
        )));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let row: Row = record.deserialize(Some(&headers)).map_err(csv_err)?;
        rows.push(checked(row, path, line)?);
    }
    Ok(rows)
}

pub fn parse_json_lines(text: &str, path: &Path) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(line).map_err(|e| invalid(format!("{}:{line_no}: {}", path.display(), json_message(&e))))?;
        rows.push(checked(row, path, line_no)?);
    }
    Ok(rows)
}

/// What serde cannot say: the paths must be given, and an empty name is no name.
fn checked(mut row: Row, path: &Path, line: u64) -> Result<Row, Error> {
    if row.reference.is_empty() || row.candidate.is_empty() {
        return Err(invalid(format!("{}:{line}: reference and candidate must not be empty", path.display())));
    }
    row.name = row.name.filter(|n| !n.is_empty());
    row.preset = row.preset.filter(|n| !n.is_empty());
    Ok(row)
}

/// A CSV field's deserialisation error without the reader's own position (the caller gives
/// the line).
fn deserialize_message(err: &csv::DeserializeError) -> String {
    match err.kind() {
        csv::DeserializeErrorKind::Message(m) | csv::DeserializeErrorKind::Unsupported(m) => m.clone(),
        _ => err.to_string(),
    }
}

/// serde_json's message without its " at line L column C" (the caller puts the line after the
/// file name, `m.jsonl:3:`; the column stays).
pub fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())) {
        Some(m) => format!("{m} (column {})", e.column()),
        None => text,
    }
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}
