//! Checks that a path holds a whole HDF5 file before the HDF5 library opens
//! it, so that the mistakes a user makes with a path — a folder, another kind
//! of file, a copy cut short — get one line saying what to do, instead of the
//! HDF5 C library's error stack.
//!
//! An HDF5 file starts with a superblock (at byte 0, or 512, 1024, 2048 … after
//! a user block) holding the 8-byte signature `\x89HDF\r\n\x1a\n` and the
//! file's end-of-file address; a file shorter than that address was truncated.
//! Layouts from the HDF5 File Format Specification, section II.A ("Superblock"),
//! versions 0–3.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// The format signature every HDF5 superblock starts with.
pub(crate) const SIGNATURE: [u8; 8] = *b"\x89HDF\r\n\x1a\n";

/// What is wrong with a path that should be an HDF5 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    Missing,
    Folder,
    Empty,
    NotHdf5,
    /// The file holds `have` bytes; its superblock says `need`.
    Truncated {
        have: u64,
        need: u64,
    },
}

impl Problem {
    /// One line: the problem, then what to do.
    pub(crate) fn explain(&self) -> String {
        match self {
            Problem::Missing => "does not exist; create it with `xfer extract`".into(),
            Problem::Folder => "is a folder, not a feature file: give the .h5 file that `xfer extract` wrote (a folder of images is what `xfer extract` reads)".into(),
            Problem::Empty => "is empty (0 bytes): extract it again with `xfer extract`".into(),
            Problem::NotHdf5 => "is not an HDF5 file (no HDF5 signature): pass a feature file written by `xfer extract` (or an HDF5 file in the tutorial's layout)".into(),
            Problem::Truncated { have, need } => format!(
                "is truncated: it holds {have} bytes but its HDF5 header says {need} (an interrupted copy or a full disk); copy it again or extract it again with `xfer extract`"
            ),
        }
    }
}

/// Reads `n` bytes at `offset`, or fewer at the end of the file.
fn read_at(f: &mut std::fs::File, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(n);
    f.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn uint(bytes: &[u8]) -> Option<u64> {
    (bytes.len() <= 8).then(|| bytes.iter().rev().fold(0u64, |a, &b| (a << 8) | b as u64))
}

/// The size the superblock at `at` says the file has (base address + end-of-file
/// address), or None when it cannot tell (an unknown version, an undefined address).
fn declared_size(sb: &[u8]) -> Option<u64> {
    let version = *sb.get(8)?;
    let (offsets_at, base_at, eof_index) = match version {
        // v0/v1: … size of offsets at byte 13; then K values and flags; the
        // addresses start at 24 (v0) or 28 (v1): base, free space, end of file.
        0 => (13, 24, 2),
        1 => (13, 28, 2),
        // v2/v3: size of offsets at byte 9; addresses from byte 12: base,
        // superblock extension, end of file.
        2 | 3 => (9, 12, 2),
        _ => return None,
    };
    let o = *sb.get(offsets_at)? as usize;
    if !matches!(o, 2 | 4 | 8) {
        return None;
    }
    let addr = |i: usize| uint(sb.get(base_at + i * o..base_at + (i + 1) * o)?);
    let (base, eof) = (addr(0)?, addr(eof_index)?);
    let undefined = if o == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * o)) - 1
    };
    if eof == undefined || base == undefined {
        return None;
    }
    base.checked_add(eof)
}

/// What is wrong with `path` as an HDF5 file, or None when it looks whole.
pub(crate) fn problem(path: &Path) -> Option<Problem> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Some(Problem::Missing),
    };
    if meta.is_dir() {
        return Some(Problem::Folder);
    }
    let have = meta.len();
    if have == 0 {
        return Some(Problem::Empty);
    }
    // Not a regular file (a pipe, a device): leave it to the library.
    if !meta.is_file() {
        return None;
    }
    let mut f = std::fs::File::open(path).ok()?;
    let mut at = 0u64;
    while at < have {
        let sb = read_at(&mut f, at, 96).ok()?;
        if sb.starts_with(&SIGNATURE) {
            return match declared_size(&sb) {
                Some(need) if need > have => Some(Problem::Truncated { have, need }),
                _ => None,
            };
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    Some(Problem::NotHdf5)
}

/// [`problem`] as an error naming the path.
pub(crate) fn check(path: &Path) -> Result<()> {
    match problem(path) {
        None => Ok(()),
        Some(p) => Err(Error::Store {
            path: path.to_owned(),
            reason: p.explain(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h5(path: &Path) {
        let f = hdf5::File::create(path).unwrap();
        f.new_dataset_builder()
            .with_data(&ndarray::Array2::<f32>::zeros((50, 40)))
            .create("data")
            .unwrap();
    }

    #[test]
    fn whole_files_pass_and_each_mistake_is_named() {
        let t = tempfile::tempdir().unwrap();
        let good = t.path().join("good.h5");
        h5(&good);
        assert_eq!(problem(&good), None);
        assert_eq!(problem(&t.path().join("nope.h5")), Some(Problem::Missing));
        assert_eq!(problem(t.path()), Some(Problem::Folder));
        let empty = t.path().join("empty.h5");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(problem(&empty), Some(Problem::Empty));
        let text = t.path().join("notes.h5");
        std::fs::write(&text, vec![b'x'; 5000]).unwrap();
        assert_eq!(problem(&text), Some(Problem::NotHdf5));
        // Cut short: the header still says the full size.
        let bytes = std::fs::read(&good).unwrap();
        let cut = t.path().join("cut.h5");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(
            problem(&cut),
            Some(Problem::Truncated {
                have: (bytes.len() / 2) as u64,
                need: bytes.len() as u64
            })
        );
        let e = check(&cut).unwrap_err().to_string();
        assert!(
            e.contains("cut.h5") && e.contains("is truncated") && e.contains("copy it again"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        // A user block before the superblock (h5py's userblock_size=512).
        let ub = t.path().join("userblock.h5");
        let mut with_block = vec![0u8; 512];
        with_block.extend_from_slice(&bytes);
        std::fs::write(&ub, &with_block).unwrap();
        // The addresses are relative to the superblock (base address 0 here,
        // so the file is long enough either way): not reported.
        assert_eq!(problem(&ub), None);
    }

    #[test]
    fn superblock_versions_are_read() {
        // v0, 8-byte offsets: base 0, eof 4096 → needs 4096 bytes.
        let mut v0 = SIGNATURE.to_vec();
        v0.extend_from_slice(&[0, 0, 0, 0, 0, 8, 8, 0]); // versions, sizes
        v0.extend_from_slice(&[4, 0, 16, 0, 0, 0, 0, 0]); // K values, flags
        for a in [0u64, u64::MAX, 4096, u64::MAX] {
            v0.extend_from_slice(&a.to_le_bytes());
        }
        assert_eq!(declared_size(&v0), Some(4096));
        // v2, 8-byte offsets.
        let mut v2 = SIGNATURE.to_vec();
        v2.extend_from_slice(&[2, 8, 8, 0]);
        for a in [0u64, u64::MAX, 777] {
            v2.extend_from_slice(&a.to_le_bytes());
        }
        assert_eq!(declared_size(&v2), Some(777));
        // An undefined end of file, an unknown version: no claim.
        let mut v2u = v2.clone();
        v2u[28..36].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(declared_size(&v2u), None);
        let mut v9 = v2.clone();
        v9[8] = 9;
        assert_eq!(declared_size(&v9), None);
    }
}
