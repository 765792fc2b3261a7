#!/usr/bin/env bash
# The main job on a small real default, in one command:
#   set up (ONNX Runtime, EfficientNet-Lite0 with ImageNet weights), fetch real
#   labelled photos (Debian's tuxpaint-stamps-default), build xfer, and extract
#   pooled features of every photo into an HDF5 file.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/fetch_stamps.sh
cargo build --release --quiet
out=data/demo
mkdir -p "$out"
features="$out/stamps_efficientnet_lite0.h5"
rm -f "$features" "$features.partial"
set +e
target/release/xfer extract --model efficientnet_lite0 --data data/stamps --out "$features"
status=$?
set -e
[ $status -eq 0 ] || [ $status -eq 3 ] || exit $status
.venv/bin/python - "$features" <<'PY'
import json, sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
classes = json.loads(f.attrs["class_names"])
data, label = f["data"][:], f["label"][:]
print(f"\n{sys.argv[1]} (opened with h5py): data {data.shape} {data.dtype}, classes {classes}")
print(f"backbone {f.attrs['backbone']}, provider {f.attrs['execution_provider']}, ONNX Runtime {f.attrs['ort_version']}")
# A first look at the features: nearest-class-mean accuracy, leave-one-out.
x = data / np.linalg.norm(data, axis=1, keepdims=True)
correct = 0
for i in range(len(x)):
    mask = np.ones(len(x), bool); mask[i] = False
    means = np.stack([x[mask & (label == c)].mean(0) for c in range(len(classes))])
    correct += int(np.argmax(means @ x[i]) == label[i])
print(f"nearest-class-mean accuracy (leave-one-out) on these features: {correct}/{len(x)} = {correct/len(x):.1%}")
PY
