#!/usr/bin/env python3
"""Generate the tiny deterministic ONNX test fixtures in tests/fixtures/tiny/.

    tools/make_tiny_onnx.py [--out DIR] [--check]

Writes (all committed; a few KB each):

  tiny.onnx       input  `input`    float32 [batch, 3, 32, 32]
                  Conv 3x3 (3 -> 8, stride 2, pad 1) -> Relu -> GlobalAveragePool -> Flatten
                  output `features` float32 [batch, 8]
                  Gemm (8 -> 4)
                  output `logits`   float32 [batch, 4]
  tiny.toml       its manifest (schema: docs/formats.md), with the real sha256
  bad_io.onnx     the same network, but the features output is named `pooled`
  bad_io.toml     a manifest that (wrongly) says `features`: for the test that a
                  model's real inputs/outputs are checked against its manifest
  tiny_ext.onnx   tiny.onnx with every weight in tiny_ext.onnx.data (ONNX external
  tiny_ext.onnx.data  data, as torch >= 2.9's exporter writes): for the tests that the
                  sha256 covers the data file, `package` carries it, `export` inlines it
  reference.json  for a fixed input, np.random.default_rng(1).standard_normal((2, 3, 32, 32))
                  as float32, the features and logits ONNX Runtime computes, so a Rust
                  test can check its session against Python's onnxruntime

Only numpy and onnx are needed to build the models (no torch); onnxruntime computes
the reference. The weights come from np.random.default_rng(0), so the bytes (and the
sha256s) are the same on every run. `--check` regenerates into a temporary folder and
fails if anything differs from the committed files.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tiny"
OPSET = 17
IR_VERSION = 8  # what torch 1.13's exporter writes; ONNX Runtime 1.31 reads 3..11
SIZE = 32
C_OUT = 8
N_LOGITS = 4
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
FILES = ["tiny.onnx", "tiny.toml", "bad_io.onnx", "bad_io.toml", "tiny_ext.onnx", "tiny_ext.onnx.data", "reference.json"]


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def weights():
    """Fixed parameters from numpy seed 0, scaled so outputs are O(1)."""
    rng = np.random.default_rng(0)
    conv_w = (rng.standard_normal((C_OUT, 3, 3, 3)) / np.sqrt(27.0)).astype(np.float32)  # [out, in, kh, kw]
    conv_b = (0.1 * rng.standard_normal(C_OUT)).astype(np.float32)  # [out]
    fc_w = (rng.standard_normal((N_LOGITS, C_OUT)) / np.sqrt(C_OUT)).astype(np.float32)  # [n_logits, 8]
    fc_b = (0.1 * rng.standard_normal(N_LOGITS)).astype(np.float32)  # [n_logits]
    return conv_w, conv_b, fc_w, fc_b


def build_model(features_name: str) -> onnx.ModelProto:
    conv_w, conv_b, fc_w, fc_b = weights()
    inits = [
        numpy_helper.from_array(conv_w, "conv.weight"),
        numpy_helper.from_array(conv_b, "conv.bias"),
        numpy_helper.from_array(fc_w, "fc.weight"),
        numpy_helper.from_array(fc_b, "fc.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name="conv",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),  # [n, 8, 16, 16]
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu_out"], ["gap_out"], name="gap"),  # [n, 8, 1, 1]
        helper.make_node("Flatten", ["gap_out"], [features_name], name="flatten", axis=1),  # [n, 8]
        helper.make_node("Gemm", [features_name, "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),  # [n, 4]
    ]
    graph = helper.make_graph(
        nodes,
        "xfer_tiny",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        outputs=[
            helper.make_tensor_value_info(features_name, TensorProto.FLOAT, ["batch", C_OUT]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_LOGITS]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="xfer tools/make_tiny_onnx.py",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    model.doc_string = "xfer test fixture: tiny random conv net (numpy seed 0). Not a real backbone."
    onnx.checker.check_model(model, full_check=True)
    return model


def numpy_forward(x: np.ndarray):
    """The same network in plain numpy (float64), to check the graph itself."""
    conv_w, conv_b, fc_w, fc_b = (a.astype(np.float64) for a in weights())
    n = x.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))  # [n, 3, 34, 34]
    out_hw = SIZE // 2
    y = np.zeros((n, C_OUT, out_hw, out_hw))
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, i:i + 2 * out_hw:2, j:j + 2 * out_hw:2]  # [n, 3, 16, 16]
            y += np.einsum("nchw,oc->nohw", patch, conv_w[:, :, i, j])
    y += conv_b[None, :, None, None]
    features = np.maximum(y, 0.0).mean(axis=(2, 3))  # [n, 8]
    logits = features @ fc_w.T + fc_b  # [n, 4]
    return features, logits


def f32_list(a: np.ndarray) -> list[float]:
    """Shortest decimal that reads back (via f64, then to f32) as exactly the same f32."""
    flat = np.ascontiguousarray(a, dtype=np.float32).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("non-finite value in a reference array")
    out = [float(str(v)) for v in flat]  # str(np.float32) is the shortest f32 repr
    back = np.array(out, dtype=np.float64).astype(np.float32)
    assert np.array_equal(back, flat), "float32 round trip through JSON failed"
    return out


def manifest(name: str, file: str, sha: str, description: str) -> str:
    floats = lambda xs: "[" + ", ".join(repr(float(x)) for x in xs) + "]"  # noqa: E731
    return f"""\
