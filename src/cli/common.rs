//! Flags and conventions shared by the front ends: `xfer` and the slim
//! `xfer-predict` (which includes this file and `predict.rs` with `#[path]`),
//! so both accept the same flags.

use std::path::PathBuf;

use clap::Args;
use xfer::features::pipeline::{schedule, PipelineConfig};
use xfer::images::preprocess::DecodeOptions;
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::openvino::Precision;
use xfer::models::runtime::{Device, DeviceRequest, LibrarySource};

/// Exit status of a run that finished but skipped some inputs.
pub const EXIT_SKIPPED: i32 = 3;

/// Where the model runs.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Execution provider. cuda and tensorrt need the GPU build of ONNX Runtime
    /// (docs/clusters.md, "GPUs"); tensorrt registers TensorRT, then CUDA for the nodes
    /// TensorRT rejects. openvino: OpenVINO on an Intel CPU, through ONNX Runtime's
    /// plugin (`tools/setup.sh --openvino`; docs/guide.md, "OpenVINO").
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// OpenVINO: the precision to compute in. auto: bf16 where the CPU has it
    /// (AMX, AVX512_BF16), else f32; bf16 is refused on a CPU without it. Recorded
    /// with the features.
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    pub precision: Precision,
    /// OpenVINO: the plugin library (libonnxruntime_providers_openvino_plugin.so).
    /// Default: $XFER_OPENVINO_LIB, else where `tools/setup.sh --openvino` puts it,
    /// else the onnxruntime-ep-openvino package of xfer's Python environment.
    #[arg(long, value_name = "PATH")]
    pub openvino_lib: Option<PathBuf>,
    /// GPU index for cuda/tensorrt.
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    /// When the GPU or OpenVINO session cannot be built (no GPU, a bad
    /// --device-id, a CUDA library missing, a TensorRT error; no OpenVINO plugin
    /// or no Intel CPU), run on ONNX Runtime's CPU provider instead of failing;
    /// when only some nodes have no kernel there, run those on CPU. Said on
    /// stderr, and the providers that really ran are recorded.
    #[arg(long)]
    pub allow_cpu_fallback: bool,
    /// TensorRT engine cache folder, created with its parents (engines take
    /// minutes to build; one per model, GPU, precision and --batch). Default:
    /// trt-cache in xfer's data folder ($XFER_HOME, else ~/.local/share/xfer).
    #[arg(long, value_name = "DIR")]
    pub trt_cache: Option<PathBuf>,
    /// TensorRT: build fp16 engines.
    #[arg(long)]
    pub trt_fp16: bool,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Let ONNX Runtime's threads spin between operators (CPU). auto: for
    /// `extract` on the CPU, on when the images are small files (mean under
    /// 256 KiB, from the first 64), whose decoding leaves the cores to the model,
    /// off for large photos, whose decoders need the time spinning would burn;
    /// off on a GPU (its CPU threads only wait); for `predict`, off (spinning
    /// measured 7 % slower there on 2 cores).
    #[arg(long, value_enum, default_value_t = Spin::Auto)]
    pub ort_spin: Spin,
    /// Keep ONNX Runtime's optimised graph of each backbone in DIR (keyed by
    /// the model's sha256, the ONNX Runtime library and the CPU) and start from
    /// it on later runs: a faster session build (CPU only). A folder that
    /// cannot be written is left alone.
    #[arg(long, value_name = "DIR")]
    pub model_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Spin {
    Auto,
    On,
    Off,
}

