//! The only pixel maths in the project: decode an image file into RGB, then
//! resize the shorter side, centre-crop and normalise into a CHW f32 tensor,
//! exactly as torchvision's `Resize(S) → CenterCrop(C) → ToTensor → Normalize`
//! does on a PIL image. Extraction, prediction and the tests all call
//! [`load_tensor`] (or [`decode`] + [`to_tensor`]).

use std::io::{BufRead, BufReader, Cursor, Seek, SeekFrom};
use std::path::Path;

use fast_image_resize as fir;
use image::error::LimitErrorKind;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::images::jpeg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// How the image is resized before the centre crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// The shorter side becomes `resize`, the aspect ratio kept
    /// (torchvision's `Resize(int)`, timm's `crop_mode = "center"`).
    #[default]
    ShorterSide,
    /// The image becomes exactly `resize × resize`, the aspect ratio not kept
    /// (Hugging Face's `size = {height, width}`, timm's `crop_mode = "squash"`).
    Square,
}

impl ResizeMode {
    fn is_default(&self) -> bool {
        *self == ResizeMode::default()
    }
}

/// Where a centre crop starts when the margin is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropOffset {
    /// torchvision's (and timm's) `CenterCrop`: `int(round((len - crop) / 2))`.
    #[default]
    RoundHalfEven,
    /// Hugging Face's `center_crop`: `(len - crop) // 2`.
    Floor,
}

impl CropOffset {
    fn is_default(&self) -> bool {
        *self == CropOffset::default()
    }
}

/// How pixels become a model input. `x = u8 * pixel_scale`, then `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The image is resized to this (antialiased, like PIL): its shorter side,
    /// or both sides with `resize_mode = "square"`.
    pub resize: u32,
    /// Absent from recipes (and their JSON in feature files and bundles) that
    /// use the default, so those stay byte-identical to older ones.
    #[serde(default, skip_serializing_if = "ResizeMode::is_default")]
    pub resize_mode: ResizeMode,
    /// Then a centred `crop × crop` square is taken.
    pub crop: u32,
    #[serde(default, skip_serializing_if = "CropOffset::is_default")]
    pub crop_offset: CropOffset,
    pub interpolation: Interpolation,
    pub pixel_scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub channel_order: ChannelOrder,
}

/// Named alternatives to a backbone's native recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The recipe in the backbone's manifest.
    Native,
    /// The Dogs-vs-Cats tutorial's validation transform: Scale(320), CenterCrop(299),
    /// Normalize(mean = std = 0.5). For a model whose input is not 299 the resize
    /// keeps the tutorial's 320/299 ratio.
    Tutorial,
}

/// The largest input side (crop) a model may take: far above any image
/// backbone's (224–1024), far below what cannot be allocated.
pub(crate) const MAX_SIDE: u32 = 4096;

/// The largest resize (shorter side or square) of a recipe.
pub(crate) const MAX_RESIZE: u32 = 2 * MAX_SIDE;

impl Recipe {
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Recipe(m));
        if self.crop == 0 || self.resize < self.crop {
            return bad(format!(
                "resize ({}) must be ≥ crop ({}) > 0",
                self.resize, self.crop
            ));
        }
        if self.crop > MAX_SIDE || self.resize > MAX_RESIZE {
            return bad(format!(
                "crop {} / resize {}: xfer takes images of at most {MAX_SIDE}×{MAX_SIDE} (crop) resized to at most {MAX_RESIZE} (one 3×{MAX_SIDE}×{MAX_SIDE} tensor is 192 MiB)",
                self.crop, self.resize
            ));
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return bad(format!("std {:?} must be finite and non-zero", self.std));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return bad(format!("mean {:?} must be finite", self.mean));
        }
        if !(self.pixel_scale.is_finite() && self.pixel_scale > 0.0) {
            return bad(format!("pixel_scale {} must be positive", self.pixel_scale));
        }
        Ok(())
    }

    /// The recipe a preset gives for a model whose native recipe is `self`.
    pub fn with_preset(&self, preset: Preset) -> Recipe {
        match preset {
            Preset::Native => self.clone(),
            Preset::Tutorial => Recipe {
                resize: ((self.crop as f64) * 320.0 / 299.0).round() as u32,
                resize_mode: ResizeMode::ShorterSide,
                crop: self.crop,
                crop_offset: CropOffset::RoundHalfEven,
                interpolation: Interpolation::Bilinear,
                pixel_scale: 1.0 / 255.0,
                mean: [0.5; 3],
                std: [0.5; 3],
                channel_order: ChannelOrder::Rgb,
            },
        }
    }

    /// Number of f32 values of one preprocessed image: 3 × crop × crop.
    pub fn tensor_len(&self) -> usize {
        3 * (self.crop as usize) * (self.crop as usize)
    }
}

