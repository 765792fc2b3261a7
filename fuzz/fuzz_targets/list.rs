#![no_main]
//! An image list (`xfer extract --list FILE`): byte 0 chooses `.csv`, `.tsv`
//! or one path per line; the rest is the file.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xfer_fuzz::checks::list(data);
});
