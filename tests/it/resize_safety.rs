//! Resizing never crashes and never reads outside its taps (issue 26).
//!
//! fast_image_resize 6.1's one-call two-pass convolution segfaulted when the
//! first output pixel landed on a source pixel centre (its zero-weight taps
//! dropped, the unsigned shift of the later taps wrapped). xfer now makes the
//! two passes as two calls (`preprocess::resize_rgb`). These tests run the
//! sizes that crashed and a deterministic slice of (source, resize, crop,
//! mode, offset, interpolation) cases, and check every output byte against an
//! independent float convolution with PIL's antialiased filters (within 2 of
//! 255: fast_image_resize rounds to u8 between the passes and uses fixed-point
//! weights). `tools/resize_sweep.sh` runs the same sweep for longer
//! (`XFER_RESIZE_SWEEP=N` cases, `XFER_RESIZE_SEED`).

use image::RgbImage;
use xfer::images::preprocess::{
    self, ChannelOrder, CropBox, CropOffset, Interpolation, Recipe, ResizeMode, ViewOps,
};

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % (hi - lo + 1) as u64) as u32
    }
}

fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Rng(seed);
    RgbImage::from_fn(w, h, |_, _| {
        let v = rng.next();
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    })
}

/// A recipe whose tensor is the resized pixel values themselves.
fn identity(
    resize: u32,
    crop: u32,
    mode: ResizeMode,
    offset: CropOffset,
    i: Interpolation,
) -> Recipe {
    Recipe {
        resize,
        resize_mode: mode,
        crop,
        crop_offset: offset,
        interpolation: i,
        pixel_scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        channel_order: ChannelOrder::Rgb,
    }
}

