//! Hostile and broken image files: truncated files, headers declaring huge
//! sizes, many-frame animations, odd sample depths, files that are not files,
//! unreadable files, very long names. Each one is refused with a reason (or
//! decoded, where it is a real image): never a panic, a hang, or an allocation
//! the header's size would call for. Fixtures: tests/fixtures/hostile/, written
//! by tools/make_hostile_fixtures.py; the rest is generated here.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{DynamicImage, Frame, ImageFormat, RgbImage, Rgba, RgbaImage};
use xfer::features::store;
use xfer::images::preprocess::{self, DecodeOptions};

fn fixture(name: &str) -> PathBuf {
    common::repo().join("tests/fixtures/hostile").join(name)
}

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

/// The reason `decode` refuses `path` with (full decode and reduced-size decode
/// must agree on refusing).
fn refused(path: &Path) -> String {
    let mut reasons = Vec::new();
    for min_side in [0, 36] {
        match preprocess::decode(path, &opts(), min_side) {
            Ok(img) => panic!(
                "{} (min side {min_side}) was decoded ({}×{}) instead of refused",
                path.display(),
                img.width(),
                img.height()
            ),
            Err(xfer::Error::Image { reason, .. }) => reasons.push(reason),
            Err(e) => panic!("{}: not an image error: {e}", path.display()),
        }
    }
    reasons.swap_remove(0)
}

/// FNV-1a over the pixels: pins a decode bit for bit.
fn fnv(img: &RgbImage) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for &b in img.as_raw() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// Offset of the first start-of-scan marker (FFDA) after the EXIF segment.
fn scan_start(jpeg: &[u8]) -> usize {
    let mut i = 2;
    loop {
        assert_eq!(jpeg[i], 0xFF, "marker expected at {i}");
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if marker == 0xDA {
            return i + 2 + len;
        }
        i += 2 + len;
    }
}

#[test]
fn truncated_camera_jpeg_is_refused_although_its_exif_thumbnail_has_an_end_marker() {
    let src = fixture("camera_exif_thumbnail.jpg");
    let bytes = std::fs::read(&src).unwrap();
    let scan = scan_start(&bytes);
    // The thumbnail inside APP1 ends with FFD9: a search for the end marker
    // anywhere in the file finds it even when the main image is cut short.
    let first_eoi = bytes.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap();
    assert!(
        first_eoi < scan,
        "fixture: the thumbnail's FFD9 must precede the scan"
    );

    let t = tempfile::tempdir().unwrap();
    for (name, cut) in [
        ("middle_of_scan.jpg", scan + (bytes.len() - scan) / 2),
        ("start_of_scan.jpg", scan + 10),
        ("no_end_marker.jpg", bytes.len() - 2), // PIL: "image file is truncated" too
    ] {
        let p = t.path().join(name);
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let reason = refused(&p);
        assert!(reason.contains("truncated"), "{name}: {reason}");
    }

    // The whole file still decodes, bit for bit as before: the previous code
    // decoded it with these mozjpeg calls (from memory, RGB out, IDCT scale).
    for (min_side, scale, size) in [(0, 8, (320, 240)), (36, 4, (160, 120))] {
        let got = preprocess::decode(&src, &opts(), min_side).unwrap();
        let mut d = mozjpeg::Decompress::new_mem(&bytes).unwrap();
        d.scale(scale);
        let mut started = d.rgb().unwrap();
        let want: Vec<u8> = started.read_scanlines().unwrap();
        started.finish().unwrap();
        assert_eq!(got.dimensions(), size);
        assert!(got.as_raw() == &want, "min side {min_side}: pixels differ");
        println!("min side {min_side}: {size:?}, fnv {:#x}", fnv(&got));
    }
}

#[test]
fn truncated_progressive_and_cmyk_jpegs_are_refused() {
    let t = tempfile::tempdir().unwrap();
    for src in [
        fixture("progressive.jpg"),
        common::repo().join("tests/fixtures/jpeg/cmyk.jpg"),
    ] {
        let bytes = std::fs::read(&src).unwrap();
        preprocess::decode(&src, &opts(), 0).unwrap();
        let p = t.path().join("cut.jpg");
        std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let reason = refused(&p);
        assert!(reason.contains("truncated"), "{}: {reason}", src.display());
    }
}

