//! An ONNX Runtime library the user names (--ort-lib, ORT_DYLIB_PATH) must be
//! there: a wrong path is an error naming it, never silently replaced by the
//! library `tools/setup.sh` installed.

use crate::common::{self, tiny};

use std::process::Output;

/// `xfer <args>` with the user's environment (HOME intact: the set-up library
/// is there to be wrongly picked), plus `env`.
fn xfer(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::xfer_cmd(args);
    cmd.env_remove("ORT_DYLIB_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::output(cmd)
}

fn assert_named_and_refused(o: &Output, path: &str, via: &str) {
    let txt = common::text(o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains(&format!(
            "no ONNX Runtime library found at {path}, which {via} names"
        )) && txt.contains("no such file")
            && txt.contains("tools/setup.sh"),
        "{txt}"
    );
    assert!(!txt.contains("panicked"), "{txt}");
}

#[test]
fn ort_lib_that_does_not_exist_is_an_error() {
    let o = xfer(
        &[
            "--ort-lib",
            "/no/such/file",
            "bench-model",
            "--model",
            &tiny(),
        ],
        &[],
    );
    assert_named_and_refused(&o, "/no/such/file", "--ort-lib");
}

#[test]
fn ort_dylib_path_that_does_not_exist_is_an_error() {
    let o = xfer(
        &["bench-model", "--model", &tiny()],
        &[("ORT_DYLIB_PATH", "/no/such")],
    );
    assert_named_and_refused(&o, "/no/such", "ORT_DYLIB_PATH");
}

#[test]
fn info_names_the_missing_library_and_loads_no_other() {
    for (args, env, path) in [
        (
            vec!["info", "--ort-lib", "/no/such/file"],
            vec![],
            "/no/such/file",
        ),
        (
            vec!["info"],
            vec![("ORT_DYLIB_PATH", "/no/such")],
            "/no/such",
        ),
    ] {
        let o = xfer(&args, &env);
        let txt = common::text(&o);
        assert!(
            txt.contains(&format!("no ONNX Runtime library found at {path}")),
            "{txt}"
        );
        assert!(!txt.contains("ONNX Runtime 1.31.1 from"), "{txt}");
    }
}

/// `xfer info` prints the runtime's error and carries on to the zoo; it exits 0
/// until src/cli/info.rs returns the error of a library the user named.
#[test]

fn info_with_a_missing_named_library_exits_non_zero() {
    let o = xfer(&["info", "--ort-lib", "/no/such/file"], &[]);
    assert_ne!(o.status.code(), Some(0), "{}", common::text(&o));
    let o = xfer(&["info"], &[("ORT_DYLIB_PATH", "/no/such")]);
    assert_ne!(o.status.code(), Some(0), "{}", common::text(&o));
}

#[test]
fn the_set_up_library_still_loads_when_nothing_is_named() {
    let o = xfer(&["info"], &[]);
    let txt = common::text(&o);
    assert!(o.status.success(), "{txt}");
    assert!(txt.contains("ONNX Runtime 1.31.1 from"), "{txt}");
}

/// `xfer info` tries each provider on a throwaway session and prints ONNX
/// Runtime's answer: this CPU-only library runs the CPU test session and refuses
/// CUDA and TensorRT with its own words, never "available".
#[test]
fn info_reports_a_real_try_of_each_provider() {
    let o = xfer(&["info"], &[]);
    let txt = common::text(&o);
    assert!(o.status.success(), "{txt}");
    let line = |p: &str| {
        txt.lines()
            .find(|l| l.trim_start().starts_with(p))
            .unwrap_or_else(|| panic!("no {p} line in {txt}"))
            .to_owned()
    };
    assert!(
        line("CPUExecutionProvider")
            .contains("works: a test session ran (2 nodes on CPUExecutionProvider)"),
        "{txt}"
    );
    for p in ["CUDAExecutionProvider", "TensorrtExecutionProvider"] {
        let l = line(p);
        assert!(
            l.contains("not usable: registering the provider:")
                && l.contains("execution provider is not enabled in this build"),
            "{l}"
        );
    }
    assert!(!txt.contains("available"), "{txt}");
}
