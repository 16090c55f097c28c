//! `elpips info` and `elpips --version`: what this elpips is made of and where it finds its
//! parts. One record ([`Info`]) is gathered, and the text and `--json` outputs both print it, so
//! the two can never say different things; `--version` prints the part of it that needs no model.

use clap::{Args, ValueEnum};
use elpips::network::install::{Install, Kind};
use elpips::network::runtime as rt;
use elpips::{Error, Metric, MetricKind, MetricOptions};
use serde::Serialize;

use crate::codec::Codec;
use crate::output::out;
use crate::CommonArgs;

#[derive(Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long, help_heading = "Output")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// What `elpips info` reports. Field names are the JSON's.
#[derive(Serialize)]
pub struct Info {
    /// This program's version.
    version: &'static str,
    /// The installation it belongs to (`make install`, the `make dist` tarball, the pip
    /// package); `null` when it runs from a build (then the source checkout's folders are used).
    installation: Option<Installation>,
    /// The inference engines it can run the networks on.
    backends: Vec<Backend>,
    /// The folder of the models.
    models: String,
    /// Intra-op threads a session gets.
    threads: usize,
    /// The CPU, the OpenVINO plugin and the backend each precision is planned to run on.
    cpu: CpuInfo,
    /// CUDA: compiled in, offered by the runtime, the GPU.
    cuda: Cuda,
    /// The encoders `tune` and `rd` drive, and whether each was compiled in.
    codecs: Vec<CodecInfo>,
    /// Each metric, loaded (`info` only; `--version` loads none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics: Vec<MetricInfo>,
}

#[derive(Serialize)]
struct Installation {
    kind: &'static str,
    root: String,
}

#[derive(Serialize)]
struct Backend {
    name: &'static str,
    /// The library it loads, and where that path came from.
    library: String,
    origin: &'static str,
    /// Its version when it loads; `null` with `error` when it does not.
    version: Option<String>,
    error: Option<String>,
    /// Its execution providers usable by this build (`--device`).
    providers: Vec<&'static str>,
}

#[derive(Serialize)]
struct CpuInfo {
    model: String,
    vendor: String,
    /// The features the backends use (AVX2, AVX-512, VNNI, AVX512-BF16, AMX).
    features: Vec<&'static str>,
    /// The OpenVINO plugin's library, `null` when it is not installed.
    openvino_plugin: Option<String>,
    /// Per precision, what `--backend` plans for it here.
    precisions: Vec<PrecisionPlan>,
    /// `info`'s text lines for the above, as the library words them.
    #[serde(skip)]
    lines: Vec<String>,
}

#[derive(Serialize)]
struct PrecisionPlan {
    precision: &'static str,
    /// `mlas` or `openvino`; `null` with `error` when it cannot run here.
    backend: Option<&'static str>,
    /// The CPU features its kernels use.
    features: Vec<&'static str>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Cuda {
    compiled: bool,
    provider_offered: bool,
    gpu: Option<String>,
    available: bool,
    /// Why CUDA is not available, when it is not.
    reason: Option<String>,
    /// The CUDA libraries the GPU runtime would use (name, path or `null` when left to the loader).
    libraries: Vec<(String, Option<String>)>,
}

#[derive(Serialize)]
struct CodecInfo {
    name: String,
    available: bool,
    /// The Debian package to build with, when it is missing.
    package: &'static str,
}

#[derive(Serialize)]
struct MetricInfo {
    name: &'static str,
    ok: bool,
    device: Option<&'static str>,
    backend: Option<&'static str>,
    error: Option<String>,
}

