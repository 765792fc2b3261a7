//! Nothing half-written ever looks complete, and every interrupted run can be
//! finished into the result of an uninterrupted one: two writers, a full disk,
//! and `kill -9` at seeded random moments during extraction and training.

use crate::common::{self, done, ok, s, xfer};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xfer::features::store;
use xfer::ship::bundle::Bundle;

fn extract_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    common::tiny_extract_args(data, out, &[&["--batch", "4"], extra].concat())
}

/// Same rows, labels, paths, skipped files, provenance, and features bit for bit.
fn assert_same_file(a: &Path, b: &Path) {
    let (a, b) = (store::read(a).unwrap(), store::read(b).unwrap());
    assert_eq!(a.paths, b.paths);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.skipped, b.skipped);
    assert_eq!(a.provenance, b.provenance);
    assert_eq!(a.data, b.data, "features differ");
}

/// A tiny seeded generator for the kill moments (splitmix64).
struct Seeded(u64);
impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs `args` and kills it (SIGKILL) after `ms` milliseconds, unless it ended before.
fn run_and_kill(args: &[String], ms: u64) -> bool {
    let mut child = Command::new(common::XFER)
        .args(args)
        .current_dir(common::repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    killed
}

#[test]
fn a_second_writer_is_refused_naming_the_first() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 3);
    let out = t.path().join("f.h5");
    let held = xfer::util::lock::OutputLock::acquire(&out).unwrap();
    let o = xfer(&extract_args(&data, &out, &["--overwrite"]));
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    let me = std::process::id().to_string();
    assert!(
        txt.contains("another xfer process") && txt.contains(&me),
        "{txt}"
    );
    assert!(
        !out.exists() && !store::partial_path(&out).exists(),
        "{txt}"
    );
    drop(held);
    ok(xfer(&extract_args(&data, &out, &[])));

    // The same for a training run into a folder another run is writing.
    let run = t.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let held = xfer::util::lock::OutputLock::acquire(&run.join("run")).unwrap();
    let o = common::xfer(&["train", "--train", s(&out), "--out", s(&run)]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(txt.contains(&me), "{txt}");
    drop(held);
}

/// Mounts a tmpfs of `kib` KiB at `dir` (root only); false where that is not allowed.
fn mount_tmpfs(dir: &Path, kib: u64) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={kib}k"),
            "tmpfs",
            s(dir),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_resume_completes_the_file() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 300);
    let reference = t.path().join("ref.h5");
    ok(xfer(&extract_args(&data, &reference, &[])));
    let size = std::fs::metadata(&reference).unwrap().len();

    let disk = t.path().join("disk");
    if !mount_tmpfs(&disk, 8 * 1024) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root; CI runs as root)");
        return;
    }
    let _unmount = Unmount(disk.clone());
    // Leave room for about half of the file, above the writer's 2 MiB margin.
    let free = || {
        let st = nix_statvfs(&disk);
        st.0 * st.1
    };
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; (free() - (2 << 20) - size / 2) as usize]).unwrap();
    let out = disk.join("f.h5");
    let o = xfer(&extract_args(&data, &out, &[]));
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "must fail: {txt}");
    assert!(
        txt.contains("No space left on device") || txt.contains("disk is full"),
        "{txt}"
    );
    assert!(txt.contains("--resume"), "the error says what to do: {txt}");
    assert!(!txt.contains("panicked"), "{txt}");
    assert!(!out.exists(), "nothing may look complete: {txt}");
    assert!(store::partial_path(&out).exists(), "{txt}");
    std::fs::remove_file(&filler).unwrap();
    ok(xfer(&extract_args(&data, &out, &["--resume"])));
    assert_same_file(&reference, &out);
}

