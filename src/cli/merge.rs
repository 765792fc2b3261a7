//! `xfer merge`: the shard files of a sharded extraction into one feature file.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use xfer::features::store;
use xfer::util::clobber::{refuse_inputs, Input};

use super::common::check_output;

#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer merge --out train_lite0.h5 shards/s0.h5 shards/s1.h5 shards/s2.h5 shards/s3.h5
  xfer merge --out train_lite0.h5 shards/*.h5 --json
  (a shard missing, given twice or extracted from another file list is an error naming it)")]
pub struct MergeArgs {
    /// The merged feature file: equal to an unsharded extraction's.
    #[arg(long, value_name = "FILE.h5")]
    out: PathBuf,
    /// Replace OUT (and any OUT.partial) if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Print one JSON object on stdout at the end instead of the summary.
    #[arg(long)]
    json: bool,
    /// Every shard file of one `xfer extract --shard I/N` run, in any order.
    #[arg(value_name = "SHARD_FILES", required = true)]
    shards: Vec<PathBuf>,
}

pub fn merge(args: &MergeArgs) -> Result<i32> {
    check_output("--out", &args.out, args.overwrite)?;
    let partial = store::partial_path(&args.out);
    if partial.exists() && !args.overwrite {
        bail!(
            "{} exists (an interrupted extraction or merge); pass --overwrite to replace it",
            partial.display()
        );
    }
    // One of the shards under any name (the same path, a link, another spelling).
    let inputs: Vec<Input> = args
        .shards
        .iter()
        .map(|s| Input::new("a shard file", s))
        .collect();
    refuse_inputs("--out", &args.out, &inputs)?;
    let _lock = xfer::util::lock::OutputLock::acquire(&args.out)?;
    let s = xfer::features::merge::merge(&args.shards, &args.out, &mut |_, _| {})?;
    if args.json {
        let json = serde_json::json!({
            "command": "merge",
            "out": args.out,
            "shards": s.shards,
            "rows": s.rows,
            "skipped_files": s.skipped,
            "list_sha256": s.list.sha256,
            "list_len": s.list.len,
            "providers": s.providers,
            "seconds": s.seconds,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(0);
    }
    println!(
        "merged {} shards into {}: {} rows, {} skipped files ({}), {:.1} s",
        s.shards,
        args.out.display(),
        s.rows,
        s.skipped,
        s.list.describe_list(),
        s.seconds
    );
    if s.providers.len() > 1 {
        println!(
            "note: the shards ran on different execution providers ({}); the file records them all",
            s.providers.join(", ")
        );
    }
    Ok(0)
}
