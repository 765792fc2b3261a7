//! Finding images and their labels in the supported layouts:
//! - **ImageFolder**: `root/<class>/**/<image>`, classes sorted as torchvision sorts them;
//! - **Kaggle flat**: `root/cat.0.jpg`, `root/dog.12.jpg` — the class is the file name's
//!   prefix; a flat folder whose names carry no class (`test1/1.jpg`) is unlabelled (−1).
//!
//! Paths are stored relative to the root (`/`-separated): they are the key that
//! aligns rows across backbones.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File extensions taken as images (torchvision's IMG_EXTENSIONS plus GIF), case-insensitive.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp", "gif",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    ImageFolder,
    KaggleFlat,
    Unlabelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Relative to the dataset root, `/`-separated.
    pub rel_path: String,
    /// −1 when unknown.
    pub label: i64,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Class names in label order.
    pub classes: Vec<String>,
    pub items: Vec<Item>,
    /// Files skipped because their extension is not an image's.
    pub ignored: Vec<String>,
}

impl Dataset {
    pub fn abs_path(&self, item: &Item) -> PathBuf {
        self.root.join(&item.rel_path)
    }
}

pub fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn dataset_err(root: &Path, reason: impl Into<String>) -> Error {
    Error::Dataset {
        root: root.to_owned(),
        reason: reason.into(),
    }
}

/// Sorted entries of a folder: (name, is_dir). Names that are not UTF-8 are errors.
fn entries(dir: &Path) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| dataset_err(dir, format!("file name {n:?} is not UTF-8; rename it")))?;
        if name.starts_with('.') {
            continue;
        }
        // follow symlinks, as torchvision does
        let is_dir = fs::metadata(e.path()).map(|m| m.is_dir()).unwrap_or(false);
        out.push((name, is_dir));
    }
    out.sort();
    Ok(out)
}

/// All files under `dir`, recursively, as paths relative to `root`, in the order
/// of torchvision's `sorted(os.walk(dir))` + `sorted(fnames)`.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let dir = root.join(rel);
    let list = entries(&dir)?;
    for (name, is_dir) in &list {
        if !is_dir {
            out.push(format!("{rel}/{name}"));
        }
    }
    for (name, is_dir) in &list {
        if *is_dir {
            walk(root, &format!("{rel}/{name}"), out)?;
        }
    }
    Ok(())
}

/// The class of a Kaggle-style name `cat.123.jpg` → `cat`.
fn kaggle_class(name: &str) -> Option<&str> {
    let mut parts = name.split('.');
    let class = parts.next()?;
    let id = parts.next()?;
    let _ext = parts.next()?;
    if parts.next().is_some() || class.is_empty() || id.is_empty() {
        return None;
    }
    if !class.chars().all(|c| c.is_ascii_alphabetic()) || !id.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(class)
}