/// Limits and policies of decoding.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Images with more pixels than this are refused (decompression bombs).
    pub max_pixels: u64,
    /// What transparent pixels are composited onto.
    pub background: [u8; 3],
    /// Let JPEGs be decoded at 1/2, 1/4 or 1/8 scale when the result still has
    /// at least the recipe's resize on its shorter side.
    pub scaled_jpeg: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: 100_000_000,
            background: [255, 255, 255],
            scaled_jpeg: true,
        }
    }
}

impl DecodeOptions {
    /// The decoding settings that change pixels, as recorded in feature files
    /// and bundles: `jpeg_scaled` (JPEGs reduced inside the IDCT when large)
    /// or `jpeg_full`. Features made one way are not those of the other.
    pub(crate) fn mode(&self) -> &'static str {
        if self.scaled_jpeg {
            "jpeg_scaled"
        } else {
            "jpeg_full"
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Image {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// What the `image` crate's decoders may allocate for one image: at least its
/// default (512 MiB), and at least 4 bytes for each of `max_pixels` pixels, so
/// that every 8-bit image within the pixel limit decodes (16-bit and float
/// images within the limit may need more and are refused with a reason).
fn alloc_limit(opts: &DecodeOptions) -> u64 {
    opts.max_pixels.saturating_mul(4).max(512 << 20)
}

/// Reads and decodes an image file into 8-bit RGB, upright (EXIF orientation
/// applied), alpha composited onto `opts.background`. `min_short_side` allows a
/// reduced-size JPEG decode whose shorter side is still at least that long.
///
/// The file is streamed to the decoders, never read whole: what decoding
/// holds in memory is bounded by the pixel limit, not by the file's size.
///
/// Memory: an image within `opts.max_pixels` (default 100 M) may take
/// 3 bytes a pixel for its RGB result (300 MB at the default limit) plus what
/// its decoder holds (the `image` crate's buffer, up to [`alloc_limit`]; or
/// libjpeg's coefficient buffer for progressive JPEGs, 3–6 bytes a pixel of the
/// full size, see [`jpeg::decode`]), in each decoder thread at the same time.
/// That is acceptable for a limit the user can lower (`--max-megapixels`);
/// typical photos (12–50 MP JPEGs) are decoded at 1/2–1/8 scale and take a
/// fraction of it.
pub fn decode(path: &Path, opts: &DecodeOptions, min_short_side: u32) -> Result<RgbImage> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
    // (it has no effect on regular files). What was opened is checked below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    if meta.is_dir() {
        return Err(bad(path, "is a directory, not an image file"));
    }
    if !meta.is_file() {
        return Err(bad(
            path,
            "not a regular file (a FIFO, socket or device): not read",
        ));
    }
    if meta.len() == 0 {
        return Err(bad(path, "empty file (0 bytes)"));
    }
    decode_reader(
        BufReader::with_capacity(64 << 10, file),
        path,
        opts,
        min_short_side,
    )
}

/// [`decode`] on bytes already in memory; `path` only names the image in errors.
pub fn decode_bytes(
    bytes: &[u8],
    path: &Path,
    opts: &DecodeOptions,
    min_short_side: u32,
) -> Result<RgbImage> {
    decode_reader(Cursor::new(bytes), path, opts, min_short_side)
}

/// PIL's words for an image whose data ends early.
const TRUNCATED: &str = "image file is truncated";

fn decode_reader<R: BufRead + Seek>(
    mut reader: R,
    path: &Path,
    opts: &DecodeOptions,
    min_short_side: u32,
) -> Result<RgbImage> {
    let head = reader
        .fill_buf()
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    if head.is_empty() {
        return Err(bad(path, "empty file (0 bytes)"));
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let min_short = if opts.scaled_jpeg {
            // Keep at least twice the target on the shorter side, so the
            // antialiased resize that follows still does a real reduction: a 1/8
            // decode straight to the target size blurs differently from a full
            // decode (mean |Δ| ≈ 0.04 vs ≈ 0.003 with this margin, normalised units).
            min_short_side.saturating_mul(2)
        } else {
            0
        };
        match jpeg::decode(&mut reader, min_short, opts.max_pixels) {
            Ok(d) => {
                let mut img = DynamicImage::ImageRgb8(d.image);
                img.apply_orientation(d.orientation);
                return Ok(img.into_rgb8());
            }
            Err(jpeg::Failure::BadSize(w, h)) => {
                check_size(path, w, h, opts)?;
                return Err(bad(path, format!("image size {w}×{h} refused")));
            }
            Err(jpeg::Failure::Truncated) => {
                return Err(bad(
                    path,
                    format!("{TRUNCATED} (libjpeg: Premature end of JPEG file)"),
                ))
            }
            // What libjpeg rejects, PIL (which uses it) rejects too.
            Err(jpeg::Failure::Corrupt(msg)) => {
                return Err(bad(path, format!("cannot decode JPEG: {msg}")))
            }
            // Colour spaces other than grey, RGB, YCbCr, CMYK and YCCK (none in
            // practice) go to the general decoder.
            Err(jpeg::Failure::Unsupported) => {
                reader
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| bad(path, format!("cannot read: {e}")))?;
            }
        }
    }
    if let Some(reason) = check_webp_header(&mut reader, path, opts)? {
        return Err(bad(path, reason));
    }
    let mut reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(bad(path, "not an image (unrecognised format)"));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(alloc_limit(opts));
    reader.limits(limits);
    let decode_err = |e: ImageError| bad(path, describe(e, opts));
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    check_size(path, w, h, opts)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // Animated GIF / WebP / APNG: an `ImageDecoder` gives the first frame only.
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(into_rgb(img, opts.background))
}

