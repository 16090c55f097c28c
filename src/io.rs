//! Writing outputs: the one policy for every file the library and the command line write
//! (reports, summaries, heatmaps, tuned outputs, `GITHUB_STEP_SUMMARY`). What a path names
//! decides what happens to it:
//!
//! - **Nothing yet, or a regular file** (also through symbolic links): written atomically. The
//!   bytes go to a temporary file beside the final file, are synced, and the temporary is
//!   renamed over it, so a reader never sees a half-written file and a failure at any point
//!   leaves the old file (or none) and no temporary behind. A symbolic link stays a link: the
//!   file it points to is what is replaced. An existing file keeps its permission bits (and its
//!   owner and group where the process may set them); a new one gets 0666 less the umask. A file
//!   with other hard links gets a new inode: the other names keep the old contents.
//! - **`/dev/stdout`, `/dev/stderr`** (and `/dev/fd/1`, `/dev/fd/2`, `/proc/self/fd/1`, `2`, or a
//!   link to one): the process's own stream, after what it printed there before, whatever the
//!   stream is (`--junit /dev/stdout > out.txt` puts the report in `out.txt`). Another open
//!   descriptor's path (`/dev/fd/3`) is written through: a file behind it is appended to, not
//!   replaced.
//! - **A named pipe or a character device** (`/dev/null`, a terminal, `/dev/fd/N` of a pipe):
//!   written through, in place; the node itself is never replaced. A pipe with no reader is
//!   refused at once rather than waited on.
//! - **A directory, a socket, a block device, a symbolic link to nothing**: refused.
//!
//! [`AtomicFile`] stages an output and [`AtomicFile::commit`] puts it in place: the command line
//! stages its files, prints its results, and commits only once stdout took them, so a failed
//! print leaves every file the user named as it was. [`check_output`] tries a destination before
//! a long run; [`append`] adds to a file under the same policy. Names made from user text go
//! through [`safe_name`], so no file name exceeds the file system's limit.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Bytes of the destination's name kept in a temporary file's name (file names have at most
/// 255 bytes; the rest is the pid, a counter and the dots).
const TEMP_NAME_BYTES: usize = 100;

/// Writes `bytes` to `path` under the module's policy (atomically for a regular file).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Writes `path` with a writer callback (for encoders that stream into a `Write + Seek`). If
/// `write` fails, nothing reaches `path`.
pub fn write_atomic_with(path: impl AsRef<Path>, write: impl FnOnce(&mut AtomicFile) -> io::Result<()>) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    write(&mut file).map_err(|e| file.error(&e))?;
    file.commit()
}

/// Appends `bytes` to `path` (created if missing) under the same policy: a regular file through
/// any links, stdout/stderr, or written through a pipe (with a reader) or character device.
pub fn append(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    match classify(path, true)? {
        Target::Replace { path: target, .. } => {
            let mut f = OpenOptions::new().append(true).create(true).open(&target).map_err(|e| write_error(path, &e))?;
            f.write_all(bytes).and_then(|()| f.flush()).map_err(|e| write_error(path, &e))
        }
        through => put_through(path, &through, bytes),
    }
}

/// Checks, without changing anything the user can see, that `path` could be written: its kind
/// is one the policy writes, and for a file its directory exists and takes a new file (a
/// temporary is created and removed). For a long run whose outputs come at the end.
pub fn check_output(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if let Target::Replace { path: target, existing } = classify(path, false)? {
        let (file, temp) = temp_beside(path, &target, existing.as_ref())?;
        drop(file);
        std::fs::remove_file(&temp).map_err(|e| write_error(path, &e))?;
    }
    Ok(())
}

/// Whether `a` and `b` name one existing file (the same device and inode, through any links).
pub fn same_file(a: impl AsRef<Path>, b: impl AsRef<Path>) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A file name (or a part of one) made from user text: ASCII letters, digits and `._-` kept,
/// anything else `_`, no leading dot (no hidden files, no `..`), at most `max_bytes` bytes.
pub fn safe_name(text: &str, max_bytes: usize) -> String {
    let safe: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let mut safe = safe.trim_start_matches('.').to_owned();
    // Every character is ASCII now, so any byte count is a character boundary.
    safe.truncate(max_bytes);
    safe
}

