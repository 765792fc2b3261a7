//! `xfer extract` and `xfer bench-model`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use ndarray::Array4;
use xfer::features::extract;
use xfer::features::extraction::{Event, Existing, Extraction, Outcome, Source};
use xfer::features::shard::{self, Shard};
use xfer::images::augment::{AugmentRecipe, ViewPlan};
use xfer::images::dataset::{self, Layout};
use xfer::images::preprocess::{self, DecodeOptions, Preset};
use xfer::models::backbone::Backbone;
use xfer::models::runtime::Runtime;
use xfer::models::zoo::{Manifest, Weights, Zoo};

use super::common::{backbone_warnings, DecodeArgs, DeviceArgs, Spin};
use super::progress::Progress;
use super::{Cli, EXIT_SKIPPED};

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["data", "list"]))]
#[command(after_long_help = "Examples:
  xfer extract --model efficientnet_lite0 --data photos/train --out train.h5
  xfer extract --model efficientnet_lite0 --data photos/train --out train.h5 --resume
  xfer extract --model resnet50 --data dogs-vs-cats/train --out train_resnet50.h5 --device cuda --batch 128
  xfer extract --model efficientnet_lite0 --data photos/ --out f.h5 --json 2> extract.log
  xfer extract --model efficientnet_lite0 --list images.csv --out f.h5
  xfer extract --model efficientnet_lite0 --data photos/train --out shards/s1.h5 --shard 1/4   (then: xfer merge)
  xfer extract --model efficientnet_lite0 --data photos/train --out shards/s$SLURM_ARRAY_TASK_ID.h5 --shard auto/8
  xfer extract --model efficientnet_lite0 --data photos/train --out train_views.h5 --views 8 --augment tutorial --seed 1")]
pub struct ExtractArgs {
    /// Backbone: a name from `xfer models`, or a manifest file (*.toml).
    #[arg(long)]
    model: String,
    /// Dataset folder: root/<class>/*.jpg (ImageFolder) or root/cat.0.jpg (Kaggle).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A list of images instead of a folder: *.csv or *.tsv with path[,label]
    /// records, or one path per line (any other name). Relative paths are
    /// relative to the list's folder; classes are the labels, sorted.
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// Extract only shard I of N (from 0) of the sorted file list, into a shard
    /// file of its own (then `xfer merge`). auto/N takes I from
    /// SLURM_ARRAY_TASK_ID or else JOB_COMPLETION_INDEX (Kubernetes Indexed Job).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Output HDF5 feature file.
    #[arg(long, value_name = "FILE.h5")]
    out: PathBuf,
    /// Images per backbone run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Preprocessing: the backbone's own recipe, or the tutorial's (Scale 320, CenterCrop 299, mean = std = 0.5).
    #[arg(long, value_enum, default_value_t = Preset::Native)]
    preset: Preset,
    /// Dataset layout (detected when not given).
    #[arg(long, value_enum, conflicts_with = "list")]
    layout: Option<LayoutArg>,
    /// Also store K augmented views per image in `views` [N, K, D] (K counts
    /// the centre view 0, which equals `data`); each image is decoded once.
    /// With views, a backbone run holds about --batch views (--batch / K images).
    #[arg(long, value_name = "K")]
    views: Option<usize>,
    /// How the views are drawn: `tutorial` (RandomResizedCrop scale 0.08–1 +
    /// horizontal flip, the tutorial's method 1), `light` (scale 0.35–1, flip,
    /// mild colour jitter) or a TOML file (scale, ratio, flip, brightness,
    /// contrast, saturation).
    #[arg(
        long,
        value_name = "tutorial|light|FILE.toml",
        requires = "views",
        default_value = "tutorial"
    )]
    augment: String,
    /// Seed of the views: each view's crop, flip and jitter come from (seed,
    /// relative image path, view index).
    #[arg(long, requires = "views", default_value_t = 0)]
    seed: u64,
    /// Continue an interrupted extraction (OUT.partial).
    #[arg(long)]
    resume: bool,
    /// Replace OUT (and any OUT.partial) if it exists.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// No progress lines (warnings and errors still go to stderr).
    #[arg(long, short)]
    quiet: bool,
    /// Also print where the time went (decoding, backbone, writing), on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Print one JSON object on stdout at the end instead of the summary: the
    /// file written, counts, skipped files, seconds, images/s, provider.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    ImageFolder,
    KaggleFlat,
    Unlabelled,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::ImageFolder => Layout::ImageFolder,
            LayoutArg::KaggleFlat => Layout::KaggleFlat,
            LayoutArg::Unlabelled => Layout::Unlabelled,
        }
    }
}

