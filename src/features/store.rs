//! HDF5 feature files, one per split × backbone (docs/formats.md,
//! "Feature file"): `data` f32 [N, D] (chunked), `label` i64 [N] (−1 =
//! unknown), `path` UTF-8 [N], the skipped files with reasons, and provenance
//! attributes, among them `format_version` ([`FORMAT_VERSION`]).
//!
//! A file is written as `<out>.partial`, flushed after every batch with the
//! number of committed rows in `rows_done`; only a finished run sets
//! `complete = 1` and renames it to `<out>`. A killed run therefore never
//! leaves a file under the final name, and `--resume` continues the partial one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, Extent, File};
use ndarray::{s, Array1, Array2, Array3, ArrayView2, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::shard::Shard;

/// Where a feature file came from. Stored as attributes of the file's root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub backbone: String,
    pub model_sha256: String,
    /// The preprocessing recipe, as JSON.
    pub preprocess: String,
    /// Class names in label order (JSON array in the file).
    pub class_names: Vec<String>,
    pub ort_version: String,
    /// The execution provider that really ran.
    pub execution_provider: String,
    pub xfer_version: String,
    pub dataset_root: String,
    pub layout: String,
    /// How images were decoded where that changes pixels: [`DecodeOptions::mode`]
    /// (`jpeg_scaled` or `jpeg_full`); empty in files written before it was recorded.
    ///
    /// [`DecodeOptions::mode`]: crate::images::preprocess::DecodeOptions::mode
    pub decode: String,
    /// What xfer did to the model's output ([`OutputSpec::pooling`]): empty
    /// for models that pool in their graph (all files before it was recorded).
    ///
    /// [`OutputSpec::pooling`]: crate::models::zoo::OutputSpec::pooling
    #[serde(default)]
    pub pooling: String,
    /// Augmented views per image (`xfer extract --views K`, the centre view
    /// counted), stored in the `views` dataset [N, K, D]; 0 for plain files.
    /// The attribute `views` is written only when it is not 0.
    #[serde(default)]
    pub views: usize,
    /// How the views were drawn: [`crate::images::augment::ViewPlan`] as JSON (recipe,
    /// seed, K); empty for plain files. The attribute `augment`.
    #[serde(default)]
    pub augment: String,
    /// `int8` for features of a quantised model (`xfer quantize`); empty for
    /// fp32 models (the attribute is written only when set).
    #[serde(default)]
    pub precision: String,
}

/// The newest feature-file format this xfer reads and writes. 1: files without
/// the attribute (before the decode mode was recorded); 2: adds `decode` and
/// `format_version` (and, later, `list_sha256` and `list_len`, which old
/// readers ignore); 3: shard files of a sharded extraction (the `shard_*`
/// attributes): an older reader would take one for a whole dataset, so they
/// carry a version it refuses. Whole files are still written as
/// [`WHOLE_FORMAT_VERSION`]. Readers take every version up to theirs; tutorial
/// files (`data` and `label` only) are read as well.
pub const FORMAT_VERSION: u64 = 3;

/// The version of whole (not shard) feature files: nothing in them is new to a
/// version-2 reader.
pub const WHOLE_FORMAT_VERSION: u64 = 2;

/// Which files of which list a feature file holds: the hash and length of the
/// whole sorted file list of the job, and, for a shard file, which shard.
/// Stored as the attributes `list_sha256`, `list_len` and, for shards,
/// `shard_index`, `shard_count`, `shard_start`, `shard_end` (the files
/// `start..end` of the list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInfo {
    /// [`crate::features::shard::list_sha256`] of the whole list.
    pub sha256: String,
    /// Files in the whole list.
    pub len: u64,
    pub shard: Option<Shard>,
}

impl ListInfo {
    /// The files of the list this file covers (all of them for a whole file).
    pub fn range(&self) -> std::ops::Range<u64> {
        match self.shard {
            Some(s) => {
                let r = s.range(self.len as usize);
                r.start as u64..r.end as u64
            }
            None => 0..self.len,
        }
    }

    /// "shard 1/3 (files 30..60 of 90)".
    pub fn describe_shard(&self) -> String {
        match self.shard {
            Some(s) => {
                let r = self.range();
                format!("shard {s} (files {}..{} of {})", r.start, r.end, self.len)
            }
            None => format!("the whole list ({} files)", self.len),
        }
    }

    /// "90 files, sha256 0123abcd…".
    pub fn describe_list(&self) -> String {
        format!(
            "{} files, sha256 {}…",
            self.len,
            self.sha256.chars().take(12).collect::<String>()
        )
    }
}

/// The first way two provenances describe different jobs, as (what, a, b):
/// backbone, model, preprocessing, dataset, layout, image decoding or classes.
/// The execution provider and the ORT and xfer versions are not compared.
pub fn job_difference(a: &Provenance, b: &Provenance) -> Option<(&'static str, String, String)> {
    let fields = [
        ("backbone", &a.backbone, &b.backbone),
        ("model sha256", &a.model_sha256, &b.model_sha256),
        ("preprocessing", &a.preprocess, &b.preprocess),
        ("dataset", &a.dataset_root, &b.dataset_root),
        ("layout", &a.layout, &b.layout),
        ("image decoding", &a.decode, &b.decode),
        ("pooling", &a.pooling, &b.pooling),
        ("augmented views", &a.augment, &b.augment),
    ];
    if let Some((what, x, y)) = fields.into_iter().find(|(_, x, y)| x != y) {
        return Some((what, x.clone(), y.clone()));
    }
    (a.class_names != b.class_names).then(|| {
        let json = |c: &Vec<String>| serde_json::to_string(c).expect("json");
        ("classes", json(&a.class_names), json(&b.class_names))
    })
}

const ROW_CHUNK: usize = 256;

pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn h5(path: &Path) -> impl Fn(hdf5::Error) -> Error + 'static {
    let path = path.to_owned();
    move |source| {
        // HDF5 reports a full disk as a C error stack with errno 28 inside.
        let text = source.to_string();
        if text.contains("No space left on device") || text.contains("errno = 28") {
            return store_err(
                &path,
                "the disk is full (No space left on device); every batch written before is kept: free some space, then run the same command with --resume to continue",
            );
        }
        Error::Hdf5 {
            path: path.clone(),
            source,
        }
    }
}