/// Where an output goes, by what its path names.
enum Target {
    /// A regular file (the final one, through any links) or nothing yet: replaced atomically.
    Replace { path: PathBuf, existing: Option<Metadata> },
    /// The process's own stdout or stderr.
    Stdout,
    Stderr,
    /// A named pipe or a character device, or an open descriptor's link (`/dev/fd/N`) to any
    /// file, written in place (an open descriptor's file appended to: its writer owns it). For
    /// a pipe probed for a reader, the probe's write end is held until the bytes are written,
    /// so the reader sees no early end of file.
    Through { _reader: Option<File>, append: bool },
}

/// The descriptor `path` names, through any links: `/dev/stdout` (1), `/dev/stderr` (2),
/// `/dev/fd/N`, `/proc/self/fd/N` or this process's `/proc/PID/fd/N`. Such a path is a handle
/// on an open file, not a place to put one: a regular file behind it (`> out.txt`) must be
/// written through the descriptor's file, not replaced by a new one the shell never sees.
fn descriptor(path: &Path) -> Option<u32> {
    let own = format!("/proc/{}/fd/", std::process::id());
    let mut at = path.to_path_buf();
    for _ in 0..40 {
        let text = at.to_str()?;
        match text {
            "/dev/stdout" => return Some(1),
            "/dev/stderr" => return Some(2),
            _ => {}
        }
        for prefix in ["/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/", own.as_str()] {
            if let Some(n) = text.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
                return Some(n);
            }
        }
        let to = std::fs::read_link(&at).ok()?;
        at = if to.is_absolute() { to } else { at.parent().map_or(to.clone(), |d| d.join(&to)) };
    }
    None
}

/// What `path` names, under the module's policy; `probe_pipe` opens a named pipe to see that a
/// reader is there (holding it open; without it a pipe is only recognised).
fn classify(path: &Path, probe_pipe: bool) -> Result<Target> {
    let refuse = |why: String| Err(write_error(path, &io::Error::other(why)));
    let fd = descriptor(path);
    match fd {
        Some(1) => return Ok(Target::Stdout),
        Some(2) => return Ok(Target::Stderr),
        _ => {}
    }
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Target::Replace { path: path.to_owned(), existing: None }),
        Err(e) => return Err(write_error(path, &e)),
    };
    let meta = if link.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let to = std::fs::read_link(path).map_or_else(|_| "?".to_owned(), |t| t.display().to_string());
                return refuse(format!("it is a symbolic link to {to}, which does not exist; point it at a file, or remove it"));
            }
            Err(e) => return Err(write_error(path, &e)),
        }
    } else {
        link.clone()
    };
    let t = meta.file_type();
    if fd.is_some() && (t.is_file() || t.is_char_device()) {
        return Ok(Target::Through { _reader: None, append: true });
    }
    if t.is_file() {
        // The file the links lead to is replaced; the links stay.
        let target = if link.file_type().is_symlink() { std::fs::canonicalize(path).map_err(|e| write_error(path, &e))? } else { path.to_owned() };
        Ok(Target::Replace { path: target, existing: Some(meta) })
    } else if t.is_dir() {
        refuse("it is a directory; name a file in it".into())
    } else if t.is_fifo() {
        if !probe_pipe {
            return Ok(Target::Through { _reader: None, append: false });
        }
        // Non-blocking: with no reader, open fails (ENXIO) at once instead of waiting for one.
        match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(probe) => Ok(Target::Through { _reader: Some(probe), append: false }),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => refuse("it is a named pipe with no reader; start the reader first".into()),
            Err(e) => Err(write_error(path, &e)),
        }
    } else if t.is_char_device() {
        Ok(Target::Through { _reader: None, append: false })
    } else if t.is_block_device() {
        refuse("it is a block device; elpips writes files, pipes and character devices only".into())
    } else if t.is_socket() {
        refuse("it is a socket; elpips writes files, pipes and character devices only".into())
    } else {
        refuse("it is not a regular file".into())
    }
}

