//! Extraction: a dataset's images through the [`pipeline`] into an HDF5
//! feature file ([`store::FeatureWriter`] as the sink), batch by batch, so
//! memory stays flat however large the folder. Files that fail to decode are
//! skipped and recorded with their reason.
//!
//! A resumed run continues `<out>.partial` only when it is the same job: the
//! writer checks model, preprocessing, decoding, layout and classes, and
//! [`resume_point`] checks that the files already done are exactly the first
//! files of today's sorted list; anything else is refused, naming what changed.
//!
//! A sharded run ([`ExtractConfig::shard`]) extracts only its [`shard`] of the
//! sorted list into a file of its own, which records the shard and the whole
//! list's hash; it is resumed like a whole run, but only against the very
//! same list, and a rerun of a completed shard does nothing
//! ([`completed_shard`]). `merge` joins the shards.
//!
//! [`pipeline`]: crate::features::pipeline
//! [`store::FeatureWriter`]: crate::features::store::FeatureWriter
//! [`shard`]: crate::features::shard

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Next, Result};
use crate::features::pipeline::{self, Batch, PipelineConfig, Sink, Stage};
use crate::features::shard::{self, Shard};
use crate::features::store::{self, FeatureWriter, FileReader, ListInfo, Mismatch, Provenance};
use crate::images::augment::ViewPlan;
use crate::images::dataset::{Dataset, Item};
use crate::images::preprocess::Recipe;
use crate::models::backbone::Backbone;
use crate::models::zoo::Manifest;

#[derive(Debug, Clone)]
pub struct ExtractConfig {
    pub pipeline: PipelineConfig,
    pub recipe: Recipe,
    /// Continue `<out>.partial` instead of starting afresh.
    pub resume: bool,
    /// Extract only this shard of the sorted list (into a shard file).
    pub shard: Option<Shard>,
    /// Augmented views per image (`--views K`): `data` keeps the centre view,
    /// `views` [N, K, D] holds all of them.
    pub views: Option<ViewPlan>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Images in the dataset (in the shard, for a sharded run).
    pub total: usize,
    /// Rows already in the file when a resumed run started.
    pub resumed_rows: usize,
    /// Rows written by this run.
    pub written: usize,
    /// Files skipped by this run, with reasons.
    pub skipped: Vec<(String, String)>,
    /// Files skipped by the interrupted run this one resumed.
    pub skipped_before: usize,
    pub seconds: f64,
    /// The backbone's name (its manifest's).
    pub model: String,
    pub provider: String,
    /// [`Backbone::inference_precision`] of the run.
    pub inference_precision: String,
    /// Where the time went (decode, backbone, writing), from the pipeline.
    pub timings: pipeline::Timings,
}

impl Summary {
    pub fn images_per_second(&self) -> f64 {
        (self.written + self.skipped.len()) as f64 / self.seconds.max(1e-9)
    }
}

/// Progress over the whole dataset (a resumed run starts past the files already done).
pub(crate) use crate::features::pipeline::Progress;

/// A loaded backbone with the provenance its features will carry.
pub(crate) type LoadedBackbone = (Backbone, Provenance);

/// What a feature file of `ds` (canonical root `root`) made by `backbone`
/// under `cfg` records about where its rows came from.
pub(crate) fn provenance(
    ds: &Dataset,
    root: &Path,
    cfg: &ExtractConfig,
    runtime: &crate::models::runtime::Runtime,
    backbone: &Backbone,
) -> Provenance {
    Provenance {
        ort_version: runtime.version.clone(),
        execution_provider: backbone.provider.clone(),
        inference_precision: backbone.inference_precision.clone(),
        ..job_provenance(ds, root, cfg, &backbone.manifest)
    }
}

/// The part of [`provenance`] known before the model is loaded (what
/// [`store::job_difference`] compares); the ONNX Runtime version and the
/// execution provider are left empty.
pub(crate) fn job_provenance(
    ds: &Dataset,
    root: &Path,
    cfg: &ExtractConfig,
    manifest: &Manifest,
) -> Provenance {
    let layout = serde_json::to_value(ds.layout)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Provenance {
        backbone: manifest.name.clone(),
        model_sha256: manifest.sha256.clone(),
        preprocess: serde_json::to_string(&cfg.recipe).expect("a recipe is plain data"),
        class_names: ds.classes.clone(),
        ort_version: String::new(),
        execution_provider: String::new(),
        xfer_version: crate::VERSION.into(),
        dataset_root: root.display().to_string(),
        layout,
        decode: cfg.pipeline.decode.mode().to_owned(),
        pooling: manifest.output.pooling(),
        views: cfg.views.as_ref().map_or(0, |v| v.views),
        augment: cfg
            .views
            .as_ref()
            .map(ViewPlan::to_json)
            .unwrap_or_default(),
        precision: manifest
            .quantization
            .as_ref()
            .map(|q| q.precision.clone())
            .unwrap_or_default(),
        inference_precision: String::new(),
    }
}