fn store_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Store {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn vlen(s: &str) -> VarLenUnicode {
    // NUL cannot occur in paths or reasons we write; replace defensively.
    s.replace('\0', "?").parse().expect("no NUL")
}

fn write_str_attr(file: &File, name: &str, value: &str) -> hdf5::Result<()> {
    if file.attr_names()?.iter().any(|n| n == name) {
        file.attr(name)?.write_scalar(&vlen(value))
    } else {
        file.new_attr::<VarLenUnicode>()
            .create(name)?
            .write_scalar(&vlen(value))
    }
}

fn read_str_attr(file: &File, name: &str) -> Option<String> {
    let a = file.attr(name).ok()?;
    a.read_scalar::<VarLenUnicode>()
        .ok()
        .map(|v| v.as_str().to_owned())
}

fn write_u64_attr(file: &File, name: &str, value: u64) -> hdf5::Result<()> {
    if file.attr_names()?.iter().any(|n| n == name) {
        file.attr(name)?.write_scalar(&value)
    } else {
        file.new_attr::<u64>().create(name)?.write_scalar(&value)
    }
}

fn read_u64_attr(file: &File, name: &str) -> Option<u64> {
    file.attr(name).ok()?.read_scalar::<u64>().ok()
}

fn write_list(file: &File, list: &ListInfo) -> hdf5::Result<()> {
    write_str_attr(file, "list_sha256", &list.sha256)?;
    write_u64_attr(file, "list_len", list.len)?;
    if let Some(s) = list.shard {
        let r = list.range();
        write_u64_attr(file, "shard_index", s.index)?;
        write_u64_attr(file, "shard_count", s.count)?;
        write_u64_attr(file, "shard_start", r.start)?;
        write_u64_attr(file, "shard_end", r.end)?;
    }
    Ok(())
}

/// The list a file covers; `None` for files written before it was recorded.
/// Shard attributes that do not describe a shard of the list are an error.
fn read_list(file: &File, path: &Path) -> Result<Option<ListInfo>> {
    let (Some(sha256), Some(len)) = (
        read_str_attr(file, "list_sha256"),
        read_u64_attr(file, "list_len"),
    ) else {
        return Ok(None);
    };
    let names = ["shard_index", "shard_count", "shard_start", "shard_end"];
    let present = names.iter().filter(|n| file.attr(n).is_ok()).count();
    if present == 0 {
        return Ok(Some(ListInfo {
            sha256,
            len,
            shard: None,
        }));
    }
    let damaged = |what: &str| {
        store_err(
            path,
            format!(
                "has damaged shard attributes ({what}); extract this shard again with --overwrite"
            ),
        )
    };
    let v: Vec<Option<u64>> = names.iter().map(|n| read_u64_attr(file, n)).collect();
    let [Some(index), Some(count), Some(start), Some(end)] = v[..] else {
        return Err(damaged("some are missing or not numbers"));
    };
    if count == 0 || index >= count {
        return Err(damaged(&format!("shard {index} of {count}")));
    }
    let list = ListInfo {
        sha256,
        len,
        shard: Some(Shard { index, count }),
    };
    if list.range() != (start..end) {
        return Err(damaged(&format!(
            "files {start}..{end} recorded, but shard {index}/{count} of {len} files is {:?}",
            list.range()
        )));
    }
    Ok(Some(list))
}

/// How a file's list differs from a run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Another shard (or a shard against a whole extraction).
    Shard,
    /// Another file list: the dataset changed.
    List,
}

/// Whether a file that records `old` can stand for (or be continued by) a run
/// over `new`, and if not, why ("holds shard 1/3 …, this run is shard 2/3 …").
/// Shards must match exactly; whole runs are not compared here (a whole run
/// may continue a file whose list changed after its resume point).
pub fn list_mismatch(old: Option<&ListInfo>, new: &ListInfo) -> Option<(Mismatch, String)> {
    let old_shard = old.and_then(|l| l.shard);
    if new.shard.is_none() && old_shard.is_none() {
        return None;
    }
    let Some(old) = old else {
        return Some((
            Mismatch::Shard,
            format!(
                "records no file list (written by an older xfer, not as a shard), this run is {}",
                new.describe_shard()
            ),
        ));
    };
    if old.shard != new.shard {
        let old_what = match old.shard {
            Some(_) => old.describe_shard(),
            None => "a whole extraction".into(),
        };
        let new_what = match new.shard {
            Some(_) => new.describe_shard(),
            None => "a whole extraction (no --shard)".into(),
        };
        return Some((
            Mismatch::Shard,
            format!("holds {old_what}, this run is {new_what}"),
        ));
    }
    if old.sha256 != new.sha256 || old.len != new.len {
        return Some((
            Mismatch::List,
            format!(
                "was made from another file list ({}) than today's ({}): the dataset changed since",
                old.describe_list(),
                new.describe_list()
            ),
        ));
    }
    None
}

/// Appends rows to a feature file being written.
pub struct FeatureWriter {
    file: File,
    out: PathBuf,
    partial: PathBuf,
    dim: usize,
    rows: usize,
    n_skipped: usize,
    data: Dataset,
    label: Dataset,
    path: Dataset,
    skipped_path: Dataset,
    skipped_reason: Dataset,
    /// `views` [N, K, D] and K, when the file holds augmented views.
    views: Option<(Dataset, usize)>,
    /// The list this run covers; written again by [`FeatureWriter::finish`].
    list: Option<ListInfo>,
}

/// Rows per chunk of a dataset whose rows hold `row_values` f32s: at most
/// [`ROW_CHUNK`], and chunks of at most 1 MiB.
fn chunk_rows(row_values: usize) -> usize {
    ROW_CHUNK.min((1 << 20) / (4 * row_values).max(1)).max(1)
}

/// What a resumed writer already holds.
pub struct ResumeState {
    pub rows: usize,
    /// Files recorded as skipped by the interrupted run.
    pub skipped: usize,
    /// Paths already written, with their label, or already recorded as
    /// skipped (label `None`).
    pub done: HashMap<String, Option<i64>>,
}

impl FeatureWriter {
    /// Starts `<out>.partial` afresh (replacing an old partial file).
    ///
    /// The new file is made under a temporary name and renamed to
    /// `<out>.partial` once its structure is on disk, so a run killed while
    /// creating it never leaves a `.partial` that `--resume` cannot open.
    pub fn create(out: &Path, dim: usize, prov: &Provenance) -> Result<FeatureWriter> {
        FeatureWriter::create_for(out, dim, prov, None)
    }

