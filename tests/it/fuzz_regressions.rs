//! Inputs found or kept by fuzzing (`tools/fuzz.sh`, `fuzz/`), replayed through
//! the very code the fuzz targets run (`fuzz/src/checks.rs`, included below) on
//! the normal stable build:
//!
//!     cargo test --release --test it fuzz_regressions::
//!
//! `tests/fixtures/fuzz/<target>/` holds the inputs, in the fuzz target's input
//! format (`feature_meta`: one folder of `.h5` files per case). Each must give a
//! clean `Ok` or `Err`, never a panic. `<target>/strict/` inputs are also held to
//! the strict checks (silent wrong results). `<target>/open/` holds the inputs
//! of the bugs fuzzing found; they are fixed, and their tests say what each was.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/checks.rs"]
mod checks;

fn dir(target: &str, sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target)
        .join(sub)
}

/// The files (or, with `folders`, the sub-folders) of a fixture folder, sorted.
fn entries(target: &str, sub: &str, folders: bool) -> Vec<PathBuf> {
    let d = dir(target, sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| if folders { p.is_dir() } else { p.is_file() })
        .collect();
    v.sort();
    v
}

/// Runs `check` on every input; fails naming each input that panicked.
fn replay(inputs: &[PathBuf], check: impl Fn(&Path)) {
    assert!(!inputs.is_empty(), "no inputs");
    let failed: Vec<String> = inputs
        .iter()
        .filter(|p| catch_unwind(AssertUnwindSafe(|| check(p))).is_err())
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "panicked on {failed:#?}");
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn decode_inputs() {
    replay(&entries("decode", "", false), |p| {
        checks::decode(&bytes(p));
    });
}

#[test]
fn bundle_inputs() {
    replay(&entries("bundle", "", false), |p| {
        checks::bundle(&bytes(p), false);
    });
}

/// Bundles the strict fuzz run found after the first fixes: finite weights
/// and scales that still overflow to NaN probabilities; refused when loaded.
#[test]
fn bundle_strict_inputs() {
    replay(&entries("bundle", "strict", false), |p| {
        checks::bundle(&bytes(p), true);
    });
}

#[test]
fn bundle_seed_loads_and_predicts() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/bundle/mlp.safetensors");
    assert!(checks::bundle(&bytes(&seed), true));
}

#[test]
fn manifest_inputs() {
    replay(&entries("manifest", "", false), |p| {
        checks::manifest(&bytes(p), false);
    });
}

#[test]
fn manifest_strict_inputs() {
    replay(&entries("manifest", "strict", false), |p| {
        checks::manifest(&bytes(p), true);
    });
}

#[test]
fn kaggle_inputs() {
    replay(&entries("kaggle_id", "", false), |p| {
        checks::kaggle(&bytes(p));
    });
}

#[test]
fn csv_reader_of_the_kaggle_check() {
    let recs = checks::parse_csv("id,label\n\"a,\"\"b\"\"\nc\",0.5\n,1\n").unwrap();
    assert_eq!(
        recs,
        [
            vec!["id", "label"],
            vec!["a,\"b\"\nc", "0.5"],
            vec!["", "1"]
        ]
    );
    assert!(checks::parse_csv("a\"b,1\n").is_err());
    assert!(checks::parse_csv("\"a,1\n").is_err());
    assert!(checks::parse_csv("a,1").is_err());
}

#[cfg(feature = "store")]
#[test]
fn feature_meta_inputs() {
    replay(&entries("feature_meta", "", true), |case| {
        let files: Vec<PathBuf> = entries(
            "feature_meta",
            case.file_name().unwrap().to_str().unwrap(),
            false,
        );
        checks::feature_files(&files);
    });
}

// ---- Bugs the fuzzers found (or that fuzzing led to), fixed: each input is
// refused cleanly now.

/// Bundle::load accepted heads with 0 or 1 class, NaN weights and zero
/// standardisation scales; it refuses them now.
#[test]
fn bundle_open_bugs() {
    replay(&entries("bundle", "open", false), |p| {
        checks::bundle(&bytes(p), true);
    });
}

/// A 0-class bundle loaded, then the CSV writer indexed class_names[0] and
/// panicked; it is refused when loaded now.
#[test]
fn zero_class_bundle_is_refused_when_loaded() {
    let p = dir("bundle", "open").join("zero_classes.safetensors");
    let e = xfer::ship::bundle::Bundle::load(&p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("architecture"), "{e}");
}

/// kaggle_rows sorted numeric ids by number only, so equal ids were not
/// adjacent (1, 01, 1) and 1/01/+1 counted as different ids.
#[test]
fn kaggle_open_bugs() {
    replay(&entries("kaggle_id", "open", false), |p| {
        checks::kaggle(&bytes(p));
    });
}