/// (fragment size, available fragments) of the filesystem holding `p`.
fn nix_statvfs(p: &Path) -> (u64, u64) {
    let o = Command::new("stat")
        .args(["-f", "-c", "%S %a", s(p)])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Kills to try in each matrix; `XFER_KILLS` sets another number (tools/kill_matrix.sh).
fn kills() -> u64 {
    std::env::var("XFER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[test]
fn kill_matrix_extraction_resumes_to_the_uninterrupted_file() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b", "c"], 200);
    std::fs::write(data.join("b/bad.jpg"), b"not a jpeg").unwrap();
    let reference = t.path().join("ref.h5");
    let full_ms = warm_run_ms(|| {
        done(xfer(&extract_args(&data, &reference, &["--overwrite"])));
    });
    let mut rng = Seeded(2026);
    let (mut tries, mut midway, mut resumed_twice) = (0, 0, 0);
    // Kill moments are drawn until `kills()` of them landed mid-run (a kill
    // after the run ended proves nothing), at most 4 × as many tries.
    while midway < kills() && tries < 4 * kills() {
        let k = tries;
        tries += 1;
        let out = t.path().join(format!("k{k}.h5"));
        let at = rng.below(full_ms);
        let killed = run_and_kill(&extract_args(&data, &out, &[]), at);
        if killed && !out.exists() {
            midway += 1;
            assert!(store::read(&out).is_err(), "kill {k} at {at} ms");
        }
        // Resume, killed once more at another moment half of the time.
        if store::partial_path(&out).exists() && rng.below(2) == 0 {
            let again = rng.below(full_ms);
            if run_and_kill(&extract_args(&data, &out, &["--resume"]), again) {
                resumed_twice += 1;
            }
        }
        if !out.exists() {
            let flag = if store::partial_path(&out).exists() {
                "--resume"
            } else {
                "--overwrite"
            };
            done(xfer(&extract_args(&data, &out, &[flag])));
        }
        assert_same_file(&reference, &out);
    }
    eprintln!(
        "kill matrix (extraction): {tries} kills, {midway} midway, {resumed_twice} resumes killed again; a warm run takes {full_ms} ms"
    );
    assert!(
        midway >= kills() / 2,
        "too few kills landed midway: {midway} of {tries}"
    );
}

/// The shortest of three runs of `run`, in milliseconds: the first run of a
/// fresh machine is slow (cold caches), which would put most kill moments
/// after the end of a warm run.
fn warm_run_ms(mut run: impl FnMut()) -> u64 {
    (0..3)
        .map(|_| {
            let t0 = Instant::now();
            run();
            t0.elapsed().as_millis() as u64
        })
        .min()
        .unwrap()
        .max(1)
}

#[test]
fn kill_matrix_training_leaves_whole_files_or_none() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b", "c"], 40);
    let feats = t.path().join("f.h5");
    ok(xfer(&extract_args(&data, &feats, &[])));
    let train = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            "--train",
            s(&feats),
            "--val-split",
            "0.2",
            "--out",
            s(out),
            "--epochs",
            "30",
            "--hidden",
            "64",
            "--optim",
            "adam",
        ]
        .map(String::from)
        .to_vec();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let reference = t.path().join("ref");
    let full_ms = warm_run_ms(|| {
        ok(xfer(&train(&reference, &["--overwrite"])));
    });
    let tensors = |p: &Path| {
        let b = Bundle::load(p).unwrap();
        (
            b.mlp,
            b.standardize.map(|s| (s.mean, s.scale)),
            b.meta.class_names,
        )
    };
    let files = [
        "mlp.safetensors",
        "logistic.safetensors",
        "metrics.json",
        "learning_curve.svg",
    ];
    let mut rng = Seeded(7);
    let (mut tries, mut midway) = (0, 0);
    while midway < kills() && tries < 4 * kills() {
        let k = tries;
        tries += 1;
        let out = t.path().join(format!("k{k}"));
        if run_and_kill(&train(&out, &[]), rng.below(full_ms)) {
            midway += 1;
        }
        // Whatever is there under a final name is whole.
        for f in files {
            let p = out.join(f);
            if !p.exists() {
                continue;
            }
            if f.ends_with(".safetensors") {
                assert_eq!(tensors(&p), tensors(&reference.join(f)), "kill {k}: {f}");
            } else if f == "metrics.json" {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                assert!(v["heads"].is_array(), "kill {k}: {f}");
            } else {
                let svg = std::fs::read_to_string(&p).unwrap();
                assert!(svg.trim_end().ends_with("</svg>"), "kill {k}: {f}");
            }
        }
        // A rerun gives the uninterrupted result.
        ok(xfer(&train(&out, &["--overwrite"])));
        for f in ["mlp.safetensors", "logistic.safetensors"] {
            assert_eq!(
                tensors(&out.join(f)),
                tensors(&reference.join(f)),
                "rerun {k}: {f}"
            );
        }
    }
    eprintln!(
        "kill matrix (training): {tries} kills, {midway} before the run ended; a warm run takes {full_ms} ms"
    );
    assert!(
        midway >= kills() / 2,
        "too few kills landed midway: {midway} of {tries}"
    );
}