    /// [`FeatureWriter::create`], recording which list (and shard of it) the
    /// file covers. A shard file is format version 3 from its creation, so
    /// nothing takes a partial shard for a whole dataset.
    pub fn create_for(
        out: &Path,
        dim: usize,
        prov: &Provenance,
        list: Option<&ListInfo>,
    ) -> Result<FeatureWriter> {
        let partial = partial_path(out);
        let tmp = crate::util::atomic::TempFile::new(&partial)?;
        let err = h5(&partial);
        let file = File::create(tmp.path()).map_err(&err)?;
        let data = file
            .new_dataset::<f32>()
            .chunk((ROW_CHUNK.min((1 << 20) / dim.max(1)).max(1), dim)) // ≤ 1 MiB chunks
            .shape((Extent::resizable(0), Extent::fixed(dim)))
            .create("data")
            .map_err(&err)?;
        let views = match prov.views {
            0 => None,
            k => Some((
                file.new_dataset::<f32>()
                    .chunk((chunk_rows(k * dim), k, dim))
                    .shape((Extent::resizable(0), Extent::fixed(k), Extent::fixed(dim)))
                    .create("views")
                    .map_err(&err)?,
                k,
            )),
        };
        let str_ds = |name: &str| {
            file.new_dataset::<VarLenUnicode>()
                .chunk(ROW_CHUNK)
                .shape(Extent::resizable(0))
                .create(name)
        };
        let label = file
            .new_dataset::<i64>()
            .chunk(ROW_CHUNK)
            .shape(Extent::resizable(0))
            .create("label")
            .map_err(&err)?;
        let path = str_ds("path").map_err(&err)?;
        let skipped_path = str_ds("skipped_path").map_err(&err)?;
        let skipped_reason = str_ds("skipped_reason").map_err(&err)?;
        let attrs = [
            ("backbone", prov.backbone.clone()),
            ("model_sha256", prov.model_sha256.clone()),
            ("preprocess", prov.preprocess.clone()),
            (
                "class_names",
                serde_json::to_string(&prov.class_names).expect("json"),
            ),
            ("ort_version", prov.ort_version.clone()),
            ("execution_provider", prov.execution_provider.clone()),
            ("xfer_version", prov.xfer_version.clone()),
            ("dataset_root", prov.dataset_root.clone()),
            ("layout", prov.layout.clone()),
            ("decode", prov.decode.clone()),
            ("pooling", prov.pooling.clone()),
        ];
        for (k, v) in attrs {
            write_str_attr(&file, k, &v).map_err(&err)?;
        }
        if prov.views > 0 {
            write_u64_attr(&file, "views", prov.views as u64).map_err(&err)?;
            write_str_attr(&file, "augment", &prov.augment).map_err(&err)?;
        }
        if !prov.precision.is_empty() {
            write_str_attr(&file, "precision", &prov.precision).map_err(&err)?;
        }
        let version = match list {
            Some(ListInfo { shard: Some(_), .. }) => FORMAT_VERSION,
            _ => WHOLE_FORMAT_VERSION,
        };
        write_u64_attr(&file, "format_version", version).map_err(&err)?;
        if let Some(list) = list {
            write_list(&file, list).map_err(&err)?;
        }
        write_u64_attr(&file, "rows_done", 0).map_err(&err)?;
        write_u64_attr(&file, "skipped_done", 0).map_err(&err)?;
        write_u64_attr(&file, "complete", 0).map_err(&err)?;
        file.flush().map_err(&err)?;
        // HDF5 keeps writing through its open descriptor after the rename.
        tmp.commit()?;
        Ok(FeatureWriter {
            file,
            out: out.to_owned(),
            partial,
            dim,
            rows: 0,
            n_skipped: 0,
            data,
            label,
            path,
            skipped_path,
            skipped_reason,
            views,
            list: list.cloned(),
        })
    }

    /// Reopens `<out>.partial` after an interrupted run. Rows past the last
    /// committed batch are dropped. The provenance must match the new run's
    /// (same model, preprocessing, decoding, dataset, layout and classes: the
    /// labels already written use the old class numbering), except the
    /// execution provider.
    pub fn resume(
        out: &Path,
        dim: usize,
        prov: &Provenance,
    ) -> Result<(FeatureWriter, ResumeState)> {
        FeatureWriter::resume_for(out, dim, prov, None)
    }

