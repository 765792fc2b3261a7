//! `xfer info` and `xfer models`.

use anyhow::Result;
use xfer::runtime::{self, Runtime};
use xfer::zoo::{Manifest, Weights, Zoo};

use super::Cli;

pub fn info(cli: &Cli) -> Result<i32> {
    println!(
        "xfer {} (built for ONNX Runtime {})",
        xfer::VERSION,
        runtime::ORT_VERSION
    );
    match Runtime::init(cli.ort_lib.as_deref()) {
        Ok(rt) => {
            println!("ONNX Runtime {} from {}", rt.version, rt.library.display());
            for (name, ok) in rt.available_providers() {
                println!(
                    "  {name:<28} {}",
                    if ok {
                        "available"
                    } else {
                        "not in this library"
                    }
                );
            }
        }
        Err(e @ xfer::Error::OrtLibraryNamed { .. }) => return Err(e.into()),
        Err(e) => println!("ONNX Runtime: {e}"),
    }
    let cpu = xfer::cpu::Int8Support::detect();
    println!("CPU int8 instructions: {}", cpu.describe());
    if cpu.known && !cpu.has_dot_product() {
        println!("  int8 models run without a dot-product instruction here; quantise for this CPU with `xfer quantize --reduce-range`");
    }
    let zoo = Zoo::locate(cli.zoo.as_deref());
    match zoo.manifests() {
        Ok(ms) => {
            let ready = ms.iter().filter(|m| m.verify_file().is_ok()).count();
            println!(
                "zoo {}: {} backbones, {} ready (run `xfer models`)",
                zoo.dir.display(),
                ms.len(),
                ready
            );
        }
        Err(e) => println!("zoo: {e}"),
    }
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

pub fn models(cli: &Cli) -> Result<i32> {
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let ms = zoo.manifests()?;
    println!("zoo: {}", zoo.dir.display());
    println!(
        "{:<24} {:>9} {:>8} {:>9} {:>11}  file",
        "model", "input", "features", "precision", "weights"
    );
    for m in &ms {
        let p = &m.preprocess;
        println!(
            "{:<24} {:>9} {:>8} {:>9} {:>11}  {}",
            m.name,
            format!("{}→{}", p.resize, p.crop),
            m.output.feature_dim,
            m.precision(),
            match m.weights {
                Weights::Pretrained => "pretrained",
                Weights::Random => "RANDOM",
            },
            status(m)
        );
    }
    for m in &ms {
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