/// `img` saved as `name` (format from the extension) into `dir`.
fn save(dir: &Path, name: &str, img: DynamicImage) -> PathBuf {
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

#[test]
fn truncated_png_gif_webp_tiff_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let rgb = common::pattern(64, 48, 3);
    let rgba = DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8());
    for (name, img) in [
        ("t.png", DynamicImage::ImageRgb8(rgb.clone())),
        ("t.gif", rgba.clone()),
        ("t.webp", rgba),
        ("t.tiff", DynamicImage::ImageRgb8(rgb.clone())),
    ] {
        let p = save(t.path(), name, img);
        preprocess::decode(&p, &opts(), 0).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // Half the file, and a cut inside the last tenth of the pixel data.
        // (Not just the trailer: PIL too decodes a PNG whose IEND chunk or a
        // GIF whose trailer byte is missing, all pixels being there.)
        for cut in [bytes.len() / 2, bytes.len() * 9 / 10] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let reason = refused(&p);
            assert!(
                reason.contains("truncated"),
                "{name} cut at {cut}/{}: {reason}",
                bytes.len()
            );
        }
    }
}

#[test]
fn huge_headers_are_refused_before_decoding() {
    for (name, size) in [
        ("huge_100000x100000.png", "100000×100000"),
        ("huge_60000x60000.jpg", "60000×60000"),
        ("huge_65535x65535.gif", "65535×65535"),
        ("huge_100000x100000.webp", "100000×100000"),
        ("huge_100000x100000.tiff", "100000×100000"),
    ] {
        let started = std::time::Instant::now();
        let reason = refused(&fixture(name));
        assert!(
            reason.contains(size) && reason.contains("over the limit of 100"),
            "{name}: {reason}"
        );
        // Refused from the header: no time spent filling 10 G pixels.
        assert!(
            started.elapsed().as_secs_f64() < 2.0,
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn jpeg_over_libjpegs_own_maximum_is_refused_from_the_header() {
    // libjpeg refuses sides over 65500 itself, in the header.
    let mut b = std::fs::read(fixture("huge_60000x60000.jpg")).unwrap();
    let sof = b.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    b[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("65535.jpg");
    std::fs::write(&p, b).unwrap();
    let reason = refused(&p);
    assert!(reason.contains("65500"), "{reason}");
}

/// A GIF of `n` 32×32 frames; frame 0 is red, the others blue.
fn many_frame_gif(path: &Path, n: usize) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(f), 30);
    enc.set_repeat(Repeat::Infinite).unwrap();
    let red = RgbaImage::from_pixel(32, 32, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(32, 32, Rgba([0, 0, 255, 255]));
    enc.encode_frame(Frame::new(red)).unwrap();
    for _ in 1..n {
        enc.encode_frame(Frame::new(blue.clone())).unwrap();
    }
}

#[test]
fn animations_give_their_first_frame() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("many.gif");
    many_frame_gif(&p, 5000);
    let img = preprocess::decode(&p, &opts(), 0).unwrap();
    assert_eq!(img.dimensions(), (32, 32));
    assert_eq!(img.get_pixel(5, 5).0, [255, 0, 0]);

    let img = preprocess::decode(&fixture("animated_red_green_blue.webp"), &opts(), 0).unwrap();
    assert_eq!(img.dimensions(), (24, 16));
    let px = img.get_pixel(3, 3).0;
    assert!(
        px[0] > 240 && px[1] < 10 && px[2] < 10,
        "first frame is red: {px:?}"
    );
}

#[test]
fn sixteen_bit_tiff_and_png_are_decoded() {
    let t = tempfile::tempdir().unwrap();
    let rgb = common::pattern(20, 10, 7);
    let rgb16 = DynamicImage::ImageRgb8(rgb.clone()).to_rgb16();
    for name in ["rgb16.tiff", "rgb16.png"] {
        let p = save(t.path(), name, DynamicImage::ImageRgb16(rgb16.clone()));
        assert_eq!(preprocess::decode(&p, &opts(), 0).unwrap(), rgb, "{name}");
    }
    let rgba16 = DynamicImage::ImageRgb8(rgb.clone()).to_rgba16();
    for name in ["rgba16.tiff", "rgba16.png"] {
        let p = save(t.path(), name, DynamicImage::ImageRgba16(rgba16.clone()));
        assert_eq!(preprocess::decode(&p, &opts(), 0).unwrap(), rgb, "{name}");
    }
    let grey16 =
        image::ImageBuffer::from_fn(8, 4, |x, y| image::Luma([(x * 8000 + y * 100) as u16]));
    let p = save(t.path(), "grey16.png", DynamicImage::ImageLuma16(grey16));
    let got = preprocess::decode(&p, &opts(), 0).unwrap();
    let v = ((3 * 8000 + 100) as f64 / 257.0).round() as u8;
    assert_eq!(got.get_pixel(3, 1).0, [v, v, v]);
}

#[test]
fn cmyk_jpeg_is_decoded_like_pil() {
    let dir = common::repo().join("tests/fixtures/jpeg");
    let got = preprocess::decode(&dir.join("cmyk.jpg"), &opts(), 0).unwrap();
    let want = image::open(dir.join("cmyk_pil.png")).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), want.dimensions());
    let max = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    println!("CMYK vs PIL: max |Δ| {max}");
    assert!(max <= 2, "max |Δ| {max}");
}

