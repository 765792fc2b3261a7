//! The one path from image files to features, shared by extraction and
//! prediction:
//!
//! ```text
//! files ─► decoder pool (decode + preprocess, once per recipe) ─► bounded channel (2 batches)
//!       ─► backbone(s) ─► Sink (HDF5 writer for `extract`, head for `predict`)
//! ```
//!
//! Images are decoded and preprocessed on a thread pool while the backbones
//! run the previous batch; at most two decoded batches wait, so memory stays
//! flat however many files there are. Files that cannot be read or decoded are
//! handed to the sink as skipped, with their reason; they never stop the run.
//! The backbones (and the sink) are opened on the consumer thread while the
//! decoders already work on the first batches, so model loading costs no time
//! of its own. Decoder priority and ONNX Runtime spinning: [`schedule`].

pub mod schedule;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{Array2, Array4};
use rayon::prelude::*;

use crate::error::Error;
use crate::images::augment::ViewPlan;
use crate::images::preprocess::{self, DecodeOptions, Recipe};
use crate::models::backbone::Backbone;
use schedule::DecoderPriority;

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Images per backbone run.
    pub batch: usize,
    /// Threads decoding and resizing images (0 = one per core).
    pub decode_threads: usize,
    pub decode: DecodeOptions,
    /// While the backbones are busy, run the decoders only on otherwise idle
    /// CPU time (Linux `SCHED_IDLE`), and at normal priority while they wait
    /// for images. Applied only when every backbone runs on the CPU.
    pub background_decoders: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch: 32,
            decode_threads: 0,
            decode: DecodeOptions::default(),
            background_decoders: true,
        }
    }
}

/// The most bytes of preprocessed tensors one batch may hold (up to three
/// batches are in memory at once: two waiting, one in the backbones). A GPU
/// run of 1024 images of 224² is 0.6 GB; 256 of 518² is 0.8 GB.
pub(crate) const MAX_BATCH_BYTES: u64 = 4 << 30;

/// Refuses a batch whose tensors would take more than [`MAX_BATCH_BYTES`]:
/// `batch` images (`--batch`) with `views` tensors each (`--views`, 1 without)
/// of every recipe's size, before anything is allocated.
pub fn check_batch_size(batch: usize, views: usize, recipes: &[Recipe]) -> Result<(), Error> {
    if batch == 0 {
        return Err(Error::Setting {
            setting: crate::error::Setting::Batch,
            problem: "must be at least 1".into(),
        });
    }
    let views = views.max(1);
    // A batch holds max(1, batch / K) images of K views each.
    let tensors = ((batch / views).max(1) as u64).saturating_mul(views as u64);
    let per_tensor: u64 = recipes.iter().map(|r| r.tensor_len() as u64 * 4).sum();
    let bytes = tensors.saturating_mul(per_tensor);
    if bytes > MAX_BATCH_BYTES {
        let sides: Vec<String> = recipes
            .iter()
            .map(|r| format!("3×{0}×{0}", r.crop))
            .collect();
        return Err(Error::BatchTooLarge {
            tensors,
            sides: sides.join(" + "),
            gib: bytes as f64 / f64::from(1u32 << 30),
            limit_gib: MAX_BATCH_BYTES >> 30,
            views,
        });
    }
    Ok(())
}

