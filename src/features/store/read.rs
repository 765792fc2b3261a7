//! Reading feature files: whole ([`read`]) or block by block
//! ([`FileReader`]), a complete file only.

use super::*;

/// A feature file read back in full.
#[derive(Debug, Clone)]
pub struct FeatureFile {
    pub(crate) file: PathBuf,
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
            return Err(refused(
                path,
                format!(
                    "is {} of a sharded extraction, not a whole dataset",
                    list.describe_shard(),
                ),
                Next::MergeShardsFirst { count: s.count },
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
        if partial.exists() {
            return Err(refused(
                path,
                format!(
                    "does not exist; {} is an interrupted extraction",
                    partial.display()
                ),
                Next::FinishInterrupted(None),
            ));
        }
        return Err(store_err(path, "does not exist"));
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
            let shard = read_list(&file, path).ok().flatten().and_then(|l| l.shard);
            let how = match shard {
                Some(s) => format!("an interrupted shard {s}"),
                None => "interrupted extraction".into(),
            };
            return Err(refused(
                path,
                format!("is not complete ({how})"),
                Next::FinishInterrupted(shard),
            ));
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
    pub(crate) path: PathBuf,
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
pub(crate) type RowBlock = (Array2<f32>, Vec<i64>, Vec<String>);

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
    pub(crate) fn views_block(&self, range: std::ops::Range<usize>) -> Result<Option<Array3<f32>>> {
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
    pub(crate) fn paths(&self) -> Result<Vec<String>> {
        let p: Vec<VarLenUnicode> = self.paths.read_raw().map_err(h5(&self.path))?;
        Ok(p.iter().map(|p| p.as_str().to_owned()).collect())
    }

    /// The skipped files with their reasons, in the order recorded.
    pub(crate) fn skipped_files(&self) -> Result<Vec<(String, String)>> {
        let err = h5(&self.path);
        let p: Vec<VarLenUnicode> = self.skipped_path.read_raw().map_err(&err)?;
        let r: Vec<VarLenUnicode> = self.skipped_reason.read_raw().map_err(&err)?;
        Ok(p.iter()
            .zip(&r)
            .map(|(p, r)| (p.as_str().to_owned(), r.as_str().to_owned()))
            .collect())
    }
}
