//! Typed errors of the library. A message states what is wrong (paths,
//! values, what differs); the next step, where one is known, is a typed
//! [`Next`] (or the variant itself) that the front end words: the command
//! line in its flags, so that a library caller gets no command-line advice.

use std::path::PathBuf;

use crate::features::shard::Shard;
use crate::models::runtime::{Device, LibrarySource};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no ONNX Runtime library found (looked at: {searched}); install it into xfer's Python \
         environment (`pip install onnxruntime==1.31.1`, or `onnxruntime-gpu==1.31.1` for CUDA), \
         run `tools/setup.sh` in a checkout, or set ORT_DYLIB_PATH to a libonnxruntime.so of \
         version 1.31"
    )]
    OrtLibraryMissing { searched: String },

    /// A library named by the caller or by ORT_DYLIB_PATH that is not there:
    /// never silently replaced by another one.
    #[error("no ONNX Runtime library found at {path}, which {} names: {reason}{}", via.describe(), if *via == LibrarySource::Env { "; set ORT_DYLIB_PATH to the path of a libonnxruntime.so of version 1.31, or unset it to use the one `tools/setup.sh` installs" } else { "" })]
    OrtLibraryNamed {
        path: PathBuf,
        /// [`LibrarySource::Given`] or [`LibrarySource::Env`].
        via: LibrarySource,
        reason: String,
    },

    #[error("could not load ONNX Runtime from {path}: {reason}; run `tools/setup.sh` to install version 1.31.1")]
    OrtLibraryLoad { path: PathBuf, reason: String },

    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),

    /// ONNX Runtime could not build a session; the message names the stage.
    #[error("ONNX Runtime, {0}")]
    Session(String),

    /// A provider that could not be used; the message says what it needs.
    #[error("execution provider {} is not available: {reason}{}", device.provider_name(), device_needs(*device, reason))]
    ProviderUnavailable { device: Device, reason: String },

    /// The GPU providers cannot take every node of the model, and CPU fallback
    /// was not allowed (ONNX Runtime's `session.disable_cpu_ep_fallback`).
    #[error("{requested} cannot run every node of {model}: {reason}")]
    ProviderPartial {
        requested: String,
        model: String,
        reason: String,
    },

    #[error("TensorRT engine cache folder {path}: {reason}")]
    TrtCache { path: PathBuf, reason: String },

    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },

    #[error("unknown model `{name}`; known models: {known}. Run `xfer models` to see the zoo")]
    UnknownModel { name: String, known: String },

    #[error("model file {path} is missing; generate it with `{generator}`")]
    ModelFileMissing { path: PathBuf, generator: String },

    #[error("model file {path} has sha256 {actual}, but its manifest says {expected}; regenerate it with `{generator}`")]
    ModelChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
        generator: String,
    },

    #[error("model {model} does not match its manifest: {reason}; regenerate the ONNX file or fix the manifest")]
    ModelMismatch { model: String, reason: String },

    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },

    /// A protobuf wire-format error inside an ONNX file, before the caller
    /// names the file (it becomes an [`Error::Manifest`] naming it).
    #[error("not a valid ONNX protobuf: {0}")]
    Wire(String),

    /// A path given for prediction (a file or a folder searched for images).
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },

    /// Another process holds the lock on an output.
    #[error(
        "{output} is being written by another xfer process (pid {pid}: {command}); \
         wait for it to finish, or stop it (kill {pid}) and run again. \
         (The lock is {lock}; it frees itself when that process ends.)"
    )]
    Locked {
        output: PathBuf,
        lock: PathBuf,
        pid: String,
        command: String,
    },

    /// Something xfer did not make at a fixed name it writes beside an output
    /// (a `.lock`, `.partial`): refused and left alone, never followed.
    #[error("{path} is {what}, where xfer keeps its {role}: xfer never makes one there and will not follow or delete it (it could point at another file); remove it if you know what it is, or choose another output, then run again")]
    Planted {
        path: PathBuf,
        what: String,
        role: &'static str,
    },

    /// An output that is one of the run's inputs (the same file): refused
    /// whether or not outputs may be replaced.
    #[error("{named} {output} is {what} ({input}), an input of this run: writing it would destroy that input")]
    OutputIsInput {
        /// Which output of the run it is.
        named: Output,
        output: PathBuf,
        what: String,
        input: PathBuf,
    },

    /// An output that exists, and the run was not told to replace it.
    #[error("{path} already exists")]
    OutputExists { path: PathBuf },

    /// The `.partial` file of an interrupted extraction is in the way.
    #[error("{partial} is an interrupted extraction")]
    Interrupted { partial: PathBuf },

    /// A resumed run found no interrupted extraction.
    #[error("there is no interrupted extraction {partial} to continue")]
    NothingToResume { partial: PathBuf },

    /// An output's folder does not exist (xfer makes files, not folders).
    #[error("the folder of {path}, {folder}, does not exist")]
    NoOutputFolder { path: PathBuf, folder: PathBuf },

    /// Momentum was asked of an optimiser that has none (Adam, AdamW).
    #[error("momentum and Nesterov momentum apply to the SGD optimiser only")]
    MomentumWithoutSgd,

    #[error("dataset {root}: {reason}")]
    Dataset { root: PathBuf, reason: String },

    /// A dataset that cannot be read as given, and what would get past it.
    #[error("dataset {root}: {reason}")]
    DatasetUnusable {
        root: PathBuf,
        reason: String,
        next: Next,
    },

    #[error("feature file {path}: {reason}")]
    Store { path: PathBuf, reason: String },

    /// Labels that a split's features cannot be trained or scored with
    /// (unlabelled rows, unknown classes, another class list); `what` names
    /// the split and its files.
    #[error("{what}: {reason}")]
    Labels { what: String, reason: String },

    /// A feature file (or the `.partial` of an interrupted one) that cannot
    /// be used, continued or merged as asked: `reason` says what is wrong,
    /// `next` what would get past it.
    #[error("feature file {path}: {reason}")]
    FeatureFile {
        path: PathBuf,
        reason: String,
        next: Next,
    },

    /// A shard specification (`I/N` or `auto/N`) that names no shard.
    #[error("shard {spec}: {reason}")]
    ShardSpec {
        spec: String,
        reason: String,
        next: Option<Next>,
    },

    /// More shards than the list has files.
    #[error("shard {shard}: {} shards for a list of {len} files; the number of shards can be at most the number of files", shard.count)]
    TooManyShards { shard: Shard, len: usize },

    /// Shard files that do not make one whole extraction together (a shard
    /// missing, given twice, or of another job); the message names them.
    #[error("cannot merge: {reason}")]
    Merge { reason: String, next: Option<Next> },

    /// A setting whose value cannot work; `problem` follows the setting's
    /// name ("must be at least 1").
    #[error("invalid configuration: {setting} {problem}")]
    Setting { setting: Setting, problem: String },

    /// An MLP head of more parameters than xfer allows.
    #[error("invalid configuration: the head {head} has {parameters} parameters, over xfer's limit of {limit} (1 GiB of float32 weights)")]
    HeadTooLarge {
        head: String,
        /// A number, or "more than 2^64".
        parameters: String,
        limit: u64,
    },

    /// A training plan without a head to train.
    #[error("invalid configuration: no head to train")]
    NoHead,

    /// A batch whose input tensors would take more memory than xfer allows.
    #[error("a batch of {tensors} tensors ({sides} floats each) would take {gib:.1} GiB, over xfer's limit of {limit_gib} GiB per batch")]
    BatchTooLarge {
        tensors: u64,
        /// The tensors' shapes, "3×224×224 + 3×256×256".
        sides: String,
        gib: f64,
        limit_gib: u64,
        /// Views per image (1 without augmentation).
        views: usize,
    },

    /// `xfer audit` input that cannot be audited (splits of different
    /// backbones or datasets, a run that does not match the features, a class
    /// with one image); the message says what differs and what to do.
    #[error("audit: {reason}")]
    Audit { reason: String, next: Option<Next> },

    /// An image list (`--list`) that cannot be read; the reason names the line.
    #[error("image list {path}: {reason}")]
    List { path: PathBuf, reason: String },

    #[cfg(feature = "store")]
    #[error("HDF5 error on {path}: {source}")]
    Hdf5 {
        path: PathBuf,
        #[source]
        source: hdf5::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Atomic(#[from] crate::util::atomic::AtomicError),

    /// A model's own preprocessing configuration (timm, Hugging Face) that
    /// cannot be read or reproduced.
    #[error("model config {path}: {reason}")]
    ModelConfig {
        path: PathBuf,
        reason: String,
        next: Option<Next>,
    },

    /// A model file `xfer models add` cannot take: `reason` says why, `next`
    /// what would get past it.
    #[error("cannot add {path}: {reason}")]
    AddModel {
        path: PathBuf,
        reason: String,
        next: Option<Next>,
    },

    #[error("invalid configuration: {0}")]
    Config(String),

    /// `xfer quantize` could not make or measure the int8 model.
    #[error("quantize: {reason}")]
    Quantize { reason: String, next: Option<Next> },

    /// Features that do not come from the backbones (or images) expected; the
    /// reason says what differs.
    #[error("{reason}")]
    FeaturesMismatch { reason: String, next: Option<Next> },

    /// Weights that do not fit a head's architecture.
    #[error("head weights: {0}")]
    HeadShape(String),

    /// A preprocessing recipe that cannot be applied.
    #[error("preprocessing recipe: {0}")]
    Recipe(String),

    /// A bundle file that cannot be used; the reason says why and what to do.
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },

    #[cfg(feature = "train")]
    #[error("logistic regression: {0}")]
    Logistic(#[from] crate::train::head::logistic::LogisticError),

    /// A bundle and a backbone of the zoo (or this run's decoding) disagree;
    /// the reason names both.
    #[error("bundle {bundle}: {reason}")]
    BundleMismatch {
        bundle: PathBuf,
        reason: String,
        next: Option<Next>,
    },

    /// `xfer export` cannot make one ONNX graph of these backbones and head;
    /// the reason says why.
    #[error("export: {reason}")]
    Export { reason: String, next: Option<Next> },

    /// `xfer package` cannot gather what a package needs or write it where
    /// asked; the reason says what is missing or in the way.
    #[error("package: {reason}")]
    Package { reason: String, next: Option<Next> },

    #[error("{} and {} both have the id {id}; a submission needs one row per id: predict one test folder", first.display(), second.display())]
    DuplicateId {
        first: PathBuf,
        second: PathBuf,
        id: String,
    },
}

/// What would get past a refusal, as a fact about the work to do; the front
/// end words it (the command line names its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Next {
    /// Free some disk space, then continue the interrupted extraction.
    FreeSpaceThenResume,
    /// The interrupted file is damaged: delete it and start afresh (not resuming).
    DeleteThenStartAfresh,
    /// Restore the dataset as it was, or start the extraction again.
    RestoreDatasetOrStartAgain,
    /// Restore the dataset as it was, or extract every shard again.
    RestoreDatasetOrExtractEveryShard,
    /// Continue the file as the shard it was started as (`None`: as a whole
    /// extraction), or start afresh.
    ContinueAs(Option<Shard>),
    /// Continue the shard file as the same shard, of the same list, it was
    /// started as.
    ContinueAsStarted,
    /// Extract this shard again, replacing the file.
    ExtractShardAgain,
    /// Extract this file again, replacing it.
    ExtractAgain,
    /// Extract every shard again, replacing the files, then merge them.
    ExtractEveryShardAgain,
    /// Write this shard to another file, or replace the file.
    OtherOutputOrReplace,
    /// Extract this shard again (and the other shards, so that they merge).
    ExtractAgainWithTheOthers,
    /// Extract the shard again with the other shards' list and settings, or
    /// give the shards of one run.
    ExtractLikeTheOthers,
    /// Give every shard's file, or extract the missing ones of `count`.
    GiveEveryShard { count: u64 },
    /// Give the files of a sharded extraction.
    GiveShardFiles,
    /// Merge the `count` shards into one file first.
    MergeShardsFirst { count: u64 },
    /// Finish the interrupted extraction (of this shard, if it is one).
    FinishInterrupted(Option<Shard>),
    /// Run inside a job array that gives the shard's index, or give the
    /// index of one of `count` shards.
    RunInJobOrGiveIndex { count: u64 },
    /// Give a folder of images.
    GiveFolder,
    /// Give the list file itself (the layout asked for is a list).
    GiveListFile,
    /// Give the folder that holds the images, or read it with another layout.
    GiveImageFolderOrLayout,
    /// Read the dataset with the unlabelled layout.
    ReadUnlabelled,
    /// Extract every backbone's features from the same dataset (an
    /// extraction with failed files lists them as skipped: continue it, or
    /// remove them).
    ExtractFromOneDataset,
    /// Give the audit feature files.
    GiveFeatures,
    /// Give each split once (a split's backbones together).
    GiveEachSplitOnce,
    /// Give a split's backbones together, as one split.
    GiveSplitBackbonesTogether,
    /// Audit the features the run was trained on, or audit without the run.
    AuditTrainedFeaturesOrWithoutRun,
    /// Train again on these features, or audit without the run (computing
    /// out-of-fold probabilities).
    TrainAgainOrWithoutRun,
    /// Train with cross-validation, or audit without the run (computing
    /// out-of-fold probabilities with `default`).
    CrossValidateOrWithoutRun { default: String },
    /// Give the output folder of a training run.
    GiveTrainingRun,
    /// Pick one of the heads the run recorded.
    PickRecordedHead,

    // Adding a model to the zoo, and its preprocessing config.
    /// Choose another name for the model.
    OtherModelName,
    /// Choose another name, or replace the zoo's manifest of that name.
    OtherModelNameOrReplace,
    /// Give a crop of `side` (the graph's fixed input), or the model's config.
    CropOf { side: i64 },
    /// Give a crop that is a multiple of the patch size.
    CropMultipleOf { patch: u32 },
    /// Give the input size: the model's config or a crop.
    GiveConfigOrCrop,
    /// Give a resize or a crop fraction, not both.
    ResizeOrCropPct,
    /// Give the normalisation: the model's config, or a mean and a std.
    GiveNormalisation,
    /// Choose which output of the graph gives the features.
    ChooseOutput,
    /// Choose a pooling that fits the output's shape.
    ChoosePooling,
    /// Check the number of prefix tokens (class and register tokens).
    CheckPrefixTokens,
    /// Give the model's right config, or the preprocessing explicitly.
    RightConfigOrRecipe,
    /// Give a resize and a crop (or a square resize): the config's sizes
    /// cannot be batched.
    GiveResizeAndCrop,
    /// Give a centre crop.
    GiveCrop,

    // Quantizing, shipping, predicting.
    /// Give a Python with onnxruntime 1.31 (`tools/setup.sh` installs one).
    GivePython,
    /// Build the slim predictor with `build`, or give one.
    BuildOrGivePredictor { build: String },
    /// Fix the slim predictor's build, or give one.
    FixBuildOrGivePredictor,
    /// The output is not xfer's to replace: choose another, or remove it.
    OtherOutputOrRemove,
    /// Replace the output, or choose another.
    ReplaceOrOtherOutput,
    /// Give the package's output folder.
    GiveOutputFolder,
    /// Install tar, or make no tarball (the folder is complete).
    InstallTarOrNoTarball,
    /// Fix tar's failure, or make no tarball (the folder is complete).
    FixTarOrNoTarball,
    /// Use the zoo the head was trained with, or extract again with this
    /// backbone and train the head again.
    TrainingZooOrRetrain,
    /// Use a zoo holding backbone `name`, or make it (`precision`: the int8
    /// model `xfer quantize` made, empty for a backbone of the zoo's list).
    ZooWithBackbone { name: String, precision: String },
    /// Decode JPEGs at full size (`full`) or reduced, as training did
    /// (`extract`: extracting the features again).
    DecodeAsTrained { full: bool, extract: bool },
    /// Extract with the preprocessing preset training used.
    SamePreset,
    /// Keep the backbones' opset `have`, or export them at `want` and train
    /// again.
    KeepOpset { have: i64, want: i64 },
}

