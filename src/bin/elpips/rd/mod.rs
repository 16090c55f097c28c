//! `elpips rd`: rate-distortion curves of encoders by E-LPIPS and their BD-rates against an
//! anchor. Owns the arguments, the measuring run (encode every setting of every codec, measure
//! all of one image's encodes with the same draws), the `rd.json` format with its shard and
//! merge, and the CSV; [`bd`] is the BD-rate arithmetic, [`plot`] the SVG figures.
//! docs/codec.md documents the method.

mod bd;
pub mod format;
mod plot;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use elpips::{Error, Image, LoadOptions, Metric, MetricKind};

use crate::codec::{Codec, Effort};
use crate::metric_args::{NetworkArgs, SamplingArgs};
use crate::output::{check_outputs, out, Outputs};
use crate::CommonArgs;
use bd::{corpus_bd_rate, ImageCurves, RdPoint};
use crate::check::manifest::json_message;
use format::{check_bootstrap, digest, invalid, shard_images, BdRate, Point, RdFile, RdSettings, Shard, MAX_RD_BYTES, RD_FORMAT};

#[derive(Args)]
pub struct RdArgs {
    /// Original images (PNG 8/16-bit or JPEG); or --corpus.
    #[arg(conflicts_with_all = ["corpus", "merge"])]
    images: Vec<PathBuf>,
    /// Every .png / .jpg / .jpeg file of DIR (not its subfolders), in name order.
    #[arg(long, value_name = "DIR", conflicts_with = "merge")]
    corpus: Option<PathBuf>,
    /// Encoders, comma-separated (jpeg, webp, avif, jxl).
    #[arg(long, value_enum, value_delimiter = ',', required_unless_present = "merge")]
    codec: Vec<Codec>,
    /// Qualities (0..100, higher = better) encoded with every codec, comma-separated; at least 2.
    #[arg(long, value_name = "LIST", value_delimiter = ',', required_unless_present = "merge", allow_negative_numbers = true)]
    settings: Vec<i32>,
    /// The codec the others' BD-rates are against [default: the first --codec].
    #[arg(long, value_enum)]
    anchor: Option<Codec>,
    /// Bootstrap replicates of the BD-rate intervals.
    #[arg(long, value_name = "B", default_value_t = 1000)]
    bootstrap: u32,
    /// The encoders' speed settings (their defaults unless asked).
    #[command(flatten)]
    effort: Effort,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Measure only shard I of N of the images (images I, I+N, ...), or the one the CI engine
    /// assigns (`auto`, as `check --shard auto`); merge the parts with --merge.
    #[arg(long, value_name = "I/N", conflicts_with = "merge", help_heading = "Input")]
    shard: Option<String>,
    /// Merge the rd.json files of a sharded run (every shard once) instead of measuring.
    #[arg(long, value_name = "RD_JSON", num_args = 1.., help_heading = "Input")]
    merge: Vec<PathBuf>,
    /// Folder for rd.csv, rd.json and the plots (created if missing).
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    out: PathBuf,
    /// Print rd.json's object on stdout instead of the BD-rate table.
    #[arg(long, help_heading = "Output")]
    json: bool,
    /// Refuse images with more pixels than this.
    #[arg(long, value_name = "P", default_value_t = elpips::DEFAULT_MAX_PIXELS, help_heading = "Input")]
    max_pixels: u64,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: RdArgs, quiet: bool) -> Result<(), Error> {
    let file = if args.merge.is_empty() { measure(&args, quiet)? } else { merge(&args)? };
    // Staged, printed, then put in place: a failed print leaves --out as it was.
    let outputs = stage_outputs(&args.out, &file)?;
    if args.json {
        out!("{}", serde_json::to_string(&file).expect("json"))?;
    } else if !quiet {
        print_table(&file, &args.out)?;
    }
    outputs.commit()
}

