//! The `xfer evaluate --report` page in a real browser: real EfficientNet-Lite0
//! features of the demo's split of the Tux Paint photos (tools/demo.sh's rule:
//! per class, sorted, the n-th file to train, val, train, train, test by n mod
//! 5), the default recipe, the page for the recommended head on the test
//! split, opened in headless Chromium three times:
//!
//! 1. as it is, with console logging on: no console message at all (the page
//!    has no scripts, so any message is an error of the page: a resource it
//!    could not load, a bad data URI, …), and a 1280 × 2000 screenshot;
//! 2. a copy with a checking script appended (the only script ever added):
//!    every section is in the DOM, every `<img>` decoded (`naturalWidth > 0`),
//!    the SVG charts have a size, and nothing is wider than a 1280 px window;
//! 3. printed to PDF (the `@media print` rules), which must give pages.
//!
//! The screenshot, the page and the PDF are left in
//! `$CARGO_TARGET_TMPDIR/report_browser/`. Needs Chromium (`tools/setup.sh
//! --browser`, which the test command runs, installs Debian's `chromium`);
//! without one the test says so and passes, as the only case where it skips.
//! Also needs what `tests/it/predict_e2e.rs` needs: ONNX Runtime,
//! `onnx/efficientnet_lite0.onnx` and `data/stamps`.

use crate::common::{self, s, xfer_ok};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `$XFER_CHROMIUM`, else the first of Debian's, Ubuntu's and Google's names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("XFER_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
    .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with `args`, killed after 120 s; returns
/// (stdout, stderr).
fn run_chromium(exe: &Path, profile: &Path, args: &[&str], url: &str) -> (String, String) {
    let dir = profile.parent().unwrap();
    let (out_f, err_f) = (dir.join("chromium.out"), dir.join("chromium.err"));
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_f).unwrap())
        .stderr(std::fs::File::create(&err_f).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = std::fs::read_to_string(&out_f).unwrap_or_default();
            let err = std::fs::read_to_string(&err_f).unwrap_or_default();
            assert!(status.success(), "chromium {args:?}: {status}\n{err}");
            return (out, err);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {args:?} did not finish in 120 s:\n{}",
                std::fs::read_to_string(&err_f).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The console messages Chromium logged (`…:INFO:CONSOLE…] "message", source: …`).
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The demo's split of data/stamps, as symlinks (tools/demo.sh).
fn demo_split(stamps: &Path, out: &Path) {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(stamps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    for c in &classes {
        let class = c.file_name().unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(c)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let part = match i % 5 {
                3 => "val",
                4 => "test",
                _ => "train",
            };
            let dir = out.join(part).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(
                std::fs::canonicalize(f).unwrap(),
                dir.join(f.file_name().unwrap()),
            )
            .unwrap();
        }
    }
}

const CHECK: &str = r#"<script>
addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const svgs = [...document.querySelectorAll("svg")];
  const flat = svgs.filter(s => !(s.getBoundingClientRect().width > 100 && s.getBoundingClientRect().height > 100));
  const out = document.createElement("pre");
  out.id = "xfer-check";
  out.textContent = [
    "sections=" + [...document.querySelectorAll("section")].map(s => s.id).join(","),
    "images=" + imgs.length,
    "broken=" + broken.length + " " + broken.join("|"),
    "svgs=" + svgs.length,
    "flat_svgs=" + flat.length,
    "cells=" + document.querySelectorAll("table.cm td").length,
    "scroll_width=" + document.documentElement.scrollWidth,
    "inner_width=" + window.innerWidth,
  ].join("\n");
  document.body.appendChild(out);
});
</script>
"#;

