//! `xfer info`.

use anyhow::Result;
use xfer::models::runtime::{self, Device, Runtime};
use xfer::models::zoo::Zoo;

use super::Cli;

pub fn info(cli: &Cli) -> Result<i32> {
    println!(
        "xfer {} (built for ONNX Runtime {})",
        xfer::VERSION,
        runtime::ORT_VERSION
    );
    match Runtime::init(cli.ort_lib.as_deref()) {
        Ok(rt) => print_runtime(&rt),
        Err(e @ xfer::Error::OrtLibraryNamed { .. }) => return Err(e.into()),
        Err(e) => println!("ONNX Runtime: {e}"),
    }
    let cpu = xfer::models::cpu::Int8Support::detect();
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

/// The library found, NVIDIA's pip libraries beside it, and each provider tried for real.
fn print_runtime(rt: &Runtime) {
    println!("ONNX Runtime {} from {}", rt.version, rt.library.display());
    println!("  found via {}", super::common::library_source(&rt.source));
    // The same (once per process) load the CUDA provider's registration uses.
    if let Some(site) = xfer::models::nvidia::site_packages_of(&rt.library) {
        match xfer::models::nvidia::preload_once(&rt.library) {
            Some(done) => {
                println!(
                    "NVIDIA libraries from pip ({}/nvidia), loaded before the CUDA provider:",
                    site.display()
                );
                for line in done.describe() {
                    println!("  {line}");
                }
            }
            None => println!(
                "NVIDIA libraries from pip: none in {} (for CUDA: pip install onnxruntime-gpu[cuda,cudnn]==1.31.1)",
                site.display()
            ),
        }
    }
    // Each provider is tried for real (a tiny session built strictly on it and
    // run once), not taken as usable because the library was built with it.
    for device in [Device::Cpu, Device::Cuda, Device::Tensorrt] {
        let probe = xfer::models::backbone::probe(rt, device, 0);
        match probe.result {
            Ok(placement) => println!(
                "  {:<28} works: a test session ran ({})",
                device.provider_name(),
                placement.describe()
            ),
            Err(e) => println!("  {:<28} not usable: {e}", device.provider_name()),
        }
    }
    print_openvino(rt);
}

/// ONNX Runtime's OpenVINO plugin: where it is, the devices it offers with
/// their capabilities, and a test session on its CPU device.
fn print_openvino(rt: &Runtime) {
    use xfer::models::openvino;
    let plugin = match openvino::register(rt, None) {
        Ok(p) => p,
        Err(e) => {
            println!("OpenVINO (--device openvino): {e}");
            return;
        }
    };
    println!(
        "OpenVINO plugin {}\n  found via {}",
        plugin.path.display(),
        plugin.source.describe()
    );
    let devices = openvino::devices(&rt.env);
    for d in devices.iter().filter(|d| !d.meta) {
        println!(
            "  device {} ({}, plugin {}): {}",
            d.ov_device,
            d.name,
            d.version,
            d.capabilities.join(" ")
        );
    }
    let probe = xfer::models::backbone::probe(rt, Device::Openvino, 0);
    match probe.result {
        Ok(placement) => println!(
            "  {:<28} works: a test session ran ({})",
            Device::Openvino.provider_name(),
            placement.describe()
        ),
        Err(e) => println!("  {:<28} not usable: {e}", Device::Openvino.provider_name()),
    }
}
