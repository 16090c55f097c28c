//! `elpips serve --stdio`: a long-lived metric process for external tuners (Av1an-style target
//! quality loops, crf searches). One JSON request per line on stdin, one JSON answer per line on
//! stdout with the request's `id`; models are loaded once (per metric, on first use) and
//! prepared references are kept by handle. A malformed or failing request is answered with
//! `{"id": .., "error": ".."}` and the server goes on; EOF ends it with exit 0. The protocol is
//! docs/serve.md. Owns the protocol's types and the request loop, nothing of the metric itself.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};

use clap::Args;
use elpips::{Error, Estimate, Gate, Image, LoadOptions, Metric, MetricKind, Reference, SampleArea, Sampling};
use image::ImageEncoder;
use serde_json::{json, Value};

use crate::codec::Codec;
use crate::input::InputArgs;
use crate::metric_args::{NetworkArgs, SamplingArgs};
use crate::CommonArgs;
use crate::check::manifest::json_message;
use request::Request;

mod request;

/// Longest request line read; a longer one is answered with an error and skipped.
const MAX_LINE_BYTES: u64 = 1 << 20;
/// Prepared references held at most (each holds an image and, for LPIPS, its taps).
const MAX_HANDLES: usize = 256;

#[derive(Args)]
pub struct ServeArgs {
    /// Speak JSON lines over stdin / stdout (the only transport).
    #[arg(long, required = true)]
    stdio: bool,
    /// The defaults of every request (a request's `metric` and `seed` override them).
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    common: CommonArgs,
}

struct Server {
    args: ServeArgs,
    load: LoadOptions,
    sampling: Sampling,
    metrics: HashMap<MetricKind, Metric>,
    references: HashMap<u64, (MetricKind, Reference)>,
    next_handle: u64,
}

pub fn run(args: ServeArgs) -> Result<(), Error> {
    let sampling = args.sampling.sampling(&args.network)?;
    let load = args.input.load_options()?;
    let mut server = Server { args, load, sampling, metrics: HashMap::new(), references: HashMap::new(), next_handle: 1 };
    // The default metric loads now, so a missing runtime or model is the exit status, not the
    // first request's answer.
    server.metric(None)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| Error::Io { path: "stdout".into(), reason: e.to_string() };
    loop {
        let mut line = Vec::new();
        let n = (&mut input).take(MAX_LINE_BYTES + 1).read_until(b'\n', &mut line).map_err(|e| Error::Io { path: "stdin".into(), reason: e.to_string() })?;
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() as u64 > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut input).take(MAX_LINE_BYTES).read_until(b'\n', &mut rest).map_err(|e| Error::Io { path: "stdin".into(), reason: e.to_string() })?;
                if n == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            json!({"id": null, "error": format!("request line longer than {MAX_LINE_BYTES} bytes; send one JSON object per line")})
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            server.answer(&line)
        };
        writeln!(out, "{answer}").and_then(|()| out.flush()).map_err(io)?;
    }
}

impl Server {
    /// The answer to one line: the result, or `{"id", "error"}`.
    fn answer(&mut self, line: &[u8]) -> Value {
        // Messages quote the request (an unknown op, a path): escaped to one line, as every
        // error message is.
        let (id, request) = match request::parse(line) {
            Ok(parsed) => parsed,
            Err((id, message)) => return json!({"id": id, "error": crate::escape::line(&message)}),
        };
        match self.handle(request) {
            Ok(mut v) => {
                v["id"] = id;
                v
            }
            Err(e) => json!({"id": id, "error": crate::escape::line(&e.to_string())}),
        }
    }

    fn metric(&mut self, kind: Option<MetricKind>) -> Result<&mut Metric, Error> {
        let kind = kind.unwrap_or(self.args.network.metric);
        if !self.metrics.contains_key(&kind) {
            let mut options = self.args.network.metric_options(&self.args.common, if kind.is_ensemble() { self.sampling } else { Sampling::DEFAULT });
            options.metric = kind;
            if !kind.is_ensemble() {
                options.scale_levels = None;
            }
            self.metrics.insert(kind, Metric::new(options)?);
        }
        Ok(self.metrics.get_mut(&kind).expect("inserted"))
    }

    /// The metric of a request with its seed and sample count set (the server's unless given).
    fn configured(&mut self, kind: Option<MetricKind>, seed: Option<u64>, samples: Option<u32>) -> Result<&mut Metric, Error> {
        let (default_seed, default_sampling) = (self.args.network.seed, self.sampling);
        let m = self.metric(kind)?;
        if samples.is_some() && !m.kind().is_ensemble() {
            return Err(Error::InvalidArgument(format!("{} is deterministic; \"samples\" applies to elpips-vgg only", m.kind())));
        }
        m.set_seed(seed.unwrap_or(default_seed));
        if m.kind().is_ensemble() {
            m.set_sampling(samples.map_or(default_sampling, Sampling::Fixed))?;
        }
        Ok(m)
    }

