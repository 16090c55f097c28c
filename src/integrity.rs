//! What the library loads from disk is checked before it is used: model files and the ONNX
//! Runtime library must be regular files, and their sha256 must equal the pins of the manifest
//! that ships with them (`weights/manifest.json`, installed as
//! `<prefix>/share/elpips/models/manifest.json`; the runtime's pin as `onnxruntime.sha256` beside
//! the installed library). Paths are only ever files: never URLs, shell words or format strings.
//! Nothing here (or anywhere in the library) touches the network.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// File name of the manifest that pins the models (in the model directory or its parent).
pub const MANIFEST: &str = "manifest.json";
/// File name, beside an installed runtime library, of its pin (`sha256sum` format).
pub const RUNTIME_PIN: &str = "onnxruntime.sha256";

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex sha256 of a file's contents, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Refuses a path that is not meant as a local file name: URLs are not fetched.
pub fn check_local_path(path: &Path, what: &str) -> Result<()> {
    let s = path.to_string_lossy();
    if let Some((scheme, _)) = s.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) {
            return Err(Error::invalid(format!(
                "{what} `{s}` looks like a URL; elpips only reads local files and never uses the network (download it yourself, or run `make setup`)"
            )));
        }
    }
    Ok(())
}

/// What kind of non-regular file `m` is, for error messages; `None` for a regular file.
fn not_regular(m: &Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Opens `path` for reading only if it is a regular file (symlinks to one are fine); returns it
/// with its length. Stat first (a socket cannot even be opened), then open non-blocking (so a
/// FIFO with no writer cannot hang the caller) and check the opened file again, so a path swapped
/// in between is caught too. A refusal's message is the reason alone ("it is a named pipe, not a
/// file"), its kind `IsADirectory` or `InvalidInput`.
fn open_regular(path: &Path) -> std::io::Result<(File, u64)> {
    use std::io::{Error as IoError, ErrorKind};
    let refuse = |meta: &Metadata| {
        not_regular(meta).map(|kind| {
            let kind_error = if meta.is_dir() { ErrorKind::IsADirectory } else { ErrorKind::InvalidInput };
            IoError::new(kind_error, format!("it is {kind}, not a file"))
        })
    };
    if let Some(e) = refuse(&std::fs::metadata(path)?) {
        return Err(e);
    }
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if let Some(e) = refuse(&meta) {
        return Err(e);
    }
    Ok((file, meta.len()))
}

/// Reads a whole file that must be a regular file of at most `max_bytes` bytes (see
/// [`open_regular`] for what is refused, before anything is read); a file that is, or grows,
/// larger than the cap is refused without reading past it. Errors are the reason alone ("it is a
/// named pipe, not a file", "No such file or directory (os error 2)"), for the caller to wrap
/// with the path.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> std::result::Result<Vec<u8>, std::io::Error> {
    use std::io::{Error as IoError, ErrorKind};
    let (file, len) = open_regular(path)?;
    let too_large = |len: u64| IoError::new(ErrorKind::FileTooLarge, format!("it is {len} bytes, above the limit of {max_bytes} bytes"));
    if len > max_bytes {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte past the cap tells a file that grew since the stat.
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// An error of [`open_regular`] / [`read_regular_file`] for a caller that names the file:
/// `not_found` for a missing one, `bad` with the reason otherwise.
fn file_error(path: &Path, e: std::io::Error, not_found: impl Fn(&Path) -> Error, bad: impl Fn(&Path, String) -> Error) -> Error {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => not_found(path),
        // The refusals themselves: the message is the reason.
        ErrorKind::IsADirectory | ErrorKind::InvalidInput => bad(path, e.to_string()),
        _ => bad(path, format!("cannot read it: {e}")),
    }
}

/// Reads a weights file the caller named (custom linear weights): a local regular file only.
/// Errors are the reason alone, for the caller to wrap.
pub fn read_weights_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    check_local_path(path, "weights path").map_err(|e| e.to_string())?;
    read_regular_file(path, u64::MAX).map_err(|e| match file_error(path, e, |_| Error::invalid("not found"), |_, why| Error::invalid(why)) {
        Error::InvalidArgument(m) => m,
        other => other.to_string(),
    })
}

/// The sha256 pins of the models in `dir`: from `dir/manifest.json` (an installed model
/// directory) or `dir/../manifest.json` (a checkout's `weights/models`). `None` if neither exists.
pub fn model_pins(dir: &Path) -> Result<Option<(PathBuf, serde_json::Value)>> {
    for candidate in [dir.join(MANIFEST), dir.join("..").join(MANIFEST)] {
        if candidate.is_file() {
            let text = std::fs::read_to_string(&candidate)
                .map_err(|e| Error::Model(format!("cannot read {}: {e}; run `make setup`", candidate.display())))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Model(format!("{} is not valid JSON ({e}); run `make setup`", candidate.display())))?;
            if json.pointer("/models/files").is_some_and(|f| f.is_object()) {
                return Ok(Some((candidate, json)));
            }
        }
    }
    Ok(None)
}

