//! Collecting prediction inputs (temporary: moves to the one dataset walker).

use std::path::{Path, PathBuf};

use crate::dataset::is_image_name;
use crate::error::{Error, Result};

/// Images found in the paths given: files as given, folders searched
/// recursively (sorted; hidden entries and non-image extensions left out).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub images: Vec<PathBuf>,
    /// Files inside the folders that are not images by extension.
    pub ignored: Vec<PathBuf>,
}

pub fn collect_images(paths: &[PathBuf]) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Error::Input {
            path: p.clone(),
            reason: format!("{e}; pass image files or folders of images"),
        })?;
        if meta.is_dir() {
            walk(p, &mut inputs)?;
        } else {
            inputs.images.push(p.clone());
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, inputs: &mut Inputs) -> Result<()> {
    let err = |e: std::io::Error| Error::Input {
        path: dir.to_owned(),
        reason: format!("cannot list the folder: {e}"),
    };
    let mut entries: Vec<(String, PathBuf, bool)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err)? {
        let e = e.map_err(err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        entries.push((name, path, is_dir));
    }
    entries.sort();
    for (name, path, is_dir) in entries {
        if is_dir {
            walk(&path, inputs)?;
        } else if is_image_name(&name) {
            inputs.images.push(path);
        } else {
            inputs.ignored.push(path);
        }
    }
    Ok(())
}

