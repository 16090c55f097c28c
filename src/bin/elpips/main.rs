//! `elpips`: the command-line front end. A thin layer over the library: parse, load, compare,
//! print. One output contract for every subcommand: exit 0 on success, 1 when a gate failed
//! (`check`) or a goal is not reachable (`tune`), 2 on any error, with one line on stderr saying
//! what was wrong; under `--json` that line is also a record on stdout,
//! `{"error": {"message": .., "exit_code": ..}}` (docs/renderer.md, "Exit status and JSON").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use elpips::{Backend, CudnnSearch, Device, Error, RuntimeOptions};

mod check;
mod codec;
mod escape;
mod compare;
mod completions;
mod tune;
mod heatmap;
mod info;
mod input;
mod metric_args;
mod output;
mod rank;
mod rd;
mod serve;
mod shard;

#[derive(Parser)]
#[command(name = "elpips", version, about = "E-LPIPS and LPIPS perceptual image distances", propagate_version = true)]
// Bare `elpips` is not a mistake to point out but a request for the overview: the help, on
// stderr (stdout carries only results), with exit 2 since nothing was done.
#[command(arg_required_else_help = true)]
struct Cli {
    /// No progress bars or informational lines on stderr (errors and warnings stay); `check`
    /// prints only failures, errors and the closing count.
    #[arg(short, long, global = true)]
    quiet: bool,
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
    /// Rate-distortion curves of encoders by E-LPIPS and their BD-rates against an anchor
    /// (CSV, JSON, SVG plots); shards and merges.
    Rd(rd::RdArgs),
    /// A metric server for external tuners: JSON lines on stdin, one answer per line on stdout.
    Serve(serve::ServeArgs),
    /// Show where the runtime and models are found, and whether they load.
    Info(info::InfoArgs),
    /// Print a shell's completion script for elpips (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write the man pages (what `make install` installs).
    #[command(hide = true)]
    Man(completions::ManArgs),
}

#[derive(Args, Default)]
#[command(next_help_heading = "Runtime")]
pub struct CommonArgs {
    /// Path of libonnxruntime.so [default: $ORT_DYLIB_PATH, then the installation's (<prefix>/lib), then the checkout's .cache set up by `make setup`].
    #[arg(long, value_name = "FILE")]
    pub runtime: Option<PathBuf>,
    /// Directory with the .onnx models [default: $ELPIPS_MODEL_DIR, then the installation's (<prefix>/share/elpips/models), then the checkout's weights/models].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime threads (0: one per physical core).
    #[arg(long, value_name = "T", default_value_t = 0)]
    pub threads: usize,
    /// Where the networks run.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// The CPU kernels: auto takes OpenVINO where it measured faster (Intel CPUs with AVX-512,
    /// the plugin installed by `make setup`) and MLAS elsewhere (see docs/performance.md).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// CUDA only: how cuDNN picks each convolution's algorithm (exhaustive times them all on the
    /// first run of each shape; see docs/performance.md).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = CudnnSearch::Exhaustive)]
    pub cudnn_search: CudnnSearch,
}

fn main() -> ExitCode {
    elpips::network::runtime::bound_heap_cache();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return match e.kind() {
                // `--version` names the runtime, codecs and CUDA (it loads the runtime to ask its
                // version); `-V` stays the one cheap line.
                ErrorKind::DisplayVersion if std::env::args_os().any(|a| a == "--version") => {
                    print!("{}", info::long_version());
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(2)
                }
                _ => fail(&one_line(&e), 2),
            };
        }
    };
    let result = match cli.command {
        Command::Compare(args) => compare::run(args, cli.quiet).map(|()| ExitCode::SUCCESS),
        Command::Check(mut args) => {
            args.quiet = cli.quiet;
            check::run(args)
        }
        Command::Tune(args) => tune::run(args),
        Command::Rank(args) => rank::run(args).map(|()| ExitCode::SUCCESS),
        Command::Rd(args) => rd::run(args, cli.quiet).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Info(args) => info::run(args).map(|()| ExitCode::SUCCESS),
        Command::Completions(args) => completions::completions(args).map(|()| ExitCode::SUCCESS),
        Command::Man(args) => completions::man(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&cli_message(&e), 2),
    }
}

/// Ends a command that did not do what was asked: one line on stderr and, under `--json`, the
/// same message as a record on stdout, so a JSON reader always gets one object to parse.
pub fn fail(message: &str, code: u8) -> ExitCode {
    let message = escape::line(message);
    eprintln!("elpips: {message}");
    if json_requested() {
        // A closed stdout has nothing more to say: the line on stderr stands.
        let _ = output::line(format_args!("{}", error_record(&message, code)));
    }
    ExitCode::from(code)
}

