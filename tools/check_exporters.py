#!/usr/bin/env python3
"""Issue 26's check of "bring your own backbone" against real timm and transformers,
offline (random weights; no hub): run by tools/check_exporters.sh in a venv with torch
(CPU), timm, transformers, onnx, onnxscript, onnxruntime, h5py.

1. Processor configs: each tests/fixtures/hf_processors/*.json given to the real
   transformers image processor (AutoImageProcessor) on the test photos, against the
   recipe tests/fixtures/hf_processors/expected.json states (which
   tests/it/hf_processors.rs checks xfer reads) done in PIL + numpy: max |difference|.
2. Exporters: a representative set exported with --random-weights through
   tools/export_timm.py and tools/export_hf.py, `xfer models add`ed (--add), extracted
   with `xfer extract`, and compared per image with timm's resolve_data_config +
   create_transform (or the transformers processor) + the exported graph (which the
   exporters checked against the PyTorch forward) + the manifest's pooling:
   cosine >= 0.9999 each.

    python tools/check_exporters.py --xfer target/release/xfer --work DIR
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "hf_processors"
# Photo sizes: the three that crashed bicubic resizing (issue 26), and others.
SIZES = [(185, 160), (175, 151), (91, 87), (640, 480), (480, 640), (300, 300), (257, 199), (224, 224),
         (1024, 683), (97, 311), (333, 250), (500, 375), (150, 149)]


def photos(work: Path) -> Path:
    """The repository's photos, and each resized (Lanczos) to SIZES, as RGB PNG."""
    out = work / "photos"
    out.mkdir(parents=True, exist_ok=True)
    srcs = sorted((ROOT / "data" / "photos").glob("*.png")) + [ROOT / "tests" / "fixtures" / "parity" / "odd.jpg"]
    for src in srcs:
        img = Image.open(src).convert("RGB")
        img.save(out / f"{src.stem}.png")
        for w, h in SIZES:
            img.resize((w, h), Image.LANCZOS).save(out / f"{src.stem}_{w}x{h}.png")
    return out


def pil_recipe(img: Image.Image, r: dict) -> np.ndarray:
    """expected.json's recipe: resize (shorter side or square), crop at (len - crop) // 2, scale, normalise."""
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[r["interpolation"]]
    w, h = img.size
    if r["resize_mode"] == "square":
        size = (r["resize"], r["resize"])
    elif w <= h:
        size = (r["resize"], int(r["resize"] * h / w))
    else:
        size = (int(r["resize"] * w / h), r["resize"])
    img = img.resize(size, resample)
    c = r["crop"]
    left, top = (size[0] - c) // 2, (size[1] - c) // 2
    x = np.asarray(img.crop((left, top, left + c, top + c)), dtype=np.float32) / 255.0
    x = (x - np.array(r["mean"], np.float32)) / np.array(r["std"], np.float32)
    return x.transpose(2, 0, 1)


def check_processors(pics: list[Path], work: Path) -> bool:
    from transformers import AutoImageProcessor

    expected = json.loads((FIX / "expected.json").read_text())["expected"]
    ok = True
    print("processor configs (transformers vs the recipe xfer reads), max |diff| over the photos:")
    for name, r in expected.items():
        d = work / "processors" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "preprocessor_config.json").write_text((FIX / f"{name}.json").read_text())
        proc = AutoImageProcessor.from_pretrained(str(d))
        worst, mean_diff = 0.0, []
        for p in pics:
            img = Image.open(p).convert("RGB")
            got = np.asarray(proc(images=img, return_tensors="np")["pixel_values"][0])
            want = pil_recipe(img, r)
            if got.shape != want.shape:
                print(f"  {name}: {p.name}: shape {got.shape} vs {want.shape}")
                ok = False
                break
            diff = np.abs(got - want)
            worst = max(worst, float(diff.max()))
            mean_diff.append(float(diff.mean()))
        # A wrong resize, crop or normalisation differs by whole units; the
        # processors' own resize (torch or PIL) by rounding, within 1/255/std.
        good = np.mean(mean_diff) < 0.02
        ok &= good
        print(f"  {name:14s} {type(proc).__name__:32s} max {worst:.4f} mean {np.mean(mean_diff):.5f} {'ok' if good else 'DIFFERS'}")
    return ok


def read_h5(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["path"][:]]
        return dict(zip(paths, f["data"][:]))


def pool(out: np.ndarray, mode: str, prefix: int, l2: bool) -> np.ndarray:
    if mode == "cls":
        v = out[:, 0]
    elif mode == "mean":
        v = out[:, prefix:].mean(1)
    elif mode == "cls+mean":
        v = np.concatenate([out[:, 0], out[:, prefix:].mean(1)], 1)
    elif mode == "avg":
        v = out.mean((2, 3))
    else:
        v = out
    if l2:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return v


