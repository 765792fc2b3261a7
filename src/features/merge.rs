//! Merging the shard files of a sharded extraction (`xfer extract --shard
//! I/N`) into one feature file equal to an unsharded run's: the same rows in
//! the same order, labels, paths, features bit for bit, the skipped files in
//! the order an unsharded run records them, and the same attributes.
//!
//! Before anything is written, the shards must make one whole job together:
//! every file complete and a shard; the same backbone and model, preprocessing,
//! image decoding, dataset root, layout and classes ([`store::job_difference`]),
//! the same ONNX Runtime and xfer versions, the same file list (hash and
//! length) and the same number of shards N; and their indices disjoint and
//! covering 0..N. A shard missing, given twice, or of another list (stale) is
//! an error naming it.
//!
//! Shards are contiguous runs of the sorted list ([`crate::features::shard`]), so the
//! merge is a concatenation in shard order, streamed in blocks (memory stays
//! flat) through the store's own writer: the output is made under a temporary
//! name, committed block by block as `<out>.partial`, and renamed to `<out>`
//! only when complete.
//!
//! The one attribute that can differ from an unsharded run's is
//! `execution_provider`, when shards ran on different providers (a GPU node
//! and a CPU fallback): it then lists each provider once, in shard order,
//! separated by ", ".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3};

use crate::error::{Error, Next, Result};
use crate::features::store::{self, FeatureWriter, FileReader, ListInfo, Provenance};

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// The shards merged (N).
    pub shards: usize,
    pub rows: usize,
    /// Skipped files recorded, over all shards.
    pub skipped: usize,
    /// The whole list the output covers.
    pub list: ListInfo,
    /// The execution providers of the shards, each once, in shard order.
    pub providers: Vec<String>,
    pub seconds: f64,
}

/// Rows copied per block: about 32 MiB of features.
fn block_rows(dim: usize) -> usize {
    ((32 << 20) / dim.max(1).saturating_mul(4)).max(1)
}

/// The shards' list, shard count and versions that most of them share (ties:
/// the first file's), and a file that has them.
fn reference(files: &[FileReader]) -> &FileReader {
    let key = |f: &FileReader| {
        let l = f.list.as_ref().expect("checked to be a shard");
        (
            l.sha256.clone(),
            l.len,
            l.shard.map(|s| s.count),
            f.provenance.ort_version.clone(),
            f.provenance.xfer_version.clone(),
        )
    };
    let mut votes: HashMap<_, usize> = HashMap::new();
    for f in files {
        *votes.entry(key(f)).or_default() += 1;
    }
    let best = votes.values().copied().max().unwrap_or(0);
    files
        .iter()
        .find(|f| votes[&key(f)] == best)
        .expect("at least one file")
}

/// Opens and checks the shard files (see the module's documentation); returns
/// them in shard order.
pub(crate) fn check(paths: &[PathBuf]) -> Result<Vec<FileReader>> {
    if paths.is_empty() {
        return Err(Error::Merge {
            reason: "no shard files given".into(),
            next: Some(Next::GiveShardFiles),
        });
    }
    refuse_repeated(paths)?;
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let f = FileReader::open(p)?;
        if f.list.as_ref().is_none_or(|l| l.shard.is_none()) {
            return Err(Error::FeatureFile {
                path: p.clone(),
                reason: "is not a shard file (a whole extraction, or one written before sharding)"
                    .into(),
                next: Next::GiveShardFiles,
            });
        }
        files.push(f);
    }
    let r = reference(&files);
    let rl = r.list.clone().expect("a shard");
    let n = rl.shard.expect("a shard").count;
    for f in &files {
        check_against(f, r)?;
    }
    // N comes from the files: keyed by index, never an allocation of N.
    let mut by_index: BTreeMap<u64, FileReader> = BTreeMap::new();
    for f in files {
        let i = f
            .list
            .as_ref()
            .and_then(|l| l.shard)
            .expect("a shard")
            .index;
        if let Some(first) = by_index.get(&i) {
            return Err(Error::Merge {
                reason: format!(
                    "{} and {} are both shard {i}/{n}; pass one file per shard",
                    first.path.display(),
                    f.path.display()
                ),
                next: None,
            });
        }
        by_index.insert(i, f);
    }
    refuse_missing(&by_index, &rl)?;
    Ok(by_index.into_values().collect())
}

/// Refuses a file given twice, under any name.
fn refuse_repeated(paths: &[PathBuf]) -> Result<()> {
    let mut seen: HashMap<PathBuf, &PathBuf> = HashMap::new();
    for p in paths {
        let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if let Some(first) = seen.insert(canonical, p) {
            return Err(Error::Merge {
                reason: format!(
                    "{} is given twice ({} and {}); pass each shard file once",
                    p.display(),
                    first.display(),
                    p.display()
                ),
                next: None,
            });
        }
    }
    Ok(())
}

