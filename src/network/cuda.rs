//! The CUDA side of the runtime: where the CUDA 13 libraries that ONNX Runtime's CUDA provider
//! needs are found, preloading them before a session registers the provider, and naming the GPU.
//! Nothing here links CUDA: the libraries are opened at run time, and a machine without them or
//! without a GPU only gets a message.
//!
//! Search order for each library (the first folder that holds it wins):
//! 1. `ELPIPS_CUDA_LIBS` (folders separated by `:`), an existing installation chosen at run time;
//! 2. the folders listed in `cuda_libs.path` beside the runtime, written by
//!    `make setup DEVICE=cuda CUDA_LIBS=DIR[:DIR]` (an existing installation chosen at set-up);
//! 3. the runtime's own folder, where `make setup DEVICE=cuda` unpacks the nvidia-* wheels and
//!    `make install` copies them;
//! 4. otherwise the system's loader (`LD_LIBRARY_PATH`, `ldconfig`) when the provider asks.
//!
//! Preloading by absolute path works because the dynamic loader reuses a loaded library whose
//! soname matches a later request; the provider library has no RUNPATH of its own.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Folders (separated by `:`) holding the CUDA 13 libraries of an existing installation.
pub const CUDA_LIBS_ENV: &str = "ELPIPS_CUDA_LIBS";
/// The file beside the GPU runtime naming the folders of an existing CUDA installation.
pub const CUDA_LIBS_FILE: &str = "cuda_libs.path";
/// What a user runs to get the GPU runtime.
pub const SETUP_COMMAND: &str = "make setup DEVICE=cuda";

/// The libraries the CUDA provider links or opens by name, dependencies first (ort's own lists,
/// which follow ONNX Runtime's Python `preload_dlls`).
pub fn library_names() -> impl Iterator<Item = &'static str> {
    ort::ep::cuda::CUDA_DYLIBS.iter().chain(ort::ep::cuda::CUDNN_DYLIBS).copied()
}

/// One CUDA library and where it was found (`None`: left to the system's loader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub name: &'static str,
    pub path: Option<PathBuf>,
    /// Which rule of the search order found it.
    pub origin: &'static str,
}

/// The folders searched, in order, with the rule each comes from.
fn search_dirs(runtime: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut dirs = Vec::new();
    if let Some(v) = std::env::var_os(CUDA_LIBS_ENV) {
        dirs.extend(std::env::split_paths(&v).filter(|d| !d.as_os_str().is_empty()).map(|d| (d, CUDA_LIBS_ENV)));
    }
    let real = runtime.canonicalize().unwrap_or_else(|_| runtime.to_owned());
    if let Some(dir) = real.parent() {
        if let Ok(text) = std::fs::read_to_string(dir.join(CUDA_LIBS_FILE)) {
            dirs.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| (PathBuf::from(l), CUDA_LIBS_FILE)));
        }
        dirs.push((dir.to_owned(), "the runtime's folder"));
    }
    dirs
}

/// Where each CUDA library would come from for the runtime at `runtime` (nothing is loaded).
pub fn find(runtime: &Path) -> Vec<Found> {
    let dirs = search_dirs(runtime);
    library_names()
        .map(|name| {
            let hit = dirs.iter().map(|(d, o)| (d.join(name), *o)).find(|(p, _)| p.is_file());
            match hit {
                Some((p, origin)) => Found { name, path: Some(p), origin },
                None => Found { name, path: None, origin: "the system's loader" },
            }
        })
        .collect()
}

// Once per process: a library stays loaded, and loading a second copy of CUDA would be worse
// than useless. The message of a failure is kept so that every session reports it.
static PRELOADED: Mutex<Option<Result<(), String>>> = Mutex::new(None);

/// Loads the CUDA libraries found for `runtime` (see the module's search order) so that the
/// provider's requests for them are served by these files. A library not found is left to the
/// system's loader; the provider's own error then names it.
pub(crate) fn preload(runtime: &Path) -> Result<(), String> {
    let mut guard = PRELOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(done) = guard.as_ref() {
        return done.clone();
    }
    let mut result = Ok(());
    for f in find(runtime) {
        let Some(path) = f.path else { continue };
        if let Err(e) = ort::util::preload_dylib(&path) {
            result = Err(format!("cannot load {} (from {}): {e}", path.display(), f.origin));
            break;
        }
    }
    *guard = Some(result.clone());
    result
}

