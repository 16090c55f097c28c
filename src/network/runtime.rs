//! Finding and loading ONNX Runtime, and building sessions. This is the only module that talks
//! to `ort` directly; the rest of the crate sees [`Session`] and the crate's own [`Error`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::builder::GraphOptimizationLevel;

use crate::error::{Error, Result};
use crate::network::backend::{self, Arithmetic, Backend, CpuFeatures, Plan};
use crate::network::install::{remedy_for, Install, Part};

/// Environment variable naming the ONNX Runtime shared library (ort's own convention).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The oldest ONNX Runtime minor version `ort` 2.0.0-rc.15 accepts (1.31).
pub const MIN_ORT_VERSION: &str = "1.31";

const EXPLICIT_ORIGIN: &str = "the explicit runtime path";
const INSTALL_ORIGIN: &str = "the installation";

/// Where `make setup` unpacks the CPU runtime in a source checkout.
fn project_default_library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/onnxruntime/lib/libonnxruntime.so.1")
}

/// Where `make setup DEVICE=cuda` unpacks the GPU runtime (onnxruntime-gpu, which runs the CPU
/// provider too) in a source checkout.
fn project_gpu_library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/onnxruntime-gpu/lib/libonnxruntime.so.1")
}

/// The command that installs a runtime with the CUDA provider.
pub const CUDA_SETUP_COMMAND: &str = "make setup DEVICE=cuda";

/// Gives the heap's free pages back to the system (glibc's `malloc_trim`; a no-op elsewhere).
/// With the CPU arena off, ONNX Runtime frees each run's activations, but glibc keeps freed
/// blocks below its mmap threshold (which grows to 32 MiB) in the heap, and runs of changing
/// shapes (tiles, scale levels, flips) fragment it: the 1080p gate peaked 300+ MiB above one
/// run's working set. Trimming between the runs of a big pair keeps the peak at one run's; it
/// frees only what is already free, so a host's allocator settings are left as they are.
#[allow(unsafe_code)]
pub(crate) fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The size from which the CLI has glibc map each allocation on its own ([`bound_heap_cache`]).
pub const MMAP_THRESHOLD_BYTES: usize = 4 << 20;
/// The free space at the heap's top that glibc keeps rather than trims on each free, with the
/// threshold above fixed ([`bound_heap_cache`]).
pub const TRIM_THRESHOLD_BYTES: usize = 32 << 20;

/// Has glibc give every allocation of [`MMAP_THRESHOLD_BYTES`] or more its own mapping, returned
/// to the system when freed (`mallopt(M_MMAP_THRESHOLD)`), and keep [`TRIM_THRESHOLD_BYTES`] at
/// the heap's top (`M_TRIM_THRESHOLD`: fixing the first leaves this at 128 KiB, and trimming on
/// nearly every free cost as much time again); each skipped where the user set its
/// `MALLOC_*_THRESHOLD_` variable, and a no-op off glibc. glibc's default mmap threshold grows to
/// 32 MiB after the first big free, so a run's activation tensors of 4-32 MiB land in the heap,
/// where blocks freed mid-run fit the next shapes badly and [`release_free_heap`] comes only
/// after the run: the 1080p tile-sampled gate peaked at 1.42 GiB with one fused run of 0.24 Mpx
/// taking 1.02 GiB of it, and at 0.93 GiB with this (docs/performance.md, "Tile-sampled
/// draws"). Process-wide, so called by the programs that own their process (the CLI), never by
/// the library for its host.
#[allow(unsafe_code)]
pub fn bound_heap_cache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, bytes) in [
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only changes a malloc parameter; it has no preconditions.
            unsafe {
                libc::mallopt(parameter, bytes as libc::c_int);
            }
        }
    }
}

/// How a session keeps its activation buffers between runs (CPU provider).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// ONNX Runtime's CPU arena: buffers grown once and reused by later runs. For pairs whose
    /// samples never tile (a handful of input shapes): 1.47x faster per E-LPIPS sample at
    /// 512x512, and a lower peak there (942 vs 1043 MiB; docs/log.md, 2026-12-02).
    Arena,
    /// Each run's activations freed when it ends: the peak stays one run's working set. For
    /// pairs that tile, whose runs of many shapes (tiles, levels, flips) share the process: the
    /// arena kept buffers of each, and a 16-sample 1080p gate peaked at 1697 MiB.
    Lean,
}

