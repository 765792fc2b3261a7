#!/usr/bin/env bash
# The long resize sweep (issue 26): N pseudo-random (source size, resize, crop,
# resize mode, crop offset, interpolation) cases through preprocess::to_tensor,
# view_tensor and thumbnail, each output checked against an independent f64
# convolution with PIL's filters. The test command runs a 1000-case slice
# (tests/it/resize_safety.rs); this runs more, one seed per job.
#   tools/resize_sweep.sh [CASES_PER_SEED=100000] [SEEDS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-100000}
seeds=${2:-4}
for seed in $(seq 1 "$seeds"); do
    XFER_RESIZE_SWEEP=$cases XFER_RESIZE_SEED=$((1000 + seed)) nice cargo test --release \
        --test it resize_safety::a_deterministic_slice -- --nocapture 2>&1 | grep -E "resize sweep|panicked|off by|FAILED|error" || true
done
echo "tried $((cases * seeds)) cases"
