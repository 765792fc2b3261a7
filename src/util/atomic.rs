//! Atomic file writes: the content goes to `<path>.tmp-<pid>` in the same folder,
//! is flushed to disk (fsync), then renamed over `path`. A reader sees the old
//! file or the complete new one, never half of it; an error (or a panic, or a
//! kill before the rename) leaves `path` untouched. The temporary file is removed
//! on error; one left by a killed process is named after its pid and never taken
//! for the real file.
//!
//! The temporary name is created as a new file (`O_CREAT | O_EXCL |
//! O_NOFOLLOW`): a symbolic link planted there by someone else (in a shared
//! folder) is refused, never followed, and never deleted; on error or drop only
//! the file this process created is removed (compared by device and inode).
//!
//! Two forms: [`write_atomic`] for content written through [`std::io::Write`], and
//! [`TempFile`] for files written by a library that wants a path (HDF5).
//!
//! This module depends on nothing else in the crate (the slim predictor uses it
//! through `bundle`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A failed atomic write: what failed, on which file.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// The file system refused a step. (The OS error is part of the message,
    /// not a separate source, so a chain of errors prints it once.)
    #[error("could not write {path} ({step}: {error}); check the folder exists, is writable and has free space, then run again")]
    Io {
        /// The file being written (not the temporary one).
        path: PathBuf,
        /// "creating the temporary file", "writing", "syncing", "renaming".
        step: &'static str,
        error: io::Error,
    },
    /// Something xfer did not make sits at the temporary name: a symbolic
    /// link (which could point at any file) or a folder. Left alone.
    #[error("could not write {path}: its temporary name {tmp} is already taken by {what} that xfer did not make, and was left alone; remove it if you know what it is, then run again")]
    Taken {
        path: PathBuf,
        tmp: PathBuf,
        /// "a symbolic link", "a folder", "a special file".
        what: &'static str,
    },
}

/// A file's identity: (device, inode).
pub(crate) type FileId = (u64, u64);

/// The identity of what is at `path` itself (a link is not followed).
pub(crate) fn link_id(path: &Path) -> Option<FileId> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The identity of the file `path` names (links followed), if it exists.
pub(crate) fn file_id(path: &Path) -> Option<FileId> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What a non-regular entry is, in words.
pub(crate) fn describe_kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// Creates `path` as a new, empty regular file: never through a symbolic link,
/// never over anything already there (`O_CREAT | O_EXCL | O_NOFOLLOW`, close on
/// exec).
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o666)
        .open(path)
}

/// Removes `path` only if it is still the entry `id` (a file this process
/// made), so that nothing put there since is deleted. Best effort.
pub(crate) fn remove_if_same(path: &Path, id: FileId) {
    if link_id(path) == Some(id) {
        let _ = fs::remove_file(path);
    }
}

/// The temporary name used for `path`: `<path>.tmp-<pid>`, in the same folder
/// (a rename is atomic within one file system only).
pub(crate) fn temp_path(path: &Path) -> PathBuf {
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
    let mut tmp = TempFile::new(path)?;
    let err = |step: &'static str| {
        move |error: io::Error| AtomicError::Io {
            path: path.to_owned(),
            step,
            error,
        }
    };
    let file = tmp.take_file().expect("a new TempFile holds its file");
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

/// Writes `bytes` to `path` atomically unless the file already holds exactly
/// these bytes (then it is left alone, its modification time too). Returns
/// whether it wrote.
pub fn write_bytes_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, AtomicError> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    write_bytes_atomic(path, bytes)?;
    Ok(true)
}

/// A temporary file beside `path` for writers that need a path: write to
/// [`TempFile::path`], then [`TempFile::commit`]. Dropped without a commit, it
/// removes the temporary file (only if it is still the one it created).
#[derive(Debug)]
pub(crate) struct TempFile {
    target: PathBuf,
    tmp: PathBuf,
    id: FileId,
    file: Option<File>,
    committed: bool,
}