fn mkfifo(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn things_that_are_not_image_files_are_refused_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    assert!(refused(&empty).contains("empty file"));

    let dir = t.path().join("x.jpg");
    std::fs::create_dir(&dir).unwrap();
    let r = refused(&dir);
    assert!(r.contains("is a directory"), "{r}");

    // Reading a FIFO would block forever.
    let fifo = t.path().join("fifo.png");
    mkfifo(&fifo);
    let r = refused(&fifo);
    assert!(r.contains("not a regular file"), "{r}");

    let missing = t.path().join("gone.png");
    let r = refused(&missing);
    assert!(r.contains("cannot read"), "{r}");
}

#[test]
fn very_long_names_and_paths_work() {
    let t = tempfile::tempdir().unwrap();
    // NAME_MAX is 255 bytes.
    let long_name = format!("{}.png", "n".repeat(251));
    let mut deep = t.path().to_path_buf();
    // PATH_MAX is 4096 bytes, terminating NUL included.
    while deep.as_os_str().len() + 201 + long_name.len() + 1 < 4095 {
        deep.push("d".repeat(200));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let p = deep.join(&long_name);
    println!("path of {} bytes", p.as_os_str().len());
    assert!(p.as_os_str().len() > 3800);
    common::pattern(10, 10, 1).save(&p).unwrap();
    assert_eq!(
        preprocess::decode(&p, &opts(), 0).unwrap(),
        common::pattern(10, 10, 1)
    );
}

// ---------------------------------------------------------------------------
// `xfer extract` on a folder of all of them.

/// An ImageFolder `root/{good,bad}` with good images in both classes and every
/// hostile file in `bad`. Returns the names expected in the skipped list, each
/// with a piece of its reason.
fn hostile_folder(root: &Path) -> Vec<(String, &'static str)> {
    let (good, bad) = (root.join("good"), root.join("bad"));
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&bad).unwrap();
    for photo in ["chelsea.png", "coffee.png"] {
        let src = common::setup_file(&format!("data/photos/{photo}"));
        std::fs::copy(&src, good.join(photo)).unwrap();
        // A large JPEG too (decoded at reduced size).
        image::open(&src)
            .unwrap()
            .resize_exact(2400, 1800, image::imageops::FilterType::Triangle)
            .to_rgb8()
            .save(good.join(photo.replace(".png", "_big.jpg")))
            .unwrap();
    }
    std::fs::copy(
        fixture("camera_exif_thumbnail.jpg"),
        good.join("camera.jpg"),
    )
    .unwrap();
    std::fs::copy(
        fixture("camera_exif_thumbnail.jpg"),
        bad.join("camera_ok.jpg"),
    )
    .unwrap();
    std::fs::copy(
        fixture("animated_red_green_blue.webp"),
        bad.join("animated.webp"),
    )
    .unwrap();
    many_frame_gif(&bad.join("many_frames.gif"), 5000);
    let rgb16 = DynamicImage::ImageRgb8(common::pattern(40, 30, 9)).to_rgb16();
    DynamicImage::ImageRgb16(rgb16.clone())
        .save(bad.join("rgb16.tiff"))
        .unwrap();
    DynamicImage::ImageRgb16(rgb16)
        .save(bad.join("rgb16.png"))
        .unwrap();
    std::fs::copy(
        common::repo().join("tests/fixtures/jpeg/cmyk.jpg"),
        bad.join("cmyk.jpg"),
    )
    .unwrap();
    let long = format!("{}.png", "n".repeat(251));
    common::pattern(12, 12, 2).save(bad.join(&long)).unwrap();
    std::fs::create_dir(bad.join("x.jpg")).unwrap(); // walked as a folder, holds nothing
                                                     // A path close to PATH_MAX (4096 bytes with its NUL).
    let mut deep = good.clone();
    while deep.as_os_str().len() + 201 + long.len() + 1 < 4095 {
        deep.push("d".repeat(200));
    }
    std::fs::create_dir_all(&deep).unwrap();
    common::pattern(12, 12, 3).save(deep.join(&long)).unwrap();

    let mut expected = Vec::new();
    for name in [
        "huge_100000x100000.png",
        "huge_60000x60000.jpg",
        "huge_65535x65535.gif",
        "huge_100000x100000.webp",
        "huge_100000x100000.tiff",
    ] {
        std::fs::copy(fixture(name), bad.join(name)).unwrap();
        expected.push((format!("bad/{name}"), "over the limit of 100"));
    }
    let camera = std::fs::read(fixture("camera_exif_thumbnail.jpg")).unwrap();
    std::fs::write(
        bad.join("camera_truncated.jpg"),
        &camera[..camera.len() * 3 / 5],
    )
    .unwrap();
    expected.push(("bad/camera_truncated.jpg".into(), "truncated"));
    let pattern = DynamicImage::ImageRgb8(common::pattern(64, 48, 4));
    for ext in ["png", "gif", "webp", "tiff"] {
        let mut bytes = Vec::new();
        let fmt = ImageFormat::from_extension(ext).unwrap();
        let img = if ext == "webp" || ext == "gif" {
            DynamicImage::ImageRgba8(pattern.to_rgba8())
        } else {
            pattern.clone()
        };
        img.write_to(&mut std::io::Cursor::new(&mut bytes), fmt)
            .unwrap();
        let name = format!("truncated.{ext}");
        std::fs::write(bad.join(&name), &bytes[..bytes.len() / 2]).unwrap();
        expected.push((format!("bad/{name}"), "truncated"));
    }
    std::fs::write(bad.join("empty.jpg"), b"").unwrap();
    expected.push(("bad/empty.jpg".into(), "empty file"));
    std::fs::write(bad.join("text.png"), b"not an image at all, just text").unwrap();
    expected.push(("bad/text.png".into(), "not an image"));
    mkfifo(&bad.join("fifo.jpg"));
    expected.push(("bad/fifo.jpg".into(), "not a regular file"));
    std::os::unix::fs::symlink(root.join("nowhere.png"), bad.join("dangling.png")).unwrap();
    expected.push(("bad/dangling.png".into(), "cannot read"));
    expected.sort();
    expected
}

