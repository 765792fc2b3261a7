#!/usr/bin/env python3
"""Export a Hugging Face vision model as an xfer backbone: an ONNX file + its preprocessor config.

    python tools/export_hf.py MODEL_ID [--out DIR] [--opset 17] [--clip] [--add]

Needs the internet (weights from the hub) and `pip install transformers onnx onnxruntime`
in a Python with torch. Documented in the README ("Your own backbone"); not run by the
tests, which are offline.

Writes into DIR (default: ./exported/<model id with / as _>):
  model.onnx                 input `pixel_values` float32 [batch, 3, S, S], dynamic batch axis;
                             output `last_hidden_state` [batch, T, D] (ViT, DINOv2, …) or
                             [batch, C, H, W] (ConvNeXt, ResNet), and, for CLIP with --clip,
                             `image_embeds` [batch, E] (CLIPVisionModelWithProjection)
  preprocessor_config.json   the model's own, as the hub holds it; `models add --config`
                             reads size/resample/crop/rescale/normalisation from it
Then checks ONNX Runtime against PyTorch on a batch of 2 and prints the `xfer models add`
command (runs it with --add): --pool cls+mean for DINOv2 (its linear-probe recipe),
cls for ViT, avg for CNN feature maps, --output image_embeds --l2 for CLIP.

Examples:
  python tools/export_hf.py facebook/dinov2-small
  python tools/export_hf.py openai/clip-vit-base-patch32 --clip
  python tools/export_hf.py facebook/convnext-tiny-224
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_id")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--clip", action="store_true", help="CLIP: export the projected image embeddings")
    ap.add_argument("--add", action="store_true", help="run `xfer models add` afterwards")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    from transformers import AutoImageProcessor, AutoModel, CLIPVisionModelWithProjection

    name = args.model_id.replace("/", "_").replace("-", "_").replace(".", "_")
    out = args.out or Path("exported") / name
    out.mkdir(parents=True, exist_ok=True)
    proc = AutoImageProcessor.from_pretrained(args.model_id)
    proc.save_pretrained(out)  # writes preprocessor_config.json
    if args.clip:
        model = CLIPVisionModelWithProjection.from_pretrained(args.model_id).eval()
        outputs = ["image_embeds", "last_hidden_state"]
    else:
        model = AutoModel.from_pretrained(args.model_id).eval()
        outputs = ["last_hidden_state"]
    crop = getattr(proc, "crop_size", None) or proc.size
    side = crop.get("height") or crop.get("shortest_edge")

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values)
            return tuple(getattr(o, k) for k in outputs)

    wrapped = Wrap(model).eval()
    x = torch.randn(2, 3, side, side)
    onnx_path = out / "model.onnx"
    tmp = out / "model.onnx.tmp"
    axes = {"pixel_values": {0: "batch"}, **{k: {0: "batch"} for k in outputs}}
    torch.onnx.export(wrapped, (x,), str(tmp), input_names=["pixel_values"], output_names=outputs,
                      dynamic_axes=axes, opset_version=args.opset)
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        want = wrapped(x)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    print(f"ONNX Runtime vs PyTorch on a batch of 2: outputs {[list(g.shape) for g in got]}, max |diff| {diff:.2e}")
    if diff > 1e-3:
        print("error: the export disagrees with PyTorch; try another --opset", file=sys.stderr)
        return 1
    tmp.replace(onnx_path)
    cmd = ["xfer", "models", "add", str(onnx_path), "--name", name,
           "--config", str(out / "preprocessor_config.json")]
    first = got[0]
    if args.clip:
        cmd += ["--output", "image_embeds", "--l2"]
    elif first.ndim == 3:
        dino = "dinov2" in args.model_id.lower()
        cmd += ["--pool", "cls+mean" if dino else "cls"]
        regs = getattr(model.config, "num_register_tokens", 0) or 0
        if dino:
            cmd += ["--prefix-tokens", str(1 + regs)]
    elif first.ndim == 4:
        cmd += ["--pool", "avg"]
    print("wrote", onnx_path, "and", out / "preprocessor_config.json")
    print("next:", " ".join(cmd))
    if args.add:
        return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