#[test]
fn the_demo_report_renders_in_chromium_without_errors() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: no Chromium found (looked for $XFER_CHROMIUM, chromium, chromium-browser, \
             google-chrome on PATH). `tools/setup.sh --browser` installs Debian's chromium; the \
             test command runs it."
        );
        return;
    };
    let stamps = common::repo().join("data/stamps");
    assert!(
        stamps.join(".complete").exists(),
        "{} is missing: run tools/fetch_stamps.sh (the test command's set-up does)",
        stamps.display()
    );
    common::setup_file("onnx/efficientnet_lite0.onnx");
    let version = Command::new(&browser).arg("--version").output().unwrap();
    eprintln!(
        "browser: {}",
        String::from_utf8_lossy(&version.stdout).trim()
    );

    let t = tempfile::tempdir().unwrap();
    let split = t.path().join("split");
    demo_split(&stamps, &split);
    let feats = |part: &str| {
        let f = t.path().join(format!("{part}_efficientnet_lite0.h5"));
        xfer_ok(&[
            "extract",
            "--model",
            "efficientnet_lite0",
            "--data",
            s(&split.join(part)),
            "--out",
            s(&f),
        ]);
        f
    };
    let (train, val, test) = (feats("train"), feats("val"), feats("test"));
    let run = t.path().join("run");
    xfer_ok(&[
        "train",
        "--train",
        s(&train),
        "--val",
        s(&val),
        "--out",
        s(&run),
    ]);
    let report = t.path().join("report");
    xfer_ok(&[
        "evaluate",
        "--bundle",
        s(&run.join("best.safetensors")),
        "--features",
        s(&test),
        "--report",
        s(&report),
    ]);
    let page_path = report.join("report.html");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let n_img = page.matches("<img ").count();
    assert!(n_img >= 10, "the 16 test photos: {n_img} thumbnails");
    eprintln!("report: {} KB, {n_img} thumbnails", page.len() / 1024);

    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report_browser");
    let _ = std::fs::remove_dir_all(&keep);
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::copy(&page_path, keep.join("report.html")).unwrap();
    let url = |p: &Path| format!("file://{}", p.display());

    // 1. The page as it is: no console message, a screenshot.
    let shot = keep.join("report.png");
    let (_, err) = run_chromium(
        &browser,
        &t.path().join("profile1"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
        &url(&page_path),
    );
    assert!(
        console_lines(&err).is_empty(),
        "console: {:?}",
        console_lines(&err)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(png_size(&png), (1280, 2000));
    assert!(
        png.len() > 50_000,
        "a page, not a blank: {} bytes",
        png.len()
    );

    // 2. The DOM, with the checking script.
    let checked = t.path().join("checked.html");
    std::fs::write(
        &checked,
        page.replace("</body>", &format!("{CHECK}</body>")),
    )
    .unwrap();
    let (dom, err) = run_chromium(
        &browser,
        &t.path().join("profile2"),
        &[
            "--dump-dom",
            "--virtual-time-budget=10000",
            "--window-size=1280,2000",
        ],
        &url(&checked),
    );
    assert!(
        console_lines(&err).is_empty(),
        "console: {:?}",
        console_lines(&err)
    );
    let check = dom
        .split("<pre id=\"xfer-check\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "the check did not run; DOM ends with: {}",
                &dom[dom.len().saturating_sub(500)..]
            )
        });
    eprintln!("{check}");
    let field = |k: &str| {
        check
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {check}"))
    };
    assert_eq!(
        field("sections"),
        "summary,confusion,mistakes,reliability,learning-curves,provenance"
    );
    assert_eq!(field("images"), n_img.to_string());
    assert!(
        field("broken").starts_with("0 "),
        "undecoded images: {}",
        field("broken")
    );
    assert!(
        field("svgs").parse::<usize>().unwrap() >= 2,
        "reliability + learning curves"
    );
    assert_eq!(field("flat_svgs"), "0", "every chart has a size");
    assert_eq!(field("cells"), "16", "4 × 4 confusion matrix");
    let (sw, iw): (u32, u32) = (
        field("scroll_width").parse().unwrap(),
        field("inner_width").parse().unwrap(),
    );
    assert!(sw <= iw, "wider than the window: {sw} > {iw}");

    // 3. Print (the @media print rules).
    let pdf = keep.join("report.pdf");
    run_chromium(
        &browser,
        &t.path().join("profile3"),
        &[
            &format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer",
        ],
        &url(&page_path),
    );
    let pdf_bytes = std::fs::read(&pdf).expect("a PDF");
    assert!(pdf_bytes.starts_with(b"%PDF"));
    assert!(
        pdf_bytes.len() > 20_000,
        "an empty PDF: {} bytes",
        pdf_bytes.len()
    );
    eprintln!(
        "screenshot, page and PDF ({} KB) in {}",
        pdf_bytes.len() / 1024,
        keep.display()
    );
}
