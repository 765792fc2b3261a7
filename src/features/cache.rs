//! The feature cache of `xfer fit`: features keyed by the content of the
//! image files, so that a second run on the same photos, or on the same
//! folder with a few photos more, extracts only what it has not seen.
//!
//! A cache is a folder (`--cache DIR`, by default `cache/features` in xfer's
//! data folder). Inside it, one folder per *job* — backbone name, model
//! sha256, preprocessing recipe, image decoding, pooling, augmented views,
//! precision, ONNX Runtime version and requested device, recorded in its
//! `key.json` — holds *chunks*: ordinary feature files, each written by
//! `xfer extract --list chunk-N.csv --out chunk-N.h5` (so resumable with
//! `--resume` and locked as every extraction is, and readable by h5py and
//! `xfer train`). The content hash of each file of a chunk (SHA-256 of the
//! file's bytes) is kept in a sidecar, `chunk-N.hashes.json`, written before
//! the extraction starts with each file's size, modification time and inode;
//! once the chunk is complete the files are looked at again and any that
//! changed meanwhile are dropped from the sidecar before it is marked
//! `verified` (their rows are then never used). Only verified chunks serve rows.
//!
//! [`ContentHasher`] keeps `files.json` at the cache's top: path, size,
//! modification time and inode → SHA-256, so unchanged files are not read
//! again. An entry is trusted only when all of these are unchanged and the
//! file's modification time is more than two seconds older than the moment it
//! was hashed (a file written in the same instant it was hashed is hashed again,
//! as git does with racily clean entries).
//!
//! [`Folder::assemble`] writes the feature file of a split from cached rows,
//! in the split's order, with the provenance, list hash and layout that
//! `xfer extract --list SPLIT.csv` writes: the same features, bit for bit (the
//! rows are copied, never recomputed). It is written through
//! [`FeatureWriter`] (a `.partial` file renamed when complete), so a killed
//! assembly never leaves a file that looks whole.
//!
//! Deleting the cache folder (or any job folder in it) is always safe: it only
//! costs extraction time.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::features::extract::{self, ExtractConfig};
use crate::features::store::{self, FeatureWriter, FileReader};
use crate::images::dataset::Dataset;
use crate::images::list;
use crate::models::zoo::Manifest;
use crate::util::atomic::{write_bytes_atomic, write_bytes_if_changed};
use crate::util::lock::OutputLock;

/// Seconds before the hashing moment a file must have been last modified for
/// its cached hash to be trusted without reading the file again.
const RACY_NS: i64 = 2_000_000_000;

