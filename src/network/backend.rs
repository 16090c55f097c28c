//! Which kernels run a session on the CPU: ONNX Runtime's own (MLAS) or OpenVINO's, through its
//! ONNX Runtime plugin (`libonnxruntime_providers_openvino_plugin.so`, fetched by `make setup`
//! beside the runtime). Owns the CPU features that decide it, where the plugin is found, the
//! rule `auto` follows and the arithmetic hint a session gets. Opening the sessions stays in
//! [`crate::network::runtime`]; this module never loads anything.
//!
//! The rule of [`Backend::Auto`] (measurements in docs/performance.md, "CPU backends"):
//! * fp32: OpenVINO on Intel CPUs with AVX-512, where it measured faster than MLAS at every size
//!   (1.07x at 256x256, 1.8x at 1080p for a VGG16 pair); MLAS everywhere else. The plugin serves
//!   Intel CPUs only (it offers no device for any other vendor), and Intel CPUs without AVX-512
//!   are unmeasured, so they keep MLAS, which is never slower than itself.
//! * int8: MLAS (its u8s8 kernels use VNNI and AMX; OpenVINO on the quantized model is unmeasured).
//! * bf16: OpenVINO, the only backend with bf16 convolutions, and only on CPUs with AVX512-BF16
//!   or AMX; refused elsewhere, never emulated.
//! * The gradient models (`Gradient`) stay on MLAS under `auto`: unmeasured on OpenVINO.
//!
//! fp32 pins OpenVINO's `INFERENCE_PRECISION_HINT` to `f32`: on CPUs with bf16 it would
//! otherwise pick bf16 by itself, and the golden figures would move.
//!
//! For tests, `ELPIPS_CPU_FEATURES` replaces the CPU's features ([`CpuFeatures::from_spec`]) and
//! `ELPIPS_OPENVINO_PLUGIN` the plugin's path (empty: none), so every branch of the rule runs on
//! any machine.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The kernels that run the networks on the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Backend {
    /// What measured fastest for this CPU (see the module's rule), falling back to MLAS with a
    /// warning where the OpenVINO plugin does not load or does not compile a model.
    #[default]
    Auto,
    /// ONNX Runtime's own CPU kernels (always present).
    Mlas,
    /// OpenVINO through its ONNX Runtime plugin, or an error: needs the plugin (`make setup`)
    /// and an Intel CPU.
    Openvino,
}

impl Backend {
    /// The name used on the command line, in reports and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Mlas => "mlas",
            Backend::Openvino => "openvino",
        }
    }

    /// Parses `auto`, `mlas` or `openvino`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Backend::Auto),
            "mlas" => Ok(Backend::Mlas),
            "openvino" => Ok(Backend::Openvino),
            _ => Err(Error::invalid(format!("unknown backend `{name}`; choose auto, mlas or openvino"))),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The arithmetic a session's kernels use: what a backend is asked for, whatever the model's
/// own types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arithmetic {
    /// float32 models in float32 (the reference figures).
    #[default]
    F32,
    /// float32 models with bf16 multiplications (OpenVINO on AVX512-BF16 or AMX).
    Bf16,
    /// A quantized (QDQ int8) model.
    Int8,
}

impl Arithmetic {
    /// Every arithmetic, in the order reports list them.
    pub const ALL: [Arithmetic; 3] = [Arithmetic::F32, Arithmetic::Int8, Arithmetic::Bf16];

    /// The `--precision` it serves (`fp32`, `int8`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::F32 => "fp32",
            Arithmetic::Bf16 => "bf16",
            Arithmetic::Int8 => "int8",
        }
    }
}

/// Replaces the CPU's features, for tests: `VENDOR:flag,flag,...` with /proc/cpuinfo's names
/// (`GenuineIntel:avx2,avx512f,avx512_vnni,avx512_bf16,amx_tile,amx_bf16,amx_int8`).
pub const CPU_FEATURES_ENV: &str = "ELPIPS_CPU_FEATURES";
/// The OpenVINO plugin's path, replacing the search beside the runtime; empty: no plugin.
pub const OPENVINO_PLUGIN_ENV: &str = "ELPIPS_OPENVINO_PLUGIN";
/// The plugin library's file name, in [`OPENVINO_DIR`] beside libonnxruntime.
pub const OPENVINO_PLUGIN_FILE: &str = "libonnxruntime_providers_openvino_plugin.so";
/// The folder beside libonnxruntime that `make setup` and `make install` put the plugin and
/// its OpenVINO libraries in (the plugin finds them through its RUNPATH `$ORIGIN`).
pub const OPENVINO_DIR: &str = "openvino";
/// The execution provider's name in ONNX Runtime.
pub const OPENVINO_EP: &str = "OpenVINOExecutionProvider";
/// Where compiled OpenVINO models are cached across runs, replacing the default
/// ([`openvino_cache_dir`]); empty: no cache.
pub const OPENVINO_CACHE_ENV: &str = "ELPIPS_OPENVINO_CACHE";

