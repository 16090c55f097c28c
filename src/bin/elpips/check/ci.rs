//! CI conventions: when `GITHUB_STEP_SUMMARY` names a file, a markdown table of the run is
//! appended to it (GitHub shows it on the run's page); `--annotations github` prints workflow
//! commands, `::error` for each pair that failed or could not be checked and `::warning` for
//! each pair whose verdict was undecided, which GitHub attaches to the candidate's file.

use elpips::Error;

use crate::escape::{command_data, command_property, markdown};
use crate::output::out;

use super::summary::{CaseResult, SideName, Status, Summary};

/// The annotation formats of `--annotations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Annotations {
    /// GitHub Actions workflow commands (`::error file=...,title=...::message`).
    Github,
}

/// Whether a result's verdict (distance or map) was undecided.
fn undecided(r: &CaseResult) -> bool {
    r.verdict == Some(SideName::Undecided) || r.map.as_ref().is_some_and(|m| m.verdict == SideName::Undecided)
}

/// A row's max_distance, or `–` for a row gated by its map rules alone.
pub fn threshold(t: Option<f64>) -> String {
    t.map_or("–".to_owned(), |t| t.to_string())
}

/// What went wrong with a pair, in one line.
pub fn what(r: &CaseResult) -> String {
    let mut parts = Vec::new();
    if let (Some(d), Some(ci)) = (r.distance, r.ci95) {
        parts.push(format!("E-LPIPS distance {d:.6} ± {ci:.6} (max_distance {})", threshold(r.max_distance)));
    }
    if let Some(m) = &r.map {
        if let (Some(f), Some(p), Some(v)) = (m.fail_percent, r.max_fail_percent, r.pixel_threshold) {
            parts.push(format!("{f:.3}% of pixels above {v} (max {p}%)"));
        }
        if let Some(h) = r.hard_fail {
            parts.push(format!("largest pixel {:.6} (hard_fail {h})", m.max));
        }
    }
    parts.extend(r.message.clone());
    parts.join("; ")
}

pub fn annotate(format: Annotations, summary: &Summary) -> Result<(), Error> {
    match format {
        Annotations::Github => {
            for r in &summary.results {
                let kind = match r.status {
                    Status::Fail => "error",
                    Status::Error => "error",
                    Status::Pass if undecided(r) => "warning",
                    Status::Pass => continue,
                };
                let title = match r.status {
                    Status::Fail => format!("elpips check failed: {}", r.name),
                    Status::Error => format!("elpips check error: {}", r.name),
                    Status::Pass => format!("elpips check undecided: {}", r.name),
                };
                out!("::{kind} file={},title={}::{}", command_property(&r.candidate), command_property(&title), command_data(&what(r)))?;
                // A failure by an undecided verdict is an error above, and also a warning.
                if r.status == Status::Fail && undecided(r) {
                    out!("::warning file={},title={}::{}", command_property(&r.candidate), command_property(&format!("elpips check undecided: {}", r.name)), command_data(&what(r)))?;
                }
            }
        }
    }
    Ok(())
}

/// `$GITHUB_STEP_SUMMARY` when it is set (and not empty).
pub fn step_summary_path() -> Option<std::path::PathBuf> {
    std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()).map(Into::into)
}

/// Appends the run's table to `$GITHUB_STEP_SUMMARY` when it is set (under the output policy:
/// a file through its links, or written through a pipe with a reader, never waited on).
pub fn step_summary(summary: &Summary) -> Result<(), Error> {
    let Some(path) = step_summary_path() else { return Ok(()) };
    let c = summary.counts;
    let mut md = format!(
        "### elpips check{}\n\n{} pairs: **{} fail**, {} error, {} pass\n\n| status | name | distance | ± 95% | max_distance | % pixels above V | max pixel | verdict |\n|---|---|---:|---:|---:|---:|---:|---|\n",
        summary.manifest.as_deref().map_or(String::new(), |m| format!(" {}", markdown(m))),
        c.pass + c.fail + c.error,
        c.fail,
        c.error,
        c.pass
    );
    let mut rows: Vec<&CaseResult> = summary.results.iter().collect();
    rows.sort_by_key(|r| (r.status == Status::Pass, r.row));
    let f = |x: Option<f64>| x.map_or("–".to_owned(), |v| format!("{v:.6}"));
    for r in rows {
        let status = match r.status {
            Status::Pass => "✅ pass",
            Status::Fail => "❌ fail",
            Status::Error => "⚠️ error",
        };
        let verdict = match (r.verdict, r.map.as_ref().map(|m| m.verdict)) {
            (None, _) => markdown(r.message.as_deref().unwrap_or("")),
            (Some(d), None) => format!("{d:?}").to_lowercase(),
            (Some(d), Some(m)) => format!("distance {}, map {}", format!("{d:?}").to_lowercase(), format!("{m:?}").to_lowercase()),
        };
        md.push_str(&format!(
            "| {status} | {} | {} | {} | {} | {} | {} | {verdict} |\n",
            markdown(&r.name),
            f(r.distance),
            f(r.ci95),
            threshold(r.max_distance),
            r.map.as_ref().and_then(|m| m.fail_percent).map_or("–".to_owned(), |p| format!("{p:.3}")),
            f(r.map.as_ref().map(|m| m.max)),
        ));
    }
    md.push('\n');
    elpips::io::append(&path, md.as_bytes()).map_err(|e| match e {
        Error::Write { path, reason } => Error::Write { path, reason: format!("{reason} (GITHUB_STEP_SUMMARY)") },
        other => other,
    })
}
