//! The code paths the fuzz targets drive, shared with the root crate's
//! regression test (`tests/it/fuzz_regressions.rs` includes this file with
//! `#[path]`), so a saved input runs through exactly what the fuzzer ran.
//!
//! Every function takes the raw fuzz input. A clean `Err` or `Ok` is fine; a
//! panic (an `assert!` here, or one inside xfer) is a bug. Needs only xfer,
//! ndarray and serde_json, which the root crate has too.
//!
//! `strict` adds checks of properties that are not panics but silent wrong
//! results (a head with one class, NaN probabilities, a manifest whose recipe
//! does not survive its JSON round trip); the regression test runs with it on
//! for the inputs under `strict/`.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use xfer::images::preprocess::{
    decode_bytes, to_tensor, ChannelOrder, CropOffset, DecodeOptions, Interpolation, Recipe,
    ResizeMode,
};
use xfer::models::zoo::Manifest;
use xfer::ship::bundle::Bundle;

/// Pixel limit of the decode target (the default, 100 MP, makes one input cost
/// hundreds of MB; see the report).
pub const FUZZ_MAX_PIXELS: u64 = 4_000_000;

/// `decode`: byte 0 chooses the options (scaled JPEG decode, interpolation,
/// channel order, resize/crop), the rest is the image file.
/// Returns whether the image decoded.
pub fn decode(data: &[u8]) -> bool {
    let Some((&ctl, bytes)) = data.split_first() else {
        return false;
    };
    // XFER_FUZZ_MAX_PIXELS: another limit, to measure what one input costs
    // under the default (100 MP) with the fuzz binary.
    let max_pixels = std::env::var("XFER_FUZZ_MAX_PIXELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FUZZ_MAX_PIXELS);
    let opts = DecodeOptions {
        max_pixels,
        scaled_jpeg: ctl & 1 == 1,
        ..DecodeOptions::default()
    };
    let interpolation = match (ctl >> 1) % 3 {
        0 => Interpolation::Nearest,
        1 => Interpolation::Bilinear,
        _ => Interpolation::Bicubic,
    };
    let crop = 1 + u32::from((ctl >> 3) & 7) * 9; // 1..=64
    let resize = crop + u32::from(ctl >> 6) * 7;
    // The resize mode and crop offset vary with the sizes' parity (no spare bits).
    let recipe = Recipe {
        resize,
        resize_mode: if resize % 2 == 0 {
            ResizeMode::ShorterSide
        } else {
            ResizeMode::Square
        },
        crop,
        crop_offset: if crop % 2 == 0 {
            CropOffset::RoundHalfEven
        } else {
            CropOffset::Floor
        },
        interpolation,
        pixel_scale: 1.0 / 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        channel_order: if ctl & 4 == 0 {
            ChannelOrder::Rgb
        } else {
            ChannelOrder::Bgr
        },
    };
    let img = match decode_bytes(bytes, Path::new("fuzz-input"), &opts, recipe.resize) {
        Ok(img) => img,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    let (w, h) = img.dimensions();
    assert!(w > 0 && h > 0, "decoded an empty image {w}×{h}");
    assert!(
        u64::from(w) * u64::from(h) <= max_pixels,
        "decoded {w}×{h}, over the pixel limit"
    );
    assert_eq!(img.as_raw().len(), w as usize * h as usize * 3);
    let mut out = vec![0f32; recipe.tensor_len()];
    to_tensor(&img, &recipe, &mut out);
    assert!(
        out.iter().all(|v| v.is_finite()),
        "non-finite value in the tensor"
    );
    true
}

fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_owned()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!(
        "xfer-fuzz-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// `bundle`: the bytes as a bundle file. If it loads, predicts on zeros of the
/// width it claims. Returns whether it loaded.
pub fn bundle(data: &[u8], strict: bool) -> bool {
    let path = scratch("bundle").with_extension("safetensors");
    std::fs::write(&path, data).expect("write the scratch bundle");
    let loaded = Bundle::load(&path);
    let _ = std::fs::remove_file(&path);
    let b = match loaded {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    let cfg = &b.meta.architecture;
    assert_eq!(b.meta.class_names.len(), cfg.n_classes);
    if strict {
        assert!(
            cfg.validate().is_ok(),
            "loaded a bundle whose architecture is invalid: {:?}",
            cfg.validate()
        );
    }
    let d = cfg.n_features;
    if d > 1 << 20 {
        return true; // a zero input would be too large to build here
    }
    for rows in [0usize, 2] {
        let x = Array2::<f32>::zeros((rows, d));
        let p = b.predict_proba(x.view());
        assert_eq!(p.dim(), (rows, cfg.n_classes), "predict_proba shape");
        if strict {
            for row in p.rows() {
                assert!(
                    row.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                    "probabilities {row} are not in [0, 1]"
                );
                assert!(
                    (row.sum() - 1.0).abs() < 1e-3,
                    "probabilities {row} do not sum to 1"
                );
            }
        }
    }
    true
}

/// `manifest`: the bytes as a backbone manifest (`onnx/<name>.toml`).
/// Returns whether it was accepted.
pub fn manifest(data: &[u8], strict: bool) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let m = match Manifest::from_toml_str(text, Path::new("/fuzz/onnx/m.toml")) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    assert!(m.preprocess.validate().is_ok());
    assert_eq!(m.dir, Path::new("/fuzz/onnx"));
    let _ = m.onnx_path();
    if strict {
        let [_, c, h, w] = m.input.shape;
        assert!(c == 3 && h == w, "input shape {:?}", m.input.shape);
        assert_eq!(
            h,
            i64::from(m.preprocess.crop),
            "input size differs from the crop: {:?} vs {}",
            m.input.shape,
            m.preprocess.crop
        );
        // The recipe is stored as JSON in every feature file and bundle; it
        // must read back as itself (NaN/inf become `null`).
        let json = serde_json::to_string(&m.preprocess).expect("recipe serialises");
        let back: Result<Recipe, _> = serde_json::from_str(&json);
        assert!(
            back.as_ref().is_ok_and(|r| *r == m.preprocess),
            "recipe {:?} does not survive JSON: {json}",
            m.preprocess
        );
    }
    true
}

/// `kaggle_id`: byte 0 chooses the positive class and the clip; the rest is
/// records separated by NUL (which no Unix path holds), each a control byte
/// (bit 7: unreadable image; bits 0–6: the positive class's probability ×127)
/// then the path's bytes (any bytes: non-UTF-8, commas, quotes, newlines).
/// Returns the submission's text when the rows were accepted.
pub fn kaggle(data: &[u8]) -> Option<String> {
    let (&ctl, rest) = data.split_first()?;
    let positive = usize::from(ctl & 1);
    let clip = [0.0, 0.001, 0.005, 0.25, 0.4999][usize::from(ctl >> 1) % 5];
    let mut paths = Vec::new();
    let mut probs = Vec::new();
    let mut unreadable = Vec::new();
    for rec in rest.split(|&b| b == 0) {
        let Some((&c, path)) = rec.split_first() else {
            continue;
        };
        let path = PathBuf::from(OsStr::from_bytes(path));
        if c & 0x80 != 0 {
            unreadable.push(path);
        } else {
            let p = f32::from(c & 0x7f) / 127.0;
            probs.extend([1.0 - p, p]);
            paths.push(path);
        }
    }
    let probs = Array2::from_shape_vec((paths.len(), 2), probs).expect("two per path");
    for p in paths.iter().chain(&unreadable) {
        let _ = xfer::ship::predict::output::kaggle_id(p);
    }
    let rows = match xfer::ship::predict::output::kaggle_rows(
        &paths,
        probs.view(),
        positive,
        clip,
        &unreadable,
    ) {
        Ok(rows) => rows,
        Err(_) => return None,
    };
    assert_eq!(
        rows.len(),
        paths.len() + unreadable.len(),
        "one row per image"
    );
    let (lo, hi) = (clip as f32, (1.0 - clip) as f32);
    for (id, p) in &rows {
        assert!(
            p.is_finite() && (lo..=hi).contains(p),
            "id {id:?}: {p} outside [{lo}, {hi}]"
        );
    }
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    for w in ids.windows(2) {
        assert_ne!(w[0], w[1], "the submission has id {:?} twice", w[0]);
    }
    // Kaggle reads the ids as numbers when they all are: "1", "01" and "+1"
    // are one id.
    let numbers: Option<Vec<u64>> = rows.iter().map(|(id, _)| id.parse().ok()).collect();
    if let Some(mut numbers) = numbers {
        numbers.sort_unstable();
        for w in numbers.windows(2) {
            assert_ne!(
                w[0], w[1],
                "the submission has id {} twice (as a number)",
                w[0]
            );
        }
    }
    let mut out = Vec::new();
    xfer::ship::predict::output::write_kaggle(&mut out, &rows).expect("write to a Vec");
    let text = String::from_utf8(out).expect("the submission is UTF-8");
    let records = parse_csv(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!(records.len(), rows.len() + 1, "rows in {text:?}");
    assert_eq!(records[0], ["id", "label"]);
    for ((id, p), rec) in rows.iter().zip(&records[1..]) {
        assert_eq!(rec.len(), 2, "fields of {rec:?}");
        assert_eq!(&rec[0], id, "id read back");
        assert_eq!(rec[1].parse::<f32>().ok(), Some(*p), "label read back");
    }
    Some(text)
}

/// RFC 4180 records (LF line ends, as `write_kaggle` writes them).
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_start = true; // of a field
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                at_start = false;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted field".into()),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') => {}
                    Some(c) => return Err(format!("{c:?} after a closing quote")),
                }
            }
            '"' => return Err("quote inside an unquoted field".into()),
            ',' => {
                rec.push(std::mem::take(&mut field));
                at_start = true;
            }
            '\n' => {
                rec.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut rec));
                at_start = true;
            }
            '\r' => return Err("bare CR outside quotes".into()),
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if !rec.is_empty() || !field.is_empty() {
        return Err("last record has no line end".into());
    }
    Ok(records)
}

