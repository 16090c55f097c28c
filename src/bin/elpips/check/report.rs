//! `elpips check --report DIR`: a static HTML page people look at. `DIR/index.html` is one
//! self-contained file (inline CSS and a few lines of inline JS to sort; nothing loaded from the
//! network) with one row per pair, failures first: the reference, candidate and heatmap PNGs
//! (what the network compared, after tone mapping; every heatmap on the run's one colour
//! scale), the distance +- its 95% interval, each rule's value and the verdict.
//!
//! The images of a pair are named from its row and name ([`image_names`]) and written while the
//! run goes; the page is made from the summary alone, so `--merge --report DIR` writes the page
//! of a sharded run whose shards wrote their images into DIR (or copies them there from the
//! folders the shards' summaries name). A sharded run writes `shard-I-of-N.html`, not
//! `index.html`, so that shards sharing DIR do not overwrite each other's page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use elpips::{Error, Image};

use super::manifest::Case;
use super::summary::{CaseResult, SideName, Status, Summary};
use crate::escape::markup as xml;

/// Bytes of a pair's name kept in its file names (with the row and `.reference.png`, well
/// under the 255 a file name may have, with room for the writer's temporary name).
pub const NAME_BYTES: usize = 120;

/// The file names of a pair's images in the report folder: reference, candidate, heatmap.
pub fn image_names(row: u64, name: &str) -> [String; 3] {
    // The row makes a name unique, so a long one is cut to fit a file name (255 bytes).
    let stem = format!("{row}-{}", elpips::io::safe_name(name, NAME_BYTES));
    ["reference", "candidate", "heatmap"].map(|k| format!("{stem}.{k}.png"))
}

/// Writes a pair's reference and candidate as PNGs into `dir`; returns where its heatmap goes
/// (the caller writes it on the run's scale, with the map it already has).
pub fn write_images(dir: &Path, case: &Case, reference: &Image, candidate: &Image) -> Result<PathBuf, Error> {
    let [r, c, h] = image_names(case.row as u64, &case.name);
    write_png(&dir.join(r), reference)?;
    write_png(&dir.join(c), candidate)?;
    Ok(dir.join(h))
}

fn write_png(path: &Path, image: &Image) -> Result<(), Error> {
    let n = image.width() as usize * image.height() as usize;
    let mut rgb = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            rgb.push((image.channel(c)[i].clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    let img = image::RgbImage::from_raw(image.width(), image.height(), rgb).expect("sized above");
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| Error::Write { path: path.to_owned(), reason: e.to_string() })?;
    elpips::io::write_atomic(path, bytes.get_ref())
}

/// Copies into `dir` the images of merged rows that their shards wrote elsewhere (the folder of
/// the heatmap a summary names); rows whose images are in neither place show a note instead.
pub fn gather_images(dir: &Path, summary: &Summary) -> Result<(), Error> {
    crate::output::output_dir("--report", dir)?;
    for r in &summary.results {
        let Some(source) = r.heatmap.as_ref().and_then(|h| Path::new(&h.path).parent().map(Path::to_path_buf)) else { continue };
        for name in image_names(r.row, &r.name) {
            let (from, to) = (source.join(&name), dir.join(&name));
            if !to.exists() && from.is_file() {
                let bytes = std::fs::read(&from).map_err(|e| Error::Io { path: from.clone(), reason: e.to_string() })?;
                elpips::io::write_atomic(&to, &bytes)?;
            }
        }
    }
    Ok(())
}

/// Stages the page of `summary` in `dir` (put in place when `outputs` are committed).
pub fn stage_page(dir: &Path, summary: &Summary, outputs: &mut crate::output::Outputs) -> Result<(), Error> {
    let file = match summary.shard {
        Some(s) => format!("shard-{}-of-{}.html", s.index, s.count),
        None => "index.html".to_owned(),
    };
    outputs.add(dir.join(file), page(dir, summary).as_bytes())
}

fn num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".to_owned(),
    }
}

fn verdict_name(v: Option<SideName>) -> &'static str {
    match v {
        Some(SideName::Below) => "pass",
        Some(SideName::Above) => "fail",
        Some(SideName::Undecided) => "undecided",
        None => "–",
    }
}

/// Failures first, then errors, then passes; each in row order.
fn order(r: &CaseResult) -> (u8, u64) {
    let rank = match r.status {
        Status::Fail => 0,
        Status::Error => 1,
        Status::Pass => 2,
    };
    (rank, r.row)
}

