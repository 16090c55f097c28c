//! Splitting a run over machines: `--shard I/N` (item `k` belongs to shard `k % N`) and the one
//! rule every merge applies (`check --merge`, `rd --merge`): the parts are of one shard count and
//! each shard is there exactly once, so a lost or repeated job cannot pass unnoticed. What a
//! part holds and how it is verified is its format's business, not this module's.

use std::collections::BTreeMap;
use std::path::Path;

use elpips::Error;

/// The device of a merged run: the parts' devices, each once, in name order (`cpu`,
/// `cpu,cuda` where shards ran on both); `None` where no part names one.
pub fn devices<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let set: std::collections::BTreeSet<&str> = parts.into_iter().flatten().collect();
    (!set.is_empty()).then(|| set.into_iter().collect::<Vec<_>>().join(","))
}

/// `--shard I/N`: `(I, N)` with `0 <= I < N`.
pub fn parse(s: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::InvalidArgument(format!("--shard takes I/N with 0 <= I < N (e.g. 0/4), not `{s}`"));
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