/// A feature file whose `data` is chunked and never written: its header claims
/// `rows × cols` values that the file does not hold (they read as zeros).
#[cfg(feature = "store")]
fn declared_only<T: hdf5::H5Type>(path: &Path, rows: usize, cols: usize) {
    let f = hdf5::File::create(path).unwrap();
    f.new_dataset::<T>()
        .chunk((1, cols.min(1024)))
        .shape((hdf5::Extent::resizable(rows), hdf5::Extent::fixed(cols)))
        .create("data")
        .unwrap();
}

#[cfg(feature = "store")]
fn small_file(path: &Path) {
    let f = hdf5::File::create(path).unwrap();
    f.new_dataset_builder()
        .with_data(&ndarray::array![[1f32, 2.0]])
        .create("data")
        .unwrap();
}

/// Hardened in src/features/load.rs: `load` sized the concatenated matrix from the
/// other files' headers before reading them, so a second file claiming 0 rows
/// of 2^40 features made it reserve a 1 × (2 + 2^40) f32 matrix (4 TiB) before
/// finding out that the file has no rows. (On this machine the zeroed pages are
/// mapped lazily and the old code still ended with the right error; under
/// strict overcommit it is an allocation failure, i.e. an abort.) Now such a
/// header is not trusted and the file is read and checked first.
#[cfg(feature = "store")]
#[test]
fn second_file_claiming_2_to_40_features_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a.h5"), t.path().join("b.h5"));
    small_file(&a);
    declared_only::<f32>(&b, 0, 1 << 40);
    let e = xfer::features::load(&[a.clone(), b.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no rows"), "{e}");
    // Same rows as the first file, but too wide to concatenate: refused too.
    declared_only::<f32>(&b, 1, 1 << 40);
    assert!(xfer::features::load(&[a, b]).is_err());
}

/// store::read allocated what the header claimed (1e6 × 1e6 f32 = 4 TB, from
/// a file of a few KB) before reading: the process aborted.
#[cfg(feature = "store")]
#[test]
fn header_claiming_4_tb_is_an_error_not_an_abort() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("bomb.h5");
    declared_only::<f32>(&p, 1_000_000, 1_000_000);
    assert!(std::fs::metadata(&p).unwrap().len() < 100_000);
    let e = xfer::features::store::read(&p).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
}

/// `--list` files: the fuzz seeds, and the lists that lost records silently
/// or took one file twice before the parser was made strict (an unclosed
/// quote, one file under two spellings) and a `\r` inside quotes.
#[test]
fn list_inputs() {
    replay(&entries("list", "", false), |p| {
        checks::list(&bytes(p));
    });
    let loads = |name: &str| checks::list(&bytes(&dir("list", "").join(name)));
    assert!(loads("labelled.csv") && loads("quoted.csv") && loads("cr-in-quotes.csv"));
    assert!(!loads("unclosed-quote.csv") && !loads("two-spellings.csv"));
}

/// Manifest `name`s (the fuzz seeds: path separators, `..`, empty, NUL):
/// loading and looking them up never panics.
#[test]
fn manifest_name_inputs() {
    replay(&entries("manifest_name", "", false), |p| {
        checks::manifest_name(&bytes(p), false);
    });
    assert!(checks::manifest_name(b"dinov2_s-1.0", true));
}

/// ONNX files given to `models add` (the fuzz seeds): the test models, a
/// NaN-giving graph (refused by the probe), a graph of input side 100000
/// (refused before its probe batch is allocated), a fixed batch size.
#[test]
fn model_graph_inputs() {
    let added: Vec<bool> = entries("model_graph", "", false)
        .iter()
        .map(|p| {
            catch_unwind(AssertUnwindSafe(|| checks::model_graph(&bytes(p))))
                .unwrap_or_else(|_| panic!("panicked on {}", p.display()))
        })
        .collect();
    let names: Vec<String> = entries("model_graph", "", false)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let by_name: std::collections::HashMap<&str, bool> =
        names.iter().map(String::as_str).zip(added).collect();
    assert!(by_name["tiny-crop32"]);
    assert!(!by_name["nan-crop8"]);
    assert!(!by_name["big-side"]);
}

/// Shard files as `merge` reads them (`shard_meta`, one folder of `.h5`
/// files per case, dumped by the fuzz target with `XFER_FUZZ_KEEP`): a whole
/// job, and shard, list, view and counter attributes set to fuzzed values.
/// Merging never panics, an error is one short line, and what merges holds
/// every row.
#[test]
fn shard_meta_inputs() {
    let t = tempfile::tempdir().unwrap();
    replay(&entries("shard_meta", "", true), |case| {
        let files: Vec<PathBuf> = entries(
            "shard_meta",
            case.file_name().unwrap().to_str().unwrap(),
            false,
        );
        checks::shard_files(&files, &t.path().join("merged.h5"));
    });
}