/// An `image` decoder's error as a skip reason; data that ends early is named
/// as PIL names it.
fn describe(e: ImageError, opts: &DecodeOptions) -> String {
    if let ImageError::Limits(l) = &e {
        if matches!(l.kind(), LimitErrorKind::InsufficientMemory) {
            return format!(
                "decoding needs more than {} MB ({e}); raise --max-megapixels to allow more",
                alloc_limit(opts) >> 20
            );
        }
    }
    if is_truncation(&e) {
        return format!("{TRUNCATED} ({e})");
    }
    format!("cannot decode: {e}")
}

/// An error caused by the data ending early: an `UnexpectedEof` I/O error
/// anywhere in its chain, or a decoder's own words for it.
fn is_truncation(e: &ImageError) -> bool {
    if let ImageError::IoError(io) = e {
        if io.kind() == std::io::ErrorKind::UnexpectedEof {
            return true;
        }
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        source = err.source();
    }
    let text = e.to_string().to_lowercase();
    // "failed to fill whole buffer" is std's message for `read_exact` hitting the end.
    [
        "unexpected end",
        "unexpected eof",
        "end of file",
        "end of stream",
        "truncated",
        "failed to fill whole buffer",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// WebP's two checks from its header that its decoder does not make: the
/// RIFF header's declared length against the file's (the decoder reads a
/// truncated lossy or lossless bitstream as "corrupt", or not at all), and the
/// extended format's canvas size against the pixel limit (the decoder refuses
/// canvases over 2³² pixels without naming a size, and allocates the canvas
/// of smaller ones). Leaves `reader` at the start.
fn check_webp_header<R: BufRead + Seek>(
    reader: &mut R,
    path: &Path,
    opts: &DecodeOptions,
) -> Result<Option<String>> {
    let io_err = |e: std::io::Error| bad(path, format!("cannot read: {e}"));
    let head = reader.fill_buf().map_err(io_err)?;
    if head.len() < 16 || &head[..4] != b"RIFF" || &head[8..12] != b"WEBP" {
        return Ok(None);
    }
    let declared = 8 + u32::from_le_bytes(head[4..8].try_into().unwrap()) as u64;
    let canvas = (&head[12..16] == b"VP8X" && head.len() >= 30).then(|| {
        let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]) + 1;
        (u24(&head[24..27]), u24(&head[27..30]))
    });
    let len = reader.seek(SeekFrom::End(0)).map_err(io_err)?;
    reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if len < declared {
        return Ok(Some(format!(
            "{TRUNCATED} (WebP header declares {declared} bytes, the file has {len})"
        )));
    }
    if let Some((w, h)) = canvas {
        check_size(path, w, h, opts)?;
    }
    Ok(None)
}