/// Scans `root`, detecting the layout unless one is given.
pub fn scan(root: &Path, layout: Option<Layout>) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(dataset_err(root, "not a folder; pass --data DIR"));
    }
    let list = entries(root)?;
    let has_dirs = list.iter().any(|(_, d)| *d);
    let flat_images: Vec<&String> = list
        .iter()
        .filter(|(n, d)| !d && is_image_name(n))
        .map(|(n, _)| n)
        .collect();
    let layout = match layout {
        Some(l) => l,
        None if has_dirs && flat_images.is_empty() => Layout::ImageFolder,
        None if !flat_images.is_empty()
            && flat_images.iter().all(|n| kaggle_class(n).is_some()) =>
        {
            Layout::KaggleFlat
        }
        None if !flat_images.is_empty() => Layout::Unlabelled,
        None => {
            return Err(dataset_err(
                root,
                "no images found (expected root/<class>/*.jpg or root/*.jpg)",
            ))
        }
    };
    let mut ds = Dataset {
        root: root.to_owned(),
        layout,
        classes: Vec::new(),
        items: Vec::new(),
        ignored: Vec::new(),
    };
    match layout {
        Layout::ImageFolder => {
            ds.classes = list
                .iter()
                .filter(|(_, d)| *d)
                .map(|(n, _)| n.clone())
                .collect();
            for (label, class) in ds.classes.iter().enumerate() {
                let mut files = Vec::new();
                walk(root, class, &mut files)?;
                for f in files {
                    if is_image_name(&f) {
                        ds.items.push(Item {
                            rel_path: f,
                            label: label as i64,
                        });
                    } else {
                        ds.ignored.push(f);
                    }
                }
            }
            let empty: Vec<&String> = ds
                .classes
                .iter()
                .enumerate()
                .filter(|(i, _)| !ds.items.iter().any(|it| it.label == *i as i64))
                .map(|(_, c)| c)
                .collect();
            if !empty.is_empty() {
                return Err(dataset_err(
                    root,
                    format!("class folder(s) {empty:?} hold no images; remove them or add images"),
                ));
            }
        }
        Layout::KaggleFlat | Layout::Unlabelled => {
            let mut classes: Vec<String> = Vec::new();
            if layout == Layout::KaggleFlat {
                classes = flat_images
                    .iter()
                    .filter_map(|n| kaggle_class(n).map(str::to_owned))
                    .collect();
                classes.sort();
                classes.dedup();
            }
            for (name, is_dir) in &list {
                if *is_dir {
                    continue;
                }
                if !is_image_name(name) {
                    ds.ignored.push(name.clone());
                    continue;
                }
                let label = match kaggle_class(name) {
                    Some(c) if layout == Layout::KaggleFlat => classes
                        .iter()
                        .position(|k| k == c)
                        .expect("class collected")
                        as i64,
                    None if layout == Layout::KaggleFlat => {
                        return Err(dataset_err(
                            root,
                            format!(
                            "{name} does not follow <class>.<id>.<ext>; use --layout unlabelled"
                        ),
                        ))
                    }
                    _ => -1,
                };
                ds.items.push(Item {
                    rel_path: name.clone(),
                    label,
                });
            }
            ds.classes = classes;
        }
    }
    if ds.items.is_empty() {
        return Err(dataset_err(root, "no images found"));
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn image_folder_sorted_like_torchvision() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "dog/b.jpg",
            "dog/a.PNG",
            "cat/z/1.jpg",
            "cat/0.jpg",
            "cat/notes.txt",
            "Bird/x.webp",
        ] {
            touch(&t.path().join(f));
        }
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(ds.layout, Layout::ImageFolder);
        // Python: sorted(["dog", "cat", "Bird"]) == ['Bird', 'cat', 'dog']
        assert_eq!(ds.classes, ["Bird", "cat", "dog"]);
        let got: Vec<(&str, i64)> = ds
            .items
            .iter()
            .map(|i| (i.rel_path.as_str(), i.label))
            .collect();
        assert_eq!(
            got,
            [
                ("Bird/x.webp", 0),
                ("cat/0.jpg", 1),
                ("cat/z/1.jpg", 1),
                ("dog/a.PNG", 2),
                ("dog/b.jpg", 2)
            ]
        );
        assert_eq!(ds.ignored, ["cat/notes.txt"]);
    }

    #[test]
    fn kaggle_flat_and_unlabelled() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "train/dog.1.jpg",
            "train/cat.0.jpg",
            "train/cat.10.jpg",
            "test1/2.jpg",
            "test1/1.jpg",
        ] {
            touch(&t.path().join(f));
        }
        let tr = scan(&t.path().join("train"), None).unwrap();
        assert_eq!(tr.layout, Layout::KaggleFlat);
        assert_eq!(tr.classes, ["cat", "dog"]);
        let labels: Vec<i64> = tr.items.iter().map(|i| i.label).collect();
        assert_eq!(labels, [0, 0, 1]);
        let te = scan(&t.path().join("test1"), None).unwrap();
        assert_eq!(te.layout, Layout::Unlabelled);
        assert!(te.items.iter().all(|i| i.label == -1));
        assert!(te.classes.is_empty());
    }

    #[test]
    fn empty_folder_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let e = scan(t.path(), None).unwrap_err().to_string();
        assert!(e.contains("no images"), "{e}");
    }
}