fn cache_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Store {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The default cache folder: `cache/features` in xfer's data folder
/// (`$XFER_HOME`, else `$XDG_DATA_HOME/xfer`, else `~/.local/share/xfer`).
pub fn default_root() -> Option<PathBuf> {
    crate::models::runtime::xfer_home().map(|h| h.join("cache").join("features"))
}

/// What a file looked like when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub(crate) mtime_ns: i64,
    pub(crate) ino: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

fn stat(path: &Path) -> std::io::Result<Stat> {
    let m = std::fs::metadata(path)?;
    Ok(Stat {
        size: m.size(),
        mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
        ino: m.ino(),
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    #[serde(flatten)]
    content: Content,
    /// When it was hashed (ns since the epoch).
    checked_ns: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KnownFiles {
    version: u32,
    files: BTreeMap<String, Known>,
}

/// Content hashes of image files, with the path + size + mtime + inode
/// short-cut of `files.json` (see the module's documentation).
pub struct ContentHasher {
    file: PathBuf,
    known: KnownFiles,
    /// Files read and hashed by this hasher.
    pub hashed: usize,
    /// Files whose hash came from `files.json` without reading them.
    pub trusted: usize,
}

impl ContentHasher {
    /// The hasher of the cache at `root` (its `files.json`; a damaged one is
    /// ignored: it is only a short-cut).
    pub fn open(root: &Path) -> ContentHasher {
        let file = root.join("files.json");
        let known = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<KnownFiles>(&b).ok())
            .filter(|k| k.version == 1)
            .unwrap_or(KnownFiles {
                version: 1,
                files: BTreeMap::new(),
            });
        ContentHasher {
            file,
            known,
            hashed: 0,
            trusted: 0,
        }
    }

    /// The content of each of `paths` (in parallel), or the error reading it.
    pub fn contents(&mut self, paths: &[PathBuf]) -> Vec<std::io::Result<Content>> {
        use rayon::prelude::*;
        let known = &self.known.files;
        let results: Vec<(std::io::Result<Content>, bool, i64)> = paths
            .par_iter()
            .map(|p| {
                let key = p.to_string_lossy();
                let before = match stat(p) {
                    Ok(s) => s,
                    Err(e) => return (Err(e), false, 0),
                };
                if let Some(k) = known.get(key.as_ref()) {
                    let c = &k.content;
                    if c.size == before.size
                        && c.mtime_ns == before.mtime_ns
                        && c.ino == before.ino
                        && before.mtime_ns < k.checked_ns - RACY_NS
                    {
                        return (Ok(c.clone()), true, k.checked_ns);
                    }
                }
                let checked = now_ns();
                let sha = match crate::util::digest::sha256_file(p) {
                    Ok(s) => s,
                    Err(e) => return (Err(e), false, 0),
                };
                // Changed while being read: hashed again on the next run.
                let after = match stat(p) {
                    Ok(s) => s,
                    Err(e) => return (Err(e), false, 0),
                };
                let checked = if after == before { checked } else { 0 };
                (
                    Ok(Content {
                        sha256: sha,
                        size: after.size,
                        mtime_ns: after.mtime_ns,
                        ino: after.ino,
                    }),
                    false,
                    checked,
                )
            })
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for (p, (r, trusted, checked_ns)) in paths.iter().zip(results) {
            if let Ok(c) = &r {
                if trusted {
                    self.trusted += 1;
                } else {
                    self.hashed += 1;
                    self.known.files.insert(
                        p.to_string_lossy().into_owned(),
                        Known {
                            content: c.clone(),
                            checked_ns,
                        },
                    );
                }
            }
            out.push(r);
        }
        out
    }

    /// Writes `files.json` (atomically) when something was hashed.
    pub fn save(&self) -> Result<()> {
        if self.hashed == 0 {
            return Ok(());
        }
        let text = serde_json::to_vec(&self.known).expect("plain data");
        write_bytes_atomic(&self.file, &text)?;
        Ok(())
    }
}

/// What makes two extractions of the same image give the same features:
/// one cache folder per distinct key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub(crate) backbone: String,
    pub(crate) model_sha256: String,
    pub(crate) preprocess: String,
    pub(crate) decode: String,
    pub(crate) pooling: String,
    pub(crate) views: usize,
    pub(crate) augment: String,
    pub(crate) precision: String,
    pub(crate) ort_version: String,
    /// The execution provider asked for (`cpu`, `cuda`, `tensorrt`, `tensorrt-fp16`,
    /// `openvino-auto`, `openvino-f32`, `openvino-bf16`).
    pub(crate) device: String,
}

impl Key {
    /// The key of an extraction with `manifest` under `cfg`, by the ONNX
    /// Runtime `ort_version` on `device`.
    pub fn new(manifest: &Manifest, cfg: &ExtractConfig, ort_version: &str, device: &str) -> Key {
        let empty = Dataset {
            root: PathBuf::new(),
            layout: crate::images::dataset::Layout::List,
            classes: Vec::new(),
            items: Vec::new(),
            ignored: Vec::new(),
        };
        let p = extract::job_provenance(&empty, Path::new(""), cfg, manifest);
        Key {
            backbone: p.backbone,
            model_sha256: p.model_sha256,
            preprocess: p.preprocess,
            decode: p.decode,
            pooling: p.pooling,
            views: p.views,
            augment: p.augment,
            precision: p.precision,
            ort_version: ort_version.to_owned(),
            device: device.to_owned(),
        }
    }

    /// The folder name: `<backbone>-<16 hex digits of the key's SHA-256>`.
    pub fn folder_name(&self) -> String {
        let json = serde_json::to_string(self).expect("plain data");
        let h = format!("{:x}", Sha256::digest(json.as_bytes()));
        format!("{}-{}", self.backbone, &h[..16])
    }

    /// Whether a chunk's provenance is of this job.
    fn matches(&self, p: &store::Provenance) -> bool {
        p.backbone == self.backbone
            && p.model_sha256 == self.model_sha256
            && p.preprocess == self.preprocess
            && p.decode == self.decode
            && p.pooling == self.pooling
            && p.views == self.views
            && p.augment == self.augment
            && p.precision == self.precision
            && p.ort_version == self.ort_version
    }
}

/// One file of a chunk's sidecar.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HashedFile {
    /// As written in the chunk's list (absolute).
    path: String,
    #[serde(flatten)]
    content: Content,
}

/// `chunk-N.hashes.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sidecar {
    version: u32,
    /// Set once the chunk's feature file is complete and its files were
    /// checked to be unchanged since they were hashed.
    verified: bool,
    files: Vec<HashedFile>,
}

