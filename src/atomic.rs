//! Atomic file writes: the content goes to `<path>.tmp-<pid>` in the same folder,
//! is flushed to disk (fsync), then renamed over `path`. A reader sees the old
//! file or the complete new one, never half of it; an error (or a panic, or a
//! kill before the rename) leaves `path` untouched. The temporary file is removed
//! on error; one left by a killed process is named after its pid and never taken
//! for the real file.
//!
//! Two forms: [`write_atomic`] for content written through [`std::io::Write`], and
//! [`TempFile`] for files written by a library that wants a path (HDF5).
//!
//! This module depends on nothing else in the crate (the slim predictor uses it
//! through `bundle`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A failed atomic write: what failed, on which file.
#[derive(Debug, thiserror::Error)]
#[error("could not write {path} ({step}: {source}); check the folder exists, is writable and has free space, then run again")]
pub struct AtomicError {
    /// The file being written (not the temporary one).
    pub path: PathBuf,
    /// "creating the temporary file", "writing", "syncing", "renaming".
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// The temporary name used for `path`: `<path>.tmp-<pid>`, in the same folder
/// (a rename is atomic within one file system only).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `path` atomically with `write`, which gets a buffered writer. On any
/// error (from `write` or the file system) the temporary file is removed and
/// `path` is left as it was.
pub fn write_atomic<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> Result<T, AtomicError> {
    let tmp = TempFile::new(path)?;
    let err = |step: &'static str| {
        move |source: io::Error| AtomicError {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let file = File::create(&tmp.tmp).map_err(err("creating the temporary file"))?;
    let mut w = BufWriter::new(file);
    let out = write(&mut w).map_err(err("writing"))?;
    w.flush().map_err(err("writing"))?;
    drop(w);
    tmp.commit()?;
    Ok(out)
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicError> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// A temporary file beside `path` for writers that need a path: write to
/// [`TempFile::path`], then [`TempFile::commit`]. Dropped without a commit, it
/// removes the temporary file.
#[derive(Debug)]
pub struct TempFile {
    target: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Reserves `<path>.tmp-<pid>`, removing one left there by an earlier run of
    /// this same pid (pids are reused). Nothing is created yet.
    pub fn new(path: &Path) -> Result<TempFile, AtomicError> {
        let tmp = temp_path(path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AtomicError {
                    path: path.to_owned(),
                    step: "removing an old temporary file",
                    source,
                })
            }
        }
        Ok(TempFile {
            target: path.to_owned(),
            tmp,
            committed: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the temporary file to disk, renames it over the target, and syncs
    /// the folder so that the rename itself survives a crash.
    pub fn commit(mut self) -> Result<(), AtomicError> {
        let err = |step: &'static str| {
            let target = self.target.clone();
            move |source: io::Error| AtomicError {
                path: target,
                step,
                source,
            }
        };
        File::open(&self.tmp)
            .and_then(|f| f.sync_all())
            .map_err(err("syncing"))?;
        fs::rename(&self.tmp, &self.target).map_err(err("renaming"))?;
        self.committed = true;
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        // Best effort: some file systems refuse to sync folders.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("out.bin");
        write_bytes_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        let n = write_atomic(&p, |w| {
            w.write_all(b"two")?;
            Ok(42)
        })
        .unwrap();
        assert_eq!(n, 42);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(t.path()), ["out.bin"]);
    }

    #[test]
    fn an_error_leaves_the_old_file_and_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("out.bin");
        write_bytes_atomic(&p, b"old").unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(&[7u8; 100_000])?;
            Err::<(), _>(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("out.bin") && msg.contains("disk on fire") && msg.contains("run again"),
            "{msg}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(t.path()), ["out.bin"]);
    }

    #[test]
    fn temporary_is_beside_the_target_and_named_after_the_pid() {
        let p = Path::new("/some/dir/head.safetensors");
        assert_eq!(
            temp_path(p),
            PathBuf::from(format!(
                "/some/dir/head.safetensors.tmp-{}",
                std::process::id()
            ))
        );
        assert_eq!(
            temp_path(Path::new("f.h5")),
            PathBuf::from(format!("f.h5.tmp-{}", std::process::id()))
        );
    }

    #[test]
    fn temp_file_for_path_writers() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.h5");
        {
            let tmp = TempFile::new(&p).unwrap();
            fs::write(tmp.path(), b"half").unwrap();
            // dropped without commit
        }
        assert_eq!(names(t.path()), Vec::<String>::new());
        let tmp = TempFile::new(&p).unwrap();
        fs::write(tmp.path(), b"whole").unwrap();
        assert!(!p.exists(), "not visible before the commit");
        tmp.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole");
        assert_eq!(names(t.path()), ["f.h5"]);
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("no/such/dir/out.bin");
        let e = write_bytes_atomic(&p, b"x").unwrap_err().to_string();
        assert!(
            e.contains("creating the temporary file") && e.contains("check the folder exists"),
            "{e}"
        );
    }
}
