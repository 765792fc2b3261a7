#![no_main]
//! Arbitrary bytes as a head bundle (safetensors + JSON metadata) → load → predict.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xfer_fuzz::checks::bundle(data, xfer_fuzz::strict());
});