/// Makes `tmp` a new empty file of ours. A regular file already there was left
/// by an earlier process of this same pid (pids are reused) and is replaced;
/// anything else (a symbolic link, a folder) is refused and left alone.
fn reserve(target: &Path, tmp: &Path) -> Result<File, AtomicError> {
    let io_err = |step: &'static str| {
        move |error: io::Error| AtomicError::Io {
            path: target.to_owned(),
            step,
            error,
        }
    };
    for _ in 0..2 {
        match create_new(tmp) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let m = fs::symlink_metadata(tmp)
                    .map_err(io_err("looking at an old temporary file"))?;
                if !m.file_type().is_file() {
                    return Err(AtomicError::Taken {
                        path: target.to_owned(),
                        tmp: tmp.to_owned(),
                        what: describe_kind(&m),
                    });
                }
                fs::remove_file(tmp).map_err(io_err("removing an old temporary file"))?;
            }
            Err(e) => return Err(io_err("creating the temporary file")(e)),
        }
    }
    Err(AtomicError::Io {
        path: target.to_owned(),
        step: "creating the temporary file",
        error: io::Error::other("another process keeps making it"),
    })
}

impl TempFile {
    /// Creates `<path>.tmp-<pid>`, empty, as a new file of this process (see
    /// [`create_new`]): a symbolic link or folder planted at that name is
    /// refused, never followed or deleted.
    pub(crate) fn new(path: &Path) -> Result<TempFile, AtomicError> {
        let tmp = temp_path(path);
        let file = reserve(path, &tmp)?;
        let m = file.metadata().map_err(|error| AtomicError::Io {
            path: path.to_owned(),
            step: "creating the temporary file",
            error,
        })?;
        Ok(TempFile {
            target: path.to_owned(),
            tmp,
            id: (m.dev(), m.ino()),
            file: Some(file),
            committed: false,
        })
    }

    /// Where to write.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// The open temporary file, to write through (once; `None` after).
    pub(crate) fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Syncs the temporary file to disk, renames it over the target, and syncs
    /// the folder so that the rename itself survives a crash. The file renamed
    /// must still be the one created (not replaced at that name meanwhile).
    pub(crate) fn commit(mut self) -> Result<(), AtomicError> {
        let err = |step: &'static str| {
            let target = self.target.clone();
            move |error: io::Error| AtomicError::Io {
                path: target,
                step,
                error,
            }
        };
        self.file = None;
        if link_id(&self.tmp) != Some(self.id) {
            return Err(err("renaming")(io::Error::other(format!(
                "{} was replaced by another program",
                self.tmp.display()
            ))));
        }
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.tmp)
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
            self.file = None;
            remove_if_same(&self.tmp, self.id);
        }
    }
}

/// A temporary folder beside `path` (`.<name>.tmp-<pid>`) for outputs that are
/// folders: fill [`TempDir::path`], then [`TempDir::commit`]. Dropped without a
/// commit, it is removed with its content, only if it is still the folder it
/// created. Anything already at the temporary name is refused and left alone.
#[derive(Debug)]
pub(crate) struct TempDir {
    target: PathBuf,
    tmp: PathBuf,
    id: FileId,
    committed: bool,
}

