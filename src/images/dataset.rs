//! Finding images and their labels in the supported layouts:
//! - **ImageFolder**: `root/<class>/**/<image>`, classes sorted as torchvision sorts them;
//! - **Kaggle flat**: `root/cat.0.jpg`, `root/dog.12.jpg` — the class is the file name's
//!   prefix; a flat folder whose names carry no class (`test1/1.jpg`) is unlabelled (−1);
//! - **a list** ([`from_list`]): a file naming the images (`path[,label]`), for
//!   datasets that are not laid out as folders.
//!
//! Paths are stored relative to the root (`/`-separated): they are the key that
//! aligns rows across backbones.
//!
//! # The walker
//! One walker serves datasets ([`scan`]) and prediction inputs ([`collect_inputs`]).
//! Nothing it leaves out is dropped silently: every entry not taken goes to an
//! `ignored` list with a reason ([`Ignored`]). Its rules:
//! - order: torchvision's `sorted(os.walk(dir, followlinks=True))` then `sorted(fnames)`:
//!   folders in the (byte = code point) order of their full paths, the files of each
//!   folder sorted by name;
//! - symlinks are followed, as torchvision does, but each *real* folder (device, inode)
//!   is walked once: a symlink back up the tree (a loop) or a second link to a folder
//!   already walked is skipped and reported. Two symlinks to the same *file* are two
//!   paths and both are kept (torchvision keeps both too);
//! - hidden entries (names starting with `.`) are skipped and reported (a hidden
//!   folder as one entry);
//! - names that are not UTF-8 are skipped and reported (shown lossily): paths are
//!   stored as UTF-8 text in the feature files. Any other name (commas, quotes,
//!   newlines, 255 bytes) is taken as it is;
//! - entries that are neither files nor folders (FIFOs, sockets, devices) and broken
//!   symlinks are skipped and reported; a folder that cannot be listed is an error.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Next, Result};

pub use crate::images::list::from_list;
#[cfg(feature = "store")]
pub(crate) use crate::images::list::{missing_files, ListFormat};

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
    /// The images named by a list file ([`from_list`]), labelled or not.
    List,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Relative to the dataset root, `/`-separated.
    pub rel_path: String,
    /// −1 when unknown.
    pub label: i64,
}

/// Why an entry was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IgnoredKind {
    /// A file whose extension is not an image's.
    NotImage,
    /// A file at the top of an ImageFolder dataset (torchvision ignores those).
    RootFile,
    /// A folder at the top of a flat (Kaggle or unlabelled) dataset.
    FolderInFlatLayout,
    /// A name starting with `.`.
    Hidden,
    /// A name that is not UTF-8.
    NonUtf8Name,
    /// A symlink to a folder already walked, or a loop.
    SymlinkLoop,
    /// A broken symlink, a FIFO, a socket, a device, or an entry that cannot be examined.
    NotAFile,
}

impl IgnoredKind {
    /// A short plural description, for summaries: "files that are not images by extension".
    pub(crate) fn describe(self) -> &'static str {
        match self {
            IgnoredKind::NotImage => "files that are not images by extension",
            IgnoredKind::RootFile => "files at the top of an ImageFolder dataset",
            IgnoredKind::FolderInFlatLayout => "folders in a flat dataset",
            IgnoredKind::Hidden => "hidden entries",
            IgnoredKind::NonUtf8Name => "names that are not UTF-8",
            IgnoredKind::SymlinkLoop => "symlinks to folders already walked (loops)",
            IgnoredKind::NotAFile => "entries that are neither files nor folders",
        }
    }
}

/// An entry the walker did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// For a dataset, relative to its root; for prediction inputs, as found (the
    /// folder given joined with the names below it). Exact: it may not be UTF-8.
    pub path: PathBuf,
    pub kind: IgnoredKind,
    /// Why, and what to do to take it: ends with the next step where there is one.
    pub reason: String,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.path.to_string_lossy(), self.reason)
    }
}

