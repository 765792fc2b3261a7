//! The front door of extraction: an [`Extraction`] says what to read, with
//! which backbone, into which feature file; [`Extraction::run`] does every
//! check (outputs that exist or are inputs, the output lock, a shard's
//! count, a completed shard), loads the backbone, runs [`extract::run`] and
//! reports what happens as [`Event`]s. `xfer extract` is this plus flags and
//! printing.
//!
//! ```no_run
//! use xfer::{Event, Extraction, Source};
//!
//! let job = Extraction::new(Source::folder("photos/train"), "efficientnet_lite0", "train.h5");
//! let outcome = job.run(&mut |event| {
//!     if let Event::Progress(p) = event {
//!         eprint!("\r{} / {}", p.done, p.total);
//!     }
//! })?;
//! println!("{} rows", outcome.rows());
//! # Ok::<(), xfer::Error>(())
//! ```

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::error::{Error, Output, Result};
use crate::features::extract::{self, ExtractConfig, Summary};
use crate::features::pipeline::{schedule, PipelineConfig, Progress};
use crate::features::shard::{self, Shard};
use crate::features::store::{self, ListInfo};
use crate::images::augment::ViewPlan;
use crate::images::dataset::{self, Dataset, Layout};
use crate::images::preprocess::Preset;
use crate::models::backbone::{Backbone, SessionOptions};
use crate::models::runtime::Runtime;
use crate::models::zoo::{Manifest, Zoo};
use crate::util::clobber::{refuse_inputs, Input};
use crate::util::lock::OutputLock;

/// Where the images of an extraction come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A folder: ImageFolder (`root/<class>/…`), Kaggle flat (`root/cat.0.jpg`)
    /// or unlabelled; the layout is detected when `None`.
    Folder {
        dir: PathBuf,
        layout: Option<Layout>,
    },
    /// A list file: `*.csv`/`*.tsv` of `path[,label]` records, or one path per line.
    List(PathBuf),
}

impl Source {
    /// A folder whose layout is detected.
    pub fn folder(dir: impl Into<PathBuf>) -> Source {
        Source::Folder {
            dir: dir.into(),
            layout: None,
        }
    }

    /// The list file, if the source is one.
    pub(crate) fn list_file(&self) -> Option<&Path> {
        match self {
            Source::List(p) => Some(p),
            Source::Folder { .. } => None,
        }
    }

    /// The dataset and the canonical folder its paths are relative to.
    fn scan(&self) -> Result<(Dataset, PathBuf)> {
        match self {
            Source::Folder { dir, layout } => {
                let ds = dataset::scan(dir, *layout)?;
                let root = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
                Ok((ds, root))
            }
            Source::List(list) => {
                let ds = dataset::from_list(list)?;
                let root = ds.root.clone();
                Ok((ds, root))
            }
        }
    }
}

/// What to do when the output (or its interrupted `.partial`) already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Existing {
    /// Refuse ([`Error::OutputExists`], [`Error::Interrupted`]); a completed
    /// shard of the same job is not an error: there is nothing to do.
    #[default]
    Refuse,
    /// Continue the `.partial` of an interrupted run of the same job.
    Resume,
    /// Start again, replacing both.
    Overwrite,
}

/// One extraction: images → one backbone → one HDF5 feature file.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub source: Source,
    /// A zoo name or a manifest file (`*.toml`).
    pub model: String,
    pub out: PathBuf,
    /// The zoo folder (`None`: found as `xfer models` finds it).
    pub zoo: Option<PathBuf>,
    /// The ONNX Runtime library (`None`: searched for, see
    /// [`Runtime::init`]).
    pub ort_lib: Option<PathBuf>,
    /// The backbone's own preprocessing or the tutorial's.
    pub preset: Preset,
    /// Augmented views per image, besides `data`'s centre view.
    pub views: Option<ViewPlan>,
    /// Only this shard of the sorted file list.
    pub shard: Option<Shard>,
    pub existing: Existing,
    /// Batch size, decoder threads and decoding.
    pub pipeline: PipelineConfig,
    /// Execution provider, threads, model cache (`max_batch` follows
    /// `pipeline.batch`).
    pub session: SessionOptions,
    /// Decide ONNX Runtime's spinning from the first images' sizes and the
    /// device ([`schedule::auto_spin`]) instead of `session`'s setting.
    pub auto_spin: bool,
}