    /// [`FeatureWriter::resume`] for a run over `list`. A shard file continues
    /// only as the same shard of the same list ([`list_mismatch`]); a whole
    /// file takes today's list (checked by the caller's resume point) and
    /// records it when finished.
    pub fn resume_for(
        out: &Path,
        dim: usize,
        prov: &Provenance,
        list: Option<&ListInfo>,
    ) -> Result<(FeatureWriter, ResumeState)> {
        let partial = partial_path(out);
        let file = open_partial(&partial)?;
        let old = read_provenance(&file)
            .ok_or_else(|| store_err(&partial, "has no provenance; delete it"))?;
        check_same_job(&old, prov, &partial)?;
        check_same_list(&file, &partial, list)?;
        let c = Committed::open(&file, &partial, dim, prov.views)?;
        // The committed rows are copied into a fresh file, which then replaces
        // the partial one; nothing past them is kept. Appending to the old file
        // instead is not safe: a process killed inside HDF5 can leave its heap
        // of variable-length strings inconsistent past the committed rows, and
        // new rows appended after a reopen then read back with an old row's
        // path (the kill matrix found it). The old file stays the partial file
        // until the copy is whole, so a kill during the copy loses nothing.
        let mut done: HashMap<String, Option<i64>> =
            c.skipped.iter().map(|(p, _)| (p.clone(), None)).collect();
        let kept = Provenance {
            execution_provider: prov.execution_provider.clone(),
            ..old
        };
        let name = out.file_name().unwrap_or_default().to_string_lossy();
        let fresh_out = out.with_file_name(format!("{name}.resume-{}", std::process::id()));
        let mut w = FeatureWriter::create_for(&fresh_out, dim, &kept, list)?;
        let step =
            ((32 << 20) / (dim.max(1) * 4).saturating_mul(prov.views.saturating_add(1))).max(1);
        if let Err(e) = c.copy_into(&mut w, &mut done, step, &partial) {
            let _ = std::fs::remove_file(&w.partial);
            return Err(e);
        }
        drop(file);
        std::fs::rename(&w.partial, &partial).map_err(|e| Error::io(&partial, e))?;
        w.partial = partial;
        w.out = out.to_owned();
        Ok((
            w,
            ResumeState {
                rows: c.rows,
                skipped: c.skipped.len(),
                done,
            },
        ))
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one batch and the files it skipped, then commits and flushes.
    /// For a file without views; see [`FeatureWriter::append_views`].
    ///
    /// # Shapes
    /// `features`: [n, dim], `labels`: [n], `paths`: [n]
    pub fn append(
        &mut self,
        features: ArrayView2<f32>,
        labels: &[i64],
        paths: &[String],
        skipped: &[(String, String)],
    ) -> Result<()> {
        self.append_views(features, None, labels, paths, skipped)
    }

    /// [`FeatureWriter::append`] with the augmented views of the rows, which
    /// a file created with `views` = K needs.
    ///
    /// # Shapes
    /// `features`: [n, dim], `views`: [n, K, dim], `labels`: [n], `paths`: [n]
    pub fn append_views(
        &mut self,
        features: ArrayView2<f32>,
        views: Option<ArrayView3<f32>>,
        labels: &[i64],
        paths: &[String],
        skipped: &[(String, String)],
    ) -> Result<()> {
        let n = features.nrows();
        assert_eq!(features.ncols(), self.dim, "feature dimension");
        let k = self.views.as_ref().map_or(0, |(_, k)| *k);
        assert_eq!(
            views.map(|v| v.dim()),
            (k > 0).then_some((n, k, self.dim)),
            "views [n, K, dim] exactly when the file has them"
        );
        assert_eq!(labels.len(), n);
        assert_eq!(paths.len(), n);
        let text: usize = paths.iter().map(String::len).sum::<usize>()
            + skipped
                .iter()
                .map(|(p, r)| p.len() + r.len())
                .sum::<usize>();
        self.ensure_space(n * ((1 + k) * self.dim * 4 + 8) + text)?;
        let err = h5(&self.partial);
        let (a, b) = (self.rows, self.rows + n);
        if n > 0 {
            self.data.resize((b, self.dim)).map_err(&err)?;
            self.data
                .write_slice(features, s![a..b, ..])
                .map_err(&err)?;
            if let (Some((ds, k)), Some(v)) = (&self.views, views) {
                ds.resize((b, *k, self.dim)).map_err(&err)?;
                ds.write_slice(v, s![a..b, .., ..]).map_err(&err)?;
            }
            self.label.resize(b).map_err(&err)?;
            self.label.write_slice(labels, a..b).map_err(&err)?;
            let p: Vec<VarLenUnicode> = paths.iter().map(|p| vlen(p)).collect();
            self.path.resize(b).map_err(&err)?;
            self.path.write_slice(&p, a..b).map_err(&err)?;
        }
        if !skipped.is_empty() {
            let (c, d) = (self.n_skipped, self.n_skipped + skipped.len());
            let sp: Vec<VarLenUnicode> = skipped.iter().map(|(p, _)| vlen(p)).collect();
            let sr: Vec<VarLenUnicode> = skipped.iter().map(|(_, r)| vlen(r)).collect();
            self.skipped_path.resize(d).map_err(&err)?;
            self.skipped_path.write_slice(&sp, c..d).map_err(&err)?;
            self.skipped_reason.resize(d).map_err(&err)?;
            self.skipped_reason.write_slice(&sr, c..d).map_err(&err)?;
            self.n_skipped = d;
        }
        // Two-phase commit. HDF5 writes its cached blocks in no fixed order, so
        // a single flush killed half-way (kill -9) could leave `rows_done`
        // counting rows whose paths never reached the file (the kill matrix
        // found exactly that). First the rows, then the counters that commit
        // them: a kill before the second flush leaves the old counters, and the
        // rows past them are dropped on --resume.
        self.file.flush().map_err(&err)?;
        self.rows = b;
        write_u64_attr(&self.file, "rows_done", b as u64).map_err(&err)?;
        write_u64_attr(&self.file, "skipped_done", self.n_skipped as u64).map_err(&err)?;
        self.file.flush().map_err(&err)?;
        Ok(())
    }

    /// Refuses to write a batch of about `bytes` bytes unless the disk has room
    /// for it, a new data chunk (≤ 1 MiB) and HDF5's metadata, with margin: a
    /// write that fails half-way inside HDF5 can leave the file's metadata and
    /// data disagreeing, so a full disk is detected before it happens, leaving
    /// every committed batch intact for `--resume`.
    fn ensure_space(&self, bytes: usize) -> Result<()> {
        const MARGIN: u64 = 2 << 20;
        let dir = match self.partial.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let Some(free) = free_bytes(dir) else {
            return Ok(()); // unknown: let the write tell
        };
        let need = 2 * bytes as u64 + MARGIN;
        if free < need {
            return Err(store_err(
                &self.partial,
                format!(
                    "the disk is full ({} KiB free in {}, the next batch needs about {} KiB); every batch written before is kept: free some space, then run the same command with --resume to continue",
                    free / 1024,
                    dir.display(),
                    need / 1024
                ),
            ));
        }
        Ok(())
    }

    /// Marks the file complete and moves it to its final name. A whole file
    /// records the list of the run that finished it (a resumed run's list may
    /// differ after the resume point, and the file is that list's).
    pub fn finish(self) -> Result<PathBuf> {
        let err = h5(&self.partial);
        if let Some(list) = &self.list {
            write_list(&self.file, list).map_err(&err)?;
        }
        write_u64_attr(&self.file, "complete", 1).map_err(&err)?;
        self.file.flush().map_err(&err)?;
        let FeatureWriter {
            file, partial, out, ..
        } = self;
        file.close().map_err(&err)?;
        std::fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
        Ok(out)
    }
}

/// Opens an interrupted run's partial file for writing, refusing anything but
/// a plain file there and saying why HDF5 cannot open it.
fn open_partial(partial: &Path) -> Result<File> {
    // HDF5 opens by name and would follow a link planted there.
    if let Ok(m) = std::fs::symlink_metadata(partial) {
        if !m.file_type().is_file() {
            return Err(Error::Planted {
                path: partial.to_owned(),
                what: crate::util::atomic::describe_kind(&m).into(),
                role: "interrupted extraction",
            });
        }
    }
    File::open_rw(partial).map_err(|e| {
        let text = e.to_string();
        let reason = if text.contains("unable to lock file") {
            format!("is open in another program ({text}); close it (an h5py session, another xfer) and run again")
        } else {
            format!("cannot be reopened ({text}); it was damaged by the interruption: delete it and run without --resume")
        };
        store_err(partial, reason)
    })
}

/// Refuses to continue a partial file started with other settings or other classes.
fn check_same_job(old: &Provenance, prov: &Provenance, partial: &Path) -> Result<()> {
    match job_difference(old, prov) {
        None => {}
        Some(("classes", ..)) => {}
        Some((what, a, b)) => {
            return Err(store_err(
                partial,
                format!("was started with {what} `{a}`, this run has `{b}`; rerun with the same settings or delete it"),
            ))
        }
    }
    if old.class_names != prov.class_names {
        let added: Vec<&String> = prov
            .class_names
            .iter()
            .filter(|c| !old.class_names.contains(c))
            .collect();
        let removed: Vec<&String> = old
            .class_names
            .iter()
            .filter(|c| !prov.class_names.contains(c))
            .collect();
        return Err(store_err(
            partial,
            format!(
                "was started with the classes {:?}, the dataset now has {:?} (added {added:?}, removed {removed:?}): its labels use the old numbering, so it cannot be continued. Restore the dataset as it was, or start again with --overwrite",
                old.class_names, prov.class_names
            ),
        ));
    }
    Ok(())
}

/// Refuses to continue a shard file as another shard, another list or a whole file.
fn check_same_list(file: &File, partial: &Path, list: Option<&ListInfo>) -> Result<()> {
    if let Some(list) = list {
        let old_list = read_list(file, partial)?;
        if let Some((kind, what)) = list_mismatch(old_list.as_ref(), list) {
            let next = match kind {
                Mismatch::List => "shards of different lists cannot be merged: restore the dataset as it was, or extract every shard again with --overwrite".to_string(),
                Mismatch::Shard => match old_list.as_ref().and_then(|l| l.shard) {
                    Some(s) => format!("pass --shard {s} to continue it, or --overwrite to start afresh"),
                    None => "run without --shard to continue it, or pass --overwrite to start afresh".to_string(),
                },
            };
            return Err(store_err(partial, format!("{what}; {next}")));
        }
    } else if read_list(file, partial)?.is_some_and(|l| l.shard.is_some()) {
        return Err(store_err(
            partial,
            "is a shard file; continue it with the same --shard (and list) it was started with",
        ));
    }
    Ok(())
}

/// A partial file's datasets, how many of their rows are committed, and the
/// files it recorded as skipped.
struct Committed {
    rows: usize,
    data: Dataset,
    label: Dataset,
    path: Dataset,
    views: Option<Dataset>,
    /// (path, reason) of each committed skipped file.
    skipped: Vec<(String, String)>,
}

impl Committed {
    /// Opens the datasets, checked for the run's shapes and for holding the
    /// rows committed, and reads the skipped files.
    fn open(file: &File, partial: &Path, dim: usize, n_views: usize) -> Result<Committed> {
        let err = h5(partial);
        let rows = read_u64_attr(file, "rows_done").unwrap_or(0) as usize;
        let n_skipped = read_u64_attr(file, "skipped_done").unwrap_or(0) as usize;
        let data = file.dataset("data").map_err(&err)?;
        if data.shape().get(1) != Some(&dim) {
            return Err(store_err(
                partial,
                format!("has feature dimension {:?}, expected {dim}", data.shape()),
            ));
        }
        let label = file.dataset("label").map_err(&err)?;
        let path = file.dataset("path").map_err(&err)?;
        let skipped_path = file.dataset("skipped_path").map_err(&err)?;
        let skipped_reason = file.dataset("skipped_reason").map_err(&err)?;
        let views = match n_views {
            0 => None,
            k => {
                let ds = file.dataset("views").map_err(|_| {
                    store_err(partial, "records augmented views but has no `views` dataset; it is damaged: delete it and run without --resume")
                })?;
                if ds.shape().get(1..) != Some(&[k, dim][..]) {
                    return Err(store_err(
                        partial,
                        format!("has `views` of shape {:?}, expected [_, {k}, {dim}]; delete it and run without --resume", ds.shape()),
                    ));
                }
                Some(ds)
            }
        };
        let short = [
            ("data", data.shape()[0], rows),
            ("label", label.size(), rows),
            ("path", path.size(), rows),
            ("skipped_path", skipped_path.size(), n_skipped),
            ("skipped_reason", skipped_reason.size(), n_skipped),
        ];
        if let Some((name, has, want)) = short.into_iter().find(|(_, has, want)| has < want) {
            return Err(store_err(
                partial,
                format!("commits {want} rows of `{name}` but holds {has}: it is damaged; delete it and run without --resume"),
            ));
        }
        let p: Vec<VarLenUnicode> = skipped_path
            .read_slice_1d(0..n_skipped)
            .map_err(&err)?
            .to_vec();
        let r: Vec<VarLenUnicode> = skipped_reason
            .read_slice_1d(0..n_skipped)
            .map_err(&err)?
            .to_vec();
        let skipped = p
            .iter()
            .zip(&r)
            .map(|(p, r)| (p.as_str().to_owned(), r.as_str().to_owned()))
            .collect();
        Ok(Committed {
            rows,
            data,
            label,
            path,
            views,
            skipped,
        })
    }

