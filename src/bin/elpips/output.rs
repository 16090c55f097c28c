//! What a subcommand writes, in the order that leaves nothing half-done: its output files are
//! staged while it runs ([`Outputs`], under `elpips::io`'s policy), its results go to stdout
//! ([`out!`]), and only once stdout has taken them are the files put in place. A stdout that
//! fails (a full disk, a closed pipe) ends the command with exit 2 and one line on stderr, not a
//! panic, and then no file the user named has changed. Destinations are tried before a long run
//! ([`check_outputs`]), so an unwritable `--junit` is an error before the first sample, not after
//! the last.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use elpips::io::AtomicFile;
use elpips::Error;

/// `println!` that returns an error instead of panicking when stdout cannot take the line.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::output::line(format_args!($($t)*))
    };
}
pub(crate) use out;

/// Writes one line to stdout and flushes it (see [`out!`]).
pub fn line(args: fmt::Arguments) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).and_then(|()| stdout.write_all(b"\n")).and_then(|()| stdout.flush()).map_err(|e| Error::Write {
        path: "stdout".into(),
        reason: format!("{e}; the results could not be printed (a full disk or a closed pipe?)"),
    })
}

/// Output files staged during a run, put in place together by [`Outputs::commit`] (after the
/// results are printed). Dropped without a commit, they leave every destination as it was.
#[derive(Default)]
pub struct Outputs(Vec<AtomicFile>);

impl Outputs {
    /// Stages `bytes` for `path`.
    pub fn add(&mut self, path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), Error> {
        self.0.push(AtomicFile::create(path)?.stage(bytes)?);
        Ok(())
    }

    /// Puts every staged file in place (renames, or writes through to a pipe or device).
    pub fn commit(self) -> Result<(), Error> {
        self.0.into_iter().try_for_each(AtomicFile::commit)
    }
}

/// Tries every destination before the run: each must be writable under the output policy, no two
/// may be one file, and none may be one of `inputs` (so `tune in.png -o in.png` cannot replace
/// its own source). `outputs` pairs each path with the option that named it, for the message.
pub fn check_outputs(outputs: &[(&str, &Path)], inputs: &[&Path]) -> Result<(), Error> {
    for (k, (flag, path)) in outputs.iter().enumerate() {
        if let Some(input) = inputs.iter().find(|i| elpips::io::same_file(path, i)) {
            return Err(Error::InvalidArgument(format!(
                "{flag} {} is the input {}; write the output to another file",
                path.display(),
                input.display()
            )));
        }
        // Two outputs may share a pipe or a device (`/dev/null`), not a file: one would replace
        // the other.
        let device = std::fs::metadata(path).is_ok_and(|m| !m.is_file()) || path.starts_with("/dev/");
        if let Some((other, _)) = outputs[..k].iter().find(|(_, p)| !device && (p == path || elpips::io::same_file(p, path))) {
            return Err(Error::InvalidArgument(format!("{other} and {flag} both name {}; give each output its own file", path.display())));
        }
        elpips::io::check_output(path)?;
    }
    Ok(())
}

/// Creates an output folder (and its parents) and checks that it takes files.
pub fn output_dir(flag: &str, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write { path: dir.to_owned(), reason: format!("{e}; {flag} must be a folder that can be created") })?;
    elpips::io::check_output(dir.join(".elpips-write-test"))?;
    Ok(dir.to_owned())
}
