//! Prediction: image files → class probabilities, the one path shared by
//! `xfer predict` and the slim `xfer-predict` binary.
//!
//! ```text
//! files ─► preprocess::load_tensor (the bundle's recipe per backbone) ─► backbone(s) ─► concat ─► bundle head ─► softmax
//! ```
//!
//! The bundle records, for every backbone it was trained on, the model's sha256
//! and the preprocessing recipe used at extraction; [`resolve_backbones`] finds
//! each one in the zoo and refuses a different model or a changed recipe before
//! any work starts. Images are decoded on a thread pool while the backbones run
//! the previous batch (as extraction does); files that cannot be read are
//! skipped and reported with their reason.
//!
//! This module needs neither HDF5 nor linfa. The CSV writers at the end are
//! shared with `xfer evaluate --csv`, so both print probabilities the same way.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{Array2, Array4, ArrayView2, Axis};
use rayon::prelude::*;

use crate::backbone::{Backbone, SessionOptions};
use crate::bundle::{BackboneRef, Bundle, BundleError};
use crate::dataset::is_image_name;
use crate::preprocess::{self, DecodeOptions, Preset, Recipe};
use crate::runtime::Runtime;
use crate::zoo::{Manifest, Zoo};

/// Errors of prediction. Every message ends with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Runtime, zoo and backbone errors.
    #[error(transparent)]
    Xfer(#[from] crate::Error),
    /// The bundle and a backbone disagree; the message names both.
    #[error("bundle {bundle}: {reason}")]
    Mismatch { bundle: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type Result<T, E = PredictError> = std::result::Result<T, E>;

/// A backbone of a bundle, found in the zoo and checked against the bundle.
#[derive(Debug, Clone)]
pub struct ResolvedBackbone {
    pub manifest: Manifest,
    /// The preprocessing the head's training features were extracted with.
    pub recipe: Recipe,
    /// Which of the manifest's presets that recipe is.
    pub preset: Preset,
}

impl ResolvedBackbone {
    /// "efficientnet_lite0 (native preprocessing)".
    pub fn describe(&self) -> String {
        let preset = match self.preset {
            Preset::Native => "native",
            Preset::Tutorial => "tutorial",
        };
        format!("{} ({preset} preprocessing)", self.manifest.name)
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(16)]
}

fn recipe_json(r: &Recipe) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| format!("{r:?}"))
}

/// Finds every backbone of `bundle` in `zoo`, in the bundle's order, and checks
/// it: same model sha256 (a manifest of another name with that sha256 is
/// accepted), same feature dimension, and a recorded preprocessing recipe that
/// is one of the manifest's presets. Reads manifests only: no ONNX Runtime, no
/// model file (the model file is checked against its manifest when it loads).
pub fn resolve_backbones(
    bundle: &Bundle,
    bundle_path: &Path,
    zoo: &Zoo,
) -> Result<Vec<ResolvedBackbone>> {
    let n = bundle.meta.backbones.len();
    if n == 0 {
        return Err(PredictError::Mismatch {
            bundle: bundle_path.to_owned(),
            reason: "names no backbone; train the head with `xfer train` on features from `xfer extract`".into(),
        });
    }
    bundle
        .meta
        .backbones
        .iter()
        .enumerate()
        .map(|(i, b)| {
            resolve_one(b, zoo).map_err(|reason| PredictError::Mismatch {
                bundle: bundle_path.to_owned(),
                reason: if n > 1 {
                    format!("backbone {} of {n}: {reason}", i + 1)
                } else {
                    reason
                },
            })
        })
        .collect()
}

