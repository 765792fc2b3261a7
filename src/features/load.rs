//! Loading the features of one split for training or evaluation: one or more
//! feature files (one per backbone), concatenated along the feature axis (the
//! tutorial's method 3), rows aligned by `path`.
//!
//! Files that disagree are refused with a message that says what differs
//! (different images, labels, class names). Files in the tutorial's layout
//! (`data` and `label` only, no `path`) are aligned by order after checking the
//! row counts and labels, with a warning. Every file is checked for rows and for
//! NaN/Inf (the error names the file and the row).
//!
//! Label checks ([`training_labels`], [`eval_labels`]) and the train/validation
//! split ([`stratified_split`]) are pure and do not need HDF5.

#[cfg(feature = "store")]
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[cfg(feature = "store")]
use ndarray::s;
use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2};

use crate::error::{Error, Result};
use crate::ship::bundle::BackboneRef;
use crate::train::head::Rng;

/// The features of one split, ready for a head.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// [n_samples, n_features]: the files' features side by side, in file order.
    pub data: Array2<f32>,
    /// [n_samples]; −1 where unknown.
    pub labels: Array1<i64>,
    /// Relative image paths (the first file's row order); `None` for tutorial files.
    pub paths: Option<Vec<String>>,
    /// Class names in label order, when the files record them.
    pub class_names: Option<Vec<String>>,
    /// The folder `paths` are relative to: the first file's `dataset_root`
    /// attribute (`None` for tutorial files). The images may have moved since.
    pub dataset_root: Option<PathBuf>,
    /// One per file, in concatenation order.
    pub backbones: Vec<BackboneRef>,
    /// Things the user should know (alignment by order, differing dataset roots…).
    pub warnings: Vec<String>,
    /// [n_samples, K, n_features]: augmented views (view 0 = `data`), from a
    /// single feature file extracted with `--views K`.
    pub views: Option<Array3<f32>>,
    /// How the views were drawn (the file's `augment` attribute, JSON).
    pub(crate) augment: Option<String>,
}

impl FeatureSet {
    pub fn n_samples(&self) -> usize {
        self.data.nrows()
    }

    pub fn n_features(&self) -> usize {
        self.data.ncols()
    }