/// A setting of a plan or a run, named in words (the command line names it
/// by its flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// Images per batch.
    Batch,
    /// Views per image (augmentation).
    Views,
    /// The fraction of the training rows held out for validation.
    ValSplit,
    /// Epochs without improvement before training stops.
    Patience,
    /// The widths of the MLP's hidden layers.
    Hidden,
    /// The MLP's dropout probability.
    Dropout,
    /// The augmentation recipe (a name or a TOML file).
    Augment,
    /// The cosine similarity from which `audit` calls two images near duplicates.
    Threshold,
    /// Cross-validation folds.
    Folds,
    /// The logistic regression's inverse regularisation strength.
    LogisticC,
    /// Optimiser steps of the MLP.
    Steps,
    /// Training epochs.
    Epochs,
    /// The learning rate.
    LearningRate,
    /// SGD's momentum.
    Momentum,
    /// The weight decay.
    WeightDecay,
    /// The learning-rate schedule.
    Schedule,
    /// The crop fraction of a model's preprocessing (resize = crop / crop_pct).
    CropPct,
    /// Calibration images of a quantisation.
    CalibrationImages,
    /// Held-back images a quantisation's agreement is measured on.
    HeldBackImages,
    /// The precision OpenVINO computes in.
    Precision,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Setting::Batch => "the batch size",
            Setting::Views => "the number of views",
            Setting::ValSplit => "the validation fraction",
            Setting::Patience => "early stopping (patience)",
            Setting::Hidden => "the hidden layer widths",
            Setting::Dropout => "the dropout",
            Setting::Augment => "the augmentation recipe",
            Setting::Threshold => "the similarity threshold",
            Setting::Folds => "the number of folds",
            Setting::LogisticC => "the logistic regression's C",
            Setting::Steps => "the number of steps",
            Setting::Epochs => "the number of epochs",
            Setting::LearningRate => "the learning rate",
            Setting::Momentum => "the momentum",
            Setting::WeightDecay => "the weight decay",
            Setting::Schedule => "the learning-rate schedule",
            Setting::CropPct => "the crop fraction (crop_pct)",
            Setting::CalibrationImages => "the number of calibration images",
            Setting::HeldBackImages => "the number of held-back images",
            Setting::Precision => "the OpenVINO precision",
        })
    }
}