fn resolve_one(b: &BackboneRef, zoo: &Zoo) -> std::result::Result<ResolvedBackbone, String> {
    if !b.known() || b.preprocess.is_empty() {
        return Err(format!(
            "its head was trained on {} features without provenance (tutorial-layout files: no model sha256, no preprocessing recorded), so xfer cannot make the same features from images; extract the features with `xfer extract` and train the head again",
            b.name
        ));
    }
    let zoo_file = zoo.dir.join(format!("{}.toml", b.name));
    let by_name = if zoo_file.exists() {
        Some(Manifest::from_file(&zoo_file).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let manifest = match by_name {
        Some(m) if m.sha256 == b.model_sha256 => m,
        other => {
            // Another manifest with the same model (renamed)?
            let same_model = zoo
                .manifests()
                .ok()
                .and_then(|ms| ms.into_iter().find(|m| m.sha256 == b.model_sha256));
            match (same_model, other) {
                (Some(m), _) => m,
                (None, Some(m)) => {
                    return Err(format!(
                        "its head was trained on features of {} with model sha256 {}…, but the zoo's {} ({}) is model sha256 {}…: a different model. Pass --zoo DIR holding the manifest and ONNX file used for training, or extract features with this model and train the head again",
                        b.name,
                        short(&b.model_sha256),
                        m.name,
                        zoo_file.display(),
                        short(&m.sha256)
                    ))
                }
                (None, None) => {
                    return Err(format!(
                        "its head needs backbone {} (model sha256 {}…), which is not in the zoo {}; pass --zoo DIR holding its manifest ({}.toml) and ONNX file, or generate it (see `xfer models`)",
                        b.name,
                        short(&b.model_sha256),
                        zoo.dir.display(),
                        b.name
                    ))
                }
            }
        }
    };
    if manifest.output.feature_dim != b.n_features {
        return Err(format!(
            "its head expects {} features from {}, but the manifest of {} gives {}; use the manifest the head was trained with",
            b.n_features, b.name, manifest.name, manifest.output.feature_dim
        ));
    }
    let recipe: Recipe = serde_json::from_str(&b.preprocess).map_err(|e| {
        format!(
            "its preprocessing record for {} is unreadable ({e}): {}; train the head again on features from `xfer extract`",
            b.name, b.preprocess
        )
    })?;
    let presets = [Preset::Native, Preset::Tutorial];
    let preset = presets
        .into_iter()
        .find(|&p| manifest.preprocess.with_preset(p) == recipe);
    let Some(preset) = preset else {
        return Err(format!(
            "its head was trained on {} features preprocessed as {}, but the manifest of {} now gives {} (native) and {} (--preset tutorial): the backbone's preprocessing changed. Use the manifest the head was trained with (--zoo DIR), or extract features again and retrain",
            b.name,
            recipe_json(&recipe),
            manifest.name,
            recipe_json(&manifest.preprocess),
            recipe_json(&manifest.preprocess.with_preset(Preset::Tutorial))
        ));
    };
    Ok(ResolvedBackbone {
        manifest,
        recipe,
        preset,
    })
}

/// Images found in the paths given: files as given, folders searched
/// recursively (sorted; hidden entries and non-image extensions left out).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub images: Vec<PathBuf>,
    /// Files inside the folders that are not images by extension.
    pub ignored: Vec<PathBuf>,
}

pub fn collect_images(paths: &[PathBuf]) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| PredictError::Input {
            path: p.clone(),
            reason: format!("{e}; pass image files or folders of images"),
        })?;
        if meta.is_dir() {
            walk(p, &mut inputs)?;
        } else {
            inputs.images.push(p.clone());
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, inputs: &mut Inputs) -> Result<()> {
    let err = |e: std::io::Error| PredictError::Input {
        path: dir.to_owned(),
        reason: format!("cannot list the folder: {e}"),
    };
    let mut entries: Vec<(String, PathBuf, bool)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err)? {
        let e = e.map_err(err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        entries.push((name, path, is_dir));
    }
    entries.sort();
    for (name, path, is_dir) in entries {
        if is_dir {
            walk(&path, inputs)?;
        } else if is_image_name(&name) {
            inputs.images.push(path);
        } else {
            inputs.ignored.push(path);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PredictorOptions {
    pub session: SessionOptions,
    pub decode: DecodeOptions,
    /// Images per backbone run.
    pub batch: usize,
    /// Threads decoding images (0 = one per core).
    pub decode_threads: usize,
}

impl Default for PredictorOptions {
    fn default() -> Self {
        PredictorOptions {
            session: SessionOptions::default(),
            decode: DecodeOptions::default(),
            batch: 32,
            decode_threads: 0,
        }
    }
}

/// Where the time of a run went (decoding overlaps the backbones).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Decoding and preprocessing, summed over batches (on the decoder threads).
    pub decode: Duration,
    /// Backbone runs.
    pub backbones: Duration,
    /// Concatenation, head and softmax.
    pub head: Duration,
    /// The whole run.
    pub total: Duration,
}

/// Results of [`Predictor::predict`], in input order.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// The images that were predicted.
    pub paths: Vec<PathBuf>,
    /// [n_predicted, n_classes]
    pub probs: Array2<f32>,
    /// Files that could not be read or decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    pub timings: Timings,
}

/// Progress after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub skipped: usize,
}