    /// "resnet18 (512) + efficientnet_lite0 (1280)".
    pub fn describe_backbones(&self) -> String {
        self.backbones
            .iter()
            .map(|b| format!("{} ({})", b.name, b.n_features))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Label of row `r` for messages: its path if known, else its index.
    pub fn row_name(&self, r: usize) -> String {
        match &self.paths {
            Some(p) => format!("row {r} ({})", p[r]),
            None => format!("row {r}"),
        }
    }
}

#[cfg(feature = "store")]
fn store_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Store {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The first NaN or infinite value: `(row, column, value)`.
///
/// # Shapes
/// `data`: [n_samples, n_features]
pub(crate) fn first_non_finite(data: ArrayView2<f32>) -> Option<(usize, usize, f32)> {
    for (r, row) in data.rows().into_iter().enumerate() {
        if let Some(c) = row.iter().position(|v| !v.is_finite()) {
            return Some((r, c, row[c]));
        }
    }
    None
}

/// The backbone's name for a tutorial file without provenance: `train_feature_vgg19.hd5f` → `vgg19`.
pub(crate) fn name_from_file(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.split_once("_feature_") {
        Some((_, model)) if !model.is_empty() => model.to_string(),
        _ => stem,
    }
}

#[cfg(feature = "store")]
fn check_file(f: &crate::features::store::FeatureFile) -> Result<()> {
    if f.data.nrows() == 0 {
        return Err(store_err(
            &f.file,
            "has no rows; extract features from a folder that has images",
        ));
    }
    if f.data.ncols() == 0 {
        return Err(store_err(
            &f.file,
            "has 0 features per row; extract it again",
        ));
    }
    if let Some((r, c, v)) = first_non_finite(f.data.view()) {
        let which = match &f.paths {
            Some(p) => format!("row {r} ({})", p[r]),
            None => format!("row {r}"),
        };
        return Err(store_err(
            &f.file,
            format!("{which}, feature {c} is {v}; the backbone produced a non-finite value: check that image, or extract again"),
        ));
    }
    if let Some(paths) = &f.paths {
        let mut seen = HashMap::with_capacity(paths.len());
        for (r, p) in paths.iter().enumerate() {
            if let Some(first) = seen.insert(p.as_str(), r) {
                return Err(store_err(
                    &f.file,
                    format!("lists image {p} twice (rows {first} and {r}); extract it again"),
                ));
            }
        }
    }
    Ok(())
}

/// The shape of a file's `data` from its header, without reading the data.
#[cfg(feature = "store")]
fn peek_shape(path: &Path) -> Option<(usize, usize)> {
    let file = hdf5::File::open(path).ok()?;
    let shape = file.dataset("data").ok()?.shape();
    (shape.len() == 2).then(|| (shape[0], shape[1]))
}

/// A feature file's backbone name must be a model name (it is later looked up
/// in the zoo by name): one written from a hostile manifest is refused.
#[cfg(feature = "store")]
fn check_backbone_name(f: &crate::features::store::FeatureFile) -> Result<()> {
    match &f.provenance {
        Some(p) => crate::models::zoo::check_name(&p.backbone).map_err(|e| {
            store_err(
                &f.file,
                format!("records a backbone whose name is not valid ({e}); extract it again with a model of the zoo"),
            )
        }),
        None => Ok(()),
    }
}

#[cfg(feature = "store")]
fn backbone_ref(f: &crate::features::store::FeatureFile) -> BackboneRef {
    match &f.provenance {
        Some(p) => BackboneRef {
            name: p.backbone.clone(),
            model_sha256: p.model_sha256.clone(),
            preprocess: p.preprocess.clone(),
            n_features: f.data.ncols(),
            decode: p.decode.clone(),
            pooling: p.pooling.clone(),
            precision: p.precision.clone(),
            inference_precision: p.inference_precision.clone(),
        },
        None => BackboneRef {
            name: name_from_file(&f.file),
            model_sha256: String::new(),
            preprocess: String::new(),
            n_features: f.data.ncols(),
            decode: String::new(),
            pooling: String::new(),
            precision: String::new(),
            inference_precision: String::new(),
        },
    }
}

/// Loads one split from one or more feature files (one per backbone) and
/// concatenates them along the feature axis, rows in the first file's order.
///
/// Peak memory is the result plus one file.
#[cfg(feature = "store")]
pub fn load(files: &[PathBuf]) -> Result<FeatureSet> {
    use crate::features::store;
    if files.is_empty() {
        return Err(Error::Config("no feature file given".into()));
    }
    refuse_repeated(files)?;
    let first = store::read(&files[0])?;
    check_file(&first)?;
    check_backbone_name(&first)?;
    let n = first.data.nrows();
    let first_name = files[0].display().to_string();
    let class_names = first.provenance.as_ref().map(|p| p.class_names.clone());
    let dataset_root = first.provenance.as_ref().map(|p| p.dataset_root.clone());
    let root_dir = dataset_root
        .as_ref()
        .filter(|r| !r.is_empty())
        .map(PathBuf::from);
    if files.len() == 1 {
        return Ok(load_one(first, files, class_names, root_dir));
    }
    // Several backbones: size the result from the files' headers, then read the
    // others one at a time and copy them in.
    let mut warnings = Vec::new();
    let mut backbones = vec![backbone_ref(&first)];
    let widths = widths(&first, files)?;
    let mut data = allocate(n, &widths)?;
    data.slice_mut(s![.., 0..widths[0]]).assign(&first.data);
    let mut col = widths[0];
    let mut with_views: Vec<String> = Vec::new();
    if first.views.is_some() {
        with_views.push(first_name.clone());
    }
    let labels = first.labels;
    let paths = first.paths;
    drop(first.data);
    let index: Option<HashMap<&str, usize>> = paths
        .as_ref()
        .map(|p| p.iter().enumerate().map(|(r, s)| (s.as_str(), r)).collect());
    let reference = Reference {
        name: &first_name,
        n,
        labels: &labels,
        paths: paths.as_deref(),
        index: index.as_ref(),
        class_names: class_names.as_deref(),
        dataset_root: dataset_root.as_deref(),
    };
    for (k, file) in files.iter().enumerate().skip(1) {
        let f = store::read(file)?;
        check_file(&f)?;
        check_backbone_name(&f)?;
        let order = align(&reference, &f, file)?;
        check_agreement(&reference, &f, file, &order, &mut warnings)?;
        if f.views.is_some() {
            with_views.push(file.display().to_string());
        }
        copy_in(&mut data, col, widths[k], &f, &order, file)?;
        col += widths[k];
        backbones.push(backbone_ref(&f));
    }
    warnings.extend(concatenation_warnings(&backbones, files, &with_views));
    Ok(FeatureSet {
        data,
        labels,
        paths,
        class_names,
        dataset_root: root_dir,
        backbones,
        warnings,
        views: None,
        augment: None,
    })
}

/// Refuses a file given twice.
#[cfg(feature = "store")]
fn refuse_repeated(files: &[PathBuf]) -> Result<()> {
    for (i, a) in files.iter().enumerate() {
        if files[..i].contains(a) {
            return Err(store_err(
                a,
                "is given twice; pass each backbone's file once",
            ));
        }
    }
    Ok(())
}

/// Copies `f`'s rows, in `order`, into the concatenated matrix at column
/// `col`; refused when `f` is no longer `width` features wide.
#[cfg(feature = "store")]
fn copy_in(
    data: &mut Array2<f32>,
    col: usize,
    width: usize,
    f: &crate::features::store::FeatureFile,
    order: &[usize],
    file: &Path,
) -> Result<()> {
    let w = f.data.ncols();
    if w != width {
        return Err(store_err(
            file,
            "changed while it was being read; try again",
        ));
    }
    for (r, &o) in order.iter().enumerate() {
        data.slice_mut(s![r, col..col + w]).assign(&f.data.row(o));
    }
    Ok(())
}

/// The feature set of a single file, as it is (with its views).
#[cfg(feature = "store")]
fn load_one(
    first: crate::features::store::FeatureFile,
    files: &[PathBuf],
    class_names: Option<Vec<String>>,
    dataset_root: Option<PathBuf>,
) -> FeatureSet {
    let mut warnings = Vec::new();
    if first.paths.is_none() {
        warnings.push(format!(
            "{} has no `path` dataset (tutorial layout): its rows cannot be matched to images, and it records no backbone or class names",
            files[0].display()
        ));
    }
    let augment = first
        .views
        .as_ref()
        .and_then(|_| first.provenance.as_ref().map(|p| p.augment.clone()));
    FeatureSet {
        backbones: vec![backbone_ref(&first)],
        data: first.data,
        labels: first.labels,
        paths: first.paths,
        class_names,
        dataset_root,
        warnings,
        views: first.views,
        augment,
    }
}

/// Each file's features per row, the others' from their headers where these can be trusted.
///
/// A header is trusted only when it has the first file's row count: any
/// other file is read in full, which reports what is wrong with it (its
/// header alone could claim, say, 0 rows of 2^40 features).
#[cfg(feature = "store")]
fn widths(first: &crate::features::store::FeatureFile, files: &[PathBuf]) -> Result<Vec<usize>> {
    let n = first.data.nrows();
    let mut widths = vec![first.data.ncols()];
    for file in &files[1..] {
        widths.push(match peek_shape(file) {
            Some((rows, w)) if rows == n && w > 0 => w,
            _ => {
                let f = crate::features::store::read(file)?; // reports why the header is unreadable
                check_file(&f)?;
                f.data.ncols()
            }
        });
    }
    Ok(widths)
}

/// The zeroed [n, Σ widths] matrix, refused when it is too large to address or to allocate.
#[cfg(feature = "store")]
fn allocate(n: usize, widths: &[usize]) -> Result<Array2<f32>> {
    let total = widths
        .iter()
        .try_fold(0usize, |a, &w| a.checked_add(w))
        .filter(|&t| {
            t.checked_mul(n)
                .is_some_and(|len| len <= isize::MAX as usize / 4)
        });
    let Some(total) = total else {
        return Err(Error::Config(format!(
            "the feature files hold {widths:?} features per row for {n} rows: too many to load together"
        )));
    };
    let mut buf: Vec<f32> = Vec::new();
    if buf.try_reserve_exact(n * total).is_err() {
        return Err(Error::Config(format!(
            "{n} rows × {total} features ({:.1} GiB) do not fit in memory; pass fewer feature files",
            (n * total * 4) as f64 / (1u64 << 30) as f64
        )));
    }
    buf.resize(n * total, 0.0);
    // [n_samples, Σ n_features]
    Ok(Array2::from_shape_vec((n, total), buf).expect("n × total values"))
}

/// What the other files are checked against: the first file's name, rows and provenance.
#[cfg(feature = "store")]
struct Reference<'a> {
    name: &'a str,
    n: usize,
    labels: &'a Array1<i64>,
    paths: Option<&'a [String]>,
    /// Row of each path in the first file.
    index: Option<&'a HashMap<&'a str, usize>>,
    class_names: Option<&'a [String]>,
    dataset_root: Option<&'a str>,
}

/// Row alignment: order[r] = the row of `f` that holds image r of the first file.
#[cfg(feature = "store")]
fn align(
    first: &Reference,
    f: &crate::features::store::FeatureFile,
    file: &Path,
) -> Result<Vec<usize>> {
    let (n, first_name) = (first.n, first.name);
    match (first.index, &f.paths) {
        (Some(index), Some(fp)) => align_by_path(first, index, fp, f.data.nrows(), file),
        (None, None) => {
            if f.data.nrows() != n {
                return Err(store_err(
                    file,
                    format!(
                        "has {} rows but {first_name} has {n}; files without `path` (tutorial layout) must hold the same images in the same order",
                        f.data.nrows()
                    ),
                ));
            }
            Ok((0..n).collect())
        }
        _ => Err(store_err(
            file,
            format!("cannot be aligned with {first_name}: one has a `path` dataset and the other does not; extract both with xfer"),
        )),
    }
}

/// The row order of a file with paths, refused unless it holds the first file's images exactly.
#[cfg(feature = "store")]
fn align_by_path(
    first: &Reference,
    index: &HashMap<&str, usize>,
    fp: &[String],
    rows: usize,
    file: &Path,
) -> Result<Vec<usize>> {
    let (n, first_name) = (first.n, first.name);
    let mut order = vec![usize::MAX; n];
    let mut extra = Vec::new();
    for (r, p) in fp.iter().enumerate() {
        match index.get(p.as_str()) {
            Some(&i) => order[i] = r,
            None => extra.push(p.as_str()),
        }
    }
    let missing: Vec<&str> = order
        .iter()
        .enumerate()
        .filter(|(_, &o)| o == usize::MAX)
        .map(|(i, _)| first.paths.expect("paths")[i].as_str())
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(order);
    }
    let ex = |v: &[&str]| v.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let mut what = Vec::new();
    if !missing.is_empty() {
        what.push(format!(
            "{} image(s) of {first_name} are not in it (e.g. {})",
            missing.len(),
            ex(&missing)
        ));
    }
    if !extra.is_empty() {
        what.push(format!(
            "it has {} image(s) that {first_name} lacks (e.g. {})",
            extra.len(),
            ex(&extra)
        ));
    }
    Err(Error::FeatureFile {
        path: file.to_owned(),
        reason: format!(
            "holds different images than {first_name} ({n} rows vs {rows}): {}",
            what.join("; ")
        ),
        next: crate::error::Next::ExtractFromOneDataset,
    })
}