    /// Copies the committed rows into `w`, `step` rows at a time, the skipped
    /// files with the first block; notes each path and its label in `done`.
    fn copy_into(
        &self,
        w: &mut FeatureWriter,
        done: &mut HashMap<String, Option<i64>>,
        step: usize,
        partial: &Path,
    ) -> Result<()> {
        let err = h5(partial);
        let rows = self.rows;
        let mut a = 0;
        loop {
            let b = (a + step).min(rows);
            let features: Array2<f32> = self.data.read_slice_2d(s![a..b, ..]).map_err(&err)?;
            let labels: Array1<i64> = self.label.read_slice_1d(a..b).map_err(&err)?;
            let paths: Vec<String> = self
                .path
                .read_slice_1d::<VarLenUnicode, _>(a..b)
                .map_err(&err)?
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect();
            let block_views: Option<Array3<f32>> = match &self.views {
                Some(ds) => Some(ds.read_slice(s![a..b, .., ..]).map_err(&err)?),
                None => None,
            };
            let first: &[(String, String)] = if a == 0 { &self.skipped } else { &[] };
            w.append_views(
                features.view(),
                block_views.as_ref().map(|v| v.view()),
                labels.as_slice().expect("a fresh array is contiguous"),
                &paths,
                first,
            )?;
            done.extend(paths.into_iter().zip(labels.iter().map(|&l| Some(l))));
            if b == rows {
                return Ok(());
            }
            a = b;
        }
    }
}

/// Bytes available to this user on the filesystem holding `dir` (`statvfs`).
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the struct we pass; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn read_provenance(file: &File) -> Option<Provenance> {
    Some(Provenance {
        backbone: read_str_attr(file, "backbone")?,
        model_sha256: read_str_attr(file, "model_sha256")?,
        preprocess: read_str_attr(file, "preprocess")?,
        class_names: serde_json::from_str(&read_str_attr(file, "class_names")?).ok()?,
        ort_version: read_str_attr(file, "ort_version").unwrap_or_default(),
        execution_provider: read_str_attr(file, "execution_provider").unwrap_or_default(),
        xfer_version: read_str_attr(file, "xfer_version").unwrap_or_default(),
        dataset_root: read_str_attr(file, "dataset_root").unwrap_or_default(),
        layout: read_str_attr(file, "layout").unwrap_or_default(),
        decode: read_str_attr(file, "decode").unwrap_or_default(),
        pooling: read_str_attr(file, "pooling").unwrap_or_default(),
        views: read_u64_attr(file, "views").unwrap_or(0) as usize,
        augment: read_str_attr(file, "augment").unwrap_or_default(),
        precision: read_str_attr(file, "precision").unwrap_or_default(),
    })
}

/// The `views` dataset of a file whose provenance records `k` > 0 views,
/// checked against `rows` × `dim`; `None` when `k` is 0.
fn views_dataset(
    file: &File,
    path: &Path,
    k: usize,
    rows: usize,
    dim: usize,
) -> Result<Option<Dataset>> {
    if k == 0 {
        return Ok(None);
    }
    let ds = file.dataset("views").map_err(|_| {
        store_err(path, format!("records {k} augmented views but has no `views` dataset: it is damaged; extract it again"))
    })?;
    let claimed = (rows as u64)
        .checked_mul(k as u64)
        .and_then(|v| v.checked_mul(dim as u64))
        .and_then(|v| v.checked_mul(4));
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if claimed.is_none_or(|b| b > file_len.saturating_mul(64).saturating_add(64 << 20)) {
        return Err(store_err(
            path,
            format!("claims {rows} × {k} × {dim} view values, far more than the file's {file_len} bytes can hold: it is damaged; extract it again"),
        ));
    }
    if ds.shape() != [rows, k, dim] {
        return Err(store_err(
            path,
            format!(
                "has `views` of shape {:?}, expected [{rows}, {k}, {dim}] (rows × views × features): it is damaged, or was continued by an xfer that does not know views; extract it again",
                ds.shape()
            ),
        ));
    }
    Ok(Some(ds))
}

/// A feature file read back in full.
#[derive(Debug, Clone)]
pub struct FeatureFile {
    pub file: PathBuf,
    /// [n_samples, n_features]
    pub data: Array2<f32>,
    /// [n_samples]; −1 where unknown.
    pub labels: Array1<i64>,
    /// Relative image paths; `None` for files in the tutorial's layout.
    pub paths: Option<Vec<String>>,
    /// `None` for files in the tutorial's layout.
    pub provenance: Option<Provenance>,
    pub skipped: Vec<(String, String)>,
    /// [n_samples, K, n_features]: the augmented views (view 0 = `data`), when
    /// the file has them.
    pub views: Option<Array3<f32>>,
}

/// Reads an xfer feature file, or a tutorial one (`data` and `label` only).
/// An xfer file that is not marked complete is refused.
pub fn read(path: &Path) -> Result<FeatureFile> {
    let err = h5(path);
    let file = open_complete(path)?;
    if let Some(list) = read_list(&file, path)? {
        if let Some(s) = list.shard {
            return Err(store_err(
                path,
                format!(
                    "is {} of a sharded extraction, not a whole dataset; merge all {} shards into one file first: xfer merge --out FILE.h5 SHARD_FILES…",
                    list.describe_shard(),
                    s.count
                ),
            ));
        }
    }
    let data_ds = file
        .dataset("data")
        .map_err(|_| store_err(path, "has no `data` dataset; is it a feature file?"))?;
    let shape = data_ds.shape();
    check_shape(path, &shape)?;
    let data: Array2<f32> = data_ds.read_2d::<f32>().map_err(&err)?;
    let labels: Array1<i64> = match file.dataset("label") {
        Ok(ds) => ds.read_1d::<i64>().map_err(&err)?,
        Err(_) => Array1::from_elem(data.nrows(), -1),
    };
    if labels.len() != data.nrows() {
        return Err(store_err(
            path,
            format!(
                "`label` has {} rows but `data` has {}",
                labels.len(),
                data.nrows()
            ),
        ));
    }
    let read_strings = |name: &str| -> Result<Option<Vec<String>>> {
        match file.dataset(name) {
            Ok(ds) => {
                let v: Vec<VarLenUnicode> = ds.read_raw().map_err(&err)?;
                Ok(Some(v.iter().map(|s| s.as_str().to_owned()).collect()))
            }
            Err(_) => Ok(None),
        }
    };
    let paths = read_strings("path")?;
    if let Some(p) = &paths {
        if p.len() != data.nrows() {
            return Err(store_err(
                path,
                format!(
                    "`path` has {} rows but `data` has {}",
                    p.len(),
                    data.nrows()
                ),
            ));
        }
    }
    let skipped = match (
        read_strings("skipped_path")?,
        read_strings("skipped_reason")?,
    ) {
        (Some(p), Some(r)) if p.len() == r.len() => p.into_iter().zip(r).collect(),
        (Some(p), Some(r)) => {
            return Err(store_err(
                path,
                format!(
                    "lists {} skipped files but {} reasons: the file is damaged; extract it again",
                    p.len(),
                    r.len()
                ),
            ))
        }
        _ => Vec::new(),
    };
    let provenance = read_provenance(&file);
    let k = provenance.as_ref().map_or(0, |p| p.views);
    let views = match views_dataset(&file, path, k, data.nrows(), data.ncols())? {
        Some(ds) => Some(ds.read::<f32, ndarray::Ix3>().map_err(&err)?),
        None => None,
    };
    Ok(FeatureFile {
        file: path.to_owned(),
        data,
        labels,
        paths,
        provenance,
        skipped,
        views,
    })
}

/// Opens a feature file that exists, is of a version this xfer reads, and is
/// complete (files without the attribute, like the tutorial's, count as complete).
fn open_complete(path: &Path) -> Result<File> {
    if !path.exists() {
        let partial = partial_path(path);
        let hint = if partial.exists() {
            format!(
                "; {} is an interrupted extraction: finish it with `xfer extract --resume`",
                partial.display()
            )
        } else {
            String::new()
        };
        return Err(store_err(path, format!("does not exist{hint}")));
    }
    // A folder, another kind of file, a truncated copy: one line, not HDF5's stack.
    crate::util::h5file::check(path)?;
    let file = File::open(path).map_err(h5(path))?;
    if let Some(v) = read_u64_attr(&file, "format_version") {
        if v > FORMAT_VERSION {
            return Err(store_err(
                path,
                format!("is feature-file format {v}; this xfer reads up to {FORMAT_VERSION}: upgrade xfer"),
            ));
        }
    }
    if file.attr("complete").is_ok() {
        // Present but not the number 1 (or not a number at all): not complete.
        if read_u64_attr(&file, "complete") != Some(1) {
            let how = match read_list(&file, path).ok().flatten().and_then(|l| l.shard) {
                Some(s) => format!(
                    "an interrupted shard {s}); finish it with `xfer extract --shard {s} --resume`"
                ),
                None => "interrupted extraction); finish it with `xfer extract --resume`".into(),
            };
            return Err(store_err(path, format!("is not complete ({how}")));
        }
    }
    Ok(file)
}

/// Refuses a `data` shape that is not [rows, features] or that claims far
/// more values than the file can hold.
fn check_shape(path: &Path, shape: &[usize]) -> Result<()> {
    if shape.len() != 2 {
        return Err(store_err(
            path,
            format!("`data` has shape {shape:?}, expected [n_samples, n_features]"),
        ));
    }
    // The header's shape decides the allocation: a damaged or hostile file of a
    // few KB can claim terabytes. xfer writes every value, and other tools'
    // compression rarely beats 64×, so a claim far beyond the file is refused.
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let claimed = (shape[0] as u64)
        .checked_mul(shape[1] as u64)
        .and_then(|v| v.checked_mul(4));
    match claimed {
        Some(bytes) if bytes <= file_len.saturating_mul(64).saturating_add(64 << 20) => {}
        _ => {
            return Err(store_err(
                path,
                format!(
                    "`data` claims {} × {} values, far more than the file's {} bytes can hold: the file is damaged or not a feature file; extract it again",
                    shape[0], shape[1], file_len
                ),
            ))
        }
    }
    Ok(())
}

/// A complete xfer feature file read piece by piece, so that memory stays
/// flat however large it is (merging shards): its header when opened, then
/// blocks of rows and the skipped files on demand.
pub struct FileReader {
    pub path: PathBuf,
    pub provenance: Provenance,
    /// `None` for files written before the list was recorded.
    pub list: Option<ListInfo>,
    /// Rows (images with features).
    pub rows: usize,
    /// Feature width.
    pub dim: usize,
    /// Files recorded as skipped.
    pub skipped: usize,
    data: Dataset,
    label: Dataset,
    paths: Dataset,
    skipped_path: Dataset,
    skipped_reason: Dataset,
    views: Option<Dataset>,
}

/// Rows of a feature file: features [n, dim], labels [n], paths [n].
pub type RowBlock = (Array2<f32>, Vec<i64>, Vec<String>);

impl FileReader {
    /// Opens a complete xfer feature file (with provenance and paths) and
    /// checks that its datasets agree with its counters.
    pub fn open(path: &Path) -> Result<FileReader> {
        let file = open_complete(path)?;
        let provenance = read_provenance(&file).ok_or_else(|| {
            store_err(
                path,
                "records no provenance (a file in the tutorial's layout?); only xfer's own feature files can be merged",
            )
        })?;
        let list = read_list(&file, path)?;
        let ds = |name: &str| {
            file.dataset(name).map_err(|_| {
                store_err(path, format!("has no `{name}` dataset: it is damaged or not an xfer feature file; extract it again"))
            })
        };
        let (data, label, paths) = (ds("data")?, ds("label")?, ds("path")?);
        let (skipped_path, skipped_reason) = (ds("skipped_path")?, ds("skipped_reason")?);
        let shape = data.shape();
        check_shape(path, &shape)?;
        let (rows, dim) = (shape[0], shape[1]);
        let skipped = skipped_path.size();
        let counts = [
            ("rows_done", read_u64_attr(&file, "rows_done"), rows),
            ("`label` rows", Some(label.size() as u64), rows),
            ("`path` rows", Some(paths.size() as u64), rows),
            (
                "skipped_done",
                read_u64_attr(&file, "skipped_done"),
                skipped,
            ),
            (
                "skipped reasons",
                Some(skipped_reason.size() as u64),
                skipped,
            ),
        ];
        for (what, got, want) in counts {
            if got != Some(want as u64) {
                return Err(store_err(
                    path,
                    format!(
                        "{what} is {} but the file holds {want}: it is damaged; extract it again",
                        got.map_or("missing".to_string(), |g| g.to_string())
                    ),
                ));
            }
        }
        let views = views_dataset(&file, path, provenance.views, rows, dim)?;
        Ok(FileReader {
            path: path.to_owned(),
            provenance,
            list,
            rows,
            dim,
            skipped,
            data,
            label,
            paths,
            skipped_path,
            skipped_reason,
            views,
        })
    }

