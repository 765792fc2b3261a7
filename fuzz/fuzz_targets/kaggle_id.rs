#![no_main]
//! Arbitrary image paths (non-UTF-8, commas, quotes, newlines) → Kaggle ids and
//! rows → submission CSV, which must read back (here also with the csv crate)
//! as the same rows.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(text) = xfer_fuzz::checks::kaggle(data) {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        assert_eq!(
            r.headers().expect("csv header").iter().collect::<Vec<_>>(),
            ["id", "label"]
        );
        let records: Vec<csv::StringRecord> = r
            .records()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("csv crate rejects {text:?}: {e}"));
        let ours = xfer_fuzz::checks::parse_csv(&text).expect("checked");
        assert_eq!(records.len() + 1, ours.len(), "csv crate row count of {text:?}");
        for (a, b) in records.iter().zip(&ours[1..]) {
            assert_eq!(a.iter().collect::<Vec<_>>(), *b, "csv crate reads {text:?}");
        }
    }
});
