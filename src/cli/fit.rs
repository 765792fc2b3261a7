//! `xfer fit`: porcelain over the plumbing commands, git-style. It builds the
//! command lines of `xfer extract`, `xfer train`, `xfer evaluate` and `xfer
//! audit`, prints each (shell-quoted) and runs it in this process through the
//! same parser and dispatch as `main`, so every printed line is exactly what
//! ran and can be run again by hand. What no plumbing command does is here or
//! in the library: the recorded test split, the feature cache keyed by image
//! content ([`xfer::features::cache`]), the choice among backbones
//! (`--model auto`), skipping steps whose outputs are up to date, and the
//! summary with the uncertainty of the test scores.

use std::io::Write;
use std::path::{Path, PathBuf};
use xfer::train::folder::RunFolder;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xfer::features::cache::{self, Content, ContentHasher, Folder, Key};
use xfer::features::extract::ExtractConfig;
use xfer::features::pipeline::PipelineConfig;
use xfer::images::dataset::{self, Dataset, Layout};
use xfer::images::preprocess::Preset;
use xfer::models::zoo::{Manifest, Weights, Zoo};
use xfer::util::atomic::write_bytes_atomic;
use xfer::util::format::fixed;

use super::common::{DeviceArgs, Spin};
use super::train::HeadArg;
use super::{Cli, EXIT_SKIPPED};

/// From a folder of labelled photos to a checked classifier in one command.
///
/// Holds out a stratified, seeded test split (recorded by path in OUT/split.json, so
/// every later run holds out the same photos), extracts features through a cache keyed
/// by each image's content (a second run, or a run on the folder with a few photos
/// more, extracts only what is new), chooses the backbone (`--model auto`: the zoo's
/// real-weight backbones and their concatenation, by 5-fold cross-validated log loss
/// of the logistic head on the training split), trains the default heads with
/// cross-validation and calibration, evaluates the recommended head on the test split
/// with an HTML report, and audits the data. Each step is a plumbing command, printed
/// before it runs; a step whose outputs are up to date is skipped, so running the
/// same command again after an interruption continues where it stopped.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["data", "list"]))]
#[command(after_long_help = "Examples:
  xfer fit data/stamps --out runs/stamps
  xfer fit photos/ --out runs/p --model efficientnet_lite0 --model resnet50
  xfer fit photos/train --test photos/test --out runs/p --json
  xfer fit --list labelled.csv --out runs/l --test-split 0.25 --seed 1