fn measure(args: &RdArgs, quiet: bool) -> Result<RdFile, Error> {
    let codecs = &args.codec;
    for (k, c) in codecs.iter().enumerate() {
        if codecs[..k].contains(c) {
            return Err(invalid(format!("--codec lists {} twice; give each codec once", c.name())));
        }
        c.require()?;
    }
    let anchor = args.anchor.unwrap_or(codecs[0]);
    if !codecs.contains(&anchor) {
        return Err(invalid(format!("--anchor {} is not one of --codec; add it there", anchor.name())));
    }
    let mut settings = args.settings.clone();
    settings.sort_unstable();
    if settings.windows(2).any(|w| w[0] == w[1]) || settings.len() < 2 {
        return Err(invalid("--settings needs at least 2 different qualities (e.g. 30,50,70,90) for a curve"));
    }
    for &q in &settings {
        if let Some(c) = codecs.iter().find(|c| !(c.min_quality()..=100).contains(&q)) {
            return Err(invalid(format!("--settings {q} is outside {}'s qualities {}..100", c.name(), c.min_quality())));
        }
    }
    check_bootstrap(args.bootstrap, "--bootstrap")?;
    let images = corpus(args)?;
    let shard = args.shard.as_deref().map(crate::shard::resolve).transpose()?.flatten();
    if let Some((i, n)) = shard {
        if n > images.len() {
            return Err(invalid(format!("--shard {i}/{n}: the run has only {} images; use at most {} shards", images.len(), images.len())));
        }
    }
    let sampling = args.sampling.sampling(&args.network)?;
    check_out_dir(&args.out, &images)?;
    let mut metric = Metric::new(args.network.metric_options(&args.common, sampling))?;
    let mut lpips = elpips::tune::open_guide(&metric, MetricKind::LpipsVgg)?;
    let load = LoadOptions { max_pixels: args.max_pixels, ..Default::default() };
    let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let picked: Vec<usize> = (0..images.len()).filter(|k| shard.is_none_or(|(i, n)| k % n == i)).collect();

    let encodes = (picked.len() * codecs.len() * settings.len()) as u64;
    let bar = if quiet || !std::io::stderr().is_terminal() { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(encodes) };
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} encodes  {msg}  [{elapsed} < {eta}]").expect("static template"));
    let mut points = Vec::new();
    for &k in &picked {
        let path = &images[k];
        bar.set_message(format!("{}", path.display()));
        let reference = Image::open(path, &load)?;
        let (pixels, channels) = crate::tune::encoder_pixels(path)?;
        let (w, h) = (reference.width(), reference.height());
        metric.check_pair(&reference, &reference)?;
        let prepared = lpips.prepare_reference(&reference)?;
        let mut decoded = Vec::new();
        let mut sizes = Vec::new();
        for &codec in codecs {
            for &q in &settings {
                let (file, rgb) = codec.encode(&pixels, w, h, channels, q, args.effort)?;
                let image = Image::from_rgb8(w, h, &rgb)?;
                sizes.push((codec, q, file.len() as u64, lpips.compare_reference(&prepared, &image)?.distance));
                decoded.push(image);
                bar.inc(1);
            }
        }
        // Every encode of the image with the same draws: the curves' differences are then
        // measured without the draw-to-draw noise (common random numbers).
        let candidates: Vec<&Image> = decoded.iter().collect();
        let m = metric.compare_many(&reference, &candidates)?;
        for ((codec, q, bytes, lpips_vgg), e) in sizes.into_iter().zip(&m.distances) {
            points.push(Point {
                image: names[k].clone(),
                codec: codec.name(),
                setting: q,
                bytes,
                bpp: bytes as f64 * 8.0 / (w as f64 * h as f64),
                distance: e.distance,
                ci95: e.ci95,
                std_error: e.std_error,
                samples: e.samples,
                lpips_vgg,
            });
        }
    }
    bar.finish_and_clear();
    let settings = RdSettings {
        anchor: anchor.name(),
        bootstrap: args.bootstrap,
        codecs: codecs.iter().map(|c| c.name()).collect(),
        encoder: args.effort,
        metric: args.network.metric.name().to_owned(),
        sampler: args.network.sampler().name().to_owned(),
        sampling: format!("{sampling:?}"),
        scale_levels: args.network.scale_levels,
        seed: args.network.seed,
        settings,
        tile_samples: args.network.tile_samples,
        cheap_draws: (args.network.cheap_draws > 0).then_some(args.network.cheap_draws),
    };
    let shard = shard.map(|(i, n)| Shard { index: i as u64, count: n as u64 });
    Ok(seal(RdFile { backend: Some(metric.backend().name().to_owned()), bd_rate: BTreeMap::new(), device: Some(metric.device().name().to_owned()), digest: None, elpips_rd: RD_FORMAT, images: names, merged: None, points, settings, shard }))
}

/// The images of the run: the arguments, or the corpus folder's image files in name order.
fn corpus(args: &RdArgs) -> Result<Vec<PathBuf>, Error> {
    let Some(dir) = &args.corpus else {
        if args.images.is_empty() {
            return Err(invalid("give IMAGE files or --corpus DIR"));
        }
        return Ok(args.images.clone());
    };
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io { path: dir.clone(), reason: format!("{e}; --corpus takes a folder of images") })?;
    let mut images: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    images.sort();
    if images.is_empty() {
        return Err(invalid(format!("--corpus {} holds no .png, .jpg or .jpeg files", dir.display())));
    }
    Ok(images)
}

