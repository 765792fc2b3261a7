#!/usr/bin/env python3
"""Export a Hugging Face vision model as an xfer backbone: an ONNX file + its preprocessor config.

    python tools/export_hf.py MODEL [--out DIR] [--opset 18] [--clip] [--random-weights]
                                    [--add [--xfer PATH] [--zoo DIR]]

MODEL is a hub id, or a local folder with the model's config.json and
preprocessor_config.json (offline). Needs `pip install torch onnx onnxscript onnxruntime
transformers` (tools/export_common.py). --random-weights builds the model from its
config.json with random weights (nothing downloaded beyond the two configs; for tests:
the manifest says weights = "random"). Documented in docs/models.md ("Your own backbone");
tools/check_exporters.py runs it offline.

Writes into DIR (default: ./exported/<model id with / as _>):
  model.onnx                 one self-contained file (over 2 GB: model.onnx.data beside it),
                             input `pixel_values` float32 [batch, 3, S, S], dynamic batch axis;
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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_common as common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_id")
    ap.add_argument("--clip", action="store_true", help="CLIP: export the projected image embeddings")
    common.add_common_args(ap)
    args = ap.parse_args()
    common.check_opset(args.opset)

    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPVisionModelWithProjection

    name = Path(args.model_id).name if Path(args.model_id).is_dir() else args.model_id
    name = name.replace("/", "_").replace("-", "_").replace(".", "_") + ("_clip" if args.clip else "")
    out = args.out or Path("exported") / name
    out.mkdir(parents=True, exist_ok=True)
    proc = AutoImageProcessor.from_pretrained(args.model_id)
    proc.save_pretrained(out)  # writes preprocessor_config.json
    cls = CLIPVisionModelWithProjection if args.clip else AutoModel
    if args.random_weights:
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(args.model_id)
        # AutoModel builds from a config with from_config; a concrete class by its constructor.
        model = (AutoModel.from_config(config) if cls is AutoModel else cls(config)).eval()
    else:
        model = cls.from_pretrained(args.model_id).eval()
    outputs = ["image_embeds", "last_hidden_state"] if args.clip else ["last_hidden_state"]
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
    common.export(wrapped, (x,), onnx_path, ["pixel_values"], outputs, args.opset)
    with torch.no_grad():
        want = [w.numpy() for w in wrapped(x)]
    if common.check_against_torch(onnx_path, {"pixel_values": x.numpy()}, want) > 1e-3:
        onnx_path.unlink()
        print("error: the export disagrees with PyTorch; try another --opset", file=sys.stderr)
        return 1
    cmd = ["xfer", "models", "add", str(onnx_path), "--name", name,
           "--config", str(out / "preprocessor_config.json")]
    first = want[0]
    if args.clip:
        cmd += ["--output", "image_embeds", "--l2"]
    elif first.ndim == 3:
        dino = "dinov2" in (args.model_id + model.config.model_type).lower()
        cmd += ["--pool", "cls+mean" if dino else "cls"]
        regs = getattr(model.config, "num_register_tokens", 0) or 0
        if dino:
            cmd += ["--prefix-tokens", str(1 + regs)]
    elif first.ndim == 4:
        cmd += ["--pool", "avg"]
    print("wrote", onnx_path, "and", out / "preprocessor_config.json")
    return common.finish(args, cmd)


if __name__ == "__main__":
    sys.exit(main())