/// What happens during [`Extraction::run`], in order.
pub enum Event<'a> {
    /// The dataset was read; `ignored` says which files were not images.
    Scanned {
        dataset: &'a Dataset,
    },
    /// Listed files that do not exist (they are recorded as skipped).
    Missing {
        list: &'a Path,
        count: usize,
        first: Vec<&'a str>,
        /// Some look like `path,label` records in a list read one path per line.
        looks_unsplit: bool,
    },
    /// The work is known: `images` to extract (of `list`'s shard, if any).
    Planned {
        images: usize,
        list: &'a ListInfo,
    },
    /// The backbone is loaded (while the decoders already work).
    Loaded {
        manifest: &'a Manifest,
        backbone: &'a Backbone,
    },
    Progress(Progress),
}

/// How [`Extraction::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The images were extracted (some may be skipped: see the summary).
    Extracted(Summary),
    /// A shard's file was already complete for this very job: nothing done.
    AlreadyComplete {
        /// The backbone's name (its manifest's).
        model: String,
        /// `shard I of N (files a–b)`.
        shard: String,
        rows: usize,
        skipped: usize,
    },
}

impl Outcome {
    /// Rows the feature file holds.
    pub fn rows(&self) -> usize {
        match self {
            Outcome::Extracted(s) => s.resumed_rows + s.written,
            Outcome::AlreadyComplete { rows, .. } => *rows,
        }
    }

    /// Files skipped by this run (unreadable, undecodable, non-finite features).
    pub fn skipped(&self) -> &[(String, String)] {
        match self {
            Outcome::Extracted(s) => &s.skipped,
            Outcome::AlreadyComplete { .. } => &[],
        }
    }
}

impl Extraction {
    /// An extraction with the defaults of `xfer extract`: batch 32, the
    /// backbone's own recipe, CPU, no views, no shard, refusing existing outputs.
    pub fn new(source: Source, model: impl Into<String>, out: impl Into<PathBuf>) -> Extraction {
        Extraction {
            source,
            model: model.into(),
            out: out.into(),
            zoo: None,
            ort_lib: None,
            preset: Preset::Native,
            views: None,
            shard: None,
            existing: Existing::Refuse,
            pipeline: PipelineConfig::default(),
            session: SessionOptions::default(),
            auto_spin: true,
        }
    }

