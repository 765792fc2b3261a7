//! The photos of a fit: the test split (recorded in OUT/split.json by
//! [`xfer::features::split`], so every later run holds out the same photos)
//! and the lists `xfer extract --list` reads (OUT/lists/train.csv, test.csv).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use xfer::features::split::{Labelled, SplitError, SplitNote, SplitRecord};
use xfer::images::dataset::{self, Dataset, Layout};
use xfer::util::atomic::write_bytes_if_changed;

use super::{s, FitArgs, DEFAULT_TEST_FRACTION};

/// The training and test photos, listed in OUT/lists.
pub(super) struct Lists {
    pub train: Dataset,
    pub test: Dataset,
}

/// DATA (a folder, or `--list`) scanned, with the name the split records it by.
pub(super) fn open_data(args: &FitArgs) -> Result<(Dataset, String)> {
    let (ds, data_id) = match (&args.data, &args.list) {
        (Some(d), _) => {
            if !d.is_dir() {
                bail!(
                    "{} is not a folder; pass a folder of class folders (DATA/<class>/*.jpg) or --list FILE",
                    d.display()
                );
            }
            let mut ds = dataset::scan(d, None)?;
            ds.root = std::fs::canonicalize(d).with_context(|| d.display().to_string())?;
            let id = s(&ds.root);
            (ds, id)
        }
        (None, Some(l)) => {
            let ds = dataset::from_list(l)?;
            let id = s(&std::fs::canonicalize(l).with_context(|| l.display().to_string())?);
            (ds, id)
        }
        (None, None) => bail!("pass DATA (a folder) or --list FILE"),
    };
    for line in dataset::describe_ignored(&ds.ignored, 5) {
        eprintln!("{line}");
    }
    Ok((ds, data_id))
}

/// Splits `ds` (or takes `--test`), writes the two lists and says what they hold.
pub(super) fn write_lists(
    args: &FitArgs,
    ds: &Dataset,
    data_id: &str,
    run: &Path,
) -> Result<Lists> {
    let split = resolve_split(args, ds, data_id, run)?;
    for n in &split.notes {
        eprintln!("note: {n}");
    }
    let train = write_list(&run.join("lists/train.csv"), &split.train)?;
    let test = write_list(&run.join("lists/test.csv"), &split.test)?;
    if train.classes != test.classes {
        bail!(
            "the training photos have the classes {:?}, the test photos {:?}; every class needs photos in both",
            train.classes,
            test.classes
        );
    }
    eprintln!(
        "fit: {} training and {} test photos, {} classes ({}); split recorded in {}",
        train.items.len(),
        test.items.len(),
        train.classes.len(),
        train.classes.join(", "),
        run.join("split.json").display()
    );
    Ok(Lists { train, test })
}

/// The training and test photos: (absolute path, class).
struct Split {
    train: Vec<(PathBuf, String)>,
    test: Vec<(PathBuf, String)>,
    notes: Vec<String>,
}

fn labelled(ds: &Dataset, what: &str) -> Result<Vec<Labelled>> {
    if ds.layout == Layout::Unlabelled || ds.classes.is_empty() {
        bail!(
            "{what} has no labels: xfer fit needs labelled photos, DATA/<class>/*.jpg (ImageFolder), DATA/<class>.<n>.jpg (Kaggle) or a --list with path,label records"
        );
    }
    Ok(ds
        .items
        .iter()
        .map(|i| {
            let class = usize::try_from(i.label)
                .ok()
                .and_then(|l| ds.classes.get(l))
                .cloned()
                .unwrap_or_default();
            (i.rel_path.clone(), class)
        })
        .collect())
}

/// (path relative to `root`, class) → (absolute path, class).
fn under(root: &Path, rows: &[Labelled]) -> Vec<(PathBuf, String)> {
    rows.iter()
        .map(|(p, c)| (root.join(p), c.clone()))
        .collect()
}

/// The split of this run: the one recorded in OUT/split.json applied to the
/// data as it is now, else a new one (recorded), or the `--test` folder.
fn resolve_split(args: &FitArgs, ds: &Dataset, data_id: &str, run: &Path) -> Result<Split> {
    let file = run.join("split.json");
    let now = labelled(ds, data_id)?;
    if let Some(dir) = &args.test {
        return test_folder(args, dir, ds, &now, data_id, &file);
    }
    let fraction = args.test_split.unwrap_or(DEFAULT_TEST_FRACTION);
    let words = |e, r: Option<&SplitRecord>| split_error(e, r, &file, data_id, fraction, args.seed);
    let (record, notes) = match read_record(&file)? {
        Some(r) => r
            .reapply(data_id, fraction, args.seed, &now)
            .map_err(|e| words(e, Some(&r)))?,
        None => (
            SplitRecord::draw(data_id, &now, fraction, args.seed).map_err(|e| words(e, None))?,
            Vec::new(),
        ),
    };
    write_json(&file, &record)?;
    Ok(Split {
        train: under(&ds.root, &record.train),
        test: under(&ds.root, &record.test),
        notes: notes.iter().map(|n| note_words(n, &file)).collect(),
    })
}