/// What to do about a missing or damaged file at a path: the caller's (which knows the layout the
/// path belongs to; `crate::network::install::remedy_for`), so that this layer stays below it.
pub type Remedy<'a> = &'a dyn Fn(&Path) -> String;

/// Reads a model file and checks it against its manifest pin; returns its bytes (which the
/// caller hands to ONNX Runtime, so the file checked is the file loaded). `remedy` ends the
/// messages of a missing, unpinned-folder or corrupt model.
pub fn read_verified_model(path: &Path, remedy: Remedy) -> Result<Vec<u8>> {
    check_local_path(path, "model path")?;
    let not_found = |p: &Path| Error::Model(format!("{} not found; {}", p.display(), remedy(p)));
    let bad = |p: &Path, why: String| Error::Model(format!("{}: {why}", p.display()));
    let bytes = read_regular_file(path, u64::MAX).map_err(|e| file_error(path, e, not_found, bad))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some((manifest, json)) = model_pins(dir)? else {
        return Err(Error::Model(format!(
            "no {MANIFEST} beside {} (nor in its parent) pins its sha256; models are only loaded with their manifest: {}, or add the model to your directory's manifest",
            path.display(),
            remedy(path)
        )));
    };
    let pin = json.pointer("/models/files").and_then(|f| f.get(&name)).and_then(|e| e.get("sha256")).and_then(|s| s.as_str());
    let Some(pin) = pin else {
        return Err(Error::Model(format!(
            "{} is not pinned in {} (no models.files.{name}.sha256); rebuild with `make setup` (after a deliberate model change: `python3 weights/setup.py --record-models`)",
            path.display(),
            manifest.display()
        )));
    };
    let got = sha256_hex(&bytes);
    if !got.eq_ignore_ascii_case(pin) {
        return Err(Error::Model(format!(
            "{} is corrupt or not the pinned model: sha256 {got}, {} pins {pin}; {}",
            path.display(),
            manifest.display(),
            remedy(path)
        )));
    }
    Ok(bytes)
}

/// Where the pin of a runtime library comes from, if anywhere: the installation's pin file
/// (`pin_file`: the pip package keeps it away from the `onnxruntime` wheel's library), else
/// `onnxruntime.sha256` beside the library (what `make install` writes), else the checkout's
/// manifest when the library lives in the checkout's `.cache/onnxruntime/lib` or
/// `.cache/onnxruntime-gpu/lib` (what `make setup` and `make setup DEVICE=cuda` unpack).
fn runtime_pin(real: &Path, pin_file: Option<&Path>, remedy: Remedy) -> Result<Option<(String, PathBuf)>> {
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = real.parent().unwrap_or(Path::new("."));
    let beside = pin_file.map_or_else(|| dir.join(RUNTIME_PIN), Path::to_owned);
    if beside.is_file() || pin_file.is_some() {
        let text = std::fs::read_to_string(&beside)
            .map_err(|e| Error::Runtime(format!("cannot read {}: {e}; {}", beside.display(), remedy(real))))?;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some(hash), Some(file)) = (words.next(), words.next()) {
                if file.trim_start_matches('*') == name {
                    return Ok(Some((hash.to_owned(), beside)));
                }
            }
        }
        return Err(Error::Runtime(format!("{} does not pin {name}; {}", beside.display(), remedy(real))));
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The CPU runtime of `make setup` and the GPU runtime of `make setup DEVICE=cuda`.
    for (cache, files) in [(".cache/onnxruntime/lib", "/onnxruntime_library/files"), (".cache/onnxruntime-gpu/lib", "/cuda/library/files")] {
        if checkout.join(cache).canonicalize().ok().as_deref() != Some(dir) {
            continue;
        }
        let manifest = checkout.join("weights").join(MANIFEST);
        let json: serde_json::Value = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| Error::Runtime(format!("cannot read {}; run `make setup`", manifest.display())))?;
        let pin = json.pointer(files).and_then(|f| f.get(&name)).and_then(|e| e.get("sha256")).and_then(|s| s.as_str());
        return match pin {
            Some(p) => Ok(Some((p.to_owned(), manifest))),
            None => Err(Error::Runtime(format!("{name} is not pinned in {}; run `make setup`", manifest.display()))),
        };
    }
    Ok(None)
}