pub(crate) fn no_cuda_reason(options: &RuntimeOptions) -> String {
    let (lib, _) = locate(options.library.as_deref(), options.install_dir.as_deref());
    if !cfg!(feature = "cuda") {
        return "`device` cuda: this build of elpips has no CUDA support; rebuild with `cargo build --release --features cuda`, or use `device` auto / cpu".to_owned();
    }
    match options.cuda_provider_offered() {
        // A GPU runtime without a GPU: the provider is there but cannot start.
        Ok(true) => format!(
            "`device` cuda: the ONNX Runtime at {} has no CUDA execution provider usable here: {}; use `device` auto or cpu on this machine",
            lib.display(),
            gpu().err().unwrap_or_else(|| "the GPU cannot be used".to_owned())
        ),
        _ => format!(
            "`device` cuda: the ONNX Runtime at {} has no CUDA execution provider (the CPU-only runtime that `make setup` installs has none); run `{CUDA_SETUP_COMMAND}` to install the GPU runtime, or use `device` auto to fall back to the CPU",
            lib.display()
        ),
    }
}

/// The GPU CUDA would run on ([`crate::network::cuda::gpu`]), or why there is none.
pub fn gpu() -> std::result::Result<String, String> {
    #[cfg(feature = "cuda")]
    return crate::network::cuda::gpu();
    #[cfg(not(feature = "cuda"))]
    Err("this build has no CUDA support (cargo feature `cuda`)".to_owned())
}

/// Resolves the runtime library: the explicit path, then `ORT_DYLIB_PATH`, then the runtime of
/// the installation the running program belongs to ([`Install`]: `<prefix>/lib` of `make
/// install` and the `make dist` tarball, the `onnxruntime` wheel of the pip package), then the
/// checkout's GPU runtime when `make setup DEVICE=cuda` made one, then its CPU runtime. Returns
/// the path and where it came from (for error messages).
pub fn locate_library(explicit: Option<&Path>) -> (PathBuf, &'static str) {
    locate(explicit, None)
}

/// [`locate_library`] for an install directory the caller may name (see [`Install::find`]).
fn locate(explicit: Option<&Path>, install: Option<&Path>) -> (PathBuf, &'static str) {
    if let Some(p) = explicit {
        return (p.to_owned(), EXPLICIT_ORIGIN);
    }
    if let Some(p) = std::env::var_os(ORT_DYLIB_ENV).filter(|p| !p.is_empty()) {
        return (PathBuf::from(p), ORT_DYLIB_ENV);
    }
    // An installation uses its own runtime or none: never one of the checkout it was built in.
    if let Some(i) = Install::find(install) {
        return (i.runtime, INSTALL_ORIGIN);
    }
    let gpu = project_gpu_library();
    if gpu.is_file() {
        return (gpu, "the project's GPU runtime (make setup DEVICE=cuda)");
    }
    (project_default_library(), "the project's default location")
}

struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

// ort keeps one global library handle; we remember which file it came from so that a request
// for a different one is an error rather than silently ignored.
static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads ONNX Runtime once per process and returns its environment.
pub(crate) fn environment(options: &RuntimeOptions) -> Result<ort::environment::Environment> {
    let explicit = options.library.as_deref();
    let (path, origin) = locate(explicit, options.install_dir.as_deref());
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(loaded) = guard.as_ref() {
        if explicit.is_some() && !same_file(&loaded.path, &path) {
            return Err(Error::Runtime(format!(
                "already loaded from {} in this process; cannot switch to {}",
                loaded.path.display(),
                path.display()
            )));
        }
        return Ok(loaded.env.clone());
    }
    crate::integrity::check_local_path(&path, "runtime library path")?;
    if !path.exists() {
        return Err(Error::Runtime(format!(
            "library not found at {} (from {origin}); {}",
            path.display(),
            remedy_for(&path, Part::Runtime)
        )));
    }
    // The library elpips installed must be the one it pinned; one the caller names is theirs.
    let caller_chosen = origin == EXPLICIT_ORIGIN || origin == ORT_DYLIB_ENV;
    let pin = (origin == INSTALL_ORIGIN).then(|| Install::find(options.install_dir.as_deref())).flatten().map(|i| i.runtime_pin);
    crate::integrity::verify_runtime(&path, caller_chosen, pin.as_deref(), &|p| remedy_for(p, Part::Runtime))?;
    let builder = std::panic::catch_unwind(|| ort::init_from(&path)).map_err(|_| {
        Error::Runtime(format!("loading {} crashed; is it a libonnxruntime.so?", path.display()))
    })?;
    let builder = builder.map_err(|e| {
        Error::Runtime(format!(
            "cannot load {} (from {origin}): {e}; {}",
            path.display(),
            remedy_for(&path, Part::Runtime)
        ))
    })?;
    let env = builder
        .with_name("elpips")
        .build()
        .map_err(|e| Error::Runtime(format!("cannot create an environment: {e}")))?;
    *guard = Some(Loaded { path, env: env.clone() });
    Ok(env)
}