/// A bundle with its backbones loaded.
pub struct Predictor {
    pub bundle: Bundle,
    pub backbones: Vec<Backbone>,
    resolved: Vec<ResolvedBackbone>,
    /// Distinct recipes, and the recipe of each backbone.
    recipes: Vec<Recipe>,
    recipe_of: Vec<usize>,
    opts: PredictorOptions,
    pool: rayon::ThreadPool,
}

/// One decoded batch on its way to the backbones.
struct Decoded {
    /// Per distinct recipe: [n_ok, 3, crop, crop]
    tensors: Vec<Array4<f32>>,
    paths: Vec<PathBuf>,
    skipped: Vec<(PathBuf, String)>,
    seconds: Duration,
}

impl Predictor {
    /// Loads the backbones of `resolved` (from [`resolve_backbones`]) on the
    /// requested execution provider.
    pub fn load(
        runtime: &Runtime,
        bundle: Bundle,
        resolved: Vec<ResolvedBackbone>,
        opts: PredictorOptions,
    ) -> Result<Predictor> {
        if opts.batch == 0 {
            return Err(PredictError::Config(
                "the batch size must be at least 1".into(),
            ));
        }
        let width: usize = resolved.iter().map(|r| r.manifest.output.feature_dim).sum();
        if width != bundle.mlp.n_features() || resolved.len() != bundle.meta.backbones.len() {
            return Err(PredictError::Config(format!(
                "the backbones give {width} features, the head expects {}; resolve the bundle's backbones with resolve_backbones",
                bundle.mlp.n_features()
            )));
        }
        let mut recipes: Vec<Recipe> = Vec::new();
        let mut recipe_of = Vec::new();
        for r in &resolved {
            let k = match recipes.iter().position(|x| *x == r.recipe) {
                Some(k) => k,
                None => {
                    recipes.push(r.recipe.clone());
                    recipes.len() - 1
                }
            };
            recipe_of.push(k);
        }
        let backbones = resolved
            .iter()
            .map(|r| Backbone::load(runtime, &r.manifest, &opts.session))
            .collect::<crate::Result<Vec<_>>>()?;
        let threads = if opts.decode_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.decode_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("xfer-decode-{i}"))
            .build()
            .map_err(|e| PredictError::Config(format!("cannot start decoder threads: {e}")))?;
        Ok(Predictor {
            bundle,
            backbones,
            resolved,
            recipes,
            recipe_of,
            opts,
            pool,
        })
    }

    pub fn resolved(&self) -> &[ResolvedBackbone] {
        &self.resolved
    }

    pub fn class_names(&self) -> &[String] {
        &self.bundle.meta.class_names
    }

    /// Class probabilities of every image in `paths`; unreadable files are
    /// skipped and listed. Memory holds at most three batches of pixels.
    pub fn predict(
        &mut self,
        paths: &[PathBuf],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Predictions> {
        let start = Instant::now();
        let n_classes = self.bundle.mlp.n_classes();
        let mut out_paths = Vec::with_capacity(paths.len());
        let mut blocks: Vec<Array2<f32>> = Vec::new();
        let mut skipped = Vec::new();
        let mut timings = Timings::default();
        progress(Progress {
            done: 0,
            total: paths.len(),
            skipped: 0,
        });
        let (tx, rx) = crossbeam_channel::bounded::<Decoded>(2);
        let Predictor {
            bundle,
            backbones,
            recipes,
            recipe_of,
            opts,
            pool,
            ..
        } = self;
        let (recipes, decode, batch) = (&*recipes, &opts.decode, opts.batch);
        std::thread::scope(|scope| -> Result<()> {
            let producer = scope.spawn(move || {
                for chunk in paths.chunks(batch) {
                    let decoded = pool.install(|| decode_batch(chunk, recipes, decode));
                    if tx.send(decoded).is_err() {
                        break; // the consumer stopped on an error
                    }
                }
            });
            let result = (|| -> Result<()> {
                for batch in rx.iter() {
                    timings.decode += batch.seconds;
                    let n = batch.paths.len();
                    if n > 0 {
                        let t = Instant::now();
                        let mut feats = Vec::with_capacity(backbones.len());
                        for (b, &k) in backbones.iter_mut().zip(recipe_of.iter()) {
                            feats.push(b.run(batch.tensors[k].view(), false)?.features);
                            // [n, d_b]
                        }
                        timings.backbones += t.elapsed();
                        let t = Instant::now();
                        let probs = head_probs(bundle, &feats); // [n, n_classes]
                        timings.head += t.elapsed();
                        blocks.push(probs);
                    }
                    out_paths.extend(batch.paths);
                    skipped.extend(batch.skipped);
                    progress(Progress {
                        done: out_paths.len() + skipped.len(),
                        total: paths.len(),
                        skipped: skipped.len(),
                    });
                }
                Ok(())
            })();
            drop(rx);
            producer.join().expect("decoder thread panicked");
            result
        })?;
        let mut probs = Array2::<f32>::zeros((out_paths.len(), n_classes)); // [n_predicted, n_classes]
        let mut row = 0;
        for b in blocks {
            let r = b.nrows();
            probs.slice_mut(ndarray::s![row..row + r, ..]).assign(&b);
            row += r;
        }
        timings.total = start.elapsed();
        Ok(Predictions {
            paths: out_paths,
            probs,
            skipped,
            timings,
        })
    }
}

