#!/usr/bin/env python3
"""Export a torchvision ImageNet classifier to ONNX as an xfer feature extractor.

    tools/export_torchvision.py MODEL [--weights FILE | --pretrained] [--check-deterministic]

MODEL is one of resnet18, resnet50, resnet152, vgg19, inception_v3, or `all`.

Writes `onnx/<model>.onnx` (atomically: a temporary file, checked, then renamed) and
its manifest `onnx/<model>.toml` (schema: docs/formats.md). The graph has

    input     `input`     float32 [batch, 3, S, S]   (S = 224; inception_v3: 299)
    output    `features`  float32 [batch, D]         the pooled pre-classifier vector
    output    `logits`    float32 [batch, 1000]      ImageNet logits

with a dynamic batch axis, opset 17, exported in eval mode. D is 512 (resnet18),
2048 (resnet50, resnet152, inception_v3) and 4096 (vgg19: the output of the
classifier up to and including its second ReLU, i.e. `classifier[:-1]` in eval
mode; the Dropouts are identities there).

Weights:
  --weights FILE   a torchvision state_dict the user already has (manifest: "pretrained")
  --pretrained     torchvision's own download (needs the internet; fails clearly offline)
  (neither)        random init with torch.manual_seed(0): structure only, for parity
                   and speed tests (manifest: "random" — never a pretrained claim).
                   BatchNorm statistics are then calibrated so activations stay O(1)
                   (see calibrate_batchnorm; --raw-init skips that)

The export is deterministic: the same torch/torchvision version gives the same bytes
(`--check-deterministic` exports twice and compares sha256). After export, ONNX
Runtime is checked against PyTorch on a random batch of 2; the script exits
non-zero if they disagree.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ONNX_DIR = ROOT / "onnx"
OPSET = 17

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Parity tolerances (PyTorch vs ONNX Runtime, fp32 on CPU).
ABS_TOL = 1e-4
# Deep randomly-initialised networks (and vgg19's 4096-d FC stack) can have outputs
# in the hundreds or more, where 1e-4 absolute is below fp32 resolution of a
# differently-ordered sum. Then the criterion is relative to the largest |value|.
REL_TOL = 1e-5

# name -> (input size S, resize, crop, feature_dim)
MODELS = {
    "resnet18": dict(size=224, resize=256, crop=224, dim=512),
    "resnet50": dict(size=224, resize=256, crop=224, dim=2048),
    "resnet152": dict(size=224, resize=256, crop=224, dim=2048),
    "vgg19": dict(size=224, resize=256, crop=224, dim=4096),
    "inception_v3": dict(size=299, resize=342, crop=299, dim=2048),
}

FEATURE_DESCRIPTION = {
    "resnet18": "features = global-average-pooled output of layer4 (the input of fc), 512-d",
    "resnet50": "features = global-average-pooled output of layer4 (the input of fc), 2048-d",
    "resnet152": "features = global-average-pooled output of layer4 (the input of fc), 2048-d",
    "vgg19": (
        "features = the 4096-d penultimate fully-connected output: classifier[:-1] in eval "
        "mode (Linear-ReLU-Dropout-Linear-ReLU-Dropout, Dropouts inactive), i.e. after the "
        "second ReLU, the input of the last Linear. Not the 512x7x7 pooled conv map "
        "(25088-d) that the tutorial's conv-only variant would give"
    ),
    "inception_v3": (
        "features = global-average-pooled output of Mixed_7c (the input of fc), 2048-d; "
        "aux classifier dropped"
    ),
}


def log(msg: str) -> None:
    print(f"export_torchvision: {msg}", flush=True)


def die(msg: str, code: int = 1) -> "NoReturn":  # noqa: F821
    print(f"export_torchvision: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- model


def load_state_dict(path: Path):
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        die(f"cannot read weights file {path}: {e}\n"
            "  pass a torchvision state_dict saved with torch.save(model.state_dict(), FILE)")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()  # a whole pickled model
    if not isinstance(obj, dict):
        die(f"{path} does not hold a state_dict (got {type(obj).__name__})")
    # Strip the prefix DataParallel adds.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def calibrate_batchnorm(model, size: int) -> int:
    """Rescales a randomly initialised model's BatchNorm layers so activations stay O(1).

    With torchvision's default init and fresh BatchNorm statistics (mean 0, var 1),
    activations grow layer by layer: a random resnet152 gives features around 1e8 and
    inception_v3 around 1e12 — useless for fp16 (TensorRT) and for absolute-tolerance
    tests. So, in eval mode and in forward order, each BatchNorm's running_mean is set
    to 0 and its running_var to the power of two nearest the second moment E[x^2] of
    its own input, measured on seeded N(0, 1) noise (batch 2). Rounding to a power of
    two keeps the result bit-identical across CPUs and thread counts (a last-bit
    difference in a convolution cannot move it, short of a 1e-7 coincidence).
    Returns the number of BatchNorm layers set.
    """
    import math

    import torch
    from torch import nn

    def pre_hook(mod, inputs):
        x = inputs[0]
        second = float(x.detach().double().pow(2).mean())
        if not math.isfinite(second) or second <= 0.0:
            raise RuntimeError(f"BatchNorm calibration: bad second moment {second}")
        mod.running_mean.zero_()
        mod.running_var.fill_(2.0 ** round(math.log2(second)))

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    handles = [m.register_forward_pre_hook(pre_hook) for m in bns]
    try:
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return len(bns)


def build_model(name: str, weights_file: Path | None, pretrained: bool, calibrate_bn: bool = True):
    """Returns the torchvision model in eval mode (aux classifier removed)."""
    import torch
    import torchvision.models as tvm

    ctor = getattr(tvm, name)
    if pretrained:
        try:
            # (for inception_v3 torchvision then sets transform_input=True itself)
            model = ctor(weights="DEFAULT")
        except Exception as e:  # noqa: BLE001
            die(f"--pretrained: torchvision could not download the {name} weights ({type(e).__name__}: {e}).\n"
                "  This machine is probably offline. Use --weights FILE with a state_dict you already have,\n"
                "  or export without weights (random init, structure only).")
        if name == "inception_v3":
            model.aux_logits = False
            model.AuxLogits = None
        return model.eval()

    torch.manual_seed(0)
    if weights_file is None:
        if name == "inception_v3":
            # transform_input=False: the input is the manifest's normalised image,
            # nothing re-normalised inside the graph. init_weights=True: torchvision's
            # own (seeded) truncated-normal init, no warning.
            model = ctor(weights=None, aux_logits=False, transform_input=False, init_weights=True)
        else:
            model = ctor(weights=None)
        model.eval()
        if calibrate_bn:
            calibrate_batchnorm(model, MODELS[name]["size"])
        return model

    sd = load_state_dict(weights_file)
    if name == "inception_v3":
        # torchvision's ImageNet inception_v3 weights (ported from TensorFlow) expect
        # transform_input=True, which maps an ImageNet-normalised input to the (x-0.5)/0.5
        # range they were trained on; that is what torchvision itself does when it
        # loads them. So the manifest keeps the ImageNet mean/std.
        has_aux = any(k.startswith("AuxLogits.") for k in sd)
        model = ctor(weights=None, aux_logits=has_aux, transform_input=True, init_weights=False)
    else:
        model = ctor(weights=None)
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    mismatched = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or mismatched:
        def few(keys):
            return ", ".join(keys[:4]) + (f", … ({len(keys)} in all)" if len(keys) > 4 else "")
        parts = [f"{label}: {few(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)) if keys]
        die(f"{weights_file} does not fit torchvision's {name}:\n  " + "\n  ".join(parts)
            + f"\n  is it a state_dict of torchvision's {name}?")
    model.load_state_dict(sd, strict=True)
    if name == "inception_v3":
        model.aux_logits = False
        model.AuxLogits = None
    return model.eval()


def make_extractor(name: str, model):
    """Wraps `model` into a module returning (features [N, D], logits [N, 1000])."""
    import torch
    from torch import nn

    class ResNetExtractor(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            m = self.m
            x = m.conv1(x)
            x = m.bn1(x)
            x = m.relu(x)
            x = m.maxpool(x)
            x = m.layer1(x)
            x = m.layer2(x)
            x = m.layer3(x)
            x = m.layer4(x)
            x = m.avgpool(x)
            features = torch.flatten(x, 1)  # [n, d]
            logits = m.fc(features)  # [n, 1000]
            return features, logits

    class VggExtractor(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m
            self.head = m.classifier[:-1]
            self.last = m.classifier[-1]

        def forward(self, x):
            m = self.m
            x = m.features(x)
            x = m.avgpool(x)
            x = torch.flatten(x, 1)  # [n, 25088]
            features = self.head(x)  # [n, 4096]
            logits = self.last(features)  # [n, 1000]
            return features, logits

    class InceptionExtractor(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            m = self.m
            x = m._transform_input(x)
            x = m.Conv2d_1a_3x3(x)
            x = m.Conv2d_2a_3x3(x)
            x = m.Conv2d_2b_3x3(x)
            x = m.maxpool1(x)
            x = m.Conv2d_3b_1x1(x)
            x = m.Conv2d_4a_3x3(x)
            x = m.maxpool2(x)
            x = m.Mixed_5b(x)
            x = m.Mixed_5c(x)
            x = m.Mixed_5d(x)
            x = m.Mixed_6a(x)
            x = m.Mixed_6b(x)
            x = m.Mixed_6c(x)
            x = m.Mixed_6d(x)
            x = m.Mixed_6e(x)
            x = m.Mixed_7a(x)
            x = m.Mixed_7b(x)
            x = m.Mixed_7c(x)
            x = m.avgpool(x)
            x = m.dropout(x)  # identity in eval
            features = torch.flatten(x, 1)  # [n, 2048]
            logits = m.fc(features)  # [n, 1000]
            return features, logits

    if name.startswith("resnet"):
        ext = ResNetExtractor(model)
    elif name == "vgg19":
        ext = VggExtractor(model)
    elif name == "inception_v3":
        ext = InceptionExtractor(model)
    else:
        raise ValueError(name)
    ext.eval()
    # Sanity: the wrapper must agree with the original model's logits.
    with torch.no_grad():
        s = MODELS[name]["size"]
        x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(123))
        ref = model(x)
        _, lg = ext(x)
        if not torch.allclose(ref, lg, rtol=1e-5, atol=1e-5):
            die(f"internal: the {name} feature wrapper does not reproduce the model's logits")
    return ext


# -------------------------------------------------------------------------- export


def export_once(ext, name: str, path: Path) -> None:
    import torch

    s = MODELS[name]["size"]
    dummy = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        torch.onnx.export(
            ext,
            (dummy,),
            str(path),
            export_params=True,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["features", "logits"],
            dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
            training=torch.onnx.TrainingMode.EVAL,
            verbose=False,
        )


def check_graph(name: str, path: Path) -> None:
    """The graph's declared inputs/outputs must be what the manifest will say."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    dim = MODELS[name]["dim"]
    s = MODELS[name]["size"]

    def dims(vi):
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]

    inputs = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if [i.name for i in inputs] != ["input"]:
        die(f"{name}: graph inputs are {[i.name for i in inputs]}, expected ['input']")
    di = dims(inputs[0])
    if len(di) != 4 or not isinstance(di[0], str) or di[1:] != [3, s, s]:
        die(f"{name}: input shape {di}, expected [batch, 3, {s}, {s}]")
    outs = {o.name: dims(o) for o in m.graph.output}
    if list(outs) != ["features", "logits"]:
        die(f"{name}: graph outputs are {list(outs)}, expected ['features', 'logits']")
    for o, d in (("features", dim), ("logits", 1000)):
        sh = outs[o]
        if len(sh) != 2 or not isinstance(sh[0], str) or sh[1] != d:
            die(f"{name}: output {o} has shape {sh}, expected [batch, {d}]")
    if m.opset_import[0].version != OPSET:
        die(f"{name}: opset {m.opset_import[0].version}, expected {OPSET}")