impl DeviceArgs {
    /// Flags that would be ignored are errors: the TensorRT ones need --device
    /// tensorrt, the OpenVINO ones --device openvino.
    pub fn validate(&self) -> anyhow::Result<()> {
        let only_for = |device: Device, flags: &[(&str, bool)]| -> anyhow::Result<()> {
            let given: Vec<&str> = flags
                .iter()
                .filter_map(|(f, on)| on.then_some(*f))
                .collect();
            if self.device == device || given.is_empty() {
                return Ok(());
            }
            let name = |d: Device| format!("{d:?}").to_lowercase();
            anyhow::bail!(
                "{} only {} to --device {} (this run uses --device {}); drop {} or pass --device {}",
                given.join(" and "),
                if given.len() == 1 { "applies" } else { "apply" },
                name(device),
                name(self.device),
                if given.len() == 1 { "it" } else { "them" },
                name(device)
            )
        };
        only_for(
            Device::Tensorrt,
            &[
                ("--trt-cache", self.trt_cache.is_some()),
                ("--trt-fp16", self.trt_fp16),
            ],
        )?;
        only_for(
            Device::Openvino,
            &[
                ("--precision", self.precision != Precision::Auto),
                ("--openvino-lib", self.openvino_lib.is_some()),
            ],
        )
    }

    /// The session options for a run of `batch` images per backbone run over
    /// `inputs` (`--ort-spin auto` looks at their sizes, and at the device).
    #[allow(dead_code)] // used by `xfer extract`; xfer-predict includes this file too
    pub fn session_options_for(&self, batch: usize, inputs: &[PathBuf]) -> SessionOptions {
        SessionOptions {
            intra_op_spinning: match self.ort_spin {
                Spin::On => true,
                Spin::Off => false,
                Spin::Auto => schedule::auto_spin(self.device, inputs),
            },
            ..self.session_options(batch)
        }
    }

    /// These settings as flags again (those not at their default), for a
    /// command `xfer fit` runs.
    #[allow(dead_code)] // used by `xfer fit`; xfer-predict includes this file too
    pub fn flags(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut v = Vec::new();
        if self.device != Device::Cpu {
            v.extend([
                "--device".into(),
                format!("{:?}", self.device).to_lowercase(),
            ]);
        }
        if self.device_id != 0 {
            v.extend(["--device-id".into(), self.device_id.to_string()]);
        }
        if self.allow_cpu_fallback {
            v.push("--allow-cpu-fallback".into());
        }
        if let Some(c) = &self.trt_cache {
            v.extend(["--trt-cache".into(), path(c)]);
        }
        if self.trt_fp16 {
            v.push("--trt-fp16".into());
        }
        if self.precision != Precision::Auto {
            v.extend([
                "--precision".into(),
                format!("{:?}", self.precision).to_lowercase(),
            ]);
        }
        if let Some(l) = &self.openvino_lib {
            v.extend(["--openvino-lib".into(), path(l)]);
        }
        if self.threads != 0 {
            v.extend(["--threads".into(), self.threads.to_string()]);
        }
        match self.ort_spin {
            Spin::Auto => {}
            Spin::On => v.extend(["--ort-spin".into(), "on".into()]),
            Spin::Off => v.extend(["--ort-spin".into(), "off".into()]),
        }
        if let Some(c) = &self.model_cache {
            v.extend(["--model-cache".into(), path(c)]);
        }
        v
    }

    /// The session options, spinning off (`--ort-spin on` turns it on).
    pub fn session_options(&self, batch: usize) -> SessionOptions {
        SessionOptions {
            device: DeviceRequest {
                device: self.device,
                device_id: self.device_id,
                allow_cpu_fallback: self.allow_cpu_fallback,
                trt_cache_dir: self.trt_cache.clone(),
                trt_fp16: self.trt_fp16,
                precision: self.precision,
                openvino_lib: self.openvino_lib.clone(),
            },
            threads: self.threads,
            intra_op_spinning: self.ort_spin == Spin::On,
            optimized_cache: self.model_cache.clone(),
            max_batch: batch,
        }
    }
}

/// The library's warning for an int8 model on this CPU
/// ([`xfer::models::cpu::int8_warning`]), with the command that avoids it.
#[allow(dead_code)] // used by `xfer extract` and `xfer quantize`; xfer-predict includes this file too
pub fn int8_warning(
    name: &str,
    q: &xfer::models::zoo::Quantization,
    cpu: &xfer::models::cpu::Int8Support,
) -> Option<String> {
    xfer::models::cpu::int8_warning(name, q, cpu)
        .map(|w| format!("{w} (`xfer quantize --reduce-range`)"))
}

