//! Splitting a run over machines: `--shard I/N` (item `k` belongs to shard `k % N`), or `--shard
//! auto`, the shard that the engine running the job assigns (Bazel, GitLab CI, Buildkite, a
//! Slurm array; [`from_engines`]), and the one rule every merge applies (`check --merge`, `rd
//! --merge`): the parts are of one shard count and each shard is there exactly once, so a lost
//! or repeated job cannot pass unnoticed. What a part holds and how it is verified is its
//! format's business, not this module's.

use std::collections::BTreeMap;
use std::path::Path;

use elpips::Error;

/// The device of a merged run: the parts' devices, each once, in name order (`cpu`,
/// `cpu,cuda` where shards ran on both); `None` where no part names one.
pub fn devices<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let set: std::collections::BTreeSet<&str> = parts.into_iter().flatten().collect();
    (!set.is_empty()).then(|| set.into_iter().collect::<Vec<_>>().join(","))
}

/// `--shard I/N` or `--shard auto`: `Some((I, N))` with `0 <= I < N`, or `None` for the whole
/// run (`auto` in a job that no engine shards). `auto` reads the process environment and, under
/// Bazel, touches `TEST_SHARD_STATUS_FILE` (which tells Bazel the test shards itself).
pub fn resolve(s: &str) -> Result<Option<(usize, usize)>, Error> {
    if s.trim() != "auto" {
        return parse(s).map(Some);
    }
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let found = from_engines(&env)?;
    if let Some(status) = env("TEST_SHARD_STATUS_FILE").filter(|f| !f.is_empty()) {
        std::fs::OpenOptions::new().create(true).append(true).open(&status).map_err(|e| Error::Io {
            path: status.into(),
            reason: format!("{e}; Bazel's TEST_SHARD_STATUS_FILE must be writable"),
        })?;
    }
    Ok(found.map(|f| (f.index, f.count)))
}

/// A shard an engine assigned, and who said so.
#[derive(Debug, PartialEq, Eq)]
pub struct Assigned {
    pub index: usize,
    pub count: usize,
    /// The engine and the variables it was read from, for messages.
    pub source: String,
}

