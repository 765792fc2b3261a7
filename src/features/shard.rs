//! Sharded extraction: which files of a dataset's sorted list shard `I` of `N`
//! takes, the `--shard I/N` (or `auto/N`) argument, and the list's hash that
//! ties the shards of one job together.
//!
//! # The assignment: contiguous ranges
//! Shard `I` of `N` takes the files `⌊I·L/N⌋ .. ⌊(I+1)·L/N⌋` of the sorted list
//! of `L` files: `N` consecutive runs whose sizes differ by at most one. Chosen
//! over `i mod N` because
//! - merging is then a concatenation in shard order: the rows, and the skipped
//!   files, come out in the order an unsharded run writes them, streamed with
//!   nothing to reorder;
//! - each shard is a run of the sorted list, so `--resume` works per shard
//!   exactly as for a whole extraction (the files done are the shard's first);
//! - a shard reads neighbouring files (the same folders), which suits file
//!   system caches and object stores.
//!
//! The cost: when decoding cost varies along the sorted order (one class of
//! large photos), contiguous shards can differ in time where `i mod N` would
//! spread it; the file counts are balanced either way.
//!
//! # The list's hash
//! [`list_sha256`]: SHA-256 over every file of the whole list, in order, of its
//! relative path, a NUL byte, its label as a decimal integer (−1 when unknown)
//! and a NUL byte. In Python: `hashlib.sha256(b"".join(p.encode() + b"\0" +
//! str(l).encode() + b"\0" for p, l in items)).hexdigest()`.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::images::dataset::Item;

/// The variables a scheduler sets to a task's index, in the order `auto` reads them.
pub const INDEX_VARIABLES: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// Shard `index` of `count` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The files `start..end` of a list of `len` files that this shard takes.
    pub(crate) fn range(&self, len: usize) -> std::ops::Range<usize> {
        let at = |i: u64| (i as u128 * len as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

fn spec_err(spec: &str, reason: impl Into<String>) -> Error {
    Error::ShardSpec {
        spec: spec.to_owned(),
        reason: reason.into(),
        next: None,
    }
}

/// Reads `--shard I/N` or `--shard auto/N`; `auto` takes the index from the
/// first of [`INDEX_VARIABLES`] that `env` has (Slurm job arrays, then
/// Kubernetes Indexed Jobs).
pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
    let (i, n) = spec.split_once('/').ok_or_else(|| {
        spec_err(
            spec,
            "expected I/N (shard I of N, from 0, e.g. 0/4) or auto/N",
        )
    })?;
    let count: u64 = n.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
        spec_err(
            spec,
            format!("the number of shards `{n}` is not a whole number ≥ 1"),
        )
    })?;
    let (index_text, source) = if i.trim() == "auto" {
        let found = INDEX_VARIABLES
            .iter()
            .find_map(|v| env(v).map(|value| (value, *v)));
        let Some((value, var)) = found else {
            return Err(Error::ShardSpec {
                spec: spec.to_owned(),
                reason: format!(
                    "auto takes the index from {} (a Slurm job array task) or {} (a Kubernetes Indexed Job), and neither is set",
                    INDEX_VARIABLES[0], INDEX_VARIABLES[1]
                ),
                next: Some(crate::error::Next::RunInJobOrGiveIndex { count }),
            });
        };
        let source = format!("{var}={}", value.trim());
        (value, source)
    } else {
        (i.to_owned(), format!("the index `{}`", i.trim()))
    };
    let index: u64 = index_text.trim().parse().map_err(|_| {
        spec_err(
            spec,
            format!("{source} is not a whole number ≥ 0; shards are numbered from 0"),
        )
    })?;
    if index >= count {
        return Err(spec_err(
            spec,
            format!(
                "{source} is out of range for {count} shards (0..={}); shards are numbered from 0 (a Slurm array of {count} tasks has the indices 0-{})",
                count - 1,
                count - 1
            ),
        ));
    }
    Ok(Shard { index, count })
}

