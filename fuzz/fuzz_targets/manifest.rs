#![no_main]
//! Arbitrary text as a backbone manifest (`onnx/<name>.toml`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xfer_fuzz::checks::manifest(data, xfer_fuzz::strict());
});