/// Which output of a run [`Error::OutputIsInput`] refuses: the library's own
/// by what they are, a front end's by its own word for them (the command
/// line: the flag).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// An extraction's feature file (or its `.partial`).
    FeatureFile,
    /// The manifest `xfer models add` writes into the zoo.
    Manifest,
    /// An output a front end names.
    Named(String),
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::FeatureFile => "the feature file",
            Output::Manifest => "the manifest",
            Output::Named(s) => s,
        })
    }
}

impl From<&str> for Output {
    fn from(s: &str) -> Output {
        Output::Named(s.to_owned())
    }
}

/// What is wrong, before the caller names its subject (a file, a model),
/// and what would get past it where that is known: the caller makes it an
/// [`Error`] of its concern.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub next: Option<Next>,
}

impl Refusal {
    pub fn new(reason: impl Into<String>, next: Next) -> Refusal {
        Refusal {
            reason: reason.into(),
            next: Some(next),
        }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal { reason, next: None }
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal::from(reason.to_owned())
    }
}

/// What a provider needs beyond what the caller chose (the device, the
/// library, whether to fall back to the CPU), as "; …" after its reason.
/// ONNX Runtime's CUDA provider failing on `libcuda.so.1` means no NVIDIA
/// driver: its other libraries can come from pip, that one only with the
/// driver. Nothing for OpenVINO, whose reasons say it themselves
/// ([`crate::models::openvino::choose`]).
fn device_needs(device: Device, reason: &str) -> String {
    if device == Device::Openvino {
        return String::new();
    }
    if reason.contains("libcuda.so.1") {
        return "; libcuda.so.1 is the NVIDIA driver's library, which no pip package provides: this machine \
                has no NVIDIA driver (no GPU?); run on a GPU machine, where nvidia-smi works"
            .into();
    }
    let tensorrt = device == Device::Tensorrt;
    format!(
        "; check the GPU (nvidia-smi) and that the ONNX Runtime library loaded is the GPU build \
         (PyPI onnxruntime-gpu==1.31.1), with CUDA 13 and cuDNN 9{} from NVIDIA's pip packages in \
         the same Python environment (onnxruntime-gpu[cuda,cudnn]) or on LD_LIBRARY_PATH \
         (docs/clusters.md, \"GPUs\"); xfer must be built with the Cargo feature {}",
        if tensorrt { " and TensorRT 10" } else { "" },
        if tensorrt { "tensorrt" } else { "cuda" }
    )
}

impl From<ort::Error<ort::session::builder::SessionBuilder>> for Error {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        Error::Ort(e.into())
    }
}

/// The message of `err` and of its causes, joined by ": ", for printing. A
/// cause whose text is already part of the message is left out: `Io` and
/// `Hdf5` errors show their source in their own text (`{path}: {source}`) and
/// also give it as their `source()`, and printing both would say the OS error
/// twice ("Permission denied (os error 13): Permission denied (os error 13)").
/// For a program that uses the library; the CLI words its messages itself
/// (`cli::common::message`).
pub fn chain_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("loading the model")]
    struct Context(#[source] Error);

    #[test]
    fn chain_message_says_the_os_error_once() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = Error::io("/z/tiny.toml", io);
        assert_eq!(
            chain_message(&e),
            "/z/tiny.toml: Permission denied (os error 13)"
        );
        // Behind a context, too; a cause not yet said is kept.
        let c = Context(Error::io(
            "/z/tiny.toml",
            std::io::Error::from_raw_os_error(libc::EACCES),
        ));
        assert_eq!(
            chain_message(&c),
            "loading the model: /z/tiny.toml: Permission denied (os error 13)"
        );
    }
}