/// Forks and execs `argv[2:]` (stdout, stderr, environment and folder
/// inherited), writes the child's `ru_maxrss` (KiB) to `argv[1]`, and ends as
/// the child ended.
const PEAK_RSS_PY: &str = r#"
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.WEXITSTATUS(status))
"#;

/// Runs `cmd` to the end and returns its output and its own peak RSS in KiB
/// (`wait4`'s `ru_maxrss`), measured from a small process: the set-up's Python
/// forks and execs it. Spawned from this process, the child's `ru_maxrss`
/// would start at this process's own peak (the kernel carries the parent's
/// high-water mark into a child spawned with vfork, as `Command` does, and a
/// forked copy counts the parent's pages), and this process runs every other
/// integration test beside this one: their in-process peaks would be counted.
fn output_and_peak_rss(cmd: &Command) -> (std::process::Output, u64) {
    let python = common::setup_file(".venv/bin/python");
    let rss = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = Command::new(python);
    wrapped
        .args(["-c", PEAK_RSS_PY])
        .arg(rss.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let output = common::output(wrapped);
    let kib = std::fs::read_to_string(rss.path()).unwrap();
    let kib = kib
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no peak RSS: {kib:?}\n{}", common::text(&output)));
    (output, kib)
}

fn extract_cmd(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = common::xfer_cmd(&["extract", "--model"]);
    c.arg(common::tiny_manifest())
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

/// Peak RSS of the whole `xfer extract` process on the hostile folder:
/// measured 50 MB (run alone) to 81 MB (alongside the other tests) — ONNX
/// Runtime, the model, HDF5, 2 decoder threads, 2400×1800 JPEGs decoded at 1/2
/// scale. Decoding any hostile file at the size its header claims would take
/// 4–30 GB (65535² or 100000² RGB), and even one image at the default pixel
/// limit (100 MP × 3 bytes) 300 MB; keeping the 5000 GIF frames, 20 MB. 250 MB
/// leaves room for allocator and thread-count differences while still failing
/// on any of these.
const PEAK_RSS_LIMIT_MB: u64 = 250;

#[test]
fn extract_skips_every_hostile_file_with_its_reason_within_bounded_memory() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let expected = hostile_folder(&data);
    let out = t.path().join("f.h5");
    let started = std::time::Instant::now();
    let (o, rss_kib) = output_and_peak_rss(&extract_cmd(
        &data,
        &out,
        &["--decode-threads", "2", "--batch", "4"],
    ));
    let secs = started.elapsed().as_secs_f64();
    let txt = common::text(&o);
    println!(
        "{txt}\npeak RSS {:.1} MB, {secs:.2} s",
        rss_kib as f64 / 1024.0
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit status 3 = finished with skipped files\n{txt}"
    );
    assert!(!txt.contains("panicked"), "{txt}");

    // Entries that are not files at all (a FIFO, a dangling symlink) are left
    // out by the folder walker, which lists them before the run; everything
    // else is skipped by the decoder and recorded in the file.
    let (walker, expected): (Vec<_>, Vec<_>) = expected
        .into_iter()
        .partition(|(p, _)| p == "bad/fifo.jpg" || p == "bad/dangling.png");
    for (p, _) in &walker {
        assert!(
            txt.contains("ignoring") && txt.contains(p.as_str()),
            "{p} is not listed as ignored\n{txt}"
        );
    }
    let f = store::read(&out).unwrap();
    let mut skipped = f.skipped.clone();
    skipped.sort();
    let names: Vec<&str> = skipped.iter().map(|(p, _)| p.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, want, "{txt}");
    for ((p, reason), (_, needle)) in skipped.iter().zip(&expected) {
        assert!(reason.contains(needle), "{p}: `{reason}` lacks `{needle}`");
        assert!(
            txt.contains(p.as_str()),
            "{p} is not listed on the terminal\n{txt}"
        );
    }
    let paths = f.paths.unwrap();
    let long = format!("bad/{}.png", "n".repeat(251));
    let deep = paths
        .iter()
        .find(|p| p.starts_with("good/ddd"))
        .unwrap_or_else(|| panic!("no row for the deep path: {paths:?}"));
    assert!(
        data.join(deep).as_os_str().len() > 3800,
        "{}",
        data.join(deep).display()
    );
    for good in [
        "good/chelsea.png",
        "good/coffee.png",
        "good/chelsea_big.jpg",
        "good/coffee_big.jpg",
        "good/camera.jpg",
        "bad/camera_ok.jpg",
        "bad/animated.webp",
        "bad/many_frames.gif",
        "bad/rgb16.tiff",
        "bad/rgb16.png",
        "bad/cmyk.jpg",
        long.as_str(),
    ] {
        assert!(
            paths.iter().any(|p| p == good),
            "no row for {good}: {paths:?}"
        );
    }
    assert_eq!(paths.len(), 13, "{paths:?}");
    assert_eq!(f.data.nrows(), 13);
    assert!(
        rss_kib < PEAK_RSS_LIMIT_MB * 1024,
        "peak RSS {:.1} MB over {PEAK_RSS_LIMIT_MB} MB",
        rss_kib as f64 / 1024.0
    );
}

/// The first of `setpriv` / `runuser` found, as a command running as `nobody`.
fn as_nobody() -> Option<Command> {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let setpriv = Path::new(dir).join("setpriv");
        if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            return Some(c);
        }
    }
    for dir in ["/usr/sbin", "/sbin", "/usr/bin"] {
        let runuser = Path::new(dir).join("runuser");
        if runuser.exists() {
            let mut c = Command::new(runuser);
            c.args(["-u", "nobody", "--"]);
            return Some(c);
        }
    }
    None
}