/// The version of the ONNX Runtime these options load (e.g. `1.31.1`), and its path; loads it
/// (once per process) if needed.
pub fn version(options: &RuntimeOptions) -> Result<(String, PathBuf)> {
    environment(options)?;
    let path = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|l| l.path.clone()).unwrap_or_default();
    let version = loaded_version(&path).ok_or_else(|| Error::Runtime(format!("{} does not report its version", path.display())))?;
    Ok((version, path))
}

/// `OrtGetApiBase()->GetVersionString()` of the runtime loaded from `path` (its build-info
/// string names a git branch, not a version). Only asks a library this process has loaded.
#[allow(unsafe_code)]
fn loaded_version(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD returns a handle only to a library that is loaded already (ort's),
    // so no initialiser runs; the handle is closed below.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: `handle` is open; the symbol name is NUL-terminated.
    let symbol = unsafe { libc::dlsym(handle, c"OrtGetApiBase".as_ptr()) };
    let version = (!symbol.is_null()).then(|| {
        // SAFETY: OrtGetApiBase has this signature in every ONNX Runtime (onnxruntime_c_api.h);
        // it returns a pointer to a static struct whose GetVersionString returns a static string.
        unsafe {
            let get: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(symbol);
            let base = get();
            if base.is_null() {
                return None;
            }
            let s = ((*base).GetVersionString)();
            (!s.is_null()).then(|| std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned())
        }
    });
    // SAFETY: `handle` came from dlopen above and is closed once; ort keeps its own reference.
    unsafe { libc::dlclose(handle) };
    version.flatten()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Where the networks run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Device {
    /// ONNX Runtime's CPU provider (always present).
    #[default]
    Cpu,
    /// CUDA where this build and the loaded runtime support it and a session opens on it; else the CPU.
    Auto,
    /// CUDA or an error: needs the `cuda` feature, a runtime built with the CUDA provider
    /// (onnxruntime-gpu; the PyPI CPU wheel `make setup` installs has none) and a GPU.
    Cuda,
}

impl Device {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Auto => "auto",
            Device::Cuda => "cuda",
        }
    }

    /// Parses `cpu`, `cuda` or `auto`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            _ => Err(Error::invalid(format!("unknown device `{name}`; choose cpu, cuda or auto"))),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Execution settings shared by every session of a metric.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Path of libonnxruntime; `None` = `ORT_DYLIB_PATH`, then the installation's, then the
    /// checkout's ([`locate_library`]).
    pub library: Option<PathBuf>,
    /// Intra-op threads; 0 = one per physical core available to this process.
    pub threads: usize,
    /// Where to run (CPU by default).
    pub device: Device,
    /// The folder an installed elpips is found around ([`Install::find`]: its `bin` or `lib`);
    /// `None` = the running executable's (the C ABI sets the folder of the loaded libelpips).
    pub install_dir: Option<PathBuf>,
    /// How cuDNN picks each convolution's algorithm on CUDA (ignored on the CPU).
    pub cudnn_search: CudnnSearch,
    /// Which kernels run the networks on the CPU (`auto` by default: see
    /// [`crate::network::backend`]).
    pub backend: Backend,
}

/// cuDNN's convolution algorithm search (ONNX Runtime's `cudnn_conv_algo_search`). Each E-LPIPS
/// scale level gives one input shape that every later sample repeats, so the search's one-off
/// cost per shape is paid once per level and per session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum CudnnSearch {
    /// Time every algorithm on the first run of each shape and keep the fastest (ONNX Runtime's default).
    #[default]
    Exhaustive,
    /// cuDNN's heuristic ranking, no timing: a quicker first run, maybe slower later ones.
    Heuristic,
    /// Always the implicit-precomputed GEMM algorithm: least memory, no search.
    Default,
}

impl CudnnSearch {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            CudnnSearch::Exhaustive => "exhaustive",
            CudnnSearch::Heuristic => "heuristic",
            CudnnSearch::Default => "default",
        }
    }
}

