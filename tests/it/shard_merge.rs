//! Sharded extraction and `xfer merge`, as the schedulers run them: N local
//! `xfer extract --shard auto/N` processes at once, each with the variable its
//! scheduler sets (`SLURM_ARRAY_TASK_ID` for a Slurm job array,
//! `JOB_COMPLETION_INDEX` for a Kubernetes Indexed Job), one of them killed
//! (SIGKILL) mid-run and started again with `--resume`, then the merge, which
//! must equal an unsharded run: every dataset bit for bit and every attribute.
//! Then what must be refused (a shard missing, given twice, stale, resumed
//! against a changed list), the rerun of a completed shard, `--list` input, the
//! GPU index flag, and the recipes' task script.
//!
//! The simulations use EfficientNet-Lite0 (real weights) on 51 of the Tux Paint
//! photos plus two broken files; the error cases use the tiny test model on
//! real photos too. Needs tools/setup.sh's model and data/stamps.

use crate::common::{self, done, output, s};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdf5::types::VarLenUnicode;
use xfer::features::shard::Shard;
use xfer::features::store::{self, FeatureWriter, FileReader, ListInfo};

/// `xfer` with no scheduler variables but those a test sets.
fn xfer_cmd(args: &[&str]) -> Command {
    let mut c = common::xfer_cmd(args);
    for v in xfer::features::shard::INDEX_VARIABLES {
        c.env_remove(v);
    }
    c
}

/// Failed with status 1 and a message containing every one of `needles`.
fn refused(o: Output, needles: &[&str]) -> String {
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(!txt.contains("panicked"), "{txt}");
    for n in needles {
        assert!(txt.contains(n), "expected {n:?} in\n{txt}");
    }
    txt
}