fn page(dir: &Path, summary: &Summary) -> String {
    let c = summary.counts;
    let title = summary.manifest.as_deref().map_or("elpips check".to_owned(), |m| format!("elpips check {m}"));
    let scale = summary.results.iter().find_map(|r| r.heatmap.as_ref().map(|h| h.scale_max));
    let mut rows: Vec<&CaseResult> = summary.results.iter().collect();
    rows.sort_by_key(|r| order(r));
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em; background: #fafafa; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #eee; cursor: pointer; user-select: none; }}
th[data-sort]::after {{ content: " \2195"; color: #999; }}
img {{ width: 160px; image-rendering: pixelated; display: block; }}
tr.fail td.status {{ background: #f4c7c3; font-weight: bold; }}
tr.error td.status {{ background: #fce8b2; font-weight: bold; }}
tr.pass td.status {{ background: #b7e1cd; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.missing {{ color: #a00; font-size: 12px; }}
.note {{ font-size: 12px; color: #555; max-width: 28em; }}
</style></head><body>
<h1>{title}</h1>
<p id="counts">{} pairs: {} fail, {} error, {} pass. Heatmaps: inferno, black 0 .. yellow {} (one scale for every row). Error rate per pair {}{}.</p>
<table id="report"><thead><tr>
<th data-sort="num">row</th><th data-sort="text">name</th><th data-sort="text">status</th>
<th>reference</th><th>candidate</th><th>heatmap</th>
<th data-sort="num">distance</th><th data-sort="num">± 95%</th><th data-sort="num">max_distance</th>
<th data-sort="num">% pixels above V</th><th data-sort="num">max pixel</th><th>rules</th><th>verdicts</th>
</tr></thead><tbody>
"#,
        c.pass + c.fail + c.error,
        c.fail,
        c.error,
        c.pass,
        num(scale, 4),
        summary.settings.error_rate,
        summary.settings.suite_error_rate.map_or(String::new(), |a| format!(" (suite error rate {a})")),
        title = xml(&title),
    );
    for r in rows {
        let status = match r.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
        };
        let _ = write!(h, "<tr class=\"{status} case\" data-row=\"{}\"><td class=\"num\">{}</td><td>{}</td><td class=\"status\">{status}</td>", r.row, r.row, xml(&r.name));
        let names = image_names(r.row, &r.name);
        for (name, alt) in names.iter().zip(["reference", "candidate", "heatmap"]) {
            if dir.join(name).is_file() {
                let _ = write!(h, "<td><img src=\"{}\" alt=\"{alt} of {}\"></td>", xml(name), xml(&r.name));
            } else {
                let _ = write!(h, "<td><span class=\"missing\">no {alt} image</span></td>");
            }
        }
        let m = r.map.as_ref();
        let mut rules: Vec<String> = r.max_distance.iter().map(|t| format!("distance ≤ {t}")).collect();
        if let (Some(v), Some(p)) = (r.pixel_threshold, r.max_fail_percent) {
            rules.push(format!("≤ {p}% of pixels above {v}"));
        }
        if let Some(hf) = r.hard_fail {
            rules.push(format!("no pixel above {hf}"));
        }
        if let Some(p) = &r.preset {
            rules.push(format!("preset {p}"));
        }
        let mut verdicts = Vec::new();
        if r.max_distance.is_some() {
            verdicts.push(format!("distance: {}", verdict_name(r.verdict)));
        }
        if let Some(m) = m {
            verdicts.push(format!("map: {} ({} samples)", verdict_name(Some(m.verdict)), m.samples));
        }
        let verdicts = verdicts.join("<br>");
        let share = m.and_then(|m| m.fail_percent.map(|f| (f, m.fail_percent_lower, m.fail_percent_upper)));
        let share_cell = share.map_or("–".to_owned(), |(f, lo, hi)| format!("{f:.3} [{}, {}]", num(lo, 3), num(hi, 3)));
        let max_cell = m.map_or_else(|| num(r.heatmap.as_ref().map(|h| h.max), 4), |m| format!("{:.4} [{:.4}, {:.4}]", m.max, m.max_lower, m.max_upper));
        let _ = writeln!(
            h,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\" data-value=\"{}\">{share_cell}</td><td class=\"num\" data-value=\"{}\">{max_cell}</td><td>{}</td><td>{verdicts}{}</td></tr>",
            num(r.distance, 6),
            num(r.ci95, 6),
            super::ci::threshold(r.max_distance),
            share.map_or(-1.0, |s| s.0),
            m.map_or(-1.0, |m| m.max),
            xml(&rules.join("; ")),
            r.message.as_ref().map_or(String::new(), |msg| format!("<div class=\"note\">{}</div>", xml(msg))),
        );
    }
    h.push_str(
        r##"</tbody></table>
<script>
// Marks each image that decoded (a browser test reads the marks from the rendered DOM).
window.addEventListener("load", function () {
  document.querySelectorAll("#report img").forEach(function (img) { img.dataset.loaded = img.complete && img.naturalWidth > 0 ? "yes" : "no"; });
});
// Click a header to sort by it (again to reverse); numbers by their value.
document.querySelectorAll("#report th[data-sort]").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = document.querySelector("#report tbody"), col = th.cellIndex, num = th.dataset.sort === "num";
    var dir = th.dataset.dir === "asc" ? -1 : 1; th.dataset.dir = dir === 1 ? "asc" : "desc";
    var key = function (tr) { var td = tr.cells[col]; var v = td.dataset.value || td.textContent; return num ? parseFloat(v) || 0 : v; };
    Array.from(body.rows).sort(function (a, b) { var x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * dir; })
      .forEach(function (tr) { body.appendChild(tr); });
  });
});
</script>
</body></html>
"##,
    );
    h
}