/// What a front end says on stderr about a loaded backbone: a fallback that
/// --allow-cpu-fallback allowed, and ONNX Runtime's own warnings.
pub fn backbone_warnings(device: Device, backbone: &Backbone) -> Vec<String> {
    let name = &backbone.manifest.name;
    let mut out: Vec<String> = backbone
        .ort_warnings
        .iter()
        .map(|w| format!("onnxruntime ({name}): {w}"))
        .collect();
    if let Some(reason) = &backbone.fallback_reason {
        out.push(if backbone.on_cpu() {
            format!(
                "warning: {} unavailable for {name} ({reason}); running on CPU as --allow-cpu-fallback asked (provider recorded: {})",
                device.provider_name(),
                backbone.provider
            )
        } else {
            format!(
                "warning: {reason}; running those nodes on CPU as --allow-cpu-fallback asked (provider recorded: {})",
                backbone.provider
            )
        });
    }
    out
}

/// How images are decoded.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Threads decoding images (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,
    /// Refuse images larger than this many megapixels.
    #[arg(long, default_value_t = 100.0)]
    pub max_megapixels: f64,
    /// Decode JPEGs at full size even when a reduced-size decode would do
    /// (predict with the setting the training features were extracted with).
    #[arg(long)]
    pub full_jpeg_decode: bool,
    /// On CPU, decoders normally run only on idle CPU time so they never slow the
    /// backbone down; this gives them normal priority.
    #[arg(long)]
    pub normal_priority_decoders: bool,
}

impl DecodeArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_megapixels.is_nan() || self.max_megapixels <= 0.0 {
            anyhow::bail!("--max-megapixels must be positive");
        }
        Ok(())
    }

    pub fn options(&self) -> DecodeOptions {
        DecodeOptions {
            max_pixels: (self.max_megapixels * 1e6) as u64,
            scaled_jpeg: !self.full_jpeg_decode,
            ..DecodeOptions::default()
        }
    }

    /// The pipeline's settings, with `batch` images per backbone run.
    pub fn pipeline(&self, batch: usize) -> PipelineConfig {
        PipelineConfig {
            batch,
            decode_threads: self.decode_threads,
            decode: self.options(),
            background_decoders: !self.normal_priority_decoders,
        }
    }
}

/// Checks an output file named by `flag` before any work starts: not a
/// folder, in a folder that exists, and not already there unless `overwrite`.
pub fn check_output(flag: &str, path: &std::path::Path, overwrite: bool) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("{flag} {} is a folder; give a file name", path.display());
    }
    if path.exists() && !overwrite {
        anyhow::bail!(
            "{} already exists; pass --overwrite to replace it",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !parent.is_dir() {
            anyhow::bail!(
                "the folder of {flag} {}, {}, does not exist",
                path.display(),
                parent.display()
            );
        }
    }
    Ok(())
}

/// The page `name` that `--report DIR` writes, checked before any work:
/// DIR a folder (or not there yet), the page not there unless `overwrite`.
#[allow(dead_code)] // used by `xfer evaluate` and `xfer audit`; xfer-predict includes this file too
pub fn report_page(dir: &std::path::Path, name: &str, overwrite: bool) -> anyhow::Result<PathBuf> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "--report {} exists and is not a folder; give a folder",
            dir.display()
        );
    }
    let page = dir.join(name);
    if page.exists() && !overwrite {
        anyhow::bail!(
            "{} already exists; pass --overwrite to replace it, or choose another --report folder",
            page.display()
        );
    }
    Ok(page)
}

/// Writes a report `page` (checked by [`report_page`]) into `dir`, created
/// with its parents, and says where it is.
#[allow(dead_code)] // used by `xfer evaluate` and `xfer audit`; xfer-predict includes this file too
pub fn write_report_page(
    dir: &std::path::Path,
    page: &std::path::Path,
    html: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    xfer::util::atomic::write_bytes_atomic(page, html.as_bytes())?;
    eprintln!(
        "report: {} ({} KB)",
        page.display(),
        html.len().div_ceil(1024)
    );
    Ok(())
}