/// `feature_meta`'s readers on feature files (in the order given): `store::read`
/// on each, then `features::load` on all. Returns whether `load` accepted them.
#[cfg(feature = "store")]
pub fn feature_files(paths: &[PathBuf]) -> bool {
    for p in paths {
        match xfer::features::store::read(p) {
            Ok(f) => {
                assert_eq!(f.labels.len(), f.data.nrows(), "labels per row");
                if let Some(names) = &f.paths {
                    assert_eq!(names.len(), f.data.nrows(), "paths per row");
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    match xfer::features::load(paths) {
        Ok(set) => {
            assert_eq!(set.labels.len(), set.n_samples());
            assert_eq!(set.backbones.len(), paths.len());
            assert_eq!(
                set.backbones.iter().map(|b| b.n_features).sum::<usize>(),
                set.n_features()
            );
            assert!(set.n_samples() > 0 && set.n_features() > 0);
            assert!(set.data.iter().all(|v| v.is_finite()), "non-finite feature");
            for r in 0..set.n_samples() {
                let _ = set.row_name(r);
            }
            let _ = set.describe_backbones();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// `list`: byte 0 chooses the list's extension (`.csv`, `.tsv`, `.txt`), the
/// rest is the list file, read by `dataset::from_list` (the `--list` parser).
/// A list that loads must name each file once (by its normalised key), sorted,
/// with labels that index its sorted, distinct classes; and written back as a
/// CSV (every field quoted) it must read back as the same dataset: no record
/// lost or changed on the way. Returns whether it loaded.
pub fn list(data: &[u8]) -> bool {
    use xfer::images::dataset::from_list;
    let Some((&ctl, bytes)) = data.split_first() else {
        return false;
    };
    let ext = ["csv", "tsv", "txt"][usize::from(ctl % 3)];
    let dir = scratch("list");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(format!("list.{ext}"));
    std::fs::write(&path, bytes).expect("write the scratch list");
    let result = from_list(&path);
    let ds = match result {
        Ok(ds) => ds,
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains("Some("), "{text}");
            let _ = std::fs::remove_dir_all(&dir);
            return false;
        }
    };
    assert!(!ds.items.is_empty());
    for w in ds.items.windows(2) {
        assert!(
            w[0].rel_path < w[1].rel_path,
            "not sorted or listed twice: {:?}, {:?}",
            w[0].rel_path,
            w[1].rel_path
        );
    }
    for w in ds.classes.windows(2) {
        assert!(
            w[0] < w[1],
            "classes not sorted and distinct: {:?}",
            ds.classes
        );
    }
    for item in &ds.items {
        assert!(!item.rel_path.is_empty());
        let key = Path::new(&item.rel_path);
        assert!(
            !key.components().any(|c| matches!(
                c,
                std::path::Component::CurDir | std::path::Component::ParentDir
            )),
            "key not normalised: {:?}",
            item.rel_path
        );
        if ds.classes.is_empty() {
            assert_eq!(item.label, -1);
        } else {
            assert!(item.label >= 0 && (item.label as usize) < ds.classes.len());
        }
    }
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut text = String::from("path,label\n");
    for item in &ds.items {
        text.push_str(&quote(&item.rel_path));
        if item.label >= 0 {
            text.push(',');
            text.push_str(&quote(&ds.classes[item.label as usize]));
        }
        text.push('\n');
    }
    let again = dir.join("again.csv");
    std::fs::write(&again, &text).expect("write the scratch list");
    let back = from_list(&again);
    let _ = std::fs::remove_dir_all(&dir);
    let back = back.unwrap_or_else(|e| panic!("written back as {text:?}, it does not load: {e}"));
    assert_eq!(back.classes, ds.classes, "written back as {text:?}");
    let keys = |d: &xfer::images::dataset::Dataset| -> Vec<(String, i64)> {
        d.items
            .iter()
            .map(|i| (i.rel_path.clone(), i.label))
            .collect()
    };
    assert_eq!(keys(&back), keys(&ds), "written back as {text:?}");
    true
}

/// `shard_meta`: `merge::merge` of shard files (in the order given) into
/// `out`. A merge must not panic or allocate by a count it read (the fuzz
/// run's memory limit catches that), and an error is one short line; a merge
/// that succeeds writes a file that opens, holding every row of the shards.
/// Returns whether the merge succeeded.
#[cfg(feature = "store")]
pub fn shard_files(paths: &[PathBuf], out: &Path) -> bool {
    let result = xfer::features::merge::merge(paths, out, &mut |_, _| {});
    match result {
        Ok(summary) => {
            let f = xfer::features::store::FileReader::open(out).expect("a merged file opens");
            assert_eq!(f.rows, summary.rows);
            let list = f.list.as_ref().expect("a merged file records its list");
            assert!(list.shard.is_none());
            assert_eq!(
                (f.rows + f.skipped) as u64,
                list.len,
                "rows + skipped = list"
            );
            let _ = std::fs::remove_file(out);
            true
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.len() < 4096, "a {}-byte error", text.len());
            assert!(!text.contains("Some("), "{text}");
            assert!(!out.exists(), "a failed merge left {}", out.display());
            false
        }
    }
}

/// `manifest_name`: the bytes (as UTF-8, lossily) as the `name` of an
/// otherwise valid manifest (tests/fixtures/tiny/tiny.toml's). Loading it, and
/// looking the name up in a zoo, must not panic; with `strict`, a manifest
/// that loads must have a name that is one path component (it names
/// `<zoo>/<name>.toml` and a package's files), so it cannot write outside
/// its folder. Returns whether it loaded.
pub fn manifest_name(data: &[u8], strict: bool) -> bool {
    use std::path::Component;
    let name = String::from_utf8_lossy(data).into_owned();
    let tiny = include_str!("../../tests/fixtures/tiny/tiny.toml");
    let quoted = serde_json::to_string(&name).expect("a string serialises");
    let text = tiny.replacen("name = \"tiny\"", &format!("name = {quoted}"), 1);
    let dir = Path::new("/fuzz/onnx");
    let loaded = Manifest::from_toml_str(&text, &dir.join("m.toml"));
    let zoo = xfer::models::zoo::Zoo {
        dir: scratch("manifest-name-zoo"),
    };
    if let Err(e) = zoo.find(&name) {
        let _ = e.to_string();
    }
    let m = match loaded {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    assert_eq!(m.name, name);
    if strict {
        let file = format!("{}.toml", m.name);
        let parts: Vec<Component> = Path::new(&file).components().collect();
        assert!(
            matches!(parts[..], [Component::Normal(_)]) && !m.name.contains('/'),
            "the name {:?} is not one path component",
            m.name
        );
        assert_eq!(dir.join(&file).parent(), Some(dir));
        assert_eq!(dir.join(&m.name).parent(), Some(dir), "{:?}", m.name);
    }
    true
}

/// `model_graph`: byte 0 chooses the flags of `xfer models add` (--crop,
/// --pool, --output), the rest is the ONNX file, read by ONNX Runtime and
/// inspected by `model_add::add` (inputs, outputs, shapes, the probe batch).
/// A model that is added must give a manifest that loads, with a recipe and
/// feature width within xfer's bounds. Needs ONNX Runtime (tools/setup.sh).
/// Returns whether the model was added.
pub fn model_graph(data: &[u8]) -> bool {
    use xfer::models::add::{add, AddRequest, RecipeFlags};
    use xfer::models::zoo::Pool;
    static RUNTIME: std::sync::OnceLock<xfer::models::runtime::Runtime> =
        std::sync::OnceLock::new();
    let Some((&ctl, onnx)) = data.split_first() else {
        return false;
    };
    let runtime = RUNTIME.get_or_init(|| {
        xfer::models::runtime::Runtime::init(None).expect("ONNX Runtime (run tools/setup.sh)")
    });
    let dir = scratch("model-graph");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let file = dir.join("model.onnx");
    std::fs::write(&file, onnx).expect("write the scratch model");
    let req = AddRequest {
        onnx: file,
        name: "fuzzed".into(),
        config: None,
        output: (ctl & 0x40 != 0).then(|| "features".to_string()),
        pool: match (ctl >> 3) & 7 {
            1 => Some(Pool::Avg),
            2 => Some(Pool::Cls),
            3 => Some(Pool::Mean),
            4 => Some(Pool::ClsMean),
            _ => None,
        },
        prefix_tokens: (ctl & 0x80 != 0).then_some(1),
        l2: false,
        recipe: RecipeFlags {
            crop: [
                None,
                Some(8),
                Some(32),
                Some(224),
                Some(14),
                Some(1),
                Some(4096),
                Some(100_000),
            ][usize::from(ctl & 7)],
            mean: Some([0.5; 3]),
            std: Some([0.5; 3]),
            ..RecipeFlags::default()
        },
        command_line: "fuzz".into(),
        force: true,
        weights: xfer::models::zoo::Weights::Random,
    };
    let zoo = xfer::models::zoo::Zoo {
        dir: dir.join("zoo"),
    };
    let result = add(runtime, &zoo, &req);
    let added = match result {
        Ok(a) => {
            assert!(a.manifest.preprocess.validate().is_ok());
            assert!(a.manifest.output.feature_dim > 0);
            let back = Manifest::from_file(&a.path).expect("the manifest written loads");
            assert_eq!(back.output.feature_dim, a.manifest.output.feature_dim);
            true
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains("Some("), "{text}");
            assert!(text.len() < 8192, "a {}-byte error", text.len());
            false
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    added
}
