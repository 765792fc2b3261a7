#!/usr/bin/env python3
"""Check that an EfficientNet-Lite ONNX backbone really carries ImageNet weights.

    tools/check_lite_top1.py [--variant N ...]     (default: 0)

Runs onnx/efficientnet_lite{N}.onnx in ONNX Runtime (CPU) on two real photos from
data/photos/ (tools/fetch_photos.sh), preprocessed with the recipe in the model's
manifest onnx/efficientnet_lite{N}.toml: PIL resize of the shorter side to `resize`
(bilinear), centre crop `crop` × `crop`, then (u8 * pixel_scale - mean) / std, NCHW.
Prints the top-5 ImageNet classes with softmax probabilities, and exits non-zero unless

    chelsea.png's top-1 is 281 tabby, 282 tiger cat or 285 Egyptian cat
    coffee.png's  top-1 is 967 espresso, 968 cup or 504 coffee mug

It also checks that the two outputs agree: logits == features @ fc.weight^T + fc.bias,
with the classifier read from the ONNX file's initializers.

Class names: tools/imagenet_classes.txt, the 1000 ImageNet-1k classes in index order
(taken from torchvision 0.14's `_IMAGENET_CATEGORIES`).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "data" / "photos"
CLASSES = Path(__file__).resolve().parent / "imagenet_classes.txt"

# photo -> ImageNet indices its top-1 must be one of
EXPECTED = {
    "chelsea.png": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee.png": {967, 968, 504},  # espresso, cup, coffee mug
}
# features @ W^T + b in float64 vs ORT's float32 Gemm.
CONSISTENCY_TOL = 1e-3

INTERPOLATION = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST"}


def preprocess(path: Path, pp: dict) -> np.ndarray:
    """One image -> float32 [3, crop, crop] following the manifest's [preprocess]."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = pp["resize"]
    # Shorter side to `resize`, keeping the aspect ratio, with torchvision's rounding
    # (Resize: the longer side is truncated; CenterCrop: offsets rounded). PIL's resize
    # antialiases when it shrinks.
    nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize((nw, nh), getattr(Image.Resampling, INTERPOLATION[pp["interpolation"]]))
    c = pp["crop"]
    left, top = int(round((nw - c) / 2.0)), int(round((nh - c) / 2.0))
    img = img.crop((left, top, left + c, top + c))
    x = np.asarray(img, dtype=np.float32)  # [crop, crop, 3] RGB
    if pp["channel_order"] == "bgr":
        x = x[:, :, ::-1]
    x = (x * np.float32(pp["pixel_scale"]) - np.asarray(pp["mean"], np.float32)) \
        / np.asarray(pp["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # [3, crop, crop]


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check_variant(n: int, classes: list[str]) -> bool:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    name = f"efficientnet_lite{n}"
    manifest = ROOT / "onnx" / f"{name}.toml"
    if not manifest.exists():
        print(f"{name}: {manifest} missing; run tools/lite_to_onnx.py --variant {n}", file=sys.stderr)
        return False
    m = tomllib.loads(manifest.read_text(encoding="utf-8"))
    model_path = ROOT / "onnx" / m["file"]
    if not model_path.exists():
        print(f"{name}: {model_path} missing; run tools/lite_to_onnx.py --variant {n}", file=sys.stderr)
        return False
    blob = model_path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if sha != m["sha256"]:
        print(f"{name}: sha256 {sha} differs from the manifest's {m['sha256']}; "
              f"re-run tools/lite_to_onnx.py --variant {n} --force", file=sys.stderr)
        return False
    print(f"== {name} (sha256 {sha[:16]}…, weights: {m['weights_source']})")

    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    names = sorted(EXPECTED)
    x = np.stack([preprocess(PHOTOS / p, m["preprocess"]) for p in names])  # [n, 3, crop, crop]
    feats, logits = sess.run([m["output"]["features"], m["output"]["logits"]],
                             {m["input"]["name"]: x})  # [n, 1280], [n, 1000]

    # logits must be the classifier applied to the features.
    inits = {t.name: t for t in onnx.load_from_string(blob).graph.initializer}
    fc_w = numpy_helper.to_array(inits["fc.weight"]).astype(np.float64)  # [1000, 1280]
    fc_b = numpy_helper.to_array(inits["fc.bias"]).astype(np.float64)  # [1000]
    diff = float(np.max(np.abs(feats.astype(np.float64) @ fc_w.T + fc_b - logits)))
    consistent = diff <= CONSISTENCY_TOL
    print(f"  logits vs features @ fc.W^T + b: max abs diff {diff:.3g} "
          f"(max |logit| {float(np.max(np.abs(logits))):.3g}) {'ok' if consistent else 'FAIL'}")

    ok = consistent
    probs = softmax(logits)
    for i, photo in enumerate(names):
        top = np.argsort(-probs[i], kind="stable")[:5]
        good = int(top[0]) in EXPECTED[photo]
        ok &= good
        print(f"  {photo}: top-1 {'ok' if good else 'FAIL (expected one of ' + str(sorted(EXPECTED[photo])) + ')'}")
        for k in top:
            print(f"    {int(k):4d} {classes[k]:<24s} {probs[i, k]:.4f}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", type=int, action="append", choices=[0, 1, 2],
                    help="which efficientnet_lite{N} to check; repeatable (default 0)")
    args = ap.parse_args()
    classes = CLASSES.read_text(encoding="utf-8").splitlines()
    if len(classes) != 1000:
        sys.exit(f"{CLASSES}: {len(classes)} lines, expected 1000")
    missing = [p for p in EXPECTED if not (PHOTOS / p).exists()]
    if missing:
        sys.exit(f"{PHOTOS}: missing {missing}; run tools/fetch_photos.sh")
    results = [check_variant(n, classes) for n in (args.variant or [0])]
    if not all(results):
        print("check_lite_top1: FAILED", file=sys.stderr)
        sys.exit(1)
    print("check_lite_top1: all ok")


if __name__ == "__main__":
    main()
