//! Thumbnails for the evaluation report: an image file becomes a small JPEG
//! embedded in the page as a `data:` URI, so the page is one self-contained
//! file (no folder of images beside it to lose or to serve). Images are
//! decoded by [`preprocess::decode`] (the one decoder: EXIF orientation,
//! transparent pixels on white, size limits) and shrunk by
//! [`preprocess::thumbnail`]; only the JPEG encoding and base64 are here.

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;

use crate::error::{Error, Result};
use crate::images::preprocess::{self, DecodeOptions};

/// The longest side of a thumbnail, in pixels.
pub(crate) const MAX_SIDE: u32 = 160;

/// JPEG quality of the thumbnails: ~4–8 KB each at 160 px.
const QUALITY: u8 = 80;

/// The image of a feature-file row: `root` joined with its `/`-separated
/// relative path (as `dataset` records it). A list may name images outside
/// its folder; their recorded paths are absolute and are taken as they are.
pub(crate) fn image_path(root: &Path, rel: &str) -> PathBuf {
    let (start, rel) = match rel.strip_prefix('/') {
        Some(abs) => (PathBuf::from("/"), abs),
        None => (root.to_path_buf(), rel),
    };
    rel.split('/').fold(start, |p, part| p.join(part))
}

/// The image at `path` as a `data:image/jpeg;base64,…` URI, its longer side at
/// most `max_side` pixels. Errors say why the image could not be read (the
/// report shows the reason in place of the picture).
pub(crate) fn data_uri(path: &Path, max_side: u32) -> Result<String> {
    let img = preprocess::decode(path, &DecodeOptions::default(), max_side)?;
    let small = preprocess::thumbnail(&img, max_side);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
        .encode_image(&small)
        .map_err(|e| Error::Image {
            path: path.to_owned(),
            reason: format!("cannot encode its thumbnail: {e}"),
        })?;
    Ok(format!("data:image/jpeg;base64,{}", base64(&jpeg)))
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        // RFC 4648, section 10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn a_png_with_alpha_becomes_a_small_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a b.png");
        image::RgbaImage::from_pixel(400, 200, image::Rgba([0, 0, 0, 0]))
            .save(&p)
            .unwrap();
        let uri = data_uri(&p, MAX_SIDE).unwrap();
        let b64 = uri.strip_prefix("data:image/jpeg;base64,").unwrap();
        assert!(b64.len() < 8000, "{} bytes", b64.len());
        assert!(b64.starts_with("/9j/"), "a JPEG starts with FF D8 FF");
        assert_eq!(
            image_path(Path::new("/data"), "fruit/a b.png"),
            Path::new("/data/fruit/a b.png")
        );
        // A list's image outside the list's folder is recorded by its absolute path.
        assert_eq!(
            image_path(Path::new("/lists"), "/photos/fruit/a.png"),
            Path::new("/photos/fruit/a.png")
        );
        let missing = data_uri(&dir.path().join("gone.png"), MAX_SIDE).unwrap_err();
        assert!(missing.to_string().contains("gone.png"), "{missing}");
    }
}
