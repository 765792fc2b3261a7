#!/usr/bin/env bash
# The main job on a small real default, in one command:
#   set up (ONNX Runtime, EfficientNet-Lite0 with ImageNet weights), fetch real
#   labelled photos (Debian's tuxpaint-stamps-default: flowers, fruit, vegetables,
#   vehicles), build xfer, split the photos into train / validation / test
#   (reproducibly), extract pooled features of each split into HDF5 files, train
#   the tutorial's MLP head and a logistic-regression baseline, evaluate both on
#   the test split (with an HTML report of the recommended head's mistakes),
#   predict the held-back test photos with `xfer predict`, and
#   print the comparison table and where the plot, the bundle and the
#   predictions are. A few minutes on 2 cores (most of it the first build).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tools/setup.sh
tools/fetch_stamps.sh
cargo build --release --quiet
xfer=target/release/xfer
out=data/demo
split=$out/split
run=$out/run
predictions=$out/predictions.csv
mkdir -p "$out"

# --- a reproducible split: per class, files in sorted order, 3 : 1 : 1 ----------
# (no random numbers: the n-th file of a class goes to train, val, train, train,
# test, … by n mod 5, so every rerun and every machine gets the same split)
rm -rf "$split"
for class_dir in data/stamps/*/; do
  class=$(basename "$class_dir")
  mkdir -p "$split"/{train,val,test}/"$class"
  i=0
  while IFS= read -r f; do
    case $((i % 5)) in
      3) part=val ;;
      4) part=test ;;
      *) part=train ;;
    esac
    ln -s "$(realpath "$f")" "$split/$part/$class/$(basename "$f")"
    i=$((i + 1))
  done < <(find "$class_dir" -maxdepth 1 -type f -name '*.png' | LC_ALL=C sort)
done
count() { find "$split/$1" -type l | wc -l; }
echo
echo "demo: split data/stamps into $(count train) train, $(count val) validation and $(count test) test photos in $split/"
echo "demo: (the package's town/houses folder holds only cartoons, not photos, so there is no houses class)"

# --- features of each split ---------------------------------------------------
for part in train val test; do
  f="$out/${part}_efficientnet_lite0.h5"
  rm -f "$f" "$f.partial"
  set +e
  "$xfer" extract --model efficientnet_lite0 --data "$split/$part" --out "$f"
  status=$?
  set -e
  # 3 = some files were skipped (listed above); the rest is usable.
  [ $status -eq 0 ] || [ $status -eq 3 ] || exit $status
done
.venv/bin/python - "$out/train_efficientnet_lite0.h5" <<'PY'
import json, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    print(f"demo: {sys.argv[1]} opened with h5py: data {f['data'].shape} {f['data'].dtype}, "
          f"classes {json.loads(f.attrs['class_names'])}, backbone {f.attrs['backbone']}, "
          f"provider {f.attrs['execution_provider']}")
PY

# --- heads: the tutorial's MLP and the logistic baseline, no tuning -------------
# xfer's default recipe (AdamW over a budget of optimiser steps, early stopping
# on the validation loss, C chosen by cross-validation, temperature scaling)
# trains both and recommends the one with the lower validation log loss as
# best.safetensors.
"$xfer" train --train "$out/train_efficientnet_lite0.h5" --val "$out/val_efficientnet_lite0.h5" \
  --out "$run" --overwrite

# --- the test split: scores from its features, and predictions from its photos --
# (the recommended head also gets the HTML report: what it gets wrong, with the photos)
for head in mlp logistic best; do
  report=()
  [ "$head" = best ] && report=(--report "$out/report" --overwrite)
  "$xfer" evaluate --bundle "$run/$head.safetensors" --features "$out/test_efficientnet_lite0.h5" \
    --json "${report[@]}" > "$out/test_$head.json"
done
echo
echo "demo: xfer predict on the held-back test photos (the recommended head, best.safetensors):"
set +e
"$xfer" predict --bundle "$run/best.safetensors" "$split/test" --top-k 2 \
  --csv "$predictions" --overwrite
status=$?
set -e
[ $status -eq 0 ] || [ $status -eq 3 ] || exit $status

# --- the summary --------------------------------------------------------------
.venv/bin/python - "$run/metrics.json" "$out" "$predictions" "$split/test" "$(( $(date +%s) - start ))" <<'PY'
import csv, json, os, sys
metrics_path, out, predictions, test_dir, seconds = sys.argv[1:]
metrics = json.load(open(metrics_path))
rows = []
for h in metrics["heads"]:
    test = json.load(open(os.path.join(out, f"test_{h['kind']}.json")))["evaluation"]
    val = h.get("validation") or {}
    kind = h["kind"] + (" *" if h.get("recommended") else "")
    rows.append((kind, val.get("accuracy"), val.get("log_loss"), test["accuracy"], test["log_loss"],
                 h["train_seconds"], test["n_samples"]))
pct = lambda v: "—" if v is None else f"{100 * v:.1f} %"
num = lambda v: "—" if v is None else f"{v:.4f}"
n_test = rows[0][6]
print(f"\nEfficientNet-Lite0 features (1280-d) → heads; {metrics['train']['n_samples']} train, "
      f"{metrics['validation']['n_samples']} validation, {n_test} test photos, classes {', '.join(metrics['classes'])}")
print(f"{'head':<10} {'val acc':>9} {'val loss':>9} {'test acc':>9} {'test loss':>10} {'train time':>11}")
for kind, va, vl, ta, tl, secs, _ in rows:
    print(f"{kind:<10} {pct(va):>9} {num(vl):>9} {pct(ta):>9} {num(tl):>10} {secs:>9.1f} s")
with open(predictions) as f:
    pred = list(csv.DictReader(f))
right = sum(os.path.relpath(r["path"], test_dir).split(os.sep)[0] == r["class"] for r in pred)
best_test = json.load(open(os.path.join(out, "test_best.json")))["evaluation"]["accuracy"]
same = "the same as" if len(pred) == n_test and abs(right / len(pred) - best_test) < 1e-9 else "compare"
print(f"* recommended (lowest validation log loss, after calibration): {metrics['recommended']}")
print(f"\nxfer predict (best.safetensors), from the photos themselves: {right}/{len(pred)} test photos right "
      f"({100 * right / max(len(pred), 1):.1f} %), {same} `xfer evaluate` on their features ({pct(best_test)})")
print(f"\nplot:        {os.path.join(os.path.dirname(metrics_path), 'learning_curve.svg')}")
print(f"bundle:      {os.path.join(os.path.dirname(metrics_path), 'best.safetensors')} (also mlp.safetensors, logistic.safetensors)")
print(f"predictions: {predictions}")
print(f"report:      {os.path.join(out, 'report', 'report.html')} (open it in a browser: the test photos it gets wrong)")
print(f"demo: done in {seconds} s")
PY
