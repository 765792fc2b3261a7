#!/usr/bin/env python3
"""The OpenVINO peer: a Python expert pointing OpenVINO's runtime at xfer's ONNX file.

  e2e mode (default): the images of --list (one path per line) decoded and
      preprocessed by a multiprocessing pool (--workers processes; the same PIL
      recipe as tools/bench/peer_ort.py: decode, RGB, bilinear resize of the
      shorter side, centre crop, normalise; large JPEGs reduced in the IDCT by PIL's
      draft to at least twice the resize target, as xfer does, unless --no-draft), batches of --batch run by an OpenVINO
      CompiledModel (CPU plugin, its default precision hint) on the manifest's ONNX
      file; features collected. Timed by the caller as a whole process.
  model mode (--mode model): random tensors, --batches batches of --batch after one
      warm-up batch.

Runs in its own venv (tools/bench/int8.sh makes data/bench/int8/ovenv with
`pip install openvino`); it borrows peer_ort.py's recipe, so ONNX Runtime need not
be installed there. Last stdout line: JSON {images_per_s, n_images, seconds, ...}.

Usage: peer_openvino.py --manifest ZOO/NAME.toml --list FILE [--workers 2] [--batch 32]
       peer_openvino.py --manifest ZOO/NAME.toml --mode model --batches 3
"""
import argparse
import json
import os
import sys
import time
import tomllib
import types
from multiprocessing import Pool

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# peer_ort imports onnxruntime at the top but uses it only in functions not called here.
sys.modules.setdefault("onnxruntime", types.ModuleType("onnxruntime"))
from peer_ort import Recipe  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--list", help="e2e: file with one image path per line")
    ap.add_argument("--mode", choices=["e2e", "model"], default="e2e")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--no-draft", action="store_true",
                    help="decode JPEGs at full size (default: PIL draft, as peer_ort.py --draft)")
    args = ap.parse_args()

    import openvino as ov

    with open(args.manifest, "rb") as f:
        man = tomllib.load(f)
    onnx_path = os.path.join(os.path.dirname(args.manifest), man["file"])
    recipe = Recipe(man["preprocess"], draft=not args.no_draft)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(onnx_path), "CPU")
    out = compiled.output(man["output"]["features"])
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    c = recipe.crop

    if args.mode == "model":
        x = np.random.RandomState(0).randn(args.batch, 3, c, c).astype(np.float32)
        compiled({0: x})
        t = time.perf_counter()
        for _ in range(args.batches):
            compiled({0: x})[out]
        dt = time.perf_counter() - t
        n = args.batches * args.batch
    else:
        with open(args.list) as f:
            paths = [l.strip() for l in f if l.strip()]
        t = time.perf_counter()
        feats = []
        with Pool(args.workers) as pool:
            buf = []
            for x in pool.imap(recipe, paths, chunksize=4):
                buf.append(x)
                if len(buf) == args.batch:
                    feats.append(compiled({0: np.stack(buf)})[out])
                    buf = []
            if buf:
                feats.append(compiled({0: np.stack(buf)})[out])
        dt = time.perf_counter() - t
        n = sum(len(f) for f in feats)
    res = {
        "peer": "openvino",
        "openvino": ov.__version__,
        "inference_precision": str(precision),
        "draft": not args.no_draft,
        "mode": args.mode,
        "model": man["name"],
        "n_images": n,
        "seconds": dt,
        "images_per_s": n / dt,
    }
    print(f"openvino {ov.__version__} {man['name']} {args.mode}: {n / dt:.1f} images/s ({precision})",
          file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
