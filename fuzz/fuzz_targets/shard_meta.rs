#![no_main]
//! Shard files as `xfer merge` reads them: the fuzz input (`arbitrary`) picks
//! a small job (list length, shard count, feature width, views), writes its
//! shard files with xfer's own writer, then changes their attributes (the
//! `shard_*` and `list_*` attributes, `views`, the row counters, versions,
//! backbone) to fuzzed values, drops some files or gives some twice, and
//! merges them (`checks::shard_files`). HDF5's own parser is not fuzzed.
//! `XFER_FUZZ_KEEP=DIR` copies each run's files to DIR (regression fixtures).

use std::path::PathBuf;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ndarray::{Array2, Array3};
use xfer::features::shard::Shard;
use xfer::features::store::{FeatureWriter, ListInfo, Provenance};

#[derive(Arbitrary, Debug)]
struct Spec {
    /// Files in the list: 1..=16.
    len: u8,
    /// Shards: 1..=4.
    count: u8,
    /// Features per row: 1..=4.
    dim: u8,
    /// 0, or 2..=3 augmented views per row.
    views: u8,
    /// Every k-th file is recorded as skipped.
    skip_every: u8,
    tweaks: Vec<(u8, Tweak)>,
    /// Which shard files are passed, by index (default: all, in order).
    order: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum Tweak {
    Set(Attr, Value),
    Remove(Attr),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Attr {
    ShardIndex,
    ShardCount,
    ShardStart,
    ShardEnd,
    ListLen,
    ListSha256,
    Views,
    RowsDone,
    SkippedDone,
    Complete,
    FormatVersion,
    XferVersion,
    Backbone,
}

impl Attr {
    fn name(self) -> &'static str {
        match self {
            Attr::ShardIndex => "shard_index",
            Attr::ShardCount => "shard_count",
            Attr::ShardStart => "shard_start",
            Attr::ShardEnd => "shard_end",
            Attr::ListLen => "list_len",
            Attr::ListSha256 => "list_sha256",
            Attr::Views => "views",
            Attr::RowsDone => "rows_done",
            Attr::SkippedDone => "skipped_done",
            Attr::Complete => "complete",
            Attr::FormatVersion => "format_version",
            Attr::XferVersion => "xfer_version",
            Attr::Backbone => "backbone",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    Small(u8),
    Huge(u64),
    /// Near a power of two (overflow edges).
    Pow2(u8, i8),
    Signed(i64),
    Text(String),
}

fn scratch() -> PathBuf {
    let base = std::path::Path::new("/dev/shm");
    let base = if base.is_dir() { base.to_owned() } else { std::env::temp_dir() };
    base.join(format!("xfer-fuzz-shard-{}", std::process::id()))
}

fn write_attr(file: &hdf5::File, name: &str, v: &Value) -> hdf5::Result<()> {
    if file.attr(name).is_ok() {
        file.delete_attr(name)?;
    }
    match v {
        Value::Small(x) => file.new_attr::<u64>().create(name)?.write_scalar(&u64::from(*x)),
        Value::Huge(x) => file.new_attr::<u64>().create(name)?.write_scalar(x),
        Value::Pow2(p, d) => {
            let x = (1u64 << (p % 64)).wrapping_add(*d as i64 as u64);
            file.new_attr::<u64>().create(name)?.write_scalar(&x)
        }
        Value::Signed(x) => file.new_attr::<i64>().create(name)?.write_scalar(x),
        Value::Text(s) => {
            let s: hdf5::types::VarLenUnicode = s.replace('\0', "").parse().unwrap();
            file.new_attr::<hdf5::types::VarLenUnicode>()
                .create(name)?
                .write_scalar(&s)
        }
    }
}

fuzz_target!(|spec: Spec| {
    let len = 1 + usize::from(spec.len % 16);
    let count = 1 + u64::from(spec.count % 4).min(len as u64 - 1);
    let dim = 1 + usize::from(spec.dim % 4);
    let views = match spec.views % 3 {
        0 => 0,
        v => usize::from(v) + 1,
    };
    let skip_every = usize::from(spec.skip_every % 5);
    let dir = scratch();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prov = Provenance {
        backbone: "tiny".into(),
        model_sha256: "0".repeat(64),
        preprocess: "{}".into(),
        class_names: vec!["a".into(), "b".into()],
        ort_version: "1.31.1".into(),
        execution_provider: "CPUExecutionProvider".into(),
        xfer_version: "0.1.0".into(),
        dataset_root: "/data".into(),
        layout: "list".into(),
        decode: "jpeg_scaled".into(),
        pooling: String::new(),
        views,
        augment: if views > 0 { "{}".into() } else { String::new() },
        precision: String::new(),
    };
    let sha = format!("{:064x}", len);
    let mut paths = Vec::new();
    for index in 0..count {
        let list = ListInfo {
            sha256: sha.clone(),
            len: len as u64,
            shard: Some(Shard { index, count }),
        };
        let p = dir.join(format!("s{index}.h5"));
        let mut w = FeatureWriter::create_for(&p, dim, &prov, Some(&list)).unwrap();
        let r = list.range();
        let mut skipped = Vec::new();
        let mut names = Vec::new();
        let mut labels = Vec::new();
        for i in r.start as usize..r.end as usize {
            if skip_every > 0 && i % skip_every == 0 {
                skipped.push((format!("f{i:02}.jpg"), "unreadable".to_string()));
            } else {
                names.push(format!("f{i:02}.jpg"));
                labels.push((i % 2) as i64);
            }
        }
        let n = names.len();
        let rows = Array2::from_shape_fn((n, dim), |(r, c)| (r * dim + c) as f32);
        let v = (views > 0).then(|| Array3::from_shape_fn((n, views, dim), |(r, k, c)| (r + k + c) as f32));
        w.append_views(rows.view(), v.as_ref().map(|v| v.view()), &labels, &names, &skipped)
            .unwrap();
        w.finish().unwrap();
        paths.push(p);
    }
    for (which, tweak) in &spec.tweaks {
        let p = &paths[usize::from(*which) % paths.len()];
        let f = hdf5::File::open_rw(p).unwrap();
        match tweak {
            Tweak::Set(a, v) => {
                let _ = write_attr(&f, a.name(), v);
            }
            Tweak::Remove(a) => {
                let _ = f.delete_attr(a.name());
            }
        }
    }
    let given: Vec<PathBuf> = match &spec.order {
        Some(order) => order
            .iter()
            .take(8)
            .map(|i| paths[usize::from(*i) % paths.len()].clone())
            .collect(),
        None => paths.clone(),
    };
    if let Some(keep) = std::env::var_os("XFER_FUZZ_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for (i, p) in given.iter().enumerate() {
            let name = p.file_name().unwrap().to_string_lossy();
            std::fs::copy(p, keep.join(format!("{i}-{name}"))).unwrap();
        }
    }
    xfer_fuzz::checks::shard_files(&given, &dir.join("merged.h5"));
    let _ = std::fs::remove_dir_all(&dir);
});