/// Prints an error with its whole chain (each cause once, as
/// [`xfer::error::chain_message`] does) in the words of the command line
/// ([`words`], [`hint`]) and gives the exit status for it.
pub fn report(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            1
        }
    }
}

/// The text `report` prints after "error: ": each cause of the chain once, a
/// library error that names a setting in the flag's words, and the next step
/// of the first library error that has one.
pub fn message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for c in e.chain() {
        let text = match c.downcast_ref::<xfer::Error>().and_then(words) {
            Some(w) => w,
            None => c.to_string(),
        };
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    if let Some(h) = e
        .chain()
        .find_map(|c| c.downcast_ref::<xfer::Error>())
        .and_then(hint)
    {
        message.push_str("; ");
        message.push_str(&h);
    }
    message
}

/// The flag that sets a [`xfer::error::Setting`].
pub fn flag(s: xfer::error::Setting) -> &'static str {
    use xfer::error::Setting as S;
    match s {
        S::Batch => "--batch",
        S::Views => "--views",
        S::ValSplit => "--val-split",
        S::Patience => "--patience",
        S::Folds => "--cv",
        S::LogisticC => "--logistic-c",
        S::Steps => "--steps",
        S::Epochs => "--epochs",
        S::Hidden => "--hidden",
        S::Dropout => "--dropout",
        S::Augment => "--augment",
        S::Threshold => "--threshold",
        S::LearningRate => "--lr",
        S::Momentum => "--momentum",
        S::WeightDecay => "--weight-decay",
        S::Schedule => "--lr-schedule",
        S::CropPct => "--crop-pct",
        S::CalibrationImages => "--n",
        S::HeldBackImages => "--holdout",
        S::Precision => "--precision",
        _ => "a setting",
    }
}

/// A library error's own text in the words of the command line, where the
/// library names a setting or an argument that the user gave as a flag.
pub fn words(e: &xfer::Error) -> Option<String> {
    use xfer::Error as E;
    Some(match e {
        E::Setting { setting, problem } => {
            format!("invalid configuration: {} {problem}", flag(*setting))
        }
        // "shard 5/3: …" names the argument of --shard.
        E::ShardSpec { .. } | E::TooManyShards { .. } => format!("--{e}"),
        E::OutputIsInput {
            named,
            output,
            what,
            input,
        } => format!(
            "{} {} is {what} ({}), an input of this run: writing it would destroy that input",
            output_flag(named),
            output.display(),
            input.display()
        ),
        E::OrtLibraryNamed {
            path,
            via: LibrarySource::Given,
            reason,
        } => format!(
            "no ONNX Runtime library found at {}, which --ort-lib names: {reason}",
            path.display()
        ),
        _ => return None,
    })
}

/// The flag that names an output the library refuses to write.
fn output_flag(o: &xfer::error::Output) -> String {
    use xfer::error::Output;
    match o {
        Output::FeatureFile => "--out".into(),
        Output::Manifest => "--name".into(),
        other => other.to_string(),
    }
}

/// Where the ONNX Runtime library was found, as the command line says it.
#[allow(dead_code)] // used by `xfer info`; xfer-predict includes this file too
pub fn library_source(s: &LibrarySource) -> String {
    match s {
        LibrarySource::Given => "--ort-lib".into(),
        other => other.describe(),
    }
}