Then: xfer predict --bundle runs/stamps/best.safetensors new_photos/")]
pub struct FitArgs {
    /// Dataset folder: DATA/<class>/*.jpg (ImageFolder) or DATA/cat.0.jpg (Kaggle flat).
    #[arg(value_name = "DATA")]
    data: Option<PathBuf>,
    /// A labelled list instead of a folder (*.csv or *.tsv with path,label records).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// The run folder: split, lists, features, heads, report.
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    /// Backbone(s): `auto` (the zoo's real-weight backbones that are present,
    /// and their concatenation, chosen by cross-validation), or names from
    /// `xfer models`; several are concatenated.
    #[arg(long = "model", value_name = "M", default_value = "auto")]
    models: Vec<String>,
    /// A test folder with the same classes, instead of a split of DATA.
    #[arg(long, value_name = "DIR", conflicts_with = "test_split")]
    test: Option<PathBuf>,
    /// Fraction of each class held out for the test (stratified, seeded). Default 0.2.
    #[arg(long, value_name = "FRACTION")]
    test_split: Option<f64>,
    /// Also extract K augmented views per training image (`xfer extract --views`).
    #[arg(long, value_name = "K")]
    views: Option<usize>,
    /// Which head(s) `xfer train` fits.
    #[arg(long, value_enum, default_value_t = HeadArg::Both)]
    head: HeadArg,
    /// Seed of the test split, the views and training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The feature cache folder (default: cache/features in xfer's data
    /// folder, $XFER_HOME). Deleting it is always safe.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Print one JSON object on stdout at the end (the steps' own output goes to stderr).
    #[arg(long)]
    json: bool,
    /// Fewer progress lines (passes --quiet to extract and train).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

const DEFAULT_TEST_FRACTION: f64 = 0.2;
/// Folds of the screening runs of `--model auto`.
const AUTO_FOLDS: usize = 5;

fn validate(args: &FitArgs) -> Result<()> {
    args.device.validate()?;
    if let Some(f) = args.test_split {
        if !(f > 0.0 && f < 1.0) {
            bail!("--test-split must be between 0 and 1 (e.g. 0.2), got {f}");
        }
    }
    if args.models.len() > 1 && args.models.iter().any(|m| m == "auto") {
        bail!("--model auto chooses among the zoo's backbones by itself; pass it alone, or name the backbones");
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!(
            "--out {} exists and is not a folder; give a folder for the run",
            args.out.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- commands

/// `s` as one shell word: as it is when that is safe, else single-quoted.
fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn sh_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| sh_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f` with the process's stdout on stderr (so that `--json` owns stdout).
fn with_stdout_on_stderr<T>(f: impl FnOnce() -> T) -> T {
    let _ = std::io::stdout().flush();
    // SAFETY: dup/dup2/close on the process's own standard descriptors.
    let saved = unsafe { libc::dup(1) };
    if saved < 0 {
        return f();
    }
    unsafe { libc::dup2(2, 1) };
    let out = f();
    let _ = std::io::stdout().flush();
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    out
}

/// Runs plumbing commands and remembers them.
struct Runner {
    /// `--zoo`, `--ort-lib` of this invocation, passed on.
    globals: Vec<String>,
    json: bool,
    /// The command lines run, in order.
    commands: Vec<String>,
    /// Whether a step skipped some images (exit status 3).
    skipped: bool,
    /// The folder of the step records.
    stamps: PathBuf,
}

impl Runner {
    /// `xfer SUB ARGS… GLOBALS…` as an argument vector.
    fn argv(&self, sub: &str, args: Vec<String>) -> Vec<String> {
        let mut v = vec!["xfer".to_string(), sub.to_string()];
        v.extend(args);
        v.extend(self.globals.iter().cloned());
        v
    }

    /// Prints `argv` and runs it here, as `main` would.
    fn run(&mut self, argv: &[String]) -> Result<i32> {
        let line = sh_line(argv);
        eprintln!("\n$ {line}");
        self.commands.push(line.clone());
        let cli = Cli::try_parse_from(argv)
            .map_err(|e| anyhow!("internal error: `{line}` does not parse ({e})"))?;
        let result = if self.json {
            with_stdout_on_stderr(|| super::dispatch(cli))
        } else {
            super::dispatch(cli)
        };
        let code = result.with_context(|| {
            format!("the step `{line}` failed (once that is fixed, run the same `xfer fit` again: it continues from there)")
        })?;
        match code {
            0 => Ok(0),
            EXIT_SKIPPED => {
                self.skipped = true;
                Ok(code)
            }
            c => bail!("the step `{line}` ended with exit status {c}"),
        }
    }

    /// Runs `argv` unless its record says it already ran with these inputs
    /// and its `outputs` exist. A rerun over files it writes (`writes`, an
    /// earlier or interrupted run's) gets `--overwrite` (the record is of the
    /// line without it).
    fn step(
        &mut self,
        name: &str,
        mut argv: Vec<String>,
        inputs: &[&Path],
        outputs: &[PathBuf],
        writes: &[PathBuf],
    ) -> Result<bool> {
        let key = step_key(&sh_line(&argv), inputs)?;
        let record = self.stamps.join(format!("{name}.stamp"));
        let done = std::fs::read_to_string(&record).is_ok_and(|k| k == key)
            && outputs.iter().all(|o| o.exists());
        if done {
            eprintln!("\n# up to date: {}", sh_line(&argv));
            self.commands.push(sh_line(&argv));
            return Ok(false);
        }
        let _ = std::fs::remove_file(&record);
        if outputs.iter().chain(writes).any(|o| o.exists()) {
            argv.push("--overwrite".into());
        }
        self.run(&argv)?;
        write_bytes_atomic(&record, key.as_bytes())?;
        Ok(true)
    }
}

/// The files `xfer train --out DIR` writes (or removes as an earlier run's).
fn train_outputs(dir: &Path) -> Vec<PathBuf> {
    let run = RunFolder::new(dir);
    RunFolder::FILES.iter().map(|f| run.file(f)).collect()
}

/// SHA-256 of a step's command line and its input files' contents.
fn step_key(line: &str, inputs: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(line.as_bytes());
    for i in inputs {
        h.update([0]);
        h.update(i.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(xfer::models::zoo::sha256_file(i)?.as_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------- the split

/// OUT/split.json: which photos are held out, by path relative to DATA.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SplitRecord {
    version: u32,
    /// DATA (canonical), or the list file.
    data: String,
    /// The test folder (`--test`), when the test set is not a split of DATA.
    test_dir: Option<String>,
    /// The held-out fraction of a split.
    test_fraction: Option<f64>,
    seed: u64,
    classes: Vec<String>,
    /// (path relative to DATA, class) of the held-out photos; empty with `test_dir`.
    test: Vec<(String, String)>,
    /// (path, class) of the training photos when the split was last applied.
    train: Vec<(String, String)>,
}

/// The training and test photos: (absolute path, class).
struct Split {
    train: Vec<(PathBuf, String)>,
    test: Vec<(PathBuf, String)>,
    notes: Vec<String>,
}

fn labelled(ds: &Dataset, what: &str) -> Result<Vec<(String, String)>> {
    if ds.layout == Layout::Unlabelled || ds.classes.is_empty() {
        bail!(
            "{what} has no labels: xfer fit needs labelled photos, DATA/<class>/*.jpg (ImageFolder), DATA/<class>.<n>.jpg (Kaggle) or a --list with path,label records"
        );
    }
    Ok(ds
        .items
        .iter()
        .map(|i| {
            let class = usize::try_from(i.label)
                .ok()
                .and_then(|l| ds.classes.get(l))
                .cloned()
                .unwrap_or_default();
            (i.rel_path.clone(), class)
        })
        .collect())
}

fn resolve_split(args: &FitArgs, ds: &Dataset, data_id: &str, run: &Path) -> Result<Split> {
    let file = run.join("split.json");
    let now = labelled(ds, data_id)?;
    let abs = |rel: &str| ds.root.join(rel);
    let fraction = args.test_split.unwrap_or(DEFAULT_TEST_FRACTION);
    let mut notes = Vec::new();
    let classes_of = |v: &[(String, String)]| {
        let mut c: Vec<String> = v.iter().map(|(_, c)| c.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    let classes = classes_of(&now);
    if let Some(dir) = &args.test {
        let mut tds = dataset::scan(dir, None)?;
        tds.root = std::fs::canonicalize(dir).with_context(|| dir.display().to_string())?;
        let test = labelled(&tds, &dir.display().to_string())?;
        if classes_of(&test) != classes {
            bail!(
                "the test folder {} has the classes {:?}, DATA has {:?}; give a test folder with the same class folders",
                dir.display(),
                classes_of(&test),
                classes
            );
        }
        let record = SplitRecord {
            version: 1,
            data: data_id.to_owned(),
            test_dir: Some(s(&tds.root)),
            test_fraction: None,
            seed: args.seed,
            classes,
            test: Vec::new(),
            train: now.clone(),
        };
        write_json(&file, &record)?;
        return Ok(Split {
            train: now.iter().map(|(p, c)| (abs(p), c.clone())).collect(),
            test: test
                .iter()
                .map(|(p, c)| (tds.root.join(p), c.clone()))
                .collect(),
            notes,
        });
    }
    let record = match std::fs::read(&file) {
        Ok(bytes) => {
            let r: SplitRecord = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged; restore it, or pass another --out to split again",
                    file.display()
                )
            })?;
            let asked = (data_id, None::<&str>, Some(fraction), args.seed);
            let had = (
                r.data.as_str(),
                r.test_dir.as_deref(),
                r.test_fraction,
                r.seed,
            );
            if asked != had {
                bail!(
                    "{} records the split of {} (test fraction {}, seed {}{}); this command asks for {} (test fraction {fraction}, seed {}). Run it with the same data and settings, or pass another --out for a new split",
                    file.display(),
                    r.data,
                    r.test_fraction.map_or("none".into(), |f| f.to_string()),
                    r.seed,
                    r.test_dir.as_deref().map(|d| format!(", test folder {d}")).unwrap_or_default(),
                    data_id,
                    args.seed
                );
            }
            let by_path: std::collections::HashMap<&str, &str> =
                now.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
            let gone: Vec<&(String, String)> = r
                .test
                .iter()
                .filter(|(p, c)| by_path.get(p.as_str()) != Some(&c.as_str()))
                .collect();
            if let Some((p, c)) = gone.first() {
                bail!(
                    "the data changed since the test split in {} was made: {} held-out photo(s) are gone or relabelled (first: {p}, class {c}), so the recorded split no longer applies. Restore them, or pass another --out to split again",
                    file.display(),
                    gone.len()
                );
            }
            if classes != r.classes {
                bail!(
                    "the classes changed since the test split in {} was made ({:?}, now {:?}); pass another --out to split again",
                    file.display(),
                    r.classes,
                    classes
                );
            }
            let test: std::collections::HashSet<&str> =
                r.test.iter().map(|(p, _)| p.as_str()).collect();
            let before: std::collections::HashSet<&str> =
                r.train.iter().map(|(p, _)| p.as_str()).collect();
            let new: Vec<&str> = now
                .iter()
                .map(|(p, _)| p.as_str())
                .filter(|p| !test.contains(p) && !before.contains(p))
                .collect();
            if !new.is_empty() {
                notes.push(format!(
                    "{} photo(s) are new since the split was recorded (first: {}); they join the training split, the test split stays as recorded in {}",
                    new.len(),
                    new[0],
                    file.display()
                ));
            }
            let left = r
                .train
                .iter()
                .filter(|(p, _)| !by_path.contains_key(p.as_str()))
                .count();
            if left > 0 {
                notes.push(format!(
                    "{left} training photo(s) of the recorded split are gone; training goes on without them"
                ));
            }
            SplitRecord {
                train: now
                    .iter()
                    .filter(|(p, _)| !test.contains(p.as_str()))
                    .cloned()
                    .collect(),
                ..r
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let n_classes = classes.len();
            if n_classes < 2 {
                bail!("{data_id} has {n_classes} class(es); a classifier needs at least two");
            }
            let labels: Vec<usize> = now
                .iter()
                .map(|(_, c)| classes.binary_search(c).expect("a class of the data"))
                .collect();
            let mut counts = vec![0usize; n_classes];
            for &l in &labels {
                counts[l] += 1;
            }
            if let Some(c) = (0..n_classes).find(|&c| counts[c] < 2) {
                bail!(
                    "class {:?} has {} photo(s); each class needs at least two (one is held out for the test). Add photos, or pass a test folder with --test",
                    classes[c],
                    counts[c]
                );
            }
            let (train_rows, test_rows) =
                xfer::features::stratified_split(&labels, n_classes, fraction, args.seed);
            let pick = |rows: &[usize]| rows.iter().map(|&r| now[r].clone()).collect();
            SplitRecord {
                version: 1,
                data: data_id.to_owned(),
                test_dir: None,
                test_fraction: Some(fraction),
                seed: args.seed,
                classes,
                test: pick(&test_rows),
                train: pick(&train_rows),
            }
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    write_json(&file, &record)?;
    Ok(Split {
        train: record
            .train
            .iter()
            .map(|(p, c)| (abs(p), c.clone()))
            .collect(),
        test: record
            .test
            .iter()
            .map(|(p, c)| (abs(p), c.clone()))
            .collect(),
        notes,
    })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    write_bytes_atomic(path, text.as_bytes())?;
    Ok(())
}

/// A CSV field, quoted.
fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Writes the list `path,label` of `photos` (only when it changed, so that
/// an unchanged list keeps its bytes) and reads it back as `xfer extract
/// --list` will.
fn write_list(path: &Path, photos: &[(PathBuf, String)]) -> Result<Dataset> {
    let mut text = String::from("path,label\n");
    for (p, c) in photos {
        let p = p
            .to_str()
            .ok_or_else(|| anyhow!("{} is not a UTF-8 path; rename it", p.display()))?;
        text += &format!("{},{}\n", csv_field(p), csv_field(c));
    }
    if !std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        write_bytes_atomic(path, text.as_bytes())?;
    }
    Ok(dataset::from_list(path)?)
}

// ---------------------------------------------------------------- features

/// What the cache did for one split and backbone.
#[derive(Debug, Clone, Serialize)]
struct CacheUse {
    model: String,
    split: String,
    images: usize,
    /// Found in the cache.
    cached: usize,
    /// Extracted by this run.
    extracted: usize,
    file: PathBuf,
}

struct Features<'a> {
    args: &'a FitArgs,
    zoo: Zoo,
    cache_root: PathBuf,
    ort_version: String,
    run: PathBuf,
    used: Vec<CacheUse>,
    prepared: Prepared,
    /// Images extracted by this run: cache folder name, NUL, path.
    fresh: std::collections::HashSet<String>,
}

type Prepared = std::collections::HashMap<(String, String), PathBuf>;

impl Features<'_> {
    fn device_name(&self) -> String {
        let d = format!("{:?}", self.args.device.device).to_lowercase();
        if self.args.device.trt_fp16 {
            format!("{d}-fp16")
        } else {
            d
        }
    }

    /// The device flags of this run, for `xfer extract`.
    fn device_flags(&self) -> Vec<String> {
        let d = &self.args.device;
        let mut v = Vec::new();
        if d.device != xfer::models::runtime::Device::Cpu {
            v.extend(["--device".into(), self.device_name().replace("-fp16", "")]);
        }
        if d.device_id != 0 {
            v.extend(["--device-id".into(), d.device_id.to_string()]);
        }
        if d.allow_cpu_fallback {
            v.push("--allow-cpu-fallback".into());
        }
        if let Some(c) = &d.trt_cache {
            v.extend(["--trt-cache".into(), s(c)]);
        }
        if d.trt_fp16 {
            v.push("--trt-fp16".into());
        }
        if d.threads != 0 {
            v.extend(["--threads".into(), d.threads.to_string()]);
        }
        match d.ort_spin {
            Spin::Auto => {}
            Spin::On => v.extend(["--ort-spin".into(), "on".into()]),
            Spin::Off => v.extend(["--ort-spin".into(), "off".into()]),
        }
        if let Some(c) = &d.model_cache {
            v.extend(["--model-cache".into(), s(c)]);
        }
        v
    }

    /// The feature file of `split` (`train` or `test`, listed in `ds`) with
    /// the backbone `model`: cached rows, after extracting what the cache lacks.
    fn prepare(
        &mut self,
        runner: &mut Runner,
        model: &str,
        split: &str,
        ds: &Dataset,
        contents: &[Content],
        also: Option<(&Dataset, &[Content])>,
    ) -> Result<PathBuf> {
        if let Some(f) = self.prepared.get(&(model.to_string(), split.to_string())) {
            return Ok(f.clone());
        }
        let manifest: Manifest = self.zoo.find(model)?;
        let views = match (split, self.args.views) {
            ("train", Some(k)) => {
                let plan = xfer::images::augment::ViewPlan {
                    views: k,
                    seed: self.args.seed,
                    recipe: xfer::images::augment::AugmentRecipe::parse("tutorial")?,
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
        let key = Key::new(&manifest, &cfg, &self.ort_version, &self.device_name());
        let mut folder = Folder::open(&self.cache_root, key)?;
        for n in &folder.notes {
            eprintln!("warning: {n}");
        }
        let (device_flags, views_k, quiet, seed) = (
            self.device_flags(),
            self.args.views,
            self.args.quiet,
            self.args.seed,
        );
        let extract_args = |list: &Path, out: &Path, resume: bool| {
            let mut a = vec![
                "--model".to_string(),
                model.to_string(),
                "--list".into(),
                s(list),
                "--out".into(),
                s(out),
            ];
            if let Some(k) = views_k.filter(|_| split == "train") {
                a.extend([
                    "--views".into(),
                    k.to_string(),
                    "--seed".into(),
                    seed.to_string(),
                ]);
            }
            if quiet {
                a.push("--quiet".into());
            }
            a.extend(device_flags.iter().cloned());
            if resume {
                a.push("--resume".into());
            }
            a
        };
        // First what an interrupted run left.
        for chunk in folder.pending().to_vec() {
            if !chunk.out.exists() {
                let argv = runner.argv(
                    "extract",
                    extract_args(&chunk.list, &chunk.out, chunk.has_partial()),
                );
                runner.run(&argv)?;
            }
            folder.seal(&chunk)?;
        }
        // What the cache lacks, of this split and (in the same chunk, when
        // the job is the same) of `also`.
        let paths_of =
            |ds: &Dataset| -> Vec<String> { ds.items.iter().map(|i| s(&ds.abs_path(i))).collect() };
        let mut wanted: Vec<(String, Content)> = paths_of(ds)
            .into_iter()
            .zip(contents.iter().cloned())
            .collect();
        if let Some((ads, acontents)) = also.filter(|_| cfg.views.is_none()) {
            wanted.extend(paths_of(ads).into_iter().zip(acontents.iter().cloned()));
        }
        let missing: Vec<(String, Content)> = wanted
            .into_iter()
            .filter(|(p, c)| !folder.has(p, c))
            .collect();
        if !missing.is_empty() {
            let chunk = folder.new_chunk(&missing)?;
            let argv = runner.argv("extract", extract_args(&chunk.list, &chunk.out, false));
            runner.run(&argv)?;
            folder.seal(&chunk)?;
            let name = folder.key.folder_name();
            self.fresh
                .extend(missing.into_iter().map(|(p, _)| format!("{name}\0{p}")));
        }
        let name = folder.key.folder_name();
        let extracted = paths_of(ds)
            .iter()
            .filter(|p| self.fresh.contains(&format!("{name}\0{p}")))
            .count();
        let list = self.run.join("lists").join(format!("{split}.csv"));
        let out = self
            .run
            .join("features")
            .join(format!("{split}_{}.h5", manifest.name));
        // Up to date: the same list, job and image contents.
        let mut h = Sha256::new();
        h.update(std::fs::read(&list).with_context(|| list.display().to_string())?);
        h.update(serde_json::to_vec(&folder.key)?);
        for c in contents {
            h.update(c.sha256.as_bytes());
        }
        let stamp_key = format!("{:x}", h.finalize());
        let stamp = runner
            .stamps
            .join(format!("features-{split}-{}.stamp", manifest.name));
        let same = format!(
            "xfer extract {}",
            sh_line(&extract_args(&list, &out, false)[..])
        );
        if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|k| k == stamp_key) {
            eprintln!(
                "\n# up to date (from the cache, as `{same}` would write it): {}",
                out.display()
            );
        } else {
            let _ = std::fs::remove_file(&stamp);
            if out.exists() {
                std::fs::remove_file(&out).with_context(|| out.display().to_string())?;
            }
            let a = folder.assemble(ds, contents, &manifest, &cfg, &out)?;
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
        }
        self.used.push(CacheUse {
            model: manifest.name.clone(),
            split: split.into(),
            images: ds.items.len(),
            cached: ds.items.len() - extracted,
            extracted,
            file: out.clone(),
        });
        self.prepared
            .insert((model.to_string(), split.to_string()), out.clone());
        Ok(out)
    }
}

// ---------------------------------------------------------------- auto

/// The backbones `--model auto` tries: real weights, model file present.
fn auto_candidates(zoo: &Zoo) -> Result<(Vec<String>, Vec<String>)> {
    let mut names = Vec::new();
    let mut notes = Vec::new();
    let manifests = zoo
        .manifests()
        .with_context(|| format!("reading the zoo {}", zoo.dir.display()))?;
    for m in manifests {
        if m.weights != Weights::Pretrained {
            continue;
        }
        match m.verify_file() {
            Ok(()) => names.push(m.name.clone()),
            Err(e) if m.check_present().is_ok() => notes.push(format!("{} left out: {e}", m.name)),
            Err(_) => {}
        }
    }
    if names.is_empty() {
        bail!(
            "--model auto: no backbone with real weights is present in the zoo {}; fetch one (`xfer models fetch efficientnet_lite0`, or tools/setup.sh) or name one with --model",
            zoo.dir.display()
        );
    }
    Ok((names, notes))
}

#[derive(Debug, Clone, Serialize)]
struct Candidate {
    models: Vec<String>,
    n_features: Option<u64>,
    cv_log_loss: Option<f64>,
    cv_log_loss_sd: Option<f64>,
    cv_accuracy: Option<f64>,
    cv_accuracy_sd: Option<f64>,
    run: PathBuf,
    chosen: bool,
}

/// Scores of the logistic head of a screening run's metrics.json.
fn read_screening(dir: &Path, models: &[String]) -> Result<Candidate> {
    let file = dir.join(RunFolder::METRICS);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).with_context(|| file.display().to_string())?)
            .with_context(|| file.display().to_string())?;
    let head = m["heads"]
        .as_array()
        .and_then(|h| h.first())
        .ok_or_else(|| anyhow!("{} has no heads", file.display()))?;
    let cv = &head["cv"];
    Ok(Candidate {
        models: models.to_vec(),
        n_features: m["train"]["n_features"].as_u64(),
        cv_log_loss: cv["log_loss_mean"]
            .as_f64()
            .or(head["validation"]["log_loss"].as_f64()),
        cv_log_loss_sd: cv["log_loss_sd"].as_f64(),
        cv_accuracy: cv["accuracy_mean"]
            .as_f64()
            .or(head["validation"]["accuracy"].as_f64()),
        cv_accuracy_sd: cv["accuracy_sd"].as_f64(),
        run: dir.to_owned(),
        chosen: false,
    })
}

fn candidate_table(cands: &[Candidate]) -> String {
    let mut t = format!(
        "{:<40} {:>9} {:>20} {:>20}\n",
        "backbone(s)", "features", "cv log loss", "cv accuracy"
    );
    for c in cands {
        let pm = |m: Option<f64>, sd: Option<f64>, scale: f64, d: usize| match m {
            Some(m) => format!(
                "{} ± {}",
                fixed(scale * m, d),
                fixed(scale * sd.unwrap_or(0.0), d)
            ),
            None => "—".into(),
        };
        t += &format!(
            "{:<40} {:>9} {:>20} {:>18} %{}\n",
            c.models.join(" + "),
            c.n_features.map_or("—".into(), |n| n.to_string()),
            pm(c.cv_log_loss, c.cv_log_loss_sd, 1.0, 4),
            pm(c.cv_accuracy, c.cv_accuracy_sd, 100.0, 2),
            if c.chosen { "  *" } else { "" }
        );
    }
    t
}

// ---------------------------------------------------------------- fit

pub fn fit(cli: &Cli, args: &FitArgs) -> Result<i32> {
    validate(args)?;
    let start = std::time::Instant::now();
    let run = &args.out;
    for d in ["", "lists", "features", "report", ".fit"] {
        let p = run.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    // A second fit into the same folder is refused while this one runs.
    let _lock = xfer::util::lock::OutputLock::acquire(&run.join("fit"))?;
    let mut globals = Vec::new();
    if let Some(z) = &cli.zoo {
        globals.extend(["--zoo".to_string(), s(z)]);
    }
    if let Some(l) = &cli.ort_lib {
        globals.extend(["--ort-lib".to_string(), s(l)]);
    }
    let mut runner = Runner {
        globals,
        json: args.json,
        commands: Vec::new(),
        skipped: false,
        stamps: run.join(".fit"),
    };

    // The data and the split.
    let (ds, data_id) = match (&args.data, &args.list) {
        (Some(d), _) => {
            if !d.is_dir() {
                bail!(
                    "{} is not a folder; pass a folder of class folders (DATA/<class>/*.jpg) or --list FILE",
                    d.display()
                );
            }
            let mut ds = dataset::scan(d, None)?;
            ds.root = std::fs::canonicalize(d).with_context(|| d.display().to_string())?;
            let id = s(&ds.root);
            (ds, id)
        }
        (None, Some(l)) => {
            let ds = dataset::from_list(l)?;
            let id = s(&std::fs::canonicalize(l).with_context(|| l.display().to_string())?);
            (ds, id)
        }
        (None, None) => bail!("pass DATA (a folder) or --list FILE"),
    };
    for line in dataset::describe_ignored(&ds.ignored, 5) {
        eprintln!("{line}");
    }
    let split = resolve_split(args, &ds, &data_id, run)?;
    for n in &split.notes {
        eprintln!("note: {n}");
    }
    let train_ds = write_list(&run.join("lists/train.csv"), &split.train)?;
    let test_ds = write_list(&run.join("lists/test.csv"), &split.test)?;
    if train_ds.classes != test_ds.classes {
        bail!(
            "the training photos have the classes {:?}, the test photos {:?}; every class needs photos in both",
            train_ds.classes,
            test_ds.classes
        );
    }
    eprintln!(
        "fit: {} training and {} test photos, {} classes ({}); split recorded in {}",
        train_ds.items.len(),
        test_ds.items.len(),
        train_ds.classes.len(),
        train_ds.classes.join(", "),
        run.join("split.json").display()
    );

    // Content hashes (the cache's keys).
    let cache_root = match &args.cache {
        Some(c) => c.clone(),
        None => cache::default_root()
            .ok_or_else(|| anyhow!("no home folder for the feature cache; pass --cache DIR"))?,
    };
    std::fs::create_dir_all(&cache_root)
        .with_context(|| format!("creating the cache folder {}", cache_root.display()))?;
    let mut hasher = ContentHasher::open(&cache_root);
    let hash = |hasher: &mut ContentHasher, ds: &Dataset| -> Result<Vec<Content>> {
        let paths: Vec<PathBuf> = ds.items.iter().map(|i| ds.abs_path(i)).collect();
        paths
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
            .collect()
    };
    let train_contents = hash(&mut hasher, &train_ds)?;
    let test_contents = hash(&mut hasher, &test_ds)?;
    hasher.save()?;
    eprintln!(
        "content hashes: {} read, {} known unchanged (cache {})",
        hasher.hashed,
        hasher.trusted,
        cache_root.display()
    );

    let zoo = Zoo::locate(cli.zoo.as_deref());
    let runtime = xfer::models::runtime::Runtime::init(cli.ort_lib.as_deref())?;
    let mut features = Features {
        args,
        zoo,
        cache_root: cache_root.clone(),
        ort_version: runtime.version.clone(),
        run: run.clone(),
        used: Vec::new(),
        prepared: Prepared::new(),
        fresh: Default::default(),
    };

    // The backbone(s).
    let auto = args.models.len() == 1 && args.models[0] == "auto";
    let mut selection: Option<Vec<Candidate>> = None;
    let chosen: Vec<String> = if auto {
        let (names, notes) = auto_candidates(&features.zoo)?;
        for n in notes {
            eprintln!("note: --model auto: {n}");
        }
        let mut train_files = std::collections::BTreeMap::new();
        // With one candidate, its test photos are extracted with the training ones.
        let also = (names.len() == 1).then_some((&test_ds, &test_contents[..]));
        for m in &names {
            let f = features.prepare(&mut runner, m, "train", &train_ds, &train_contents, also)?;
            train_files.insert(m.clone(), f);
        }
        if names.len() == 1 {
            eprintln!(
                "\n--model auto: {} is the only backbone with real weights in the zoo {}",
                names[0],
                features.zoo.dir.display()
            );
            names
        } else {
            let mut combos: Vec<Vec<String>> = names.iter().map(|n| vec![n.clone()]).collect();
            combos.push(names.clone());
            let mut cands = Vec::new();
            for combo in combos {
                let dir = run.join("auto").join(combo.join("+"));
                std::fs::create_dir_all(&dir)?;
                let mut a = Vec::new();
                for m in &combo {
                    a.extend(["--train".to_string(), s(&train_files[m])]);
                }
                a.extend([
                    "--head".into(),
                    "logistic".into(),
                    "--cv".into(),
                    AUTO_FOLDS.to_string(),
                    "--seed".into(),
                    args.seed.to_string(),
                    "--out".into(),
                    s(&dir),
                    "--quiet".into(),
                ]);
                let argv = runner.argv("train", a);
                let inputs: Vec<&Path> = combo.iter().map(|m| train_files[m].as_path()).collect();
                runner.step(
                    &format!("auto-{}", combo.join("+")),
                    argv,
                    &inputs,
                    &[dir.join(RunFolder::METRICS)],
                    &train_outputs(&dir),
                )?;
                cands.push(read_screening(&dir, &combo)?);
            }
            let best = cands
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.cv_log_loss.map(|l| (i, l)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    anyhow!("--model auto: no screening run has a cross-validated log loss")
                })?;
            cands[best].chosen = true;
            eprintln!(
                "\n--model auto: {AUTO_FOLDS}-fold cross-validated log loss of the logistic head on the training split (* = kept)\n{}",
                candidate_table(&cands)
            );
            let keep = cands[best].models.clone();
            selection = Some(cands);
            keep
        }
    } else {
        args.models.clone()
    };
    let mut train_files = Vec::new();
    let mut test_files = Vec::new();
    // The test photos are extracted with the training photos (one chunk), unless
    // `--model auto` already extracted those.
    for m in &chosen {
        let test = (&test_ds, &test_contents[..]);
        train_files.push(features.prepare(
            &mut runner,
            m,
            "train",
            &train_ds,
            &train_contents,
            Some(test),
        )?);
    }
    for m in &chosen {
        test_files.push(features.prepare(
            &mut runner,
            m,
            "test",
            &test_ds,
            &test_contents,
            None,
        )?);
    }

    // The heads.
    let mut a = Vec::new();
    for f in &train_files {
        a.extend(["--train".to_string(), s(f)]);
    }
    a.extend([
        "--out".into(),
        s(run),
        "--seed".into(),
        args.seed.to_string(),
    ]);
    if args.head != HeadArg::Both {
        a.extend(["--head".into(), format!("{:?}", args.head).to_lowercase()]);
    }
    if args.quiet {
        a.push("--quiet".into());
    }
    let argv = runner.argv("train", a);
    let inputs: Vec<&Path> = train_files.iter().map(PathBuf::as_path).collect();
    let bundle = run.join(RunFolder::BEST);
    let metrics_file = run.join(RunFolder::METRICS);
    runner.step(
        "train",
        argv,
        &inputs,
        &[metrics_file.clone(), bundle.clone()],
        &train_outputs(run),
    )?;

    // The test split: scores, report, per-photo predictions.
    let report_dir = run.join("report");
    let predictions = report_dir.join("test_predictions.csv");
    let mut a = vec!["--bundle".to_string(), s(&bundle)];
    for f in &test_files {
        a.extend(["--features".to_string(), s(f)]);
    }
    a.extend([
        "--report".into(),
        s(&report_dir),
        "--csv".into(),
        s(&predictions),
    ]);
    let argv = runner.argv("evaluate", a);
    let mut inputs: Vec<&Path> = vec![bundle.as_path()];
    inputs.extend(test_files.iter().map(PathBuf::as_path));
    let page = report_dir.join("report.html");
    runner.step(
        "evaluate",
        argv,
        &inputs,
        &[page.clone(), predictions.clone()],
        &[],
    )?;

    // The audit: label issues, duplicates, leakage between the splits.
    let join = |v: &[PathBuf]| v.iter().map(|p| s(p)).collect::<Vec<_>>().join(",");
    let mut a = vec![
        "--features".to_string(),
        join(&train_files),
        "--features".into(),
        join(&test_files),
    ];
    let oof = run.join(RunFolder::OUT_OF_FOLD);
    let mut inputs: Vec<&Path> = train_files
        .iter()
        .chain(&test_files)
        .map(PathBuf::as_path)
        .collect();
    if oof.exists() {
        a.extend(["--run".into(), s(run)]);
        inputs.push(&oof);
    }
    a.extend(["--report".into(), s(&report_dir)]);
    let argv = runner.argv("audit", a);
    let audit_page = report_dir.join("audit.html");
    runner.step(
        "audit",
        argv,
        &inputs,
        std::slice::from_ref(&audit_page),
        &[],
    )?;

    // The summary: test scores with their uncertainty.
    let b = xfer::ship::bundle::Bundle::load(&bundle)?;
    let set = xfer::features::load(&test_files)?;
    let names = &b.meta.class_names;
    let rn = |r: usize| set.row_name(r);
    let labels =
        xfer::features::eval_labels(set.labels.view(), names.len(), "the test features", &rn)?;
    let probs = b.predict_proba(set.data.view());
    let eval = xfer::eval::metrics::evaluate(probs.view(), &labels, names, None);
    let correct = (eval.accuracy * eval.n_samples as f64).round() as usize;
    let (lo, hi) = xfer::eval::metrics::wilson_interval(correct, eval.n_samples, 1.959964);
    let se = xfer::eval::metrics::log_loss_standard_error(probs.view(), &labels);
    let metrics: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&metrics_file).with_context(|| metrics_file.display().to_string())?,
    )?;
    let recommended = metrics["recommended"].as_str().unwrap_or("").to_string();
    let cache_bytes = cache::disk_use(&cache_root);
    let summary = serde_json::json!({
        "data": data_id,
        "out": run,
        "split": {
            "file": run.join("split.json"),
            "train": train_ds.items.len(),
            "test": test_ds.items.len(),
            "classes": train_ds.classes,
        },
        "models": chosen,
        "model_selection": selection.as_ref().map(|c| serde_json::json!({
            "criterion": format!("{AUTO_FOLDS}-fold cross-validated log loss of the logistic head (xfer train --head logistic --cv {AUTO_FOLDS}) on the training split"),
            "candidates": c,
        })),
        "cache": {
            "dir": cache_root,
            "disk_bytes": cache_bytes,
            "content_hashes_read": hasher.hashed,
            "content_hashes_known": hasher.trusted,
            "features": features.used,
        },
        "test": {
            "n_samples": eval.n_samples,
            "accuracy": eval.accuracy,
            "accuracy_wilson95": [lo, hi],
            "log_loss": eval.log_loss,
            "log_loss_standard_error": se,
        },
        "recommended": recommended,
        "bundle": bundle,
        "report": page,
        "audit": audit_page,
        "predictions": predictions,
        "commands": runner.commands,
        "seconds": start.elapsed().as_secs_f64(),
    });
    // Recorded in the run's metrics.json, beside what `xfer train` wrote.
    let mut m = metrics;
    m["fit"] = summary.clone();
    write_bytes_atomic(
        &metrics_file,
        (serde_json::to_string_pretty(&m)? + "\n").as_bytes(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!();
        println!(
            "fit: {} on {} training photos; test split of {} photos ({}):",
            chosen.join(" + "),
            train_ds.items.len(),
            eval.n_samples,
            run.join("split.json").display()
        );
        println!(
            "  test accuracy {} % (95 % interval {}–{} %, Wilson), log loss {} ± {} (standard error)",
            fixed(100.0 * eval.accuracy, 2),
            fixed(100.0 * lo, 1),
            fixed(100.0 * hi, 1),
            fixed(eval.log_loss, 4),
            fixed(se, 4)
        );
        println!(
            "  recommended head: {} (lowest held-out log loss), saved as {}",
            if recommended.is_empty() {
                "none"
            } else {
                recommended.as_str()
            },
            bundle.display()
        );
        println!(
            "  report: {} (audit: {})",
            page.display(),
            audit_page.display()
        );
        let extracted: usize = features.used.iter().map(|u| u.extracted).sum();
        let cached: usize = features.used.iter().map(|u| u.cached).sum();
        println!(
            "  features: {cached} rows from the cache, {extracted} extracted ({} on disk in {})",
            human_bytes(cache_bytes),
            cache_root.display()
        );
        println!(
            "  classify new photos: xfer predict --bundle {} PHOTOS…",
            sh_word(&s(&bundle))
        );
        println!("\nthe plumbing commands (run any again by hand):");
        for c in &runner.commands {
            println!("  {c}");
        }
        println!("done in {} s", fixed(start.elapsed().as_secs_f64(), 1));
    }
    Ok(if runner.skipped { EXIT_SKIPPED } else { 0 })
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", fixed(b as f64 / (1u64 << 30) as f64, 2))
    } else if b >= 1 << 20 {
        format!("{} MiB", fixed(b as f64 / (1u64 << 20) as f64, 1))
    } else {
        format!("{} KiB", fixed(b as f64 / 1024.0, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(sh_word("a/b-c_d.h5"), "a/b-c_d.h5");
        assert_eq!(sh_word("it's here"), "'it'\\''s here'");
        assert_eq!(sh_word(""), "''");
    }

    #[test]
    fn fit_lines_parse_as_the_plumbing() {
        for line in [
            vec![
                "xfer", "extract", "--model", "m", "--list", "a.csv", "--out", "a.h5", "--resume",
            ],
            vec![
                "xfer", "train", "--train", "a.h5", "--out", "r", "--seed", "0", "--head",
                "logistic",
            ],
            vec![
                "xfer",
                "evaluate",
                "--bundle",
                "b",
                "--features",
                "f",
                "--report",
                "r",
                "--csv",
                "r/p.csv",
            ],
        ] {
            assert!(Cli::try_parse_from(&line).is_ok(), "{line:?}");
        }
    }
}
