//! JPEG decoding with libjpeg-turbo's decoder (vendored and statically linked
//! through the `mozjpeg` crate; it is the decoder PIL uses, so pixels match
//! torchvision's pipeline), optionally reduced by 1/2, 1/4 or 1/8 inside the
//! IDCT so that large photos are never decoded at full size.

use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use image::RgbImage;
use mozjpeg::{ColorSpace, Decompress, Marker};

/// A decoded JPEG: RGB pixels as stored (EXIF orientation not yet applied).
pub struct Decoded {
    pub image: RgbImage,
    pub orientation: Orientation,
}

/// Why libjpeg did not produce an image.
pub enum Failure {
    /// A kind this decoder does not turn into RGB (CMYK, YCCK, …): use another decoder.
    Unsupported,
    /// The header's size (width, height) is empty or over the caller's pixel limit.
    BadSize(u32, u32),
    /// libjpeg's own error message.
    Corrupt(String),
}

/// The smallest IDCT scale n/8 (n = 1, 2, 4, 8) that keeps the shorter side
/// at least `min_short_side` pixels; 8 (full size) when `min_short_side` is 0.
pub fn scale_for(short_side: u32, min_short_side: u32) -> u8 {
    if min_short_side == 0 {
        return 8;
    }
    [1u8, 2, 4]
        .into_iter()
        .find(|&n| (short_side as u64 * n as u64).div_ceil(8) >= min_short_side as u64)
        .unwrap_or(8)
}

/// Decodes `bytes`, reduced in the IDCT so that the shorter side stays at least
/// `min_short_side` (0: full size). Images over `max_pixels` are refused from
/// the header, before any pixel is decoded.
pub fn decode(bytes: &[u8], min_short_side: u32, max_pixels: u64) -> Result<Decoded, Failure> {
    // libjpeg reports errors by unwinding out of its callbacks (mozjpeg's error
    // manager); nothing is shared across the boundary but `bytes`.
    match catch_unwind(AssertUnwindSafe(|| {
        decode_inner(bytes, min_short_side, max_pixels)
    })) {
        Ok(r) => r,
        Err(payload) => Err(Failure::Corrupt(
            payload
                .downcast_ref::<String>()
                .map(|s| s.trim_start_matches("libjpeg fatal error: ").to_owned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".to_owned()),
        )),
    }
}

fn decode_inner(bytes: &[u8], min_short_side: u32, max_pixels: u64) -> Result<Decoded, Failure> {
    let io = |e: std::io::Error| Failure::Corrupt(e.to_string());
    let mut dec = Decompress::with_markers(&[Marker::APP(1)])
        .from_mem(bytes)
        .map_err(io)?;
    if !matches!(
        dec.color_space(),
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB | ColorSpace::JCS_GRAYSCALE
    ) {
        return Err(Failure::Unsupported);
    }
    let (w, h) = (dec.width() as u32, dec.height() as u32);
    if w == 0 || h == 0 || w as u64 * h as u64 > max_pixels {
        return Err(Failure::BadSize(w, h));
    }
    let orientation = dec
        .markers()
        .find_map(|m| m.data.strip_prefix(b"Exif\0\0"))
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    dec.scale(scale_for(w.min(h), min_short_side));
    let mut started = dec.rgb().map_err(io)?;
    let (sw, sh) = (started.width() as u32, started.height() as u32);
    let mut pixels = vec![0u8; sw as usize * sh as usize * 3];
    started.read_scanlines_into(&mut pixels).map_err(io)?;
    started.finish().map_err(io)?;
    let image = RgbImage::from_raw(sw, sh, pixels).expect("buffer holds sw*sh RGB pixels");
    Ok(Decoded { image, orientation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_the_shorter_side() {
        assert_eq!(scale_for(2368, 512), 2); // 296 < 512 at 1/8, 592 at 1/4
        assert_eq!(scale_for(4096, 512), 1);
        assert_eq!(scale_for(1000, 512), 8); // 500 at 1/2 is too small
        assert_eq!(scale_for(1024, 512), 4);
        assert_eq!(scale_for(375, 512), 8);
        assert_eq!(scale_for(5000, 0), 8);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        bytes.extend_from_slice(&[0x42; 64]);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        assert!(matches!(
            decode(&bytes, 0, u64::MAX),
            Err(Failure::Corrupt(_))
        ));
    }
}