/// The `--json` record of an error or an unreachable goal (docs/renderer.md).
pub fn error_record(message: &str, code: u8) -> serde_json::Value {
    serde_json::json!({"error": {"message": message, "exit_code": code}})
}

/// Whether the command line asks for `--json` (before any `--`). Read from the arguments rather
/// than the parsed options so that an argument clap refused gets its JSON record too.
fn json_requested() -> bool {
    std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json")
}

/// The library's options as its messages name them (the C fields and Python arguments, in
/// backticks), and the flags that set them here.
const OPTION_FLAGS: [(&str, &str); 14] = [
    ("samples", "--samples"),
    ("max_samples", "--max-samples"),
    ("min_samples", "--min-samples"),
    ("abs_error", "--abs-error"),
    ("rel_error", "--rel-error"),
    ("scale_levels", "--scale-levels"),
    ("precision", "--precision"),
    ("max_pixels", "--max-pixels"),
    ("device", "--device"),
    ("backend", "--backend"),
    ("runtime_library", "--runtime"),
    ("model_dir", "--model-dir"),
    ("tonemap", "--tonemap"),
    ("exposure", "--exposure"),
];

/// A library error as the command line says it: the options it names become their flags
/// (`samples` must be at least 1 -> --samples must be at least 1).
pub fn cli_message(e: &Error) -> String {
    cli_text(&e.to_string())
}

/// A library text (an error, `info`'s backend facts) with its option names as flags.
pub fn cli_text(text: &str) -> String {
    OPTION_FLAGS.iter().fold(text.to_owned(), |m, (name, flag)| m.replace(&format!("`{name}`"), flag))
}

/// clap's error as one line: what was wrong, then what clap adds (the possible values, "a
/// similar argument exists"), then the help of the subcommand being typed, where the option is
/// listed. clap's usage block and "For more information" line are dropped: that help has both.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut out = String::new();
    // After a line ending in ':' ("the following required arguments were not provided:") come
    // the items it announces, one per line.
    let mut listing = false;
    let said = text.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"));
    for line in said.filter(|l| !l.is_empty()) {
        let line = line.strip_prefix("error: ").unwrap_or(line);
        let item = listing && !line.starts_with("tip:") && !line.starts_with('[');
        if !out.is_empty() {
            out.push_str(match () {
                _ if out.ends_with(':') || line.starts_with('[') => " ",
                _ if item => ", ",
                _ => "; ",
            });
        }
        listing = item || line.ends_with(':');
        out.push_str(line);
    }
    if out.is_empty() {
        out.push_str("invalid arguments");
    }
    let help = match typed_subcommand() {
        Some(name) => format!("elpips {name} --help"),
        None => "elpips --help".to_owned(),
    };
    format!("{out} (see `{help}`)")
}

/// The subcommand on the command line: the first word that is not an option (the only options
/// before it, -q, -h and -V, take no value), if it names one.
fn typed_subcommand() -> Option<String> {
    let word = std::env::args_os().skip(1).find(|a| !a.to_string_lossy().starts_with('-'))?;
    Cli::command().find_subcommand(word).map(|c| c.get_name().to_owned())
}

/// The name a value-enum value has on the command line (what the user typed), for reports.
pub fn value_name<T: ValueEnum>(value: &T) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

pub fn runtime_options(common: &CommonArgs) -> RuntimeOptions {
    RuntimeOptions {
        library: common.runtime.clone(),
        threads: common.threads,
        device: common.device,
        cudnn_search: common.cudnn_search,
        backend: common.backend,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use elpips::{Encoding, MetricKind, Precision, SamplerKind, ToneCurve};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The library's enums name their values for the C ABI, reports and model files; clap
    /// derives its own names from the variants. They must be one vocabulary.
    #[test]
    fn option_values_are_the_library_names() {
        fn same<T: ValueEnum>(name: fn(T) -> &'static str) {
            for v in T::value_variants() {
                assert_eq!(value_name(v), name(v.clone()));
            }
        }
        same::<MetricKind>(MetricKind::name);
        same::<SamplerKind>(SamplerKind::name);
        same::<Precision>(Precision::name);
        same::<Device>(Device::name);
        same::<Backend>(Backend::name);
        same::<CudnnSearch>(CudnnSearch::name);
        same::<ToneCurve>(ToneCurve::name);
        same::<Encoding>(Encoding::name);
        assert_eq!(MetricKind::value_variants(), MetricKind::ALL);
    }
}
