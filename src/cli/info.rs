//! `xfer info`.

use anyhow::Result;
use xfer::runtime::{self, Runtime};
use xfer::zoo::Zoo;

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
