//! The plumbing commands of `xfer fit`: each is printed (shell-quoted) and
//! run in this process through the same parser and dispatch as `main`, and
//! skipped when its record says it already ran with the same inputs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use sha2::{Digest, Sha256};
use xfer::util::atomic::write_bytes_atomic;
use xfer::util::shell;

use super::s;
use crate::cli::{Cli, EXIT_SKIPPED};

/// Runs `f` with the process's stdout on stderr (so that `--json` owns stdout).
fn with_stdout_on_stderr<T>(f: impl FnOnce() -> T) -> T {
    let _ = std::io::stdout().flush();
    // SAFETY: dup/dup2/close on the process's own standard descriptors.
    let saved = unsafe { libc::dup(1) };
    if saved < 0 {
        return f();
    }
    unsafe { libc::dup2(2, 1) };
    let out = f();
    let _ = std::io::stdout().flush();
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    out
}

/// Runs plumbing commands and remembers them.
pub(super) struct Runner {
    /// `--zoo`, `--ort-lib` of this invocation, passed on.
    globals: Vec<String>,
    json: bool,
    /// The command lines run, in order.
    pub commands: Vec<String>,
    /// Whether a step skipped some images (exit status 3).
    pub skipped: bool,
    /// The folder of the step records.
    pub stamps: PathBuf,
}

impl Runner {
    /// The runner of `xfer fit` with `cli`'s global flags, its records in
    /// `run/.fit`.
    pub fn new(cli: &Cli, json: bool, run: &Path) -> Runner {
        let mut globals = Vec::new();
        if let Some(z) = &cli.zoo {
            globals.extend(["--zoo".to_string(), s(z)]);
        }
        if let Some(l) = &cli.ort_lib {
            globals.extend(["--ort-lib".to_string(), s(l)]);
        }
        Runner {
            globals,
            json,
            commands: Vec::new(),
            skipped: false,
            stamps: run.join(".fit"),
        }
    }

    /// `xfer SUB ARGS… GLOBALS…` as an argument vector.
    pub fn argv(&self, sub: &str, args: Vec<String>) -> Vec<String> {
        let mut v = vec!["xfer".to_string(), sub.to_string()];
        v.extend(args);
        v.extend(self.globals.iter().cloned());
        v
    }

    /// Prints `argv` and runs it here, as `main` would.
    pub fn run(&mut self, argv: &[String]) -> Result<i32> {
        let line = shell::line(argv);
        eprintln!("\n$ {line}");
        self.commands.push(line.clone());
        let cli = Cli::try_parse_from(argv)
            .map_err(|e| anyhow!("internal error: `{line}` does not parse ({e})"))?;
        let result = if self.json {
            with_stdout_on_stderr(|| crate::cli::dispatch(cli))
        } else {
            crate::cli::dispatch(cli)
        };
        let code = result.with_context(|| {
            format!("the step `{line}` failed (once that is fixed, run the same `xfer fit` again: it continues from there)")
        })?;
        match code {
            0 => Ok(0),
            EXIT_SKIPPED => {
                self.skipped = true;
                Ok(code)
            }
            c => bail!("the step `{line}` ended with exit status {c}"),
        }
    }

    /// Runs `argv` unless its record says it already ran with these inputs
    /// and its `outputs` exist. A rerun over files it writes (`writes`, an
    /// earlier or interrupted run's) gets `--overwrite` (the record is of the
    /// line without it).
    pub fn step(
        &mut self,
        name: &str,
        mut argv: Vec<String>,
        inputs: &[&Path],
        outputs: &[PathBuf],
        writes: &[PathBuf],
    ) -> Result<bool> {
        let key = step_key(&shell::line(&argv), inputs)?;
        let record = self.stamps.join(format!("{name}.stamp"));
        let done = std::fs::read_to_string(&record).is_ok_and(|k| k == key)
            && outputs.iter().all(|o| o.exists());
        if done {
            eprintln!("\n# up to date: {}", shell::line(&argv));
            self.commands.push(shell::line(&argv));
            return Ok(false);
        }
        let _ = std::fs::remove_file(&record);
        if outputs.iter().chain(writes).any(|o| o.exists()) {
            argv.push("--overwrite".into());
        }
        self.run(&argv)?;
        write_bytes_atomic(&record, key.as_bytes())?;
        Ok(true)
    }
}

/// `flag FILE` for each of `files` (`--train a.h5 --train b.h5`).
pub(super) fn each(flag: &str, files: &[&Path]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| [flag.to_string(), s(f)])
        .collect()
}

/// SHA-256 of a step's command line and its input files' contents.
fn step_key(line: &str, inputs: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(line.as_bytes());
    for i in inputs {
        h.update([0]);
        h.update(i.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(xfer::models::zoo::sha256_file(i)?.as_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_lines_parse_as_the_plumbing() {
        for line in [
            vec![
                "xfer", "extract", "--model", "m", "--list", "a.csv", "--out", "a.h5", "--resume",
            ],
            vec![
                "xfer", "train", "--train", "a.h5", "--out", "r", "--seed", "0", "--head",
                "logistic",
            ],
            vec![
                "xfer",
                "evaluate",
                "--bundle",
                "b",
                "--features",
                "f",
                "--report",
                "r",
                "--csv",
                "r/p.csv",
            ],
        ] {
            assert!(Cli::try_parse_from(&line).is_ok(), "{line:?}");
        }
    }
}
