//! Where an installed elpips keeps its parts, found from where the running program or the loaded
//! libelpips lies: the one home of the install layouts. `make install` and the unpacked
//! `make dist` tarball share one (a prefix), the pip package has its own. [`runtime`] and
//! [`models`] ask here before they fall back to the source checkout's `make setup` folders
//! compiled into the program, and an installation that is found is used alone: a removed or
//! moved checkout changes nothing. What to do about a missing or damaged part ([`remedy_for`])
//! is said here too, since it depends on which layout the part belongs to.
//!
//! [`runtime`]: super::runtime
//! [`models`]: super::models

use std::path::{Component, Path, PathBuf};

/// File name, in an installation's library folder, of the runtime's pin (`sha256sum` format).
pub use crate::integrity::RUNTIME_PIN;

/// Environment variable naming the pip package's model cache (default `$XDG_CACHE_HOME/elpips`,
/// else `~/.cache/elpips`); the models go to `<cache>/<version>/models`.
pub const CACHE_DIR_ENV: &str = "ELPIPS_CACHE_DIR";

/// The command that builds the pip package's models into its cache.
pub const PYTHON_SETUP_COMMAND: &str = "python -m elpips setup";

/// The kinds of installation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `make install PREFIX=P`, or the `make dist` tarball unpacked at P: the command
    /// `P/bin/elpips`, the library `P/lib/libelpips.so.N`, the runtime `P/lib/libonnxruntime.so.1`
    /// with its pin `P/lib/onnxruntime.sha256`, the models in `P/share/elpips/models`.
    Prefix,
    /// The pip package (`bindings/python`): a folder `elpips/` in site-packages holding
    /// `bin/elpips`, `lib/libelpips.so.N` and `lib/onnxruntime.sha256`. Its runtime is the one of
    /// the `onnxruntime` wheel beside it (`onnxruntime/capi/`, checked against that pin); its
    /// models are built into the user's cache by `python -m elpips setup`.
    PythonPackage,
}

impl Kind {
    /// How `elpips info` names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prefix => "prefix",
            Kind::PythonPackage => "python-package",
        }
    }
}

/// An installation of elpips and where its parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    /// Which layout.
    pub kind: Kind,
    /// The prefix, or the pip package's folder.
    pub root: PathBuf,
    /// The ONNX Runtime library it loads.
    pub runtime: PathBuf,
    /// The file that pins the runtime's sha256.
    pub runtime_pin: PathBuf,
    /// The folder of its `.onnx` models and their `manifest.json`.
    pub models: PathBuf,
    /// The folder of its plugins (shared objects loaded by name at run time).
    pub plugins: PathBuf,
}

impl Install {
    /// The installation that `dir`, the folder of the running program or of the loaded
    /// libelpips, belongs to: `bin` or `lib` of a prefix that holds an installed runtime pin or
    /// `share/elpips`, or of the pip package. `None` for any other folder (a checkout's
    /// `target/release`, a test's `deps`).
    pub fn around(dir: &Path) -> Option<Install> {
        let root = dir.parent()?.to_owned();
        let lib = match dir.file_name()?.to_str()? {
            "bin" => root.join("lib"),
            "lib" => dir.to_owned(),
            _ => return None,
        };
        let runtime_pin = lib.join(RUNTIME_PIN);
        if root.file_name().is_some_and(|n| n == "elpips") && root.join("__init__.py").is_file() && runtime_pin.is_file() {
            let name = pinned_runtime_name(&runtime_pin).unwrap_or_else(|| "libonnxruntime.so.1".to_owned());
            return Some(Install {
                kind: Kind::PythonPackage,
                runtime: root.parent()?.join("onnxruntime").join("capi").join(name),
                runtime_pin,
                models: user_models_dir(),
                plugins: root.join("plugins"),
                root,
            });
        }
        if !(runtime_pin.is_file() || root.join("share/elpips").is_dir()) {
            return None;
        }
        Some(Install {
            kind: Kind::Prefix,
            runtime: lib.join("libonnxruntime.so.1"),
            runtime_pin,
            models: root.join("share/elpips/models"),
            plugins: lib.join("elpips/plugins"),
            root,
        })
    }

    /// The installation of this process: around `chosen` (the C ABI names the folder of the
    /// loaded libelpips, which only it can find), else around the running executable.
    pub fn find(chosen: Option<&Path>) -> Option<Install> {
        Install::around(&installed_dir(chosen)?)
    }

