#![no_main]
//! Feature-file metadata: the fuzz input, read as a structured value
//! (`arbitrary`), becomes one to three small but real HDF5 feature files whose
//! datasets (`data`, `label`, `path`, `skipped_*`) and root attributes (class
//! names, preprocessing JSON, backbone, sha256, `complete`, `rows_done`, …) have
//! fuzzed types, shapes, row counts and values. Then the readers run on them:
//! `xfer::features::store::read` on each, `xfer::features::load` on all. Any panic is a bug.
//!
//! HDF5's own file parser is not fuzzed (out of scope): the files are always
//! well formed. `XFER_FUZZ_KEEP=DIR` copies the files of each run to DIR (used
//! to turn an input into the `.h5` fixtures of tests/it/fuzz_regressions.rs).

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use hdf5::types::{FixedAscii, VarLenUnicode};
use libfuzzer_sys::fuzz_target;
use ndarray::Array2;

#[derive(Arbitrary, Debug)]
struct Spec {
    first: FileSpec,
    more: Vec<More>,
}

/// Another backbone's file: fuzzed from scratch, or the first file changed a
/// little (so that row alignment, label and class-name checks are reached).
#[derive(Arbitrary, Debug)]
enum More {
    New(FileSpec),
    Like(Vec<Tweak>),
}

#[derive(Arbitrary, Debug, Clone)]
enum Tweak {
    /// Rotate the rows (data, label, path) by this much.
    Rotate(u8),
    /// Another number of features per row.
    Cols(u8),
    /// One label differs.
    Label(u8, i8),
    /// One path differs.
    Path(u8, PathStr),
    NoPath,
    NoLabel,
    Attr(AttrName, AttrValue),
    DropAttrs,
}

#[derive(Arbitrary, Debug, Clone)]
struct FileSpec {
    name: NameSpec,
    data: Option<DataSpec>,
    label: Option<LabelSpec>,
    path: Option<StrSpec>,
    skipped_path: Option<StrSpec>,
    skipped_reason: Option<StrSpec>,
    attrs: Vec<(AttrName, AttrValue)>,
}

#[derive(Arbitrary, Debug, Clone)]
enum NameSpec {
    Plain,
    Tutorial(u8),
    Same,
}