/// A chunk: its list (`chunk-N.csv`), feature file (`chunk-N.h5`) and sidecar.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub(crate) n: u32,
    pub list: PathBuf,
    pub out: PathBuf,
    sidecar: PathBuf,
}

impl Chunk {
    fn at(dir: &Path, n: u32) -> Chunk {
        let stem = format!("chunk-{n:06}");
        Chunk {
            n,
            list: dir.join(format!("{stem}.csv")),
            out: dir.join(format!("{stem}.h5")),
            sidecar: dir.join(format!("{stem}.hashes.json")),
        }
    }

    /// Whether an interrupted extraction of this chunk can be resumed.
    pub fn has_partial(&self) -> bool {
        store::partial_path(&self.out).exists()
    }

    fn remove(&self) {
        for p in [
            &self.out,
            &store::partial_path(&self.out),
            &self.list,
            &self.sidecar,
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Where a cached image's features are.
#[derive(Debug, Clone)]
enum Source {
    /// Row `row` of chunk `chunk` (an index into [`Folder::readers`]).
    Row { chunk: usize, row: usize },
    /// The extraction skipped the file, for this reason.
    Skipped(String),
}

/// The cache folder of one job, locked while it is open.
pub struct Folder {
    pub(crate) dir: PathBuf,
    pub key: Key,
    _lock: OutputLock,
    /// Complete, verified chunks, with their readers.
    readers: Vec<FileReader>,
    /// Chunks whose extraction has not finished (or not been verified).
    pending: Vec<Chunk>,
    index: HashMap<String, Source>,
    next: u32,
    /// What opening found and repaired (damaged chunks removed), for the user.
    pub notes: Vec<String>,
}

/// The key a cached row is found by: the content hash, and with augmented
/// views the image's path too (the views are drawn from a seed of the path).
fn row_key(key: &Key, path: &str, sha256: &str) -> String {
    if key.views > 0 {
        format!("{sha256}\0{path}")
    } else {
        sha256.to_owned()
    }
}

impl Folder {
    /// Opens (creating it) the folder of `key` in the cache `root`, locks it,
    /// and indexes its verified chunks. Chunks that cannot be read, or that
    /// belong to another job, are removed (noted in [`Folder::notes`]).
    pub fn open(root: &Path, key: Key) -> Result<Folder> {
        let dir = root.join(key.folder_name());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock = OutputLock::acquire(&dir.join("chunks"))?;
        let key_file = dir.join("key.json");
        let text = serde_json::to_string_pretty(&key).expect("plain data") + "\n";
        let other = std::fs::read_to_string(&key_file)
            .is_ok_and(|old| serde_json::from_str::<Key>(&old).is_ok_and(|k| k != key));
        if other {
            return Err(cache_err(
                &key_file,
                "is the key of another job than its folder name says; delete the folder (it is only a cache)",
            ));
        }
        write_bytes_if_changed(&key_file, text.as_bytes())?;
        let mut numbers: Vec<u32> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix("chunk-")?;
                rest.get(..6)?.parse::<u32>().ok()
            })
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        let mut folder = Folder {
            dir: dir.clone(),
            key,
            _lock: lock,
            readers: Vec::new(),
            pending: Vec::new(),
            index: HashMap::new(),
            next: numbers.last().map_or(1, |n| n + 1),
            notes: Vec::new(),
        };
        for n in numbers {
            let chunk = Chunk::at(&dir, n);
            let sidecar = read_sidecar(&chunk.sidecar);
            match (chunk.list.exists(), sidecar) {
                // Killed between writing the sidecar and the list: nothing ran.
                (false, _) | (true, None) => chunk.remove(),
                (true, Some(s)) if s.verified => {
                    if let Err(e) = folder.index_chunk(&chunk, &s) {
                        folder.notes.push(format!(
                            "removed cache chunk {} ({e}); its images are extracted again",
                            chunk.out.display()
                        ));
                        chunk.remove();
                    }
                }
                (true, Some(_)) => folder.pending.push(chunk),
            }
        }
        Ok(folder)
    }

    fn index_chunk(&mut self, chunk: &Chunk, sidecar: &Sidecar) -> Result<()> {
        let r = FileReader::open(&chunk.out)?;
        if !self.key.matches(&r.provenance) {
            return Err(cache_err(&chunk.out, "was extracted by another job"));
        }
        let hashes: HashMap<&str, &str> = sidecar
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.content.sha256.as_str()))
            .collect();
        let at = self.readers.len();
        for (row, p) in r.paths()?.into_iter().enumerate() {
            if let Some(sha) = hashes.get(p.as_str()) {
                self.index
                    .entry(row_key(&self.key, &p, sha))
                    .or_insert(Source::Row { chunk: at, row });
            }
        }
        for (p, reason) in r.skipped_files()? {
            if let Some(sha) = hashes.get(p.as_str()) {
                self.index
                    .entry(row_key(&self.key, &p, sha))
                    .or_insert(Source::Skipped(reason));
            }
        }
        self.readers.push(r);
        Ok(())
    }

    /// Chunks whose extraction was interrupted (or not yet verified): run
    /// `xfer extract` on each (with `--resume` when [`Chunk::has_partial`]),
    /// then [`Folder::seal`] it.
    pub fn pending(&self) -> &[Chunk] {
        &self.pending
    }

    /// Whether the image at `path` with `content` is cached (as a row or as a
    /// file the extraction skipped).
    pub fn has(&self, path: &str, content: &Content) -> bool {
        self.index
            .contains_key(&row_key(&self.key, path, &content.sha256))
    }

    /// A new chunk for `files` (absolute paths with their content): the
    /// sidecar is written first, then the list, so that a list always has
    /// its hashes. Files with the same content are listed once (without views).
    pub fn new_chunk(&mut self, files: &[(String, Content)]) -> Result<Chunk> {
        let mut seen = std::collections::HashSet::new();
        let mut list: Vec<HashedFile> = Vec::new();
        for (p, c) in files {
            if seen.insert(row_key(&self.key, p, &c.sha256)) {
                list.push(HashedFile {
                    path: p.clone(),
                    content: c.clone(),
                });
            }
        }
        list.sort_by(|a, b| a.path.cmp(&b.path));
        let chunk = Chunk::at(&self.dir, self.next);
        self.next += 1;
        let sidecar = Sidecar {
            version: 1,
            verified: false,
            files: list,
        };
        write_sidecar(&chunk.sidecar, &sidecar)?;
        let paths: Vec<&str> = sidecar.files.iter().map(|f| f.path.as_str()).collect();
        write_bytes_atomic(
            &chunk.list,
            list::csv_text(&["path"], paths.iter().map(|p| [p])).as_bytes(),
        )?;
        self.pending.push(chunk.clone());
        Ok(chunk)
    }

    /// After `xfer extract` completed `chunk`: checks that none of its files
    /// changed since they were hashed (those that did are left out of the
    /// index), marks the sidecar verified and indexes the chunk's rows.
    pub fn seal(&mut self, chunk: &Chunk) -> Result<()> {
        let mut s = read_sidecar(&chunk.sidecar).ok_or_else(|| {
            cache_err(
                &chunk.sidecar,
                "is missing or damaged; delete the cache folder (it is only a cache)",
            )
        })?;
        s.files.retain(|f| {
            stat(Path::new(&f.path)).is_ok_and(|now| {
                now.size == f.content.size
                    && now.mtime_ns == f.content.mtime_ns
                    && now.ino == f.content.ino
            })
        });
        s.verified = true;
        write_sidecar(&chunk.sidecar, &s)?;
        self.pending.retain(|c| c.n != chunk.n);
        self.index_chunk(chunk, &s)
    }

    /// Writes the feature file of `ds` (a labelled list, read with
    /// [`crate::images::dataset::from_list`]) to `out` from cached rows, as
    /// `xfer extract --list` would write it with `manifest` under `cfg`.
    /// `contents[i]` is the content of `ds.items[i]`; every item must be
    /// cached ([`Folder::has`]).
    pub fn assemble(
        &self,
        ds: &Dataset,
        contents: &[Content],
        manifest: &Manifest,
        cfg: &ExtractConfig,
        out: &Path,
    ) -> Result<Assembled> {
        assert_eq!(ds.items.len(), contents.len(), "one content per item");
        let sources = self.sources(ds, contents, out)?;
        let used = chunks_of(&sources);
        let dim = self.row_width(&used, manifest)?;
        // The providers and ONNX Runtime versions of the chunks used.
        let mut prov = extract::job_provenance(ds, &ds.root, cfg, manifest);
        prov.ort_version = self.key.ort_version.clone();
        prov.execution_provider = self.providers(&used);
        prov.inference_precision = self.inference_precision(&used)?;
        let list = extract::list_info(ds, None);
        let mut w = FeatureWriter::create_for(out, dim, &prov, Some(&list))?;
        let (mut rows, mut skipped) = (0, 0);
        const BLOCK: usize = 256;
        for start in (0..ds.items.len()).step_by(BLOCK) {
            let end = (start + BLOCK).min(ds.items.len());
            let mut b = self.block(ds, &sources, start..end)?;
            let (f, v) = b.arrays(dim, self.key.views, out)?;
            w.append_views(
                f.view(),
                v.as_ref().map(|v| v.view()),
                &b.labels,
                &b.paths,
                &b.skipped,
            )?;
            rows += b.labels.len();
            skipped += b.skipped.len();
        }
        w.finish()?;
        Ok(Assembled { rows, skipped })
    }

    /// Where each item of `ds` (with `contents`) is in the cache.
    fn sources(&self, ds: &Dataset, contents: &[Content], out: &Path) -> Result<Vec<&Source>> {
        ds.items
            .iter()
            .zip(contents)
            .map(|(item, c)| {
                let p = ds.abs_path(item);
                let p = p.to_string_lossy();
                self.index
                    .get(&row_key(&self.key, &p, &c.sha256))
                    .ok_or_else(|| {
                        cache_err(
                            out,
                            format!("{p} is not in the cache {}", self.dir.display()),
                        )
                    })
            })
            .collect()
    }

    /// The features per row of the chunks `used` (all the same), or the
    /// manifest's when no row is used.
    fn row_width(&self, used: &[usize], manifest: &Manifest) -> Result<usize> {
        let dim = used
            .first()
            .map_or(manifest.output.feature_dim, |&c| self.readers[c].dim);
        if let Some(&c) = used.iter().find(|&&c| self.readers[c].dim != dim) {
            return Err(cache_err(
                &self.readers[c].path,
                format!("has {} features per row, other chunks {dim}: delete the cache folder (it is only a cache)", self.readers[c].dim),
            ));
        }
        Ok(dim)
    }

    /// The execution providers that extracted the chunks `used`, in order
    /// of first use, comma-separated.
    fn providers(&self, used: &[usize]) -> String {
        let mut providers: Vec<&str> = Vec::new();
        for &c in used {
            let p = self.readers[c].provenance.execution_provider.as_str();
            if !providers.contains(&p) {
                providers.push(p);
            }
        }
        providers.join(", ")
    }

    /// The inference precision of the chunks `used` (see
    /// [`store::Provenance::inference_precision`]): one file holds one
    /// precision, so chunks computed in different ones (an `openvino-auto`
    /// folder filled on CPUs with and without bf16) are refused.
    fn inference_precision(&self, used: &[usize]) -> Result<String> {
        use crate::models::backbone::precision_class;
        let first = used.first().map_or("", |&c| {
            self.readers[c].provenance.inference_precision.as_str()
        });
        let other = used.iter().find(|&&c| {
            precision_class(&self.readers[c].provenance.inference_precision)
                != precision_class(first)
        });
        match other {
            Some(&c) => Err(cache_err(
                &self.readers[c].path,
                format!(
                    "was computed in {}, other chunks in {}: delete the cache folder (it is only a cache)",
                    precision_class(&self.readers[c].provenance.inference_precision),
                    precision_class(first)
                ),
            )),
            None => Ok(first.to_owned()),
        }
    }

    /// The rows (and skipped files) of the items `range` of `ds`, whose
    /// places are `sources`.
    fn block(
        &self,
        ds: &Dataset,
        sources: &[&Source],
        range: std::ops::Range<usize>,
    ) -> Result<Block> {
        let mut b = Block::default();
        let mut i = range.start;
        while i < range.end {
            match sources[i] {
                Source::Skipped(reason) => {
                    b.skipped
                        .push((ds.items[i].rel_path.clone(), reason.clone()));
                    i += 1;
                }
                Source::Row { chunk, row } => {
                    // A run of consecutive rows of one chunk: one read.
                    let mut j = i + 1;
                    while j < range.end
                        && matches!(sources[j], Source::Row { chunk: c, row: r }
                            if *c == *chunk && *r == row + (j - i))
                    {
                        j += 1;
                    }
                    self.copy_rows(*chunk, *row..*row + (j - i), &mut b)?;
                    for item in &ds.items[i..j] {
                        b.labels.push(item.label);
                        b.paths.push(item.rel_path.clone());
                    }
                    i = j;
                }
            }
        }
        Ok(b)
    }

    /// Appends the features (and views) of `rows` of chunk `chunk` to `b`.
    fn copy_rows(&self, chunk: usize, rows: std::ops::Range<usize>, b: &mut Block) -> Result<()> {
        let reader = &self.readers[chunk];
        let (f, _, _) = reader.block(rows.clone())?;
        b.feats.extend(f.iter());
        if let Some(v) = reader.views_block(rows)? {
            b.views.extend(v.iter());
        }
        Ok(())
    }
}