    /// What to do when its `part` is missing or damaged.
    pub fn remedy(&self, part: Part) -> String {
        let root = self.root.display();
        match (self.kind, part) {
            (Kind::Prefix, _) => format!(
                "the installation at {root} is incomplete: install it again (`make install PREFIX={root}` from a source checkout, or unpack its elpips-*.tar.gz there again)"
            ),
            (Kind::PythonPackage, Part::Runtime) => {
                "the pip package runs on the `onnxruntime` package: `pip install onnxruntime==1.31.1` beside it".to_owned()
            }
            (Kind::PythonPackage, Part::Models) => format!(
                "run `{PYTHON_SETUP_COMMAND}` to build the models into {} (or set {} to a folder that has them)",
                self.models.display(),
                super::models::MODEL_DIR_ENV
            ),
        }
    }
}

/// The parts of an installation a remedy is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The ONNX Runtime library and its pin.
    Runtime,
    /// The models and their manifest.
    Models,
}

/// The file name the pin file pins (its first line's).
fn pinned_runtime_name(pin: &Path) -> Option<String> {
    let text = std::fs::read_to_string(pin).ok()?;
    let name = text.lines().next()?.split_whitespace().nth(1)?;
    Some(name.trim_start_matches('*').to_owned())
}

/// The folder an installed elpips is found around: the one the caller names, else the running
/// executable's (symbolic links resolved, so a link to an installed command finds its prefix).
pub fn installed_dir(chosen: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = chosen {
        return Some(d.to_owned());
    }
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent().map(Path::to_owned)
}

/// The pip package's model folder: `$ELPIPS_CACHE_DIR`, else `$XDG_CACHE_HOME/elpips`, else
/// `~/.cache/elpips`, then `<version>/models` (a CI job may restore that folder from its cache,
/// or fill it with `python -m elpips setup`).
pub fn user_models_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = var(CACHE_DIR_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("elpips")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/elpips")))
        .unwrap_or_else(|| PathBuf::from(".cache/elpips"));
    cache.join(env!("CARGO_PKG_VERSION")).join("models")
}

/// The source checkout this program was built from (where `make setup` puts the runtime and the
/// models).
pub fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What to do about `path`, a runtime library or a model that is missing or damaged, by where it
/// lies: in an installation (install it again; the pip package's `python -m elpips setup`), in
/// the source checkout (`make setup`), or in a folder the caller named.
pub fn remedy_for(path: &Path, part: Part) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    let installed = match part {
        // <prefix>/lib/libonnxruntime.so.1, or the pip package's onnxruntime/capi/.
        Part::Runtime => Install::around(dir).filter(|i| i.runtime.parent() == Some(dir)).or_else(|| {
            let pkg = dir.parent()?.parent()?.join("elpips/lib");
            Install::around(&pkg).filter(|i| i.kind == Kind::PythonPackage && i.runtime.parent() == Some(dir))
        }),
        // <prefix>/share/elpips/models (its `lib` names the prefix), or the user cache.
        Part::Models => {
            let prefix = dir.parent().and_then(Path::parent).and_then(Path::parent);
            prefix.and_then(|p| Install::around(&p.join("lib"))).filter(|i| i.models == dir)
        }
    };
    if let Some(install) = installed {
        return install.remedy(part);
    }
    if part == Part::Models && normal(dir) == normal(&user_models_dir()) {
        return format!("run `{PYTHON_SETUP_COMMAND}` to build the models there");
    }
    if normal(path).starts_with(normal(checkout())) {
        return "run `make setup` in the source checkout".to_owned();
    }
    match part {
        Part::Runtime => format!(
            "name a libonnxruntime.so of version {} or newer (`runtime_library`, {})",
            super::runtime::MIN_ORT_VERSION,
            super::runtime::ORT_DYLIB_ENV
        ),
        Part::Models => format!(
            "{} must hold the pinned models and their manifest.json (as an installed share/elpips/models, or a checkout's weights/models after `make setup`), or name another folder (`model_dir`, {})",
            dir.display(),
            super::models::MODEL_DIR_ENV
        ),
    }
}