/// The split with the test photos of `--test DIR`.
fn test_folder(
    args: &FitArgs,
    dir: &Path,
    ds: &Dataset,
    now: &[Labelled],
    data_id: &str,
    file: &Path,
) -> Result<Split> {
    let mut tds = dataset::scan(dir, None)?;
    tds.root = std::fs::canonicalize(dir).with_context(|| dir.display().to_string())?;
    let test = labelled(&tds, &dir.display().to_string())?;
    let record = SplitRecord::with_test_folder(data_id, &s(&tds.root), args.seed, now, &test)
        .map_err(|e| match e {
            SplitError::TestClasses { test, data } => anyhow!(
                "the test folder {} has the classes {:?}, DATA has {:?}; give a test folder with the same class folders",
                dir.display(),
                test,
                data
            ),
            e => e.into(),
        })?;
    write_json(file, &record)?;
    Ok(Split {
        train: under(&ds.root, now),
        test: under(&tds.root, &test),
        notes: Vec::new(),
    })
}

/// OUT/split.json, `None` when there is none yet.
fn read_record(file: &Path) -> Result<Option<SplitRecord>> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; restore it, or pass another --out to split again",
                file.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// A split that cannot be made (`r`: the record that no longer applies), in
/// the words of the command line.
fn split_error(
    e: SplitError,
    r: Option<&SplitRecord>,
    file: &Path,
    data_id: &str,
    fraction: f64,
    seed: u64,
) -> anyhow::Error {
    let file = file.display();
    match (e, r) {
        (SplitError::TooFewClasses { n }, _) => {
            anyhow!("{data_id} has {n} class(es); a classifier needs at least two")
        }
        (SplitError::SmallClass { class, count }, _) => anyhow!(
            "class {class:?} has {count} photo(s); each class needs at least two (one is held out for the test). Add photos, or pass a test folder with --test"
        ),
        (SplitError::OtherSettings, Some(r)) => anyhow!(
            "{file} records the split of {} (test fraction {}, seed {}{}); this command asks for {data_id} (test fraction {fraction}, seed {seed}). Run it with the same data and settings, or pass another --out for a new split",
            r.data,
            r.test_fraction.map_or("none".into(), |f| f.to_string()),
            r.seed,
            r.test_dir.as_deref().map(|d| format!(", test folder {d}")).unwrap_or_default(),
        ),
        (SplitError::TestGone { count, path, class }, _) => anyhow!(
            "the data changed since the test split in {file} was made: {count} held-out photo(s) are gone or relabelled (first: {path}, class {class}), so the recorded split no longer applies. Restore them, or pass another --out to split again"
        ),
        (SplitError::ClassesChanged { recorded, now }, _) => anyhow!(
            "the classes changed since the test split in {file} was made ({recorded:?}, now {now:?}); pass another --out to split again"
        ),
        (e, _) => e.into(),
    }
}

/// What changed since the split was recorded, for the user.
fn note_words(n: &SplitNote, file: &Path) -> String {
    match n {
        SplitNote::NewPhotos { count, first } => format!(
            "{count} photo(s) are new since the split was recorded (first: {first}); they join the training split, the test split stays as recorded in {}",
            file.display()
        ),
        SplitNote::TrainingGone { count } => format!(
            "{count} training photo(s) of the recorded split are gone; training goes on without them"
        ),
    }
}

/// Writes `value` as pretty JSON (only when it changed).
fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_bytes_if_changed(path, text.as_bytes())?;
    Ok(())
}

/// Writes the list `path,label` of `photos` (only when it changed, so that
/// an unchanged list keeps its bytes) and reads it back as `xfer extract
/// --list` will.
fn write_list(path: &Path, photos: &[(PathBuf, String)]) -> Result<Dataset> {
    let mut records = Vec::with_capacity(photos.len());
    for (p, c) in photos {
        let p = p
            .to_str()
            .ok_or_else(|| anyhow!("{} is not a UTF-8 path; rename it", p.display()))?;
        records.push([p, c.as_str()]);
    }
    let text = xfer::images::list::csv_text(&["path", "label"], records);
    write_bytes_if_changed(path, text.as_bytes())?;
    Ok(dataset::from_list(path)?)
}