/// Refuses a file whose labels or class names differ from the first file's;
/// warns of a different dataset root and of alignment by order.
#[cfg(feature = "store")]
fn check_agreement(
    first: &Reference,
    f: &crate::features::store::FeatureFile,
    file: &Path,
    order: &[usize],
    warnings: &mut Vec<String>,
) -> Result<()> {
    let first_name = first.name;
    let this = file.display().to_string();
    // Labels must agree row by row.
    for (r, &o) in order.iter().enumerate() {
        if f.labels[o] != first.labels[r] {
            let which = match first.paths {
                Some(p) => format!("image {}", p[r]),
                None => format!("row {r}"),
            };
            return Err(store_err(
                file,
                format!(
                    "gives {which} label {}, but {first_name} gives it {}; the files were extracted from different datasets or class lists",
                    f.labels[o], first.labels[r]
                ),
            ));
        }
    }
    if let (Some(a), Some(p)) = (first.class_names, &f.provenance) {
        if a != p.class_names.as_slice() {
            return Err(store_err(
                file,
                format!(
                    "has classes {:?}, but {first_name} has {:?}; extract both from the same dataset",
                    p.class_names, a
                ),
            ));
        }
        if let Some(root) = first.dataset_root {
            if root != p.dataset_root {
                warnings.push(format!(
                    "{this} was extracted from {}, {first_name} from {root}; rows were matched by relative path",
                    p.dataset_root
                ));
            }
        }
    }
    if first.index.is_none() {
        warnings.push(format!(
            "{this} and {first_name} have no `path` dataset (tutorial layout): rows were aligned by order after checking counts and labels"
        ));
    }
    Ok(())
}

