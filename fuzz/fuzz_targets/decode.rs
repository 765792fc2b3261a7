#![no_main]
//! Arbitrary bytes → image decode (every format) → resize/crop/normalise.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xfer_fuzz::checks::decode(data);
});
