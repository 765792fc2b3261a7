#![no_main]
//! Any text as the `name` of a backbone manifest (`onnx/<name>.toml`), which
//! names files in the zoo and in packages (`checks::manifest_name`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xfer_fuzz::checks::manifest_name(data, xfer_fuzz::strict());
});