/// The list a run over `ds` covers: the whole sorted list's hash and length,
/// and the shard, if any.
pub(crate) fn list_info(ds: &Dataset, shard: Option<Shard>) -> ListInfo {
    ListInfo {
        sha256: shard::list_sha256(&ds.items),
        len: ds.items.len() as u64,
        shard,
    }
}

/// The items of `ds` that a run over `list` extracts.
pub(crate) fn items<'a>(ds: &'a Dataset, list: &ListInfo) -> &'a [Item] {
    let r = list.range();
    &ds.items[r.start as usize..r.end as usize]
}

/// Whether `out` already holds the completed shard a run over `list` with
/// `job` (see [`job_provenance`]) would write, so that the run has nothing to
/// do: `Ok(Some(file))` then. `Ok(None)` when `out` does not exist; an error
/// naming what differs when it holds something else (another shard, a file
/// of another list or another model).
pub(crate) fn completed_shard(
    out: &Path,
    list: &ListInfo,
    job: &Provenance,
) -> Result<Option<FileReader>> {
    if list.shard.is_none() || !out.exists() {
        return Ok(None);
    }
    let f = FileReader::open(out)?;
    let refuse = |reason: String, next: Next| Error::FeatureFile {
        path: out.to_owned(),
        reason,
        next,
    };
    if let Some((kind, what)) = store::list_mismatch(f.list.as_ref(), list) {
        return Err(match kind {
            Mismatch::List => refuse(format!("{what}; it is stale"), Next::ExtractEveryShardAgain),
            Mismatch::Shard => refuse(what, Next::OtherOutputOrReplace),
        });
    }
    if let Some((what, old, new)) = store::job_difference(&f.provenance, job) {
        return Err(refuse(
            format!(
                "holds {} extracted with {what} `{old}`, this run has `{new}`",
                list.describe_shard()
            ),
            Next::ExtractAgainWithTheOthers,
        ));
    }
    Ok(Some(f))
}

/// The HDF5 sink: rows of the batch become feature rows with their labels and paths.
struct FileSink<'a> {
    writer: FeatureWriter,
    items: &'a [&'a Item],
    written: usize,
    skipped: Vec<(String, String)>,
}

impl Sink for FileSink<'_> {
    type Error = Error;
    fn consume(&mut self, batch: Batch) -> Result<()> {
        let all = &batch.features[0]; // [n_ok × views, dim]
        let (k, dim) = (batch.views, all.ncols());
        // Row i × k of the backbone's output is image i's centre view.
        let centre = all.slice(ndarray::s![..;k, ..]);
        let features = centre.as_standard_layout(); // [n_ok, dim]
        let views = (k > 1).then(|| {
            all.view()
                .into_shape_with_order((batch.rows.len(), k, dim))
                .expect("k rows per image") // [n_ok, k, dim]
        });
        let labels: Vec<i64> = batch.rows.iter().map(|&i| self.items[i].label).collect();
        let paths: Vec<String> = batch
            .rows
            .iter()
            .map(|&i| self.items[i].rel_path.clone())
            .collect();
        let skipped: Vec<(String, String)> = batch
            .skipped
            .into_iter()
            .map(|(i, reason)| (self.items[i].rel_path.clone(), reason))
            .collect();
        self.writer
            .append_views(features.view(), views, &labels, &paths, &skipped)?;
        self.written += batch.rows.len();
        self.skipped.extend(skipped);
        Ok(())
    }
}

