#!/usr/bin/env python3
"""Static INT8 quantisation of an ONNX model with ONNX Runtime's quantiser.

`xfer quantize` runs this script; it is not meant to be run by hand. It never
decodes or preprocesses images: xfer writes the calibration images, already
preprocessed by its one pixel function, as a float32 .npy tensor [N, 3, S, S],
and this script only feeds that tensor to `onnxruntime.quantization.quantize_static`.

The model first goes through ONNX Runtime's own quantisation pre-processing
(`quant_pre_process`: shape inference and ONNX Runtime's basic graph optimisations,
which fold constants such as the Identity nodes PyTorch's exporter puts in front
of shared initialisers). Without it a Conv whose bias comes through such a node
keeps a float bias, ONNX Runtime cannot fuse it into an integer convolution, and
the "int8" model runs slower than fp32 (a torchvision ResNet-50: x0.6 of fp32
without, x3.1 with, on an AVX-512 VNNI CPU).

Output: the QDQ model (per-channel int8 weights, uint8 activations) at --out,
and one line of JSON on stdout: {"ort_version", "onnx_version", "method", ...}.
Errors go to stderr with a non-zero exit status.
"""

import argparse
import json
import os
import sys


def unshare_biases(onnx, path):
    """Gives every Conv / ConvTranspose / Gemm its own copy of a bias initialiser
    that several nodes share (what pre-processing makes of PyTorch's Identity
    nodes). ONNX Runtime's quantiser quantises a bias at its node's input x weight
    scale, but hands all consumers of a shared one the copy made for the last:
    the others get a bias at a foreign scale, cannot become integer convolutions
    and stay float."""
    model = onnx.load(path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    uses = {}
    for n in g.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    changed = False
    for n in g.node:
        if n.op_type in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2:
            b = n.input[2]
            if b in inits and uses[b] > 1:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[b])
                copy.name = f"{b}_{n.name or len(g.initializer)}"
                while copy.name in inits:
                    copy.name += "_"
                g.initializer.append(copy)
                inits[copy.name] = copy
                uses[b] -= 1
                n.input[2] = copy.name
                changed = True
    if changed:
        onnx.save(model, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="fp32 ONNX model")
    ap.add_argument("--calib", required=True, help="float32 .npy [N, 3, S, S], preprocessed by xfer")
    ap.add_argument("--input-name", required=True, help="the model's image input")
    ap.add_argument("--out", required=True, help="where to write the int8 QDQ model")
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax")
    ap.add_argument("--reduce-range", action="store_true",
                    help="7-bit weights (ORT's reduce_range), for CPUs without VNNI")
    ap.add_argument("--batch", type=int, default=8, help="calibration batch size")
    args = ap.parse_args()

    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )
    except ImportError as e:
        sys.exit(f"cannot import onnxruntime.quantization ({e}); run tools/setup.sh to install it into .venv")

    calib = np.load(args.calib, mmap_mode="r")
    if calib.dtype != np.float32 or calib.ndim != 4 or calib.shape[1] != 3:
        sys.exit(f"{args.calib}: expected float32 [N, 3, S, S], got {calib.dtype} {calib.shape}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calib):
                return None
            batch = np.ascontiguousarray(calib[self.i:self.i + args.batch])
            self.i += args.batch
            return {args.input_name: batch}

        def rewind(self):
            self.i = 0

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[args.method]
    pre = args.out + ".pre.onnx"
    try:
        try:
            quant_pre_process(args.model, pre)
        except Exception as e:  # symbolic shape inference fails on some graphs
            print(f"quantize.py: pre-processing with symbolic shape inference failed ({e}); "
                  "retrying without it", file=sys.stderr)
            quant_pre_process(args.model, pre, skip_symbolic_shape=True)
    except Exception as e:
        sys.exit(f"cannot pre-process {args.model} for quantisation ({e}); "
                 "check that ONNX Runtime can load the model (`xfer bench-model`)")
    try:
        unshare_biases(onnx, pre)
        quantize_static(
            pre,
            args.out,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=args.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
    finally:
        os.remove(pre)
    print(json.dumps({
        "ort_version": ort.__version__,
        "onnx_version": onnx.__version__,
        "method": args.method,
        "reduce_range": bool(args.reduce_range),
        "per_channel": True,
        "format": "qdq",
        "weights": "int8",
        "activations": "uint8",
        "images": int(len(calib)),
    }))


if __name__ == "__main__":
    main()
