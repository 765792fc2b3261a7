//! The extraction pipeline: decode and preprocess images on a thread pool while
//! the backbone runs the previous batch, and append features to the store batch
//! by batch (memory stays flat however large the folder). Files that fail to
//! decode are skipped and recorded with their reason.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// While the backbone is busy, run the decoders only on otherwise idle CPU
    /// time (Linux `SCHED_IDLE`), and at normal priority while it waits for
    /// them: the decoders fill the gaps of ONNX Runtime's thread pool instead of
    /// slowing its threads down, yet other programs cannot starve them while
    /// the backbone waits. Applied only when the backbone runs on the CPU (on a
    /// GPU, decoding is the bottleneck).
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

fn decode_batch(
    ds: &Dataset,
    items: &[&Item],
    recipe: &Recipe,
    opts: &DecodeOptions,
    priority: &DecoderPriority,
) -> Decoded {
    let len = recipe.tensor_len();
    let mut buf = vec![0f32; items.len() * len];
    let results: Vec<Result<()>> = buf
        .par_chunks_mut(len)
        .zip(items.par_iter())
        .map(|(out, item)| {
            priority.apply();
            preprocess::load_tensor(&ds.abs_path(item), recipe, opts, out)
        })
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

/// The decoders' scheduling priority: `SCHED_IDLE` while the backbone is busy,
/// normal while it waits for decoded images. The consumer sets `backbone_waiting`; each
/// decoder thread adjusts its own policy before every image (a syscall only
/// when the wanted policy changed).
struct DecoderPriority {
    /// The caller allows it and a thread can leave `SCHED_IDLE` again.
    allowed: bool,
    /// Allowed, and the backbone runs on the CPU (known once it is loaded).
    enabled: AtomicBool,
    backbone_waiting: AtomicBool,
}

impl DecoderPriority {
    fn new(wanted: bool) -> Self {
        DecoderPriority {
            allowed: wanted && idle_round_trip_allowed(),
            enabled: AtomicBool::new(false),
            backbone_waiting: AtomicBool::new(true),
        }
    }

    fn enable(&self, backbone_on_cpu: bool) {
        self.enabled
            .store(self.allowed && backbone_on_cpu, Ordering::Relaxed);
    }

    fn set_backbone_waiting(&self, waiting: bool) {
        self.backbone_waiting.store(waiting, Ordering::Relaxed);
    }

    /// Called on a decoder thread before each image.
    fn apply(&self) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        thread_local! {
            static IDLE: Cell<bool> = const { Cell::new(false) };
        }
        let want_idle = !self.backbone_waiting.load(Ordering::Relaxed);
        if IDLE.with(|c| c.get()) != want_idle && set_idle_priority(want_idle) {
            IDLE.with(|c| c.set(want_idle));
        }
    }
}

/// Moves the calling thread to `SCHED_IDLE` or back to normal scheduling
/// (`SCHED_OTHER`, nice unchanged). Returns whether the OS agreed.
fn set_idle_priority(idle: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let param = libc::sched_param { sched_priority: 0 };
        // pid 0: the calling thread (Linux schedules threads individually).
        unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = idle;
        false
    }
}

/// Whether a thread can go to `SCHED_IDLE` and come back. Leaving `SCHED_IDLE`
/// needs root or a permissive `RLIMIT_NICE`; without it a decoder would stay
/// starved for good, so the policy is used only where the round trip works
/// (tried on a throwaway thread).
fn idle_round_trip_allowed() -> bool {
    std::thread::spawn(|| set_idle_priority(true) && set_idle_priority(false))
        .join()
        .unwrap_or(false)
}

/// A loaded backbone with the provenance its features will carry.
pub type LoadedBackbone = (Backbone, Provenance);

/// Extracts features of every image of `ds` into `out`, with the backbone that
/// `load` returns. On a fresh run `load` runs while the decoders already work
/// on the first batches, so model loading costs no time of its own; a resumed
/// run loads first (the file's provenance decides which images are left).
///
/// `load`'s errors come back unchanged; xfer's own are converted into `E`.
pub fn run<E: From<Error>>(
    ds: &Dataset,
    load: impl FnOnce() -> std::result::Result<LoadedBackbone, E>,
    out: &Path,
    cfg: &ExtractConfig,
    progress: &mut dyn FnMut(Progress),
) -> std::result::Result<Summary, E> {
    let start = Instant::now();
    let mut load = Some(load);
    let mut ready = None;
    let todo: Vec<&Item> = if cfg.resume {
        let (backbone, prov) = load.take().expect("not loaded yet")()?;
        let (writer, state) = FeatureWriter::resume(out, backbone.feature_dim(), &prov)?;
        ready = Some((backbone, writer));
        ds.items
            .iter()
            .filter(|i| !state.done.contains(&i.rel_path))
            .collect()
    } else {
        ds.items.iter().collect()
    };
    let already = ds.items.len() - todo.len();
    let priority = DecoderPriority::new(cfg.background_decoders);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.decode_threads.max(1))
        .thread_name(|i| format!("xfer-decode-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start decoder threads: {e}")))?;

    let mut skipped = Vec::new();
    let mut written = 0;
    let mut resumed_rows = 0;
    let mut provider = String::new();
    // At most two decoded batches wait for the backbone: flat memory, and the
    // decoders work on batch k+1 while the backbone runs batch k.
    let (tx, rx) = crossbeam_channel::bounded::<Decoded>(2);
    std::thread::scope(|scope| -> std::result::Result<(), E> {
        let producer = scope.spawn(|| {
            for chunk in todo.chunks(cfg.batch.max(1)) {
                let decoded =
                    pool.install(|| decode_batch(ds, chunk, &cfg.recipe, &cfg.decode, &priority));
                if tx.send(decoded).is_err() {
                    break; // the consumer stopped on an error
                }
            }
            drop(tx);
        });
        let result = (|| {
            let (mut backbone, mut writer) = match ready.take() {
                Some(bw) => bw,
                None => {
                    let load = load.take().expect("loaded once");
                    let (backbone, prov) = load()?;
                    let writer = FeatureWriter::create(out, backbone.feature_dim(), &prov)?;
                    (backbone, writer)
                }
            };
            // SCHED_IDLE decoders only make sense when they share the CPU with the backbone.
            priority.enable(backbone.provider == "CPUExecutionProvider");
            provider = backbone.provider.clone();
            resumed_rows = writer.rows();
            let dim = backbone.feature_dim();
            progress(Progress {
                done: already,
                total: ds.items.len(),
                skipped: 0,
            });
            loop {
                let batch = match rx.try_recv() {
                    Ok(batch) => batch,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        // The backbone waits for the decoders: let them compete
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
            writer.finish()?;
            Ok(())
        })();
        drop(rx);
        producer.join().expect("decoder thread panicked");
        result
    })?;
    Ok(Summary {
        total: ds.items.len(),
        resumed_rows,
        written,
        skipped,
        skipped_before: already - resumed_rows,
        seconds: start.elapsed().as_secs_f64(),
        provider,
    })
}
