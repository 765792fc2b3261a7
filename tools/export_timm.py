#!/usr/bin/env python3
"""Export a timm model as an xfer backbone: an ONNX file + the config `xfer models add` reads.

    python tools/export_timm.py MODEL [--out DIR] [--opset 17] [--tokens] [--add]

Needs the internet (the weights come from the Hugging Face hub through timm) and
`pip install timm onnx onnxruntime` in a Python with torch. It is documented in the
README ("Your own backbone") and not run by the tests, which are offline.

Writes into DIR (default: ./exported/MODEL):
  MODEL.onnx    input `input` float32 [batch, 3, S, S] with a dynamic batch axis;
                output `features`:
                  - default: timm's pooled pre-logits features (forward_head with
                    pre_logits=True), [batch, D]: the model pools as it was trained
                  - with --tokens: the unpooled forward_features output, tokens
                    [batch, T, D] (ViTs) or feature maps [batch, C, H, W] (CNNs), for
                    `models add --pool cls|mean|cls+mean|avg|max`
  config.json   {"architecture", "num_features", "global_pool", "pretrained_cfg": the
                model's pretrained_cfg}, as timm writes to the hub; `models add
                --config` takes its preprocessing (input_size, interpolation, crop_pct,
                crop_mode, mean, std) from it
Then checks ONNX Runtime against PyTorch on a batch of 2 (max |diff| printed; exits 1
above 1e-3) and prints the `xfer models add` command (runs it with --add).

Examples:
  python tools/export_timm.py convnext_tiny.fb_in22k
  python tools/export_timm.py vit_small_patch14_dinov2.lvd142m --tokens    # then --pool cls+mean
  python tools/export_timm.py vit_small_patch14_reg4_dinov2.lvd142m --tokens  # --prefix-tokens 5
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--tokens", action="store_true", help="export the unpooled tokens / feature maps")
    ap.add_argument("--add", action="store_true", help="run `xfer models add` afterwards")
    args = ap.parse_args()

    import onnxruntime as ort
    import timm
    import torch

    model = timm.create_model(args.model, pretrained=True, num_classes=0).eval()
    cfg = model.pretrained_cfg
    side = cfg["input_size"][-1]
    name = args.model.replace("/", "_").replace(".", "_")
    out = args.out or Path("exported") / name
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"

    class Features(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            f = self.m.forward_features(x)
            return f if args.tokens else self.m.forward_head(f, pre_logits=True)

    wrapped = Features(model).eval()
    x = torch.randn(2, 3, side, side)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    torch.onnx.export(
        wrapped, x, str(tmp), input_names=["input"], output_names=["features"],
        dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}}, opset_version=args.opset,
    )
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = wrapped(x).numpy()
    diff = float(np.abs(got - want).max())
    print(f"ONNX Runtime vs PyTorch on a batch of 2: output {list(got.shape)}, max |diff| {diff:.2e}")
    if diff > 1e-3:
        print("error: the export disagrees with PyTorch; try another --opset", file=sys.stderr)
        return 1
    tmp.replace(onnx_path)
    config = {
        "architecture": model.default_cfg.get("architecture", args.model),
        "num_features": model.num_features,
        "global_pool": getattr(model, "global_pool", None) if isinstance(getattr(model, "global_pool", None), str) else None,
        "pretrained_cfg": {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, list, tuple, bool, type(None)))},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    cmd = ["xfer", "models", "add", str(onnx_path), "--name", name, "--config", str(out / "config.json")]
    if args.tokens:
        prefix = getattr(model, "num_prefix_tokens", 1)
        cmd += ["--pool", "cls+mean" if got.ndim == 3 else "avg"]
        if got.ndim == 3:
            cmd += ["--prefix-tokens", str(prefix)]
    print("wrote", onnx_path, "and", out / "config.json")
    print("next:", " ".join(cmd))
    if args.add:
        return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
