#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz targets under fuzz/seeds/<target>/.

Run with the project's venv (PIL, numpy): `.venv/bin/python tools/make_fuzz_seeds.py`.
Deterministic. Each file is a valid (or nearly valid) input of its target, in
the target's input format (see fuzz/src/checks.rs):

- decode:   1 control byte, then an image file (tiny JPEG/PNG/GIF/BMP/WebP/TIFF…).
- bundle:   a safetensors head bundle as `xfer train` writes it.
- manifest: a backbone manifest (TOML).
- kaggle_id: 1 control byte, then NUL-separated records (control byte + path).
feature_meta's input is an `arbitrary` structure: it needs no seeds.
"""
import io
import json
import os
import struct

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def image_seeds():
    g = np.random.default_rng(0)
    rgb = Image.fromarray(g.integers(0, 256, (12, 9, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(g.integers(0, 256, (7, 10, 4), dtype=np.uint8), "RGBA")
    grey = rgb.convert("L")
    cases = []

    def save(name, img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        cases.append((name, b.getvalue()))

    save("baseline.jpg", rgb, "JPEG", quality=50)
    save("progressive.jpg", rgb, "JPEG", quality=50, progressive=True)
    save("grey.jpg", grey, "JPEG", quality=50)
    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG", quality=50)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW
    save("exif6.jpg", rgb, "JPEG", quality=50, exif=exif.tobytes())
    save("rgb.png", rgb, "PNG")
    save("rgba.png", rgba, "PNG")
    save("grey16.png", Image.fromarray((np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)), "PNG")
    save("pal.gif", rgb.convert("P"), "GIF")
    save("rgb.bmp", rgb, "BMP")
    save("rgba.webp", rgba, "WEBP", lossless=True)
    save("rgb.tiff", rgb, "TIFF")
    for i, (name, data) in enumerate(cases):
        # control byte: vary scaled decode, interpolation, order, crop, resize
        put("decode", name, bytes([(i * 37 + 1) & 0xFF]) + data)


def safetensors_bytes(tensors, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    off = 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr, dtype="<f4")
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def bundle(d, hidden, c, standardized, g, tweak=None):
    """A bundle as `xfer train` writes it; `tweak(meta, tensors)` may break it."""
    meta = {
        "format": "xfer-head",
        "format_version": 1,
        "kind": "mlp" if hidden else "logistic",
        "architecture": {
            "n_features": d,
            "hidden": hidden,
            "n_classes": c,
            "dropout": 0.5 if hidden else 0.0,
            "input_dropout": bool(hidden),
        },
        "class_names": [f"c{k}" for k in range(c)],
        "backbones": [{"name": "tiny", "model_sha256": "ab", "preprocess": "{}", "n_features": d}],
        "standardized": standardized,
        "training": {"epochs": 1},
        "metrics": {},
        "xfer_version": "0.1.0",
    }
    widths = [d] + hidden + [c]
    tensors = []
    for l in range(len(widths) - 1):
        tensors.append((f"layers.{l}.weight", g.standard_normal((widths[l + 1], widths[l]))))
        tensors.append((f"layers.{l}.bias", g.standard_normal(widths[l + 1])))
    if standardized:
        tensors.append(("standardize.mean", g.standard_normal(d)))
        tensors.append(("standardize.scale", np.abs(g.standard_normal(d)) + 0.5))
    if tweak:
        tweak(meta, tensors)
    return safetensors_bytes(tensors, {"xfer": json.dumps(meta)})


def bundle_seeds():
    g = np.random.default_rng(1)
    put("bundle", "mlp.safetensors", bundle(5, [4], 3, True, g))
    put("bundle", "linear.safetensors", bundle(3, [], 2, False, g))


def bundle_bug_fixtures():
    """Bundles that load although they cannot be a trained head (no panic in
    Bundle::load, but wrong or crashing predictions downstream):
    tests/fixtures/fuzz/bundle/open/."""
    g = np.random.default_rng(2)
    out = os.path.join(ROOT, "tests", "fixtures", "fuzz", "bundle", "open")
    os.makedirs(out, exist_ok=True)

    def nan_weight(meta, tensors):
        tensors[0][1][0, 0] = np.nan

    def zero_scale(meta, tensors):
        for name, arr in tensors:
            if name == "standardize.scale":
                arr[:] = 0.0

    for name, data in [
        ("zero_classes.safetensors", bundle(3, [], 0, False, g)),
        ("one_class.safetensors", bundle(3, [], 1, False, g)),
        ("nan_weight.safetensors", bundle(3, [], 2, False, g, nan_weight)),
        ("zero_scale.safetensors", bundle(3, [], 2, True, g, zero_scale)),
    ]:
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def manifest_seeds():
    with open(os.path.join(ROOT, "tests", "fixtures", "tiny", "tiny.toml"), "rb") as f:
        put("manifest", "tiny.toml", f.read())
    with open(os.path.join(ROOT, "onnx", "efficientnet_lite0.toml"), "rb") as f:
        put("manifest", "efficientnet_lite0.toml", f.read())


def kaggle_seeds():
    def enc(ctl, recs):
        return bytes([ctl]) + b"\0".join(bytes([c]) + p for c, p in recs)

    put("kaggle_id", "numeric", enc(3, [(127, b"test1/10.jpg"), (0, b"test1/2.jpg"), (64, b"1.png"), (0x80, b"t/3.jpg")]))
    put("kaggle_id", "names", enc(0, [(10, b"a,b.jpg"), (20, b'say "hi".jpg'), (30, b"new\nline.jpg"), (40, b"bad\xff.jpg")]))


if __name__ == "__main__":
    image_seeds()
    bundle_seeds()
    bundle_bug_fixtures()
    manifest_seeds()
    kaggle_seeds()
