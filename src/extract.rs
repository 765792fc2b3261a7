//! The extraction pipeline: decode and preprocess images on a thread pool while
//! the backbone runs the previous batch, and append features to the store batch
//! by batch (memory stays flat however large the folder). Files that fail to
//! decode are skipped and recorded with their reason.

use std::path::Path;
use std::time::Instant;

use ndarray::{Array4, Axis};
use rayon::prelude::*;

use crate::backbone::Backbone;
use crate::dataset::{Dataset, Item};
use crate::error::{Error, Result};
use crate::preprocess::{self, DecodeOptions, Recipe};
use crate::store::{FeatureWriter, Provenance};

#[derive(Debug, Clone)]
pub struct ExtractConfig {
    pub batch: usize,
    /// Threads decoding and resizing images.
    pub decode_threads: usize,
    pub decode: DecodeOptions,
    pub recipe: Recipe,
    /// Continue `<out>.partial` instead of starting afresh.
    pub resume: bool,
    /// Run decoders only on otherwise idle CPU time (Linux `SCHED_IDLE`). Right
    /// when the backbone runs on the CPU: the decoders then fill the gaps of
    /// ONNX Runtime's thread pool instead of slowing its threads down, and still
    /// get every core whenever the backbone waits for them. Wrong on a GPU,
    /// where decoding is the bottleneck.
    pub background_decoders: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Images in the dataset.
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
    pub provider: String,
}

impl Summary {
    pub fn images_per_second(&self) -> f64 {
        (self.written + self.skipped.len()) as f64 / self.seconds.max(1e-9)
    }
}

/// Progress after each batch: images handled so far (of `total`).
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub skipped: usize,
}

/// One preprocessed batch on its way to the backbone.
struct Decoded {
    /// [n_ok, 3, crop, crop]
    tensor: Array4<f32>,
    labels: Vec<i64>,
    paths: Vec<String>,
    skipped: Vec<(String, String)>,
}

fn decode_batch(ds: &Dataset, items: &[&Item], recipe: &Recipe, opts: &DecodeOptions) -> Decoded {
    let len = recipe.tensor_len();
    let mut buf = vec![0f32; items.len() * len];
    let results: Vec<Result<()>> = buf
        .par_chunks_mut(len)
        .zip(items.par_iter())
        .map(|(out, item)| preprocess::load_tensor(&ds.abs_path(item), recipe, opts, out))
        .collect();
    let mut labels = Vec::with_capacity(items.len());
    let mut paths = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    let mut kept = 0;
    for (i, (item, r)) in items.iter().zip(results).enumerate() {
        match r {
            Ok(()) => {
                if kept != i {
                    buf.copy_within(i * len..(i + 1) * len, kept * len);
                }
                kept += 1;
                labels.push(item.label);
                paths.push(item.rel_path.clone());
            }
            Err(Error::Image { reason, .. }) => skipped.push((item.rel_path.clone(), reason)),
            Err(e) => skipped.push((item.rel_path.clone(), e.to_string())),
        }
    }
    buf.truncate(kept * len);
    let c = recipe.crop as usize;
    let tensor = Array4::from_shape_vec((kept, 3, c, c), buf).expect("buffer holds kept images"); // [n_ok, 3, c, c]
    Decoded {
        tensor,
        labels,
        paths,
        skipped,
    }
}

/// Lowers the calling thread to `SCHED_IDLE`; best effort (where the OS refuses,
/// the thread keeps its normal priority).
fn run_in_background() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
    }
}

/// Extracts features of every image of `ds` into `out`.
pub fn run(
    ds: &Dataset,
    backbone: &mut Backbone,
    out: &Path,
    cfg: &ExtractConfig,
    prov: &Provenance,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let start = Instant::now();
    let dim = backbone.feature_dim();
    let (mut writer, done) = if cfg.resume {
        let (w, state) = FeatureWriter::resume(out, dim, prov)?;
        (w, state.done)
    } else {
        (FeatureWriter::create(out, dim, prov)?, Default::default())
    };
    let resumed_rows = writer.rows();
    let todo: Vec<&Item> = ds
        .items
        .iter()
        .filter(|i| !done.contains(&i.rel_path))
        .collect();
    let already = ds.items.len() - todo.len();
    let background = cfg.background_decoders;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.decode_threads.max(1))
        .thread_name(|i| format!("xfer-decode-{i}"))
        .start_handler(move |_| {
            if background {
                run_in_background();
            }
        })
        .build()
        .map_err(|e| Error::Config(format!("cannot start decoder threads: {e}")))?;

    let mut skipped = Vec::new();
    let mut written = 0;
    progress(Progress {
        done: already,
        total: ds.items.len(),
        skipped: 0,
    });
    // At most two decoded batches wait for the backbone: flat memory, and the
    // decoders work on batch k+1 while the backbone runs batch k.
    let (tx, rx) = crossbeam_channel::bounded::<Decoded>(2);
    std::thread::scope(|scope| -> Result<()> {
        let producer = scope.spawn(|| {
            for chunk in todo.chunks(cfg.batch.max(1)) {
                let decoded = pool.install(|| decode_batch(ds, chunk, &cfg.recipe, &cfg.decode));
                if tx.send(decoded).is_err() {
                    break; // the consumer stopped on an error
                }
            }
            drop(tx);
        });
        let result = (|| {
            for batch in rx.iter() {
                let n = batch.tensor.len_of(Axis(0));
                let features = if n > 0 {
                    backbone.run(batch.tensor.view(), false)?.features
                } else {
                    ndarray::Array2::zeros((0, dim))
                };
                writer.append(features.view(), &batch.labels, &batch.paths, &batch.skipped)?;
                written += n;
                skipped.extend(batch.skipped);
                progress(Progress {
                    done: already + written + skipped.len(),
                    total: ds.items.len(),
                    skipped: skipped.len(),
                });
            }
            Ok(())
        })();
        drop(rx);
        producer.join().expect("decoder thread panicked");
        result
    })?;
    writer.finish()?;
    Ok(Summary {
        total: ds.items.len(),
        resumed_rows,
        written,
        skipped,
        skipped_before: already - resumed_rows,
        seconds: start.elapsed().as_secs_f64(),
        provider: backbone.provider.clone(),
    })
}