#[test]
fn unreadable_file_is_skipped_with_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = unsafe { libc::geteuid() } == 0;
    let wrapper = if is_root {
        match as_nobody() {
            Some(c) => Some(c),
            None => {
                println!(
                    "NOTE: running as root without setpriv/runuser: unreadable-file case skipped"
                );
                return;
            }
        }
    } else {
        None
    };
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a"], 2);
    common::pattern(30, 30, 5)
        .save(data.join("a/secret.png"))
        .unwrap();
    std::fs::set_permissions(
        data.join("a/secret.png"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let out_dir = t.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("f.h5");
    let mut cmd = extract_cmd(&data, &out, &[]);
    if let Some(mut w) = wrapper {
        // `nobody` may be unable to enter the checkout (cloned into a 0700
        // home such as /root/project), the folder where tools/setup.sh put
        // ONNX Runtime, or the 0700 temporary folder: give it copies of all
        // that the child needs (the xfer binary, the model and its manifest,
        // the library) in the opened temporary folder, and start it there, so
        // the test does not depend on where the checkout lives.
        let exe = t.path().join("xfer");
        common::write_executable(&exe, &std::fs::read(common::XFER).unwrap());
        let model_dir = t.path().join("model");
        std::fs::create_dir(&model_dir).unwrap();
        for f in ["tiny.toml", "tiny.onnx"] {
            std::fs::copy(
                common::repo().join("tests/fixtures/tiny").join(f),
                model_dir.join(f),
            )
            .unwrap();
        }
        let ort = xfer::models::runtime::find_library(None).unwrap();
        let lib = t.path().join("libonnxruntime.so");
        std::fs::copy(&ort, &lib).unwrap();
        for d in [t.path(), &data, &data.join("a"), &out_dir, &model_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let readable = std::fs::read_dir(data.join("a"))
            .unwrap()
            .chain(std::fs::read_dir(&model_dir).unwrap())
            .map(|f| f.unwrap().path())
            .filter(|p| !p.ends_with("secret.png"));
        for p in readable.chain([exe.clone(), lib.clone()]) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        w.current_dir(t.path())
            .env("HOME", t.path())
            .env("ORT_DYLIB_PATH", &lib)
            .arg(&exe)
            .args(["extract", "--model"])
            .arg(model_dir.join("tiny.toml"))
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out);
        cmd = w;
    }
    let o = cmd.output().unwrap();
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(3), "{txt}");
    assert!(!txt.contains("panicked"), "{txt}");
    let f = store::read(&out).unwrap();
    assert_eq!(f.data.nrows(), 2, "{txt}");
    assert_eq!(f.skipped.len(), 1, "{txt}");
    assert_eq!(f.skipped[0].0, "a/secret.png");
    assert!(
        f.skipped[0].1.contains("Permission denied"),
        "{:?}",
        f.skipped
    );
}