/// More intra-op threads than this is a mistake (an unset or negative value cast to unsigned),
/// not a request: ONNX Runtime would try to start them all.
pub const MAX_THREADS: usize = 1024;

impl RuntimeOptions {
    /// Refuses thread counts no machine has, and OpenVINO asked for beside CUDA.
    pub fn validate(&self) -> Result<()> {
        if self.threads > MAX_THREADS {
            return Err(Error::InvalidArgument(format!("{} threads requested; at most {MAX_THREADS} (0 = one per core)", self.threads)));
        }
        if self.backend == Backend::Openvino && self.device != Device::Cpu {
            return Err(Error::invalid(format!(
                "`backend` openvino runs on the CPU; use `device` cpu with it, or `backend` auto with `device` {}",
                self.device
            )));
        }
        Ok(())
    }

    /// The OpenVINO plugin the runtime these options load would use, and where it was found
    /// ([`backend::locate_plugin`]).
    pub fn openvino_plugin(&self) -> Option<(PathBuf, &'static str)> {
        let (lib, _) = locate(self.library.as_deref(), self.install_dir.as_deref());
        backend::locate_plugin(&lib)
    }

    /// What [`Backend`] a CPU session at `arithmetic` is planned to get on this machine (before
    /// the plugin is loaded: a fall-back may still follow), or why none can serve it.
    pub fn backend_plan(&self, arithmetic: Arithmetic) -> std::result::Result<Plan, String> {
        let plugin = self.openvino_plugin();
        backend::plan(self.backend, arithmetic, &CpuFeatures::detect(), plugin.as_ref().map(|(p, _)| p.as_path()))
    }

    /// The intra-op thread count sessions get.
    pub fn threads_used(&self) -> usize {
        self.effective_threads()
    }

    pub(crate) fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            physical_cores()
        }
    }
}

/// What the CPU backends have to go on here: the CPU, the OpenVINO plugin and what each
/// precision is planned to run on (`elpips info`; nothing is loaded to find out).
#[derive(Clone, Debug)]
pub struct BackendFacts {
    /// The CPU's features (or those of [`backend::CPU_FEATURES_ENV`]).
    pub cpu: CpuFeatures,
    /// The OpenVINO plugin and where it was found, if any.
    pub plugin: Option<(PathBuf, &'static str)>,
    /// Per precision: the backend planned and the CPU features its kernels use, or why the
    /// precision cannot run here.
    pub plans: Vec<(Arithmetic, PlannedBackend)>,
}

/// A precision's planned backend with the CPU features its kernels use, or why it cannot run.
pub type PlannedBackend = std::result::Result<(Backend, Vec<&'static str>), String>;

impl RuntimeOptions {
    /// [`BackendFacts`] for these options.
    pub fn backend_facts(&self) -> BackendFacts {
        let cpu = CpuFeatures::detect();
        let plans = Arithmetic::ALL
            .iter()
            .map(|&a| {
                let plan = self.backend_plan(a).map(|p| match p {
                    Plan::Mlas => Backend::Mlas,
                    Plan::Openvino { .. } => Backend::Openvino,
                });
                (a, plan.map(|b| (b, cpu.used_by(b, a))))
            })
            .collect();
        BackendFacts { plugin: self.openvino_plugin(), cpu, plans }
    }
}

impl BackendFacts {
    /// `elpips info`'s lines (`name: value`).
    pub fn lines(&self) -> Vec<String> {
        let features = self.cpu.names();
        let model = if self.cpu.model.is_empty() { &self.cpu.vendor } else { &self.cpu.model };
        let mut out = vec![format!("cpu:     {model} ({})", if features.is_empty() { "no AVX2".to_owned() } else { features.join(", ") })];
        out.push(match &self.plugin {
            Some((p, origin)) => format!("openvino: {} (from {origin})", p.display()),
            None => format!("openvino: not installed (`make setup` fetches it; it serves Intel CPUs, this one is {})", self.cpu.vendor),
        });
        for (a, plan) in &self.plans {
            out.push(match plan {
                Ok((b, used)) => format!("backend {:<4}: {b} ({})", a.name(), used.join(", ")),
                Err(why) => format!("backend {:<4}: none: {why}", a.name()),
            });
        }
        out
    }
}

/// Physical cores among the CPUs this process may use: convolutions saturate a core's FMA units
/// with one thread, and a second hyper-thread on the same core only adds contention.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Count distinct sibling sets among the online CPUs (Linux sysfs); the process's own limit
    // (affinity, cgroup quota) still caps the answer.
    let mut cores = std::collections::BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with("cpu") && name[3..].chars().all(|c| c.is_ascii_digit()) && name.len() > 3) {
                continue;
            }
            if let Ok(s) = std::fs::read_to_string(e.path().join("topology/thread_siblings_list")) {
                cores.insert(s.trim().to_owned());
            }
        }
    }
    if cores.is_empty() {
        return logical;
    }
    let smt = std::fs::read_dir("/sys/devices/system/cpu").map(|d| d.flatten().filter(|e| {
        let n = e.file_name();
        let n = n.to_string_lossy();
        n.len() > 3 && n.starts_with("cpu") && n[3..].chars().all(|c| c.is_ascii_digit())
    }).count()).unwrap_or(cores.len()) as f64
        / cores.len() as f64;
    ((logical as f64 / smt.max(1.0)).round() as usize).clamp(1, logical)
}