impl PipelineConfig {
    /// Decoder threads, 0 resolved to one per core.
    pub(crate) fn threads(&self) -> usize {
        if self.decode_threads > 0 {
            self.decode_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A backbone and the recipe (an index into the run's recipes) its input is
/// preprocessed with.
pub(crate) struct Stage {
    pub(crate) backbone: Backbone,
    pub(crate) recipe: usize,
}

/// Augmented views of every input ([`run_views`]): `plan.views` tensors per
/// image from one decode, view 0 the plain tensor, the others chosen by the
/// plan from the image's key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Views<'a> {
    pub(crate) plan: &'a ViewPlan,
    /// Per input: the path relative to the dataset root that seeds its views.
    pub(crate) keys: &'a [String],
}

/// One batch as it leaves the backbones.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Indices into the run's inputs of the images that decoded, in input order.
    pub(crate) rows: Vec<usize>,
    /// Per stage: [rows.len() × views, feature_dim], image-major (row
    /// `i * views + v` is view `v` of image `rows[i]`).
    pub(crate) features: Vec<Array2<f32>>,
    /// Feature rows per image: 1, or K with [`run_views`].
    pub(crate) views: usize,
    /// Inputs that could not be read or decoded (index, reason), in input order.
    pub(crate) skipped: Vec<(usize, String)>,
}

/// Moves the images whose features (any view, any backbone) are not finite
/// to `skipped`, with the reason: a model that gives NaN or ±inf for an image
/// must not put it into a feature file or a prediction. `names` are the
/// stages' backbones. `skipped` stays in input order.
pub(crate) fn skip_non_finite(batch: &mut Batch, names: &[&str]) {
    let k = batch.views.max(1);
    let bad_stage = |i: usize| {
        batch.features.iter().position(|f| {
            f.slice(ndarray::s![i * k..(i + 1) * k, ..])
                .iter()
                .any(|v| !v.is_finite())
        })
    };
    let bad: Vec<(usize, usize)> = (0..batch.rows.len())
        .filter_map(|i| bad_stage(i).map(|s| (i, s)))
        .collect();
    if bad.is_empty() {
        return;
    }
    let keep: Vec<usize> = (0..batch.rows.len())
        .filter(|i| !bad.iter().any(|(b, _)| b == i))
        .collect();
    for (i, stage) in &bad {
        let backbone = if names.len() > 1 {
            format!(
                "backbone {} gave",
                names.get(*stage).copied().unwrap_or("?")
            )
        } else {
            "the backbone gave".to_string()
        };
        batch.skipped.push((
            batch.rows[*i],
            format!("{backbone} non-finite features (NaN or infinity) for this image; they are not stored or used"),
        ));
    }
    batch.skipped.sort_by_key(|(index, _)| *index);
    let rows: Vec<usize> = keep.iter().flat_map(|&i| i * k..(i + 1) * k).collect();
    for f in &mut batch.features {
        *f = f.select(ndarray::Axis(0), &rows);
    }
    batch.rows = keep.iter().map(|&i| batch.rows[i]).collect();
}

/// Where batches go: the HDF5 writer of `extract`, the head of `predict`.
pub(crate) trait Sink {
    type Error;
    /// Takes one batch. Batches arrive in input order; every input is in
    /// exactly one batch, as a row or as skipped.
    fn consume(&mut self, batch: Batch) -> Result<(), Self::Error>;
}

/// Progress after each batch, counted over this run's inputs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub skipped: usize,
}

/// Where the time of a run went (decoding overlaps the backbones).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Decoding and preprocessing, summed over batches (on the decoder threads).
    pub decode: Duration,
    /// Backbone runs.
    pub backbones: Duration,
    /// The sink (writing features, or the head and softmax).
    pub sink: Duration,
    /// The whole run, model loading included.
    pub total: Duration,
}

/// What a run hands back: the stages and the sink (to be used again), and timings.
pub(crate) struct Finished<S> {
    pub(crate) stages: Vec<Stage>,
    pub(crate) sink: S,
    pub(crate) timings: Timings,
}

/// One preprocessed batch on its way to the backbones.
struct Decoded {
    /// Per recipe: [n_ok × views, 3, crop, crop]
    tensors: Vec<Array4<f32>>,
    rows: Vec<usize>,
    skipped: Vec<(usize, String)>,
    seconds: Duration,
}