/// The next step for a library error that states only the facts, in the
/// words of the command line (a library user gets the facts alone).
pub fn hint(e: &xfer::Error) -> Option<String> {
    use xfer::error::Setting;
    use xfer::Error as E;
    let next = match e {
        E::OutputExists { .. } => return Some("pass --overwrite to replace it".into()),
        E::Interrupted { .. } => {
            return Some("pass --resume to continue it, or --overwrite to start again".into())
        }
        E::NothingToResume { .. } => return Some("run without --resume".into()),
        E::NoOutputFolder { .. } => return Some("create it, or give another path".into()),
        E::MomentumWithoutSgd => {
            return Some("--momentum and --nesterov are for --optim sgd".into())
        }
        E::NoHead => return Some("choose --head mlp, logistic or both".into()),
        E::HeadTooLarge { .. } => return Some("pass smaller --hidden widths".into()),
        E::OrtLibraryMissing { .. } => {
            return Some("or pass --ort-lib PATH".into())
        }
        E::ProviderPartial { .. } => return Some("pass --allow-cpu-fallback to run those nodes on the CPU (xfer then records which providers ran), or use --device cpu".into()),
        E::TrtCache { .. } => return Some("pass --trt-cache a folder you can write to".into()),
        E::OutputIsInput { named, .. } => {
            return Some(format!(
                "it is refused even with --overwrite; give {} another path",
                output_flag(named)
            ))
        }
        E::OrtLibraryNamed {
            via: LibrarySource::Given,
            ..
        } => return Some("pass --ort-lib the path of a libonnxruntime.so of version 1.31, or leave --ort-lib out to use the one `tools/setup.sh` installs".into()),
        E::ProviderUnavailable {
            device: Device::Openvino,
            ..
        } => return Some("`xfer info` lists OpenVINO's devices; pass --openvino-lib to name the plugin, use --device cpu, or pass --allow-cpu-fallback to run on ONNX Runtime's CPU provider".into()),
        E::ProviderUnavailable { .. } => return Some("check --device-id and the library --ort-lib names (`xfer info` tries each provider), or pass --allow-cpu-fallback to run on CPU".into()),
        E::Setting {
            setting: Setting::Patience,
            ..
        } => return Some("pass --val, --val-split or --cv".into()),
        E::Setting {
            setting: Setting::Precision,
            ..
        } => return Some("pass --precision auto (bf16 where the CPU has it) or f32".into()),
        E::BatchTooLarge { views, .. } => {
            let views = if *views > 1 { " or fewer --views" } else { "" };
            return Some(format!("pass a smaller --batch{views}"));
        }
        E::TooManyShards { len, .. } => {
            return Some(format!("pass --shard I/N with N ≤ {len}"))
        }
        E::FeatureFile { next, .. } => next,
        E::DatasetUnusable { next, .. } => next,
        E::Merge { next: Some(next), .. } => next,
        E::ShardSpec { next: Some(next), .. } => next,
        E::Audit { next: Some(next), .. } => next,
        E::AddModel { next: Some(next), .. } => next,
        E::ModelConfig { next: Some(next), .. } => next,
        E::Quantize { next: Some(next), .. } => next,
        E::Package { next: Some(next), .. } => next,
        E::BundleMismatch { next: Some(next), .. } => next,
        E::FeaturesMismatch { next: Some(next), .. } => next,
        E::Export { next: Some(next), .. } => next,
        _ => return None,
    };
    next_words(next)
}

/// What a [`Next`] asks of the user, in flag words: resuming, extracting,
/// sharding and merging ([`dataset_words`] has the rest).
fn next_words(next: &xfer::error::Next) -> Option<String> {
    use xfer::error::Next;
    Some(match next {
        Next::FreeSpaceThenResume => {
            "free some space, then run the same command with --resume to continue".into()
        }
        Next::DeleteThenStartAfresh => "delete it and run without --resume".into(),
        Next::RestoreDatasetOrStartAgain => {
            "restore the dataset as it was, or start again with --overwrite".into()
        }
        Next::RestoreDatasetOrExtractEveryShard => {
            "restore the dataset as it was, or extract every shard again with --overwrite".into()
        }
        Next::ContinueAs(Some(s)) => {
            format!("pass --shard {s} to continue it, or --overwrite to start afresh")
        }
        Next::ContinueAs(None) => {
            "run without --shard to continue it, or pass --overwrite to start afresh".into()
        }
        Next::ContinueAsStarted => {
            "continue it with the same --shard (and list) it was started with".into()
        }
        Next::ExtractShardAgain => "extract this shard again with --overwrite".into(),
        Next::ExtractAgain => "extract it again with --overwrite".into(),
        Next::ExtractEveryShardAgain => {
            "extract every shard again with --overwrite, then merge them".into()
        }
        Next::OtherOutputOrReplace => {
            "give this shard another --out, or pass --overwrite to replace the file".into()
        }
        Next::ExtractAgainWithTheOthers => "pass --overwrite to extract it again (and the other shards, so that they can be merged)".into(),
        Next::ExtractLikeTheOthers => "extract it again with the others' list and settings (--overwrite), or pass the shards of one run".into(),
        Next::GiveEveryShard { count } => format!("pass every shard's file, or extract the missing ones first (xfer extract --shard I/{count} with the same flags)"),
        Next::GiveShardFiles => "merge takes the files of `xfer extract --shard I/N`".into(),
        Next::MergeShardsFirst { count } => format!(
            "merge all {count} shards into one file first: xfer merge --out FILE.h5 SHARD_FILES…"
        ),
        Next::FinishInterrupted(Some(s)) => {
            format!("finish it with `xfer extract --shard {s} --resume`")
        }
        Next::FinishInterrupted(None) => "finish it with `xfer extract --resume`".into(),
        Next::RunInJobOrGiveIndex { count } => {
            format!("run inside such a job, or pass the index: --shard I/{count}")
        }
        other => return dataset_words(other),
    })
}

