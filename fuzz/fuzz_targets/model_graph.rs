#![no_main]
//! An ONNX file given to `xfer models add` (byte 0: its flags), read by ONNX
//! Runtime and inspected by `model_add::add` (`checks::model_graph`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xfer_fuzz::checks::model_graph(data);
});
