//! `xfer export`: a bundle and its backbone(s) as one ONNX file.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use xfer::models::zoo::Zoo;
use xfer::ship::bundle::Bundle;
use xfer::ship::export::{self, ExportOptions, Exported};
use xfer::ship::predict::{self, CheckedBundle};
use xfer::util::clobber::refuse_inputs;

use super::common::check_output;
use super::Cli;

/// Write one ONNX file holding the backbone(s), the pooling, the feature
/// standardisation, the head, the temperature and the softmax.
///
/// Its input `input` is the image already preprocessed as the bundle's recipe
/// says (float32 [N, 3, S, S]; the recipe is in the file's metadata_props
/// `xfer.preprocess`, in words in `xfer.input`); its outputs are
/// `probabilities` [N, classes] (the class names in `xfer.class_names`) and
/// `features` [N, D]. Several backbones become one graph when they share a
/// preprocessing recipe.
#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer export --bundle runs/a/best.safetensors --onnx classifier.onnx
  python -c \"import onnxruntime as ort; s = ort.InferenceSession('classifier.onnx'); print(s.get_modelmeta().custom_metadata_map['xfer.input'])\"")]
pub struct ExportArgs {
    /// The bundle written by `xfer train`.
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// The ONNX file to write.
    #[arg(long, value_name = "OUT.onnx")]
    onnx: PathBuf,
    /// The ai.onnx opset the file must have. xfer does not convert operators,
    /// so this must be the backbones' own opset (checked); without it the file
    /// keeps theirs.
    #[arg(long, value_name = "N")]
    opset: Option<i64>,
    /// Replace an existing OUT.onnx.
    #[arg(long)]
    overwrite: bool,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

pub fn export(cli: &Cli, args: &ExportArgs) -> Result<i32> {
    if !args.bundle.is_file() {
        bail!(
            "bundle {} does not exist; train one with `xfer train`",
            args.bundle.display()
        );
    }
    check_output("--onnx", &args.onnx, args.overwrite)?;
    let bundle = Bundle::load(&args.bundle)?;
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let resolved = predict::resolve_backbones(&bundle, &args.bundle, &zoo)?;
    let checked = CheckedBundle {
        path: args.bundle.clone(),
        bundle,
        backbones: resolved,
    };
    refuse_inputs("--onnx", &args.onnx, &checked.inputs())?;
    let exported = export::export(
        &checked.bundle,
        &checked.backbones,
        &ExportOptions { opset: args.opset },
    )?;
    xfer::util::atomic::write_bytes_atomic(&args.onnx, &exported.bytes)?;
    if args.json {
        print_json(args, &checked, &exported);
    } else {
        print_summary(args, &checked, &exported);
    }
    Ok(0)
}

fn print_json(args: &ExportArgs, checked: &CheckedBundle, exported: &Exported) {
    let (bundle, resolved) = (&checked.bundle, &checked.backbones);
    let j = serde_json::json!({
        "command": "export",
        "onnx": args.onnx,
        "bytes": exported.bytes.len(),
        "opset": exported.opset,
        "ir_version": exported.ir_version,
        "input": {"name": export::INPUT, "shape": exported.input_shape, "preprocess": exported.recipe},
        "outputs": {
            export::PROBABILITIES: [-1, exported.n_classes as i64],
            export::FEATURES: [-1, exported.feature_dim as i64],
        },
        "class_names": bundle.meta.class_names,
        "backbones": resolved.iter().map(|r| r.manifest.name.clone()).collect::<Vec<_>>(),
    });
    println!("{j}");
}

fn print_summary(args: &ExportArgs, checked: &CheckedBundle, exported: &Exported) {
    let (bundle, resolved) = (&checked.bundle, &checked.backbones);
    let mb = exported.bytes.len() as f64 / 1e6;
    println!(
        "wrote {} ({mb:.1} MB, ai.onnx opset {}, IR {}): {} + {} head",
        args.onnx.display(),
        exported.opset,
        exported.ir_version,
        resolved
            .iter()
            .map(|r| r.manifest.name.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
        bundle.meta.kind
    );
    println!(
        "  input  `{}`: {}",
        export::INPUT,
        export::describe_input(&exported.recipe)
    );
    println!(
        "  output `{}`: float32 [N, {}], classes {}",
        export::PROBABILITIES,
        exported.n_classes,
        bundle.meta.class_names.join(", ")
    );
    println!(
        "  output `{}`: float32 [N, {}], the pooled backbone features",
        export::FEATURES,
        exported.feature_dim
    );
    if exported.nodes_dropped > 0 {
        println!(
            "  {} backbone node(s) kept, {} left out (they computed only other outputs, e.g. ImageNet logits)",
            exported.nodes_kept, exported.nodes_dropped
        );
    }
}