/// Runs every file of `inputs` through the stages that `open` returns and
/// into its sink. `open` runs on the consumer thread while the decoders start
/// on the first batches; its errors come back unchanged. `recipes` are the
/// distinct preprocessing recipes; each stage names the one it takes.
pub(crate) fn run<S, E>(
    inputs: &[PathBuf],
    recipes: &[Recipe],
    open: impl FnOnce() -> Result<(Vec<Stage>, S), E>,
    cfg: &PipelineConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Finished<S>, E>
where
    S: Sink,
    E: From<Error> + From<S::Error>,
{
    run_inner(inputs, recipes, None, open, cfg, progress)
}

/// [`run`] with `views.plan.views` feature rows per image: each image is
/// decoded once per recipe and cut into all its views. A pipeline batch holds
/// `max(1, cfg.batch / K)` images, so a backbone run still takes about
/// `cfg.batch` tensors.
pub(crate) fn run_views<S, E>(
    inputs: &[PathBuf],
    recipes: &[Recipe],
    views: Views,
    open: impl FnOnce() -> Result<(Vec<Stage>, S), E>,
    cfg: &PipelineConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Finished<S>, E>
where
    S: Sink,
    E: From<Error> + From<S::Error>,
{
    if views.keys.len() != inputs.len() {
        return Err(Error::Config(format!(
            "{} view keys for {} inputs",
            views.keys.len(),
            inputs.len()
        ))
        .into());
    }
    run_inner(inputs, recipes, Some(views), open, cfg, progress)
}

fn run_inner<S, E>(
    inputs: &[PathBuf],
    recipes: &[Recipe],
    views: Option<Views>,
    open: impl FnOnce() -> Result<(Vec<Stage>, S), E>,
    cfg: &PipelineConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Finished<S>, E>
where
    S: Sink,
    E: From<Error> + From<S::Error>,
{
    let start = Instant::now();
    let k = views.map_or(1, |v| v.plan.views);
    check_batch_size(cfg.batch, k, recipes)?;
    let images_per_batch = (cfg.batch / k).max(1);
    let priority = DecoderPriority::new(cfg.background_decoders);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads())
        .thread_name(|i| format!("xfer-decode-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start decoder threads: {e}")))?;
    let mut timings = Timings::default();
    // At most two decoded batches wait for the backbones: flat memory, and the
    // decoders work on batch k+1 while the backbones run batch k.
    let (tx, rx) = crossbeam_channel::bounded::<Decoded>(2);
    let finished = std::thread::scope(|scope| -> Result<(Vec<Stage>, S), E> {
        let producer = scope.spawn(|| {
            let mut first = 0;
            for chunk in inputs.chunks(images_per_batch) {
                let keys = views.map(|v| (v.plan, &v.keys[first..first + chunk.len()]));
                let decoded = pool
                    .install(|| decode_batch(chunk, first, recipes, keys, &cfg.decode, &priority));
                first += chunk.len();
                if tx.send(decoded).is_err() {
                    break; // the consumer stopped on an error
                }
            }
            drop(tx);
        });
        let result = (|| -> Result<(Vec<Stage>, S), E> {
            let (mut stages, mut sink) = open()?;
            if let Some(s) = stages.iter().find(|s| s.recipe >= recipes.len()) {
                return Err(Error::Config(format!(
                    "backbone {} names recipe {} of {}",
                    s.backbone.manifest.name,
                    s.recipe,
                    recipes.len()
                ))
                .into());
            }
            priority.enable(stages.iter().all(|s| s.backbone.on_cpu()));
            let (mut done, mut skipped) = (0, 0);
            progress(Progress {
                done,
                total: inputs.len(),
                skipped,
            });
            loop {
                let batch = match rx.try_recv() {
                    Ok(batch) => batch,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        // The backbones wait for the decoders: let them compete
                        // for the CPU at normal priority until a batch arrives.
                        priority.set_backbone_waiting(true);
                        let next = rx.recv();
                        priority.set_backbone_waiting(false);
                        match next {
                            Ok(batch) => batch,
                            Err(_) => break,
                        }
                    }
                };
                timings.decode += batch.seconds;
                let t = Instant::now();
                let mut features = Vec::with_capacity(stages.len());
                for stage in stages.iter_mut() {
                    let dim = stage.backbone.feature_dim();
                    features.push(if batch.rows.is_empty() {
                        Array2::zeros((0, dim))
                    } else {
                        stage
                            .backbone
                            .run(batch.tensors[stage.recipe].view(), false)?
                            .features // [n_ok, dim]
                    });
                }
                timings.backbones += t.elapsed();
                let mut out = Batch {
                    rows: batch.rows,
                    features,
                    views: k,
                    skipped: batch.skipped,
                };
                let names: Vec<&str> = stages
                    .iter()
                    .map(|s| s.backbone.manifest.name.as_str())
                    .collect();
                skip_non_finite(&mut out, &names);
                done += out.rows.len() + out.skipped.len();
                skipped += out.skipped.len();
                let t = Instant::now();
                sink.consume(out)?;
                timings.sink += t.elapsed();
                progress(Progress {
                    done,
                    total: inputs.len(),
                    skipped,
                });
            }
            Ok((stages, sink))
        })();
        drop(rx);
        producer.join().expect("decoder thread panicked");
        result
    })?;
    timings.total = start.elapsed();
    let (stages, sink) = finished;
    Ok(Finished {
        stages,
        sink,
        timings,
    })
}

