#!/usr/bin/env bash
# Issue 26's check of "bring your own backbone" against real timm and transformers
# (tools/check_exporters.py): makes a venv outside the repository (default
# ~/.cache/xfer/check-exporters-venv, or $XFER_CHECK_VENV) with torch (CPU use; the
# PyPI wheel, without its CUDA packages), torchvision, timm, transformers, onnx,
# onnxscript, onnxruntime and h5py from PyPI, builds xfer, and runs the check with
# random weights (nothing from the hub). Heavy (about 1 GB of wheels): not in the
# test command.
#   tools/check_exporters.sh [--only processors|exports]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${XFER_CHECK_VENV:-$HOME/.cache/xfer/check-exporters-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, timm, transformers, onnxscript, h5py" 2>/dev/null; then
    python3 -m venv "$venv"
    # torch without its nvidia-* dependencies (several GB, unused on the CPU).
    "$venv/bin/pip" install -q --no-deps torch torchvision
    "$venv/bin/pip" install -q filelock typing_extensions sympy networkx jinja2 fsspec pillow numpy \
        timm transformers onnx onnxscript onnxruntime h5py
fi
cargo build --release --bin xfer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" tools/check_exporters.py --xfer target/release/xfer --work "$work" "$@"
