//! `elpips check --merge`: the summaries of one run (one per shard of a manifest, or one per
//! single pair) into one summary, refusing any set that could let a lost or altered shard pass.
//! Each summary is read bounded and checked whole by [`parse_summary`] (types, ranges, its
//! rows, each result's consistency, its digest); then, across summaries: the same manifest
//! sha256, row count and settings, every shard present exactly once. docs/renderer.md lists
//! what is verified.

use std::path::PathBuf;
use std::process::ExitCode;

use elpips::Error;

use super::manifest::read_input;
use super::summary::{parse_summary, Summary, MAX_SUMMARY_BYTES, SUMMARY_FORMAT};
use super::{finish, invalid, round3, CheckArgs};
use crate::escape::line;
use crate::output::out;

pub fn merge(args: &CheckArgs) -> Result<ExitCode, Error> {
    if args.reference.is_some() || args.shard.is_some() {
        return Err(invalid("--merge takes summaries only (no images, --manifest or --shard)"));
    }
    super::check_destinations(args, &[])?;
    let mut parts: Vec<(&PathBuf, Summary)> = Vec::new();
    for path in &args.merge {
        let bytes = read_input(path, MAX_SUMMARY_BYTES, "summary", "a summary this large was not written by `elpips check`")?;
        parts.push((path, parse_summary(&bytes, path)?));
    }
    let Some(((first_path, first), rest)) = parts.split_first() else {
        return Err(invalid("--merge needs at least one summary"));
    };
    let from_manifest = first.manifest_sha256.is_some();
    for (path, s) in rest {
        if s.manifest_sha256 != first.manifest_sha256 || s.settings != first.settings || (from_manifest && s.manifest_rows != first.manifest_rows) {
            return Err(invalid(format!(
                "{} and {} come from different manifests or settings; merge the summaries of one run",
                first_path.display(),
                path.display()
            )));
        }
    }
    let mut results = Vec::new();
    if from_manifest {
        // The shards of one manifest must all be there, each once, so a lost job cannot pass.
        // Each summary holds exactly its shard's rows (parse_summary), so together they are
        // every row once.
        crate::shard::require_complete(parts.iter().map(|(path, s)| {
            let shard = s.shard_or_whole();
            (path.as_path(), shard.index, shard.count)
        }))?;
        results.extend(parts.iter().flat_map(|(_, s)| s.results.iter().cloned()));
        results.sort_by_key(|r| r.row);
    } else {
        // Single-pair summaries (e.g. one per CTest test): concatenated in the order given,
        // each once. A part given twice (the same file, or a copy) would count its pairs twice;
        // two runs never write equal summaries (each records its own times).
        for (k, (path, s)) in parts.iter().enumerate() {
            if let Some((first, _)) = parts[..k].iter().find(|(p, f)| elpips::io::same_file(p, path) || f.digest == s.digest) {
                return Err(invalid(match first == path {
                    true => format!("{} is given twice; merge each summary once", path.display()),
                    false => format!("{} and {} are the same summary; merge each summary once", first.display(), path.display()),
                }));
            }
        }
        for (row, r) in parts.iter().flat_map(|(_, s)| s.results.iter()).enumerate() {
            results.push(super::summary::CaseResult { row: row as u64, ..r.clone() });
        }
    }
    let seconds: f64 = parts.iter().map(|(_, s)| s.seconds).sum();
    let mut summary = Summary {
        backend: crate::shard::devices(parts.iter().map(|(_, s)| s.backend.as_deref())),
        counts: Default::default(),
        device: crate::shard::devices(parts.iter().map(|(_, s)| s.device.as_deref())),
        digest: None,
        elpips_check: SUMMARY_FORMAT,
        manifest: first.manifest.clone(),
        manifest_rows: if from_manifest { first.manifest_rows } else { results.len() as u64 },
        manifest_sha256: first.manifest_sha256.clone(),
        merged: Some(args.merge.iter().map(|p| p.display().to_string()).collect()),
        results,
        seconds: round3(seconds),
        settings: first.settings.clone(),
        shard: None,
    };
    summary.seal();
    if let Some(dir) = &args.report {
        super::report::gather_images(dir, &summary)?;
    }
    if !args.json && !args.quiet {
        for r in &summary.results {
            if r.status != super::summary::Status::Pass {
                let status = if r.status == super::summary::Status::Fail { "FAIL" } else { "ERROR" };
                out!("{status} {}  {}", line(&r.name), line(r.message.as_deref().unwrap_or("")))?;
            }
        }
    }
    finish(args, &summary, false)
}