fn check_size(path: &Path, w: u32, h: u32, opts: &DecodeOptions) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(bad(path, format!("image has no pixels ({w}×{h})")));
    }
    let pixels = w as u64 * h as u64;
    if pixels > opts.max_pixels {
        return Err(bad(
            path,
            format!(
                "image is {w}×{h} = {:.1} megapixels, over the limit of {}; raise it with --max-megapixels",
                pixels as f64 / 1e6,
                opts.max_pixels as f64 / 1e6
            ),
        ));
    }
    Ok(())
}

/// Any colour type (grey, 16-bit, alpha, …) to 8-bit RGB; alpha is composited
/// onto `background` (PIL's `convert('RGB')` would drop it instead, keeping
/// whatever colour the transparent pixels happen to carry).
fn into_rgb(img: DynamicImage, background: [u8; 3]) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        let a = src[3] as u32;
        for c in 0..3 {
            let v = src[c] as u32 * a + background[c] as u32 * (255 - a);
            dst[c] = ((v + 127) / 255) as u8;
        }
    }
    out
}

/// Output size of torchvision's `Resize(size)` (int): the shorter side becomes
/// `size`, the longer side `int(size * long / short)` (truncated).
pub(crate) fn resized_size(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w <= h {
        (size, (size as u64 * h as u64 / w as u64) as u32)
    } else {
        ((size as u64 * w as u64 / h as u64) as u32, size)
    }
}

/// The output size of the recipe's resize of a `w × h` image.
pub fn resize_to(w: u32, h: u32, recipe: &Recipe) -> (u32, u32) {
    match recipe.resize_mode {
        ResizeMode::ShorterSide => resized_size(w, h, recipe.resize),
        ResizeMode::Square => (recipe.resize, recipe.resize),
    }
}

/// A centre crop's offset along an axis of `len` pixels.
pub fn crop_offset(len: u32, crop: u32, how: CropOffset) -> u32 {
    match how {
        CropOffset::RoundHalfEven => center_offset(len, crop),
        CropOffset::Floor => len.saturating_sub(crop) / 2,
    }
}