/// Refuses a shard that is not of the reference's run (shard count, list,
/// settings, versions, width, views) or whose rows do not cover its part of the list.
fn check_against(f: &FileReader, r: &FileReader) -> Result<()> {
    let rl = r.list.as_ref().expect("a shard");
    let n = rl.shard.expect("a shard").count;
    let l = f.list.as_ref().expect("a shard");
    let s = l.shard.expect("a shard");
    let stale = |what: String| Error::FeatureFile {
        path: f.path.clone(),
        reason: format!(
            "{what}, unlike {} and most shards given: it is stale or from another run",
            r.path.display()
        ),
        next: Next::ExtractLikeTheOthers,
    };
    if s.count != n {
        return Err(stale(format!(
            "is shard {s}: of {} shards, not {n}",
            s.count
        )));
    }
    if l.sha256 != rl.sha256 || l.len != rl.len {
        return Err(stale(format!(
            "is shard {s} of another file list ({}), not of {} (the dataset changed between the runs)",
            l.describe_list(),
            rl.describe_list()
        )));
    }
    if let Some((what, a, b)) = store::job_difference(&r.provenance, &f.provenance) {
        return Err(stale(format!("was extracted with {what} `{b}`, not `{a}`")));
    }
    use crate::models::backbone::precision_class;
    if precision_class(&r.provenance.inference_precision)
        != precision_class(&f.provenance.inference_precision)
    {
        return Err(stale(format!(
            "was computed in {}, not {} (one merged file holds one precision)",
            crate::features::store::precision_name(&f.provenance.inference_precision),
            crate::features::store::precision_name(&r.provenance.inference_precision)
        )));
    }
    for (what, a, b) in [
        (
            "ONNX Runtime",
            &r.provenance.ort_version,
            &f.provenance.ort_version,
        ),
        (
            "xfer",
            &r.provenance.xfer_version,
            &f.provenance.xfer_version,
        ),
    ] {
        if a != b {
            return Err(stale(format!("was extracted by {what} {b}, not {a}")));
        }
    }
    if f.dim != r.dim {
        return Err(stale(format!(
            "has {} features per row, not {}",
            f.dim, r.dim
        )));
    }
    // (The `augment` JSON is compared above; the count is what the
    // writer's layout follows, so it is compared on its own.)
    if f.provenance.views != r.provenance.views {
        return Err(stale(format!(
            "has {} augmented views per image, not {}",
            f.provenance.views, r.provenance.views
        )));
    }
    let want = l.range();
    if (f.rows + f.skipped) as u64 != want.end - want.start {
        return Err(Error::FeatureFile {
            path: f.path.clone(),
            reason: format!(
                "holds {} rows and {} skipped files, but {} has {} files: it is damaged",
                f.rows,
                f.skipped,
                l.describe_shard(),
                want.end - want.start
            ),
            next: Next::ExtractAgain,
        });
    }
    Ok(())
}

/// Refuses a set of shards with some missing, naming the first few.
fn refuse_missing(by_index: &BTreeMap<u64, FileReader>, rl: &ListInfo) -> Result<()> {
    let n = rl.shard.expect("a shard").count;
    // Every index is below N, so N − given are missing; name the first few.
    let missing = n - by_index.len() as u64;
    if missing > 0 {
        const NAMED: usize = 5;
        let named: Vec<String> = (0..n)
            .filter(|i| !by_index.contains_key(i))
            .take(NAMED)
            .map(|i| {
                ListInfo {
                    shard: Some(crate::features::shard::Shard { index: i, count: n }),
                    ..rl.clone()
                }
                .describe_shard()
            })
            .collect();
        let more = if missing > named.len() as u64 {
            format!(" and {} more", missing - named.len() as u64)
        } else {
            String::new()
        };
        return Err(Error::Merge {
            reason: format!(
                "{missing} of {n} shards missing: {}{more}",
                named.join(", ")
            ),
            next: Some(Next::GiveEveryShard { count: n }),
        });
    }
    Ok(())
}

/// Merges the shard files `paths` (in any order) into `out`, after
/// [`check`]ing them. `progress` gets the rows written so far and the total.
pub fn merge(
    paths: &[PathBuf],
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<MergeSummary> {
    let start = std::time::Instant::now();
    let shards = check(paths)?;
    let first = &shards[0];
    let mut providers: Vec<String> = Vec::new();
    for f in &shards {
        if !providers.contains(&f.provenance.execution_provider) {
            providers.push(f.provenance.execution_provider.clone());
        }
    }
    let prov = Provenance {
        execution_provider: providers.join(", "),
        ..first.provenance.clone()
    };
    let list = ListInfo {
        shard: None,
        ..first.list.clone().expect("a shard")
    };
    let total: usize = shards.iter().map(|f| f.rows).sum();
    let mut writer = FeatureWriter::create_for(out, first.dim, &prov, Some(&list))?;
    // With augmented views a row holds 1 + K feature vectors.
    let step = block_rows(
        first
            .dim
            .saturating_mul(first.provenance.views.saturating_add(1)),
    );
    let (mut rows, mut skipped) = (0, 0);
    progress(0, total);
    for f in &shards {
        // The shard's skipped files go with its first block: an unsharded run
        // records them in input order, which is shard order.
        let mut skipped_files = f.skipped_files()?;
        skipped += skipped_files.len();
        let mut a = 0;
        while a < f.rows || !skipped_files.is_empty() {
            let b = (a + step).min(f.rows);
            let (features, labels, paths) = if b > a {
                f.block(a..b)?
            } else {
                (Array2::zeros((0, f.dim)), Vec::new(), Vec::new())
            };
            let views = match f.provenance.views {
                0 => None,
                _ if b > a => f.views_block(a..b)?,
                k => Some(Array3::zeros((0, k, f.dim))),
            };
            writer.append_views(
                features.view(),
                views.as_ref().map(|v| v.view()),
                &labels,
                &paths,
                &skipped_files,
            )?;
            skipped_files.clear();
            rows += b - a;
            progress(rows, total);
            a = b;
        }
    }
    writer.finish()?;
    Ok(MergeSummary {
        shards: shards.len(),
        rows,
        skipped,
        list,
        providers,
        seconds: start.elapsed().as_secs_f64(),
    })
}
