//! JPEG decoding with libjpeg-turbo's decoder (vendored and statically linked
//! through the `mozjpeg` crate; it is the decoder PIL uses, so pixels match
//! torchvision's pipeline), optionally reduced by 1/2, 1/4 or 1/8 inside the
//! IDCT so that large photos are never decoded at full size.
//!
//! Truncated files are refused, as PIL refuses them ("image file is
//! truncated"). libjpeg itself does not fail on them: when its data source runs
//! dry it warns (`JWRN_JPEG_EOF`, "Premature end of JPEG file"), inserts a fake
//! end-of-image marker and fills the missing rows with grey. The `mozjpeg`
//! crate's source manager emits that warning exactly when its reader's
//! `fill_buf` comes back empty while libjpeg still asks for data, and its
//! error manager silences warnings; so the reader handed to it is wrapped in
//! [`EofWatch`], which records that moment. A complete file never asks for
//! data past its end-of-image marker. (Searching the file for an FFD9 marker
//! instead is wrong: camera JPEGs carry one inside their EXIF thumbnail.)

use std::cell::Cell;
use std::io::{BufRead, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use image::metadata::Orientation;
use image::RgbImage;
use mozjpeg::{ColorSpace, Decompress, Marker};

/// A decoded JPEG: RGB pixels as stored (EXIF orientation not yet applied).
pub(crate) struct Decoded {
    pub(crate) image: RgbImage,
    pub(crate) orientation: Orientation,
}

/// Why libjpeg did not produce an image.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A colour space this decoder does not turn into RGB: use another decoder.
    Unsupported,
    /// The header's size (width, height) is empty or over the caller's pixel limit.
    BadSize(u32, u32),
    /// The data ended before the image did (libjpeg's `JWRN_JPEG_EOF`).
    Truncated,
    /// libjpeg's own error message.
    Corrupt(String),
}

/// The smallest IDCT scale n/8 (n = 1, 2, 4, 8) that keeps the shorter side
/// at least `min_short_side` pixels; 8 (full size) when `min_short_side` is 0.
pub(crate) fn scale_for(short_side: u32, min_short_side: u32) -> u8 {
    if min_short_side == 0 {
        return 8;
    }
    [1u8, 2, 4]
        .into_iter()
        .find(|&n| (short_side as u64 * n as u64).div_ceil(8) >= min_short_side as u64)
        .unwrap_or(8)
}

/// A reader that records whether its consumer asked for data past the end.
struct EofWatch<R> {
    inner: R,
    hit_eof: Rc<Cell<bool>>,
}

impl<R: BufRead> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof.set(true);
        }
        Ok(n)
    }
}

impl<R: BufRead> BufRead for EofWatch<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            self.hit_eof.set(true);
        }
        Ok(buf)
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}

/// Decodes the JPEG read from `reader`, reduced in the IDCT so that the shorter
/// side stays at least `min_short_side` (0: full size). Images over
/// `max_pixels` are refused from the header, before any pixel is decoded.
///
/// The pixel limit applies to the size in the header, not to the reduced size
/// decoded: libjpeg's work (entropy decoding of every coefficient) grows with
/// the full size whatever the scale, and a progressive or multi-scan file makes
/// it buffer every coefficient of the full-size image (2 bytes each: 3 bytes a
/// pixel for 4:2:0 chroma, 6 for 4:4:4), also whatever the scale.
pub(crate) fn decode<R: BufRead>(
    reader: R,
    min_short_side: u32,
    max_pixels: u64,
) -> Result<Decoded, Failure> {
    let hit_eof = Rc::new(Cell::new(false));
    let reader = EofWatch {
        inner: reader,
        hit_eof: hit_eof.clone(),
    };
    // libjpeg reports errors by unwinding out of its callbacks (mozjpeg's error
    // manager); nothing is shared across the boundary but the reader and the flag.
    let result = match catch_unwind(AssertUnwindSafe(|| {
        decode_inner(reader, min_short_side, max_pixels)
    })) {
        Ok(r) => r,
        Err(payload) => Err(Failure::Corrupt(
            crate::error::panic_message(payload.as_ref())
                .map_or("libjpeg error", |s| {
                    s.trim_start_matches("libjpeg fatal error: ")
                })
                .to_owned(),
        )),
    };
    if hit_eof.get() {
        // Whatever libjpeg made of it (grey rows, or an error when the end came
        // inside a marker segment), the cause is missing data.
        return Err(Failure::Truncated);
    }
    result
}

fn decode_inner<R: BufRead>(
    reader: R,
    min_short_side: u32,
    max_pixels: u64,
) -> Result<Decoded, Failure> {
    let io = |e: std::io::Error| Failure::Corrupt(e.to_string());
    let mut dec = Decompress::with_markers(&[Marker::APP(1)])
        .from_reader(reader)
        .map_err(io)?;
    let cmyk = match dec.color_space() {
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB | ColorSpace::JCS_GRAYSCALE => false,
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => true,
        _ => return Err(Failure::Unsupported),
    };
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
    let image = if cmyk {
        let mut started = dec.to_colorspace(ColorSpace::JCS_CMYK).map_err(io)?;
        let (sw, sh) = (started.width() as u32, started.height() as u32);
        let mut cmyk = vec![0u8; sw as usize * sh as usize * 4];
        started.read_scanlines_into(&mut cmyk).map_err(io)?;
        started.finish().map_err(io)?;
        let rgb = cmyk.chunks_exact(4).flat_map(pil_cmyk_to_rgb).collect();
        RgbImage::from_raw(sw, sh, rgb).expect("buffer holds sw*sh RGB pixels")
    } else {
        let mut started = dec.rgb().map_err(io)?;
        let (sw, sh) = (started.width() as u32, started.height() as u32);
        let mut pixels = vec![0u8; sw as usize * sh as usize * 3];
        started.read_scanlines_into(&mut pixels).map_err(io)?;
        started.finish().map_err(io)?;
        RgbImage::from_raw(sw, sh, pixels).expect("buffer holds sw*sh RGB pixels")
    };
    Ok(Decoded { image, orientation })
}

/// PIL's CMYK JPEG → RGB: it reads CMYK JPEGs as inverted ("CMYK;I", the Adobe
/// convention, assumed for every CMYK JPEG) and converts with Convert.c's
/// `cmyk2rgb`: `nk = 255 − k; out = nk − nk·c/255` (rounded as MULDIV255).
fn pil_cmyk_to_rgb(px: &[u8]) -> [u8; 3] {
    let [c, m, y, k] = [255 - px[0], 255 - px[1], 255 - px[2], 255 - px[3]].map(u32::from);
    let nk = 255 - k;
    let muldiv255 = |a: u32| {
        let t = a * nk + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (nk - muldiv255(v)) as u8)
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
            decode(&bytes[..], 0, u64::MAX),
            Err(Failure::Corrupt(_))
        ));
    }

    #[test]
    fn data_ending_inside_a_marker_segment_is_truncation() {
        // An APP1 segment claiming 1000 bytes, then the end of the file.
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x03, 0xE8];
        bytes.extend_from_slice(&[0x42; 64]);
        assert!(matches!(
            decode(&bytes[..], 0, u64::MAX),
            Err(Failure::Truncated)
        ));
    }

    #[test]
    fn pil_cmyk_conversion() {
        // Stored inverted: 255 = no ink.
        assert_eq!(pil_cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(pil_cmyk_to_rgb(&[255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(pil_cmyk_to_rgb(&[0, 255, 255, 255]), [0, 255, 255]);
    }
}
