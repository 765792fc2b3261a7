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

use crate::error::{Error, Next, Result};
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
    /// The precision the execution provider computed in when it is not the
    /// model's own: `bf16` or `f32` (OpenVINO, `--precision`), `fp16`
    /// (TensorRT, `--trt-fp16`); empty for ONNX Runtime's own kernels. The
    /// attribute `inference_precision`, written only when set.
    #[serde(default)]
    pub inference_precision: String,
}

/// The newest feature-file format this xfer reads and writes. 1: files without
/// the attribute (before the decode mode was recorded); 2: adds `decode` and
/// `format_version` (and, later, `list_sha256` and `list_len`, which old
/// readers ignore); 3: shard files of a sharded extraction (the `shard_*`
/// attributes): an older reader would take one for a whole dataset, so they
/// carry a version it refuses. Whole files are still written as
/// [`WHOLE_FORMAT_VERSION`]. Readers take every version up to theirs; tutorial
/// files (`data` and `label` only) are read as well.
pub(crate) const FORMAT_VERSION: u64 = 3;

/// The version of whole (not shard) feature files: nothing in them is new to a
/// version-2 reader.
pub(crate) const WHOLE_FORMAT_VERSION: u64 = 2;

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
pub(crate) fn job_difference(
    a: &Provenance,
    b: &Provenance,
) -> Option<(&'static str, String, String)> {
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

/// A [`Provenance::inference_precision`] for messages: `bf16`, `f32`, `fp16`,
/// and for an empty one what it means.
pub(crate) fn precision_name(p: &str) -> &str {
    if p.is_empty() {
        "the model's precision (ONNX Runtime's kernels)"
    } else {
        p
    }
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
            return refused(
                &path,
                "the disk is full (No space left on device); every batch written before is kept",
                Next::FreeSpaceThenResume,
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

/// A feature file that cannot be used as asked, and what would get past it.
fn refused(path: &Path, reason: impl Into<String>, next: Next) -> Error {
    Error::FeatureFile {
        path: path.to_owned(),
        reason: reason.into(),
        next,
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
        refused(
            path,
            format!("has damaged shard attributes ({what})"),
            Next::ExtractShardAgain,
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
pub(crate) enum Mismatch {
    /// Another shard (or a shard against a whole extraction).
    Shard,
    /// Another file list: the dataset changed.
    List,
}

/// Whether a file that records `old` can stand for (or be continued by) a run
/// over `new`, and if not, why ("holds shard 1/3 …, this run is shard 2/3 …").
/// Shards must match exactly; whole runs are not compared here (a whole run
/// may continue a file whose list changed after its resume point).
pub(crate) fn list_mismatch(old: Option<&ListInfo>, new: &ListInfo) -> Option<(Mismatch, String)> {
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
            None => "a whole extraction (not a shard)".into(),
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
        inference_precision: read_str_attr(file, "inference_precision").unwrap_or_default(),
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

mod read;
mod write;

pub use read::{read, FeatureFile, FileReader};
pub use write::FeatureWriter;

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
            inference_precision: String::new(),
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
            e.contains("holds shard 1/3 (files 3..6 of 10)") && !e.contains("--"),
            "{e}"
        );
        let shard = Some(Shard { index: 1, count: 3 });
        assert!(matches!(
            FeatureWriter::resume_for(&out, 2, &prov(), Some(&other)),
            Err(Error::FeatureFile { next: Next::ContinueAs(s), .. }) if s == shard
        ));
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
        assert!(resume_err(Some(&whole)).contains("a whole extraction (not a shard)"));
        assert!(resume_err(None).contains("is a shard file"));
        let (w, _) = FeatureWriter::resume_for(&out, 2, &prov(), Some(&list)).unwrap();
        w.finish().unwrap();
        let e = read(&out).unwrap_err().to_string();
        assert!(
            e.contains("shard 1/3") && e.contains("not a whole dataset"),
            "{e}"
        );
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
        assert_eq!(w.rows(), 1);
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