/// torchvision's `CenterCrop` offset: `int(round((len - crop) / 2.0))`, with
/// Python's round-half-to-even.
pub(crate) fn center_offset(len: u32, crop: u32) -> u32 {
    let d = len.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Resize + centre crop + normalise one RGB image into `out` (CHW, length
/// `recipe.tensor_len()`). Only the crop region is resampled, with the same
/// sample positions a full resize followed by a crop would use.
///
/// # Shapes
/// `img`: [h, w, 3] u8 → `out`: [3, crop, crop] f32
pub fn to_tensor(img: &RgbImage, recipe: &Recipe, out: &mut [f32]) {
    assert_eq!(out.len(), recipe.tensor_len(), "output buffer length");
    let crop = recipe.crop;
    let (w, h) = img.dimensions();
    let (rw, rh) = resize_to(w, h, recipe);
    let (left, top) = (
        crop_offset(rw, crop, recipe.crop_offset),
        crop_offset(rh, crop, recipe.crop_offset),
    );
    let (sx, sy) = (w as f64 / rw as f64, h as f64 / rh as f64);
    let src = fir::images::ImageRef::new(w, h, img.as_raw(), fir::PixelType::U8x3)
        .expect("RgbImage buffer has w*h*3 bytes");
    // The box in source pixels; clamped, because when the crop spans the
    // whole resized side (resize = crop) `crop * s` can exceed it by a rounding.
    let (x0, y0) = (left as f64 * sx, top as f64 * sy);
    let region = (
        x0,
        y0,
        (crop as f64 * sx).min(w as f64 - x0),
        (crop as f64 * sy).min(h as f64 - y0),
    );
    let hwc = resample(&src, Some(region), crop, recipe.interpolation);
    normalise(&hwc, recipe, out);
}

/// A pixel rectangle of an image: `width × height` from (`left`, `top`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

/// Colour jitter factors (1 = unchanged), applied in this order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub(crate) brightness: f32,
    pub(crate) contrast: f32,
    pub(crate) saturation: f32,
}

/// What one augmented view does to an image (chosen by [`crate::images::augment`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewOps {
    pub crop: CropBox,
    pub flip: bool,
    pub jitter: Option<Jitter>,
}

/// One augmented view into `out`: torchvision's `F.resized_crop(img, top,
/// left, height, width, [crop, crop])` (the box cut out first, so the filter
/// never reads pixels outside it, then resized with the recipe's
/// interpolation, antialiased as PIL does), the optional colour jitter,
/// `F.hflip` when `ops.flip`, then the recipe's normalisation.
///
/// # Shapes
/// `img`: [h, w, 3] u8 → `out`: [3, crop, crop] f32
pub fn view_tensor(img: &RgbImage, recipe: &Recipe, ops: &ViewOps, out: &mut [f32]) {
    assert_eq!(out.len(), recipe.tensor_len(), "output buffer length");
    let b = ops.crop;
    let (w, h) = img.dimensions();
    assert!(
        b.width > 0 && b.height > 0 && b.left + b.width <= w && b.top + b.height <= h,
        "crop box {b:?} inside a {w}×{h} image"
    );
    let cut = image::imageops::crop_imm(img, b.left, b.top, b.width, b.height).to_image();
    let src = fir::images::ImageRef::new(b.width, b.height, cut.as_raw(), fir::PixelType::U8x3)
        .expect("RgbImage buffer has w*h*3 bytes");
    let mut hwc = resample(&src, None, recipe.crop, recipe.interpolation);
    if let Some(j) = ops.jitter {
        jitter(&mut hwc, j);
    }
    if ops.flip {
        for row in hwc.chunks_exact_mut(3 * recipe.crop as usize) {
            let px = row.len() / 3;
            for x in 0..px / 2 {
                for c in 0..3 {
                    row.swap(3 * x + c, 3 * (px - 1 - x) + c);
                }
            }
        }
    }
    normalise(&hwc, recipe, out);
}