def check_parity(ext, name: str, path: Path) -> dict:
    """PyTorch vs ONNX Runtime on a random batch of 2. Returns the diffs."""
    import onnxruntime as ort
    import torch

    s = MODELS[name]["size"]
    x = np.random.default_rng(0).standard_normal((2, 3, s, s)).astype(np.float32)
    with torch.no_grad():
        tf, tl = ext(torch.from_numpy(x))
    tf, tl = tf.numpy(), tl.numpy()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    of, ol = sess.run(["features", "logits"], {"input": x})
    result = {}
    ok = True
    for key, a, b in (("features", tf, of), ("logits", tl, ol)):
        if a.shape != b.shape:
            die(f"{name}: {key} shape torch {a.shape} vs onnxruntime {b.shape}")
        if not np.all(np.isfinite(b)):
            die(f"{name}: onnxruntime gave non-finite {key}")
        absd = float(np.max(np.abs(a - b)))
        scale = float(np.max(np.abs(a)))
        reld = absd / scale if scale > 0 else absd
        if absd <= ABS_TOL:
            crit = f"abs {absd:.3g} <= {ABS_TOL:g}; max|x| {scale:.4g}, relative {reld:.3g}"
            passed = True
        else:
            crit = f"abs {absd:.3g} > {ABS_TOL:g}; relative to max|x|={scale:.4g}: {reld:.3g} " \
                   f"{'<=' if reld <= REL_TOL else '>'} {REL_TOL:g}"
            passed = reld <= REL_TOL
        ok &= passed
        result[key] = dict(max_abs_diff=absd, max_abs=scale, rel=reld, passed=passed, criterion=crit)
        log(f"{name}: parity {key:8s} {'ok  ' if passed else 'FAIL'} ({crit})")
    if not ok:
        die(f"{name}: ONNX Runtime disagrees with PyTorch; {path} not installed")
    return result