/// Whether CUDA can run here: this build has it, the loaded runtime offers the CUDA execution
/// provider, and the NVIDIA driver reports a GPU.
pub fn cuda_available(library: Option<&Path>) -> Result<bool> {
    RuntimeOptions { library: library.map(Path::to_owned), ..Default::default() }.cuda_available()
}

/// Whether the loaded runtime was built with the CUDA execution provider (onnxruntime-gpu),
/// GPU or not.
pub fn cuda_provider_offered(library: Option<&Path>) -> Result<bool> {
    RuntimeOptions { library: library.map(Path::to_owned), ..Default::default() }.cuda_provider_offered()
}

/// The CUDA libraries the runtime these options load would use, and where each was found
/// (`None`: left to the system's loader); empty without the `cuda` feature.
pub fn cuda_libraries(library: Option<&Path>) -> Vec<(&'static str, Option<PathBuf>, &'static str)> {
    #[cfg(feature = "cuda")]
    {
        let (lib, _) = locate_library(library);
        crate::network::cuda::find(&lib).into_iter().map(|f| (f.name, f.path, f.origin)).collect()
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = library;
        Vec::new()
    }
}

impl RuntimeOptions {
    /// [`cuda_available`] for the runtime these options load.
    pub(crate) fn cuda_available(&self) -> Result<bool> {
        Ok(self.cuda_provider_offered()? && gpu().is_ok())
    }

    /// [`cuda_provider_offered`] for the runtime these options load.
    pub(crate) fn cuda_provider_offered(&self) -> Result<bool> {
        environment(self)?;
        #[cfg(feature = "cuda")]
        {
            use ort::ep::ExecutionProvider;
            Ok(ort::ep::CUDA::is_available().unwrap_or(false))
        }
        #[cfg(not(feature = "cuda"))]
        Ok(false)
    }
}

/// A loaded network. `run` needs `&mut`: one session per thread, or a lock around it.
pub struct Session {
    inner: ort::session::Session,
    device: Device,
    backend: Backend,
}

// Once per process: the plugin stays loaded in the one environment, and registering it again
// would be refused. The outcome (or its reason) is kept so that every session reports it.
static OPENVINO: Mutex<Option<std::result::Result<(), String>>> = Mutex::new(None);

/// Registers the OpenVINO plugin at `path` with the process's environment, once; a later call
/// gets the first call's outcome (whatever path it names).
fn register_openvino(env: &ort::environment::Environment, path: &Path) -> std::result::Result<(), String> {
    let mut guard = OPENVINO.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(done) = guard.as_ref() {
        return done.clone();
    }
    let outcome = crate::integrity::check_local_path(path, "OpenVINO plugin path")
        .map_err(|e| e.to_string())
        .and_then(|()| {
            if path.is_file() {
                Ok(())
            } else {
                Err(format!("the OpenVINO plugin {} is not a file", path.display()))
            }
        })
        .and_then(|()| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.register_ep_library("elpips-openvino", path)))
                .map_err(|_| format!("loading the OpenVINO plugin {} crashed", path.display()))?
                .map_err(|e| format!("the OpenVINO plugin {} does not load: {e}", path.display()))
        });
    *guard = Some(outcome.clone());
    outcome
}

/// The compiled-model cache for sessions of the plugin at `plugin`, created and trimmed once per
/// process ([`backend::openvino_cache_dir`]); `None` where it cannot be made (no cache then).
fn openvino_cache(plugin: &Path) -> Option<PathBuf> {
    static CACHE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = backend::openvino_cache_dir(plugin)?;
            std::fs::create_dir_all(&dir).ok()?;
            backend::trim_cache(&dir);
            Some(dir)
        })
        .clone()
}