/// The one resampling call: `region` (left, top, width, height in source
/// pixels, or all of `src`) to a `size × size` RGB image, antialiased.
fn resample(
    src: &fir::images::ImageRef,
    region: Option<(f64, f64, f64, f64)>,
    size: u32,
    interpolation: Interpolation,
) -> Vec<u8> {
    let filter = match interpolation {
        Interpolation::Nearest => None,
        Interpolation::Bilinear => Some(fir::FilterType::Bilinear),
        Interpolation::Bicubic => Some(fir::FilterType::CatmullRom),
    };
    resize_rgb(src, region, size, size, filter)
}

/// `region` of `src` (or all of it) to a `dst_w × dst_h` RGB image with
/// `filter` (antialiased convolution) or nearest neighbour (`None`).
///
/// fast_image_resize 6.1's one-call two-pass convolution is not used: on u8
/// images it shifts the horizontal taps by the first output pixel's first tap,
/// and when that pixel lands on a source pixel centre its zero-weight taps are
/// dropped, so a later pixel starts further left, the unsigned shift wraps and
/// the horizontal pass reads far outside its buffer (a segfault, or garbage).
/// The two passes are made here as two one-pass calls instead, which never
/// shift taps: the vertical pass over the source columns the horizontal taps
/// can reach, into a full-width intermediate image, then the horizontal pass
/// over it with the original crop box. The taps, the rounding between the
/// passes and so every output byte are the ones the one-call path computes
/// when it does not crash.
fn resize_rgb(
    src: &fir::images::ImageRef,
    region: Option<(f64, f64, f64, f64)>,
    dst_w: u32,
    dst_h: u32,
    filter: Option<fir::FilterType>,
) -> Vec<u8> {
    let (sw, sh) = (src.width(), src.height());
    let (left, top, width, height) = region.unwrap_or((0.0, 0.0, sw as f64, sh as f64));
    let mut dst = fir::images::Image::new(dst_w, dst_h, fir::PixelType::U8x3);
    let mut resizer = fir::Resizer::new();
    let Some(filter) = filter else {
        one_call(
            &mut resizer,
            src,
            &mut dst,
            fir::ResizeAlg::Nearest,
            (left, top, width, height),
        );
        return dst.into_vec();
    };
    let alg = fir::ResizeAlg::Convolution(filter);
    // fast_image_resize's own tests of whether a pass is needed.
    let horizontal = dst_w as f64 != width || left != left.round();
    let vertical = dst_h as f64 != height || top != top.round();
    if !(horizontal && vertical) {
        one_call(&mut resizer, src, &mut dst, alg, (left, top, width, height));
        return dst.into_vec();
    }
    // Every column a horizontal tap can read: the filter's radius (scaled
    // when downsampling) either side of the box, one more for the rounding.
    let support = match filter {
        fir::FilterType::Box => 0.5,
        fir::FilterType::Bilinear | fir::FilterType::Hamming => 1.0,
        fir::FilterType::CatmullRom | fir::FilterType::Mitchell => 2.0,
        _ => 3.0,
    };
    let radius = support * (width / dst_w as f64).max(1.0);
    let c0 = ((left - radius).floor() - 1.0).max(0.0) as u32;
    let c1 = ((left + width + radius).ceil() + 1.0).min(sw as f64) as u32;
    let mut temp = fir::images::Image::new(sw, dst_h, fir::PixelType::U8x3);
    {
        let mut columns = fir::images::CroppedImageMut::new(&mut temp, c0, 0, c1 - c0, dst_h)
            .expect("the columns lie inside the intermediate image");
        let cols = (c0 as f64, top, (c1 - c0) as f64, height);
        one_call(&mut resizer, src, &mut columns, alg, cols);
    }
    one_call(
        &mut resizer,
        &temp,
        &mut dst,
        alg,
        (left, 0.0, width, dst_h as f64),
    );
    dst.into_vec()
}

