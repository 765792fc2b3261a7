#!/usr/bin/env python3
"""Generate tests/fixtures/export/: two tiny ONNX backbones whose `features` output
is NOT pooled, and numpy's pooling of their outputs, for tests/it/export.rs (the
pooling nodes `xfer export` writes, checked against numpy).

    tools/make_export_fixture.py [--out DIR]

Writes (committed; a few KB):

  map.onnx        input `input` float32 [N, 3, 8, 8] -> Conv 3x3 (3 -> 4, pad 1)
                  output `features` float32 [N, 4, 8, 8]       (a CNN feature map)
  tokens.onnx     input `input` float32 [N, 3, 8, 8] -> 16 patches of 2x2 -> MatMul (12 -> 5)
                  -> a learnt class token prepended
                  output `features` float32 [N, 17, 5]          (ViT-like tokens)
  reference.json  sha256 of both files; for the input
                  np.random.default_rng(2).standard_normal((3, 3, 8, 8)) as float32,
                  each model's raw output from onnxruntime and numpy's pooling of it:
                  avg, max (over H, W), none (flattened), cls (token 0), mean (tokens
                  K: for K = 1, 3), cls+mean, and the L2-normalised avg and cls+mean.

Both graphs use the same internal names (`w`, `proj`, ...) on purpose: exporting
them together must keep them apart. The weights come from np.random.default_rng(0)
and (1), so the files are the same on every run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def save(graph, path: Path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tools/make_export_fixture.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def inp():
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])


def map_model(path: Path) -> str:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["features"], name="proj",
                              pads=[1, 1, 1, 1])]
    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, 8, 8])
    graph = helper.make_graph(nodes, "map", [inp()], [out],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return save(graph, path)


def tokens_model(path: Path) -> str:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 5)).astype(np.float32)
    cls = rng.standard_normal((1, 1, 5)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(cls, "cls"),
        numpy_helper.from_array(np.array([0, 3, 4, 2, 4, 2], np.int64), "shape6"),
        numpy_helper.from_array(np.array([0, 16, 12], np.int64), "shape3"),
    ]
    nodes = [
        # [N, 3, 8, 8] -> [N, 3, 4, 2, 4, 2] -> [N, 4, 4, 3, 2, 2] -> [N, 16, 12]
        helper.make_node("Reshape", ["input", "shape6"], ["r6"], name="r6"),
        helper.make_node("Transpose", ["r6"], ["t6"], name="t6", perm=[0, 2, 4, 1, 3, 5]),
        helper.make_node("Reshape", ["t6", "shape3"], ["patches"], name="patches"),
        helper.make_node("MatMul", ["patches", "w"], ["emb"], name="proj"),
        # the class token, broadcast over the batch: cls * 1 of shape [N, 1, 5]
        helper.make_node("Shape", ["emb"], ["emb_shape"], name="shape"),
        helper.make_node("Slice", ["emb_shape", "zero", "one"], ["n"], name="n"),
        helper.make_node("Concat", ["n", "one", "five"], ["cls_shape"], name="cls_shape", axis=0),
        helper.make_node("Expand", ["cls", "cls_shape"], ["cls_n"], name="expand"),
        helper.make_node("Concat", ["cls_n", "emb"], ["features"], name="cat", axis=1),
    ]
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([5], np.int64), "five"),
    ]
    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 17, 5])
    graph = helper.make_graph(nodes, "tokens", [inp()], [out], inits)
    return save(graph, path)


def l2(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent.parent / "tests/fixtures/export")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sha = {"map": map_model(args.out / "map.onnx"), "tokens": tokens_model(args.out / "tokens.onnx")}
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    raw = {}
    for name in sha:
        s = ort.InferenceSession(str(args.out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        raw[name] = s.run(["features"], {"input": x})[0].astype(np.float64)
    fmap, tok = raw["map"], raw["tokens"]
    assert fmap.shape == (3, 4, 8, 8) and tok.shape == (3, 17, 5)
    pooled = {
        "map": {
            "avg": fmap.mean(axis=(2, 3)),
            "max": fmap.max(axis=(2, 3)),
            "none": fmap.reshape(3, -1),
            "avg+l2": l2(fmap.mean(axis=(2, 3))),
        },
        "tokens": {
            "cls": tok[:, 0, :],
            "mean": tok[:, 1:, :].mean(axis=1),
            "mean/3": tok[:, 3:, :].mean(axis=1),
            "cls+mean": np.concatenate([tok[:, 0, :], tok[:, 1:, :].mean(axis=1)], axis=1),
            "cls+mean+l2": l2(np.concatenate([tok[:, 0, :], tok[:, 1:, :].mean(axis=1)], axis=1)),
        },
    }
    ref = {
        "made_by": "tools/make_export_fixture.py",
        "sha256": sha,
        "input_shape": list(x.shape),
        "input": x.reshape(-1).astype(float).tolist(),
        "pooled": {m: {k: v.tolist() for k, v in d.items()} for m, d in pooled.items()},
    }
    (args.out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {args.out}: {sha}")


if __name__ == "__main__":
    main()