fn is_openvino_cpu(d: &ort::device::Device<'_>) -> bool {
    d.ep().is_ok_and(|ep| ep == backend::OPENVINO_EP) && d.hardware_device().ty() == ort::memory::DeviceType::CPU
}

impl RuntimeOptions {
    /// The OpenVINO plugin's path once it is registered with the runtime and offers a device for
    /// this CPU, or why not (not installed, does not load, serves no device here).
    pub fn openvino_ready(&self) -> std::result::Result<PathBuf, String> {
        let env = environment(self).map_err(|e| e.to_string())?;
        let (plugin, origin) = self.openvino_plugin().ok_or_else(|| {
            format!("the plugin is not installed (no {}/{} beside the ONNX Runtime library); run `make setup`", backend::OPENVINO_DIR, backend::OPENVINO_PLUGIN_FILE)
        })?;
        register_openvino(&env, &plugin).map_err(|e| format!("{e} (from {origin})"))?;
        if !env.devices().any(|d| is_openvino_cpu(&d)) {
            // What ONNX Runtime sees, not CpuFeatures (which a test may replace).
            let vendor = env
                .devices()
                .find(|d| d.hardware_device().ty() == ort::memory::DeviceType::CPU)
                .and_then(|d| d.hardware_device().vendor().ok().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            return Err(format!("the plugin offers no device for this CPU (vendor {vendor}): it serves Intel CPUs only"));
        }
        Ok(plugin)
    }
}

impl Session {
    /// Opens `model` with the given options. [`Device::Auto`] falls back to the CPU when CUDA
    /// is not offered or the session does not open on it; [`Device::Cuda`] fails instead.
    pub fn open(model: &Path, options: &RuntimeOptions) -> Result<Self> {
        Self::open_with(model, options, Buffers::Lean)
    }

    /// [`Session::open`] with the given [`Buffers`] (the CPU provider's; CUDA keeps its own).
    pub fn open_with(model: &Path, options: &RuntimeOptions, buffers: Buffers) -> Result<Self> {
        Self::open_in(model, options, buffers, Arithmetic::F32)
    }

    /// [`Session::open_with`] at the given [`Arithmetic`]: on the CPU, the backend
    /// `options.backend` plans for it ([`RuntimeOptions::backend_plan`]).
    pub fn open_in(model: &Path, options: &RuntimeOptions, buffers: Buffers, arithmetic: Arithmetic) -> Result<Self> {
        options.validate()?;
        let env = environment(options)?;
        // The bytes checked against the manifest are the bytes loaded (no check-then-reopen race).
        let bytes = crate::integrity::read_verified_model(model, &|p| remedy_for(p, Part::Models))?;
        let on_cpu = |device| Self::open_cpu(&env, &bytes, model, options, device, buffers, arithmetic);
        match options.device {
            Device::Cpu => on_cpu(Device::Cpu),
            Device::Cuda => {
                if arithmetic == Arithmetic::Bf16 {
                    return Err(Error::invalid("`precision` bf16 runs on the CPU's openvino backend only; use `device` cpu"));
                }
                if !options.cuda_available()? {
                    return Err(Error::Runtime(no_cuda_reason(options)));
                }
                Self::open_on(&env, &bytes, model, options, Device::Cuda, buffers, None)
                    .map_err(|e| Error::Runtime(format!("cannot open {} on CUDA: {e}", model.display())))
            }
            Device::Auto => {
                if arithmetic != Arithmetic::Bf16 && options.cuda_available()? {
                    if let Ok(s) = Self::open_on(&env, &bytes, model, options, Device::Cuda, buffers, None) {
                        return Ok(s);
                    }
                }
                on_cpu(Device::Cpu)
            }
        }
    }