/// One fast_image_resize call: the `(left, top, width, height)` box of `from`
/// into all of `to`.
fn one_call(
    resizer: &mut fir::Resizer,
    from: &impl fir::IntoImageView,
    to: &mut impl fir::IntoImageViewMut,
    alg: fir::ResizeAlg,
    (l, t, w, h): (f64, f64, f64, f64),
) {
    let options = fir::ResizeOptions::new().resize_alg(alg).crop(l, t, w, h);
    resizer
        .resize(from, to, &options)
        .expect("pixel types and crop box are valid");
}

/// Brightness, contrast and saturation as torchvision's `ColorJitter` defines
/// them (blends with black, with the mean grey level, with the grey image;
/// grey = 0.299 R + 0.587 G + 0.114 B), in that fixed order, on 8-bit RGB
/// (rounded and clamped after each step, as on a PIL image).
fn jitter(hwc: &mut [u8], j: Jitter) {
    let grey = |p: &[u8]| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
    let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    for v in hwc.iter_mut() {
        *v = q(*v as f32 * j.brightness);
    }
    let n = (hwc.len() / 3).max(1) as f32;
    let mean = (hwc.chunks_exact(3).map(grey).sum::<f32>() / n).round();
    for v in hwc.iter_mut() {
        *v = q(mean + (*v as f32 - mean) * j.contrast);
    }
    for p in hwc.chunks_exact_mut(3) {
        let g = grey(p);
        for v in p.iter_mut() {
            *v = q(g + (*v as f32 - g) * j.saturation);
        }
    }
}

/// HWC u8 → CHW f32 with `(u8 * pixel_scale - mean) / std` per channel.
fn normalise(hwc: &[u8], recipe: &Recipe, out: &mut [f32]) {
    let plane = out.len() / 3;
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, x) in table.iter_mut().enumerate() {
            *x = (v as f32 * recipe.pixel_scale - recipe.mean[c]) / recipe.std[c];
        }
    }
    let order: [usize; 3] = match recipe.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let (p0, rest) = out.split_at_mut(plane);
    let (p1, p2) = rest.split_at_mut(plane);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        let [a, b, c] = [px[order[0]], px[order[1]], px[order[2]]];
        p0[i] = lut[order[0]][a as usize];
        p1[i] = lut[order[1]][b as usize];
        p2[i] = lut[order[2]][c as usize];
    }
}

/// A copy of `img` whose longer side is at most `max_side` pixels, the aspect
/// ratio kept (the shorter side rounded, at least 1), resampled with an
/// antialiasing Lanczos-3 filter; images already that small come back as
/// they are. The evaluation report's thumbnails.
pub fn thumbnail(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let max_side = max_side.max(1);
    if w.max(h) <= max_side {
        return img.clone();
    }
    let scaled = |short: u32, long: u32| {
        ((short as u64 * max_side as u64 + long as u64 / 2) / long as u64).max(1) as u32
    };
    let (tw, th) = if w >= h {
        (max_side, scaled(h, w))
    } else {
        (scaled(w, h), max_side)
    };
    let src = fir::images::ImageRef::new(w, h, img.as_raw(), fir::PixelType::U8x3)
        .expect("RgbImage buffer has w*h*3 bytes");
    let out = resize_rgb(&src, None, tw, th, Some(fir::FilterType::Lanczos3));
    RgbImage::from_raw(tw, th, out).expect("tw*th*3 bytes")
}