/// Runs the decoding and preprocessing of `path`, a panic in it (a bug in
/// xfer or a library) turned into that image's error, so the image is skipped
/// with its reason and the run goes on. (A crash that is not a panic, such as
/// a segmentation fault in a library's unsafe code, cannot be caught in the
/// process; xfer fixes those where they live instead, as the resize of issue
/// 26, rather than decoding in child processes.)
fn guarded(path: &std::path::Path, f: impl FnOnce() -> crate::Result<()>) -> crate::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::Image {
            path: path.to_owned(),
            reason: format!(
                "xfer failed inside its decoder ({}); the image was skipped, please report it",
                crate::error::panic_message(payload.as_ref()).unwrap_or("a panic")
            ),
        })
    })
}

/// Decodes a batch once per recipe with [`preprocess::load_tensor`] (the one
/// preprocessing function, so extraction and prediction make the same tensor
/// of the same file), and keeps the images that every recipe could read.
/// `first` is the input index of `paths[0]`. With `views` (the plan and the
/// keys of `paths`), each decoded image also gives its augmented views
/// ([`preprocess::view_tensor`]) after the plain tensor.
fn decode_batch(
    paths: &[PathBuf],
    first: usize,
    recipes: &[Recipe],
    views: Option<(&ViewPlan, &[String])>,
    opts: &DecodeOptions,
    priority: &DecoderPriority,
) -> Decoded {
    let t = Instant::now();
    let n = paths.len();
    let k = views.map_or(1, |(plan, _)| plan.views);
    let mut errors: Vec<Option<String>> = vec![None; n];
    let mut bufs = Vec::with_capacity(recipes.len());
    for recipe in recipes {
        let len = recipe.tensor_len();
        let mut buf = vec![0f32; n * k * len];
        let results: Vec<crate::Result<()>> = buf
            .par_chunks_mut(k * len)
            .zip(paths.par_iter())
            .enumerate()
            .map(|(i, (out, p))| {
                priority.apply();
                guarded(p, || match views {
                    None => preprocess::load_tensor(p, recipe, opts, out),
                    Some((plan, keys)) => {
                        let img = preprocess::decode(p, opts, recipe.resize)?;
                        let (w, h) = img.dimensions();
                        for (v, slot) in out.chunks_exact_mut(len).enumerate() {
                            match plan.ops(&keys[i], v, w, h) {
                                None => preprocess::to_tensor(&img, recipe, slot),
                                Some(ops) => preprocess::view_tensor(&img, recipe, &ops, slot),
                            }
                        }
                        Ok(())
                    }
                })
            })
            .collect();
        for (e, r) in errors.iter_mut().zip(results) {
            if let (None, Err(err)) = (&e, r) {
                *e = Some(match err {
                    Error::Image { reason, .. } => reason,
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
            let len = k * recipe.tensor_len();
            for (k, &i) in keep.iter().enumerate() {
                if k != i {
                    buf.copy_within(i * len..(i + 1) * len, k * len);
                }
            }
            buf.truncate(keep.len() * len);
            let c = recipe.crop as usize;
            Array4::from_shape_vec((keep.len() * k, 3, c, c), buf)
                .expect("buffer holds kept images")
            // [n_ok × k, 3, c, c]
        })
        .collect();
    let skipped = errors
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| e.map(|reason| (first + i, reason)))
        .collect();
    Decoded {
        tensors,
        rows: keep.iter().map(|&i| first + i).collect(),
        skipped,
        seconds: t.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_decoding_is_that_images_error() {
        let path = std::path::Path::new("photos/a.jpg");
        let err = guarded(path, || panic!("index out of bounds")).unwrap_err();
        match err {
            Error::Image { path: p, reason } => {
                assert_eq!(p, path);
                assert_eq!(
                    reason,
                    "xfer failed inside its decoder (index out of bounds); the image was skipped, please report it"
                );
            }
            other => panic!("{other}"),
        }
        assert!(guarded(path, || Ok(())).is_ok());
    }

    use ndarray::array;

    #[test]
    fn non_finite_images_are_skipped_in_input_order() {
        // Images 3, 5, 8 decoded (2 views each), 4 did not; 5 has a NaN in
        // its second view on backbone b, 8 an infinity on backbone a.
        let mut batch = Batch {
            rows: vec![3, 5, 8],
            features: vec![
                array![[1.], [2.], [3.], [4.], [f32::INFINITY], [6.]],
                array![[1.], [2.], [3.], [f32::NAN], [5.], [6.]],
            ],
            views: 2,
            skipped: vec![(4, "unreadable".into())],
        };
        skip_non_finite(&mut batch, &["a", "b"]);
        assert_eq!(batch.rows, [3]);
        assert_eq!(batch.features[0], array![[1.], [2.]]);
        assert_eq!(batch.features[1], array![[1.], [2.]]);
        let skipped: Vec<usize> = batch.skipped.iter().map(|s| s.0).collect();
        assert_eq!(skipped, [4, 5, 8]);
        assert!(batch.skipped[1].1.starts_with("backbone b gave non-finite"));
        assert!(batch.skipped[2].1.starts_with("backbone a gave non-finite"));
        assert_eq!(
            check_batch_size(32, 1, &[]).map_err(|e| e.to_string()),
            Ok(())
        );
    }

    #[test]
    fn batches_over_the_memory_limit_are_refused_before_allocating() {
        use crate::images::preprocess::{ChannelOrder, CropOffset, Interpolation, ResizeMode};
        let r = Recipe {
            resize: 256,
            resize_mode: ResizeMode::ShorterSide,
            crop: 224,
            crop_offset: CropOffset::RoundHalfEven,
            interpolation: Interpolation::Bilinear,
            pixel_scale: 1.0 / 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
            channel_order: ChannelOrder::Rgb,
        };
        assert!(check_batch_size(1024, 1, std::slice::from_ref(&r)).is_ok());
        let e = check_batch_size(100_000, 1, std::slice::from_ref(&r))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit of 4 GiB") && !e.contains("--"), "{e}");
        // 1 image of 100000 views is 100000 tensors.
        let e = check_batch_size(32, 100_000, std::slice::from_ref(&r)).unwrap_err();
        assert!(
            matches!(e, Error::BatchTooLarge { views: 100_000, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("100000 tensors"), "{e}");
    }
}