/// Fills in the BD-rates from the points, then the digest (call last).
fn seal(mut file: RdFile) -> RdFile {
    let curves = image_curves(&file);
    let anchor = file.settings.codecs.iter().position(|c| *c == file.settings.anchor).expect("the anchor is a codec");
    file.bd_rate.clear();
    for (c, name) in file.settings.codecs.iter().enumerate().filter(|&(c, _)| c != anchor) {
        let e = corpus_bd_rate(&curves, anchor, c, file.settings.bootstrap as usize, file.settings.seed);
        let per_image = curves.iter().map(|i| corpus_bd_rate(std::slice::from_ref(i), anchor, c, 0, 0).percent).collect();
        let r = BdRate {
            vs: file.settings.anchor.clone(),
            percent: e.percent,
            ci95: e.ci95,
            lower: e.lower,
            upper: e.upper,
            images: e.images,
            replicates: e.replicates,
            per_image,
            note: e.note.map(str::to_owned),
        };
        file.bd_rate.insert(name.clone(), r);
    }
    file.digest = None;
    file.digest = Some(digest(&file));
    file
}

/// Reads one `rd.json` ([`format::parse_part`] checks it).
fn read_part(path: &Path) -> Result<RdFile, Error> {
    let bytes = crate::check::manifest::read_input(path, MAX_RD_BYTES, "rd.json", "an rd.json this large was not written by `elpips rd`")?;
    format::parse_part(&bytes, path)
}

/// The points of each image (in the order met), grouped by codec in settings order.
fn image_curves(file: &RdFile) -> Vec<ImageCurves> {
    let mut out: Vec<(String, ImageCurves)> = Vec::new();
    for p in &file.points {
        if out.last().is_none_or(|(name, _)| *name != p.image) {
            out.push((p.image.clone(), vec![Vec::new(); file.settings.codecs.len()]));
        }
        let c = file.settings.codecs.iter().position(|c| *c == p.codec).expect("checked codec");
        out.last_mut().unwrap().1[c].push(RdPoint { rate: p.bpp, distance: p.distance, std_error: p.std_error });
    }
    out.into_iter().map(|(_, c)| c).collect()
}

fn merge(args: &RdArgs) -> Result<RdFile, Error> {
    if args.shard.is_some() || !args.images.is_empty() || args.corpus.is_some() || !args.codec.is_empty() || !args.settings.is_empty() {
        return Err(invalid("--merge takes rd.json files only (no images, --corpus, --codec, --settings or --shard): the settings are the parts'"));
    }
    let parts = args.merge.iter().map(|p| read_part(p).map(|f| (p, f))).collect::<Result<Vec<_>, _>>()?;
    let (first_path, first) = &parts[0];
    for (path, f) in &parts[1..] {
        if f.settings != first.settings || f.images != first.images {
            return Err(invalid(format!(
                "{} and {} come from different runs (settings or images differ); merge the parts of one run",
                first_path.display(),
                path.display()
            )));
        }
    }
    crate::shard::require_complete(parts.iter().map(|(path, f)| {
        let s = f.shard.unwrap_or(Shard { index: 0, count: 1 });
        (path.as_path(), s.index, s.count)
    }))?;
    check_out_dir(&args.out, &args.merge)?;
    // Back in image order: the points of image k are in the part of shard k % count.
    let index: BTreeMap<&str, usize> = first.images.iter().enumerate().map(|(k, n)| (n.as_str(), k)).collect();
    let mut points: Vec<Point> = parts.iter().flat_map(|(_, f)| f.points.iter().cloned()).collect();
    points.sort_by_key(|p| index[p.image.as_str()]);
    let file = RdFile {
        backend: crate::shard::devices(parts.iter().map(|(_, f)| f.backend.as_deref())),
        bd_rate: BTreeMap::new(),
        device: crate::shard::devices(parts.iter().map(|(_, f)| f.device.as_deref())),
        digest: None,
        elpips_rd: RD_FORMAT,
        images: first.images.clone(),
        merged: Some(args.merge.iter().map(|p| p.display().to_string()).collect()),
        points,
        settings: first.settings.clone(),
        shard: None,
    };
    Ok(seal(file))
}

