//! Static INT8 quantisation of a zoo model, calibrated on the user's images
//! (`xfer quantize`).
//!
//! xfer walks the calibration folder with the dataset walker, holds some images
//! back, preprocesses the rest with the one pixel function (the model's own
//! recipe) into a float32 `.npy` tensor, and has ONNX Runtime's Python
//! quantiser (`tools/quantize.py`: `quant_pre_process`, one copy of a shared
//! bias per Conv, then `quantize_static`, QDQ, per-channel int8 weights, uint8
//! activations) turn the model into an int8 one. The script
//! reads tensors only: there is no second copy of the preprocessing. xfer then
//! runs both models on the held-back images and measures how far they agree
//! (feature cosine, top-1 agreement), and writes the int8 model, a manifest
//! with a `[quantization]` table (provenance and the agreement report), and the
//! report as JSON beside it. The manifest is written last: a manifest under its
//! name means a complete model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{s, Array2, ArrayView2, ArrayView4, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Next, Result, Setting};
use crate::images::dataset::{Dataset, Item};
use crate::images::preprocess::{self, DecodeOptions};
use crate::models::backbone::{Backbone, SessionOptions};
use crate::models::runtime::Runtime;
use crate::models::zoo::{Agreement, Manifest, Quantization};

fn err(reason: impl Into<String>) -> Error {
    Error::Quantize {
        reason: reason.into(),
        next: None,
    }
}

/// ONNX Runtime's calibration methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    MinMax,
    Entropy,
    Percentile,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Entropy => "entropy",
            Method::Percentile => "percentile",
        }
    }
}

/// The calibration images and the held-back images the agreement is measured on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selection {
    pub(crate) calib: Vec<Item>,
    pub(crate) holdout: Vec<Item>,
}

/// Chooses up to `n` calibration images and `holdout` held-back ones from the
/// sorted list `items`, both spread evenly over it (so every class of an image
/// folder is in both). When the list is shorter than `n + holdout`, the
/// held-back part is at most a quarter of it (and at least one image) and the
/// rest calibrates.
pub(crate) fn select(items: &[Item], n: usize, holdout: usize) -> Result<Selection> {
    for (setting, value, say) in [
        (Setting::CalibrationImages, n, 256),
        (Setting::HeldBackImages, holdout, 32),
    ] {
        if value == 0 {
            return Err(Error::Setting {
                setting,
                problem: format!("must be at least 1 ({say}, say)"),
            });
        }
    }
    let len = items.len();
    if len < 2 {
        return Err(err(format!(
            "the calibration folder has {len} image(s); it needs at least 2 (some calibrate, some are held back to measure the agreement): pass a folder of a few dozen to a few hundred of your images"
        )));
    }
    let h = holdout.min((len / 4).max(1));
    let c = n.min(len - h);
    let total = c + h;
    // `total` indices spread evenly over the list, then `h` of them spread
    // evenly over those.
    let picked: Vec<&Item> = (0..total).map(|i| &items[i * len / total]).collect();
    let mut sel = Selection {
        calib: Vec::with_capacity(c),
        holdout: Vec::with_capacity(h),
    };
    for (j, item) in picked.into_iter().enumerate() {
        if (j * h) / total != ((j + 1) * h) / total {
            sel.holdout.push(item.clone());
        } else {
            sel.calib.push(item.clone());
        }
    }
    Ok(sel)
}