    /// A CPU session on the backend planned for it: OpenVINO where the plan says so and it
    /// opens (a failure is an error where the plan requires OpenVINO, else MLAS with a
    /// warning), else MLAS.
    #[allow(clippy::too_many_arguments)]
    fn open_cpu(
        env: &ort::environment::Environment,
        bytes: &[u8],
        model: &Path,
        options: &RuntimeOptions,
        device: Device,
        buffers: Buffers,
        arithmetic: Arithmetic,
    ) -> Result<Self> {
        let plan = options.backend_plan(arithmetic).map_err(Error::invalid)?;
        let Plan::Openvino { required } = plan else {
            return Self::open_on(env, bytes, model, options, device, buffers, None);
        };
        let openvino = options.openvino_ready().and_then(|plugin| {
            let config = backend::openvino_config(arithmetic, options.effective_threads(), openvino_cache(&plugin).as_deref());
            Self::open_on(env, bytes, model, options, device, buffers, Some(&config)).map_err(|e| match e {
                Error::Model(m) => m,
                other => other.to_string(),
            })
        });
        match openvino {
            Ok(s) => Ok(s),
            Err(e) if required => Err(Error::Runtime(format!("OpenVINO: {e}; use `backend` auto or mlas"))),
            Err(e) => {
                backend::warn_once(&format!("OpenVINO unavailable, running on MLAS (`backend` auto): {e}"));
                Self::open_on(env, bytes, model, options, device, buffers, None)
            }
        }
    }

    /// Opens a session on `device`; on the CPU, on OpenVINO when `openvino` gives its
    /// `load_config`, else on MLAS.
    #[allow(clippy::too_many_arguments)]
    fn open_on(
        env: &ort::environment::Environment,
        bytes: &[u8],
        model: &Path,
        options: &RuntimeOptions,
        device: Device,
        buffers: Buffers,
        openvino: Option<&str>,
    ) -> Result<Self> {
        // Builder errors carry the builder for recovery; we only need their message.
        let msg = |e: &dyn std::fmt::Display| Error::Model(format!("cannot load {}: {e}", model.display()));
        #[allow(unused_mut)]
        let mut builder = ort::session::Session::builder(env)
            .map_err(|e| msg(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| msg(&e))?
            .with_intra_threads(options.effective_threads())
            .map_err(|e| msg(&e))?
            .with_inter_threads(1)
            .map_err(|e| msg(&e))?
            // Input sizes vary per call (E-LPIPS samples, tiles), so a memory pattern is never
            // reused (measured: no faster with it). The arena: see `Buffers`.
            .with_memory_pattern(false)
            .map_err(|e| msg(&e))?;
        let backend = if let Some(config) = openvino {
            // The plugin's CPU device ([`RuntimeOptions::openvino_ready`] saw it). The CPU
            // provider behind it runs any node OpenVINO does not take.
            let devices: Vec<_> = env.devices().filter(is_openvino_cpu).collect();
            let ep_options = [(format!("{}.load_config", backend::OPENVINO_EP), config.to_owned())];
            builder = builder.with_devices(devices, Some(&ep_options)).map_err(|e| msg(&e))?;
            Backend::Openvino
        } else {
            builder = builder
                .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(buffers == Buffers::Arena).build()])
                .map_err(|e| msg(&e))?;
            Backend::Mlas
        };
        #[cfg(feature = "cuda")]
        if device == Device::Cuda {
            let (runtime, _) = locate(options.library.as_deref(), options.install_dir.as_deref());
            crate::network::cuda::preload(&runtime).map_err(Error::Runtime)?;
            let search = match options.cudnn_search {
                CudnnSearch::Exhaustive => ort::ep::cuda::ConvAlgorithmSearch::Exhaustive,
                CudnnSearch::Heuristic => ort::ep::cuda::ConvAlgorithmSearch::Heuristic,
                CudnnSearch::Default => ort::ep::cuda::ConvAlgorithmSearch::Default,
            };
            // Registered first, the CPU provider behind it runs whatever CUDA does not take.
            let cuda = ort::ep::CUDA::default().with_conv_algorithm_search(search);
            builder = builder.with_execution_providers([cuda.build().error_on_failure()]).map_err(|e| msg(&e))?;
        }
        let inner = builder.commit_from_memory(bytes).map_err(|e| msg(&e))?;
        Ok(Session { inner, device, backend })
    }

    /// The CPU kernels this session runs on (never `Auto`; MLAS behind CUDA).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The device this session runs on (CPU or CUDA; never `Auto`).
    pub fn device(&self) -> Device {
        self.device
    }

    /// A custom metadata value of the model (`None` if absent).
    pub fn metadata(&self, key: &str) -> Option<String> {
        self.inner.metadata().ok().and_then(|m| m.custom(key))
    }