/// The warnings about several files together: augmented views left unused, a backbone given twice.
#[cfg(feature = "store")]
fn concatenation_warnings(
    backbones: &[BackboneRef],
    files: &[PathBuf],
    with_views: &[String],
) -> Vec<String> {
    let mut warnings = Vec::new();
    if !with_views.is_empty() {
        warnings.push(format!(
            "{} hold(s) augmented views, but views are used only when training on one feature file: the centre views (`data`) were used",
            with_views.join(", ")
        ));
    }
    let names: Vec<&str> = backbones.iter().map(|b| b.name.as_str()).collect();
    for (i, a) in names.iter().enumerate() {
        if names[..i].contains(a) && backbones[i].known() {
            warnings.push(format!(
                "backbone {a} appears twice among {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    warnings
}

/// Checks the labels of a training split and turns them into class indices.
/// Refuses unlabelled rows (−1), labels outside the class list, a class without
/// samples and a single class. Returns `(labels, class names)`; without
/// recorded names the classes are named by their index.
pub(crate) fn training_labels(
    labels: ArrayView1<i64>,
    class_names: Option<&[String]>,
    what: &str,
    row_name: &dyn Fn(usize) -> String,
) -> Result<(Vec<usize>, Vec<String>)> {
    let bad = |reason: String| Error::Labels {
        what: what.to_owned(),
        reason,
    };
    let unlabelled: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, &l)| l == -1)
        .map(|(r, _)| r)
        .collect();
    if !unlabelled.is_empty() {
        return Err(bad(format!(
            "{} of {} rows are unlabelled (label −1), e.g. {}; training needs labels: extract a labelled layout (ImageFolder or Kaggle's cat.0.jpg names), or keep unlabelled images for `xfer predict`",
            unlabelled.len(),
            labels.len(),
            row_name(unlabelled[0])
        )));
    }
    let n_classes = match class_names {
        Some(c) => c.len(),
        None => labels.iter().copied().max().unwrap_or(-1).max(-1) as usize + 1,
    };
    if let Some((r, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as usize >= n_classes)
    {
        return Err(bad(format!(
            "{} has label {l}, outside the {n_classes} classes the file records; extract it again",
            row_name(r)
        )));
    }
    let names: Vec<String> = match class_names {
        Some(c) => c.to_vec(),
        None => (0..n_classes).map(|k| k.to_string()).collect(),
    };
    let mut counts = vec![0usize; n_classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count();
    if present < 2 {
        return Err(bad(format!(
            "every row is of class {}; a classifier needs at least two classes with samples: add images of another class",
            names.get(labels[0] as usize).cloned().unwrap_or_default()
        )));
    }
    let empty: Vec<&str> = counts
        .iter()
        .zip(&names)
        .filter(|(&c, _)| c == 0)
        .map(|(_, n)| n.as_str())
        .collect();
    if !empty.is_empty() {
        return Err(bad(format!(
            "class(es) {} have no samples ({n_classes} classes recorded); add images of them, or extract from a folder without those class folders",
            empty.join(", ")
        )));
    }
    Ok((labels.iter().map(|&l| l as usize).collect(), names))
}

/// Checks the labels of a validation or test split against the training classes.
/// Refuses unlabelled rows and unknown labels; classes without samples are fine.
pub fn eval_labels(
    labels: ArrayView1<i64>,
    n_classes: usize,
    what: &str,
    row_name: &dyn Fn(usize) -> String,
) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::Labels {
        what: what.to_owned(),
        reason,
    };
    if labels.is_empty() {
        return Err(bad("has no rows".into()));
    }
    if let Some(r) = labels.iter().position(|&l| l == -1) {
        let count = labels.iter().filter(|&&l| l == -1).count();
        return Err(bad(format!(
            "{count} rows are unlabelled (label −1), e.g. {}; scoring needs labelled features",
            row_name(r)
        )));
    }
    if let Some((r, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as usize >= n_classes)
    {
        return Err(bad(format!(
            "{} has label {l}, but the head knows {n_classes} classes; extract from a dataset with the training classes",
            row_name(r)
        )));
    }
    Ok(labels.iter().map(|&l| l as usize).collect())
}

/// Checks that a validation/test split records the same class names as training.
pub fn check_class_names(train: &[String], other: Option<&[String]>, what: &str) -> Result<()> {
    if let Some(o) = other {
        if o != train {
            return Err(Error::Labels {
                what: what.to_owned(),
                reason: format!(
                    "records classes {o:?}, but the head was trained on {train:?}; extract both from datasets with the same class folders"
                ),
            });
        }
    }
    Ok(())
}

/// A seeded, stratified split of `0..labels.len()` into (train, validation):
/// `fraction` of each class goes to validation (at least one row of each class
/// that has two or more). Both lists are sorted.
pub(crate) fn stratified_split(
    labels: &[usize],
    n_classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed ^ 0x5eed_5eed_5eed_5eed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (r, &l) in labels.iter().enumerate() {
        by_class[l].push(r);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for rows in &mut by_class {
        rng.shuffle(rows);
        let mut k = (rows.len() as f64 * fraction).round() as usize;
        if k == 0 && rows.len() >= 2 && fraction > 0.0 {
            k = 1;
        }
        k = k.min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..k]);
        train.extend_from_slice(&rows[k..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Seeded stratified k-fold assignment (as scikit-learn's
/// `StratifiedKFold(shuffle=True)`): the fold (0..k) of each entry of
/// `labels`. Each class's rows are shuffled and dealt to the folds in turn,
/// each class starting where the previous one stopped, so fold sizes differ
/// by at most one and every class is spread as evenly as it can be.
pub(crate) fn stratified_folds(
    labels: &[usize],
    n_classes: usize,
    k: usize,
    seed: u64,
) -> Vec<usize> {
    let k = k.max(1);
    let mut rng = Rng::new(seed ^ 0xf01d_f01d_f01d_f01d);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (r, &l) in labels.iter().enumerate() {
        by_class[l].push(r);
    }
    let mut fold = vec![0usize; labels.len()];
    let mut next = 0usize;
    for rows in &mut by_class {
        rng.shuffle(rows);
        for &r in rows.iter() {
            fold[r] = next % k;
            next += 1;
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn tutorial_names() {
        assert_eq!(
            name_from_file(Path::new("/x/train_feature_vgg19.hd5f")),
            "vgg19"
        );
        assert_eq!(name_from_file(Path::new("feats.h5")), "feats");
    }

    #[test]
    fn non_finite_is_found() {
        let x = array![[1.0f32, 2.0], [3.0, f32::NAN]];
        assert_eq!(
            first_non_finite(x.view()).map(|(r, c, _)| (r, c)),
            Some((1, 1))
        );
        assert!(first_non_finite(array![[1.0f32]].view()).is_none());
    }

    #[test]
    fn label_checks() {
        let names: Vec<String> = vec!["cat".into(), "dog".into(), "fox".into()];
        let rn = |r: usize| format!("row {r}");
        let e = training_labels(array![0i64, 1, -1].view(), Some(&names), "train", &rn)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 of 3 rows are unlabelled"), "{e}");
        let e = training_labels(array![0i64, 1, 1].view(), Some(&names), "train", &rn)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fox have no samples"), "{e}");
        let e = training_labels(array![1i64, 1].view(), Some(&names), "train", &rn)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every row is of class dog"), "{e}");
        let (l, n) =
            training_labels(array![0i64, 2, 1].view(), Some(&names), "train", &rn).unwrap();
        assert_eq!(l, [0, 2, 1]);
        assert_eq!(n, names);
        let (_, n) = training_labels(array![0i64, 1].view(), None, "train", &rn).unwrap();
        assert_eq!(n, ["0", "1"]);
        assert!(eval_labels(array![0i64, 3].view(), 3, "val", &rn).is_err());
        assert!(eval_labels(array![0i64, -1].view(), 3, "val", &rn).is_err());
        assert_eq!(
            eval_labels(array![0i64, 0].view(), 3, "val", &rn).unwrap(),
            [0, 0]
        );
    }

    #[test]
    fn folds_are_stratified_balanced_and_seeded() {
        let labels: Vec<usize> = (0..103)
            .map(|i| usize::from(i % 4 == 0) + usize::from(i % 7 == 0))
            .collect();
        let f = stratified_folds(&labels, 3, 5, 1);
        for k in 0..5 {
            let size = f.iter().filter(|&&x| x == k).count();
            assert!((20..=21).contains(&size), "fold {k}: {size}");
            for c in 0..3 {
                let n_c = labels.iter().filter(|&&l| l == c).count();
                let in_fold = (0..103).filter(|&r| f[r] == k && labels[r] == c).count();
                assert!(
                    in_fold * 5 >= n_c.saturating_sub(4) && in_fold * 5 <= n_c + 5,
                    "class {c} fold {k}: {in_fold} of {n_c}"
                );
            }
        }
        assert_eq!(stratified_folds(&labels, 3, 5, 1), f);
        assert_ne!(stratified_folds(&labels, 3, 5, 2), f);
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let labels: Vec<usize> = (0..100).map(|i| (i % 10 == 0) as usize).collect();
        let (t, v) = stratified_split(&labels, 2, 0.2, 1);
        assert_eq!(t.len() + v.len(), 100);
        assert_eq!(v.iter().filter(|&&r| labels[r] == 1).count(), 2);
        assert_eq!(v.len(), 20);
        assert_eq!(stratified_split(&labels, 2, 0.2, 1), (t.clone(), v.clone()));
        assert_ne!(stratified_split(&labels, 2, 0.2, 2).1, v);
    }
}