    /// The augmented views of rows `range` ([range.len(), K, dim]), when the
    /// file has them.
    pub fn views_block(&self, range: std::ops::Range<usize>) -> Result<Option<Array3<f32>>> {
        match &self.views {
            Some(ds) => Ok(Some(
                ds.read_slice(s![range, .., ..]).map_err(h5(&self.path))?,
            )),
            None => Ok(None),
        }
    }

    /// Rows `range` of the file.
    ///
    /// # Shapes
    /// → features [range.len(), dim], labels and paths [range.len()]
    pub fn block(&self, range: std::ops::Range<usize>) -> Result<RowBlock> {
        let err = h5(&self.path);
        let features: Array2<f32> = self
            .data
            .read_slice_2d(s![range.clone(), ..])
            .map_err(&err)?;
        let labels: Array1<i64> = self.label.read_slice_1d(range.clone()).map_err(&err)?;
        let paths: Array1<VarLenUnicode> = self.paths.read_slice_1d(range).map_err(&err)?;
        Ok((
            features,
            labels.to_vec(),
            paths.iter().map(|p| p.as_str().to_owned()).collect(),
        ))
    }

    /// The image paths of all rows, in row order.
    pub fn paths(&self) -> Result<Vec<String>> {
        let p: Vec<VarLenUnicode> = self.paths.read_raw().map_err(h5(&self.path))?;
        Ok(p.iter().map(|p| p.as_str().to_owned()).collect())
    }