/// Concatenates the backbones' features (in the bundle's order) and runs the head.
///
/// # Shapes
/// `feats[b]`: [n_samples, d_b] → [n_samples, n_classes]
fn head_probs(bundle: &Bundle, feats: &[Array2<f32>]) -> Array2<f32> {
    if feats.len() == 1 {
        return bundle.predict_proba(feats[0].view());
    }
    let views: Vec<ArrayView2<f32>> = feats.iter().map(|f| f.view()).collect();
    let x = ndarray::concatenate(Axis(1), &views).expect("backbone outputs have equal rows"); // [n, Σ d_b]
    bundle.predict_proba(x.view())
}

/// Decodes a batch once per distinct recipe, with [`preprocess::load_tensor`]
/// (as extraction does, so the same image gives the same tensor), and keeps
/// the images that every recipe could read.
fn decode_batch(paths: &[PathBuf], recipes: &[Recipe], opts: &DecodeOptions) -> Decoded {
    let t = Instant::now();
    let n = paths.len();
    let mut errors: Vec<Option<String>> = vec![None; n];
    let mut bufs = Vec::with_capacity(recipes.len());
    for recipe in recipes {
        let len = recipe.tensor_len();
        let mut buf = vec![0f32; n * len];
        let results: Vec<crate::Result<()>> = buf
            .par_chunks_mut(len)
            .zip(paths.par_iter())
            .map(|(out, p)| preprocess::load_tensor(p, recipe, opts, out))
            .collect();
        for (e, r) in errors.iter_mut().zip(results) {
            if let (None, Err(err)) = (&e, r) {
                *e = Some(match err {
                    crate::Error::Image { reason, .. } => reason,
                    other => other.to_string(),
                });
            }
        }
        bufs.push(buf);
    }
    let keep: Vec<usize> = (0..n).filter(|&i| errors[i].is_none()).collect();
    let tensors = recipes
        .iter()
        .zip(bufs)
        .map(|(recipe, mut buf)| {
            let len = recipe.tensor_len();
            for (k, &i) in keep.iter().enumerate() {
                if k != i {
                    buf.copy_within(i * len..(i + 1) * len, k * len);
                }
            }
            buf.truncate(keep.len() * len);
            let c = recipe.crop as usize;
            Array4::from_shape_vec((keep.len(), 3, c, c), buf).expect("buffer holds kept images")
            // [n_ok, 3, c, c]
        })
        .collect();
    let mut skipped = Vec::new();
    for (p, e) in paths.iter().zip(errors) {
        if let Some(reason) = e {
            skipped.push((p.clone(), reason));
        }
    }
    Decoded {
        tensors,
        paths: keep.iter().map(|&i| paths[i].clone()).collect(),
        skipped,
        seconds: t.elapsed(),
    }
}

