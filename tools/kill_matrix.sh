#!/usr/bin/env bash
# The kill -9 matrices of tests/it/crash_safety.rs with many more kills than the
# test command's 20: extraction (resumes killed again at random too) and
# training. Every interrupted run must finish into the uninterrupted result.
#
# Usage: tools/kill_matrix.sh [KILLS]   (default 200 per matrix)
set -euo pipefail
cd "$(dirname "$0")/.."
XFER_KILLS=${1:-200} cargo test --release --test it crash_safety::kill_matrix -- --nocapture --test-threads 1 2>&1 \
  | grep -E "kill matrix|test result|panicked|error"