# Generated by tools/make_tiny_onnx.py — do not edit by hand; re-run it instead.
name = "{name}"
file = "{file}"
sha256 = "{sha}"
weights = "random"
weights_source = "numpy default_rng(0), fixed by tools/make_tiny_onnx.py — test fixture, NOT pretrained"
license = "MIT OR Apache-2.0"
generator = "tools/make_tiny_onnx.py"
description = "{description}"

[input]
name = "input"
shape = [-1, 3, {SIZE}, {SIZE}]

[output]
features = "features"
feature_dim = {C_OUT}
logits = "logits"
n_logits = {N_LOGITS}

[preprocess]
resize = 36
crop = {SIZE}
interpolation = "bilinear"
pixel_scale = {repr(1.0 / 255.0)}
mean = {floats(IMAGENET_MEAN)}
std = {floats(IMAGENET_STD)}
channel_order = "rgb"
"""


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def generate(out: Path) -> dict:
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    tiny = build_model("features").SerializeToString()
    bad = build_model("pooled").SerializeToString()
    tiny_sha, bad_sha = sha256_bytes(tiny), sha256_bytes(bad)
    write_atomic(out / "tiny.onnx", tiny)
    write_atomic(out / "bad_io.onnx", bad)
    onnx.save_model(build_model("features"), str(out / "tiny_ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="tiny_ext.onnx.data", size_threshold=0)
    write_atomic(out / "tiny.toml", manifest(
        "tiny", "tiny.onnx", tiny_sha,
        "Test fixture: Conv3x3(3->8, stride 2, pad 1) -> ReLU -> global average pool -> "
        "flatten = features [N, 8]; Gemm(8->4) = logits [N, 4]. Weights from numpy seed 0.",
    ).encode("utf-8"))
    write_atomic(out / "bad_io.toml", manifest(
        "bad_io", "bad_io.onnx", bad_sha,
        "Test fixture with a deliberate mismatch: this manifest says the features output is "
        "`features`, but the graph names it `pooled`. Loading it must fail the manifest check.",
    ).encode("utf-8"))

    # Reference outputs from ONNX Runtime (default session options, CPU).
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)  # [2, 3, 32, 32]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(tiny, so, providers=["CPUExecutionProvider"])
    feats, logits = sess.run(["features", "logits"], {"input": x})  # [2, 8], [2, 4]
    nf, nl = numpy_forward(x)
    diff_f = float(np.max(np.abs(feats - nf)))
    diff_l = float(np.max(np.abs(logits - nl)))
    if max(diff_f, diff_l) > 1e-5:
        sys.exit(f"make_tiny_onnx: ONNX Runtime disagrees with the numpy forward "
                 f"(features {diff_f:.3g}, logits {diff_l:.3g})")
    # bad_io must compute the same thing under its other name.
    bsess = ort.InferenceSession(bad, so, providers=["CPUExecutionProvider"])
    bf, bl = bsess.run(["pooled", "logits"], {"input": x})
    assert np.array_equal(bf, feats) and np.array_equal(bl, logits)

    ref = {
        "description": (
            "Reference for tests/fixtures/tiny/tiny.onnx: input = "
            "np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32), "
            "flattened in C order; features and logits computed by Python onnxruntime "
            "(CPUExecutionProvider, default session options), flattened in C order. Every "
            "number is the shortest decimal that reads back as the same float32."
        ),
        "generator": "tools/make_tiny_onnx.py",
        "onnxruntime": ort.__version__,
        "model": "tiny.onnx",
        "model_sha256": tiny_sha,
        "numpy_float64_max_abs_diff": {"features": diff_f, "logits": diff_l},
        "input_name": "input",
        "input_shape": list(x.shape),
        "input": f32_list(x),
        "features_shape": list(feats.shape),
        "features": f32_list(feats),
        "logits_shape": list(logits.shape),
        "logits": f32_list(logits),
    }
    # One key per line; arrays on one line each (flat, C order).
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                               for k, v in ref.items()) + "\n}\n"
    assert json.loads(text) == ref
    write_atomic(out / "reference.json", text.encode("utf-8"))
    return dict(tiny_sha=tiny_sha, bad_sha=bad_sha, diff_f=diff_f, diff_l=diff_l)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with --out")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            bad = [f for f in FILES
                   if not (args.out / f).is_file() or not filecmp.cmp(Path(tmp) / f, args.out / f, shallow=False)]
        if bad:
            sys.exit(f"make_tiny_onnx: {', '.join(bad)} in {args.out} differ from a fresh generation; "
                     "re-run tools/make_tiny_onnx.py")
        print(f"make_tiny_onnx: {args.out} is up to date")
        return
    r = generate(args.out)
    for f in FILES:
        p = args.out / f
        print(f"make_tiny_onnx: wrote {p} ({p.stat().st_size} bytes)")
    print(f"make_tiny_onnx: tiny.onnx sha256 {r['tiny_sha']}, bad_io.onnx sha256 {r['bad_sha']}; "
          f"ORT vs numpy max abs diff: features {r['diff_f']:.3g}, logits {r['diff_l']:.3g}")


if __name__ == "__main__":
    main()
