#!/usr/bin/env python3
"""Check a file from `xfer export` under onnxruntime-python (and onnx's checker).

    tools/check_export.py MODEL.onnx INPUTS.npy EXPECTED.npy [--tol 1e-5]

INPUTS.npy holds preprocessed images, float32 [N, 3, S, S] (xfer's preprocessing,
as the model's metadata `xfer.preprocess` says); EXPECTED.npy the class
probabilities `xfer predict` gave for the same images, float32 [N, C].
Runs the model on the CPU provider, prints the metadata and the largest
difference, and exits 1 when it is over --tol. tests/it/ship_e2e.rs writes both
arrays from real photos and runs this.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("expected")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    print(f"onnx checker: ok (IR {model.ir_version}, opsets {opset})")
    classes = json.loads(meta["xfer.class_names"])
    print(f"classes {classes}; preprocess {meta['xfer.preprocess']}")

    x = np.load(args.inputs)
    expected = np.load(args.expected)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    probs, feats = session.run(["probabilities", "features"], {"input": x})
    assert probs.shape == expected.shape == (x.shape[0], len(classes)), (probs.shape, expected.shape)
    worst = float(np.abs(probs - expected).max())
    sums = float(np.abs(probs.sum(axis=1) - 1).max())
    print(f"onnxruntime {ort.__version__}: outputs {names}, {x.shape[0]} images, "
          f"features {feats.shape}, max |p - xfer predict| = {worst:.3g} (tolerance {args.tol:g}), "
          f"max |sum p - 1| = {sums:.3g}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
