//! Content hashes of files.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// SHA-256 of the bytes of the file at `path`, in lower-case hex (read in
/// blocks: any size of file).
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    update_from(&mut hasher, std::fs::File::open(path)?)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Feeds everything `r` reads to `hasher`, in blocks of 1 MiB.
pub(crate) fn update_from(hasher: &mut Sha256, mut r: impl Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_bytes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a");
        std::fs::write(&f, b"one").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            format!("{:x}", Sha256::digest(b"one"))
        );
        assert!(sha256_file(&d.path().join("none")).is_err());
    }
}