/// Creates --out (once the run's arguments are known good) and checks that its files can be
/// written and are none of the inputs, before anything is measured.
fn check_out_dir(dir: &Path, inputs: &[PathBuf]) -> Result<(), Error> {
    crate::output::output_dir("--out", dir)?;
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    check_outputs(&[("--out", &dir.join("rd.json")), ("--out", &dir.join("rd.csv"))], &inputs)
}

/// The plot of image `k` in --out: named from its file name, cut to fit a file name.
fn plot_name(k: usize, name: &str) -> String {
    let stem = Path::new(name).file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
    format!("rd-{k}-{}.svg", elpips::io::safe_name(&stem, 120).replace('.', "_"))
}

fn stage_outputs(dir: &Path, file: &RdFile) -> Result<Outputs, Error> {
    let mut outputs = Outputs::default();
    let mut csv = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::Io { path: dir.join("rd.csv"), reason: e.to_string() };
    csv.write_record(["image", "codec", "setting", "bytes", "bpp", "distance", "ci95", "std_error", "samples", "lpips_vgg"]).map_err(io)?;
    for p in &file.points {
        let row = [
            p.image.clone(),
            p.codec.clone(),
            p.setting.to_string(),
            p.bytes.to_string(),
            p.bpp.to_string(),
            p.distance.to_string(),
            p.ci95.to_string(),
            p.std_error.to_string(),
            p.samples.to_string(),
            p.lpips_vgg.to_string(),
        ];
        csv.write_record(&row).map_err(io)?;
    }
    let csv = csv.into_inner().map_err(|e| Error::Io { path: dir.join("rd.csv"), reason: e.to_string() })?;
    outputs.add(dir.join("rd.csv"), &csv)?;
    outputs.add(dir.join("rd.json"), serde_json::to_string_pretty(file).expect("json").as_bytes())?;
    let curves = |points: Vec<&Point>| -> Vec<plot::Curve> {
        file.settings
            .codecs
            .iter()
            .map(|c| plot::Curve {
                label: c.clone(),
                points: points.iter().filter(|p| p.codec == *c).map(|p| (p.bpp, p.distance, p.ci95)).collect(),
            })
            .collect()
    };
    let metric = &file.settings.metric;
    for k in shard_images(file.images.len(), file.shard) {
        let name = &file.images[k];
        let svg = plot::svg(name, metric, &curves(file.points.iter().filter(|p| p.image == *name).collect()));
        outputs.add(dir.join(plot_name(k, name)), svg.as_bytes())?;
    }
    // The corpus curve: each setting's mean rate and mean distance over the images (its 95%
    // half-width from the images' own, as independent errors).
    let mut mean_points = Vec::new();
    let n = (file.points.len() / (file.settings.codecs.len() * file.settings.settings.len()).max(1)).max(1) as f64;
    for c in &file.settings.codecs {
        for q in &file.settings.settings {
            let ps: Vec<&Point> = file.points.iter().filter(|p| p.codec == *c && p.setting == *q).collect();
            let (bpp, d) = (ps.iter().map(|p| p.bpp).sum::<f64>() / n, ps.iter().map(|p| p.distance).sum::<f64>() / n);
            let ci = ps.iter().map(|p| p.ci95 * p.ci95).sum::<f64>().sqrt() / n;
            mean_points.push(Point { image: String::new(), codec: c.clone(), setting: *q, bytes: 0, bpp, distance: d, ci95: ci, std_error: 0.0, samples: 0, lpips_vgg: 0.0 });
        }
    }
    let title = format!("mean over {} images", n as usize);
    outputs.add(dir.join("rd.svg"), plot::svg(&title, metric, &curves(mean_points.iter().collect())).as_bytes())?;
    Ok(outputs)
}

fn print_table(file: &RdFile, out: &Path) -> Result<(), Error> {
    let images = file.points.iter().map(|p| p.image.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    out!("BD-rate at equal {} against {} over {images} images (negative: fewer bits):", file.settings.metric, file.settings.anchor)?;
    for (codec, r) in &file.bd_rate {
        match (r.percent, r.ci95) {
            (Some(p), Some(ci)) => out!("  {codec:<5} {p:+7.2}% ± {ci:.2} (95%, {} images, {} bootstrap replicates)", r.images, r.replicates)?,
            (Some(p), None) => out!("  {codec:<5} {p:+7.2}% ({} images, no interval)", r.images)?,
            _ => out!("  {codec:<5} none: {}", r.note.as_deref().unwrap_or("no image has overlapping curves"))?,
        }
    }
    out!("wrote {}/rd.csv, rd.json and the plots (rd.svg, rd-*.svg)", crate::escape::line(&out.display().to_string()))
}