/// The flags' own checks; the rest is [`Extraction::validate`]'s.
fn validate(args: &ExtractArgs) -> Result<()> {
    args.decode.validate()?;
    args.device.validate()?;
    Ok(())
}

/// The flags as an [`Extraction`].
fn extraction(cli: &Cli, args: &ExtractArgs) -> Result<Extraction> {
    validate(args)?;
    let source = match (&args.data, &args.list) {
        (Some(dir), _) => Source::Folder {
            dir: dir.clone(),
            layout: args.layout.map(Into::into),
        },
        (None, Some(list)) => Source::List(list.clone()),
        (None, None) => bail!("pass --data DIR or --list FILE"),
    };
    let views = match args.views {
        None => None,
        Some(k) => Some(ViewPlan {
            views: k,
            seed: args.seed,
            recipe: AugmentRecipe::parse(&args.augment)?,
        }),
    };
    let shard = args
        .shard
        .as_deref()
        .map(|s| shard::parse(s, |var| std::env::var(var).ok()))
        .transpose()?;
    let mut session = args.device.session_options(args.batch);
    let auto_spin = args.device.ort_spin == Spin::Auto;
    session.intra_op_spinning = args.device.ort_spin == Spin::On;
    Ok(Extraction {
        zoo: cli.zoo.clone(),
        ort_lib: cli.ort_lib.clone(),
        preset: args.preset,
        views,
        shard,
        existing: match (args.resume, args.overwrite) {
            (true, _) => Existing::Resume,
            (_, true) => Existing::Overwrite,
            _ => Existing::Refuse,
        },
        pipeline: args.decode.pipeline(args.batch),
        session,
        auto_spin,
        ..Extraction::new(source, &args.model, &args.out)
    })
}

pub fn extract(cli: &Cli, args: &ExtractArgs) -> Result<i32> {
    let job = extraction(cli, args)?;
    let mut printer = Printer {
        args,
        classes: 0,
        layout: String::new(),
        images: 0,
        bar: None,
    };
    let outcome = job.run(&mut |e| printer.event(e))?;
    if let Some(bar) = &printer.bar {
        bar.finish();
    }
    match outcome {
        Outcome::AlreadyComplete {
            model,
            shard,
            rows,
            skipped,
        } => print_complete(args, &model, job.shard, &shard, rows, skipped)?,
        Outcome::Extracted(summary) => {
            print_done(args, job.shard, &summary)?;
            if !summary.skipped.is_empty() {
                return Ok(EXIT_SKIPPED);
            }
        }
    }
    Ok(0)
}

/// What `xfer extract` says on stderr while the extraction runs.
struct Printer<'a> {
    args: &'a ExtractArgs,
    classes: usize,
    layout: String,
    images: usize,
    bar: Option<Progress>,
}