/// Decode + preprocess: the whole per-image pipeline.
pub fn load_tensor(
    path: &Path,
    recipe: &Recipe,
    opts: &DecodeOptions,
    out: &mut [f32],
) -> Result<()> {
    let img = decode(path, opts, recipe.resize)?;
    to_tensor(&img, recipe, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_matches_torchvision() {
        // torchvision: Resize(256) of a 500×375 (w×h) image → 341×256.
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(375, 500, 256), (256, 341));
        assert_eq!(resized_size(300, 300, 224), (224, 224));
    }

    #[test]
    fn center_offset_rounds_half_to_even() {
        // Python: int(round((341 - 224) / 2.0)) == 58 (58.5 → 58), (343-224)/2=59.5 → 60
        assert_eq!(center_offset(341, 224), 58);
        assert_eq!(center_offset(343, 224), 60);
        assert_eq!(center_offset(256, 224), 16);
    }

    #[test]
    fn normalise_uses_recipe_and_layout() {
        let recipe = Recipe {
            resize: 1,
            resize_mode: ResizeMode::ShorterSide,
            crop: 1,
            crop_offset: CropOffset::RoundHalfEven,
            interpolation: Interpolation::Bilinear,
            pixel_scale: 1.0,
            mean: [127.0; 3],
            std: [128.0; 3],
            channel_order: ChannelOrder::Rgb,
        };
        let mut out = [0f32; 3];
        normalise(&[255, 127, 0], &recipe, &mut out);
        assert_eq!(out, [1.0, 0.0, -127.0 / 128.0]);
        let bgr = Recipe {
            channel_order: ChannelOrder::Bgr,
            ..recipe
        };
        normalise(&[255, 127, 0], &bgr, &mut out);
        assert_eq!(out, [-127.0 / 128.0, 0.0, 1.0]);
    }

    #[test]
    fn alpha_is_composited_on_background() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, image::Rgba([0, 0, 0, 255]));
        let rgb = into_rgb(DynamicImage::ImageRgba8(rgba), [255, 255, 255]);
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 0, 0]);
    }

    #[test]
    fn thumbnails_keep_the_aspect_and_never_grow() {
        let img = RgbImage::from_pixel(640, 480, image::Rgb([10, 200, 30]));
        let t = thumbnail(&img, 160);
        assert_eq!(t.dimensions(), (160, 120));
        assert_eq!(t.get_pixel(80, 60).0, [10, 200, 30]);
        let tall = RgbImage::new(30, 1000);
        assert_eq!(thumbnail(&tall, 160).dimensions(), (5, 160));
        let thin = RgbImage::new(1000, 1);
        assert_eq!(thumbnail(&thin, 160).dimensions(), (160, 1));
        let small = RgbImage::new(100, 50);
        assert_eq!(thumbnail(&small, 160).dimensions(), (100, 50));
    }

    #[test]
    fn a_crop_spanning_the_whole_resized_side_stays_inside_the_image() {
        // 225 × 451 → shorter side 224; crop 224 spans the width, and
        // 224 * (225 / 224) rounds above 225 (so do 232, 239, 450, …).
        for (w, h, mode) in [
            (225, 451, ResizeMode::ShorterSide),
            (451, 232, ResizeMode::ShorterSide),
            (450, 239, ResizeMode::Square),
        ] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([9, 9, 9]));
            let recipe = Recipe {
                resize: 224,
                resize_mode: mode,
                crop: 224,
                crop_offset: CropOffset::Floor,
                interpolation: Interpolation::Bicubic,
                pixel_scale: 1.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                channel_order: ChannelOrder::Rgb,
            };
            let mut out = vec![0f32; recipe.tensor_len()];
            to_tensor(&img, &recipe, &mut out);
            assert!(out.iter().all(|&x| x == 9.0));
        }
    }

    #[test]
    fn constant_image_gives_constant_tensor() {
        let img = RgbImage::from_pixel(50, 30, image::Rgb([10, 20, 30]));
        let recipe = Recipe {
            resize: 16,
            resize_mode: ResizeMode::ShorterSide,
            crop: 8,
            crop_offset: CropOffset::RoundHalfEven,
            interpolation: Interpolation::Bilinear,
            pixel_scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            channel_order: ChannelOrder::Rgb,
        };
        let mut out = vec![0f32; recipe.tensor_len()];
        to_tensor(&img, &recipe, &mut out);
        for (c, v) in [10.0f32, 20.0, 30.0].iter().enumerate() {
            for x in &out[c * 64..(c + 1) * 64] {
                assert!((x - v / 255.0).abs() < 1e-6);
            }
        }
    }
}