    /// Checks what can be checked before a file is read: the batch, the
    /// views, and what exists at `out`.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.pipeline.batch == 0 {
            // The pipeline's own check, before the lock and the folder walk.
            return Err(Error::Setting {
                setting: crate::error::Setting::Batch,
                problem: "must be at least 1".into(),
            });
        }
        if let Some(v) = &self.views {
            v.validate()?;
        }
        let partial = store::partial_path(&self.out);
        // A shard's rerun finds its completed file: decided once the list is known.
        let maybe_done_shard =
            self.shard.is_some() && self.out.exists() && self.existing != Existing::Overwrite;
        match self.existing {
            Existing::Resume if !partial.exists() && !maybe_done_shard => {
                return Err(Error::NothingToResume { partial });
            }
            Existing::Refuse if !maybe_done_shard => {
                if self.out.exists() {
                    return Err(Error::OutputExists {
                        path: self.out.clone(),
                    });
                }
                if partial.exists() {
                    return Err(Error::Interrupted { partial });
                }
            }
            _ => {}
        }
        if let Some(folder) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !folder.is_dir() {
                return Err(Error::NoOutputFolder {
                    path: self.out.clone(),
                    folder: folder.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Runs the extraction, reporting to `on_event`.
    pub fn run(&self, on_event: &mut dyn FnMut(Event)) -> Result<Outcome> {
        self.validate()?;
        // A second extraction into the same file is refused while this one runs.
        let _lock = OutputLock::acquire(&self.out)?;
        let (ds, root) = self.source.scan()?;
        let manifest = Zoo::locate(self.zoo.as_deref()).find(&self.model)?;
        self.refuse_own_inputs(&ds, &manifest)?;
        let cfg = ExtractConfig {
            pipeline: self.pipeline.clone(),
            recipe: manifest.preprocess.with_preset(self.preset),
            resume: self.existing == Existing::Resume,
            shard: self.shard,
            views: self.views.clone(),
        };
        if let Some(s) = self.shard {
            shard::check_count(s, ds.items.len())?;
        }
        let list = extract::list_info(&ds, self.shard);
        if self.existing != Existing::Overwrite {
            let job = extract::job_provenance(&ds, &root, &cfg, &manifest);
            if let Some(f) = extract::completed_shard(&self.out, &list, &job)? {
                return Ok(Outcome::AlreadyComplete {
                    model: manifest.name.clone(),
                    shard: list.describe_shard(),
                    rows: f.rows,
                    skipped: f.skipped,
                });
            }
        }
        on_event(Event::Scanned { dataset: &ds });
        let items = extract::items(&ds, &list);
        if let Some(list_file) = self.source.list_file() {
            let missing = dataset::missing_files(&ds, items);
            if !missing.is_empty() {
                on_event(Event::Missing {
                    list: list_file,
                    count: missing.len(),
                    first: missing
                        .iter()
                        .take(5)
                        .map(|i| i.rel_path.as_str())
                        .collect(),
                    looks_unsplit: missing.iter().any(|i| i.rel_path.contains([',', '\t']))
                        && dataset::ListFormat::of(list_file) == dataset::ListFormat::Lines,
                });
            }
        }
        on_event(Event::Planned {
            images: items.len(),
            list: &list,
        });
        let mut session = self.session.clone();
        // TensorRT's profile is built for the batches the pipeline makes.
        session.max_batch = self.pipeline.batch;
        if self.auto_spin {
            let first: Vec<PathBuf> = items.iter().take(64).map(|i| ds.abs_path(i)).collect();
            session.intra_op_spinning = schedule::auto_spin(session.device.device, &first);
        }
        // The loader runs inside the pipeline while progress reports arrive:
        // both reach the one callback.
        let on_event = RefCell::new(on_event);
        let load = || -> Result<extract::LoadedBackbone> {
            let runtime = Runtime::init(self.ort_lib.as_deref())?;
            let backbone = Backbone::load(&runtime, &manifest, &session)?;
            (on_event.borrow_mut())(Event::Loaded {
                manifest: &manifest,
                backbone: &backbone,
            });
            let prov = extract::provenance(&ds, &root, &cfg, &runtime, &backbone);
            Ok((backbone, prov))
        };
        let summary = extract::run(&ds, load, &self.out, &cfg, &mut |p| {
            (on_event.borrow_mut())(Event::Progress(p))
        })?;
        Ok(Outcome::Extracted(summary))
    }

    /// The feature file (or its `.partial`) must not replace one of the
    /// run's inputs: the model, the list, an image.
    fn refuse_own_inputs(&self, ds: &Dataset, manifest: &Manifest) -> Result<()> {
        let partial = store::partial_path(&self.out);
        if !self.out.exists() && !partial.exists() {
            return Ok(());
        }
        let mut inputs = manifest.inputs();
        if let Some(l) = self.source.list_file() {
            inputs.push(Input::new("the image list", l));
        }
        inputs.extend(
            ds.items
                .iter()
                .map(|i| Input::new("an image", ds.abs_path(i))),
        );
        for out in [&self.out, &partial] {
            refuse_inputs(Output::FeatureFile, out, &inputs)?;
        }
        Ok(())
    }
}