/// Checks the runtime library before it is loaded: a regular file, and equal to its pin when
/// elpips installed it (`caller_chosen`: a library the caller named explicitly, by path or
/// `ORT_DYLIB_PATH`, and that has no pin beside it is the caller's choice and is not hashed;
/// `pin_file`: the installation's pin, wherever it is kept; `remedy` ends the messages). Returns
/// whether it was verified against a pin.
pub fn verify_runtime(path: &Path, caller_chosen: bool, pin_file: Option<&Path>, remedy: Remedy) -> Result<bool> {
    check_local_path(path, "runtime library path")?;
    let not_found = |p: &Path| Error::Runtime(format!("library not found at {}; {}", p.display(), remedy(p)));
    let bad = |p: &Path, why: String| Error::Runtime(format!("{}: {why}; it must be a libonnxruntime.so ({})", p.display(), remedy(p)));
    drop(open_regular(path).map_err(|e| file_error(path, e, not_found, bad))?);
    let real = path.canonicalize().map_err(|e| bad(path, e.to_string()))?;
    let pin = runtime_pin(&real, pin_file, remedy)?;
    let Some((pin, source)) = pin else {
        if caller_chosen {
            return Ok(false);
        }
        return Err(Error::Runtime(format!("{} has no pinned sha256 ({RUNTIME_PIN} beside it); {}", real.display(), remedy(path))));
    };
    let got = sha256_file(&real).map_err(|e| bad(&real, format!("cannot read it: {e}")))?;
    if !got.eq_ignore_ascii_case(&pin) {
        return Err(Error::Runtime(format!(
            "{} is corrupt or not the pinned ONNX Runtime: sha256 {got}, {} pins {pin}; {}",
            real.display(),
            source.display(),
            remedy(path)
        )));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_their_cap_and_nothing_else_is() {
        let dir = std::env::temp_dir().join(format!("elpips-read-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.csv");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_regular_file(&f, 10).unwrap(), b"0123456789");
        let e = read_regular_file(&f, 9).unwrap_err();
        assert!(e.to_string().contains("it is 10 bytes, above the limit of 9 bytes"), "{e}");
        assert!(read_regular_file(&dir, 1 << 20).unwrap_err().to_string().contains("it is a directory, not a file"));
        assert_eq!(read_regular_file(&dir.join("none"), 1).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sha256_of_known_strings() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn urls_are_refused_and_odd_names_are_just_files() {
        for url in ["http://example.com/m.onnx", "https://x/y", "file:///tmp/m.onnx", "s3://bucket/m"] {
            let e = check_local_path(Path::new(url), "model path").unwrap_err();
            assert!(e.to_string().contains("never uses the network"), "{e}");
        }
        for name in ["%s%n.onnx", "$(touch x).onnx", "a:b.onnx", "./m.onnx", "`id`"] {
            assert!(check_local_path(Path::new(name), "model path").is_ok(), "{name}");
        }
    }

    fn model_dir_with(name: &str, bytes: &[u8], pin: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let manifest = serde_json::json!({"models": {"files": {name: {"sha256": pin}}}});
        std::fs::write(dir.path().join(MANIFEST), manifest.to_string()).unwrap();
        dir
    }

    /// The caller's remedy, which ends the messages.
    const REMEDY: Remedy = &|_| "what to do".to_owned();

    #[test]
    fn models_must_match_their_pin() {
        let dir = model_dir_with("m.onnx", b"model bytes", &sha256_hex(b"model bytes"));
        assert_eq!(read_verified_model(&dir.path().join("m.onnx"), REMEDY).unwrap(), b"model bytes");
        let dir = model_dir_with("m.onnx", b"model bytes, corrupted", &sha256_hex(b"model bytes"));
        let e = read_verified_model(&dir.path().join("m.onnx"), REMEDY).unwrap_err();
        assert!(e.to_string().contains("corrupt or not the pinned model") && e.to_string().ends_with("; what to do"), "{e}");
        let e = read_verified_model(&dir.path().join("other.onnx"), REMEDY).unwrap_err();
        assert!(e.to_string().contains("not found; what to do"), "{e}");
        std::fs::write(dir.path().join("other.onnx"), b"x").unwrap();
        let e = read_verified_model(&dir.path().join("other.onnx"), REMEDY).unwrap_err();
        assert!(e.to_string().contains("is not pinned"), "{e}");
    }

    #[test]
    fn directories_fifos_and_devices_are_not_models() {
        let dir = model_dir_with("m.onnx", b"x", &sha256_hex(b"x"));
        std::fs::create_dir(dir.path().join("d.onnx")).unwrap();
        let e = read_verified_model(&dir.path().join("d.onnx"), REMEDY).unwrap_err();
        assert!(e.to_string().contains("a directory, not a file"), "{e}");
        let fifo = dir.path().join("f.onnx");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = read_verified_model(&fifo, REMEDY).unwrap_err();
        assert!(e.to_string().contains("a named pipe, not a file"), "{e}");
        let e = read_verified_model(Path::new("/dev/zero"), REMEDY).unwrap_err();
        assert!(e.to_string().contains("a device, not a file"), "{e}");
    }
}