impl Info {
    /// Gathers the record; `load_metrics` opens every metric (slow: each model is checked
    /// against its sha256 and loaded), otherwise only the runtime is loaded.
    fn gather(common: &CommonArgs, load_metrics: bool) -> (Info, Option<Error>) {
        let (lib, origin) = rt::locate_library(common.runtime.as_deref());
        let runtime = crate::runtime_options(common);
        let (version, error) = match rt::version(&runtime) {
            Ok((v, _)) => (Some(v), None),
            Err(e) => (None, Some(crate::cli_message(&e))),
        };
        let offered = version.is_some() && rt::cuda_provider_offered(common.runtime.as_deref()).unwrap_or(false);
        let gpu = rt::gpu();
        let available = version.is_some() && rt::cuda_available(common.runtime.as_deref()).unwrap_or(false);
        let reason = match () {
            _ if available => None,
            _ if !cfg!(feature = "cuda") => Some("this build has no CUDA support (cargo feature `cuda`)".to_owned()),
            _ if version.is_none() => Some("the runtime does not load".to_owned()),
            _ if !offered => Some(format!("this runtime has no CUDA provider ({})", gpu_runtime_hint())),
            _ => gpu.clone().err(),
        };
        let mut providers = vec!["cpu"];
        if available {
            providers.push("cuda");
        }
        let libraries = if offered {
            rt::cuda_libraries(common.runtime.as_deref()).into_iter().map(|(n, p, _)| (n.to_owned(), p.map(|p| p.display().to_string()))).collect()
        } else {
            Vec::new()
        };
        let mut failed = None;
        let mut metrics = Vec::new();
        if load_metrics {
            for kind in MetricKind::ALL {
                let opts = MetricOptions { metric: kind, model_dir: common.model_dir.clone(), runtime: crate::runtime_options(common), ..Default::default() };
                metrics.push(match Metric::new(opts) {
                    Ok(m) => MetricInfo { name: kind.name(), ok: true, device: Some(m.device().name()), backend: Some(m.backend().name()), error: None },
                    Err(e) => {
                        let info = MetricInfo { name: kind.name(), ok: false, device: None, backend: None, error: Some(crate::cli_message(&e)) };
                        failed.get_or_insert(e);
                        info
                    }
                });
            }
        }
        let facts = runtime.backend_facts();
        let cpu = CpuInfo {
            model: facts.cpu.model.clone(),
            vendor: facts.cpu.vendor.clone(),
            features: facts.cpu.names(),
            openvino_plugin: facts.plugin.as_ref().map(|(p, _)| p.display().to_string()),
            precisions: facts
                .plans
                .iter()
                .map(|(a, plan)| match plan {
                    Ok((b, used)) => PrecisionPlan { precision: a.name(), backend: Some(b.name()), features: used.clone(), error: None },
                    Err(why) => PrecisionPlan { precision: a.name(), backend: None, features: Vec::new(), error: Some(crate::cli_text(why)) },
                })
                .collect(),
            lines: facts.lines().iter().map(|l| crate::cli_text(l)).collect(),
        };
        let info = Info {
            version: env!("CARGO_PKG_VERSION"),
            installation: Install::find(None).map(|i| Installation { kind: i.kind.name(), root: i.root.display().to_string() }),
            backends: vec![Backend {
                name: "onnxruntime",
                library: lib.display().to_string(),
                origin,
                version,
                error,
                providers,
            }],
            models: elpips::network::models::model_dir(common.model_dir.as_deref()).display().to_string(),
            threads: runtime.threads_used(),
            cpu,
            cuda: Cuda { compiled: cfg!(feature = "cuda"), provider_offered: offered, gpu: gpu.ok(), available, reason, libraries },
            codecs: Codec::value_variants().iter().map(|c| CodecInfo { name: c.name(), available: c.available(), package: c.package() }).collect(),
            metrics,
        };
        (info, failed)
    }

    fn runtime_line(&self) -> String {
        let b = &self.backends[0];
        match (&b.version, &b.error) {
            (Some(v), _) => format!("ONNX Runtime {v} ({}, from {})", b.library, b.origin),
            (None, e) => format!("not found ({})", e.as_deref().unwrap_or("unknown")),
        }
    }

    fn codecs_line(&self) -> String {
        let (on, off): (Vec<&CodecInfo>, Vec<&CodecInfo>) = self.codecs.iter().partition(|c| c.available);
        let names = |v: &[&CodecInfo]| v.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        match (on.is_empty(), off.is_empty()) {
            (_, true) => names(&on),
            (true, _) => format!("none (built without {})", names(&off)),
            _ => format!("{} (built without {})", names(&on), names(&off)),
        }
    }

    fn cuda_line(&self) -> String {
        match (&self.cuda.reason, &self.cuda.gpu) {
            (None, Some(gpu)) => format!("available ({gpu})"),
            (None, None) => "available".to_owned(),
            (Some(why), _) => format!("not available: {why}"),
        }
    }