/// Writes `bytes` to a stdout, stderr or through-target `target` (of `path`) in one go.
fn put_through(path: &Path, target: &Target, bytes: &[u8]) -> Result<()> {
    let result = match target {
        Target::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Target::Stderr => io::stderr().lock().write_all(bytes),
        // Blocking now: a pipe's reader is there (the probe held it), a device takes what it takes.
        Target::Through { append, .. } => {
            OpenOptions::new().write(true).append(*append).open(path).and_then(|mut f| f.write_all(bytes).and_then(|()| f.flush()))
        }
        Target::Replace { .. } => unreachable!("replaced files are not written through"),
    };
    result.map_err(|e| write_error(path, &e))
}

/// Opens a temporary file beside `target` (the destination `path` resolved), with the
/// permissions and owner of the file it will replace.
fn temp_beside(path: &Path, target: &Path, existing: Option<&Metadata>) -> Result<(File, PathBuf)> {
    let name = target.file_name().ok_or_else(|| write_error(path, &io::Error::other("it names no file")))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    // Unique per process and call; `create_new` refuses to follow a planted symlink.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name);
        let mut temp_name = b".".to_vec();
        temp_name.extend_from_slice(&bytes[..bytes.len().min(TEMP_NAME_BYTES)]);
        temp_name.extend_from_slice(format!(".{}.{n}.tmp", std::process::id()).as_bytes());
        let temp = dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&temp_name));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => {
                if let Some(old) = existing {
                    // Owner first: changing it clears set-id bits, which the mode then restores.
                    // Only root may give a file away; others keep their own ownership.
                    let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
                    if let Err(e) = file.set_permissions(old.permissions()) {
                        drop(file);
                        let _ = std::fs::remove_file(&temp);
                        return Err(write_error(path, &e));
                    }
                }
                return Ok((file, temp));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(write_error(path, &e)),
        }
    }
    Err(write_error(path, &last.unwrap_or_else(|| io::Error::other("no free temporary name"))))
}

/// An output being written: write to it (`Write + Seek`), then [`AtomicFile::commit`] puts it in
/// place. Dropping it without committing leaves the destination untouched and no temporary.
pub struct AtomicFile {
    /// The path as the caller named it (for messages).
    path: PathBuf,
    stage: Stage,
}

enum Stage {
    /// A temporary file beside `target`, renamed over it on commit.
    Temp { file: File, temp: PathBuf, target: PathBuf },
    /// Bytes for stdout, stderr or a pipe or device, written through on commit.
    Memory { bytes: Cursor<Vec<u8>>, target: Target },
    Done,
}

impl AtomicFile {
    /// Starts an output to `path`: refuses what the policy refuses (a directory, a pipe with no
    /// reader...) and, for a file, opens its temporary (so an unwritable directory fails here).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let stage = match classify(&path, true)? {
            Target::Replace { path: target, existing } => {
                let (file, temp) = temp_beside(&path, &target, existing.as_ref())?;
                Stage::Temp { file, temp, target }
            }
            target => Stage::Memory { bytes: Cursor::new(Vec::new()), target },
        };
        Ok(AtomicFile { path, stage })
    }

    /// The destination path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the whole of `bytes` (a convenience for staging a finished buffer).
    pub fn stage(mut self, bytes: &[u8]) -> Result<Self> {
        self.write_all(bytes).map_err(|e| self.error(&e))?;
        Ok(self)
    }

    /// Puts the output in place: syncs the temporary and renames it over the destination, or
    /// writes the staged bytes through to stdout, stderr, a pipe or a device.
    pub fn commit(mut self) -> Result<()> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Temp { file, temp, target } => {
                let done = file.sync_all().and_then(|()| {
                    drop(file);
                    std::fs::rename(&temp, &target)
                });
                if let Err(e) = done {
                    let _ = std::fs::remove_file(&temp);
                    return Err(self.error(&e));
                }
                // Make the rename itself durable; failure here cannot un-write the file.
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(())
            }
            Stage::Memory { bytes, target } => put_through(&self.path, &target, bytes.get_ref()),
            Stage::Done => Ok(()),
        }
    }

    fn error(&self, e: &io::Error) -> Error {
        write_error(&self.path, e)
    }

    fn sink(&mut self) -> &mut dyn WriteSeek {
        match &mut self.stage {
            Stage::Temp { file, .. } => file,
            Stage::Memory { bytes, .. } => bytes,
            Stage::Done => unreachable!("an AtomicFile is written before it is committed"),
        }
    }
}

trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sink().flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.sink().seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Stage::Temp { temp, .. } = &self.stage {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// An output error: what the file system said and, for the errors a user fixes by choosing
/// another place, what to check.
fn write_error(path: &Path, e: &io::Error) -> Error {
    use io::ErrorKind::*;
    let hint = match e.kind() {
        NotFound | PermissionDenied | NotADirectory | ReadOnlyFilesystem => "; check that the directory exists and is writable",
        _ => "",
    };
    Error::Write { path: path.to_owned(), reason: format!("{e}{hint}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        f.write_all(b"x").unwrap();
        drop(f);
        assert_eq!(entries(dir.path()), ["out.png"]);
    }

    #[test]
    fn unwritable_destinations_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = write_atomic(dir.path().join("missing/sub/out.txt"), b"x").unwrap_err();
        assert!(err.to_string().starts_with("cannot write") && err.to_string().contains("check that the directory exists"), "{err}");
        assert!(check_output(dir.path().join("missing/out.txt")).is_err());
        assert!(check_output(dir.path().join("fine.txt")).is_ok());
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "the check leaves nothing behind");
    }

    #[test]
    fn an_existing_file_keeps_its_mode_and_a_link_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.txt");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o600);
        let ro = dir.path().join("reference.png");
        std::fs::write(&ro, b"old").unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
        write_atomic(&ro, b"new").unwrap();
        assert_eq!(std::fs::metadata(&ro).unwrap().permissions().mode() & 0o7777, 0o444);
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("secret.txt", &link).unwrap();
        write_atomic(&link, b"through the link").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"through the link");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("nowhere/x", &dangling).unwrap();
        let err = write_atomic(&dangling, b"x").unwrap_err().to_string();
        assert!(err.contains("symbolic link to nowhere/x, which does not exist"), "{err}");
    }

    #[test]
    fn a_pipe_is_written_through_and_one_without_a_reader_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = write_atomic(&fifo, b"x").unwrap_err().to_string();
        assert!(err.contains("a named pipe with no reader"), "{err}");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        // The reader opens the pipe on its own schedule; retry until it is there.
        let mut tries = 0;
        loop {
            match append(&fifo, b"through") {
                Ok(()) => break,
                Err(_) if tries < 500 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(reader.join().unwrap(), b"through");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a pipe");
    }

    #[test]
    fn an_open_descriptors_file_is_written_through_not_replaced() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("redirected.txt");
        std::fs::write(&p, b"printed;").unwrap();
        let inode = std::fs::metadata(&p).unwrap().ino();
        let held = OpenOptions::new().append(true).open(&p).unwrap();
        write_atomic(format!("/proc/self/fd/{}", held.as_raw_fd()), b"report").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"printed;report");
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), inode, "the same file, not a new one");
        // A link to /dev/stdout is the process's stdout, whatever stdout is.
        let link = dir.path().join("out");
        std::os::unix::fs::symlink("/dev/stdout", &link).unwrap();
        assert_eq!(descriptor(&link), Some(1));
        assert_eq!(descriptor(Path::new("/dev/fd/2")), Some(2));
        assert_eq!(descriptor(&p), None);
    }

    #[test]
    fn long_names_fit_and_user_text_is_made_safe() {
        let dir = tempfile::tempdir().unwrap();
        let name = "n".repeat(250);
        write_atomic(dir.path().join(&name), b"x").unwrap();
        assert_eq!(entries(dir.path()), [name]);
        assert_eq!(safe_name("../a b/ç\n.png", 100), "_a_b___.png");
        assert_eq!(safe_name("abcdef", 3), "abc");
    }

    #[test]
    fn same_file_sees_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&a, &l).unwrap();
        assert!(same_file(&a, &l));
        assert!(same_file(&a, dir.path().join("./a")));
        assert!(!same_file(&a, dir.path().join("missing")));
    }
}