/// Refuses more shards than the list has files (a shard count is a size
/// that later code allocates by, and such shards would be empty).
pub(crate) fn check_count(shard: Shard, len: usize) -> Result<()> {
    if shard.count > len as u64 {
        return Err(Error::TooManyShards { shard, len });
    }
    Ok(())
}

/// The hash of the whole ordered file list (see the module's documentation).
pub(crate) fn list_sha256(items: &[Item]) -> String {
    let mut h = Sha256::new();
    for item in items {
        h.update(item.rel_path.as_bytes());
        h.update([0]);
        h.update(item.label.to_string().as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn ranges_are_contiguous_balanced_and_cover_the_list() {
        for len in [0usize, 1, 2, 7, 10, 11, 1000] {
            for count in 1..=12u64 {
                let ranges: Vec<_> = (0..count)
                    .map(|index| Shard { index, count }.range(len))
                    .collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges.last().unwrap().end, len);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{len} files in {count}: {sizes:?}");
            }
        }
        assert_eq!(Shard { index: 1, count: 3 }.range(10), 3..6);
        let huge = Shard {
            index: u64::MAX - 1,
            count: u64::MAX,
        };
        // No overflow: the last of u64::MAX shards takes the last file.
        assert_eq!(huge.range(usize::MAX), usize::MAX - 1..usize::MAX);
    }

    #[test]
    fn parses_explicit_and_scheduler_indices() {
        assert_eq!(parse("2/5", none).unwrap(), Shard { index: 2, count: 5 });
        let slurm = |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| "3".to_string());
        assert_eq!(
            parse("auto/4", slurm).unwrap(),
            Shard { index: 3, count: 4 }
        );
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "0".to_string());
        assert_eq!(parse("auto/4", k8s).unwrap(), Shard { index: 0, count: 4 });
        // Slurm wins when both are set.
        let both = |k: &str| Some(if k == "SLURM_ARRAY_TASK_ID" { "1" } else { "2" }.to_string());
        assert_eq!(parse("auto/4", both).unwrap().index, 1);
    }

    #[test]
    fn bad_specs_say_what_to_do() {
        let e = parse("auto/4", none).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID")
                && e.contains("JOB_COMPLETION_INDEX")
                && e.contains("neither is set")
                && !e.contains("--shard"),
            "{e}"
        );
        assert!(matches!(
            parse("auto/4", none),
            Err(Error::ShardSpec {
                next: Some(crate::error::Next::RunInJobOrGiveIndex { count: 4 }),
                ..
            })
        ));
        let slurm = |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| "4".to_string());
        let e = parse("auto/4", slurm).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID=4 is out of range") && e.contains("indices 0-3"),
            "{e}"
        );
        let e = parse("5/5", none).unwrap_err().to_string();
        assert!(e.contains("out of range for 5 shards"), "{e}");
        for bad in ["3", "1/0", "a/3", "-1/3", "1/x", ""] {
            let e = parse(bad, none).unwrap_err().to_string();
            assert!(e.starts_with(&format!("shard {bad}:")), "{e}");
        }
    }

    #[test]
    fn the_hash_covers_paths_labels_and_order() {
        let it = |p: &str, l: i64| Item {
            rel_path: p.into(),
            label: l,
        };
        let a = list_sha256(&[it("a.jpg", 0), it("b.jpg", 1)]);
        assert_eq!(
            a,
            // hashlib.sha256(b"a.jpg\x000\x00b.jpg\x001\x00").hexdigest()
            "0304bda2eff14c7361bd21d49ecbc1875900242fb9fe1689d248ace2dbbd7488"
        );
        assert_ne!(a, list_sha256(&[it("b.jpg", 1), it("a.jpg", 0)]));
        assert_ne!(a, list_sha256(&[it("a.jpg", 0), it("b.jpg", 0)]));
        assert_ne!(a, list_sha256(&[it("a.jpg", 0)]));
    }
}