/// The GPU the CUDA driver reports first, with the driver's CUDA version ("NVIDIA H200, driver
/// CUDA 13.0"), or why none can be named. Asks the driver API (`libcuda.so.1`, installed with
/// the NVIDIA driver, never shipped by elpips) directly: ONNX Runtime has no query for it.
// The one unsafe corner outside the C ABI: calling the driver library's C functions.
#[allow(unsafe_code)]
pub fn gpu() -> Result<String, String> {
    type CuResult = i32;
    // SAFETY: libcuda.so.1 is the NVIDIA driver library; its initialisers have no preconditions.
    let lib = unsafe { libloading::Library::new("libcuda.so.1") }
        .map_err(|e| format!("no NVIDIA driver: libcuda.so.1 cannot be loaded ({e})"))?;
    // SAFETY: the signatures are the driver API's (cuda.h): cuInit(unsigned), cuDriverGetVersion(int*),
    // cuDeviceGetCount(int*), cuDeviceGet(CUdevice*, int), cuDeviceGetName(char*, int, CUdevice);
    // every pointer passed points to a live local of the right type and size.
    unsafe {
        let sym = |name: &[u8]| lib.get::<*const ()>(name).map(|s| *s).map_err(|e| format!("libcuda.so.1 lacks {}: {e}", String::from_utf8_lossy(&name[..name.len() - 1])));
        let init: extern "C" fn(u32) -> CuResult = std::mem::transmute(sym(b"cuInit\0")?);
        let version: extern "C" fn(*mut i32) -> CuResult = std::mem::transmute(sym(b"cuDriverGetVersion\0")?);
        let count: extern "C" fn(*mut i32) -> CuResult = std::mem::transmute(sym(b"cuDeviceGetCount\0")?);
        let device: extern "C" fn(*mut i32, i32) -> CuResult = std::mem::transmute(sym(b"cuDeviceGet\0")?);
        let name: extern "C" fn(*mut std::ffi::c_char, i32, i32) -> CuResult = std::mem::transmute(sym(b"cuDeviceGetName\0")?);
        let rc = init(0);
        if rc != 0 {
            return Err(format!("the NVIDIA driver found no usable GPU (cuInit error {rc})"));
        }
        let (mut v, mut n, mut d) = (0i32, 0i32, 0i32);
        if count(&mut n) != 0 || n < 1 {
            return Err("the NVIDIA driver reports no GPU".to_owned());
        }
        let mut buf = [0 as std::ffi::c_char; 256];
        if device(&mut d, 0) != 0 || name(buf.as_mut_ptr(), buf.len() as i32, d) != 0 {
            return Ok(format!("unknown ({n} GPU(s); the driver did not name them)"));
        }
        let gpu = std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        let driver = if version(&mut v) == 0 { format!(", driver CUDA {}.{}", v / 1000, (v % 1000) / 10) } else { String::new() };
        let more = if n > 1 { format!(" (GPU 0 of {n})") } else { String::new() };
        Ok(format!("{gpu}{more}{driver}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_folder_and_the_path_file_are_searched_after_the_environment() {
        let dir = std::env::temp_dir().join(format!("elpips-cuda-find-{}", std::process::id()));
        let other = dir.join("torch");
        std::fs::create_dir_all(&other).unwrap();
        let runtime = dir.join("libonnxruntime.so.1");
        std::fs::write(&runtime, b"").unwrap();
        std::fs::write(dir.join("libcudart.so.13"), b"").unwrap();
        std::fs::write(other.join("libcudnn.so.9"), b"").unwrap();
        std::fs::write(dir.join(CUDA_LIBS_FILE), format!("{}\n", other.display())).unwrap();
        let found = find(&runtime);
        assert_eq!(found.iter().map(|f| f.name).collect::<Vec<_>>(), library_names().collect::<Vec<_>>());
        let get = |n: &str| found.iter().find(|f| f.name == n).unwrap().clone();
        if std::env::var_os(CUDA_LIBS_ENV).is_none() {
            assert_eq!(get("libcudart.so.13").path, Some(dir.join("libcudart.so.13")));
            assert_eq!(get("libcudart.so.13").origin, "the runtime's folder");
            assert_eq!(get("libcudnn.so.9").path, Some(other.join("libcudnn.so.9")));
            assert_eq!(get("libcudnn.so.9").origin, CUDA_LIBS_FILE);
            assert_eq!(get("libcublas.so.13").path, None);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_libraries_are_the_ones_the_provider_needs() {
        let names: Vec<_> = library_names().collect();
        for n in ["libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcufft.so.12", "libnvrtc.so.13", "libcudnn.so.9"] {
            assert!(names.contains(&n), "{n}");
        }
        // Dependencies first: cuBLAS needs cuBLASLt and the runtime loaded before it.
        let at = |n| names.iter().position(|x| *x == n).unwrap();
        assert!(at("libcudart.so.13") < at("libcublasLt.so.13") && at("libcublasLt.so.13") < at("libcublas.so.13"));
    }
}
