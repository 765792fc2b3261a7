//! An output must never be one of the run's own inputs: `export --onnx` onto
//! the backbone it reads, `evaluate --csv` onto the feature file, `merge --out`
//! onto a shard. Every command checks its outputs with [`refuse_inputs`]
//! before any work, whatever `--overwrite` says.
//!
//! Files are compared by identity (device and inode, symbolic links
//! followed), so another spelling of the path (`./f.h5`, `a/../f.h5`), a link
//! to the input or a hard link is the same file; an output that does not exist
//! yet is none of the inputs.

use std::path::{Path, PathBuf};

use crate::error::{Error, Output, Result};
use crate::util::atomic::file_id;

/// One input of a run: what it is in words ("the bundle", "the feature file",
/// "backbone efficientnet_lite0's model file") and its path.
#[derive(Debug, Clone)]
pub struct Input {
    pub(crate) what: String,
    pub(crate) path: PathBuf,
}

impl Input {
    pub fn new(what: impl Into<String>, path: impl Into<PathBuf>) -> Input {
        Input {
            what: what.into(),
            path: path.into(),
        }
    }
}

/// Refuses `output` (which output of the run it is: `named`) when it is one
/// of `inputs`.
pub fn refuse_inputs(named: impl Into<Output>, output: &Path, inputs: &[Input]) -> Result<()> {
    let Some(out) = file_id(output) else {
        return Ok(());
    };
    match inputs.iter().find(|i| file_id(&i.path) == Some(out)) {
        Some(i) => Err(Error::OutputIsInput {
            named: named.into(),
            output: output.to_owned(),
            what: i.what.clone(),
            input: i.path.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_under_any_name_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f.h5");
        std::fs::write(&f, b"input").unwrap();
        let inputs = [Input::new("the feature file", &f)];
        let link = t.path().join("link.csv");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let hard = t.path().join("hard.csv");
        std::fs::hard_link(&f, &hard).unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let dotted = t.path().join("sub/../f.h5");
        for out in [&f, &link, &hard, &dotted] {
            let e = refuse_inputs("the CSV", out, &inputs)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("the CSV")
                    && e.contains("the feature file")
                    && e.contains("would destroy that input")
                    && !e.contains("--"),
                "{e}"
            );
        }
        let other = t.path().join("other.csv");
        refuse_inputs("the CSV", &other, &inputs).unwrap();
        std::fs::write(&other, b"x").unwrap();
        refuse_inputs("the CSV", &other, &inputs).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"input");
    }
}