impl Printer<'_> {
    fn event(&mut self, event: Event) {
        let args = self.args;
        match event {
            Event::Scanned { dataset } => self.scanned(dataset),
            Event::Missing {
                list,
                count,
                first,
                looks_unsplit,
            } => {
                eprintln!(
                    "warning: {count} file(s) named by {} do not exist (first: {}); they are recorded as skipped",
                    list.display(),
                    first.join(", ")
                );
                if looks_unsplit {
                    eprintln!(
                        "  (this list is read as one path per line; name it *.csv or *.tsv to read path,label records)"
                    );
                }
            }
            Event::Planned { images, list } => {
                if list.shard.is_some() && !args.quiet {
                    eprintln!(
                        "{} (list of {}) → {}",
                        list.describe_shard(),
                        list.describe_list(),
                        args.out.display()
                    );
                }
                self.images = images;
                self.bar = Some(Progress::new(
                    "extract",
                    "images",
                    images as u64,
                    args.quiet,
                ));
            }
            Event::Loaded { manifest, backbone } => self.loaded(manifest, backbone),
            Event::Progress(p) => {
                if let Some(bar) = &self.bar {
                    bar.set(p.done as u64, p.skipped)
                }
            }
        }
    }

    /// The dataset's ignored files and, for a list, its classes.
    fn scanned(&mut self, ds: &dataset::Dataset) {
        let args = self.args;
        self.classes = ds.classes.len();
        self.layout = format!("{:?}", ds.layout);
        for line in dataset::describe_ignored(&ds.ignored, 5) {
            eprintln!("{line}");
        }
        if let Some(list_file) = args.list.as_ref().filter(|_| !args.quiet) {
            if ds.classes.is_empty() {
                eprintln!(
                    "{}: no labels, so no classes (labels −1, as an unlabelled folder)",
                    list_file.display()
                );
            } else {
                eprintln!(
                    "{}: {} classes from the list's labels, sorted: {}",
                    list_file.display(),
                    ds.classes.len(),
                    ds.classes.join(", ")
                );
            }
        }
    }

    /// Warnings about the backbone, then what runs where.
    fn loaded(&self, manifest: &Manifest, backbone: &Backbone) {
        let args = self.args;
        let mut lines = backbone_warnings(args.device.device, backbone);
        if manifest.weights == Weights::Random {
            lines.push(format!("warning: {} has RANDOM weights (structure and speed tests only): these features mean nothing", manifest.name));
        }
        if let Some(q) = &manifest.quantization {
            let cpu = xfer::models::cpu::Int8Support::detect();
            if let Some(w) = super::common::int8_warning(&manifest.name, q, &cpu) {
                lines.push(format!("warning: {w}"));
            }
        }
        lines.push(format!(
            "extracting {} images ({} classes, {}) with {} on {} → {}",
            self.images,
            self.classes,
            self.layout,
            manifest.name,
            backbone.provider_label(),
            args.out.display()
        ));
        let print = || lines.iter().for_each(|l| eprintln!("{l}"));
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

/// A shard whose file was already complete.
fn print_complete(
    args: &ExtractArgs,
    model: &str,
    parsed: Option<Shard>,
    shard: &str,
    rows: usize,
    skipped: usize,
) -> Result<()> {
    if args.json {
        let json = serde_json::json!({
            "command": "extract",
            "out": args.out,
            "model": model,
            "shard": parsed.map(|s| s.to_string()),
            "already_complete": true,
            "rows": rows,
            "skipped_files": skipped,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{shard} is already complete in {} (the same file list, model and settings): nothing to do ({rows} rows, {skipped} skipped files)",
            args.out.display(),
        );
    }
    Ok(())
}

/// The end of an extraction: timings, the summary (or JSON), the shard's next step.
fn print_done(args: &ExtractArgs, shard: Option<Shard>, summary: &extract::Summary) -> Result<()> {
    if args.verbose {
        let t = &summary.timings;
        eprintln!(
            "timings: decoding {:.2} s (summed over the decoder threads), backbone {:.2} s, writing {:.2} s, total {:.2} s",
            t.decode.as_secs_f64(),
            t.backbones.as_secs_f64(),
            t.sink.as_secs_f64(),
            t.total.as_secs_f64()
        );
    }
    if args.json {
        return print_json(&args.out, shard, summary);
    }
    print_summary(&args.out, summary);
    if let Some(s) = shard {
        // Under a scheduler (auto/N) the recipe's own merge job joins the
        // shards: its task logs do not tell the user to run one.
        if args
            .shard
            .as_deref()
            .is_some_and(|a| a.starts_with("auto/"))
        {
            println!(
                "shard {s} done; the merge step joins the {} shards once every one is done",
                s.count
            );
        } else {
            println!(
                "shard {s} done; once all {} are, join them: xfer merge --out FILE.h5 SHARD_FILES…",
                s.count
            );
        }
    }
    Ok(())
}

fn print_summary(out: &Path, s: &extract::Summary) {
    let resumed = if s.resumed_rows > 0 {
        format!(" (resumed after {} rows)", s.resumed_rows)
    } else {
        String::new()
    };
    println!(
        "wrote {} rows to {}{resumed}: {} images, {} skipped, {:.1} s, {:.1} images/s, provider {}",
        s.resumed_rows + s.written,
        out.display(),
        s.total,
        s.skipped.len() + s.skipped_before,
        s.seconds,
        s.images_per_second(),
        xfer::models::backbone::label(&s.provider, &s.inference_precision)
    );
    if !s.skipped.is_empty() {
        println!("skipped (also listed in the file's skipped_path / skipped_reason):");
        for (p, r) in &s.skipped {
            println!("  {p}: {r}");
        }
    }
}

fn print_json(out: &Path, shard: Option<Shard>, s: &extract::Summary) -> Result<()> {
    let json = serde_json::json!({
        "command": "extract",
        "out": out,
        "model": s.model,
        "shard": shard.map(|s| s.to_string()),
        "images": s.total,
        "rows": s.resumed_rows + s.written,
        "written": s.written,
        "resumed_rows": s.resumed_rows,
        "skipped": s.skipped.iter().map(|(p, r)| serde_json::json!({"path": p, "reason": r})).collect::<Vec<_>>(),
        "skipped_before": s.skipped_before,
        "seconds": s.seconds,
        "images_per_second": s.images_per_second(),
        "provider": s.provider,
        "inference_precision": s.inference_precision,
        "timings": {
            "decode_seconds": s.timings.decode.as_secs_f64(),
            "backbone_seconds": s.timings.backbones.as_secs_f64(),
            "write_seconds": s.timings.sink.as_secs_f64(),
            "total_seconds": s.timings.total.as_secs_f64(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backbone: a name from `xfer models`, or a manifest file (*.toml).
    #[arg(long)]
    model: String,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed batches (after one warm-up batch).
    #[arg(long, default_value_t = 10)]
    batches: usize,
    /// Run on real images: the first --batch images of this dataset folder,
    /// decoded and preprocessed once before timing (default: pseudo-random
    /// tensors, which can run at a different speed than real ones).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Prints, as its last line, a JSON object with `images_per_s`.
pub fn bench_model(cli: &Cli, args: &BenchArgs) -> Result<i32> {
    if args.batch == 0 || args.batches == 0 {
        bail!("--batch and --batches must be at least 1");
    }
    args.device.validate()?;
    let manifest = Zoo::locate(cli.zoo.as_deref()).find(&args.model)?;
    let runtime = Runtime::init(cli.ort_lib.as_deref())?;
    let mut backbone = Backbone::load(
        &runtime,
        &manifest,
        &args.device.session_options(args.batch),
    )
    .with_context(|| format!("loading backbone {}", manifest.name))?;
    for line in backbone_warnings(args.device.device, &backbone) {
        eprintln!("{line}");
    }
    xfer::features::pipeline::check_batch_size(
        args.batch,
        1,
        std::slice::from_ref(&manifest.preprocess),
    )?;
    let c = manifest.preprocess.crop as usize;
    let input = match &args.data {
        Some(dir) => real_batch(dir, &manifest, args.batch)?,
        None => {
            // Deterministic pseudo-random input in the range of normalised pixels.
            let mut state = 0x2545F4914F6CDD1Du64;
            Array4::from_shape_simple_fn((args.batch, 3, c, c), || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
        }
    };
    backbone.run(input.view(), false)?; // warm-up
    let start = Instant::now();
    for _ in 0..args.batches {
        backbone.run(input.view(), false)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let images = args.batch * args.batches;
    println!(
        "{}",
        serde_json::json!({
            "model": manifest.name,
            "provider": backbone.provider,
            "inference_precision": backbone.inference_precision,
            "placement": backbone.placement.providers.iter().map(|p| (p.provider.clone(), serde_json::json!(p.nodes))).collect::<serde_json::Map<_, _>>(),
            "fallback_reason": backbone.fallback_reason,
            "batch": args.batch,
            "images": images,
            "seconds": secs,
            "images_per_s": images as f64 / secs,
            "input": if args.data.is_some() { "images" } else { "random" },
        })
    );
    Ok(0)
}

/// The first `batch` images of `dir` (repeated when there are fewer), preprocessed
/// with the backbone's own recipe.
///
/// # Shapes
/// → [batch, 3, crop, crop]
fn real_batch(dir: &Path, manifest: &Manifest, batch: usize) -> Result<Array4<f32>> {
    let ds = dataset::scan(dir, None)?;
    if ds.items.is_empty() {
        bail!("{} holds no images", dir.display());
    }
    let recipe = &manifest.preprocess;
    let c = recipe.crop as usize;
    let mut input = Array4::<f32>::zeros((batch, 3, c, c));
    let opts = DecodeOptions::default();
    for (i, mut out) in input.outer_iter_mut().enumerate() {
        let item = &ds.items[i % ds.items.len()];
        let path = ds.abs_path(item);
        let out = out.as_slice_mut().expect("a fresh array is contiguous");
        preprocess::load_tensor(&path, recipe, &opts, out)
            .with_context(|| format!("preprocessing {}", path.display()))?;
    }
    Ok(input)
}