/// `path` without `.` and `..` components (lexically), to compare folders named in different ways.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn a_prefix_is_found_from_its_bin_or_its_lib() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("opt/elpips");
        touch(&p.join("lib").join(RUNTIME_PIN));
        std::fs::create_dir_all(p.join("bin")).unwrap();
        let want = Install {
            kind: Kind::Prefix,
            root: p.clone(),
            runtime: p.join("lib/libonnxruntime.so.1"),
            runtime_pin: p.join("lib/onnxruntime.sha256"),
            models: p.join("share/elpips/models"),
            plugins: p.join("lib/elpips/plugins"),
        };
        assert_eq!(Install::around(&p.join("bin")).as_ref(), Some(&want));
        assert_eq!(Install::around(&p.join("lib")).as_ref(), Some(&want));
        // A prefix whose runtime pin was removed is still one while share/elpips is there.
        std::fs::remove_file(p.join("lib").join(RUNTIME_PIN)).unwrap();
        assert_eq!(Install::around(&p.join("bin")), None);
        std::fs::create_dir_all(p.join("share/elpips")).unwrap();
        assert_eq!(Install::around(&p.join("bin")).map(|i| i.kind), Some(Kind::Prefix));
    }

    #[test]
    fn other_folders_are_no_installation() {
        let t = tempfile::tempdir().unwrap();
        // A bin folder beside nothing of elpips (e.g. /usr/bin with elpips not installed there).
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        assert_eq!(Install::around(&t.path().join("bin")), None);
        // A checkout's target/release holding a runtime pin is still not a prefix.
        touch(&t.path().join("target/release").join(RUNTIME_PIN));
        assert_eq!(Install::around(&t.path().join("target/release")), None);
        assert_eq!(Install::around(Path::new("/")), None);
    }

    #[test]
    fn the_pip_package_takes_the_onnxruntime_wheels_runtime_and_the_user_cache() {
        let t = tempfile::tempdir().unwrap();
        let site = t.path().join("lib/python3.11/site-packages");
        let pkg = site.join("elpips");
        touch(&pkg.join("__init__.py"));
        std::fs::create_dir_all(pkg.join("bin")).unwrap();
        std::fs::create_dir_all(pkg.join("lib")).unwrap();
        std::fs::write(pkg.join("lib").join(RUNTIME_PIN), "fc44  libonnxruntime.so.1.31.1\n").unwrap();
        let i = Install::around(&pkg.join("bin")).unwrap();
        assert_eq!(i.kind, Kind::PythonPackage);
        assert_eq!(i.runtime, site.join("onnxruntime/capi/libonnxruntime.so.1.31.1"));
        assert_eq!(i.models, user_models_dir());
        assert_eq!(Install::around(&pkg.join("lib")), Some(i.clone()));
        assert!(i.remedy(Part::Models).contains(PYTHON_SETUP_COMMAND), "{}", i.remedy(Part::Models));
        assert!(i.remedy(Part::Runtime).contains("pip install onnxruntime"), "{}", i.remedy(Part::Runtime));
        assert!(remedy_for(&i.runtime, Part::Runtime).contains("pip install onnxruntime"));
    }

    #[test]
    fn remedies_name_the_layout_a_path_belongs_to() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("prefix");
        touch(&p.join("lib").join(RUNTIME_PIN));
        let prefix = |s: String| assert!(s.contains("the installation at") && s.contains("make install PREFIX=") && !s.contains("make setup"), "{s}");
        prefix(remedy_for(&p.join("lib/libonnxruntime.so.1"), Part::Runtime));
        prefix(remedy_for(&p.join("share/elpips/models/elpips-vgg.onnx"), Part::Models));
        let setup = |s: String| assert!(s.contains("make setup"), "{s}");
        setup(remedy_for(&checkout().join("weights/models/elpips-vgg.onnx"), Part::Models));
        setup(remedy_for(&checkout().join(".cache/onnxruntime/lib/libonnxruntime.so.1"), Part::Runtime));
        let named = remedy_for(Path::new("/nonexistent/models/lpips-alex.onnx"), Part::Models);
        assert!(named.starts_with("/nonexistent/models must hold the pinned models and their manifest.json"), "{named}");
        let named = remedy_for(Path::new("/nonexistent/libonnxruntime.so"), Part::Runtime);
        assert!(named.contains("1.31 or newer"), "{named}");
    }

    #[test]
    fn the_user_cache_is_versioned_under_its_folder() {
        // Read only: the environment of a test process is shared by its threads.
        let d = user_models_dir();
        assert!(d.ends_with(Path::new(env!("CARGO_PKG_VERSION")).join("models")), "{}", d.display());
    }
}