/// What a [`Next`] about datasets, feature files given together and audits
/// asks of the user, in flag words.
fn dataset_words(next: &xfer::error::Next) -> Option<String> {
    use xfer::error::Next;
    Some(match next {
        Next::GiveFolder => "pass --data DIR".into(),
        Next::GiveListFile => "pass the list file with --list FILE".into(),
        Next::GiveImageFolderOrLayout => {
            "pass the folder that holds the images (or another --layout)".into()
        }
        Next::ReadUnlabelled => "use --layout unlabelled".into(),
        Next::ExtractFromOneDataset => "extract every backbone from the same dataset (files that failed in one extraction are listed as skipped: re-run it with --resume or remove them)".into(),
        Next::GiveFeatures => "pass --features FILE.h5".into(),
        Next::GiveEachSplitOnce => "give each split once (--features train.h5 --features test.h5; several backbones of one split comma-separated)".into(),
        Next::GiveSplitBackbonesTogether => {
            "give a split's backbones comma-separated in one --features".into()
        }
        Next::AuditTrainedFeaturesOrWithoutRun => {
            "audit the features the run was trained on, or leave out --run".into()
        }
        Next::TrainAgainOrWithoutRun => "train again on these features (`xfer train --train …`), or leave out --run and audit computes out-of-fold probabilities itself".into(),
        Next::CrossValidateOrWithoutRun { default } => format!(
            "train with --cv K, or leave out --run and audit computes them ({default})"
        ),
        Next::GiveTrainingRun => "give the --out folder of `xfer train`".into(),
        Next::PickRecordedHead => "pick one of those with --head".into(),
        other => return model_words(other),
    })
}

/// What a [`Next`] about adding a model to the zoo and its preprocessing
/// asks of the user, in flag words.
fn model_words(next: &xfer::error::Next) -> Option<String> {
    use xfer::error::Next;
    Some(match next {
        Next::OtherModelName => "choose another --name".into(),
        Next::OtherModelNameOrReplace => {
            "choose another --name, or pass --force to replace it".into()
        }
        Next::CropOf { side } => format!("pass --crop {side} or the config of this model"),
        Next::CropMultipleOf { patch } => format!("pass --crop with a multiple of {patch}"),
        Next::GiveConfigOrCrop => "pass --config or --crop S".into(),
        Next::ResizeOrCropPct => "give --resize or --crop-pct, not both".into(),
        Next::GiveNormalisation => "pass --config (the model's config.json or preprocessor_config.json) or --mean and --std".into(),
        Next::ChooseOutput => "choose one with --output NAME (tokens [N, T, D] with --pool cls, mean or cls+mean; feature maps [N, C, H, W] with --pool avg)".into(),
        Next::ChoosePooling => "choose a pooling: --pool avg or max for feature maps [N, C, H, W], cls, mean or cls+mean for tokens [N, T, D]".into(),
        Next::CheckPrefixTokens => "check --prefix-tokens".into(),
        Next::RightConfigOrRecipe => {
            "pass the right file, or give the preprocessing with --resize/--crop/--mean/--std".into()
        }
        Next::GiveResizeAndCrop => "give --resize and --crop (or --square)".into(),
        Next::GiveCrop => "give --crop".into(),
        Next::GivePython => "run `tools/setup.sh`, or pass --python PATH / set XFER_PYTHON to a Python with onnxruntime 1.31".into(),
        other => return ship_words(other),
    })
}