/// The chunks (indices into [`Folder::readers`]) that `sources` take rows
/// from, sorted, each once.
fn chunks_of(sources: &[&Source]) -> Vec<usize> {
    let mut used: Vec<usize> = sources
        .iter()
        .filter_map(|s| match s {
            Source::Row { chunk, .. } => Some(*chunk),
            Source::Skipped(_) => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

/// A block of an assembled file: rows copied from the chunks, in order.
#[derive(Default)]
struct Block {
    feats: Vec<f32>,
    views: Vec<f32>,
    labels: Vec<i64>,
    paths: Vec<String>,
    skipped: Vec<(String, String)>,
}

type Views = Option<ndarray::Array3<f32>>;

impl Block {
    /// The features (n × `dim`) and, with `k` views, the views (n × k ×
    /// dim), taken out of the block.
    fn arrays(
        &mut self,
        dim: usize,
        k: usize,
        out: &Path,
    ) -> Result<(ndarray::Array2<f32>, Views)> {
        let n = self.labels.len();
        let feats = std::mem::take(&mut self.feats);
        let f = ndarray::Array2::from_shape_vec((n, dim), feats).expect("n × dim values");
        if k == 0 {
            return Ok((f, None));
        }
        let views = std::mem::take(&mut self.views);
        let v = ndarray::Array3::from_shape_vec((n, k, dim), views).map_err(|_| {
            cache_err(
                out,
                "a chunk has no views; delete the cache folder (it is only a cache)",
            )
        })?;
        Ok((f, Some(v)))
    }
}

/// What [`Folder::assemble`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Assembled {
    pub rows: usize,
    pub skipped: usize,
}

fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<Sidecar>(&bytes)
        .ok()
        .filter(|s| s.version == 1)
}

fn write_sidecar(path: &Path, s: &Sidecar) -> Result<()> {
    let text = serde_json::to_vec(s).expect("plain data");
    write_bytes_atomic(path, &text)?;
    Ok(())
}

/// Bytes used by the files under `dir` (the cache's disk use).
pub fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += disk_use(&e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.blocks() * 512),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_reused_only_for_old_unchanged_files() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a.jpg");
        std::fs::write(&f, b"one").unwrap();
        let mut h = ContentHasher::open(t.path());
        let a = h.contents(std::slice::from_ref(&f)).remove(0).unwrap();
        assert_eq!(a.sha256, format!("{:x}", Sha256::digest(b"one")));
        assert_eq!((h.hashed, h.trusted), (1, 0));
        h.save().unwrap();
        // Just written: racily clean, so hashed again.
        let mut h = ContentHasher::open(t.path());
        h.contents(std::slice::from_ref(&f));
        assert_eq!((h.hashed, h.trusted), (1, 0));
        // An old file is trusted …
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut h = ContentHasher::open(t.path());
        h.contents(std::slice::from_ref(&f));
        h.save().unwrap();
        let mut h = ContentHasher::open(t.path());
        let b = h.contents(std::slice::from_ref(&f)).remove(0).unwrap();
        assert_eq!((h.hashed, h.trusted), (0, 1));
        assert_eq!(b.sha256, a.sha256);
        // … until its size or time changes.
        std::fs::write(&f, b"two!").unwrap();
        let mut h = ContentHasher::open(t.path());
        let c = h.contents(std::slice::from_ref(&f)).remove(0).unwrap();
        assert_eq!(h.hashed, 1);
        assert_ne!(c.sha256, a.sha256);
    }
}
