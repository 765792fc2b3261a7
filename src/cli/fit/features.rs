//! The feature files of a fit, one per split and backbone, assembled from
//! the feature cache ([`xfer::features::cache`]) after `xfer extract` has
//! filled in what the cache lacks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use xfer::features::cache::{self, Content, ContentHasher, Folder, Key};
use xfer::features::extract::ExtractConfig;
use xfer::features::pipeline::PipelineConfig;
use xfer::images::augment::{AugmentRecipe, ViewPlan};
use xfer::images::dataset::Dataset;
use xfer::images::preprocess::Preset;
use xfer::models::zoo::{Manifest, Zoo};
use xfer::util::atomic::write_bytes_atomic;
use xfer::util::shell;

use super::runner::Runner;
use super::split::Lists;
use super::{s, FitArgs};
use crate::cli::Cli;

/// The photos of one split, with their contents (the cache's keys).
pub(super) struct Listed {
    pub ds: Dataset,
    pub contents: Vec<Content>,
}

/// What hashing the photos did, for the summary.
pub(super) struct Hashing {
    /// The cache folder.
    pub root: PathBuf,
    /// Files read and hashed.
    pub hashed: usize,
    /// Files whose hash was known.
    pub trusted: usize,
}

/// The content hashes of both splits' photos.
pub(super) fn hash_contents(args: &FitArgs, lists: Lists) -> Result<(Listed, Listed, Hashing)> {
    let root = match &args.cache {
        Some(c) => c.clone(),
        None => cache::default_root()
            .ok_or_else(|| anyhow!("no home folder for the feature cache; pass --cache DIR"))?,
    };
    std::fs::create_dir_all(&root)
        .with_context(|| format!("creating the cache folder {}", root.display()))?;
    let mut hasher = ContentHasher::open(&root);
    let train = listed(&mut hasher, lists.train)?;
    let test = listed(&mut hasher, lists.test)?;
    hasher.save()?;
    eprintln!(
        "content hashes: {} read, {} known unchanged (cache {})",
        hasher.hashed,
        hasher.trusted,
        root.display()
    );
    let (hashed, trusted) = (hasher.hashed, hasher.trusted);
    Ok((
        train,
        test,
        Hashing {
            root,
            hashed,
            trusted,
        },
    ))
}

