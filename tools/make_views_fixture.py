#!/usr/bin/env python3
"""Generate the augmented-view parity fixture in tests/fixtures/views/.

For each case (a real photo, a crop box and a flip) it writes

  <name>.input.f16     raw little-endian float16, C-order [3, crop, crop]: the
                       torchvision reference tensor of that view (below)
  <name>.features.f32  raw little-endian float32 [feature_dim]: onnxruntime's
                       (Python, CPU EP) `features` of the float32 tensor

and index.json (sources, boxes, flips, recipe, versions). The reference, with
resize/crop/interpolation/mean/std read from onnx/efficientnet_lite0.toml:

    import torchvision.transforms.functional as F
    img = PIL.Image.open(path).convert('RGB')               # no EXIF rotation
    v = F.resized_crop(img, top, left, height, width, [crop, crop],
                       interpolation=BILINEAR)               # PIL: crop, then antialiased resize
    if flip: v = F.hflip(v)
    x = F.normalize(F.to_tensor(v), mean=[m / s ...], std=[d / s ...])  # s = 255 * pixel_scale

This is what torchvision's RandomResizedCrop + RandomHorizontalFlip do once
their random parameters are drawn; xfer draws its own (src/images/augment.rs) and
the test feeds it these boxes. The boxes cover a small upsampled crop
(scale ≈ 0.08), a large downsampled one, an off-centre one and a JPEG.

Usage: .venv/bin/python tools/make_views_fixture.py
"""
import hashlib
import json
import os
import tomllib

import numpy as np
import onnxruntime as ort
import PIL
import torch
import torchvision
from PIL import Image
from torchvision.transforms import functional as F
from torchvision.transforms import InterpolationMode

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "views")

# (name, source, (top, left, height, width), flip)
CASES = [
    ("chelsea_small_flip", "data/photos/chelsea.png", (40, 170, 90, 120), True),
    ("chelsea_large", "data/photos/chelsea.png", (0, 20, 300, 400), False),
    ("coffee_offcentre_flip", "data/photos/coffee.png", (150, 5, 250, 180), True),
    ("odd_jpeg", "tests/fixtures/parity/odd.jpg", (100, 30, 200, 260), True),
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    with open(os.path.join(ROOT, "onnx", "efficientnet_lite0.toml"), "rb") as f:
        manifest = tomllib.load(f)
    pre = manifest["preprocess"]
    assert pre["interpolation"] == "bilinear" and pre.get("channel_order", "rgb") == "rgb"
    s = 255.0 * pre["pixel_scale"]
    mean = [m / s for m in pre["mean"]]
    std = [d / s for d in pre["std"]]
    crop = pre["crop"]
    onnx_file = os.path.join(ROOT, "onnx", manifest["file"])
    sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for name, source, (top, left, h, w), flip in CASES:
        img = Image.open(os.path.join(ROOT, source)).convert("RGB")
        assert top + h <= img.height and left + w <= img.width, (name, img.size)
        v = F.resized_crop(img, top, left, h, w, [crop, crop], interpolation=InterpolationMode.BILINEAR)
        if flip:
            v = F.hflip(v)
        x = F.normalize(F.to_tensor(v), mean=mean, std=std)
        feats = sess.run([manifest["output"]["features"]], {input_name: x[None].numpy()})[0]
        x.numpy().astype("<f2").tofile(os.path.join(OUT, f"{name}.input.f16"))
        feats[0].astype("<f4").tofile(os.path.join(OUT, f"{name}.features.f32"))
        cases.append({
            "name": name,
            "source": source,
            "source_sha256": sha256(os.path.join(ROOT, source)),
            "source_size_wh": list(img.size),
            "box": {"top": top, "left": left, "height": h, "width": w},
            "flip": flip,
            "input_file": f"{name}.input.f16",
            "features_file": f"{name}.features.f32",
        })
    index = {
        "generator": "tools/make_views_fixture.py",
        "model_sha256": manifest["sha256"],
        "recipe": pre,
        "reference": "F.resized_crop(PIL image, top, left, height, width, [crop, crop], BILINEAR) -> F.hflip if flip -> to_tensor -> normalize",
        "reference_versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "PIL": PIL.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        },
        "cases": cases,
    }
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