# ------------------------------------------------------------------------ manifest


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(name: str, sha: str, weights: str, weights_source: str, license_: str,
                   description: str) -> Path:
    import torch
    import torchvision

    cfg = MODELS[name]
    s = cfg["size"]
    floats = lambda xs: "[" + ", ".join(repr(float(x)) for x in xs) + "]"  # noqa: E731
    text = f"""\
# Generated by tools/export_torchvision.py — do not edit by hand; re-run it instead.
# The sha256 is of the file exported by torch {torch.__version__} / torchvision
# {torchvision.__version__} (ONNX opset {OPSET}); another torch version gives other bytes.
name = {toml_str(name)}
file = {toml_str(name + ".onnx")}
sha256 = {toml_str(sha)}
weights = {toml_str(weights)}
weights_source = {toml_str(weights_source)}
license = {toml_str(license_)}
generator = "tools/export_torchvision.py"
description = {toml_str(description)}

[input]
name = "input"
shape = [-1, 3, {s}, {s}]

[output]
features = "features"
feature_dim = {cfg["dim"]}
logits = "logits"
n_logits = 1000

[preprocess]
resize = {cfg["resize"]}
crop = {cfg["crop"]}
interpolation = "bilinear"
pixel_scale = {repr(1.0 / 255.0)}
mean = {floats(IMAGENET_MEAN)}
std = {floats(IMAGENET_STD)}
channel_order = "rgb"
"""
    out = ONNX_DIR / f"{name}.toml"
    tmp = out.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------- main