/// A model that gives NaN for some images (tests/fixtures/nan, made by
/// tools/make_nan_onnx.py: NaN for a black image): `extract` skips that image
/// with its reason (exit 3) and stores only finite rows; `predict` skips and
/// lists it (exit 3) and still writes the CSV of the good images; `models add`
/// refuses the model (its probe batch starts with a black image).
#[test]
fn a_model_giving_nan_skips_those_images_and_is_not_added() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 3);
    image::RgbImage::new(20, 20)
        .save(data.join("a/black.png"))
        .unwrap();
    let nan_zoo = common::repo().join("tests/fixtures/nan");
    let manifest = nan_zoo.join("nan.toml");
    let f = t.path().join("f.h5");
    let o = common::xfer(&[
        "extract",
        "--model",
        manifest.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        f.to_str().unwrap(),
    ]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(3), "{txt}");
    assert!(
        txt.contains("a/black.png") && txt.contains("non-finite"),
        "{txt}"
    );
    let file = store::read(&f).unwrap();
    assert_eq!(file.data.nrows(), 6, "{txt}");
    assert!(file.data.iter().all(|v| v.is_finite()));
    assert_eq!(file.skipped.len(), 1);
    assert_eq!(file.skipped[0].0, "a/black.png");
    assert!(file.skipped[0].1.contains("NaN"), "{:?}", file.skipped);

    let run = t.path().join("run");
    let o = common::xfer(&[
        "train",
        "--train",
        f.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--head",
        "mlp",
        "--epochs",
        "1",
        "--hidden",
        "4",
    ]);
    assert!(o.status.success(), "{}", common::text(&o));
    let csv = t.path().join("p.csv");
    let o = common::xfer(&[
        "--zoo",
        nan_zoo.to_str().unwrap(),
        "predict",
        "--bundle",
        run.join("mlp.safetensors").to_str().unwrap(),
        data.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(3), "{txt}");
    assert!(
        txt.contains("black.png") && txt.contains("non-finite"),
        "{txt}"
    );
    let written = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(written.lines().count(), 1 + 6, "{written}");
    assert!(
        !written.contains("black.png") && !written.contains("NaN"),
        "{written}"
    );

    let zoo = t.path().join("zoo");
    let o = common::xfer(&[
        "--zoo",
        zoo.to_str().unwrap(),
        "models",
        "add",
        nan_zoo.join("nan.onnx").to_str().unwrap(),
        "--name",
        "nan2",
        "--crop",
        "8",
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
    ]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("non-finite values") && txt.contains("probe"),
        "{txt}"
    );
    assert!(!zoo.join("nan2.toml").exists(), "{txt}");
}