    /// Runs the graph and hands each named `f32` output, with its shape, to `each` in order,
    /// borrowed from the runtime's buffers (no copy).
    pub fn run_with(
        &mut self,
        inputs: &[(&str, Vec<usize>, &[f32])],
        outputs: &[&str],
        each: &mut dyn FnMut(usize, &[usize], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut values = Vec::with_capacity(inputs.len());
        for (name, shape, data) in inputs {
            let t = ort::value::TensorRef::from_array_view((shape.clone(), *data))?;
            values.push((std::borrow::Cow::Borrowed(*name), ort::session::SessionInputValue::from(t)));
        }
        let result = self.inner.run(values)?;
        for (i, name) in outputs.iter().enumerate() {
            let value = result
                .get(*name)
                .ok_or_else(|| Error::Model(format!("the model has no output named `{name}`; rebuild it with `make setup`")))?;
            let (shape, data) = value.try_extract_tensor::<f32>()?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            each(i, &shape, data)?;
        }
        Ok(())
    }

    /// Names of the graph inputs, in order, then of the initializers a caller may override.
    pub fn input_names(&self) -> Vec<String> {
        let inputs = self.inner.inputs().iter().map(|i| i.name().to_string());
        inputs.chain(self.inner.overridable_initializers().iter().map(|i| i.name().to_string())).collect()
    }

    /// Names of the graph outputs, in order.
    pub fn output_names(&self) -> Vec<String> {
        self.inner.outputs().iter().map(|o| o.name().to_string()).collect()
    }

    /// Runs the graph with named `f32` inputs (`(name, shape, data)`) and returns the named
    /// `f32` outputs as flat vectors.
    pub fn run(&mut self, inputs: &[(&str, Vec<usize>, &[f32])], outputs: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.run_shaped(inputs, outputs)?.into_iter().map(|(_, data)| data).collect())
    }

    /// [`Session::run`], returning each output's shape with its values.
    pub fn run_shaped(&mut self, inputs: &[(&str, Vec<usize>, &[f32])], outputs: &[&str]) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let mut values = Vec::with_capacity(inputs.len());
        for (name, shape, data) in inputs {
            let t = ort::value::TensorRef::from_array_view((shape.clone(), *data))?;
            values.push((std::borrow::Cow::Borrowed(*name), ort::session::SessionInputValue::from(t)));
        }
        // Fetch only the named outputs: the per-tap maps (heatmaps) are graph outputs too, and
        // copying them out on every distance-only run would cost memory for nothing.
        let selector = outputs.iter().fold(ort::session::OutputSelector::no_default(), |s, name| s.with(*name));
        let options = ort::session::RunOptions::new()?.with_outputs(selector);
        let result = self.inner.run_with_options(values, &options)?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let value = result
                .get(*name)
                .ok_or_else(|| Error::Model(format!("the model has no output named `{name}`; rebuild it with `make setup`")))?;
            let (shape, data) = value.try_extract_tensor::<f32>()?;
            let shape = shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
            out.push((shape, data.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(all(test, feature = "cuda"))]
mod tests {
    use super::*;

    /// On a machine without a GPU, the GPU runtime of `make setup DEVICE=cuda` loads, the CUDA
    /// libraries preload, and registering the CUDA provider fails with ONNX Runtime's reason
    /// instead of crashing (run alone: `cargo test --release --lib cuda_registration`).
    #[test]
    fn cuda_registration_without_a_gpu_fails_with_a_message() {
        let lib = project_gpu_library();
        if !lib.is_file() || gpu().is_ok() {
            println!("skipped: needs the GPU runtime (make setup DEVICE=cuda) and no GPU");
            return;
        }
        let options = RuntimeOptions { library: Some(lib), device: Device::Cuda, ..Default::default() };
        let env = match environment(&options) {
            Ok(env) => env,
            Err(e) if e.to_string().contains("already loaded") => panic!("run this test alone: {e}"),
            Err(e) => panic!("the GPU runtime does not load: {e}"),
        };
        assert!(options.cuda_provider_offered().unwrap());
        assert!(!options.cuda_available().unwrap());
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/models/lpips-alex.onnx");
        let bytes = std::fs::read(&model).unwrap();
        let e = Session::open_on(&env, &bytes, &model, &options, Device::Cuda, Buffers::Lean, None).err().expect("no GPU: registration must fail");
        println!("{e}");
        assert!(e.to_string().contains("libcuda.so.1"), "{e}");
        // The same runtime still runs on the CPU.
        let s = Session::open_on(&env, &bytes, &model, &options, Device::Cpu, Buffers::Lean, None).unwrap();
        assert_eq!(s.device(), Device::Cpu);
    }
}