/// Copies the image files of `classes` of data/stamps (real photos) into `dst`.
fn copy_stamps(dst: &Path, classes: &[&str]) {
    let stamps = common::repo().join("data/stamps");
    assert!(
        stamps.join(".complete").exists(),
        "{} is missing: run tools/fetch_stamps.sh (the test command's set-up does)",
        stamps.display()
    );
    for c in classes {
        std::fs::create_dir_all(dst.join(c)).unwrap();
        for e in std::fs::read_dir(stamps.join(c)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(c).join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Every dataset (values bit for bit, shapes and types) and every attribute
/// of two feature files are equal.
fn assert_same_h5(a: &Path, b: &Path) {
    let (fa, fb) = (hdf5::File::open(a).unwrap(), hdf5::File::open(b).unwrap());
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let names = sorted(fa.member_names().unwrap());
    assert_eq!(names, sorted(fb.member_names().unwrap()), "datasets");
    for n in &names {
        let (da, db) = (fa.dataset(n).unwrap(), fb.dataset(n).unwrap());
        assert_eq!(da.shape(), db.shape(), "{n}");
        assert_eq!(
            da.dtype().unwrap().to_descriptor().unwrap(),
            db.dtype().unwrap().to_descriptor().unwrap(),
            "{n}"
        );
        match n.as_str() {
            "data" => {
                let bits = |d: &hdf5::Dataset| -> Vec<u32> {
                    d.read_raw::<f32>()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect()
                };
                assert!(bits(&da) == bits(&db), "features differ");
            }
            "label" => assert_eq!(da.read_raw::<i64>().unwrap(), db.read_raw::<i64>().unwrap()),
            _ => assert_eq!(
                da.read_raw::<VarLenUnicode>().unwrap(),
                db.read_raw::<VarLenUnicode>().unwrap(),
                "{n}"
            ),
        }
    }
    let attrs = sorted(fa.attr_names().unwrap());
    assert_eq!(attrs, sorted(fb.attr_names().unwrap()), "attribute names");
    for n in &attrs {
        let (x, y) = (fa.attr(n).unwrap(), fb.attr(n).unwrap());
        match x.read_scalar::<u64>() {
            Ok(v) => assert_eq!(v, y.read_scalar::<u64>().unwrap(), "attribute {n}"),
            Err(_) => assert_eq!(
                x.read_scalar::<VarLenUnicode>().unwrap(),
                y.read_scalar::<VarLenUnicode>().unwrap(),
                "attribute {n}"
            ),
        }
    }
}

/// The photos of the simulations and the unsharded reference, made once.
struct Fixture {
    data: PathBuf,
    reference: PathBuf,
}

/// Flags of every Lite0 run: one intra-op thread and one decoder, since the
/// shards run side by side on the test machine's cores.
const LITE0: [&str; 8] = [
    "--model",
    "efficientnet_lite0",
    "--batch",
    "4",
    "--threads",
    "1",
    "--decode-threads",
    "1",
];

fn lite0_extract(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["extract", "--data", s(data), "--out", s(out)];
    args.extend(LITE0);
    args.extend(extra);
    xfer_cmd(&args)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        common::setup_file("onnx/efficientnet_lite0.onnx");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shard_merge");
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("photos");
        copy_stamps(&data, &["flowers", "fruit"]);
        // Skipped files in two different shards: their order must survive.
        std::fs::write(data.join("flowers/broken.png"), b"not a png").unwrap();
        std::fs::write(data.join("fruit/zz_empty.jpg"), b"").unwrap();
        let reference = dir.join("unsharded.h5");
        let o = done(output(lite0_extract(&data, &reference, &[])));
        assert_eq!(o.status.code(), Some(3), "two files are skipped");
        assert_eq!(store::read(&reference).unwrap().skipped.len(), 2);
        Fixture { data, reference }
    })
}

#[derive(Clone, Copy, Debug)]
enum Scheduler {
    Slurm,
    Kubernetes,
}

/// Sets the variables a scheduler gives task `i` of `n`.
fn task_env(c: &mut Command, scheduler: Scheduler, i: usize, n: usize) {
    match scheduler {
        Scheduler::Slurm => {
            c.env("SLURM_JOB_ID", (4243 + i).to_string())
                .env("SLURM_ARRAY_JOB_ID", "4242")
                .env("SLURM_ARRAY_TASK_ID", i.to_string())
                .env("SLURM_ARRAY_TASK_COUNT", n.to_string())
                .env("SLURM_ARRAY_TASK_MIN", "0")
                .env("SLURM_ARRAY_TASK_MAX", (n - 1).to_string());
        }
        Scheduler::Kubernetes => {
            c.env("JOB_COMPLETION_INDEX", i.to_string())
                .env("HOSTNAME", format!("xfer-extract-{i}-x7k2q"));
        }
    }
}

/// The rows committed in a partial file being written, when it can be read
/// (the writer flushes after every batch; a read that meets a write fails).
fn rows_done(partial: &Path) -> Option<u64> {
    let f = hdf5::File::open(partial).ok()?;
    f.attr("rows_done").ok()?.read_scalar::<u64>().ok()
}

/// Waits for `child` until its partial file has committed a batch, then kills
/// it with SIGKILL. Returns whether it was killed mid-run.
fn kill_mid_run(child: &mut std::process::Child, out: &Path) -> bool {
    let partial = store::partial_path(out);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if partial.exists() && rows_done(&partial).is_some_and(|r| r > 0) {
            child.kill().unwrap(); // SIGKILL: kill -9
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{} never wrote a batch", out.display());
}

/// N shard processes at once, the `victim` killed mid-run and resumed, a
/// completed shard run again, then the merge: equal to the unsharded run.
fn simulate(scheduler: Scheduler, n: usize, victim: usize) {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let out = |i: usize| t.path().join(format!("shard-{i}-of-{n}.h5"));
    let spec = format!("auto/{n}");
    let shard_cmd = |i: usize, extra: &[&str]| {
        let mut args = vec!["--shard", spec.as_str()];
        args.extend(extra);
        let mut c = lite0_extract(&f.data, &out(i), &args);
        task_env(&mut c, scheduler, i, n);
        c
    };
    let mut killed = false;
    for attempt in 0..3 {
        let mut children: Vec<_> = (0..n)
            .map(|i| {
                let mut c = shard_cmd(i, &["--overwrite"]);
                c.stdout(Stdio::piped()).stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        killed = kill_mid_run(&mut children[victim], &out(victim));
        for (i, c) in children.into_iter().enumerate() {
            if i != victim {
                done(c.wait_with_output().unwrap());
            }
        }
        if killed {
            break;
        }
        eprintln!("{scheduler:?}: shard {victim} ended before the kill (attempt {attempt}); again");
    }
    assert!(
        killed,
        "{scheduler:?}: could not kill shard {victim} mid-run"
    );
    assert!(!out(victim).exists(), "nothing half-written looks complete");
    assert!(store::partial_path(&out(victim)).exists());

    // The scheduler's retry: the same task, with --resume.
    let o = done(output(shard_cmd(victim, &["--resume"])));
    let txt = common::text(&o);
    assert!(txt.contains("(resumed after "), "{txt}");
    eprintln!(
        "{scheduler:?}: shard {victim} killed mid-run, then {}",
        txt.lines()
            .find(|l| l.contains("resumed after"))
            .unwrap_or("?")
    );

    // A completed shard run again does nothing and says so, with or without --resume.
    for extra in [&[][..], &["--resume"][..]] {
        let before = std::fs::metadata(out(0)).unwrap().modified().unwrap();
        let o = output(shard_cmd(0, extra));
        let txt = common::text(&o);
        assert_eq!(o.status.code(), Some(0), "{txt}");
        assert!(
            txt.contains(&format!("shard 0/{n}")) && txt.contains("nothing to do"),
            "{txt}"
        );
        let after = std::fs::metadata(out(0)).unwrap().modified().unwrap();
        assert_eq!(before, after, "the completed shard is left as it is");
    }

    // Each shard records which files of which list it holds.
    for i in 0..n {
        let r = FileReader::open(&out(i)).unwrap();
        let list = r.list.unwrap();
        assert_eq!(
            list.shard,
            Some(Shard {
                index: i as u64,
                count: n as u64
            })
        );
        assert_eq!(list.len, 53);
    }

    // The merge, shards given in any order, equals the unsharded run.
    let merged = t.path().join("merged.h5");
    let mut args = vec!["merge".to_string(), "--out".into(), s(&merged).into()];
    args.extend((0..n).rev().map(|i| s(&out(i)).to_string()));
    let o = output(xfer_cmd(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert_same_h5(&f.reference, &merged);
    let m = store::read(&merged).unwrap();
    let skipped: Vec<&str> = m.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(skipped, ["flowers/broken.png", "fruit/zz_empty.jpg"]);

    // And is an ordinary feature file: training takes it.
    let o = output(xfer_cmd(&[
        "train",
        "--train",
        s(&merged),
        "--val-split",
        "0.2",
        "--head",
        "logistic",
        "--out",
        s(&t.path().join("run")),
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
}

#[test]
fn slurm_job_array_with_a_killed_task_merges_into_the_unsharded_file() {
    simulate(Scheduler::Slurm, 3, 1);
}

#[test]
fn kubernetes_indexed_job_with_a_killed_pod_merges_into_the_unsharded_file() {
    simulate(Scheduler::Kubernetes, 4, 2);
}

// ---- The error cases, on the tiny test model (fast) and real photos.

fn tiny_extract(data_flag: &str, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let tiny = common::tiny_manifest();
    let mut args = vec![
        "extract",
        "--model",
        s(&tiny),
        data_flag,
        s(input),
        "--out",
        s(out),
        "--batch",
        "4",
    ];
    args.extend(extra);
    output(xfer_cmd(&args))
}

fn merge(out: &Path, shards: &[&Path]) -> Output {
    let mut args = vec!["merge", "--out", s(out)];
    args.extend(shards.iter().map(|p| s(p)));
    output(xfer_cmd(&args))
}

/// Real photos (vegetables and vehicles) and their three tiny-model shard files.
fn tiny_shards(t: &Path) -> (PathBuf, Vec<PathBuf>) {
    let data = t.join("photos");
    copy_stamps(&data, &["vegetables", "vehicles"]);
    let shards: Vec<PathBuf> = (0..3).map(|i| t.join(format!("s{i}.h5"))).collect();
    for (i, p) in shards.iter().enumerate() {
        done(tiny_extract(
            "--data",
            &data,
            p,
            &["--shard", &format!("{i}/3")],
        ));
    }
    (data, shards)
}

#[test]
fn missing_duplicated_and_stale_shards_are_errors_naming_them() {
    let t = tempfile::tempdir().unwrap();
    let (data, sh) = tiny_shards(t.path());
    let out = t.path().join("m.h5");
    refused(merge(&out, &[&sh[0], &sh[2]]), &["shard 1/3", "missing"]);
    let copy = t.path().join("s0-again.h5");
    std::fs::copy(&sh[0], &copy).unwrap();
    refused(
        merge(&out, &[&sh[0], &sh[1], &sh[2], &copy]),
        &[s(&sh[0]), s(&copy), "both shard 0/3"],
    );
    refused(
        merge(&out, &[&sh[0], &sh[1], &sh[2], &sh[1]]),
        &[s(&sh[1]), "given twice"],
    );
    // Stale: shard 2 extracted again after a photo was added.
    std::fs::copy(
        data.join("vegetables/carrot.png"),
        data.join("vegetables/carrot2.png"),
    )
    .unwrap();
    let stale = t.path().join("s2-new.h5");
    done(tiny_extract("--data", &data, &stale, &["--shard", "2/3"]));
    refused(
        merge(&out, &[&sh[0], &sh[1], &stale]),
        &[s(&stale), "another file list", "stale"],
    );
    // Another N, a whole file, an interrupted shard.
    let other_n = t.path().join("t0.h5");
    done(tiny_extract("--data", &data, &other_n, &["--shard", "0/2"]));
    refused(
        merge(&out, &[&sh[1], &sh[2], &other_n]),
        &[s(&other_n), "of 2 shards, not 3"],
    );
    let whole = t.path().join("whole.h5");
    done(tiny_extract("--data", &data, &whole, &[]));
    refused(
        merge(&out, &[&sh[0], &sh[1], &whole]),
        &[s(&whole), "not a shard file"],
    );
    let r = FileReader::open(&sh[1]).unwrap();
    let partial_out = t.path().join("p1.h5");
    drop(FeatureWriter::create_for(&partial_out, r.dim, &r.provenance, r.list.as_ref()).unwrap());
    let partial = store::partial_path(&partial_out);
    refused(
        merge(&out, &[&sh[0], &partial, &sh[2]]),
        &["not complete", "--shard 1/3 --resume"],
    );
    // A shard computed in another precision (bf16, under OpenVINO): one merged
    // file holds one precision.
    let r = FileReader::open(&sh[2]).unwrap();
    let mut prov = r.provenance.clone();
    prov.execution_provider = "OpenVINOExecutionProvider".into();
    prov.inference_precision = "bf16".into();
    let bf16 = t.path().join("s2-bf16.h5");
    let mut w = FeatureWriter::create_for(&bf16, r.dim, &prov, r.list.as_ref()).unwrap();
    let (x, labels, paths) = r.block(0..r.rows).unwrap();
    w.append(x.view(), &labels, &paths, &[]).unwrap();
    w.finish().unwrap();
    refused(
        merge(&out, &[&sh[0], &sh[1], &bf16]),
        &[s(&bf16), "was computed in bf16, not the model's precision"],
    );
    assert!(!out.exists() && !store::partial_path(&out).exists());
    // A shard is not a dataset: training on one is refused, naming the merge.
    refused(
        output(xfer_cmd(&[
            "train",
            "--train",
            s(&sh[0]),
            "--out",
            s(&t.path().join("run")),
        ])),
        &["shard 0/3", "xfer merge"],
    );
    // The good three merge; again only with --overwrite.
    assert_eq!(
        merge(&out, &[&sh[2], &sh[0], &sh[1]]).status.code(),
        Some(0)
    );
    refused(merge(&out, &[&sh[2], &sh[0], &sh[1]]), &["--overwrite"]);
    let mut args = vec!["merge", "--json", "--overwrite", "--out", s(&out)];
    args.extend(sh.iter().map(|p| s(p)));
    let o = output(xfer_cmd(&args));
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["command"], "merge");
    assert_eq!(j["shards"], 3);
    assert_eq!(j["rows"], store::read(&out).unwrap().data.nrows());
}

#[test]
fn a_shard_is_resumed_or_rerun_only_against_the_same_list() {
    let t = tempfile::tempdir().unwrap();
    let (data, sh) = tiny_shards(t.path());
    // An interrupted shard 0/3, as a killed run leaves it.
    let r = FileReader::open(&sh[0]).unwrap();
    let out = t.path().join("p0.h5");
    let (rows, labels, paths) = r.block(0..3).unwrap();
    let mut w = FeatureWriter::create_for(&out, r.dim, &r.provenance, r.list.as_ref()).unwrap();
    w.append(rows.view(), &labels, &paths, &[]).unwrap();
    drop(w);
    refused(
        tiny_extract("--data", &data, &out, &["--shard", "2/3", "--resume"]),
        &["holds shard 0/3", "pass --shard 0/3"],
    );
    refused(
        tiny_extract("--data", &data, &out, &["--resume"]),
        &["holds shard 0/3", "pass --shard 0/3"],
    );
    // A photo added after the vegetables: shard 0's own files are unchanged,
    // but the shards no longer fit each other.
    std::fs::copy(
        data.join("vehicles/auto_sedan.png"),
        data.join("vehicles/zz_sedan.png"),
    )
    .unwrap();
    refused(
        tiny_extract("--data", &data, &out, &["--shard", "0/3", "--resume"]),
        &[
            "another file list",
            "the dataset changed",
            "--overwrite",
            "p0.h5.partial",
        ],
    );
    refused(
        tiny_extract("--data", &data, &sh[1], &["--shard", "1/3"]),
        &[s(&sh[1]), "another file list", "stale"],
    );
    // Put back, the interrupted shard resumes into the uninterrupted one.
    std::fs::remove_file(data.join("vehicles/zz_sedan.png")).unwrap();
    let o = done(tiny_extract(
        "--data",
        &data,
        &out,
        &["--shard", "0/3", "--resume"],
    ));
    assert!(
        common::text(&o).contains("resumed after 3 rows"),
        "{}",
        common::text(&o)
    );
    assert_same_h5(&sh[0], &out);
    // Another model's file under the shard's name is not taken for it.
    let mut other = r.provenance.clone();
    other.model_sha256 = "0".repeat(64);
    let fake = t.path().join("fake.h5");
    let w = FeatureWriter::create_for(&fake, r.dim, &other, r.list.as_ref()).unwrap();
    w.finish().unwrap();
    refused(
        tiny_extract("--data", &data, &fake, &["--shard", "0/3"]),
        &["model sha256", "--overwrite"],
    );
}

#[test]
fn shard_arguments_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let data = common::repo().join("data/photos");
    let out = t.path().join("f.h5");
    refused(
        tiny_extract("--data", &data, &out, &["--shard", "auto/3"]),
        &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "--shard I/3"],
    );
    let tiny = common::tiny_manifest();
    let mut c = xfer_cmd(&[
        "extract",
        "--model",
        s(&tiny),
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--shard",
        "auto/3",
    ]);
    c.env("JOB_COMPLETION_INDEX", "3");
    refused(output(c), &["JOB_COMPLETION_INDEX=3 is out of range"]);
    refused(
        tiny_extract("--data", &data, &out, &["--shard", "1/0"]),
        &["--shard 1/0"],
    );
    // More shards than files (issue 25: a shard count is a size, bounded by
    // the list): refused, naming the list's length; N = the files works.
    let e0 = t.path().join("e0.h5");
    refused(
        tiny_extract("--data", &data, &e0, &["--shard", "0/3"]),
        &["--shard 0/3", "3 shards for a list of 2 files", "N ≤ 2"],
    );
    let outs: Vec<PathBuf> = (0..2).map(|i| t.path().join(format!("e{i}.h5"))).collect();
    for (i, o) in outs.iter().enumerate() {
        done(tiny_extract(
            "--data",
            &data,
            o,
            &["--shard", &format!("{i}/2")],
        ));
    }
    let m = t.path().join("m.h5");
    let o = merge(&m, &[&outs[0], &outs[1]]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let whole = t.path().join("whole.h5");
    done(tiny_extract("--data", &data, &whole, &[]));
    assert_same_h5(&whole, &m);
}

#[test]
fn device_index_selects_the_gpu_of_a_shard() {
    // No GPU here: the flags parse, and the fallback says what was asked.
    let t = tempfile::tempdir().unwrap();
    let data = common::repo().join("data/photos");
    let out = t.path().join("f.h5");
    let o = done(tiny_extract(
        "--data",
        &data,
        &out,
        &[
            "--shard",
            "1/2",
            "--device",
            "cuda",
            "--device-id",
            "1",
            "--allow-cpu-fallback",
        ],
    ));
    let txt = common::text(&o);
    assert!(
        txt.contains("warning") && txt.contains("CUDAExecutionProvider"),
        "{txt}"
    );
    let r = FileReader::open(&out).unwrap();
    assert_eq!(r.provenance.execution_provider, "CPUExecutionProvider");
}

#[test]
fn a_list_is_an_input_like_a_folder() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("photos");
    copy_stamps(&data, &["vegetables", "vehicles"]);
    let folder = t.path().join("folder.h5");
    done(tiny_extract("--data", &data, &folder, &[]));
    let reference = store::read(&folder).unwrap();
    // The same files, listed in another order with their classes, plus one
    // that does not exist; relative to the list's folder, which is the root.
    let paths = reference.paths.clone().unwrap();
    let mut csv = String::from("path,label\n");
    for (p, l) in paths.iter().zip(&reference.labels).rev() {
        let class = &reference.provenance.as_ref().unwrap().class_names[*l as usize];
        csv.push_str(&format!("./{p},{class}\n"));
    }
    csv.push_str("vehicles/gone.png,vehicles\n");
    let list = data.join("list.csv");
    std::fs::write(&list, csv).unwrap();
    let out = t.path().join("list.h5");
    let o = tiny_extract("--list", &list, &out, &[]);
    let txt = common::text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the missing file is skipped: {txt}"
    );
    assert!(
        txt.contains("2 classes from the list's labels, sorted: vegetables, vehicles"),
        "{txt}"
    );
    assert!(
        txt.contains("1 file(s) named by") && txt.contains("vehicles/gone.png"),
        "{txt}"
    );
    let f = store::read(&out).unwrap();
    assert_eq!(f.paths, reference.paths);
    assert_eq!(f.labels, reference.labels);
    assert_eq!(f.data, reference.data, "features bit for bit");
    assert_eq!(f.skipped.len(), 1);
    assert_eq!(f.skipped[0].0, "vehicles/gone.png");
    assert!(
        f.skipped[0].1.contains("No such file"),
        "{:?}",
        f.skipped[0]
    );
    let prov = f.provenance.unwrap();
    assert_eq!(prov.layout, "list");
    assert_eq!(prov.class_names, ["vegetables", "vehicles"]);

    // Sharded, a list merges into its whole extraction.
    let shards: Vec<PathBuf> = (0..2).map(|i| t.path().join(format!("l{i}.h5"))).collect();
    for (i, p) in shards.iter().enumerate() {
        done(tiny_extract(
            "--list",
            &list,
            p,
            &["--shard", &format!("{i}/2")],
        ));
    }
    let merged = t.path().join("merged.h5");
    assert_eq!(
        merge(&merged, &[&shards[0], &shards[1]]).status.code(),
        Some(0)
    );
    assert_same_h5(&out, &merged);

    // Without labels: an unlabelled file, as a flat folder gives.
    let plain = t.path().join("paths.txt");
    let abs: Vec<String> = paths.iter().map(|p| s(&data.join(p)).to_owned()).collect();
    std::fs::write(&plain, abs.join("\n")).unwrap();
    let out = t.path().join("plain.h5");
    let o = done(tiny_extract("--list", &plain, &out, &[]));
    assert!(
        common::text(&o).contains("no labels"),
        "{}",
        common::text(&o)
    );
    let f = store::read(&out).unwrap();
    assert!(f.labels.iter().all(|&l| l == -1));
    assert!(f.provenance.unwrap().class_names.is_empty());
    assert_eq!(f.data, reference.data);
}

#[test]
fn the_recipes_task_script_runs_resumes_and_merges() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("photos");
    copy_stamps(&data, &["vegetables"]);
    std::fs::write(data.join("vegetables/bad.jpg"), b"").unwrap();
    let whole = t.path().join("whole.h5");
    done(tiny_extract("--data", &data, &whole, &[]));
    let out = t.path().join("feats.h5");
    let shards = t.path().join("feats.h5.shards");
    let n = 3;
    let task = |scheduler: Scheduler, i: usize| -> Output {
        let mut c = Command::new(common::repo().join("tools/extract_shard.sh"));
        c.current_dir(common::repo())
            .env("N", n.to_string())
            .env("MODEL", common::tiny_manifest())
            .env("DATA", &data)
            .env("SHARDS", &shards)
            .env("XFER", env!("CARGO_BIN_EXE_xfer"))
            .env("XFER_FLAGS", "--batch 4");
        for v in xfer::features::shard::INDEX_VARIABLES {
            c.env_remove(v);
        }
        task_env(&mut c, scheduler, i, n);
        c.output().unwrap()
    };
    // Shard 1 was interrupted after its first file (a partial file holding its row).
    let w = FileReader::open(&whole).unwrap();
    let list = ListInfo {
        shard: Some(Shard { index: 1, count: 3 }),
        ..w.list.clone().unwrap()
    };
    let first =
        &xfer::images::dataset::scan(&data, None).unwrap().items[list.range().start as usize];
    let (_, _, all_paths) = w.block(0..w.rows).unwrap();
    let row = all_paths.iter().position(|p| *p == first.rel_path).unwrap();
    let (rows, labels, paths) = w.block(row..row + 1).unwrap();
    std::fs::create_dir_all(&shards).unwrap();
    let s1 = shards.join("shard-1-of-3.h5");
    let mut writer = FeatureWriter::create_for(&s1, w.dim, &w.provenance, Some(&list)).unwrap();
    writer.append(rows.view(), &labels, &paths, &[]).unwrap();
    drop(writer);
    for (i, scheduler) in [Scheduler::Slurm, Scheduler::Kubernetes, Scheduler::Slurm]
        .into_iter()
        .enumerate()
    {
        let o = task(scheduler, i);
        assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
        if i == 1 {
            assert!(
                common::text(&o).contains("resumed after 1 rows"),
                "{}",
                common::text(&o)
            );
        }
    }
    // A retried task finds its shard complete.
    let o = task(Scheduler::Kubernetes, 2);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("nothing to do"),
        "{}",
        common::text(&o)
    );
    // The dependent merge job of the Slurm recipe.
    let o = Command::new("bash")
        .arg(common::repo().join("tools/slurm/extract.sbatch"))
        .arg("merge")
        .current_dir(common::repo())
        .env("SLURM_JOB_ID", "4250")
        .env("N", n.to_string())
        .env("OUT", &out)
        .env("XFER", env!("CARGO_BIN_EXE_xfer"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert_same_h5(&whole, &out);
}

/// Shard counts are sizes from a flag and from a file's attributes: `--shard
/// 0/100000000` of a small list is refused before anything runs, and `merge`
/// of a shard file claiming 10^8 shards (made here by hand) says in one short
/// line which are missing, instead of allocating one slot per shard (48 GB,
/// an abort; or a 41 MB error line for 10^6).
#[test]
fn shard_counts_beyond_the_list_are_refused_without_allocating() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("photos");
    copy_stamps(&data, &["vegetables"]);
    let n_files = xfer::images::dataset::scan(&data, None)
        .unwrap()
        .items
        .len();
    let out = t.path().join("s.h5");
    let txt = refused(
        tiny_extract("--data", &data, &out, &["--shard", "0/100000000"]),
        &["--shard 0/100000000", &format!("{n_files} files")],
    );
    assert!(
        !out.exists() && !store::partial_path(&out).exists(),
        "{txt}"
    );
    // A shard file of 2 rows that says it is shard 0 of 10^8 of a 2·10^8 list.
    done(tiny_extract("--data", &data, &out, &["--shard", "0/2"]));
    let r = FileReader::open(&out).unwrap();
    let list = ListInfo {
        len: 200_000_000,
        shard: Some(Shard {
            index: 0,
            count: 100_000_000,
        }),
        ..r.list.clone().unwrap()
    };
    assert_eq!(list.range(), 0..2);
    let (rows, labels, paths) = r.block(0..2).unwrap();
    let forged = t.path().join("forged.h5");
    let mut w = FeatureWriter::create_for(&forged, r.dim, &r.provenance, Some(&list)).unwrap();
    w.append(rows.view(), &labels, &paths, &[]).unwrap();
    w.finish().unwrap();
    let o = merge(&t.path().join("m.h5"), &[&forged]);
    let txt = refused(
        o,
        &[
            "99999999 of 100000000 shards missing",
            "shard 1/100000000",
            "and 99999994 more",
        ],
    );
    assert!(txt.len() < 2000, "{} bytes: {txt}", txt.len());
}

/// A shard file whose counters disagree with its datasets is named as
/// damaged with plain numbers (the message used to show `Some(7)`), or
/// "missing".
#[test]
fn damaged_counters_are_said_without_internal_values() {
    let t = tempfile::tempdir().unwrap();
    let (_, sh) = tiny_shards(t.path());
    let f = hdf5::File::open_rw(&sh[1]).unwrap();
    f.delete_attr("rows_done").unwrap();
    f.new_attr::<u64>()
        .create("rows_done")
        .unwrap()
        .write_scalar(&7u64)
        .unwrap();
    f.delete_attr("skipped_done").unwrap();
    drop(f);
    let out = t.path().join("m.h5");
    let txt = refused(
        merge(&out, &[&sh[0], &sh[1], &sh[2]]),
        &["rows_done is 7 but the file holds"],
    );
    assert!(!txt.contains("is Some(") && !out.exists(), "{txt}");
    let f = hdf5::File::open_rw(&sh[1]).unwrap();
    f.delete_attr("rows_done").unwrap();
    drop(f);
    refused(
        merge(&out, &[&sh[0], &sh[1], &sh[2]]),
        &["rows_done is missing"],
    );
}
