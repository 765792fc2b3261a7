#!/usr/bin/env python3
"""Export a timm model as an xfer backbone: an ONNX file + the config `xfer models add` reads.

    python tools/export_timm.py MODEL [--out DIR] [--opset 18] [--tokens] [--random-weights]
                                      [--add [--xfer PATH] [--zoo DIR]]

Needs `pip install torch onnx onnxscript onnxruntime timm` (tools/export_common.py). The
pretrained weights come from the Hugging Face hub through timm; with --random-weights
nothing is downloaded (for tests: the manifest then says weights = "random"). Documented
in docs/models.md ("Your own backbone"); tools/check_exporters.py runs it offline.

Writes into DIR (default: ./exported/NAME, NAME the model with _tokens for --tokens):
  NAME.onnx     one self-contained file (the weights inside; over 2 GB in NAME.onnx.data
                beside it), input `input` float32 [batch, 3, S, S] with a dynamic batch axis;
                output `features`:
                  - default: timm's pooled pre-logits features (forward_head with
                    pre_logits=True), [batch, D]: the model pools as it was trained
                  - with --tokens: the unpooled forward_features output, tokens
                    [batch, T, D] (ViTs) or feature maps [batch, C, H, W] (CNNs), for
                    `models add --pool cls|mean|cls+mean|avg|max`
  config.json   {"architecture", "num_features", "global_pool", "pretrained_cfg": the
                model's pretrained_cfg}, as timm writes to the hub; `models add
                --config` takes its preprocessing (input_size, interpolation, crop_pct,
                crop_mode, mean, std) and licence from it
Then checks ONNX Runtime against PyTorch on a batch of 2 (max |diff| printed; exits 1
above 1e-3) and prints the `xfer models add` command (runs it with --add: `xfer` on PATH,
else target/release/xfer of this checkout, else --xfer).

Examples:
  python tools/export_timm.py convnext_tiny.fb_in22k
  python tools/export_timm.py vit_small_patch14_dinov2.lvd142m --tokens    # then --pool cls+mean
  python tools/export_timm.py vit_small_patch14_reg4_dinov2.lvd142m --tokens  # --prefix-tokens 5
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_common as common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", action="store_true", help="export the unpooled tokens / feature maps")
    common.add_common_args(ap)
    args = ap.parse_args()
    common.check_opset(args.opset)

    import timm
    import torch

    model = timm.create_model(args.model, pretrained=not args.random_weights, num_classes=0).eval()
    cfg = model.pretrained_cfg
    side = cfg["input_size"][-1]
    name = args.model.replace("/", "_").replace(".", "_") + ("_tokens" if args.tokens else "")
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
    common.export(wrapped, (x,), onnx_path, ["input"], ["features"], args.opset)
    with torch.no_grad():
        want = wrapped(x).numpy()
    if common.check_against_torch(onnx_path, {"input": x.numpy()}, [want]) > 1e-3:
        onnx_path.unlink()
        print("error: the export disagrees with PyTorch; try another --opset", file=sys.stderr)
        return 1
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
        cmd += ["--pool", "cls+mean" if want.ndim == 3 else "avg"]
        if want.ndim == 3:
            cmd += ["--prefix-tokens", str(prefix)]
    print("wrote", onnx_path, "and", out / "config.json")
    return common.finish(args, cmd)


if __name__ == "__main__":
    sys.exit(main())