/// What the CPU offers that the backends use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// /proc/cpuinfo's `vendor_id` (`GenuineIntel`, `AuthenticAMD`).
    pub vendor: String,
    /// /proc/cpuinfo's `model name`.
    pub model: String,
    /// AVX2 and FMA.
    pub avx2: bool,
    /// AVX-512 Foundation.
    pub avx512: bool,
    /// Integer dot products (AVX512-VNNI or AVX-VNNI).
    pub vnni: bool,
    /// AVX512-BF16.
    pub avx512_bf16: bool,
    /// AMX tiles with bf16 multiplication.
    pub amx_bf16: bool,
    /// AMX tiles with int8 multiplication.
    pub amx_int8: bool,
    /// Whether these came from [`CPU_FEATURES_ENV`] rather than the CPU.
    pub injected: bool,
}

impl CpuFeatures {
    /// This CPU's features ([`CPU_FEATURES_ENV`] when set), read once per process.
    pub fn detect() -> CpuFeatures {
        static DETECTED: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
        DETECTED
            .get_or_init(|| match std::env::var(CPU_FEATURES_ENV) {
                Ok(spec) if !spec.is_empty() => CpuFeatures::from_spec(&spec),
                _ => CpuFeatures::from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            })
            .clone()
    }

    /// The first processor of a /proc/cpuinfo text (the kernel lists AMX only where it enabled it).
    pub fn from_cpuinfo(text: &str) -> CpuFeatures {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let mut f = CpuFeatures::with_flags(&field("vendor_id"), field("flags").split_whitespace());
        f.model = field("model name");
        f
    }

    /// `VENDOR:flag,flag,...` (see [`CPU_FEATURES_ENV`]).
    pub fn from_spec(spec: &str) -> CpuFeatures {
        let (vendor, flags) = spec.split_once(':').unwrap_or((spec, ""));
        let mut f = CpuFeatures::with_flags(vendor.trim(), flags.split(',').map(str::trim));
        f.model = format!("{} (from {CPU_FEATURES_ENV})", f.vendor);
        f.injected = true;
        f
    }

    fn with_flags<'a>(vendor: &str, flags: impl Iterator<Item = &'a str>) -> CpuFeatures {
        let flags: Vec<&str> = flags.collect();
        let has = |n: &str| flags.contains(&n);
        CpuFeatures {
            vendor: vendor.to_owned(),
            model: String::new(),
            avx2: has("avx2") && has("fma"),
            avx512: has("avx512f"),
            vnni: has("avx512_vnni") || has("avx_vnni"),
            avx512_bf16: has("avx512_bf16"),
            amx_bf16: has("amx_tile") && has("amx_bf16"),
            amx_int8: has("amx_tile") && has("amx_int8"),
            injected: false,
        }
    }

    /// An Intel CPU: the only vendor the OpenVINO plugin offers a device for.
    pub fn intel(&self) -> bool {
        self.vendor == "GenuineIntel"
    }

    /// bf16 multiplication in hardware (AVX512-BF16 or AMX).
    pub fn bf16(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// The features named as people know them (`AVX2`, `AVX-512`, `VNNI`, `AVX512-BF16`, `AMX`).
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.avx2, "AVX2"),
            (self.avx512, "AVX-512"),
            (self.vnni, "VNNI"),
            (self.avx512_bf16, "AVX512-BF16"),
            (self.amx_bf16 || self.amx_int8, "AMX"),
        ];
        all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }

    /// The features a backend's kernels use here at `arithmetic` (for `elpips info`).
    pub fn used_by(&self, backend: Backend, arithmetic: Arithmetic) -> Vec<&'static str> {
        let vector = if self.avx512 { "AVX-512" } else if self.avx2 { "AVX2" } else { "SSE" };
        let mut used = vec![vector];
        match (backend, arithmetic) {
            (_, Arithmetic::Int8) if self.vnni => used.push("VNNI"),
            (Backend::Openvino, Arithmetic::Bf16) if self.amx_bf16 => used.push("AMX"),
            (Backend::Openvino, Arithmetic::Bf16) if self.avx512_bf16 => used.push("AVX512-BF16"),
            _ => {}
        }
        // MLAS's u8s8 GEMM uses AMX-INT8 where the OS enabled it; OpenVINO's int8 kernels too.
        if arithmetic == Arithmetic::Int8 && self.amx_int8 {
            used.push("AMX");
        }
        used
    }
}