/// The shard the engines in the environment `env` assign, `None` if none shards this job:
/// Bazel (`TEST_SHARD_INDEX`, `TEST_TOTAL_SHARDS`), GitLab CI (`CI_NODE_INDEX`, 1-based, and
/// `CI_NODE_TOTAL`; GitLab sets the total to 1 in jobs without `parallel`), Buildkite
/// (`BUILDKITE_PARALLEL_JOB`, `BUILDKITE_PARALLEL_JOB_COUNT`) and a Slurm array
/// (`SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN` in steps of
/// `SLURM_ARRAY_TASK_STEP`, `SLURM_ARRAY_TASK_COUNT` tasks). Engines that disagree, a variable
/// without its partner, and a sparse Slurm array (`--array=1,3,4`) are refused: the shard must
/// come from one unambiguous place.
pub fn from_engines(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Assigned>, Error> {
    let mut found: Vec<Assigned> = Vec::new();
    for engine in [bazel, gitlab, buildkite, slurm] {
        found.extend(engine(env)?);
    }
    if let Some(other) = found.iter().find(|f| (f.index, f.count) != (found[0].index, found[0].count)) {
        let f = &found[0];
        return Err(Error::InvalidArgument(format!(
            "--shard auto: {} says shard {}/{}, but {} says {}/{}; give --shard I/N",
            f.source, f.index, f.count, other.source, other.index, other.count
        )));
    }
    Ok(found.into_iter().next())
}

/// An engine's variable as a number, if set.
fn number(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<i64>, Error> {
    let Some(v) = env(var).filter(|v| !v.trim().is_empty()) else { return Ok(None) };
    v.trim().parse().map(Some).map_err(|_| Error::InvalidArgument(format!("--shard auto: {var}={v} is not a whole number")))
}

/// Both variables of a pair, or neither (`None`); one without the other is an error.
fn pair(env: &dyn Fn(&str) -> Option<String>, index: &str, count: &str) -> Result<Option<(i64, i64)>, Error> {
    match (number(env, index)?, number(env, count)?) {
        (Some(i), Some(n)) => Ok(Some((i, n))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::InvalidArgument(format!("--shard auto: {index} is set without {count}"))),
        (None, Some(_)) => Err(Error::InvalidArgument(format!("--shard auto: {count} is set without {index}"))),
    }
}

/// `(index, count)` as a shard of `engine`, checked.
fn assigned(index: i64, count: i64, source: String) -> Result<Option<Assigned>, Error> {
    if count < 1 || index < 0 || index >= count {
        return Err(Error::InvalidArgument(format!("--shard auto: {source} assigns shard {index} of {count}, which does not exist")));
    }
    let (index, count) = (usize::try_from(index), usize::try_from(count));
    let (Ok(index), Ok(count)) = (index, count) else {
        return Err(Error::InvalidArgument(format!("--shard auto: {source} assigns a shard this machine cannot count")));
    };
    Ok(Some(Assigned { index, count, source }))
}

fn bazel(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Assigned>, Error> {
    let Some((i, n)) = pair(env, "TEST_SHARD_INDEX", "TEST_TOTAL_SHARDS")? else { return Ok(None) };
    assigned(i, n, "Bazel (TEST_SHARD_INDEX, TEST_TOTAL_SHARDS)".into())
}

fn gitlab(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Assigned>, Error> {
    // CI_NODE_TOTAL is 1 in every job without `parallel`, where CI_NODE_INDEX is unset.
    if number(env, "CI_NODE_INDEX")?.is_none() && number(env, "CI_NODE_TOTAL")? == Some(1) {
        return Ok(None);
    }
    let Some((i, n)) = pair(env, "CI_NODE_INDEX", "CI_NODE_TOTAL")? else { return Ok(None) };
    assigned(i - 1, n, "GitLab CI (CI_NODE_INDEX counted from 1, CI_NODE_TOTAL)".into())
}

fn buildkite(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Assigned>, Error> {
    let Some((i, n)) = pair(env, "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT")? else { return Ok(None) };
    assigned(i, n, "Buildkite (BUILDKITE_PARALLEL_JOB, BUILDKITE_PARALLEL_JOB_COUNT)".into())
}

/// A Slurm array task: `--array=MIN-MAX[:STEP]` gives tasks MIN, MIN+STEP, ..., MAX, their
/// number in `SLURM_ARRAY_TASK_COUNT`; the shard is the task's place in that sequence.
fn slurm(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Assigned>, Error> {
    let Some(id) = number(env, "SLURM_ARRAY_TASK_ID")? else { return Ok(None) };
    let source = "a Slurm array (SLURM_ARRAY_TASK_ID, _MIN, _MAX, _STEP, _COUNT)".to_owned();
    let invalid = |why: &str| Error::InvalidArgument(format!("--shard auto: {source}: {why}"));
    let min = number(env, "SLURM_ARRAY_TASK_MIN")?.ok_or_else(|| invalid("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_MIN"))?;
    let step = number(env, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
    let (max, count) = (number(env, "SLURM_ARRAY_TASK_MAX")?, number(env, "SLURM_ARRAY_TASK_COUNT")?);
    if step < 1 {
        return Err(invalid(&format!("step {step} is not a positive number")));
    }
    let count = match (max, count) {
        (_, Some(c)) => c,
        (Some(max), None) => (max - min) / step + 1,
        (None, None) => return Err(invalid("neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set")),
    };
    let regular = max.is_none_or(|max| max - min == step * (count - 1)) && id >= min && (id - min) % step == 0;
    if !regular {
        return Err(invalid(&format!(
            "task {id} of a sparse array (tasks from {min} to {}, step {step}, {count} tasks) has no place in a sequence of shards; number the array MIN-MAX[:STEP], or give --shard I/N",
            max.map_or("?".to_owned(), |m| m.to_string())
        )));
    }
    assigned((id - min) / step, count, source)
}

/// `--shard I/N`: `(I, N)` with `0 <= I < N`.
pub fn parse(s: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::InvalidArgument(format!("--shard takes I/N with 0 <= I < N (e.g. 0/4), or auto, not `{s}`"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Refuses a set of parts `(path, index, count)` unless they share one count and cover every
/// shard `0..count` exactly once.
pub fn require_complete<'a>(parts: impl IntoIterator<Item = (&'a Path, u64, u64)>) -> Result<(), Error> {
    let invalid = |m: String| Error::InvalidArgument(m);
    // Shards are kept in a map: a count read from a file sizes nothing.
    let mut seen: BTreeMap<u64, &Path> = BTreeMap::new();
    let mut count = None;
    for (path, index, n) in parts {
        let count = *count.get_or_insert(n);
        if n != count {
            return Err(invalid(format!("{} is shard {index}/{n}, others are of {count} shards", path.display())));
        }
        if let Some(prev) = seen.insert(index, path) {
            return Err(invalid(format!("shard {index}/{count} is given twice: {} and {}", prev.display(), path.display())));
        }
    }
    let Some(count) = count else { return Ok(()) };
    // At most as many steps as parts given plus the ten listed.
    let missing: Vec<String> = (0..count).filter(|i| !seen.contains_key(i)).take(10).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        let more = if count - seen.len() as u64 > missing.len() as u64 { ", ..." } else { "" };
        return Err(invalid(format!("missing the summaries of shard(s) {}{more}", missing.join(", "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_names_each_device_of_its_parts_once() {
        assert_eq!(devices([Some("cpu"), Some("cpu")]).as_deref(), Some("cpu"));
        assert_eq!(devices([Some("cuda"), None, Some("cpu"), Some("cuda")]).as_deref(), Some("cpu,cuda"));
        assert_eq!(devices([None, None]), None);
    }

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!(parse("0/4").unwrap(), (0, 4));
        assert_eq!(parse("3/4").unwrap(), (3, 4));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    fn engines(vars: &[(&str, &str)]) -> Result<Option<(usize, usize)>, String> {
        let env = |k: &str| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string());
        from_engines(&env).map(|f| f.map(|f| (f.index, f.count))).map_err(|e| e.to_string())
    }

    #[test]
    fn each_engine_names_its_shard() {
        assert_eq!(engines(&[]), Ok(None));
        assert_eq!(engines(&[("TEST_SHARD_INDEX", "2"), ("TEST_TOTAL_SHARDS", "4")]), Ok(Some((2, 4))));
        // GitLab counts from 1, and sets the total alone in jobs without `parallel`.
        assert_eq!(engines(&[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "3")]), Ok(Some((0, 3))));
        assert_eq!(engines(&[("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "3")]), Ok(Some((2, 3))));
        assert_eq!(engines(&[("CI_NODE_TOTAL", "1")]), Ok(None));
        assert_eq!(engines(&[("BUILDKITE_PARALLEL_JOB", "0"), ("BUILDKITE_PARALLEL_JOB_COUNT", "5")]), Ok(Some((0, 5))));
        // Slurm: --array=0-8 (as Slurm sets it), --array=1-8, and --array=1-7:2 (tasks 1, 3, 5, 7).
        let slurm = |id: &str, min: &str, max: &str, step: &str, count: &str| {
            engines(&[("SLURM_ARRAY_TASK_ID", id), ("SLURM_ARRAY_TASK_MIN", min), ("SLURM_ARRAY_TASK_MAX", max), ("SLURM_ARRAY_TASK_STEP", step), ("SLURM_ARRAY_TASK_COUNT", count)])
        };
        assert_eq!(slurm("1", "0", "8", "1", "9"), Ok(Some((1, 9))));
        assert_eq!(slurm("1", "1", "8", "1", "8"), Ok(Some((0, 8))));
        assert_eq!(slurm("8", "1", "8", "1", "8"), Ok(Some((7, 8))));
        assert_eq!(slurm("5", "1", "7", "2", "4"), Ok(Some((2, 4))));
        // The count follows from MIN, MAX and STEP where Slurm leaves it out.
        assert_eq!(engines(&[("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "7"), ("SLURM_ARRAY_TASK_STEP", "2")]), Ok(Some((3, 4))));
        // A sparse array (--array=1,3,4: 3 tasks from 1 to 4) has no sequence of shards.
        assert!(slurm("3", "1", "4", "1", "3").unwrap_err().contains("sparse array"));
        assert!(slurm("4", "1", "7", "2", "4").unwrap_err().contains("sparse array"));
    }

    #[test]
    fn engines_that_disagree_or_half_set_variables_are_refused() {
        let both = engines(&[("TEST_SHARD_INDEX", "1"), ("TEST_TOTAL_SHARDS", "4"), ("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "4")]).unwrap_err();
        assert!(both.contains("Bazel") && both.contains("says shard 1/4") && both.contains("GitLab") && both.contains("2/4") && both.contains("--shard I/N"), "{both}");
        // Two engines that agree are one answer.
        assert_eq!(engines(&[("TEST_SHARD_INDEX", "1"), ("TEST_TOTAL_SHARDS", "4"), ("BUILDKITE_PARALLEL_JOB", "1"), ("BUILDKITE_PARALLEL_JOB_COUNT", "4")]), Ok(Some((1, 4))));
        assert!(engines(&[("TEST_SHARD_INDEX", "1")]).unwrap_err().contains("TEST_SHARD_INDEX is set without TEST_TOTAL_SHARDS"));
        assert!(engines(&[("BUILDKITE_PARALLEL_JOB_COUNT", "2")]).unwrap_err().contains("set without BUILDKITE_PARALLEL_JOB"));
        assert!(engines(&[("SLURM_ARRAY_TASK_ID", "1")]).unwrap_err().contains("without SLURM_ARRAY_TASK_MIN"));
        assert!(engines(&[("TEST_SHARD_INDEX", "x"), ("TEST_TOTAL_SHARDS", "4")]).unwrap_err().contains("TEST_SHARD_INDEX=x is not a whole number"));
        assert!(engines(&[("TEST_SHARD_INDEX", "4"), ("TEST_TOTAL_SHARDS", "4")]).unwrap_err().contains("shard 4 of 4, which does not exist"));
        assert!(engines(&[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "4")]).unwrap_err().contains("does not exist"));
    }

    #[test]
    fn a_merge_needs_every_shard_once() {
        let (a, b) = (Path::new("a"), Path::new("b"));
        assert!(require_complete([(a, 0, 2), (b, 1, 2)]).is_ok());
        let msg = |r: Result<(), Error>| r.unwrap_err().to_string();
        assert!(msg(require_complete([(a, 0, 2)])).contains("missing the summaries of shard(s) 1/2"));
        assert!(msg(require_complete([(a, 0, 2), (b, 0, 2)])).contains("given twice"));
        assert!(msg(require_complete([(a, 0, 2), (b, 1, 3)])).contains("others are of 2 shards"));
    }
}
