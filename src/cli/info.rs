//! `xfer info` and `xfer models`.

use anyhow::Result;
use xfer::runtime::{self, Device, Runtime};
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
            // Each provider is tried for real (a tiny session built strictly on it and
            // run once), not taken as usable because the library was built with it.
            for device in [Device::Cpu, Device::Cuda, Device::Tensorrt] {
                let probe = xfer::backbone::probe(&rt, device, 0);
                match probe.result {
                    Ok(placement) => println!(
                        "  {:<28} works: a test session ran ({})",
                        device.provider_name(),
                        placement.describe()
                    ),
                    Err(e) => println!("  {:<28} not usable: {e}", device.provider_name()),
                }
            }
        }
        Err(e @ xfer::Error::OrtLibraryNamed { .. }) => return Err(e.into()),
        Err(e) => println!("ONNX Runtime: {e}"),
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
        "{:<20} {:>9} {:>8} {:>11}  file",
        "model", "input", "features", "weights"
    );
    for m in &ms {
        let p = &m.preprocess;
        println!(
            "{:<20} {:>9} {:>8} {:>11}  {}",
            m.name,
            format!("{}→{}", p.resize, p.crop),
            m.output.feature_dim,
            match m.weights {
                Weights::Pretrained => "pretrained",
                Weights::Random => "RANDOM",
            },
            status(m)
        );
    }
    if ms.iter().any(|m| m.weights == Weights::Random) {
        println!("RANDOM: random initialisation, for structure and speed tests only; export with --weights FILE for real features");
    }
    Ok(0)
}