/// PIL's filters (`Resample.c`): triangle, and the cubic with a = -0.5.
fn filter(i: Interpolation, x: f64) -> f64 {
    let x = x.abs();
    match i {
        Interpolation::Bilinear => (1.0 - x).max(0.0),
        Interpolation::Bicubic => {
            let a = -0.5;
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
        Interpolation::Nearest => unreachable!(),
    }
}

/// Normalised antialiased weights of `n` outputs over `[x0, x0 + len)` of an
/// axis of `size` source pixels: PIL's `precompute_coeffs` in f64.
fn weights(i: Interpolation, size: u32, x0: f64, len: f64, n: u32) -> Vec<Vec<(usize, f64)>> {
    let scale = len / n as f64;
    let fs = scale.max(1.0);
    (0..n)
        .map(|o| {
            let centre = x0 + (o as f64 + 0.5) * scale;
            let mut taps: Vec<(usize, f64)> = (0..size as usize)
                .map(|k| (k, filter(i, (k as f64 + 0.5 - centre) / fs)))
                .filter(|&(_, w)| w != 0.0)
                .collect();
            let sum: f64 = taps.iter().map(|t| t.1).sum();
            taps.iter_mut().for_each(|t| t.1 /= sum);
            taps
        })
        .collect()
}

/// The reference: `box` of `img` to `n × n`, separable in f64, the vertical
/// pass first and rounded and clamped to u8 between the passes (as PIL and
/// fast_image_resize both do; the order is fast_image_resize's for u8).
fn reference(
    img: &RgbImage,
    (l, t, w, h): (f64, f64, f64, f64),
    n: u32,
    i: Interpolation,
) -> Vec<[f64; 3]> {
    let q = |v: f64| v.round().clamp(0.0, 255.0);
    let wx = weights(i, img.width(), l, w, n);
    let wy = weights(i, img.height(), t, h, n);
    // Vertical pass over every column: n rows × width.
    let cols: Vec<Vec<[f64; 3]>> = wy
        .iter()
        .map(|ty| {
            (0..img.width())
                .map(|x| {
                    let mut acc = [0f64; 3];
                    for &(y, a) in ty {
                        let p = img.get_pixel(x, y as u32);
                        for c in 0..3 {
                            acc[c] += a * p[c] as f64;
                        }
                    }
                    acc.map(q)
                })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity((n * n) as usize);
    for row in &cols {
        for tx in &wx {
            let mut acc = [0f64; 3];
            for &(x, b) in tx {
                for c in 0..3 {
                    acc[c] += b * row[x][c];
                }
            }
            out.push(acc.map(q));
        }
    }
    out
}

/// The source box `to_tensor` resamples for `recipe` (its documented
/// resize-then-crop positions).
fn source_box(w: u32, h: u32, r: &Recipe) -> (f64, f64, f64, f64) {
    let (rw, rh) = preprocess::resize_to(w, h, r);
    let (left, top) = (
        preprocess::crop_offset(rw, r.crop, r.crop_offset),
        preprocess::crop_offset(rh, r.crop, r.crop_offset),
    );
    let (sx, sy) = (w as f64 / rw as f64, h as f64 / rh as f64);
    let (x0, y0) = (left as f64 * sx, top as f64 * sy);
    (
        x0,
        y0,
        (r.crop as f64 * sx).min(w as f64 - x0),
        (r.crop as f64 * sy).min(h as f64 - y0),
    )
}

/// Runs `to_tensor` and compares with the reference; the largest difference.
fn check_tensor(img: &RgbImage, r: &Recipe) -> f64 {
    let mut out = vec![0f32; r.tensor_len()];
    preprocess::to_tensor(img, r, &mut out);
    if r.interpolation == Interpolation::Nearest {
        return 0.0;
    }
    let want = reference(
        img,
        source_box(img.width(), img.height(), r),
        r.crop,
        r.interpolation,
    );
    let plane = (r.crop * r.crop) as usize;
    let mut worst = 0f64;
    for (p, px) in want.iter().enumerate() {
        for c in 0..3 {
            worst = worst.max((out[c * plane + p] as f64 - px[c]).abs());
        }
    }
    worst
}

#[test]
fn the_sizes_that_crashed_bicubic_resizing_resize_like_pil() {
    // (image, recipe) from the issue: the CLIP recipe on wapiti.jpg's 185×160,
    // timm's crop recipe (crop_pct 0.9: 248 → 224) on 175×151, and the plain
    // timm ViT recipe on a 91×87 PNG.
    let bicubic = Interpolation::Bicubic;
    let cases = [
        (
            (185, 160),
            identity(
                224,
                224,
                ResizeMode::ShorterSide,
                CropOffset::Floor,
                bicubic,
            ),
        ),
        (
            (175, 151),
            identity(
                248,
                224,
                ResizeMode::ShorterSide,
                CropOffset::RoundHalfEven,
                bicubic,
            ),
        ),
        (
            (91, 87),
            identity(
                248,
                224,
                ResizeMode::ShorterSide,
                CropOffset::RoundHalfEven,
                bicubic,
            ),
        ),
        (
            (91, 87),
            identity(
                224,
                224,
                ResizeMode::Square,
                CropOffset::RoundHalfEven,
                bicubic,
            ),
        ),
    ];
    for (k, ((w, h), r)) in cases.iter().enumerate() {
        let worst = check_tensor(&noise(*w, *h, k as u64), r);
        assert!(worst <= 2.0, "{w}×{h} {r:?}: off by {worst}");
    }
}

/// `n` pseudo-random cases from `seed`: every interpolation, both resize
/// modes and crop offsets, sources 1..=320 a side, crops up to 256, resize up
/// to 2.5× the crop.
fn sweep(n: u64, seed: u64) {
    let mut rng = Rng(seed);
    let interps = [
        Interpolation::Nearest,
        Interpolation::Bilinear,
        Interpolation::Bicubic,
    ];
    for case in 0..n {
        let (w, h) = (rng.range(1, 320), rng.range(1, 320));
        // Mostly small crops (the reference is slow), one in eight up to 256.
        let crop = if rng.next().is_multiple_of(8) {
            rng.range(1, 256)
        } else {
            rng.range(1, 64)
        };
        let resize = rng.range(crop, crop * 5 / 2);
        let mode = if rng.next().is_multiple_of(2) {
            ResizeMode::ShorterSide
        } else {
            ResizeMode::Square
        };
        let offset = if rng.next().is_multiple_of(2) {
            CropOffset::RoundHalfEven
        } else {
            CropOffset::Floor
        };
        let i = interps[(rng.next() % 3) as usize];
        let r = identity(resize, crop, mode, offset, i);
        let img = noise(w, h, case);
        let worst = check_tensor(&img, &r);
        assert!(
            worst <= 2.0,
            "case {case} (seed {seed}): {w}×{h} {r:?}: off by {worst}"
        );
        // An augmented view of a random box, and a thumbnail: the other callers.
        let (bw, bh) = (rng.range(1, w), rng.range(1, h));
        let ops = ViewOps {
            crop: CropBox {
                left: rng.range(0, w - bw),
                top: rng.range(0, h - bh),
                width: bw,
                height: bh,
            },
            flip: false,
            jitter: None,
        };
        let mut out = vec![0f32; r.tensor_len()];
        preprocess::view_tensor(&img, &r, &ops, &mut out);
        let thumb = preprocess::thumbnail(&img, rng.range(1, 96));
        assert!(thumb.width().max(thumb.height()) <= 96);
    }
}

#[test]
fn a_deterministic_slice_of_the_resize_sweep_resizes_like_pil() {
    let n = std::env::var("XFER_RESIZE_SWEEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed = std::env::var("XFER_RESIZE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(26);
    sweep(n, seed);
    eprintln!(
        "resize sweep: {n} cases from seed {seed}, none crashed, all within 2 of the reference"
    );
}