/// Where a resumed run starts: the number of leading dataset items that the
/// interrupted run already wrote or skipped. They must be exactly the first
/// files of the current (sorted) list, with the labels they have today (a
/// label edited in a `--list` would otherwise stay in the committed rows
/// while the file records the new list's hash); a file added, removed,
/// renamed or relabelled before that point would mix two datasets in one
/// file, so it is an error naming the file. Files added after that point are
/// simply extracted. `classes` name the labels in the message.
pub(crate) fn resume_point(
    items: &[Item],
    done: &HashMap<String, Option<i64>>,
    classes: &[String],
    partial: &Path,
) -> Result<usize> {
    let k = done.len();
    let refuse = |what: String| {
        Error::FeatureFile {
        path: partial.to_owned(),
        reason: format!(
            "{what}; the dataset changed before the point the interrupted run reached ({k} files), so continuing would not give the file of an uninterrupted run"
        ),
        next: Next::RestoreDatasetOrStartAgain,
    }
    };
    let name = |label: i64| match usize::try_from(label).ok().and_then(|l| classes.get(l)) {
        Some(c) => format!("{c:?}"),
        None if label < 0 => "none".to_string(),
        None => label.to_string(),
    };
    for item in items.iter().take(k) {
        match done.get(&item.rel_path) {
            None => {
                return Err(refuse(format!(
                    "{} is in the dataset but not in the file",
                    item.rel_path
                )))
            }
            Some(Some(label)) if *label != item.label => {
                return Err(refuse(format!(
                    "{} has the label {} in the file but {} today",
                    item.rel_path,
                    name(*label),
                    name(item.label)
                )))
            }
            Some(_) => {}
        }
    }
    if items.len() < k {
        let now: HashSet<&str> = items.iter().map(|i| i.rel_path.as_str()).collect();
        let mut gone: Vec<&String> = done.keys().filter(|p| !now.contains(p.as_str())).collect();
        gone.sort();
        return Err(refuse(format!(
            "{} file(s) of the file are no longer in the dataset (first: {})",
            gone.len(),
            gone.first().map_or("?", |s| s.as_str())
        )));
    }
    Ok(k)
}

/// Extracts features of every image of `ds` (of its shard, for a sharded run)
/// into `out`, with the backbone that `load` returns. On a fresh run `load` runs while the decoders already work
/// on the first batches, so model loading costs no time of its own; a resumed
/// run loads first (the file's provenance decides which images are left).
///
/// `load`'s errors come back unchanged; xfer's own are converted into `E`.
pub(crate) fn run<E: From<Error>>(
    ds: &Dataset,
    load: impl FnOnce() -> std::result::Result<LoadedBackbone, E>,
    out: &Path,
    cfg: &ExtractConfig,
    progress: &mut dyn FnMut(Progress),
) -> std::result::Result<Summary, E> {
    let start = std::time::Instant::now();
    if let Some(s) = cfg.shard {
        shard::check_count(s, ds.items.len())?;
    }
    let list = list_info(ds, cfg.shard);
    let items = items(ds, &list);
    let mut ready = None;
    let mut load = Some(load);
    let (already, skipped_before) = if cfg.resume {
        let (backbone, prov) = load.take().expect("not loaded yet")()?;
        let (writer, state) =
            FeatureWriter::resume_for(out, backbone.feature_dim(), &prov, Some(&list))?;
        let k = resume_point(
            items,
            &state.done,
            &ds.classes,
            &crate::features::store::partial_path(out),
        )?;
        ready = Some((backbone, writer));
        (k, state.skipped)
    } else {
        (0, 0)
    };
    let todo: Vec<&Item> = items[already..].iter().collect();
    let inputs: Vec<PathBuf> = todo.iter().map(|i| ds.abs_path(i)).collect();
    let mut provider = String::new();
    let mut inference_precision = String::new();
    let mut model = String::new();
    let mut resumed_rows = 0;
    let open = || -> std::result::Result<(Vec<Stage>, FileSink), E> {
        let (backbone, writer) = match ready.take() {
            Some(bw) => bw,
            None => {
                let (backbone, prov) = load.take().expect("loaded once")()?;
                let writer =
                    FeatureWriter::create_for(out, backbone.feature_dim(), &prov, Some(&list))?;
                (backbone, writer)
            }
        };
        provider = backbone.provider.clone();
        inference_precision = backbone.inference_precision.clone();
        model = backbone.manifest.name.clone();
        resumed_rows = writer.rows();
        let sink = FileSink {
            writer,
            items: &todo,
            written: 0,
            skipped: Vec::new(),
        };
        Ok((
            vec![Stage {
                backbone,
                recipe: 0,
            }],
            sink,
        ))
    };
    let total = items.len();
    let mut report = |p: Progress| {
        progress(Progress {
            done: already + p.done,
            total,
            skipped: p.skipped,
        })
    };
    let recipes = std::slice::from_ref(&cfg.recipe);
    let finished = match &cfg.views {
        None => pipeline::run(&inputs, recipes, open, &cfg.pipeline, &mut report)?,
        Some(plan) => {
            let keys: Vec<String> = todo.iter().map(|i| i.rel_path.clone()).collect();
            let views = pipeline::Views { plan, keys: &keys };
            pipeline::run_views(&inputs, recipes, views, open, &cfg.pipeline, &mut report)?
        }
    };
    let timings = finished.timings;
    let FileSink {
        writer,
        written,
        skipped,
        ..
    } = finished.sink;
    writer.finish()?;
    Ok(Summary {
        total,
        resumed_rows,
        written,
        skipped,
        skipped_before,
        seconds: start.elapsed().as_secs_f64(),
        model,
        provider,
        inference_precision,
        timings,
    })
}
