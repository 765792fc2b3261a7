//! Shared code of the fuzz targets.

pub mod checks;

/// `XFER_FUZZ_STRICT=1` also flags silent wrong results (see `checks`).
pub fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("XFER_FUZZ_STRICT").is_some_and(|v| v == "1"))
}
