#!/usr/bin/env python3
"""Generate the user-backbone fixtures in tests/fixtures/backbones/ (issue: any backbone).

    python tools/make_backbone_fixtures.py [--out DIR]

Needs torch (Debian's python3-torch), onnx, onnxruntime, numpy, PIL and, for the
references, timm and transformers (`pip install timm transformers` into a venv with
Debian's torch/torchvision visible; only this script needs them, never the tests).

Writes (all committed, ~0.3 MB in all):

  vit.onnx        a tiny vision transformer with random weights (torch.manual_seed(0)):
                  input `pixel_values` [batch, 3, 224, 224] -> 16x16 patch embedding
                  (Conv, D = 32) -> [CLS] + 2 register tokens + 196 patch tokens, plus
                  position embeddings -> one pre-norm block (LayerNorm, 2-head
                  self-attention, LayerNorm, MLP 32 -> 64 -> 32 with GELU) -> LayerNorm
                  -> output `last_hidden_state` [batch, 199, 32]
  cnn.onnx        a tiny CNN: input `input` [batch, 3, 96, 96] -> Conv 3x3/2 (3 -> 8) ->
                  ReLU -> Conv 3x3/2 (8 -> 12) -> output `feature_map` [batch, 12, 24, 24]
                  (unpooled)
  cnn_fixed_batch.onnx  the same CNN exported without a dynamic batch axis ([1, 3, 96, 96]),
                  for the test that `xfer models add` refuses it with how to re-export
  timm_config.json      a timm hub `config.json` (pretrained_cfg: input_size 224, bicubic,
                        crop_pct 0.875, crop_mode center, mean/std 0.5)
  hf_clip_preprocessor_config.json   Hugging Face CLIPImageProcessor style: shortest_edge
                        224, bicubic (resample 3), centre crop 224, rescale 1/255, CLIP's
                        mean/std
  hf_vit_preprocessor_config.json    Hugging Face ViTImageProcessor style: size
                        {height: 96, width: 96} (square, no crop), bilinear (resample 2),
                        ImageNet mean/std
  reference.json  for each case (model, config, pooling) and each photo
                  (data/photos/chelsea.png, data/photos/coffee.png,
                  tests/fixtures/parity/odd.jpg): the pooled feature vector computed by
                  the library that owns the config (timm's create_transform /
                  transformers' image processor on the PIL image), onnxruntime (Python,
                  CPU), and numpy pooling:
                    cls      = out[:, 0]
                    mean     = out[:, K:].mean(1)        (K = prefix tokens = 3)
                    cls+mean = concat(cls, mean)
                    avg/max  = out.mean((2, 3)) / out.max((2, 3))
                    l2       = x / max(||x||, 1e-12)
                  and, for the exact pooling check, the pooled outputs of both models on
                  a fixed input x[i] = sin(0.001 * i) (C-order flat index i) as float32.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = [
    ROOT / "data/photos/chelsea.png",
    ROOT / "data/photos/coffee.png",
    ROOT / "tests/fixtures/parity/odd.jpg",
]
D, PATCH, SIDE, REGISTERS = 32, 16, 224, 2
PREFIX = 1 + REGISTERS


class TinyViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        n = (SIDE // PATCH) ** 2
        self.patch = torch.nn.Conv2d(3, D, PATCH, PATCH)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, D) * 0.5)
        self.reg = torch.nn.Parameter(torch.randn(1, REGISTERS, D) * 0.5)
        self.pos = torch.nn.Parameter(torch.randn(1, PREFIX + n, D) * 0.1)
        self.ln1 = torch.nn.LayerNorm(D)
        self.qkv = torch.nn.Linear(D, 3 * D)
        self.proj = torch.nn.Linear(D, D)
        self.ln2 = torch.nn.LayerNorm(D)
        self.fc1 = torch.nn.Linear(D, 2 * D)
        self.fc2 = torch.nn.Linear(2 * D, D)
        self.ln = torch.nn.LayerNorm(D)

    def forward(self, x):
        b = x.shape[0]
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(b, -1, -1), self.reg.expand(b, -1, -1), t], 1) + self.pos
        h = self.ln1(t)
        q, k, v = self.qkv(h).reshape(b, -1, 3, 2, D // 2).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / (D // 2) ** 0.5, -1) @ v
        t = t + self.proj(a.transpose(1, 2).reshape(b, -1, D))
        t = t + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(t))))
        return self.ln(t)


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.c2 = torch.nn.Conv2d(8, 12, 3, 2, 1)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


def export(model, side, in_name, out_name, path, dynamic=True):
    model.eval()
    x = torch.zeros(1, 3, side, side)
    axes = {in_name: {0: "batch"}, out_name: {0: "batch"}} if dynamic else None
    torch.onnx.export(
        model, x, str(path), input_names=[in_name], output_names=[out_name],
        dynamic_axes=axes, opset_version=17,
    )


TIMM = {
    "architecture": "tiny_vit_fixture",
    "num_classes": 0,
    "num_features": D,
    "global_pool": "token",
    "pretrained_cfg": {
        "input_size": [3, SIDE, SIDE],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "num_classes": 0,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    },
}
HF_CLIP = {
    "crop_size": {"height": SIDE, "width": SIDE},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": SIDE},
}
HF_VIT = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "ViTImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 96, "width": 96},
}


def timm_input(img):
    import timm.data

    cfg = timm.data.resolve_data_config({}, pretrained_cfg=TIMM["pretrained_cfg"])
    tf = timm.data.create_transform(**cfg)
    return tf(img).numpy()


def hf_input(img, cfg):
    from transformers import CLIPImageProcessor, ViTImageProcessor

    cls = {"CLIPImageProcessor": CLIPImageProcessor, "ViTImageProcessor": ViTImageProcessor}
    args = {k: v for k, v in cfg.items() if k != "image_processor_type"}
    proc = cls[cfg["image_processor_type"]](**args)
    return proc(images=img, return_tensors="np")["pixel_values"][0]


def pool(out, mode, l2):
    if mode == "cls":
        x = out[:, 0]
    elif mode == "mean":
        x = out[:, PREFIX:].mean(1)
    elif mode == "cls+mean":
        x = np.concatenate([out[:, 0], out[:, PREFIX:].mean(1)], 1)
    elif mode == "avg":
        x = out.mean((2, 3))
    elif mode == "max":
        x = out.max((2, 3))
    else:
        raise ValueError(mode)
    if l2:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


# (name, model file, config file, pooling, l2, preprocessing reference)
CASES = [
    ("vit_cls", "vit.onnx", "timm_config.json", "cls", False, timm_input),
    ("vit_mean", "vit.onnx", "timm_config.json", "mean", False, timm_input),
    ("vit_clsmean", "vit.onnx", "timm_config.json", "cls+mean", False, timm_input),
    ("vit_clip_l2", "vit.onnx", "hf_clip_preprocessor_config.json", "cls", True,
     lambda img: hf_input(img, HF_CLIP)),
    ("cnn_avg", "cnn.onnx", "hf_vit_preprocessor_config.json", "avg", False,
     lambda img: hf_input(img, HF_VIT)),
    ("cnn_max", "cnn.onnx", "hf_vit_preprocessor_config.json", "max", True,
     lambda img: hf_input(img, HF_VIT)),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/backbones"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    export(TinyViT(), SIDE, "pixel_values", "last_hidden_state", out / "vit.onnx")
    cnn = TinyCNN()
    export(cnn, 96, "input", "feature_map", out / "cnn.onnx")
    export(cnn, 96, "input", "feature_map", out / "cnn_fixed_batch.onnx", dynamic=False)
    for name, cfg in [("timm_config.json", TIMM),
                      ("hf_clip_preprocessor_config.json", HF_CLIP),
                      ("hf_vit_preprocessor_config.json", HF_VIT)]:
        (out / name).write_text(json.dumps(cfg, indent=2) + "\n")
    sessions = {f: ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])
                for f in ["vit.onnx", "cnn.onnx"]}

    def run(f, x):
        s = sessions[f]
        return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]

    ref = {"prefix_tokens": PREFIX, "photos": [str(p.relative_to(ROOT)) for p in PHOTOS],
           "cases": [], "fixed_input": {}}
    for name, f, cfg, mode, l2, prep in CASES:
        feats = []
        for p in PHOTOS:
            x = prep(Image.open(p).convert("RGB"))
            feats.append(pool(run(f, x[None]), mode, l2)[0].tolist())
        ref["cases"].append({"name": name, "model": f, "config": cfg, "pool": mode,
                             "l2": l2, "features": feats})
    for f, side in [("vit.onnx", SIDE), ("cnn.onnx", 96)]:
        n = 2 * 3 * side * side
        x = np.sin(0.001 * np.arange(n, dtype=np.float64)).astype(np.float32)
        o = run(f, x.reshape(2, 3, side, side))
        modes = ["cls", "mean", "cls+mean"] if f == "vit.onnx" else ["avg", "max"]
        ref["fixed_input"][f] = {m: pool(o, m, False).tolist() for m in modes}
        ref["fixed_input"][f]["raw_shape"] = list(o.shape)
    ref["sha256"] = {f: hashlib.sha256((out / f).read_bytes()).hexdigest()
                     for f in ["vit.onnx", "cnn.onnx"]}
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