/// Decodes and preprocesses `items` of `ds` with `manifest`'s recipe into one
/// [n, 3, S, S] tensor (images in parallel). Images that cannot be decoded are
/// left out and returned with their reason.
pub(crate) fn preprocess_images(
    ds: &Dataset,
    items: &[Item],
    manifest: &Manifest,
) -> (Vec<f32>, Vec<Item>, Vec<(String, String)>) {
    let recipe = &manifest.preprocess;
    let len = recipe.tensor_len();
    let opts = DecodeOptions::default();
    let results: Vec<std::result::Result<Vec<f32>, String>> = items
        .par_iter()
        .map(|item| {
            let mut t = vec![0f32; len];
            preprocess::load_tensor(&ds.abs_path(item), recipe, &opts, &mut t)
                .map(|()| t)
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut data = Vec::with_capacity(items.len() * len);
    let mut used = Vec::new();
    let mut skipped = Vec::new();
    for (item, r) in items.iter().zip(results) {
        match r {
            Ok(t) => {
                data.extend_from_slice(&t);
                used.push(item.clone());
            }
            Err(e) => skipped.push((item.rel_path.clone(), e)),
        }
    }
    (data, used, skipped)
}

/// Writes a float32 C-order array as NumPy `.npy` (format 1.0).
pub fn write_npy(w: &mut dyn Write, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape and data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    let mut buf = Vec::with_capacity(data.len().min(1 << 20) * 4);
    for chunk in data.chunks(1 << 20) {
        buf.clear();
        for v in chunk {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Cosine similarity of each row of `a` with the same row of `b` (in f64; a
/// zero row against a zero row counts as 1, against anything else as 0).
pub(crate) fn row_cosines(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Vec<f64> {
    assert_eq!(a.dim(), b.dim(), "the two feature blocks");
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(x, y)| {
            let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
            for (&p, &q) in x.iter().zip(y.iter()) {
                let (p, q) = (f64::from(p), f64::from(q));
                xy += p * q;
                xx += p * p;
                yy += q * q;
            }
            if xx == 0.0 && yy == 0.0 {
                1.0
            } else if xx == 0.0 || yy == 0.0 {
                0.0
            } else {
                xy / (xx.sqrt() * yy.sqrt())
            }
        })
        .collect()
}

/// Mean, minimum and 5th percentile (nearest rank: the ⌈0.05·n⌉-th smallest).
pub(crate) fn summarise(values: &[f64]) -> (f64, f64, f64) {
    assert!(!values.is_empty(), "no values");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let rank = ((0.05 * n as f64).ceil() as usize).clamp(1, n);
    (v.iter().sum::<f64>() / n as f64, v[0], v[rank - 1])
}

/// Fraction of rows whose largest entry is in the same column (the first one on ties).
pub(crate) fn top1_agreement(a: ArrayView2<f32>, b: ArrayView2<f32>) -> f64 {
    let argmax = |r: ndarray::ArrayView1<f32>| {
        r.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            })
            .0
    };
    let same = a
        .outer_iter()
        .zip(b.outer_iter())
        .filter(|(x, y)| argmax(x.view()) == argmax(y.view()))
        .count();
    same as f64 / a.nrows().max(1) as f64
}

/// Runs `tensors` [n, 3, S, S] through a backbone in batches: features, and
/// logits when the model has them.
fn run_all(
    backbone: &mut Backbone,
    tensors: ArrayView4<f32>,
    batch: usize,
) -> Result<(Array2<f32>, Option<Array2<f32>>)> {
    let with_logits = backbone.manifest.output.logits.is_some();
    let mut feats = Vec::new();
    let mut logits = Vec::new();
    let n = tensors.len_of(Axis(0));
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let out = backbone.run(tensors.slice(s![i..end, .., .., ..]), with_logits)?;
        feats.push(out.features);
        if let Some(l) = out.logits {
            logits.push(l);
        }
        i = end;
    }
    let cat = |v: &[Array2<f32>]| {
        let views: Vec<_> = v.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("same widths")
    };
    let f = cat(&feats);
    let l = (with_logits && !logits.is_empty()).then(|| cat(&logits));
    Ok((f, l))
}

/// The agreement of `int8` with `fp32` on the same tensors, and each model's
/// features (rows in tensor order).
pub(crate) struct Measured {
    pub(crate) agreement: Agreement,
    pub(crate) cosines: Vec<f64>,
}

/// Measures how far `int8` agrees with `fp32` on `tensors` [n, 3, S, S].
pub(crate) fn measure_agreement(
    fp32: &mut Backbone,
    int8: &mut Backbone,
    tensors: ArrayView4<f32>,
) -> Result<Measured> {
    let n = tensors.len_of(Axis(0));
    if n == 0 {
        return Err(err(
            "no held-back image could be decoded, so the agreement cannot be measured; pass a folder with more readable images",
        ));
    }
    let (fa, la) = run_all(fp32, tensors, 16)?;
    let (fb, lb) = run_all(int8, tensors, 16)?;
    let cosines = row_cosines(fa.view(), fb.view());
    let (cosine_mean, cosine_min, cosine_p5) = summarise(&cosines);
    let top1 = match (la, lb) {
        (Some(a), Some(b)) => Some(top1_agreement(a.view(), b.view())),
        _ => None,
    };
    Ok(Measured {
        agreement: Agreement {
            images: n,
            cosine_mean,
            cosine_min,
            cosine_p5,
            top1_agreement: top1,
        },
        cosines,
    })
}

/// What `tools/quantize.py` reports on stdout.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct QuantizerReport {
    pub(crate) ort_version: String,
    pub(crate) method: String,
    pub(crate) reduce_range: bool,
    pub(crate) per_channel: bool,
    pub(crate) format: String,
    pub(crate) weights: String,
    pub(crate) activations: String,
    pub(crate) images: usize,
}

/// Everything `quantize` needs, checked by the front end.
#[derive(Debug, Clone)]
pub struct QuantizeConfig {
    pub source: Manifest,
    /// The zoo folder the int8 model and manifest are written to.
    pub zoo_dir: PathBuf,
    pub calib: Dataset,
    pub n: usize,
    pub holdout: usize,
    pub method: Method,
    pub reduce_range: bool,
    pub name: String,
    pub python: PathBuf,
    pub script: PathBuf,
    /// The command line, recorded as the manifest's generator.
    pub command: String,
    /// This machine's int8 instructions ([`crate::models::cpu::Int8Support::describe`]).
    pub cpu_int8: String,
}

/// What `quantize` made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub report_path: PathBuf,
    /// Images that could not be decoded (relative path, reason).
    pub skipped: Vec<(String, String)>,
    pub quantizer_seconds: f64,
}

/// The phases of a run, for the front end's progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Preprocessing { calib: usize, holdout: usize },
    Quantizing,
    Measuring,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Quantises `cfg.source` and writes `<name>.onnx`, `<name>.agreement.json`
/// and, last, `<name>.toml` into `cfg.zoo_dir`.
pub fn quantize(
    cfg: &QuantizeConfig,
    runtime: &Runtime,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<Outcome> {
    let source = &cfg.source;
    refuse_quantised(source)?;
    source.verify_file()?;
    let selection = select(&cfg.calib.items, cfg.n, cfg.holdout)?;
    on_phase(Phase::Preprocessing {
        calib: selection.calib.len(),
        holdout: selection.holdout.len(),
    });
    let (calib_data, calib_used, mut skipped) =
        preprocess_images(&cfg.calib, &selection.calib, source);
    let (hold_data, hold_used, skipped_hold) =
        preprocess_images(&cfg.calib, &selection.holdout, source);
    skipped.extend(skipped_hold);
    if calib_used.is_empty() {
        return Err(err(format!(
            "none of the {} calibration images could be decoded (first: {}); pass a folder of readable images",
            selection.calib.len(),
            skipped.first().map_or(String::new(), |(p, e)| format!("{p}: {e}"))
        )));
    }
    let side = source.preprocess.crop as usize;

    // The working folder: made new (never through a planted link), removed
    // on every exit path.
    let work_dir = cfg.zoo_dir.join(format!(
        ".xfer-quantize-{}-{}",
        cfg.name,
        std::process::id()
    ));
    let work = crate::util::atomic::TempDir::at(work_dir, &cfg.zoo_dir)?;
    let work_path = work.path().to_owned();
    let npy = work_path.join("calib.npy");
    write_calibration(&npy, &[calib_used.len(), 3, side, side], &calib_data)?;
    drop(calib_data);

    on_phase(Phase::Quantizing);
    let file = format!("{}.onnx", cfg.name);
    let tmp_model = work_path.join(&file);
    let (report, quantizer_seconds) = run_quantizer(cfg, &npy, &tmp_model)?;
    let mut manifest = int8_manifest(cfg, &file, &report, &calib_used, &tmp_model)?;
    manifest.dir = work_path.clone();

    on_phase(Phase::Measuring);
    let opts = SessionOptions::default();
    let mut fp32 = Backbone::load(runtime, source, &opts)?;
    let mut int8 = Backbone::load(runtime, &manifest, &opts)?;
    let hold = ArrayView4::from_shape((hold_used.len(), 3, side, side), &hold_data)
        .expect("tensor length matches");
    let measured = measure_agreement(&mut fp32, &mut int8, hold)?;
    drop((fp32, int8));
    if let Some(q) = manifest.quantization.as_mut() {
        q.agreement = Some(measured.agreement.clone());
    }

    // Into the zoo: the model, the report, and last the manifest.
    manifest.dir = cfg.zoo_dir.clone();
    let model_path = manifest.onnx_path();
    std::fs::rename(&tmp_model, &model_path).map_err(io(&model_path))?;
    let report_path = write_agreement(cfg, &manifest, &hold_used, &measured, &skipped)?;
    let manifest_path = cfg.zoo_dir.join(format!("{}.toml", cfg.name));
    let manifest = write_manifest(cfg, &manifest, &manifest_path)?;
    Ok(Outcome {
        manifest,
        manifest_path,
        report_path,
        skipped,
        quantizer_seconds,
    })
}

/// Refuses a model that is already quantised.
fn refuse_quantised(source: &Manifest) -> Result<()> {
    match &source.quantization {
        Some(q) => Err(err(format!(
            "{} is already quantised ({}); quantise its fp32 source {} instead",
            source.name,
            source.precision(),
            q.source
        ))),
        None => Ok(()),
    }
}

/// Writes the calibration tensor as a new `.npy` file.
fn write_calibration(npy: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let f = crate::util::atomic::create_new(npy).map_err(io(npy))?;
    let mut w = std::io::BufWriter::new(f);
    write_npy(&mut w, shape, data)
        .and_then(|()| w.flush())
        .map_err(io(npy))
}

/// Runs `tools/quantize.py` on the source model and the calibration tensor,
/// writing `tmp_model`; its report, read from the last JSON line it prints,
/// and the seconds it ran.
fn run_quantizer(
    cfg: &QuantizeConfig,
    npy: &Path,
    tmp_model: &Path,
) -> Result<(QuantizerReport, f64)> {
    let source = &cfg.source;
    let started = std::time::Instant::now();
    let mut cmd = Command::new(&cfg.python);
    cmd.arg(&cfg.script)
        .arg("--model")
        .arg(source.onnx_path())
        .arg("--calib")
        .arg(npy)
        .arg("--input-name")
        .arg(&source.input.name)
        .arg("--out")
        .arg(tmp_model)
        .arg("--method")
        .arg(cfg.method.as_str());
    if cfg.reduce_range {
        cmd.arg("--reduce-range");
    }
    let out = cmd.output().map_err(|e| Error::Quantize {
        reason: format!("cannot run {} ({e})", cfg.python.display()),
        next: Some(Next::GivePython),
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(err(format!(
            "{} {} failed ({}): {}; check that it has onnxruntime 1.31 with onnxruntime.quantization (run `tools/setup.sh`)",
            cfg.python.display(),
            cfg.script.display(),
            out.status,
            tail.join(" | ")
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            err(format!(
                "{} printed no report (stdout: {}); run it from an xfer checkout whose tools/quantize.py matches this xfer",
                cfg.script.display(),
                stdout.trim()
            ))
        })?;
    Ok((report, seconds))
}

/// The int8 model's manifest: the source's, renamed, with a `[quantization]`
/// table (no agreement yet) recording how and on what it was made.
fn int8_manifest(
    cfg: &QuantizeConfig,
    file: &str,
    report: &QuantizerReport,
    calib_used: &[Item],
    tmp_model: &Path,
) -> Result<Manifest> {
    let source = &cfg.source;
    let sha256 = crate::models::onnx_data::model_sha256(tmp_model)?;
    let mut manifest = source.clone();
    manifest.name = cfg.name.clone();
    manifest.file = file.to_owned();
    manifest.sha256 = sha256;
    manifest.generator = cfg.command.clone();
    manifest.setup = String::new();
    manifest.description = format!(
        "INT8 (ONNX Runtime QDQ, per-channel int8 weights, uint8 activations, {} calibration on {} images{}) of {}. {}",
        cfg.method.as_str(),
        calib_used.len(),
        if cfg.reduce_range { ", 7-bit weights" } else { "" },
        source.name,
        source.description
    );
    manifest.quantization = Some(Quantization {
        precision: "int8".into(),
        format: report.format.clone(),
        weights: report.weights.clone(),
        activations: report.activations.clone(),
        per_channel: report.per_channel,
        reduce_range: report.reduce_range,
        method: report.method.clone(),
        source: source.name.clone(),
        source_sha256: source.sha256.clone(),
        calibration_images: calib_used.len(),
        calibration_sha256: crate::features::shard::list_sha256(calib_used),
        calibration_root: cfg.calib.root.display().to_string(),
        ort_version: report.ort_version.clone(),
        cpu_int8: cfg.cpu_int8.clone(),
        xfer_version: crate::VERSION.into(),
        agreement: None,
    });
    Ok(manifest)
}

/// Writes `<name>.agreement.json` into the zoo: the quantisation, the held-back
/// images with their cosines, the skipped images; returns its path.
fn write_agreement(
    cfg: &QuantizeConfig,
    manifest: &Manifest,
    hold_used: &[Item],
    measured: &Measured,
    skipped: &[(String, String)],
) -> Result<PathBuf> {
    let report_path = cfg.zoo_dir.join(format!("{}.agreement.json", cfg.name));
    let json = serde_json::json!({
        "model": cfg.name,
        "source": cfg.source.name,
        "quantization": manifest.quantization,
        "holdout_images": hold_used.iter().map(|i| &i.rel_path).collect::<Vec<_>>(),
        "holdout_cosines": measured.cosines,
        "skipped": skipped.iter().map(|(p, e)| serde_json::json!({"path": p, "reason": e})).collect::<Vec<_>>(),
    });
    crate::util::atomic::write_bytes_atomic(
        &report_path,
        (serde_json::to_string_pretty(&json).expect("plain data") + "\n").as_bytes(),
    )?;
    Ok(report_path)
}

/// Writes the manifest into the zoo and reads it back through the one
/// parser, so what was written is what loads.
fn write_manifest(
    cfg: &QuantizeConfig,
    manifest: &Manifest,
    manifest_path: &Path,
) -> Result<Manifest> {
    let text = format!(
        "# Written by `xfer quantize`: the int8 model {} made from {} ({}).\n# [quantization] records how, on what, and how far it agrees with the source;\n# {}.agreement.json has the per-image cosines. Re-run the command rather than editing.\n{}",
        manifest.file,
        cfg.source.name,
        cfg.source.file,
        cfg.name,
        toml::to_string(manifest)
            .map_err(|e| err(format!("cannot write the manifest ({e}); report this as a bug")))?
    );
    crate::util::atomic::write_bytes_atomic(manifest_path, text.as_bytes())?;
    // Read back through the one parser, so what was written is what loads.
    Manifest::from_file(manifest_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                rel_path: format!("{i:03}.jpg"),
                label: (i / 10) as i64,
            })
            .collect()
    }

    #[test]
    fn selection_spreads_and_never_overlaps() {
        let s = select(&items(100), 40, 10).unwrap();
        assert_eq!((s.calib.len(), s.holdout.len()), (40, 10));
        for h in &s.holdout {
            assert!(!s.calib.contains(h));
        }
        // Spread: held-back images from every tenth of the list.
        let labels: std::collections::BTreeSet<i64> = s.holdout.iter().map(|i| i.label).collect();
        assert_eq!(labels.len(), 10);
        // Short lists: at most a quarter held back, at least one.
        let s = select(&items(20), 256, 32).unwrap();
        assert_eq!((s.calib.len(), s.holdout.len()), (15, 5));
        let s = select(&items(2), 256, 32).unwrap();
        assert_eq!((s.calib.len(), s.holdout.len()), (1, 1));
        assert!(select(&items(1), 256, 32).is_err());
        assert!(select(&items(10), 0, 3).is_err());
    }

    #[test]
    fn npy_header_is_aligned_and_exact() {
        let mut buf = Vec::new();
        write_npy(&mut buf, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        assert_eq!(&buf[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&buf[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(buf.len(), 10 + hlen + 24);
        assert_eq!(&buf[buf.len() - 4..], &6.5f32.to_le_bytes());
    }

    #[test]
    fn cosine_summary_and_top1() {
        let a = ndarray::array![[1.0f32, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]];
        let b = ndarray::array![[2.0f32, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 0.0]];
        let c = row_cosines(a.view(), b.view());
        assert_eq!(c[0], 1.0);
        assert_eq!(c[1], -1.0);
        assert!((c[2] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(c[3], 1.0);
        let (mean, min, p5) = summarise(&c);
        assert!((mean - (1.0 - 1.0 + std::f64::consts::FRAC_1_SQRT_2 + 1.0) / 4.0).abs() < 1e-12);
        assert_eq!((min, p5), (-1.0, -1.0));
        // p5 of 40 values is the 2nd smallest.
        let v: Vec<f64> = (0..40).map(f64::from).collect();
        assert_eq!(summarise(&v).2, 1.0);
        assert_eq!(top1_agreement(a.view(), b.view()), 0.75);
    }
}
