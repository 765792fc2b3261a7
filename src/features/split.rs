//! The recorded test split of `xfer fit` (its `split.json`): which photos
//! are held out, by path relative to the data, so that every later run on
//! the same data holds out the same photos. A new split is drawn with
//! [`stratified_split`]; a recorded one is applied again to the data as it is
//! now ([`SplitRecord::reapply`]): photos added since join the training
//! split, training photos that are gone are left out, and a held-out photo
//! that is gone or relabelled makes the record no longer apply.
//!
//! Pure: reading and writing the record, and the words for the user, are the
//! caller's.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::features::load::stratified_split;

/// A labelled photo: (path relative to the data, class).
pub type Labelled = (String, String);

/// The record of a test split (`split.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub(crate) version: u32,
    /// The data (a canonical folder, or the list file).
    pub data: String,
    /// The test folder, when the test set is not a split of the data.
    pub test_dir: Option<String>,
    /// The held-out fraction of a split.
    pub test_fraction: Option<f64>,
    pub seed: u64,
    pub(crate) classes: Vec<String>,
    /// The held-out photos; empty with `test_dir`.
    pub test: Vec<Labelled>,
    /// The training photos when the split was last applied.
    pub train: Vec<Labelled>,
}

/// Why a split cannot be drawn or a recorded one no longer applies.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("the data has {n} class(es); a classifier needs at least two")]
    TooFewClasses { n: usize },
    #[error("class {class:?} has {count} photo(s); each class needs at least two (one is held out for the test)")]
    SmallClass { class: String, count: usize },
    #[error("the split was recorded for other data, another test fraction or another seed")]
    OtherSettings,
    #[error("{count} held-out photo(s) are gone or relabelled (first: {path}, class {class})")]
    TestGone {
        count: usize,
        path: String,
        class: String,
    },
    #[error("the classes changed since the split was recorded ({recorded:?}, now {now:?})")]
    ClassesChanged {
        recorded: Vec<String>,
        now: Vec<String>,
    },
    #[error("the test photos have the classes {test:?}, the data {data:?}")]
    TestClasses {
        test: Vec<String>,
        data: Vec<String>,
    },
}

/// What changed in the data since a split was recorded (it still applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitNote {
    /// Photos new since the split: they join the training split.
    NewPhotos { count: usize, first: String },
    /// Training photos of the record that are gone.
    TrainingGone { count: usize },
}

/// The distinct classes of `rows`, sorted.
pub(crate) fn classes_of(rows: &[Labelled]) -> Vec<String> {
    let mut c: Vec<String> = rows.iter().map(|(_, c)| c.clone()).collect();
    c.sort();
    c.dedup();
    c
}

impl SplitRecord {
    /// A new stratified split of `rows` (the photos of `data`): `fraction`
    /// of each class held out, drawn with `seed`.
    pub fn draw(
        data: &str,
        rows: &[Labelled],
        fraction: f64,
        seed: u64,
    ) -> Result<SplitRecord, SplitError> {
        let classes = classes_of(rows);
        let n_classes = classes.len();
        if n_classes < 2 {
            return Err(SplitError::TooFewClasses { n: n_classes });
        }
        let labels: Vec<usize> = rows
            .iter()
            .map(|(_, c)| classes.binary_search(c).expect("a class of the data"))
            .collect();
        let mut counts = vec![0usize; n_classes];
        for &l in &labels {
            counts[l] += 1;
        }
        if let Some(c) = (0..n_classes).find(|&c| counts[c] < 2) {
            return Err(SplitError::SmallClass {
                class: classes[c].clone(),
                count: counts[c],
            });
        }
        let (train_rows, test_rows) = stratified_split(&labels, n_classes, fraction, seed);
        let pick = |idx: &[usize]| idx.iter().map(|&r| rows[r].clone()).collect();
        Ok(SplitRecord {
            version: 1,
            data: data.to_owned(),
            test_dir: None,
            test_fraction: Some(fraction),
            seed,
            classes,
            test: pick(&test_rows),
            train: pick(&train_rows),
        })
    }

