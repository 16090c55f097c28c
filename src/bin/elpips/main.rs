//! `elpips`: the command-line front end. A thin layer over the library: parse, load, compare,
//! print. Exit 0 on success, 2 on any error (one line on stderr saying what was wrong); `check`
//! also exits 1 when a candidate fails its gate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use elpips::{Device, Error, Metric, MetricKind, MetricOptions, RuntimeOptions};

mod check;
mod codec;
mod compare;
mod tune;
mod heatmap;
mod input;
mod metric_args;
mod rank;

#[derive(Parser)]
#[command(name = "elpips", version, about = "E-LPIPS and LPIPS perceptual image distances", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Perceptual distance between a reference image and a candidate (PNG 8/16-bit, JPEG,
    /// OpenEXR, Radiance HDR).
    Compare(compare::CompareArgs),
    /// Gate: exit 0 if the candidate's distance from the reference is at most --max-distance, 1 if
    /// not, 2 on error; stops sampling once the verdict is certain. Also manifests, shards, JUnit.
    Check(check::CheckArgs),
    /// Encoder quality whose output meets a perceptual-distance goal (jpeg, webp, avif, jxl).
    Tune(tune::TuneArgs),
    /// Several candidates against one reference with the same random draws: each distance, and
    /// each candidate's difference from the next closer one, with 95% intervals.
    Rank(rank::RankArgs),
    /// Show where the runtime and models are found, and whether they load.
    Info(CommonArgs),
}

#[derive(Args)]
pub struct CommonArgs {
    /// Path of libonnxruntime.so (default: $ORT_DYLIB_PATH, then the checkout's .cache set up by `make setup`).
    #[arg(long, value_name = "FILE")]
    pub runtime: Option<PathBuf>,
    /// Directory with the .onnx models (default: $ELPIPS_MODEL_DIR, then the checkout's weights/models).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime threads (default: one per physical core).
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub threads: usize,
    /// Where the networks run: cpu (default), cuda (an error if CUDA is not available), or auto
    /// (CUDA when the build, the runtime library and a GPU allow it, else the CPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda", "auto"])]
    pub device: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line says what was wrong; its usage block follows in --help.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
            // "the following required arguments were not provided:" names them on the next line.
            if first.ends_with(':') {
                first = format!("{first} {}", lines.next().unwrap_or_default());
            }
            eprintln!("elpips: {first} (see `elpips --help`)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Compare(args) => compare::run(args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => check::run(args),
        Command::Tune(args) => tune::run(args).map(|()| ExitCode::SUCCESS),
        Command::Rank(args) => rank::run(args).map(|()| ExitCode::SUCCESS),
        Command::Info(args) => info(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("elpips: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn runtime_options(common: &CommonArgs) -> RuntimeOptions {
    RuntimeOptions {
        library: common.runtime.clone(),
        threads: common.threads,
        device: Device::from_name(&common.device).unwrap_or_default(), // clap allows only valid names
        ..Default::default()
    }
}

fn info(args: CommonArgs) -> Result<(), Error> {
    let (lib, origin) = elpips::network::runtime::locate_library(args.runtime.as_deref());
    println!("runtime: {} (from {origin})", lib.display());
    let dir = elpips::network::models::model_dir(args.model_dir.as_deref());
    println!("models:  {}", dir.display());
    let runtime = runtime_options(&args);
    println!("threads: {} (one per physical core unless --threads)", runtime.threads_used());
    let cuda = match elpips::network::runtime::cuda_available(args.runtime.as_deref()) {
        Ok(true) => "available".to_owned(),
        Ok(false) if cfg!(feature = "cuda") => "not offered by this runtime library (the CPU-only PyPI wheel has none)".to_owned(),
        Ok(false) => "not built in (cargo feature `cuda`)".to_owned(),
        Err(e) => format!("unknown ({e})"),
    };
    println!("cuda:    {cuda}");
    let mut failed = None;
    for kind in MetricKind::ALL {
        let opts = MetricOptions { metric: kind, model_dir: args.model_dir.clone(), runtime: runtime_options(&args), ..Default::default() };
        match Metric::new(opts) {
            Ok(m) => println!("  {:<11} ok (device {})", kind.name(), m.device()),
            Err(e) => {
                println!("  {:<11} {e}", kind.name());
                failed.get_or_insert(e);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}