// ---------------------------------------------------------------------------
// Output files.

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// Writes `path,class,<one column per class>`: the predicted class and every
/// class's probability (shortest decimal that reads back as the same f32).
///
/// # Shapes
/// `probs`: [n_samples, n_classes]; `names`: [n_samples]
pub fn write_csv(
    w: &mut dyn Write,
    names: &[String],
    probs: ArrayView2<f32>,
    class_names: &[String],
) -> std::io::Result<()> {
    assert_eq!(names.len(), probs.nrows(), "one name per row");
    assert_eq!(
        class_names.len(),
        probs.ncols(),
        "one class name per column"
    );
    write!(w, "path,class")?;
    for c in class_names {
        write!(w, ",{}", csv_field(c))?;
    }
    writeln!(w)?;
    for (name, row) in names.iter().zip(probs.rows()) {
        let (k, _) = crate::head::argmax(row);
        write!(w, "{},{}", csv_field(name), csv_field(&class_names[k]))?;
        for p in row {
            write!(w, ",{p}")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// The Kaggle id of an image: its file name without the extension (`test1/17.jpg` → `17`).
pub fn kaggle_id(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What a Kaggle submission says about an image that could not be read: it
/// needs a row for every id, and 0.5 is the guess that costs least (ln 2).
pub const KAGGLE_UNREADABLE: f32 = 0.5;

/// Rows of a Kaggle submission: `(id, probability of the positive class,
/// clipped into [clip, 1 − clip])`, sorted by id (numerically when every id
/// is a number); images in `unreadable` get [`KAGGLE_UNREADABLE`]. Two images
/// with the same id are an error.
///
/// # Shapes
/// `probs`: [n_samples, n_classes]
pub fn kaggle_rows(
    paths: &[PathBuf],
    probs: ArrayView2<f32>,
    positive: usize,
    clip: f64,
    unreadable: &[PathBuf],
) -> std::result::Result<Vec<(String, f32)>, String> {
    let (lo, hi) = (clip as f32, (1.0 - clip) as f32);
    let mut rows: Vec<(String, f32, &Path)> = paths
        .iter()
        .zip(probs.rows())
        .map(|(p, row)| (kaggle_id(p), row[positive].clamp(lo, hi), p.as_path()))
        .chain(
            unreadable
                .iter()
                .map(|p| (kaggle_id(p), KAGGLE_UNREADABLE.clamp(lo, hi), p.as_path())),
        )
        .collect();
    let numeric = rows.iter().all(|(id, ..)| id.parse::<u64>().is_ok());
    if numeric {
        rows.sort_by_key(|(id, ..)| id.parse::<u64>().expect("checked numeric"));
    } else {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
    }
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!(
                "{} and {} both have the id {}; a submission needs one row per id: predict one test folder",
                w[0].2.display(),
                w[1].2.display(),
                w[0].0
            ));
        }
    }
    Ok(rows.into_iter().map(|(id, p, _)| (id, p)).collect())
}

/// Writes `id,label` rows.
pub fn write_kaggle(w: &mut dyn Write, rows: &[(String, f32)]) -> std::io::Result<()> {
    writeln!(w, "id,label")?;
    for (id, p) in rows {
        writeln!(w, "{},{p}", csv_field(id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a/b.jpg"), "a/b.jpg");
        assert_eq!(csv_field("a,b.jpg"), "\"a,b.jpg\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let mut out = Vec::new();
        let p = array![[0.25f32, 0.75], [0.6, 0.4]];
        write_csv(
            &mut out,
            &["x.jpg".into(), "y,1.jpg".into()],
            p.view(),
            &["cat".into(), "dog".into()],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "path,class,cat,dog\nx.jpg,dog,0.25,0.75\n\"y,1.jpg\",cat,0.6,0.4\n"
        );
    }

    #[test]
    fn kaggle_rows_are_clipped_sorted_by_number_and_unique() {
        let paths: Vec<PathBuf> = ["t/10.jpg", "t/2.jpg", "t/1.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let p = array![[0.5f32, 0.5], [0.999, 0.001], [0.0, 1.0]];
        let rows = kaggle_rows(&paths, p.view(), 1, 0.005, &[]).unwrap();
        assert_eq!(
            rows,
            vec![
                ("1".to_string(), 0.995),
                ("2".to_string(), 0.005),
                ("10".to_string(), 0.5)
            ]
        );
        let mut out = Vec::new();
        write_kaggle(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,label\n1,0.995\n2,0.005\n10,0.5\n"
        );
        let dup: Vec<PathBuf> = ["a/1.jpg", "b/1.jpg"].iter().map(PathBuf::from).collect();
        let e = kaggle_rows(&dup, p.slice(ndarray::s![..2, ..]), 1, 0.0, &[]).unwrap_err();
        assert!(e.contains("both have the id 1"), "{e}");
        // Non-numeric ids sort as text; no clipping with 0; unreadable images get 0.5.
        let named: Vec<PathBuf> = ["b.jpg", "a.jpg"].iter().map(PathBuf::from).collect();
        let bad = [PathBuf::from("c.jpg")];
        let rows = kaggle_rows(&named, p.slice(ndarray::s![1.., ..]), 1, 0.0, &bad).unwrap();
        assert_eq!(
            rows,
            vec![
                ("a".to_string(), 1.0),
                ("b".to_string(), 0.001),
                ("c".to_string(), 0.5)
            ]
        );
    }

    #[test]
    fn folders_are_walked_sorted_and_non_images_ignored() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "b/2.jpg",
            "b/1.PNG",
            "a.jpg",
            "b/c/3.webp",
            "b/notes.txt",
            ".hidden/x.jpg",
        ] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let inputs = collect_images(&[t.path().join("b"), t.path().join("a.jpg")]).unwrap();
        let rel: Vec<String> = inputs
            .images
            .iter()
            .map(|p| p.strip_prefix(t.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["b/1.PNG", "b/2.jpg", "b/c/3.webp", "a.jpg"]);
        assert_eq!(inputs.ignored.len(), 1);
        let e = collect_images(&[t.path().join("nope")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("pass image files"), "{e}");
    }
}