    fn installation_line(&self) -> String {
        match &self.installation {
            Some(i) => format!("{} {}", i.kind, i.root),
            None => format!("none: runs from a build of the source checkout {}", elpips::network::install::checkout().display()),
        }
    }
}

/// Where a runtime with the CUDA provider comes from, for this installation.
fn gpu_runtime_hint() -> String {
    match Install::find(None).map(|i| i.kind) {
        None => format!("run `{}` for one", rt::CUDA_SETUP_COMMAND),
        Some(Kind::Prefix) => format!("a GPU build installs one: `{}`, then `make install`, in a source checkout", rt::CUDA_SETUP_COMMAND),
        Some(Kind::PythonPackage) => "the pip package runs the CPU runtime of the onnxruntime wheel".to_owned(),
    }
}

/// `elpips --version`: the program, its runtime (loaded to ask its version), the execution
/// providers, the codecs compiled in, CUDA and the installation.
pub fn long_version() -> String {
    let (info, _) = Info::gather(&CommonArgs::default(), false);
    format!(
        "elpips {}\nruntime:      {}\nbackends:     onnxruntime ({})\ncodecs:       {}\ncuda:         {}\ninstallation: {}\n",
        info.version,
        info.runtime_line(),
        info.backends[0].providers.join(", "),
        info.codecs_line(),
        info.cuda_line(),
        info.installation_line()
    )
}

pub fn run(args: InfoArgs) -> Result<(), Error> {
    let (info, failed) = Info::gather(&args.common, true);
    if args.json {
        out!("{}", serde_json::to_string(&info).expect("json"))?;
        return failed.map_or(Ok(()), Err);
    }
    let b = &info.backends[0];
    out!("version: {}", info.version)?;
    out!("installation: {}", info.installation_line())?;
    out!("runtime: {} (from {})", b.library, b.origin)?;
    out!("runtime version: {}", b.version.as_deref().unwrap_or("unknown (it does not load)"))?;
    out!("models:  {}", info.models)?;
    out!("threads: {} (one per physical core unless --threads)", info.threads)?;
    let provider = match (info.cuda.provider_offered, info.cuda.compiled, &b.error) {
        (_, _, Some(e)) => format!("unknown ({e})"),
        (true, _, None) => "CUDAExecutionProvider offered (onnxruntime-gpu), CPUExecutionProvider behind it".to_owned(),
        (false, true, None) => format!("CPUExecutionProvider only: this runtime has no CUDA provider ({})", gpu_runtime_hint()),
        (false, false, None) => "CPUExecutionProvider only: this build has no CUDA support (cargo feature `cuda`)".to_owned(),
    };
    out!("provider: {provider}")?;
    if info.cuda.compiled {
        match &info.cuda.gpu {
            Some(name) => out!("gpu:     {name}")?,
            None => out!("gpu:     none ({})", rt::gpu().err().unwrap_or_default())?,
        }
        if info.cuda.provider_offered {
            out!("cuda libraries (ELPIPS_CUDA_LIBS, then cuda_libs.path and the runtime's folder, then the system's loader):")?;
            for (name, path, origin) in rt::cuda_libraries(args.common.runtime.as_deref()) {
                match path {
                    Some(p) => out!("  {name:<40} {} (from {origin})", p.display())?,
                    None => out!("  {name:<40} not found beside the runtime (left to {origin})")?,
                }
            }
        }
    }
    out!("cuda:    {}", if info.cuda.available { "available" } else { "not available" })?;
    // The CPU backends: the CPU, the OpenVINO plugin and what each precision runs on (`auto`
    // plans; a metric below says what a session got).
    for line in &info.cpu.lines {
        out!("{line}")?;
    }
    out!("codecs:  {}", info.codecs_line())?;
    for m in &info.metrics {
        match (&m.device, &m.error) {
            (Some(d), _) => out!("  {:<11} ok (device {d}, backend {})", m.name, m.backend.unwrap_or_default())?,
            (None, e) => out!("  {:<11} {}", m.name, e.as_deref().unwrap_or_default())?,
        }
    }
    failed.map_or(Ok(()), Err)
}