def check_exports(pics: list[Path], work: Path, xfer: str) -> bool:
    import onnxruntime as ort
    import timm
    import torch
    from transformers import AutoImageProcessor, CLIPVisionConfig, ConvNextConfig, Dinov2Config, ViTConfig

    zoo = work / "zoo"
    zoo.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    common = ["--random-weights", "--add", "--xfer", xfer, "--zoo", str(zoo)]
    # (exporter, model, extra flags, name, output, pool, prefix tokens, l2, hf config dir)
    cases = [
        ("timm", "vit_small_patch16_224", [], "vit_small_patch16_224", "features", "none", 1, False),
        ("timm", "vit_small_patch14_reg4_dinov2", ["--tokens"], "vit_small_patch14_reg4_dinov2_tokens", "features", "cls+mean", 5, False),
        ("timm", "convnext_atto", [], "convnext_atto", "features", "none", 1, False),
        ("timm", "resnet18", ["--tokens"], "resnet18_tokens", "features", "avg", 1, False),
        ("hf", "dinov2", [], "dinov2", "last_hidden_state", "cls+mean", 1, False),
        ("hf", "convnext", [], "convnext", "last_hidden_state", "avg", 1, False),
        ("hf", "clip", ["--clip"], "clip_clip", "image_embeds", "none", 1, True),
        ("hf", "vit", [], "vit", "last_hidden_state", "cls", 1, False),
    ]
    hf_configs = {
        "dinov2": Dinov2Config(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, image_size=224),
        "convnext": ConvNextConfig(depths=[1, 1, 2, 1], hidden_sizes=[32, 64, 128, 256]),
        "clip": CLIPVisionConfig(hidden_size=192, intermediate_size=384, num_hidden_layers=4, num_attention_heads=3,
                                 projection_dim=64, patch_size=32),
        "vit": ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=384),
    }
    ok = True
    print("exporters -> xfer models add -> xfer extract, against timm/transformers preprocessing + the graph:")
    for kind, model, extra, name, output, mode, prefix, l2 in cases:
        out_dir = work / "exported" / name
        if kind == "timm":
            cmd = [py, str(ROOT / "tools" / "export_timm.py"), model, "--out", str(out_dir)] + extra + common
        else:
            src = work / "hf" / model
            src.mkdir(parents=True, exist_ok=True)
            hf_configs[model].save_pretrained(src)
            (src / "preprocessor_config.json").write_text((FIX / f"{model}.json").read_text())
            cmd = [py, str(ROOT / "tools" / "export_hf.py"), str(src), "--out", str(out_dir)] + extra + common
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  {name}: export/add failed\n{r.stdout}\n{r.stderr}")
            ok = False
            continue
        onnx_path = next(out_dir.glob("*.onnx"))
        h5 = work / f"{name}.h5"
        h5.unlink(missing_ok=True)
        r = subprocess.run([xfer, "--zoo", str(zoo), "extract", "--model", name, "--data", str(pics[0].parent),
                            "--out", str(h5), "--quiet", "--batch", "8"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  {name}: extract failed\n{r.stdout}\n{r.stderr}")
            ok = False
            continue
        got = read_h5(h5)
        manifest = (zoo / f"{name}.toml").read_text()
        if kind == "timm":
            m = timm.create_model(model, pretrained=False, num_classes=0)
            transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=m))
            prep = lambda img: transform(img).numpy()  # noqa: E731
        else:
            proc = AutoImageProcessor.from_pretrained(str(out_dir))
            prep = lambda img: np.asarray(proc(images=img, return_tensors="np")["pixel_values"][0])  # noqa: E731
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        cos = []
        for p in pics:
            x = prep(Image.open(p).convert("RGB"))[None].astype(np.float32)
            raw = sess.run([output], {sess.get_inputs()[0].name: x})[0]
            want = pool(raw, mode, prefix, l2)[0]
            g = got[p.name]
            cos.append(float(np.dot(g, want) / (np.linalg.norm(g) * np.linalg.norm(want))))
        worst = min(cos)
        good = worst >= 0.9999 and 'weights = "random"' in manifest
        ok &= good
        print(f"  {name:38s} {len(cos)} photos: cosine min {worst:.6f} mean {np.mean(cos):.6f}, "
              f"1-cos max {1 - worst:.1e} {'ok' if good else 'FAILED'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xfer", required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--only", choices=["processors", "exports"])
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    pics = sorted(photos(args.work).glob("*.png"))
    ok = True
    if args.only != "exports":
        ok &= check_processors(pics, args.work)
    if args.only != "processors":
        ok &= check_exports(pics, args.work, str(Path(args.xfer).resolve()))
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
