#!/usr/bin/env bash
# The main job on a small real default, in one command:
#   set up (ONNX Runtime, EfficientNet-Lite0 with ImageNet weights), fetch real
#   labelled photos (Debian's tuxpaint-stamps-default: flowers, fruit, vegetables,
#   vehicles), build xfer, then `xfer fit`: hold out a stratified, seeded test
#   split (recorded in data/demo/run/split.json), extract the features through
#   the feature cache (keyed by each photo's content), train the tutorial's MLP
#   head and a logistic-regression baseline (cross-validated, calibrated; the
#   better one is best.safetensors), evaluate it on the test split with the HTML
#   report, and audit the data; then predict the held-out test photos from the
#   image files with `xfer predict` and compare with fit's evaluation.
#   Running it again reuses everything that is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tools/setup.sh
tools/fetch_stamps.sh
cargo build --release --quiet
xfer=target/release/xfer
out=${XFER_DEMO_OUT:-data/demo} # where the demo writes
run=$out/run
predictions=$out/predictions.csv
mkdir -p "$out"
echo "demo: (the package's town/houses folder holds only cartoons, not photos, so there is no houses class)"

# --- one command: split, features (cached), heads, evaluation, report, audit ----
set +e
"$xfer" fit data/stamps --out "$run"
status=$?
set -e
# 3 = some files were skipped (listed above); the rest is usable.
[ $status -eq 0 ] || [ $status -eq 3 ] || exit $status

.venv/bin/python - "$run"/features/train_*.h5 <<'PY'
import json, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    print(f"demo: {sys.argv[1]} opened with h5py: data {f['data'].shape} {f['data'].dtype}, "
          f"classes {json.loads(f.attrs['class_names'])}, backbone {f.attrs['backbone']}, "
          f"provider {f.attrs['execution_provider']}")
PY

# --- the held-out test photos, classified from the image files ----------------
mapfile -t test_photos < <(.venv/bin/python -c '
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    print(row["path"])' "$run/lists/test.csv")
echo
echo "demo: xfer predict on the ${#test_photos[@]} held-out test photos (the recommended head, best.safetensors):"
set +e
"$xfer" predict --bundle "$run/best.safetensors" "${test_photos[@]}" --top-k 2 \
  --csv "$predictions" --overwrite
status=$?
set -e
[ $status -eq 0 ] || [ $status -eq 3 ] || exit $status

# --- the summary --------------------------------------------------------------
.venv/bin/python - "$run" "$predictions" "$(( $(date +%s) - start ))" <<'PY'
import csv, json, os, sys
run, predictions, seconds = sys.argv[1:]
fit = json.load(open(os.path.join(run, "metrics.json")))["fit"]
with open(predictions) as f:
    pred = {r["path"]: r for r in csv.DictReader(f)}
with open(os.path.join(run, "report", "test_predictions.csv")) as f:
    evaluated = {r["path"]: r for r in csv.DictReader(f)}
right = sum(os.path.basename(os.path.dirname(p)) == r["class"] for p, r in pred.items())
same = "the same as" if pred.keys() == evaluated.keys() and all(
    pred[p]["class"] == evaluated[p]["class"] for p in pred) else "compare"
acc = fit["test"]["accuracy"]
print(f"\nxfer predict (best.safetensors), from the photos themselves: {right}/{len(pred)} test photos right "
      f"({100 * right / max(len(pred), 1):.1f} %), {same} `xfer evaluate` on their features ({100 * acc:.1f} %)")
print(f"\nplot:        {os.path.join(run, 'learning_curve.svg')}")
print(f"bundle:      {fit['bundle']} (also mlp.safetensors, logistic.safetensors)")
print(f"predictions: {predictions}")
print(f"report:      {fit['report']} (open it in a browser: the test photos it gets wrong)")
print(f"audit:       {fit['audit']}")
print(f"demo: done in {seconds} s")
PY
