#!/usr/bin/env python3
"""The Python-ORT peer: what a Python user writes to extract features with ONNX Runtime.

  e2e mode (default): for each image (sorted, recursive under --data):
      PIL decode -> convert('RGB') -> resize the shorter side to `resize` (PIL
      bilinear, antialiased, like torchvision's Resize) -> centre crop `crop` ->
      numpy (x * pixel_scale - mean) / std -> HWC->CHW; batches of --batch go to an
      onnxruntime InferenceSession (CPU EP, intra_op_num_threads = --threads) on the
      manifest's ONNX file; the `features` output is collected (and written to an
      HDF5 file `data` [N, D] with h5py if --out is given).
      Timed from the first image opened to the last batch out (the session is created
      and warmed up with one batch beforehand, which favours the peer).
      The expert's version: --workers N decodes in a multiprocessing pool of N
      processes (imap, chunks of 4) while the main process runs the model, and
      --draft lets libjpeg reduce large JPEGs in the IDCT (PIL's Image.draft) to
      at least twice the resize target, as xfer does.
  model mode (--mode model): the same session on pre-decoded tensors (the images
      under --data, preprocessed once up front; random ones if --data is absent),
      --batches batches of --batch, after one warm-up batch.

Prints a human line on stderr and, as its last stdout line, a JSON object with
images_per_s, n_images, seconds, ...

Usage: peer_ort.py --model efficientnet_lite0 --data DIR [--threads 2] [--batch 32]
                   [--workers 2 --draft]
       peer_ort.py --model resnet18 --mode model --data DIR --batches 8
"""
import argparse
import json
import os
import sys
import time
import tomllib
from multiprocessing import Pool

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def list_images(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        out += [os.path.join(dp, f) for f in sorted(fns) if f.lower().endswith(EXTS)]
    return out


class Recipe:
    def __init__(self, pp, draft=False):
        self.draft = draft
        self.resize = int(pp["resize"])
        self.crop = int(pp["crop"])
        self.resample = RESAMPLE[pp.get("interpolation", "bilinear")]
        scale = float(pp.get("pixel_scale", 1.0 / 255.0))
        mean = np.asarray(pp["mean"], dtype=np.float32).reshape(-1)
        std = np.asarray(pp["std"], dtype=np.float32).reshape(-1)
        # (u8 * scale - mean) / std  ==  u8 * a + b
        self.a = (scale / std * np.ones(3, np.float32)).astype(np.float32)
        self.b = (-mean / std * np.ones(3, np.float32)).astype(np.float32)
        self.bgr = pp.get("channel_order", "rgb") == "bgr"

    def __call__(self, path):
        im = Image.open(path)
        s = self.resize
        if self.draft and im.format == "JPEG":
            # libjpeg's reduced IDCT (1/2, 1/4, 1/8), keeping both sides >= 2 x resize:
            # the same margin xfer keeps (src/images/preprocess.rs), so both sides do the same
            # amount of antialiased resizing afterwards.
            im.draft("RGB", (2 * s, 2 * s))
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            size = (s, int(s * h / w))
        else:
            size = (int(s * w / h), s)
        im = im.resize(size, self.resample)
        w, h = im.size
        c = self.crop
        left = int(round((w - c) / 2.0))
        top = int(round((h - c) / 2.0))
        im = im.crop((left, top, left + c, top + c))
        x = np.asarray(im, dtype=np.float32)  # [c, c, 3]
        x = x * self.a + self.b
        if self.bgr:
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1))  # [3, c, c]


def load_manifest(model):
    path = model if model.endswith(".toml") else os.path.join(ROOT, "onnx", f"{model}.toml")
    with open(path, "rb") as f:
        man = tomllib.load(f)
    return man, os.path.join(os.path.dirname(path), man["file"])


def make_session(onnx_path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="zoo name (onnx/NAME.toml) or a manifest path")
    ap.add_argument("--data", help="image folder (recursive)")
    ap.add_argument("--mode", choices=["e2e", "model"], default="e2e")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8, help="model mode: timed batches")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--out", help="e2e mode: write features to this HDF5 file")
    ap.add_argument("--workers", type=int, default=0,
                    help="e2e mode: decode in a multiprocessing pool of this many processes (0: in-process)")
    ap.add_argument("--draft", action="store_true", help="reduce large JPEGs while decoding (PIL draft)")
    args = ap.parse_args()

    man, onnx_path = load_manifest(args.model)
    recipe = Recipe(man["preprocess"], draft=args.draft)
    in_name = man["input"]["name"]
    feat_name = man["output"]["features"]
    sess = make_session(onnx_path, args.threads)
    c = recipe.crop

    paths = list_images(args.data) if args.data else []
    if args.limit:
        paths = paths[: args.limit]

    # warm-up: one batch (first kernel runs allocate and tune; not timed)
    sess.run([feat_name], {in_name: np.zeros((args.batch, 3, c, c), np.float32)})

    if args.mode == "e2e":
        if not paths:
            sys.exit(f"peer_ort: no images under {args.data}")
        t0 = time.perf_counter()
        feats = []
        batch = []
        decoders = Pool(args.workers) if args.workers > 0 else None
        tensors = decoders.imap(recipe, paths, chunksize=4) if decoders else map(recipe, paths)
        for x in tensors:
            batch.append(x)
            if len(batch) == args.batch:
                feats.append(sess.run([feat_name], {in_name: np.stack(batch)})[0])
                batch = []
        if batch:
            feats.append(sess.run([feat_name], {in_name: np.stack(batch)})[0])
        if decoders:
            decoders.close()
            decoders.join()
        feats = np.concatenate(feats)  # [n, d]
        if args.out:
            import h5py
            with h5py.File(args.out, "w") as f:
                f.create_dataset("data", data=feats)
        dt = time.perf_counter() - t0
        n = len(paths)
    else:
        if paths:
            pool = np.stack([recipe(p) for p in paths[: args.batch]])
        else:
            pool = np.random.default_rng(0).standard_normal((args.batch, 3, c, c), np.float32)
        if len(pool) < args.batch:
            pool = np.concatenate([pool] * (args.batch // len(pool) + 1))[: args.batch]
        t0 = time.perf_counter()
        for _ in range(args.batches):
            feats = sess.run([feat_name], {in_name: pool})[0]
        dt = time.perf_counter() - t0
        n = args.batches * args.batch

    res = {
        "tool": "peer_ort",
        "mode": args.mode,
        "model": man["name"],
        "images_per_s": n / dt,
        "n_images": n,
        "seconds": dt,
        "threads": args.threads,
        "workers": args.workers,
        "draft": args.draft,
        "batch": args.batch,
        "feature_shape": list(feats.shape),
        "onnxruntime": ort.__version__,
    }
    print(f"peer_ort {args.mode} {man['name']}: {n} images in {dt:.2f} s = "
          f"{n / dt:.1f} img/s", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