    fn handle(&mut self, request: Request) -> Result<Value, Error> {
        let kind = |name: Option<String>| name.map(|n| MetricKind::from_name(&n)).transpose();
        match request {
            Request::Compare { reference, candidate, metric, seed, samples } => {
                let (r, c) = (Image::open(&reference, &self.load)?, Image::open(&candidate, &self.load)?);
                let m = self.configured(kind(metric)?, seed, samples)?;
                let e = m.compare(&r, &c)?;
                Ok(estimate_json(m, &r, &e))
            }
            Request::Decide { reference, candidate, max_distance, metric, seed, error_rate, min_samples, max_samples } => {
                let default = Gate::new(max_distance);
                let gate = Gate {
                    threshold: max_distance,
                    error_rate: error_rate.unwrap_or(default.error_rate),
                    min_samples: min_samples.unwrap_or(default.min_samples),
                    max_samples: max_samples.unwrap_or(default.max_samples),
                };
                if !(max_distance.is_finite() && max_distance >= 0.0) {
                    return Err(Error::InvalidArgument(format!("max_distance must be a finite distance >= 0, not {max_distance}")));
                }
                let (r, c) = (Image::open(&reference, &self.load)?, Image::open(&candidate, &self.load)?);
                let m = self.configured(kind(metric)?, seed, None)?;
                let d = m.decide(&r, &c, &gate)?;
                let mut v = estimate_json(m, &r, &d.estimate);
                v["verdict"] = d.verdict.name().into();
                v["pass"] = d.estimate_below.into();
                v["lower"] = json!(d.lower);
                v["upper"] = json!(d.upper);
                v["max_distance"] = json!(max_distance);
                Ok(v)
            }
            Request::PrepareReference { reference, metric } => {
                if self.references.len() >= MAX_HANDLES {
                    return Err(Error::InvalidArgument(format!("{MAX_HANDLES} references are prepared already; release_reference some first")));
                }
                let image = Image::open(&reference, &self.load)?;
                let m = self.metric(kind(metric)?)?;
                let kind = m.kind();
                let prepared = m.prepare_reference(&image)?;
                let handle = self.next_handle;
                self.next_handle += 1;
                self.references.insert(handle, (kind, prepared));
                Ok(json!({"handle": handle, "metric": kind.name(), "width": image.width(), "height": image.height()}))
            }
            Request::CompareReference { handle, candidate, seed, samples } => {
                let kind = self.references.get(&handle).map(|(k, _)| *k).ok_or_else(|| unknown_handle(handle))?;
                let c = Image::open(&candidate, &self.load)?;
                // The metric is taken out of the map for the call: the reference is borrowed from
                // the server at the same time.
                self.configured(Some(kind), seed, samples)?;
                let mut m = self.metrics.remove(&kind).expect("configured");
                let result = m.compare_reference(&self.references[&handle].1, &c).map(|e| estimate_json(&m, &c, &e));
                self.metrics.insert(kind, m);
                result
            }
            Request::ReleaseReference { handle } => {
                self.references.remove(&handle).ok_or_else(|| unknown_handle(handle))?;
                Ok(json!({"released": handle}))
            }
            Request::Encode { image, codec, quality, decoded, output } => {
                let codec = <Codec as clap::ValueEnum>::from_str(&codec, false)
                    .map_err(|_| Error::InvalidArgument(format!("codec `{codec}` is not one of jpeg, webp, avif, jxl")))?;
                if !(codec.min_quality()..=100).contains(&quality) {
                    return Err(Error::InvalidArgument(format!("quality {quality} is outside {}'s {}..100", codec.name(), codec.min_quality())));
                }
                let mut outputs = vec![("\"decoded\"", decoded.as_path())];
                outputs.extend(output.as_deref().map(|p| ("\"output\"", p)));
                crate::output::check_outputs(&outputs, &[&image])?;
                let img = Image::open(&image, &self.load)?;
                let (pixels, channels) = crate::tune::encoder_pixels(&image)?;
                let (w, h) = (img.width(), img.height());
                let (file, rgb) = codec.encode(&pixels, w, h, channels, quality, crate::codec::Effort::default())?;
                let mut png = Vec::new();
                image::codecs::png::PngEncoder::new(&mut png)
                    .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
                    .map_err(|e| Error::Io { path: decoded.clone(), reason: e.to_string() })?;
                elpips::io::write_atomic(&decoded, &png)?;
                if let Some(path) = &output {
                    elpips::io::write_atomic(path, &file)?;
                }
                Ok(json!({"codec": codec.name(), "quality": quality, "bytes": file.len(), "bpp": file.len() as f64 * 8.0 / (w as f64 * h as f64), "decoded": decoded, "output": output}))
            }
        }
    }
}

fn unknown_handle(handle: u64) -> Error {
    Error::InvalidArgument(format!("no prepared reference has handle {handle}; use the handle prepare_reference answered"))
}

/// An answer's estimate, with what ran it (and, for E-LPIPS, whether its draws were tile-sampled).
fn estimate_json(metric: &Metric, reference: &Image, e: &Estimate) -> Value {
    let mut v = json!({"metric": metric.kind().name(), "device": metric.device().name(), "backend": metric.backend().name(), "distance": e.distance, "ci95": e.ci95, "std_error": e.std_error, "samples": e.samples, "converged": e.converged});
    if metric.kind().is_ensemble() {
        v["sample_area"] = SampleArea::name(metric.tile_sampled(reference.height(), reference.width())).into();
        // Two streams: the cheap-only draws beside `samples` full samples (0: one stream).
        v["cheap_draws"] = (e.samples * metric.cheap_draws_per_sample(reference.height(), reference.width()) as u64).into();
    }
    v
}