/// What [`plan`] decided for a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// ONNX Runtime's CPU kernels.
    Mlas,
    /// OpenVINO; `required`: a failure is an error, not a fall-back to MLAS.
    Openvino {
        /// Whether a failure to load or compile is an error (else MLAS, with a warning).
        required: bool,
    },
}

/// The backend a session at `arithmetic` gets on `cpu` when `backend` is asked for and the
/// plugin is (`plugin`) or is not found, or why none can serve it. Pure: the tests run every
/// branch on any machine.
pub fn plan(backend: Backend, arithmetic: Arithmetic, cpu: &CpuFeatures, plugin: Option<&Path>) -> Result<Plan, String> {
    let no_plugin = || {
        format!(
            "the OpenVINO plugin is not installed (no {OPENVINO_DIR}/{OPENVINO_PLUGIN_FILE} beside the ONNX Runtime library); run `make setup`, or set {OPENVINO_PLUGIN_ENV}"
        )
    };
    let no_bf16 = || {
        format!(
            "`precision` bf16 needs a CPU with AVX512-BF16 or AMX; this one ({}) has {}: use `precision` fp32 (or int8)",
            cpu_label(cpu),
            feature_list(cpu)
        )
    };
    match (backend, arithmetic) {
        (Backend::Mlas, Arithmetic::Bf16) => {
            Err("`precision` bf16 runs on the openvino backend only (MLAS has no bf16 convolutions); use `backend` openvino or auto".to_owned())
        }
        (Backend::Mlas, _) => Ok(Plan::Mlas),
        (_, Arithmetic::Bf16) if !cpu.bf16() => Err(no_bf16()),
        (Backend::Openvino, _) | (Backend::Auto, Arithmetic::Bf16) => match plugin {
            Some(_) => Ok(Plan::Openvino { required: true }),
            None => Err(no_plugin()),
        },
        (Backend::Auto, Arithmetic::F32) if plugin.is_some() && cpu.intel() && cpu.avx512 => Ok(Plan::Openvino { required: false }),
        (Backend::Auto, _) => Ok(Plan::Mlas),
    }
}

fn cpu_label(cpu: &CpuFeatures) -> String {
    if cpu.model.is_empty() {
        cpu.vendor.clone()
    } else {
        cpu.model.clone()
    }
}

fn feature_list(cpu: &CpuFeatures) -> String {
    let names = cpu.names();
    if names.is_empty() {
        "none of AVX2, AVX-512, VNNI, AMX".to_owned()
    } else {
        names.join(", ")
    }
}

/// The OpenVINO plugin for the runtime at `runtime_library`, and where that rule came from:
/// [`OPENVINO_PLUGIN_ENV`] (empty: none), else [`OPENVINO_DIR`] beside the runtime (where
/// `make setup` and `make install` put it). `None` when none is there.
pub fn locate_plugin(runtime_library: &Path) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = std::env::var_os(OPENVINO_PLUGIN_ENV) {
        return (!p.is_empty()).then(|| (PathBuf::from(p), OPENVINO_PLUGIN_ENV));
    }
    let beside = runtime_library.parent().map(|d| d.join(OPENVINO_DIR).join(OPENVINO_PLUGIN_FILE))?;
    beside.is_file().then_some((beside, "beside the runtime"))
}

fn project_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache")
}

