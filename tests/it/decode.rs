//! Decoding: every supported format, colour types, EXIF orientation, reduced-size
//! JPEG decoding.

use crate::common;

use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use xfer::images::preprocess::{self, ChannelOrder, DecodeOptions, Interpolation, Recipe};

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

#[test]
fn all_formats_and_colour_types_become_the_same_rgb() {
    let t = tempfile::tempdir().unwrap();
    let rgb = common::pattern(23, 17, 5);
    let cases: Vec<(&str, DynamicImage)> = vec![
        ("rgb.png", DynamicImage::ImageRgb8(rgb.clone())),
        ("rgb.bmp", DynamicImage::ImageRgb8(rgb.clone())),
        ("rgb.tiff", DynamicImage::ImageRgb8(rgb.clone())),
        (
            "rgb.webp",
            DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8()),
        ),
        (
            "rgb16.png",
            DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).to_rgb16()),
        ),
        (
            "opaque_rgba.png",
            DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8()),
        ),
    ];
    for (name, img) in cases {
        let p = t.path().join(name);
        img.save(&p).unwrap();
        let got = preprocess::decode(&p, &opts(), 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, rgb, "{name}");
    }
    // GIF is palette-based: compare approximately.
    let p = t.path().join("rgb.gif");
    DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8())
        .save(&p)
        .unwrap();
    let got = preprocess::decode(&p, &opts(), 0).unwrap();
    let mean: f64 = got
        .as_raw()
        .iter()
        .zip(rgb.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / rgb.as_raw().len() as f64;
    assert!(mean < 12.0, "gif mean |Δ| {mean}");

    // Grayscale becomes R = G = B.
    let grey = ImageBuffer::from_fn(9, 7, |x, y| Luma([(x * 20 + y) as u8]));
    let p = t.path().join("grey.png");
    grey.save(&p).unwrap();
    let got = preprocess::decode(&p, &opts(), 0).unwrap();
    assert_eq!(got.get_pixel(3, 2).0, [62, 62, 62]);
}

#[test]
fn transparent_pixels_are_composited_on_white() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("a.png");
    let img = ImageBuffer::from_fn(4, 1, |x, _| {
        Rgba([200u8, 0, 0, [0u8, 255, 128, 0][x as usize]])
    });
    img.save(&p).unwrap();
    let got = preprocess::decode(&p, &opts(), 0).unwrap();
    assert_eq!(got.get_pixel(0, 0).0, [255, 255, 255]);
    assert_eq!(got.get_pixel(1, 0).0, [200, 0, 0]);
    assert_eq!(got.get_pixel(2, 0).0, [227, 127, 127]); // (200·128 + 255·127)/255 = 227.4
}

/// A JPEG with an EXIF APP1 segment holding only the Orientation tag.
fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16, path: &Path) {
    let mut jpeg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    let mut tiff = b"II*\0\x08\0\0\0".to_vec(); // little-endian TIFF, IFD at offset 8
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding + no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn exif_orientation_is_applied_on_both_jpeg_paths() {
    let t = tempfile::tempdir().unwrap();
    // Left half dark, right half bright; orientation 6 = rotate 90° clockwise.
    let img = image::RgbImage::from_fn(400, 200, |x, _| {
        if x < 200 {
            Rgb([10, 10, 10])
        } else {
            Rgb([240, 240, 240])
        }
    });
    let p = t.path().join("o.jpg");
    jpeg_with_orientation(&img, 6, &p);
    for min_side in [0, 50] {
        // 0: full decode (general decoder); 50: reduced-size decode (1/2 scale).
        let got = preprocess::decode(&p, &opts(), min_side).unwrap();
        let (w, h) = got.dimensions();
        assert!(
            h > w,
            "min_side {min_side}: rotated image must be portrait, got {w}×{h}"
        );
        // After a clockwise turn the dark half is on top.
        assert!(got.get_pixel(w / 2, h / 8).0[0] < 60, "min_side {min_side}");
        assert!(
            got.get_pixel(w / 2, h * 7 / 8).0[0] > 200,
            "min_side {min_side}"
        );
    }
}

#[test]
fn reduced_size_jpeg_decode_matches_full_decode_after_preprocessing() {
    let photo = common::setup_file("data/photos/chelsea.png");
    let big = image::open(&photo)
        .unwrap()
        .resize_exact(2706, 1800, image::imageops::FilterType::CatmullRom)
        .to_rgb8();
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("big.jpg");
    big.save(&p).unwrap();
    let recipe = Recipe {
        resize: 256,
        resize_mode: preprocess::ResizeMode::ShorterSide,
        crop_offset: preprocess::CropOffset::RoundHalfEven,
        crop: 224,
        interpolation: Interpolation::Bilinear,
        pixel_scale: 1.0 / 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        channel_order: ChannelOrder::Rgb,
    };
    let scaled = preprocess::decode(&p, &opts(), recipe.resize).unwrap();
    assert!(
        scaled.width() <= 2706 / 2,
        "a reduced decode was expected, got {}",
        scaled.width()
    );
    assert!(scaled.height() >= 256);
    let full_opts = DecodeOptions {
        scaled_jpeg: false,
        ..opts()
    };
    let (mut a, mut b) = (
        vec![0f32; recipe.tensor_len()],
        vec![0f32; recipe.tensor_len()],
    );
    preprocess::load_tensor(&p, &recipe, &opts(), &mut a).unwrap();
    preprocess::load_tensor(&p, &recipe, &full_opts, &mut b).unwrap();
    let mean: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64;
    println!("reduced vs full decode: mean |Δ| = {mean:.4}");
    assert!(mean < 0.01, "reduced-size decode differs too much: {mean}");
}

/// Max and mean |Δ| between xfer's decode of `jpg` and PIL's (`png`), in 0–255 units.
fn diff_to_pil(jpg: &str, png: &str) -> (u8, f64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg");
    let got = preprocess::decode(&dir.join(jpg), &opts(), 0).unwrap();
    let want = image::open(dir.join(png)).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), want.dimensions(), "{jpg}");
    let diffs: Vec<u8> = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
    (*diffs.iter().max().unwrap(), mean)
}

// Fixtures from tools/make_jpeg_fixture.py (PIL 9.4 on Debian's libjpeg-turbo 2.1).
#[test]
fn jpeg_pixels_match_pil() {
    // The same decoder (libjpeg-turbo, islow IDCT, fancy upsampling) as PIL.
    let (max, mean) = diff_to_pil("ycc.jpg", "ycc_pil.png");
    println!("YCbCr JPEG vs PIL: max |Δ| {max}, mean {mean:.4}");
    assert!(max <= 1, "max |Δ| {max}");
}

#[test]
fn cmyk_jpeg_becomes_rgb_as_in_pil() {
    let (max, mean) = diff_to_pil("cmyk.jpg", "cmyk_pil.png");
    println!("CMYK JPEG vs PIL: max |Δ| {max}, mean {mean:.4}");
    assert!(max <= 2, "max |Δ| {max}, mean {mean}");
}