def export(name: str, weights_file: Path | None, pretrained: bool, check_det: bool,
           calibrate_bn: bool) -> None:
    import torch
    import torchvision

    t0 = time.perf_counter()
    model = build_model(name, weights_file, pretrained, calibrate_bn)
    ext = make_extractor(name, model)
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    final = ONNX_DIR / f"{name}.onnx"
    tmp = ONNX_DIR / f".{name}.onnx.tmp"
    try:
        export_once(ext, name, tmp)
        t_export = time.perf_counter() - t0
        sha = sha256_file(tmp)
        if check_det:
            tmp2 = ONNX_DIR / f".{name}.onnx.tmp2"
            try:
                # A fresh model from the same seed, so the whole path is covered.
                ext2 = make_extractor(name, build_model(name, weights_file, pretrained, calibrate_bn))
                export_once(ext2, name, tmp2)
                sha2 = sha256_file(tmp2)
            finally:
                tmp2.unlink(missing_ok=True)
            if sha2 != sha:
                die(f"{name}: export is not deterministic (sha256 {sha} vs {sha2})")
            log(f"{name}: deterministic — two exports have the same sha256")
        check_graph(name, tmp)
        t1 = time.perf_counter()
        check_parity(ext, name, tmp)
        t_parity = time.perf_counter() - t1
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)

    if weights_file is not None:
        weights = "pretrained"
        wsha = sha256_file(weights_file)
        weights_source = (f"user-supplied torchvision state_dict {weights_file.name} "
                          f"(sha256 {wsha}); see where it came from for what it was trained on")
        license_ = ("BSD-3-Clause (torchvision model code); weights: those of the user's file "
                    f"{weights_file.name}")
    elif pretrained:
        weights = "pretrained"
        weights_source = f"torchvision {torchvision.__version__} DEFAULT ImageNet weights (downloaded)"
        license_ = "BSD-3-Clause (torchvision model code); weights: see torchvision's model docs"
    else:
        weights = "random"
        weights_source = (f"random init (seed 0), structure only — NOT pretrained "
                          f"(torchvision {torchvision.__version__} default init after torch.manual_seed(0)")
        if calibrate_bn and name != "vgg19":
            weights_source += ("; BatchNorm running_mean = 0 and running_var = the power of two "
                               "nearest E[x^2] of its input on seeded N(0,1) noise, so activations stay O(1)")
        weights_source += ")"
        license_ = "BSD-3-Clause (torchvision model code); weights: random init"
    desc = (f"torchvision {name}, eval mode, as a feature extractor. {FEATURE_DESCRIPTION[name]}; "
            f"logits = the ImageNet classifier output, 1000-d.")
    if name == "inception_v3":
        if weights == "random":
            desc += " Exported with transform_input=False (input is used as given)."
        else:
            desc += (" Exported with transform_input=True, as torchvision does for its ImageNet "
                     "weights: the graph maps the ImageNet-normalised input to (x-0.5)/0.5 itself.")
    man = write_manifest(name, sha, weights, weights_source, license_, desc)
    size = final.stat().st_size
    log(f"{name}: wrote {final.relative_to(ROOT)} ({size / 1e6:.1f} MB, sha256 {sha}) and "
        f"{man.relative_to(ROOT)}; export {t_export:.1f} s, parity {t_parity:.1f} s, "
        f"total {time.perf_counter() - t0:.1f} s (torch {torch.__version__})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=[*MODELS, "all"])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--weights", type=Path, metavar="FILE",
                   help="a torchvision state_dict you already have (marks the manifest 'pretrained')")
    g.add_argument("--pretrained", action="store_true",
                   help="download torchvision's ImageNet weights (needs the internet)")
    ap.add_argument("--check-deterministic", action="store_true",
                    help="export twice and fail unless both files have the same sha256")
    ap.add_argument("--raw-init", action="store_true",
                    help="random weights: keep torchvision's BatchNorm statistics (mean 0, var 1) "
                         "instead of calibrating them; activations then grow to ~1e8-1e12")
    args = ap.parse_args()

    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        die(f"{e}. Run `tools/setup.sh --torch` and use .venv/bin/python.")

    if args.weights is not None:
        if args.model == "all":
            die("--weights FILE names one model's weights; give a single MODEL")
        if not args.weights.is_file():
            die(f"weights file {args.weights} not found")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    names = list(MODELS) if args.model == "all" else [args.model]
    for n in names:
        export(n, args.weights, args.pretrained, args.check_deterministic, not args.raw_init)


if __name__ == "__main__":
    main()