    /// The skipped files with their reasons, in the order recorded.
    pub fn skipped_files(&self) -> Result<Vec<(String, String)>> {
        let err = h5(&self.path);
        let p: Vec<VarLenUnicode> = self.skipped_path.read_raw().map_err(&err)?;
        let r: Vec<VarLenUnicode> = self.skipped_reason.read_raw().map_err(&err)?;
        Ok(p.iter()
            .zip(&r)
            .map(|(p, r)| (p.as_str().to_owned(), r.as_str().to_owned()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn prov() -> Provenance {
        Provenance {
            backbone: "tiny".into(),
            model_sha256: "abc".into(),
            preprocess: "{}".into(),
            class_names: vec!["cat".into(), "dog".into()],
            ort_version: "1.31.1".into(),
            execution_provider: "CPUExecutionProvider".into(),
            xfer_version: "0".into(),
            dataset_root: "/data".into(),
            layout: "image_folder".into(),
            decode: "jpeg_scaled".into(),
            pooling: String::new(),
            views: 0,
            augment: String::new(),
            precision: String::new(),
        }
    }

    #[test]
    fn write_finish_read_roundtrip() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("f.h5");
        let mut w = FeatureWriter::create(&out, 2, &prov()).unwrap();
        w.append(array![[1.0, 2.0]].view(), &[0], &["cat/a.jpg".into()], &[])
            .unwrap();
        w.append(
            array![[3.0, 4.0], [5.0, 6.0]].view(),
            &[1, 1],
            &["dog/b.jpg".into(), "dog/ü.jpg".into()],
            &[("dog/bad.jpg".into(), "empty file".into())],
        )
        .unwrap();
        assert!(!out.exists(), "only the partial file exists before finish");
        assert!(
            read(&partial_path(&out)).is_err(),
            "a partial file is not complete"
        );
        w.finish().unwrap();
        let f = read(&out).unwrap();
        assert_eq!(f.data, array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
        assert_eq!(f.labels, array![0, 1, 1]);
        assert_eq!(f.paths.unwrap(), ["cat/a.jpg", "dog/b.jpg", "dog/ü.jpg"]);
        assert_eq!(
            f.skipped,
            [("dog/bad.jpg".to_string(), "empty file".to_string())]
        );
        assert_eq!(f.provenance.unwrap(), prov());
        assert!(!partial_path(&out).exists());
        let chunk = File::open(&out).unwrap().dataset("data").unwrap().chunk();
        assert_eq!(chunk, Some(vec![ROW_CHUNK, 2]), "data is chunked by rows");
    }

    #[test]
    fn shard_files_are_version_3_checked_on_resume_and_not_read_as_datasets() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("s.h5");
        let list = ListInfo {
            sha256: "ab".repeat(32),
            len: 10,
            shard: Some(Shard { index: 1, count: 3 }),
        };
        drop(FeatureWriter::create_for(&out, 2, &prov(), Some(&list)).unwrap());
        let resume_err = |l: Option<&ListInfo>| {
            FeatureWriter::resume_for(&out, 2, &prov(), l)
                .err()
                .unwrap()
                .to_string()
        };
        let other = ListInfo {
            shard: Some(Shard { index: 2, count: 3 }),
            ..list.clone()
        };
        let e = resume_err(Some(&other));
        assert!(
            e.contains("holds shard 1/3 (files 3..6 of 10)") && e.contains("pass --shard 1/3"),
            "{e}"
        );
        let stale = ListInfo {
            sha256: "cd".repeat(32),
            len: 11,
            ..list.clone()
        };
        let e = resume_err(Some(&stale));
        assert!(
            e.contains("another file list (10 files, sha256 abababababab…)"),
            "{e}"
        );
        let whole = ListInfo {
            shard: None,
            ..list.clone()
        };
        assert!(resume_err(Some(&whole)).contains("a whole extraction (no --shard)"));
        assert!(resume_err(None).contains("is a shard file"));
        let (w, _) = FeatureWriter::resume_for(&out, 2, &prov(), Some(&list)).unwrap();
        w.finish().unwrap();
        let e = read(&out).unwrap_err().to_string();
        assert!(e.contains("shard 1/3") && e.contains("xfer merge"), "{e}");
        let r = FileReader::open(&out).unwrap();
        assert_eq!(r.list, Some(list));
        assert_eq!(
            read_u64_attr(&File::open(&out).unwrap(), "format_version"),
            Some(3)
        );
        // A whole file stays version 2, and records the list of the run that finished it.
        let whole_out = t.path().join("w.h5");
        drop(FeatureWriter::create_for(&whole_out, 2, &prov(), Some(&whole)).unwrap());
        let today = ListInfo {
            shard: None,
            ..stale
        };
        let (w, _) = FeatureWriter::resume_for(&whole_out, 2, &prov(), Some(&today)).unwrap();
        w.finish().unwrap();
        let f = File::open(&whole_out).unwrap();
        assert_eq!(read_u64_attr(&f, "format_version"), Some(2));
        assert_eq!(read_list(&f, &whole_out).unwrap(), Some(today));
    }

    #[test]
    fn resume_drops_uncommitted_rows_and_checks_provenance() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("f.h5");
        let mut w = FeatureWriter::create(&out, 2, &prov()).unwrap();
        w.append(
            array![[1.0, 2.0]].view(),
            &[0],
            &["a".into()],
            &[("x".into(), "bad".into())],
        )
        .unwrap();
        drop(w); // interrupted
        let mut other = prov();
        other.model_sha256 = "def".into();
        let e = FeatureWriter::resume(&out, 2, &other)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("model sha256"), "{e}");
        let (mut w, state) = FeatureWriter::resume(&out, 2, &prov()).unwrap();
        assert_eq!(state.rows, 1);
        assert_eq!(
            state.done,
            HashMap::from([("a".to_string(), Some(0)), ("x".to_string(), None)])
        );
        w.append(array![[3.0, 4.0]].view(), &[1], &["b".into()], &[])
            .unwrap();
        w.finish().unwrap();
        let f = read(&out).unwrap();
        assert_eq!(f.data.nrows(), 2);
        assert_eq!(f.skipped.len(), 1);
    }
}