fn listed(hasher: &mut ContentHasher, ds: Dataset) -> Result<Listed> {
    let paths: Vec<PathBuf> = ds.items.iter().map(|i| ds.abs_path(i)).collect();
    let contents = paths
        .iter()
        .zip(hasher.contents(&paths))
        .map(|(p, r)| {
            r.with_context(|| {
                format!(
                    "reading {} (to look it up in the feature cache); make it readable or move it out of the data",
                    p.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(Listed { ds, contents })
}

/// What the cache did for one split and backbone.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CacheUse {
    model: String,
    split: String,
    images: usize,
    /// Found in the cache.
    pub cached: usize,
    /// Extracted by this run.
    pub extracted: usize,
    file: PathBuf,
}

/// The feature files of this run, made from the cache.
pub(super) struct Features<'a> {
    args: &'a FitArgs,
    pub zoo: Zoo,
    cache_root: PathBuf,
    ort_version: String,
    run: PathBuf,
    pub used: Vec<CacheUse>,
    prepared: HashMap<(String, String), PathBuf>,
    /// Images extracted by this run: cache folder name, NUL, path.
    fresh: HashSet<String>,
}

/// A backbone's extraction for one split: its manifest and settings.
struct Job<'j> {
    /// The backbone as named on the command line.
    model: &'j str,
    /// `train` or `test`.
    split: &'j str,
    manifest: Manifest,
    cfg: ExtractConfig,
}

impl<'a> Features<'a> {
    pub fn new(cli: &Cli, args: &'a FitArgs, cache_root: &Path) -> Result<Features<'a>> {
        let runtime = xfer::models::runtime::Runtime::init(cli.ort_lib.as_deref())?;
        Ok(Features {
            args,
            zoo: Zoo::locate(cli.zoo.as_deref()),
            cache_root: cache_root.to_owned(),
            ort_version: runtime.version.clone(),
            run: args.out.clone(),
            used: Vec::new(),
            prepared: HashMap::new(),
            fresh: HashSet::new(),
        })
    }

    fn device_name(&self) -> String {
        let device = &self.args.device;
        let d = format!("{:?}", device.device).to_lowercase();
        if device.trt_fp16 {
            format!("{d}-fp16")
        } else if device.device == xfer::models::runtime::Device::Openvino {
            format!("{d}-{}", format!("{:?}", device.precision).to_lowercase())
        } else {
            d
        }
    }

    /// The feature files of `chosen` for the training and the test split. The
    /// test photos are extracted with the training photos (one chunk), unless
    /// `--model auto` already extracted those.
    pub fn prepare_all(
        &mut self,
        runner: &mut Runner,
        chosen: &[String],
        train: &Listed,
        test: &Listed,
    ) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        let mut train_files = Vec::new();
        let mut test_files = Vec::new();
        for m in chosen {
            train_files.push(self.prepare(runner, m, "train", train, Some(test))?);
        }
        for m in chosen {
            test_files.push(self.prepare(runner, m, "test", test, None)?);
        }
        Ok((train_files, test_files))
    }

    /// The feature file of `split` (`train` or `test`, `this`) with the
    /// backbone `model`: cached rows, after extracting what the cache lacks.
    pub fn prepare(
        &mut self,
        runner: &mut Runner,
        model: &str,
        split: &str,
        this: &Listed,
        also: Option<&Listed>,
    ) -> Result<PathBuf> {
        if let Some(f) = self.prepared.get(&(model.to_string(), split.to_string())) {
            return Ok(f.clone());
        }
        let job = self.job(model, split)?;
        let key = Key::new(
            &job.manifest,
            &job.cfg,
            &self.ort_version,
            &self.device_name(),
        );
        let mut folder = Folder::open(&self.cache_root, key)?;
        for n in &folder.notes {
            eprintln!("warning: {n}");
        }
        self.finish_pending(runner, &mut folder, &job)?;
        let also = also.filter(|_| job.cfg.views.is_none());
        self.extract_missing(runner, &mut folder, &job, this, also)?;
        let name = folder.key.folder_name();
        let extracted = paths_of(&this.ds)
            .iter()
            .filter(|p| self.fresh.contains(&format!("{name}\0{p}")))
            .count();
        let out = self.assemble(runner, &folder, &job, this, extracted)?;
        self.used.push(CacheUse {
            model: job.manifest.name.clone(),
            split: split.into(),
            images: this.ds.items.len(),
            cached: this.ds.items.len() - extracted,
            extracted,
            file: out.clone(),
        });
        self.prepared
            .insert((model.to_string(), split.to_string()), out.clone());
        Ok(out)
    }

    /// The manifest of `model` and the settings of its extraction for `split`
    /// (the training split gets the `--views`).
    fn job<'j>(&self, model: &'j str, split: &'j str) -> Result<Job<'j>> {
        let manifest: Manifest = self.zoo.find(model)?;
        let views = match (split, self.args.views) {
            ("train", Some(k)) => {
                let plan = ViewPlan {
                    views: k,
                    seed: self.args.seed,
                    recipe: AugmentRecipe::parse("tutorial")?,
                };
                plan.validate()?;
                Some(plan)
            }
            _ => None,
        };
        let cfg = ExtractConfig {
            pipeline: PipelineConfig::default(),
            recipe: manifest.preprocess.with_preset(Preset::Native),
            resume: false,
            shard: None,
            views,
        };
        Ok(Job {
            model,
            split,
            manifest,
            cfg,
        })
    }

    /// The arguments of `xfer extract` for `list` into `out`.
    fn extract_args(&self, job: &Job, list: &Path, out: &Path, resume: bool) -> Vec<String> {
        let mut a = vec![
            "--model".to_string(),
            job.model.to_string(),
            "--list".into(),
            s(list),
            "--out".into(),
            s(out),
        ];
        if let Some(k) = self.args.views.filter(|_| job.split == "train") {
            a.extend([
                "--views".into(),
                k.to_string(),
                "--seed".into(),
                self.args.seed.to_string(),
            ]);
        }
        if self.args.quiet {
            a.push("--quiet".into());
        }
        a.extend(self.args.device.flags());
        if resume {
            a.push("--resume".into());
        }
        a
    }

    /// Extracts what an interrupted run left in `folder`.
    fn finish_pending(&self, runner: &mut Runner, folder: &mut Folder, job: &Job) -> Result<()> {
        for chunk in folder.pending().to_vec() {
            if !chunk.out.exists() {
                let a = self.extract_args(job, &chunk.list, &chunk.out, chunk.has_partial());
                runner.run(&runner.argv("extract", a))?;
            }
            folder.seal(&chunk)?;
        }
        Ok(())
    }

    /// Extracts, in one new chunk, what `folder` lacks of `this` and (when
    /// the job is the same) of `also`.
    fn extract_missing(
        &mut self,
        runner: &mut Runner,
        folder: &mut Folder,
        job: &Job,
        this: &Listed,
        also: Option<&Listed>,
    ) -> Result<()> {
        let missing: Vec<(String, Content)> = std::iter::once(this)
            .chain(also)
            .flat_map(|l| paths_of(&l.ds).into_iter().zip(l.contents.iter().cloned()))
            .filter(|(p, c)| !folder.has(p, c))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let chunk = folder.new_chunk(&missing)?;
        let argv = runner.argv(
            "extract",
            self.extract_args(job, &chunk.list, &chunk.out, false),
        );
        runner.run(&argv)?;
        folder.seal(&chunk)?;
        let name = folder.key.folder_name();
        self.fresh
            .extend(missing.into_iter().map(|(p, _)| format!("{name}\0{p}")));
        Ok(())
    }

    /// Writes OUT/features/SPLIT_MODEL.h5 from `folder`, unless it is up to
    /// date (the same list, job and image contents); `extracted` of its rows
    /// were extracted now.
    fn assemble(
        &self,
        runner: &mut Runner,
        folder: &Folder,
        job: &Job,
        this: &Listed,
        extracted: usize,
    ) -> Result<PathBuf> {
        let (split, name) = (job.split, &job.manifest.name);
        let list = self.run.join("lists").join(format!("{split}.csv"));
        let out = self.run.join("features").join(format!("{split}_{name}.h5"));
        let stamp_key = assembly_key(&list, folder, &this.contents)?;
        let stamp = runner.stamps.join(format!("features-{split}-{name}.stamp"));
        let same = format!(
            "xfer extract {}",
            shell::line(&self.extract_args(job, &list, &out, false))
        );
        if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|k| k == stamp_key) {
            eprintln!(
                "\n# up to date (from the cache, as `{same}` would write it): {}",
                out.display()
            );
            return Ok(out);
        }
        let _ = std::fs::remove_file(&stamp);
        if out.exists() {
            std::fs::remove_file(&out).with_context(|| out.display().to_string())?;
        }
        let a = folder.assemble(&this.ds, &this.contents, &job.manifest, &job.cfg, &out)?;
        eprintln!(
            "\n# {}: {} rows from the cache{} ({} extracted now), the file `{same}` writes",
            out.display(),
            a.rows,
            if a.skipped > 0 {
                format!(", {} unreadable photos recorded as skipped", a.skipped)
            } else {
                String::new()
            },
            extracted
        );
        if a.skipped > 0 {
            runner.skipped = true;
        }
        write_bytes_atomic(&stamp, stamp_key.as_bytes())?;
        Ok(out)
    }
}

/// The absolute paths of `ds`'s images, as the cache knows them.
fn paths_of(ds: &Dataset) -> Vec<String> {
    ds.items.iter().map(|i| s(&ds.abs_path(i))).collect()
}

/// What an assembled feature file is made of: its list, the job and the
/// images' contents.
fn assembly_key(list: &Path, folder: &Folder, contents: &[Content]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(std::fs::read(list).with_context(|| list.display().to_string())?);
    h.update(serde_json::to_vec(&folder.key)?);
    for c in contents {
        h.update(c.sha256.as_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}