impl TempDir {
    pub(crate) fn new(path: &Path) -> Result<TempDir, AtomicError> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        Self::at(tmp, path)
    }

    /// A new folder at exactly `tmp` (a working folder that is never
    /// committed; `target` is what errors name).
    pub(crate) fn at(tmp: PathBuf, target: &Path) -> Result<TempDir, AtomicError> {
        let path = target;
        // mkdir never follows a link at the last component: whatever is there
        // (an old folder of a reused pid included) is refused, not deleted.
        if let Err(error) = fs::create_dir(&tmp) {
            return Err(match fs::symlink_metadata(&tmp) {
                Ok(m) if error.kind() == io::ErrorKind::AlreadyExists => AtomicError::Taken {
                    path: path.to_owned(),
                    tmp,
                    what: describe_kind(&m),
                },
                _ => AtomicError::Io {
                    path: path.to_owned(),
                    step: "creating the temporary folder",
                    error,
                },
            });
        }
        let id = link_id(&tmp).ok_or_else(|| AtomicError::Io {
            path: path.to_owned(),
            step: "creating the temporary folder",
            error: io::Error::other("it vanished"),
        })?;
        Ok(TempDir {
            target: path.to_owned(),
            tmp,
            id,
            committed: false,
        })
    }

    /// The folder to fill.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the folder to the target, which must not exist (a rename over a
    /// folder with content fails).
    pub(crate) fn commit(mut self) -> Result<(), AtomicError> {
        if link_id(&self.tmp) != Some(self.id) {
            return Err(AtomicError::Io {
                path: self.target.clone(),
                step: "renaming",
                error: io::Error::other(format!(
                    "{} was replaced by another program",
                    self.tmp.display()
                )),
            });
        }
        fs::rename(&self.tmp, &self.target).map_err(|error| AtomicError::Io {
            path: self.target.clone(),
            step: "renaming",
            error,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.committed && link_id(&self.tmp) == Some(self.id) {
            // remove_dir_all does not follow links inside the folder.
            let _ = fs::remove_dir_all(&self.tmp);
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
    fn an_unchanged_file_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        assert!(write_bytes_if_changed(&p, b"one").unwrap());
        let id = file_id(&p);
        assert!(!write_bytes_if_changed(&p, b"one").unwrap());
        assert_eq!(file_id(&p), id, "not replaced");
        assert!(write_bytes_if_changed(&p, b"two").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two");
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
    fn a_symlink_planted_at_the_temporary_name_is_refused_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim.txt");
        fs::write(&victim, b"precious").unwrap();
        let p = t.path().join("out.onnx");
        let planted = temp_path(&p);
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let e = write_bytes_atomic(&p, b"attack").unwrap_err().to_string();
        assert!(
            e.contains("a symbolic link") && e.contains("left alone") && e.contains(".tmp-"),
            "{e}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(!p.exists());
        // A dangling link too (O_CREAT alone would create its target).
        let target = t.path().join("created-through-link");
        fs::remove_file(&planted).unwrap();
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert!(TempFile::new(&p).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn drop_removes_only_the_file_it_created() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.h5");
        let tmp = TempFile::new(&p).unwrap();
        let at = tmp.path().to_owned();
        // Replaced by someone else meanwhile: not ours, not deleted.
        fs::remove_file(&at).unwrap();
        fs::write(&at, b"someone else's").unwrap();
        drop(tmp);
        assert_eq!(fs::read(&at).unwrap(), b"someone else's");
        // A regular file left at the name by an earlier process of this pid is replaced.
        write_bytes_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(!at.exists());
    }

    #[test]
    fn temp_dir_refuses_what_is_planted_and_cleans_up_its_own() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("pkg");
        {
            let d = TempDir::new(&out).unwrap();
            assert_eq!(
                d.path(),
                t.path().join(format!(".pkg.tmp-{}", std::process::id()))
            );
            fs::create_dir(d.path().join("lib")).unwrap();
            fs::write(d.path().join("lib/x"), b"x").unwrap();
        }
        assert_eq!(names(t.path()), Vec::<String>::new());
        let victim = t.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), b"k").unwrap();
        let planted = t.path().join(format!(".pkg.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let e = TempDir::new(&out).unwrap_err().to_string();
        assert!(
            e.contains("a symbolic link") && e.contains("left alone"),
            "{e}"
        );
        assert!(victim.join("keep").exists());
        assert!(fs::symlink_metadata(&planted).is_ok());
        fs::remove_file(&planted).unwrap();
        let d = TempDir::new(&out).unwrap();
        fs::write(d.path().join("f"), b"f").unwrap();
        d.commit().unwrap();
        assert!(out.join("f").exists());
    }

    #[test]
    fn the_os_error_is_printed_once_in_a_chain() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("no/such/dir/out.bin");
        let e = anyhow::Error::from(write_bytes_atomic(&p, b"x").unwrap_err());
        let chain = format!("{e:#}");
        assert_eq!(chain.matches("os error").count(), 1, "{chain}");
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