/// Sizes from flags and graphs are bounded before anything is allocated,
/// with a one-line error naming the limit: `--views 100000` (60 GB of
/// tensors for one image), `--batch 100000` (60 GB), and `models add` of a
/// graph whose input side is 100000 (240 GB for its probe batch).
#[test]
fn sizes_from_flags_and_graphs_are_bounded() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a"], 2);
    let out = t.path().join("f.h5");
    for (extra, needle) in [
        (&["--views", "100000"][..], "limit of 256 views"),
        (&["--batch", "100000000"][..], "limit of 4 GiB per batch"),
    ] {
        let o = extract_cmd(&data, &out, extra).output().unwrap();
        let txt = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{txt}");
        assert!(txt.contains(needle), "{txt}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr)
                .trim_end()
                .lines()
                .count(),
            1,
            "{txt}"
        );
        assert!(
            !out.exists() && !store::partial_path(&out).exists(),
            "{txt}"
        );
    }
    // tools/make_nan_onnx.py's graph declaring a fixed input of 100000².
    let big = common::repo().join("tests/fixtures/nan/big_side.onnx");
    let zoo = t.path().join("zoo");
    let o = common::xfer(&[
        "--zoo",
        zoo.to_str().unwrap(),
        "models",
        "add",
        big.to_str().unwrap(),
        "--name",
        "big",
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
    ]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("is 100000×100000") && txt.contains("at most 4096×4096"),
        "{txt}"
    );
}
