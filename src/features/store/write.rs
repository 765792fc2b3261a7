//! Writing feature files: create, append batch by batch, resume an
//! interrupted `.partial` of the same job, finish by renaming.

use super::*;

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
pub(crate) struct ResumeState {
    /// Files recorded as skipped by the interrupted run.
    pub(crate) skipped: usize,
    /// Paths already written, with their label, or already recorded as
    /// skipped (label `None`).
    pub(crate) done: HashMap<String, Option<i64>>,
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
        if !prov.inference_precision.is_empty() {
            write_str_attr(&file, "inference_precision", &prov.inference_precision)
                .map_err(&err)?;
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
    #[cfg(test)]
    pub(crate) fn resume(
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
    pub(crate) fn resume_for(
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
                skipped: c.skipped.len(),
                done,
            },
        ))
    }

    pub(crate) fn rows(&self) -> usize {
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
            return Err(refused(
                &self.partial,
                format!(
                    "the disk is full ({} KiB free in {}, the next batch needs about {} KiB); every batch written before is kept",
                    free / 1024,
                    dir.display(),
                    need / 1024
                ),
                Next::FreeSpaceThenResume,
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
        if text.contains("unable to lock file") {
            store_err(partial, format!("is open in another program ({text}); close it (an h5py session, another xfer) and run again"))
        } else {
            refused(
                partial,
                format!("cannot be reopened ({text}); it was damaged by the interruption"),
                Next::DeleteThenStartAfresh,
            )
        }
    })
}

/// Refuses to continue a partial file started with other settings or other classes.
fn check_same_job(old: &Provenance, prov: &Provenance, partial: &Path) -> Result<()> {
    use crate::models::backbone::precision_class;
    if precision_class(&old.inference_precision) != precision_class(&prov.inference_precision) {
        // Rows computed in bf16 and in f32 differ: one file holds one precision.
        return Err(store_err(
            partial,
            format!(
                "was started computing in {}, this run computes in {}; rerun on the same device and precision or delete it",
                super::precision_name(&old.inference_precision),
                super::precision_name(&prov.inference_precision)
            ),
        ));
    }
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
        return Err(refused(
            partial,
            format!(
                "was started with the classes {:?}, the dataset now has {:?} (added {added:?}, removed {removed:?}): its labels use the old numbering, so it cannot be continued",
                old.class_names, prov.class_names
            ),
            Next::RestoreDatasetOrStartAgain,
        ));
    }
    Ok(())
}

/// Refuses to continue a shard file as another shard, another list or a whole file.
fn check_same_list(file: &File, partial: &Path, list: Option<&ListInfo>) -> Result<()> {
    if let Some(list) = list {
        let old_list = read_list(file, partial)?;
        if let Some((kind, what)) = list_mismatch(old_list.as_ref(), list) {
            return Err(match kind {
                Mismatch::List => refused(
                    partial,
                    format!("{what}; shards of different lists cannot be merged"),
                    Next::RestoreDatasetOrExtractEveryShard,
                ),
                Mismatch::Shard => refused(
                    partial,
                    what,
                    Next::ContinueAs(old_list.as_ref().and_then(|l| l.shard)),
                ),
            });
        }
    } else if read_list(file, partial)?.is_some_and(|l| l.shard.is_some()) {
        return Err(refused(
            partial,
            "is a shard file, this run is not",
            Next::ContinueAsStarted,
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
                    refused(
                        partial,
                        "records augmented views but has no `views` dataset; it is damaged",
                        Next::DeleteThenStartAfresh,
                    )
                })?;
                if ds.shape().get(1..) != Some(&[k, dim][..]) {
                    return Err(refused(
                        partial,
                        format!(
                            "has `views` of shape {:?}, expected [_, {k}, {dim}]",
                            ds.shape()
                        ),
                        Next::DeleteThenStartAfresh,
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
            return Err(refused(
                partial,
                format!("commits {want} rows of `{name}` but holds {has}: it is damaged"),
                Next::DeleteThenStartAfresh,
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