/// Where OpenVINO caches compiled models across runs: [`OPENVINO_CACHE_ENV`] (empty: nowhere);
/// else the checkout's `.cache/openvino` for the checkout's plugin; else
/// `$XDG_CACHE_HOME/elpips/openvino` (`~/.cache/elpips/openvino`).
pub fn openvino_cache_dir(plugin: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(OPENVINO_CACHE_ENV) {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    if plugin.starts_with(project_cache()) {
        return Some(project_cache().join("openvino"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("elpips/openvino"))
}

/// Most bytes the compiled-model cache may hold: at most one process in a run of many trims it
/// back below half of this (oldest files first), so it cannot grow without bound.
pub const OPENVINO_CACHE_BYTES: u64 = 2 << 30;

/// Deletes the oldest files of `dir` until it holds at most half of [`OPENVINO_CACHE_BYTES`],
/// if it holds more than that. Failures are ignored: the cache is an optimisation.
pub(crate) fn trim_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total <= OPENVINO_CACHE_BYTES {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= OPENVINO_CACHE_BYTES / 2 {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

/// OpenVINO's device properties for a session (the plugin's `load_config`, JSON): the
/// precision pinned, the threads, and the compiled-model cache.
pub fn openvino_config(arithmetic: Arithmetic, threads: usize, cache: Option<&Path>) -> String {
    let precision = match arithmetic {
        Arithmetic::Bf16 => "bf16",
        Arithmetic::F32 | Arithmetic::Int8 => "f32",
    };
    let mut cpu = serde_json::json!({
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads.to_string(),
        // One request at a time per session: latency, not throughput streams.
        "PERFORMANCE_HINT": "LATENCY",
    });
    if let Some(dir) = cache {
        cpu["CACHE_DIR"] = serde_json::Value::String(dir.to_string_lossy().into_owned());
    }
    serde_json::json!({ "CPU": cpu }).to_string()
}

/// Prints `elpips: warning: <message>` on stderr, once per message per process (a fall-back
/// to MLAS is said once, not per session).
pub(crate) fn warn_once(message: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if !said.iter().any(|m| m == message) {
        eprintln!("elpips: warning: {message}");
        said.push(message.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(spec: &str) -> CpuFeatures {
        CpuFeatures::from_spec(spec)
    }

    const EPYC: &str = "AuthenticAMD:avx2,fma";
    const ZEN4: &str = "AuthenticAMD:avx2,fma,avx512f,avx512_vnni,avx512_bf16";
    const SPR: &str = "GenuineIntel:avx2,fma,avx512f,avx512_vnni,avx512_bf16,amx_tile,amx_bf16,amx_int8";
    const ICELAKE: &str = "GenuineIntel:avx2,fma,avx512f,avx512_vnni";
    const ALDER: &str = "GenuineIntel:avx2,fma,avx_vnni";

    #[test]
    fn cpuinfo_flags_are_read_from_the_first_processor() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
        let f = CpuFeatures::from_cpuinfo(text);
        assert!(f.intel() && f.avx2 && f.avx512 && f.vnni && f.avx512_bf16 && f.amx_bf16 && f.amx_int8 && !f.injected);
        assert_eq!(f.model, "Intel(R) Xeon(R) Platinum 8480+");
        assert_eq!(f.names(), ["AVX2", "AVX-512", "VNNI", "AVX512-BF16", "AMX"]);
        let amd = CpuFeatures::from_cpuinfo("vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t: fpu fma avx2\n");
        assert!(!amd.intel() && amd.avx2 && !amd.avx512 && !amd.bf16());
        assert_eq!(amd.names(), ["AVX2"]);
        // AMX without the tile flag (an OS that did not enable it) is no AMX.
        assert!(!cpu("GenuineIntel:amx_bf16").amx_bf16);
    }

    #[test]
    fn auto_takes_openvino_only_where_it_measured_faster() {
        let p = Some(Path::new("/x/openvino/plugin.so"));
        let f32 = Arithmetic::F32;
        assert_eq!(plan(Backend::Auto, f32, &cpu(SPR), p), Ok(Plan::Openvino { required: false }));
        assert_eq!(plan(Backend::Auto, f32, &cpu(ICELAKE), p), Ok(Plan::Openvino { required: false }));
        // Unmeasured Intel without AVX-512, every AMD CPU (the plugin serves none), no plugin: MLAS.
        assert_eq!(plan(Backend::Auto, f32, &cpu(ALDER), p), Ok(Plan::Mlas));
        assert_eq!(plan(Backend::Auto, f32, &cpu(EPYC), p), Ok(Plan::Mlas));
        assert_eq!(plan(Backend::Auto, f32, &cpu(ZEN4), p), Ok(Plan::Mlas));
        assert_eq!(plan(Backend::Auto, f32, &cpu(SPR), None), Ok(Plan::Mlas));
        // int8 keeps MLAS's quantized kernels.
        assert_eq!(plan(Backend::Auto, Arithmetic::Int8, &cpu(SPR), p), Ok(Plan::Mlas));
    }

    #[test]
    fn explicit_backends_are_honoured_or_refused() {
        let p = Some(Path::new("/x/openvino/plugin.so"));
        assert_eq!(plan(Backend::Mlas, Arithmetic::F32, &cpu(SPR), p), Ok(Plan::Mlas));
        assert_eq!(plan(Backend::Openvino, Arithmetic::F32, &cpu(EPYC), p), Ok(Plan::Openvino { required: true }));
        assert_eq!(plan(Backend::Openvino, Arithmetic::Int8, &cpu(SPR), p), Ok(Plan::Openvino { required: true }));
        let e = plan(Backend::Openvino, Arithmetic::F32, &cpu(SPR), None).unwrap_err();
        assert!(e.contains("not installed") && e.contains("make setup"), "{e}");
    }

    #[test]
    fn bf16_runs_on_openvino_where_the_cpu_has_it_and_is_refused_elsewhere() {
        let p = Some(Path::new("/x/openvino/plugin.so"));
        let bf16 = Arithmetic::Bf16;
        assert_eq!(plan(Backend::Auto, bf16, &cpu(SPR), p), Ok(Plan::Openvino { required: true }));
        assert_eq!(plan(Backend::Openvino, bf16, &cpu(SPR), p), Ok(Plan::Openvino { required: true }));
        // Zen 4 has AVX512-BF16: planned, and the plugin's own refusal of AMD is the error then.
        assert_eq!(plan(Backend::Auto, bf16, &cpu(ZEN4), p), Ok(Plan::Openvino { required: true }));
        for spec in [EPYC, ICELAKE, ALDER] {
            for b in [Backend::Auto, Backend::Openvino] {
                let e = plan(b, bf16, &cpu(spec), p).unwrap_err();
                assert!(e.contains("needs a CPU with AVX512-BF16 or AMX"), "{e}");
            }
        }
        let e = plan(Backend::Mlas, bf16, &cpu(SPR), p).unwrap_err();
        assert!(e.contains("openvino backend only"), "{e}");
        let e = plan(Backend::Auto, bf16, &cpu(SPR), None).unwrap_err();
        assert!(e.contains("not installed"), "{e}");
    }

    #[test]
    fn the_config_pins_the_precision_and_the_threads() {
        let c: serde_json::Value = serde_json::from_str(&openvino_config(Arithmetic::F32, 2, Some(Path::new("/c")))).unwrap();
        assert_eq!(c["CPU"]["INFERENCE_PRECISION_HINT"], "f32");
        assert_eq!(c["CPU"]["INFERENCE_NUM_THREADS"], "2");
        assert_eq!(c["CPU"]["CACHE_DIR"], "/c");
        let c: serde_json::Value = serde_json::from_str(&openvino_config(Arithmetic::Bf16, 16, None)).unwrap();
        assert_eq!(c["CPU"]["INFERENCE_PRECISION_HINT"], "bf16");
        assert!(c["CPU"].get("CACHE_DIR").is_none());
    }

    #[test]
    fn the_cache_is_trimmed_oldest_first_beyond_its_bound() {
        let dir = std::env::temp_dir().join(format!("elpips-ov-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small"), b"x").unwrap();
        trim_cache(&dir);
        assert!(dir.join("small").exists(), "under the bound nothing goes");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_used_features_name_the_kernels() {
        assert_eq!(cpu(EPYC).used_by(Backend::Mlas, Arithmetic::F32), ["AVX2"]);
        assert_eq!(cpu(SPR).used_by(Backend::Openvino, Arithmetic::Bf16), ["AVX-512", "AMX"]);
        assert_eq!(cpu(ICELAKE).used_by(Backend::Mlas, Arithmetic::Int8), ["AVX-512", "VNNI"]);
        assert_eq!(cpu(SPR).used_by(Backend::Mlas, Arithmetic::Int8), ["AVX-512", "VNNI", "AMX"]);
    }
}
