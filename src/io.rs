//! Writing output files so that a reader never sees a half-written one: the bytes go to a
//! temporary file in the destination's directory, are flushed to disk, and the temporary is
//! renamed over the destination (atomic on POSIX file systems). A crash, a full disk or an error
//! midway leaves the old file (or none) and no temporary behind. Every file the library or the
//! command line writes (reports, heatmaps, tuned outputs) goes through here.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file + rename). The file gets the usual
/// permissions (0666 less the umask), like a plain `File::create`.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Writes `path` atomically with a writer callback (for encoders that stream into a
/// `Write + Seek`). If `write` fails, nothing is renamed and the temporary file is removed.
pub fn write_atomic_with(path: impl AsRef<Path>, write: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    let path = file.path.clone();
    write(file.file()).map_err(|e| write_error(&path, &e))?;
    file.commit()
}

/// A file being written atomically: write through [`AtomicFile::file`], then [`AtomicFile::commit`].
/// Dropping it without committing removes the temporary file and leaves `path` untouched.
pub struct AtomicFile {
    path: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Opens a temporary file beside `path` (same directory, so the rename cannot cross file
    /// systems). Fails if `path` is an existing directory or its directory is not writable.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        if path.is_dir() {
            return Err(write_error(&path, &io::Error::other("it is a directory")));
        }
        let name = path.file_name().ok_or_else(|| write_error(&path, &io::Error::other("not a file name")))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        // Unique per process and call; `create_new` refuses to follow a planted symlink.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut last = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{}.{n}.tmp", std::process::id()));
            let temp = dir.join(temp_name);
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => return Ok(AtomicFile { path, temp, file: Some(file) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(write_error(&path, &e)),
            }
        }
        Err(write_error(&path, &last.unwrap_or_else(|| io::Error::other("no free temporary name"))))
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open temporary file to write to.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is open until commit")
    }

    /// Flushes the data to disk and renames the temporary file over the destination.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("commit runs once");
        file.sync_all().map_err(|e| write_error(&self.path, &e))?;
        drop(file);
        std::fs::rename(&self.temp, &self.path).map_err(|e| write_error(&self.path, &e))?;
        // Make the rename itself durable; failure here cannot un-write the file, so ignore it.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            self.file = None;
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn write_error(path: &Path, e: &io::Error) -> Error {
    Error::Write { path: path.to_owned(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn writes_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(entries(dir.path()), ["out.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.png");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("encoder failed"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Write { .. }), "{err}");
        assert!(err.to_string().contains("encoder failed") && err.to_string().contains("out.png"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.png"]);
        // Dropped without commit: nothing appears.
        let q = dir.path().join("never.bin");
        let mut f = AtomicFile::create(&q).unwrap();
        f.file().write_all(b"x").unwrap();
        drop(f);
        assert_eq!(entries(dir.path()), ["out.png"]);
    }

    #[test]
    fn unwritable_destinations_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = write_atomic(dir.path().join("missing/sub/out.txt"), b"x").unwrap_err();
        assert!(err.to_string().starts_with("cannot write"), "{err}");
    }
}