    /// The record of a test set from another folder (`test_dir`, whose
    /// photos are `test`): every photo of `data` (`rows`) trains. Both must
    /// have the same classes.
    pub fn with_test_folder(
        data: &str,
        test_dir: &str,
        seed: u64,
        rows: &[Labelled],
        test: &[Labelled],
    ) -> Result<SplitRecord, SplitError> {
        let classes = classes_of(rows);
        if classes_of(test) != classes {
            return Err(SplitError::TestClasses {
                test: classes_of(test),
                data: classes,
            });
        }
        Ok(SplitRecord {
            version: 1,
            data: data.to_owned(),
            test_dir: Some(test_dir.to_owned()),
            test_fraction: None,
            seed,
            classes,
            test: Vec::new(),
            train: rows.to_vec(),
        })
    }

    /// This record applied again to the photos of `data` as they are now
    /// (`rows`), asked with `fraction` and `seed`: the same held-out photos,
    /// every other photo training. Also says what changed since.
    pub fn reapply(
        &self,
        data: &str,
        fraction: f64,
        seed: u64,
        rows: &[Labelled],
    ) -> Result<(SplitRecord, Vec<SplitNote>), SplitError> {
        let asked = (data, None::<&str>, Some(fraction), seed);
        let had = (
            self.data.as_str(),
            self.test_dir.as_deref(),
            self.test_fraction,
            self.seed,
        );
        if asked != had {
            return Err(SplitError::OtherSettings);
        }
        let by_path: HashMap<&str, &str> =
            rows.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let gone: Vec<&Labelled> = self
            .test
            .iter()
            .filter(|(p, c)| by_path.get(p.as_str()) != Some(&c.as_str()))
            .collect();
        if let Some((path, class)) = gone.first() {
            return Err(SplitError::TestGone {
                count: gone.len(),
                path: path.clone(),
                class: class.clone(),
            });
        }
        let now = classes_of(rows);
        if now != self.classes {
            return Err(SplitError::ClassesChanged {
                recorded: self.classes.clone(),
                now,
            });
        }
        let notes = self.changes(rows, &by_path);
        let test: HashSet<&str> = self.test.iter().map(|(p, _)| p.as_str()).collect();
        let train = rows
            .iter()
            .filter(|(p, _)| !test.contains(p.as_str()))
            .cloned()
            .collect();
        Ok((
            SplitRecord {
                train,
                ..self.clone()
            },
            notes,
        ))
    }

