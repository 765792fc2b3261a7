"""What tools/export_timm.py and tools/export_hf.py share: the common flags, one
self-contained ONNX file (weights inside, or in one data file named after it when
over protobuf's 2 GB), the ONNX Runtime vs PyTorch check, and `--add`.

Install (any platform; CPU torch is enough):
    pip install torch onnx onnxscript onnxruntime timm transformers
(torch's exporter needs onnxscript.)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PROTOBUF_LIMIT = 2**31 - 1
# torch >= 2.9's exporter writes opset 18 or newer; it cannot down-convert.
MIN_OPSET = 18


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, help="output folder (default ./exported/NAME)")
    ap.add_argument("--opset", type=int, default=MIN_OPSET,
                    help=f"ai.onnx opset to write (default and lowest {MIN_OPSET}: torch's exporter writes no older one)")
    ap.add_argument("--random-weights", action="store_true",
                    help="random weights instead of the pretrained ones: no download of weights, for tests; "
                         "the manifest records weights = \"random\"")
    ap.add_argument("--add", action="store_true", help="run `xfer models add` afterwards")
    ap.add_argument("--xfer", type=Path,
                    help="the xfer binary for --add (default: `xfer` on PATH, else target/release/xfer next to this script)")
    ap.add_argument("--zoo", type=Path, help="with --add: the zoo folder to add to (xfer's --zoo)")


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        sys.exit(f"error: --opset {opset}: torch's exporter writes opset {MIN_OPSET} or newer and cannot convert down; "
                 f"use --opset {MIN_OPSET} or higher (xfer runs any opset ONNX Runtime does)")


def export(module, args: tuple, path: Path, input_names: list[str], output_names: list[str], opset: int) -> None:
    """torch.onnx.export with a dynamic batch axis, then one self-contained file at `path`."""
    import onnx
    import torch

    tmp = path.with_name(path.name + ".tmp")
    axes = {k: {0: "batch"} for k in input_names + output_names}
    torch.onnx.export(module, args, str(tmp), input_names=input_names, output_names=output_names,
                      dynamic_axes=axes, opset_version=opset)
    model = onnx.load(str(tmp))  # with its external data, if the exporter wrote any
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        print(f"note: torch's exporter wrote opset {written} (asked {opset})", file=sys.stderr)
    data = path.with_name(path.name + ".data")
    for stale in (path, data):
        stale.unlink(missing_ok=True)
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=False)
    else:
        # Over protobuf's limit: the weights in one file named after the model,
        # which `xfer models add` hashes and `xfer package` carries.
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    for leftover in tmp.parent.glob(tmp.name + "*"):  # the graph and the exporter's data file
        leftover.unlink()


def check_against_torch(path: Path, feeds: dict, want: list) -> float:
    """Runs the file under ONNX Runtime and returns the largest |difference| from PyTorch."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    print(f"ONNX Runtime vs PyTorch on a batch of 2: outputs {[list(g.shape) for g in got]}, max |diff| {diff:.2e}")
    return diff


def find_xfer(explicit: Path | None) -> str:
    if explicit:
        return str(explicit)
    on_path = shutil.which("xfer")
    if on_path:
        return on_path
    built = ROOT / "target" / "release" / "xfer"
    if built.exists():
        return str(built)
    sys.exit("error: --add: no `xfer` on PATH or in target/release/ next to this script; "
             "pass --xfer PATH, or run the printed command yourself")


def finish(args, cmd: list[str]) -> int:
    """Prints the `xfer models add` command; runs it with --add."""
    if args.random_weights:
        cmd += ["--weights", "random"]
    if args.zoo:
        cmd[1:1] = ["--zoo", str(args.zoo)]
    print("next:", " ".join(["xfer"] + cmd[1:]))
    if args.add:
        cmd[0] = find_xfer(args.xfer)
        return subprocess.call(cmd)
    return 0