#[derive(Arbitrary, Debug, Clone)]
enum DataSpec {
    F32 { rows: u8, cols: u8, values: Vec<Value> },
    F64 { rows: u8, cols: u8, values: Vec<f64> },
    I32 { rows: u8, cols: u8, values: Vec<i32> },
    OneD(Vec<f32>),
    ThreeD { a: u8, b: u8, c: u8 },
    Scalar(f32),
    Strings(Vec<PathStr>),
    /// Chunked, nothing written: the header claims rows × cols (read as
    /// zeros). No rows: up to 2^40 columns; else ≤ 2^20 values in all.
    Declared { rows: u8, cols: u64 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Small(i8),
    Any(f32),
}

#[derive(Arbitrary, Debug, Clone)]
enum LabelSpec {
    I64(Vec<SmallLabel>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    TwoD { rows: u8, cols: u8 },
    Strings(Vec<PathStr>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SmallLabel {
    Small(i8),
    Any(i64),
}

#[derive(Arbitrary, Debug, Clone)]
enum StrSpec {
    VarLen(Vec<PathStr>),
    Fixed(Vec<PathStr>),
    Ints(Vec<i32>),
    TwoD { rows: u8, cols: u8 },
}

/// Mostly names from a small pool, so that files agree often enough to reach
/// the row alignment.
#[derive(Arbitrary, Debug, Clone)]
enum PathStr {
    Pool(u8),
    Any(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum AttrName {
    Backbone,
    ModelSha256,
    Preprocess,
    ClassNames,
    OrtVersion,
    ExecutionProvider,
    XferVersion,
    DatasetRoot,
    Layout,
    RowsDone,
    SkippedDone,
    Complete,
}

#[derive(Arbitrary, Debug, Clone)]
enum AttrValue {
    Str(String),
    Names(Vec<PathStr>),
    U64(u64),
    I64(i64),
    F64(f64),
    StrArray(Vec<PathStr>),
    Fixed(PathStr),
}

const POOL: [&str; 8] = [
    "cat/1.jpg",
    "dog/2.jpg",
    "cat/3.jpg",
    "dog/ü.jpg",
    "a,b.jpg",
    "",
    "cat",
    "dog",
];

impl PathStr {
    fn get(&self) -> String {
        match self {
            PathStr::Pool(i) => POOL[usize::from(*i) % POOL.len()].to_owned(),
            PathStr::Any(s) => s.replace('\0', ""),
        }
    }
}

impl AttrName {
    fn as_str(self) -> &'static str {
        match self {
            AttrName::Backbone => "backbone",
            AttrName::ModelSha256 => "model_sha256",
            AttrName::Preprocess => "preprocess",
            AttrName::ClassNames => "class_names",
            AttrName::OrtVersion => "ort_version",
            AttrName::ExecutionProvider => "execution_provider",
            AttrName::XferVersion => "xfer_version",
            AttrName::DatasetRoot => "dataset_root",
            AttrName::Layout => "layout",
            AttrName::RowsDone => "rows_done",
            AttrName::SkippedDone => "skipped_done",
            AttrName::Complete => "complete",
        }
    }
}

fn vlen(v: &[PathStr]) -> Vec<VarLenUnicode> {
    v.iter()
        .take(64)
        .map(|s| s.get().parse().expect("no NUL"))
        .collect()
}

fn fixed(v: &[PathStr]) -> Vec<FixedAscii<16>> {
    v.iter()
        .take(64)
        .map(|s| {
            let s: String = s.get().chars().filter(|c| c.is_ascii()).take(16).collect();
            FixedAscii::from_ascii(&s).expect("ascii, ≤ 16")
        })
        .collect()
}

fn dims(rows: u8, cols: u8) -> (usize, usize) {
    (usize::from(rows % 17), usize::from(cols % 9))
}

fn fill<T: Clone>(values: &[T], n: usize, zero: T) -> Vec<T> {
    if values.is_empty() {
        return vec![zero; n];
    }
    values.iter().cycle().take(n).cloned().collect()
}

fn write_strs(file: &hdf5::File, name: &str, spec: &StrSpec) -> hdf5::Result<()> {
    match spec {
        StrSpec::VarLen(v) => {
            file.new_dataset_builder()
                .with_data(&vlen(v))
                .create(name)?;
        }
        StrSpec::Fixed(v) => {
            file.new_dataset_builder()
                .with_data(&fixed(v))
                .create(name)?;
        }
        StrSpec::Ints(v) => {
            file.new_dataset_builder()
                .with_data(&v[..v.len().min(64)])
                .create(name)?;
        }
        StrSpec::TwoD { rows, cols } => {
            let (r, c) = dims(*rows, *cols);
            let a = Array2::from_shape_fn((r, c), |(i, j)| {
                VarLenUnicode::from(POOL[(i + j) % POOL.len()].parse::<VarLenUnicode>().unwrap())
            });
            file.new_dataset_builder().with_data(&a).create(name)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, spec: &FileSpec) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    if let Some(d) = &spec.data {
        let b = file.new_dataset_builder();
        match d {
            DataSpec::F32 { rows, cols, values } => {
                let (r, c) = dims(*rows, *cols);
                let v: Vec<f32> = fill(values, r * c, Value::Small(0))
                    .into_iter()
                    .map(|v| match v {
                        Value::Small(i) => f32::from(i),
                        Value::Any(f) => f,
                    })
                    .collect();
                b.with_data(&Array2::from_shape_vec((r, c), v).unwrap())
                    .create("data")?;
            }
            DataSpec::F64 { rows, cols, values } => {
                let (r, c) = dims(*rows, *cols);
                b.with_data(&Array2::from_shape_vec((r, c), fill(values, r * c, 0.0)).unwrap())
                    .create("data")?;
            }
            DataSpec::I32 { rows, cols, values } => {
                let (r, c) = dims(*rows, *cols);
                b.with_data(&Array2::from_shape_vec((r, c), fill(values, r * c, 0)).unwrap())
                    .create("data")?;
            }
            DataSpec::OneD(v) => {
                b.with_data(&v[..v.len().min(64)]).create("data")?;
            }
            DataSpec::ThreeD { a, b: bb, c } => {
                let sh = (usize::from(a % 4), usize::from(bb % 4), usize::from(c % 4));
                b.with_data(&ndarray::Array3::<f32>::zeros(sh))
                    .create("data")?;
            }
            DataSpec::Scalar(x) => {
                file.new_dataset::<f32>().create("data")?.write_scalar(x)?;
            }
            DataSpec::Strings(v) => {
                b.with_data(&vlen(v)).create("data")?;
            }
            DataSpec::Declared { rows, cols } => {
                let rows = usize::from(rows % 3);
                let cols = if rows == 0 {
                    (cols % (1 << 40)) as usize
                } else {
                    (cols % (1 << 20)) as usize / rows
                }
                .max(1);
                file.new_dataset::<f32>()
                    .chunk((1, cols.min(1024)))
                    .shape((hdf5::Extent::resizable(rows), hdf5::Extent::fixed(cols)))
                    .create("data")?;
            }
        }
    }
    if let Some(l) = &spec.label {
        let b = file.new_dataset_builder();
        match l {
            LabelSpec::I64(v) => {
                let v: Vec<i64> = v
                    .iter()
                    .take(64)
                    .map(|l| match l {
                        SmallLabel::Small(i) => i64::from(*i % 4),
                        SmallLabel::Any(i) => *i,
                    })
                    .collect();
                b.with_data(&v).create("label")?;
            }
            LabelSpec::I32(v) => {
                b.with_data(&v[..v.len().min(64)]).create("label")?;
            }
            LabelSpec::U64(v) => {
                b.with_data(&v[..v.len().min(64)]).create("label")?;
            }
            LabelSpec::F32(v) => {
                b.with_data(&v[..v.len().min(64)]).create("label")?;
            }
            LabelSpec::TwoD { rows, cols } => {
                let (r, c) = dims(*rows, *cols);
                b.with_data(&Array2::<i64>::zeros((r, c))).create("label")?;
            }
            LabelSpec::Strings(v) => {
                b.with_data(&vlen(v)).create("label")?;
            }
        }
    }
    for (name, s) in [
        ("path", &spec.path),
        ("skipped_path", &spec.skipped_path),
        ("skipped_reason", &spec.skipped_reason),
    ] {
        if let Some(s) = s {
            write_strs(&file, name, s)?;
        }
    }
    for (name, value) in spec.attrs.iter().take(16) {
        let name = name.as_str();
        if file.attr_names()?.iter().any(|n| n == name) {
            continue;
        }
        match value {
            AttrValue::Str(s) => {
                let v: VarLenUnicode = s.replace('\0', "").parse().unwrap();
                file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&v)?;
            }
            AttrValue::Names(v) => {
                let names: Vec<String> = v.iter().take(16).map(PathStr::get).collect();
                let json: VarLenUnicode = serde_json::to_string(&names).unwrap().parse().unwrap();
                file.new_attr::<VarLenUnicode>()
                    .create(name)?
                    .write_scalar(&json)?;
            }
            AttrValue::U64(x) => file.new_attr::<u64>().create(name)?.write_scalar(x)?,
            AttrValue::I64(x) => file.new_attr::<i64>().create(name)?.write_scalar(x)?,
            AttrValue::F64(x) => file.new_attr::<f64>().create(name)?.write_scalar(x)?,
            AttrValue::StrArray(v) => {
                let v = vlen(v);
                file.new_attr::<VarLenUnicode>()
                    .shape(v.len())
                    .create(name)?
                    .write_raw(&v)?;
            }
            AttrValue::Fixed(s) => {
                let v = fixed(std::slice::from_ref(s));
                file.new_attr::<FixedAscii<16>>()
                    .create(name)?
                    .write_scalar(&v[0])?;
            }
        }
    }
    file.close()?;
    Ok(())
}

fn rotate<T>(v: &mut [T], k: u8) {
    if !v.is_empty() {
        let k = usize::from(k) % v.len();
        v.rotate_left(k);
    }
}

fn tweaked(first: &FileSpec, tweaks: &[Tweak]) -> FileSpec {
    let mut f = first.clone();
    f.name = NameSpec::Plain;
    for t in tweaks.iter().take(4) {
        match t {
            Tweak::Rotate(k) => {
                // Rows of `data` are rotated with the labels and paths only for
                // the F32 layout with exactly rows × cols values.
                if let Some(DataSpec::F32 { rows, cols, values }) = &mut f.data {
                    let (r, c) = dims(*rows, *cols);
                    if values.len() == r * c && r > 0 {
                        let mut chunks: Vec<Vec<Value>> = values.chunks(c.max(1)).map(|x| x.to_vec()).collect();
                        rotate(&mut chunks, *k);
                        *values = chunks.concat();
                    }
                }
                if let Some(LabelSpec::I64(v)) = &mut f.label {
                    rotate(v, *k);
                }
                if let Some(StrSpec::VarLen(v)) = &mut f.path {
                    rotate(v, *k);
                }
            }
            Tweak::Cols(c) => {
                if let Some(DataSpec::F32 { cols, .. }) = &mut f.data {
                    *cols = *c;
                }
            }
            Tweak::Label(i, l) => {
                if let Some(LabelSpec::I64(v)) = &mut f.label {
                    if !v.is_empty() {
                        let n = v.len();
                        v[usize::from(*i) % n] = SmallLabel::Small(*l);
                    }
                }
            }
            Tweak::Path(i, p) => {
                if let Some(StrSpec::VarLen(v)) = &mut f.path {
                    if !v.is_empty() {
                        let n = v.len();
                        v[usize::from(*i) % n] = p.clone();
                    }
                }
            }
            Tweak::NoPath => f.path = None,
            Tweak::NoLabel => f.label = None,
            Tweak::Attr(name, value) => {
                f.attrs.retain(|(n, _)| n.as_str() != name.as_str());
                f.attrs.insert(0, (*name, value.clone()));
            }
            Tweak::DropAttrs => f.attrs.clear(),
        }
    }
    f
}

fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("xfer-fuzz-features-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(spec) = Spec::arbitrary(&mut u) else {
        return;
    };
    let dir = scratch_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    let more: Vec<FileSpec> = spec
        .more
        .iter()
        .take(2)
        .map(|m| match m {
            More::New(f) => f.clone(),
            More::Like(t) => tweaked(&spec.first, t),
        })
        .collect();
    for (i, f) in std::iter::once(&spec.first).chain(&more).enumerate() {
        let name = match f.name {
            NameSpec::Plain => format!("f{i}.h5"),
            NameSpec::Tutorial(k) => format!("train_feature_m{}.hd5f", k % 3),
            NameSpec::Same => "f0.h5".to_owned(),
        };
        let p = dir.join(name);
        if !paths.contains(&p) {
            write_file(&p, f).expect("hdf5 writes a small file");
        }
        paths.push(p);
    }
    if let Some(keep) = std::env::var_os("XFER_FUZZ_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        // `<i>-<name>`: the regression test loads a folder's files in name order.
        for (i, p) in paths.iter().enumerate() {
            let name = p.file_name().unwrap().to_string_lossy();
            std::fs::copy(p, keep.join(format!("{i}-{name}"))).unwrap();
        }
    }
    if std::env::var_os("XFER_FUZZ_KEEP").is_some() {
        // What the readers said, to pick regression cases.
        for p in &paths {
            let r = xfer::features::store::read(p).map(|f| f.data.dim());
            eprintln!("OUTCOME read {}: {:?}", p.display(), r.map_err(|e| e.to_string()));
        }
        let r = xfer::features::load(&paths).map(|s| s.data.dim());
        eprintln!("OUTCOME load: {:?}", r.map_err(|e| e.to_string()));
    }
    xfer_fuzz::checks::feature_files(&paths);
    let _ = std::fs::remove_dir_all(&dir);
});