/// A summary of ignored entries for the terminal: one line per kind, with a count
/// and up to `examples` of them (path and reason), e.g.
/// `ignoring 2 files that are not images by extension: "cat/notes.txt", "dog/a.csv"`.
pub fn describe_ignored(ignored: &[Ignored], examples: usize) -> Vec<String> {
    let mut kinds: Vec<IgnoredKind> = ignored.iter().map(|i| i.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
        .into_iter()
        .map(|kind| {
            let of: Vec<&Ignored> = ignored.iter().filter(|i| i.kind == kind).collect();
            let shown: Vec<String> = of.iter().take(examples).map(|i| i.to_string()).collect();
            let more = if of.len() > examples {
                format!(" (and {} more)", of.len() - examples)
            } else {
                String::new()
            };
            if shown.is_empty() {
                format!("ignoring {} {}", of.len(), kind.describe())
            } else {
                format!(
                    "ignoring {} {}: {}{more}",
                    of.len(),
                    kind.describe(),
                    shown.join("; ")
                )
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Class names in label order.
    pub classes: Vec<String>,
    pub items: Vec<Item>,
    /// Entries not taken, each with its reason (paths relative to the root).
    pub ignored: Vec<Ignored>,
}

impl Dataset {
    pub fn abs_path(&self, item: &Item) -> PathBuf {
        self.root.join(&item.rel_path)
    }
}

pub(crate) fn is_image_name(name: &str) -> bool {
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

/// A dataset that cannot be read as given, and what would get past it.
fn unusable(root: &Path, reason: impl Into<String>, next: Next) -> Error {
    Error::DatasetUnusable {
        root: root.to_owned(),
        reason: reason.into(),
        next,
    }
}

/// A real folder: (device, inode).
type DirId = (u64, u64);

fn dir_id(m: &fs::Metadata) -> DirId {
    (m.dev(), m.ino())
}

/// The entries of one folder that the walker takes, sorted by name.
struct Listing {
    /// Regular files (after following symlinks), images or not.
    files: Vec<String>,
    /// Folders (after following symlinks), with their real identity.
    dirs: Vec<(String, DirId)>,
}

/// Walks folders, remembering the real folders seen and what it left out.
struct Walker {
    /// Where paths are relative to ("" for prediction inputs).
    base: PathBuf,
    /// Real folders walked (or about to be), with the path they were first found at.
    visited: HashMap<DirId, PathBuf>,
    /// The folders above the one being walked (canonical paths): a link to one
    /// of them is a loop, since it contains the walk itself.
    ancestors: HashMap<DirId, PathBuf>,
    ignored: Vec<Ignored>,
    /// Turns a folder's listing failure into the caller's error.
    error: fn(&Path, String) -> Error,
}

impl Walker {
    fn new(base: &Path, error: fn(&Path, String) -> Error) -> Walker {
        Walker {
            base: base.to_owned(),
            visited: HashMap::new(),
            ancestors: HashMap::new(),
            ignored: Vec::new(),
            error,
        }
    }

    fn ignore(&mut self, path: PathBuf, kind: IgnoredKind, reason: impl Into<String>) {
        self.ignored.push(Ignored {
            path,
            kind,
            reason: reason.into(),
        });
    }

    /// Lists the folder `rel` (relative to `base`): hidden entries, names that are
    /// not UTF-8 and entries that are neither files nor folders go to `ignored`.
    fn list(&mut self, rel: &Path) -> Result<Listing> {
        let dir = self.base.join(rel);
        let fail = |e: std::io::Error| {
            (self.error)(
                &dir,
                format!(
                    "cannot list the folder: {e}; fix its permissions or move it out of the way"
                ),
            )
        };
        let mut listing = Listing {
            files: Vec::new(),
            dirs: Vec::new(),
        };
        let mut pending = Vec::new();
        for e in fs::read_dir(&dir).map_err(fail)? {
            let e = e.map_err(fail)?;
            let os_name = e.file_name();
            let path = rel.join(&os_name);
            if os_name.as_bytes().starts_with(b".") {
                let what = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    "hidden folder (name starts with '.'): not searched"
                } else {
                    "hidden file (name starts with '.')"
                };
                pending.push((
                    path,
                    IgnoredKind::Hidden,
                    format!("{what}; rename it to use it"),
                ));
                continue;
            }
            let Some(name) = os_name.to_str().map(str::to_owned) else {
                let what = if fs::metadata(e.path()).is_ok_and(|m| m.is_dir()) {
                    "folder name is not UTF-8 (shown lossily), so nothing in it was searched"
                } else {
                    "file name is not UTF-8 (shown lossily)"
                };
                pending.push((
                    path,
                    IgnoredKind::NonUtf8Name,
                    format!("{what}; xfer stores paths as UTF-8 text: rename it to use it"),
                ));
                continue;
            };
            // Follow symlinks, as torchvision does.
            match fs::metadata(e.path()) {
                Ok(m) if m.is_dir() => listing.dirs.push((name, dir_id(&m))),
                Ok(m) if m.is_file() => listing.files.push(name),
                Ok(_) => pending.push((
                    path,
                    IgnoredKind::NotAFile,
                    "neither a file nor a folder (a FIFO, socket or device); move it out of the way"
                        .into(),
                )),
                Err(err) => {
                    let broken = e.file_type().is_ok_and(|t| t.is_symlink());
                    let what = if broken {
                        format!("broken symlink ({err}); fix its target or remove it")
                    } else {
                        format!("cannot be examined ({err}); fix its permissions")
                    };
                    pending.push((path, IgnoredKind::NotAFile, what));
                }
            }
        }
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, k, r) in pending {
            self.ignore(p, k, r);
        }
        // Python sorts str by code point; UTF-8 bytes sort the same way.
        listing.files.sort();
        listing.dirs.sort();
        Ok(listing)
    }

    /// Marks a real folder as walked (found at `rel`). Returns the ignored entry's
    /// reason when it already was.
    fn enter(&mut self, id: DirId, rel: &Path) -> Option<String> {
        if let Some(first) = self.visited.get(&id) {
            let shown = |p: &Path| {
                if p.as_os_str().is_empty() {
                    "the top folder".to_string()
                } else {
                    format!("{:?}", p.to_string_lossy())
                }
            };
            return Some(if rel.starts_with(first) {
                format!(
                    "symlink loop: it leads back to {}; skipped so no image is taken twice (remove the link)",
                    shown(first)
                )
            } else {
                format!(
                    "links to {}, a folder walked already; skipped so no image is taken twice (remove the link, or make it a copy)",
                    shown(first)
                )
            });
        }
        if let Some(above) = self.ancestors.get(&id) {
            return Some(format!(
                "symlink loop: it leads to {:?}, a folder that contains this one; \
                 skipped so no image is taken twice (remove the link)",
                above.to_string_lossy()
            ));
        }
        self.visited.insert(id, rel.to_owned());
        None
    }

    /// Makes the folders above `dir` (the top of a walk) its `ancestors`.
    fn set_ancestors(&mut self, dir: &Path) {
        self.ancestors.clear();
        let Ok(canonical) = fs::canonicalize(dir) else {
            return;
        };
        for a in canonical.ancestors().skip(1) {
            if let Ok(m) = fs::metadata(a) {
                self.ancestors.insert(dir_id(&m), a.to_owned());
            }
        }
    }

    /// All image files under `rel` (already entered), recursively, in torchvision's
    /// `sorted(os.walk(...))` order; other files go to `ignored`.
    fn images(&mut self, rel: &Path) -> Result<Vec<PathBuf>> {
        let mut groups: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
        self.collect(rel, &mut groups)?;
        // os.walk's dirpaths, compared as strings: "a-b" < "a/x" since '-' < '/'.
        groups.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
        Ok(groups.into_iter().flat_map(|(_, f)| f).collect())
    }

    fn collect(&mut self, rel: &Path, groups: &mut Vec<(PathBuf, Vec<PathBuf>)>) -> Result<()> {
        let listing = self.list(rel)?;
        let mut images = Vec::new();
        for name in listing.files {
            let p = rel.join(&name);
            if is_image_name(&name) {
                images.push(p);
            } else {
                self.ignore(
                    p,
                    IgnoredKind::NotImage,
                    format!(
                        "not an image by its extension (taken: {})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                );
            }
        }
        groups.push((rel.to_owned(), images));
        for (name, id) in listing.dirs {
            let p = rel.join(&name);
            match self.enter(id, &p) {
                Some(reason) => self.ignore(p, IgnoredKind::SymlinkLoop, reason),
                None => self.collect(&p, groups)?,
            }
        }
        Ok(())
    }
}

/// `rel` as the `/`-separated string stored in feature files (every component
/// was checked to be UTF-8 by the walker).
fn rel_string(rel: &Path) -> String {
    rel.to_str()
        .expect("the walker takes UTF-8 names only")
        .to_owned()
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

const ROOT_FILE_REASON: &str = "root-level file; ImageFolder takes images from class folders only \
     — pass --layout kaggle-flat/unlabelled to use them";

/// Scans `root`, detecting the layout unless one is given.
///
/// Detection: when any folder at the top holds images (at any depth), the layout is
/// ImageFolder and the files at the top are ignored with a reason (as torchvision's
/// ImageFolder ignores them); otherwise the images at the top make a Kaggle flat
/// dataset when every name is `<class>.<id>.<ext>`, else an unlabelled one. A layout
/// is never switched silently: what a layout leaves out is in [`Dataset::ignored`].
pub fn scan(root: &Path, layout: Option<Layout>) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(unusable(root, "not a folder", Next::GiveFolder));
    }
    if layout == Some(Layout::List) {
        return Err(unusable(root, "a folder is not a list", Next::GiveListFile));
    }
    let mut w = Walker::new(root, dataset_err);
    let root_meta = fs::metadata(root).map_err(|e| Error::io(root, e))?;
    w.enter(dir_id(&root_meta), Path::new(""));
    w.set_ancestors(root);
    let top = w.list(Path::new(""))?;
    let ignored_at_top = w.ignored.len();

    let classes = if matches!(layout, Some(Layout::KaggleFlat | Layout::Unlabelled)) {
        Vec::new()
    } else {
        class_folders(&mut w, root, &top)?
    };
    let flat_images: Vec<&String> = top.files.iter().filter(|n| is_image_name(n)).collect();
    let layout = match layout {
        Some(l) => l,
        None => detect_layout(root, &classes, &flat_images)?,
    };
    let (classes, items) = match layout {
        Layout::ImageFolder => image_folder_items(&mut w, root, &top, classes)?,
        Layout::List => unreachable!("refused above"),
        Layout::KaggleFlat | Layout::Unlabelled => {
            // The folders (walked to detect the layout) are reported as wholes.
            w.ignored.truncate(ignored_at_top);
            flat_items(&mut w, root, &top, layout, &flat_images)?
        }
    };
    if items.is_empty() {
        return Err(unusable(
            root,
            "no images found",
            Next::GiveImageFolderOrLayout,
        ));
    }
    Ok(Dataset {
        root: root.to_owned(),
        layout,
        classes,
        items,
        ignored: w.ignored,
    })
}

/// Class folders: each top folder with its images. All of them are marked
/// first, so that a link from one class into another is skipped, not
/// followed (which would give the other class's images this class's label).
fn class_folders(
    w: &mut Walker,
    root: &Path,
    top: &Listing,
) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut class_dirs: Vec<&String> = Vec::new();
    for (name, id) in &top.dirs {
        match w.visited.get(id) {
            Some(first) if !first.as_os_str().is_empty() => {
                return Err(dataset_err(
                    root,
                    format!(
                        "class folders {:?} and {name:?} are the same folder (a symlink); \
                         remove one of them",
                        first.to_string_lossy()
                    ),
                ))
            }
            _ => {}
        }
        // A link to the top folder or above it: a loop, not a class.
        match w.enter(*id, Path::new(name)) {
            Some(reason) => w.ignore(PathBuf::from(name), IgnoredKind::SymlinkLoop, reason),
            None => class_dirs.push(name),
        }
    }
    let mut classes = Vec::new();
    for name in class_dirs {
        let images = w.images(Path::new(name))?;
        classes.push((name.clone(), images));
    }
    Ok(classes)
}

/// The layout a folder's contents suggest: ImageFolder when a class folder
/// holds images, else Kaggle flat when every top image is `<class>.<id>.<ext>`,
/// else unlabelled; refused without images.
fn detect_layout(
    root: &Path,
    classes: &[(String, Vec<PathBuf>)],
    flat_images: &[&String],
) -> Result<Layout> {
    let dirs_hold_images = classes.iter().any(|(_, imgs)| !imgs.is_empty());
    if dirs_hold_images {
        Ok(Layout::ImageFolder)
    } else if !flat_images.is_empty() && flat_images.iter().all(|n| kaggle_class(n).is_some()) {
        Ok(Layout::KaggleFlat)
    } else if !flat_images.is_empty() {
        Ok(Layout::Unlabelled)
    } else {
        Err(dataset_err(
            root,
            "no images found (expected root/<class>/*.jpg or root/*.jpg); \
             pass the folder that holds the images",
        ))
    }
}

/// An ImageFolder's class names and items, label = the class folder's index;
/// the top files are ignored, an empty class folder refused.
fn image_folder_items(
    w: &mut Walker,
    root: &Path,
    top: &Listing,
    classes: Vec<(String, Vec<PathBuf>)>,
) -> Result<(Vec<String>, Vec<Item>)> {
    for name in &top.files {
        if is_image_name(name) {
            w.ignore(PathBuf::from(name), IgnoredKind::RootFile, ROOT_FILE_REASON);
        } else {
            w.ignore(
                PathBuf::from(name),
                IgnoredKind::NotImage,
                "root-level file, and not an image by its extension",
            );
        }
    }
    let empty: Vec<&String> = classes
        .iter()
        .filter(|(_, imgs)| imgs.is_empty())
        .map(|(c, _)| c)
        .collect();
    if !empty.is_empty() {
        return Err(dataset_err(
            root,
            format!("class folder(s) {empty:?} hold no images; remove them or add images"),
        ));
    }
    let (mut names, mut items) = (Vec::new(), Vec::new());
    for (label, (class, images)) in classes.into_iter().enumerate() {
        names.push(class);
        for p in images {
            items.push(Item {
                rel_path: rel_string(&p),
                label: label as i64,
            });
        }
    }
    Ok((names, items))
}

/// A flat layout's class names and items: the images at the top, labelled by
/// their Kaggle class (or −1, unlabelled); the folders and other files ignored.
fn flat_items(
    w: &mut Walker,
    root: &Path,
    top: &Listing,
    layout: Layout,
    flat_images: &[&String],
) -> Result<(Vec<String>, Vec<Item>)> {
    let flag = if layout == Layout::KaggleFlat {
        "kaggle-flat"
    } else {
        "unlabelled"
    };
    for (name, _) in &top.dirs {
        w.ignore(
            PathBuf::from(name),
            IgnoredKind::FolderInFlatLayout,
            format!(
                "folder; --layout {flag} takes the images at the top only \
                 — pass --layout image-folder to use class folders"
            ),
        );
    }
    let mut classes: Vec<String> = Vec::new();
    if layout == Layout::KaggleFlat {
        classes = flat_images
            .iter()
            .filter_map(|n| kaggle_class(n).map(str::to_owned))
            .collect();
        classes.sort();
        classes.dedup();
    }
    let mut items = Vec::new();
    for name in &top.files {
        if !is_image_name(name) {
            w.ignore(
                PathBuf::from(name),
                IgnoredKind::NotImage,
                format!(
                    "not an image by its extension (taken: {})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            );
            continue;
        }
        let label = match kaggle_class(name) {
            Some(c) if layout == Layout::KaggleFlat => {
                classes.iter().position(|k| k == c).unwrap_or_default() as i64
            }
            None if layout == Layout::KaggleFlat => {
                return Err(unusable(
                    root,
                    format!("{name} does not follow <class>.<id>.<ext>"),
                    Next::ReadUnlabelled,
                ))
            }
            _ => -1,
        };
        items.push(Item {
            rel_path: name.clone(),
            label,
        });
    }
    Ok((classes, items))
}

/// Images found in the paths given for prediction.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Files named explicitly, as given (whatever their extension), then the
    /// images found in each folder given, in the dataset walker's order.
    pub images: Vec<PathBuf>,
    /// Entries inside the folders that were not taken, each with its reason.
    pub ignored: Vec<Ignored>,
}

fn input_err(path: &Path, reason: String) -> Error {
    Error::Input {
        path: path.to_owned(),
        reason,
    }
}

/// The images to predict: each path in `paths`, in order; a file is taken as given
/// (whatever its extension or name); a folder is searched recursively by the same
/// walker as datasets (same order, hidden entries, non-images, names that are not
/// UTF-8 and symlink loops reported in `ignored`). A real folder is walked once,
/// even when given twice or reached by a link from another folder given.
/// A path that does not exist is an error naming it.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Inputs> {
    let mut w = Walker::new(Path::new(""), input_err);
    let mut images = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| {
            input_err(
                p,
                format!("{e}; pass image files or folders of images that exist"),
            )
        })?;
        if meta.is_dir() {
            if w.visited.contains_key(&dir_id(&meta)) {
                w.ignore(
                    p.clone(),
                    IgnoredKind::SymlinkLoop,
                    "a folder given twice, or already walked as part of another folder given; \
                     skipped so no image is taken twice",
                );
                continue;
            }
            w.set_ancestors(p);
            w.enter(dir_id(&meta), p);
            images.extend(w.images(p)?);
        } else {
            images.push(p.clone());
        }
    }
    Ok(Inputs {
        images,
        ignored: w.ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    fn rels(ds: &Dataset) -> Vec<(&str, i64)> {
        ds.items
            .iter()
            .map(|i| (i.rel_path.as_str(), i.label))
            .collect()
    }

    fn ignored_of(ds: &Dataset, kind: IgnoredKind) -> Vec<String> {
        ds.ignored
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.path.to_string_lossy().into_owned())
            .collect()
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
        assert_eq!(
            rels(&ds),
            [
                ("Bird/x.webp", 0),
                ("cat/0.jpg", 1),
                ("cat/z/1.jpg", 1),
                ("dog/a.PNG", 2),
                ("dog/b.jpg", 2)
            ]
        );
        assert_eq!(ds.ignored.len(), 1);
        assert_eq!(ds.ignored[0].path, Path::new("cat/notes.txt"));
        assert_eq!(ds.ignored[0].kind, IgnoredKind::NotImage);
        assert!(ds.ignored[0].reason.contains("not an image"));
    }

    #[test]
    fn walk_order_is_sorted_os_walk_not_depth_first() {
        // sorted(os.walk("c")) yields c, c/a, c/a-b, c/a/x: '-' sorts before '/'.
        let t = tempfile::tempdir().unwrap();
        for f in ["c/a/1.jpg", "c/a/x/2.jpg", "c/a-b/3.jpg", "c/0.jpg"] {
            touch(&t.path().join(f));
        }
        let ds = scan(t.path(), None).unwrap();
        let got: Vec<&str> = ds.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(got, ["c/0.jpg", "c/a/1.jpg", "c/a-b/3.jpg", "c/a/x/2.jpg"]);
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
    fn kaggle_flat_with_an_imageless_subfolder_stays_flat_and_reports_it() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "cat.1.jpg",
            "dog.2.jpg",
            "__MACOSX/._cat.1.jpg",
            "docs/readme.txt",
        ] {
            touch(&t.path().join(f));
        }
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(ds.layout, Layout::KaggleFlat);
        assert_eq!(ds.items.len(), 2);
        assert_eq!(
            ignored_of(&ds, IgnoredKind::FolderInFlatLayout),
            ["__MACOSX", "docs"]
        );
    }

    #[test]
    fn stray_root_image_does_not_hide_the_class_folders() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "birds/1.jpg",
            "birds/2.jpg",
            "fish/1.jpg",
            "stray.jpg",
            "README.md",
        ] {
            touch(&t.path().join(f));
        }
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(ds.layout, Layout::ImageFolder);
        assert_eq!(ds.classes, ["birds", "fish"]);
        assert_eq!(
            rels(&ds),
            [("birds/1.jpg", 0), ("birds/2.jpg", 0), ("fish/1.jpg", 1)]
        );
        assert_eq!(ignored_of(&ds, IgnoredKind::RootFile), ["stray.jpg"]);
        let stray = ds
            .ignored
            .iter()
            .find(|i| i.kind == IgnoredKind::RootFile)
            .unwrap();
        assert!(
            stray.reason.contains("--layout kaggle-flat/unlabelled"),
            "{stray}"
        );
        assert_eq!(ignored_of(&ds, IgnoredKind::NotImage), ["README.md"]);

        // Asked for, the flat layout takes the root image and reports the folders.
        let flat = scan(t.path(), Some(Layout::Unlabelled)).unwrap();
        assert_eq!(rels(&flat), [("stray.jpg", -1)]);
        assert_eq!(
            ignored_of(&flat, IgnoredKind::FolderInFlatLayout),
            ["birds", "fish"]
        );
    }

    #[test]
    fn symlink_loop_is_walked_once_and_reported() {
        let t = tempfile::tempdir().unwrap();
        for f in ["birds/1.jpg", "fish/1.jpg", "fish/deep/2.jpg"] {
            touch(&t.path().join(f));
        }
        symlink("..", t.path().join("birds/up")).unwrap();
        symlink(".", t.path().join("birds/self")).unwrap();
        symlink("../fish", t.path().join("birds/to_fish")).unwrap();
        symlink("../..", t.path().join("fish/deep/back")).unwrap();
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(
            rels(&ds),
            [
                ("birds/1.jpg", 0),
                ("fish/1.jpg", 1),
                ("fish/deep/2.jpg", 1)
            ]
        );
        let loops = ignored_of(&ds, IgnoredKind::SymlinkLoop);
        assert_eq!(
            loops,
            ["birds/self", "birds/to_fish", "birds/up", "fish/deep/back"]
        );
        let self_link = &ds
            .ignored
            .iter()
            .find(|i| i.path.ends_with("self"))
            .unwrap();
        assert!(self_link.reason.contains("symlink loop"), "{self_link}");
        let to_fish = &ds
            .ignored
            .iter()
            .find(|i| i.path.ends_with("to_fish"))
            .unwrap();
        assert!(to_fish.reason.contains("\"fish\""), "{to_fish}");
    }

    #[test]
    fn symlinks_are_followed_and_two_links_to_one_file_are_two_rows() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        touch(&elsewhere.path().join("more/3.jpg"));
        touch(&t.path().join("a/1.jpg"));
        symlink(elsewhere.path().join("more"), t.path().join("a/more")).unwrap();
        symlink("1.jpg", t.path().join("a/1-again.jpg")).unwrap();
        symlink("nowhere.jpg", t.path().join("a/broken.jpg")).unwrap();
        let ds = scan(t.path(), None).unwrap();
        let got: Vec<&str> = ds.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(got, ["a/1-again.jpg", "a/1.jpg", "a/more/3.jpg"]);
        let broken = ds
            .ignored
            .iter()
            .find(|i| i.kind == IgnoredKind::NotAFile)
            .unwrap();
        assert!(broken.reason.contains("broken symlink"), "{broken}");
    }

    #[test]
    fn links_to_the_top_folder_or_above_are_loops() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("data");
        for f in ["data/a/1.jpg", "data/b/2.jpg", "other/x.jpg"] {
            touch(&t.path().join(f));
        }
        symlink(".", root.join("self")).unwrap();
        symlink("..", root.join("parent")).unwrap();
        symlink("../../..", root.join("a/grandparent")).unwrap();
        let ds = scan(&root, None).unwrap();
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(rels(&ds), [("a/1.jpg", 0), ("b/2.jpg", 1)]);
        assert_eq!(
            ignored_of(&ds, IgnoredKind::SymlinkLoop),
            ["parent", "self", "a/grandparent"]
        );
        let parent = ds
            .ignored
            .iter()
            .find(|i| i.path.ends_with("parent"))
            .unwrap();
        assert!(parent.reason.contains("contains this one"), "{parent}");
        // Inputs: a folder given after one inside it is walked, not taken for a loop.
        let inputs = collect_inputs(&[root.join("a"), root.clone()]).unwrap();
        let got: Vec<&Path> = inputs
            .images
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap())
            .collect();
        assert_eq!(got, [Path::new("a/1.jpg"), Path::new("b/2.jpg")]);
    }

    #[test]
    fn two_class_names_for_one_folder_are_an_error() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("cat_photos/1.jpg"));
        symlink("cat_photos", t.path().join("cats")).unwrap();
        let e = scan(t.path(), None).unwrap_err().to_string();
        assert!(e.contains("same folder") && e.contains("remove one"), "{e}");
    }

    #[test]
    fn non_utf8_names_are_skipped_with_a_reason() {
        use std::os::unix::ffi::OsStringExt;
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("a/good.jpg"));
        let bad = std::ffi::OsString::from_vec(b"caf\xe9.jpg".to_vec());
        fs::write(t.path().join("a").join(&bad), b"x").unwrap();
        let bad_dir = std::ffi::OsString::from_vec(b"d\xff".to_vec());
        touch(&t.path().join("a").join(&bad_dir).join("x.jpg"));
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(rels(&ds), [("a/good.jpg", 0)]);
        let non = ignored_of(&ds, IgnoredKind::NonUtf8Name);
        assert_eq!(non, ["a/caf\u{fffd}.jpg", "a/d\u{fffd}"]);
        assert!(ds.ignored.iter().all(|i| i.reason.contains("rename it")));
        assert!(ds.ignored[1].reason.contains("folder"), "{}", ds.ignored[1]);
    }

    #[test]
    fn odd_but_valid_names_are_walked() {
        let t = tempfile::tempdir().unwrap();
        let long = format!("{}.jpg", "x".repeat(251));
        assert_eq!(long.len(), 255);
        let names = [
            "c/a,b.jpg".to_string(),
            "c/quote\"d'.jpg".to_string(),
            "c/new\nline.jpg".to_string(),
            "c/é ü.jpg".to_string(),
            format!("c/{long}"),
        ];
        for n in &names {
            touch(&t.path().join(n));
        }
        let ds = scan(t.path(), None).unwrap();
        let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
        want.sort();
        let got: Vec<&str> = ds.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(got, want);
        assert!(ds.ignored.is_empty(), "{:?}", ds.ignored);
    }

    #[test]
    fn hidden_entries_are_reported() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "a/1.jpg",
            "a/.x.jpg",
            "a/.git/objects/y.jpg",
            ".ipynb_checkpoints/z.jpg",
        ] {
            touch(&t.path().join(f));
        }
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(ds.classes, ["a"]);
        assert_eq!(
            ignored_of(&ds, IgnoredKind::Hidden),
            [".ipynb_checkpoints", "a/.git", "a/.x.jpg"]
        );
        let lines = describe_ignored(&ds.ignored, 1);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]
                .starts_with("ignoring 3 hidden entries: \".ipynb_checkpoints\": hidden folder"),
            "{lines:?}"
        );
        assert!(lines[0].ends_with("(and 2 more)"), "{lines:?}");
    }

    #[test]
    fn fifo_is_not_opened() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("a/1.jpg"));
        let fifo = t.path().join("a/pipe.jpg");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let ds = scan(t.path(), None).unwrap();
        assert_eq!(rels(&ds), [("a/1.jpg", 0)]);
        assert_eq!(ignored_of(&ds, IgnoredKind::NotAFile), ["a/pipe.jpg"]);
    }

    #[test]
    fn empty_folder_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let e = scan(t.path(), None).unwrap_err().to_string();
        assert!(e.contains("no images"), "{e}");
    }

    #[test]
    fn empty_class_folder_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("a/1.jpg"));
        touch(&t.path().join("b/notes.txt"));
        let e = scan(t.path(), None).unwrap_err().to_string();
        assert!(e.contains("[\"b\"] hold no images"), "{e}");
    }

    #[test]
    fn folders_are_walked_sorted_and_non_images_ignored() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "b/2.jpg",
            "b/1.PNG",
            "a.jpg",
            "b/c/3.webp",
            "b/notes.txt",
            "b/.hidden/x.jpg",
            "notes.md",
        ] {
            touch(&t.path().join(f));
        }
        symlink("..", t.path().join("b/c/up")).unwrap();
        let inputs = collect_inputs(&[
            t.path().join("b"),
            t.path().join("a.jpg"),
            t.path().join("notes.md"),
        ])
        .unwrap();
        let rel = |p: &PathBuf| p.strip_prefix(t.path()).unwrap().display().to_string();
        let got: Vec<String> = inputs.images.iter().map(rel).collect();
        // Files named explicitly are taken whatever their extension.
        assert_eq!(
            got,
            ["b/1.PNG", "b/2.jpg", "b/c/3.webp", "a.jpg", "notes.md"]
        );
        let ign: Vec<(String, IgnoredKind)> = inputs
            .ignored
            .iter()
            .map(|i| (rel(&i.path), i.kind))
            .collect();
        assert_eq!(
            ign,
            [
                ("b/.hidden".to_string(), IgnoredKind::Hidden),
                ("b/notes.txt".to_string(), IgnoredKind::NotImage),
                ("b/c/up".to_string(), IgnoredKind::SymlinkLoop),
            ]
        );
        let e = collect_inputs(&[t.path().join("nope")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("pass image files"), "{e}");
    }

    #[test]
    fn inputs_skip_non_utf8_names_and_a_folder_given_twice() {
        use std::os::unix::ffi::OsStringExt;
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("d/1.jpg"));
        let bad = std::ffi::OsString::from_vec(b"\xff.jpg".to_vec());
        fs::write(t.path().join("d").join(&bad), b"x").unwrap();
        let d = t.path().join("d");
        let inputs = collect_inputs(&[d.clone(), d.clone()]).unwrap();
        assert_eq!(inputs.images, [d.join("1.jpg")]);
        let kinds: Vec<IgnoredKind> = inputs.ignored.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, [IgnoredKind::NonUtf8Name, IgnoredKind::SymlinkLoop]);
        assert_eq!(inputs.ignored[0].path, d.join(&bad));
    }
}