/// What a [`Next`] about packaging and predicting with a bundle asks of the
/// user, in flag words.
fn ship_words(next: &xfer::error::Next) -> Option<String> {
    use xfer::error::Next;
    Some(match next {
        Next::BuildOrGivePredictor { build } => {
            format!("build it in the xfer source with `{build}`, or pass --predictor FILE")
        }
        Next::FixBuildOrGivePredictor => "fix the build, or pass --predictor FILE".into(),
        Next::OtherOutputOrRemove => "it is not replaced even with --overwrite; choose another --out, or remove it yourself".into(),
        Next::ReplaceOrOtherOutput => "pass --overwrite to replace it, or another --out".into(),
        Next::GiveOutputFolder => "pass --out DIR".into(),
        Next::InstallTarOrNoTarball => "install tar, or leave out --tar".into(),
        Next::FixTarOrNoTarball => "leave out --tar or fix the cause".into(),
        Next::TrainingZooOrRetrain => "pass --zoo DIR holding the manifest and ONNX file the head was trained with, or extract features with this model and train the head again".into(),
        Next::ZooWithBackbone { name, precision } if precision.is_empty() => format!(
            "pass --zoo DIR holding its manifest ({name}.toml) and ONNX file, or generate it (see `xfer models`)"
        ),
        Next::ZooWithBackbone { name, precision } => format!(
            "pass --zoo DIR holding its manifest ({name}.toml) and ONNX file; it is an {precision} model made by `xfer quantize`: copy its {name}.toml and {name}.onnx into the zoo, or quantise again and train the head again (a new quantisation is a new model)"
        ),
        Next::DecodeAsTrained { full, extract } => format!(
            "{}{} --full-jpeg-decode to decode as training did",
            if *extract { "extract again and " } else { "" },
            if *full { "pass" } else { "leave out" }
        ),
        Next::SamePreset => "extract again with the same --preset".into(),
        Next::KeepOpset { have, want } => format!("leave out --opset (the file keeps opset {have}), or export the backbone at opset {want} (e.g. onnx.version_converter, then a manifest with its sha256) and train again"),
        _ => return None,
    })
}

/// `xfer info | head`: when the reader of stdout goes away, end quietly as
/// Unix tools do (killed by SIGPIPE, status 141) instead of panicking on a
/// failed `println!` (Rust ignores SIGPIPE by default).
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer::error::{Next, Setting};
    use xfer::features::shard::Shard;

    #[test]
    fn library_facts_get_the_command_lines_words() {
        let e = anyhow::Error::from(xfer::Error::FeatureFile {
            path: "out.h5.partial".into(),
            reason: "holds shard 1/3, this run is shard 2/3".into(),
            next: Next::ContinueAs(Some(Shard { index: 1, count: 3 })),
        });
        assert_eq!(
            message(&e),
            "feature file out.h5.partial: holds shard 1/3, this run is shard 2/3; \
             pass --shard 1/3 to continue it, or --overwrite to start afresh"
        );
        let e = anyhow::Error::from(xfer::Error::Setting {
            setting: Setting::ValSplit,
            problem: "must be between 0 and 1 (e.g. 0.1), got 2".into(),
        });
        assert_eq!(
            message(&e),
            "invalid configuration: --val-split must be between 0 and 1 (e.g. 0.1), got 2"
        );
        // Behind a context, too.
        let e = anyhow::Error::from(xfer::Error::Setting {
            setting: Setting::Patience,
            problem: "needs validation data".into(),
        })
        .context("planning the run");
        assert_eq!(
            message(&e),
            "planning the run: invalid configuration: --patience needs validation data; \
             pass --val, --val-split or --cv"
        );
    }
}