    /// The photos new since this record, and its training photos now gone.
    fn changes(&self, rows: &[Labelled], by_path: &HashMap<&str, &str>) -> Vec<SplitNote> {
        let known: HashSet<&str> = self
            .test
            .iter()
            .chain(&self.train)
            .map(|(p, _)| p.as_str())
            .collect();
        let new: Vec<&str> = rows
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| !known.contains(p))
            .collect();
        let mut notes = Vec::new();
        if let Some(first) = new.first() {
            notes.push(SplitNote::NewPhotos {
                count: new.len(),
                first: (*first).to_owned(),
            });
        }
        let gone = self
            .train
            .iter()
            .filter(|(p, _)| !by_path.contains_key(p.as_str()))
            .count();
        if gone > 0 {
            notes.push(SplitNote::TrainingGone { count: gone });
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(per_class: usize, classes: &[&str]) -> Vec<Labelled> {
        let mut v = Vec::new();
        for c in classes {
            for i in 0..per_class {
                v.push((format!("{c}/{i}.jpg"), c.to_string()));
            }
        }
        v
    }

    #[test]
    fn a_drawn_split_is_stratified_seeded_and_checked() {
        let data = rows(10, &["a", "b"]);
        let r = SplitRecord::draw("/d", &data, 0.2, 7).unwrap();
        assert_eq!(r.classes, ["a", "b"]);
        assert_eq!(r.test.len(), 4);
        assert_eq!(r.test.iter().filter(|(_, c)| c == "a").count(), 2);
        assert_eq!(r.train.len() + r.test.len(), data.len());
        assert_eq!(SplitRecord::draw("/d", &data, 0.2, 7).unwrap(), r);
        assert_ne!(SplitRecord::draw("/d", &data, 0.2, 8).unwrap().test, r.test);
        assert_eq!(
            SplitRecord::draw("/d", &rows(3, &["a"]), 0.2, 0),
            Err(SplitError::TooFewClasses { n: 1 })
        );
        let mut small = rows(3, &["a"]);
        small.push(("b/0.jpg".into(), "b".into()));
        assert_eq!(
            SplitRecord::draw("/d", &small, 0.2, 0),
            Err(SplitError::SmallClass {
                class: "b".into(),
                count: 1
            })
        );
    }

    #[test]
    fn a_recorded_split_holds_out_the_same_photos_as_the_data_grows() {
        let data = rows(10, &["a", "b"]);
        let r = SplitRecord::draw("/d", &data, 0.2, 0).unwrap();
        let (same, notes) = r.reapply("/d", 0.2, 0, &data).unwrap();
        assert_eq!((same.clone(), notes), (r.clone(), vec![]));
        // Two photos more, one training photo gone.
        let mut grown = data.clone();
        grown.push(("a/new1.jpg".into(), "a".into()));
        grown.push(("b/new2.jpg".into(), "b".into()));
        let lost = r.train[0].clone();
        grown.retain(|x| *x != lost);
        let (again, notes) = r.reapply("/d", 0.2, 0, &grown).unwrap();
        assert_eq!(again.test, r.test);
        assert_eq!(again.train.len(), r.train.len() + 1);
        assert_eq!(
            notes,
            [
                SplitNote::NewPhotos {
                    count: 2,
                    first: "a/new1.jpg".into()
                },
                SplitNote::TrainingGone { count: 1 }
            ]
        );
        assert_eq!(
            r.reapply("/d", 0.25, 0, &data),
            Err(SplitError::OtherSettings)
        );
        assert_eq!(
            r.reapply("/e", 0.2, 0, &data),
            Err(SplitError::OtherSettings)
        );
    }

    #[test]
    fn a_recorded_split_no_longer_applies_when_test_photos_or_classes_change() {
        let data = rows(10, &["a", "b"]);
        let r = SplitRecord::draw("/d", &data, 0.2, 0).unwrap();
        let held = r.test[0].clone();
        let relabelled: Vec<Labelled> = data
            .iter()
            .map(|x| {
                if *x == held {
                    (x.0.clone(), "z".into())
                } else {
                    x.clone()
                }
            })
            .collect();
        assert_eq!(
            r.reapply("/d", 0.2, 0, &relabelled),
            Err(SplitError::TestGone {
                count: 1,
                path: held.0.clone(),
                class: held.1.clone()
            })
        );
        let mut more = data.clone();
        more.push(("c/0.jpg".into(), "c".into()));
        assert!(matches!(
            r.reapply("/d", 0.2, 0, &more),
            Err(SplitError::ClassesChanged { .. })
        ));
    }

    #[test]
    fn a_test_folder_needs_the_same_classes() {
        let data = rows(3, &["a", "b"]);
        let r = SplitRecord::with_test_folder("/d", "/t", 0, &data, &rows(1, &["a", "b"])).unwrap();
        assert_eq!((r.train.len(), r.test.len()), (6, 0));
        assert_eq!(r.test_dir.as_deref(), Some("/t"));
        assert_eq!(
            SplitRecord::with_test_folder("/d", "/t", 0, &data, &rows(1, &["a"])),
            Err(SplitError::TestClasses {
                test: vec!["a".into()],
                data: vec!["a".into(), "b".into()]
            })
        );
    }
}
