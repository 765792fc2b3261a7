#!/usr/bin/env python3
"""The backbone in PyTorch eager, for tools/gpu_check.sh: the same graph as the ONNX file,
rebuilt from a structure-only description (no weights: the GPU machine is offline and the
transfers are small), so images/s compare like for like with xfer on the same batch.

    gpu_check_torch.py describe MODEL.onnx > graph.json      (needs `onnx`; prepare runs it)
    gpu_check_torch.py bench graph.json --batch 32 --batches 50 [--device cuda] [--cudnn-benchmark]
    gpu_check_torch.py verify graph.json MODEL.onnx           (needs onnx + onnxruntime: the
                                                              dry run checks the rebuilt graph
                                                              computes what onnxruntime does)

The graphs xfer's tools export use Conv (asymmetric pads allowed), Clip, Relu, Add, Mul,
GlobalAveragePool, Flatten and Gemm; another operator is an error naming it. Weights are
random (seeded): speed does not depend on them. Last stdout line of `bench`: JSON.
"""
import argparse
import json
import sys
import time


def describe(path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        ins = []
        for i in n.input:
            if i in inits:
                a = inits[i]
                # Scalars (Clip bounds) by value; tensors by shape only.
                ins.append({"const": float(a.reshape(-1)[0])} if a.ndim == 0 or (a.size == 1 and n.op_type == "Clip") else {"param": i, "shape": list(a.shape)})
            else:
                ins.append({"value": i})
        nodes.append({"op": n.op_type, "inputs": ins, "outputs": list(n.output), "attrs": attrs})
    inp = m.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    return {
        "input": inp.name,
        "input_shape": dims,
        "outputs": [o.name for o in m.graph.output],
        "nodes": nodes,
    }


def build(graph):
    import torch
    import torch.nn.functional as F

    supported = {"Conv", "Clip", "Relu", "Add", "Mul", "GlobalAveragePool", "Flatten", "Gemm"}
    bad = sorted({n["op"] for n in graph["nodes"]} - supported)
    if bad:
        sys.exit(f"gpu_check_torch: operators {bad} are not rebuilt in PyTorch; extend build()")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.params = torch.nn.ParameterDict()
            for n in graph["nodes"]:
                for i in n["inputs"]:
                    if "param" in i:
                        key = i["param"].replace(".", "_")
                        if key not in self.params:
                            t = torch.randn(i["shape"], generator=g) * 0.05
                            self.params[key] = torch.nn.Parameter(t, requires_grad=False)

        def forward(self, x):
            env = {graph["input"]: x}

            def arg(i):
                if "value" in i:
                    return env[i["value"]]
                if "param" in i:
                    return self.params[i["param"].replace(".", "_")]
                return i["const"]

            for n in graph["nodes"]:
                a, op, at = [arg(i) for i in n["inputs"]], n["op"], n["attrs"]
                if op == "Conv":
                    pads = at.get("pads", [0, 0, 0, 0])  # top, left, bottom, right
                    h = a[0]
                    if pads[0] != pads[2] or pads[1] != pads[3]:
                        h = F.pad(h, (pads[1], pads[3], pads[0], pads[2]))
                        pad = 0
                    else:
                        pad = (pads[0], pads[1])
                    y = F.conv2d(h, a[1], a[2] if len(a) > 2 else None, stride=tuple(at.get("strides", [1, 1])),
                                 padding=pad, dilation=tuple(at.get("dilations", [1, 1])), groups=at.get("group", 1))
                elif op == "Clip":
                    y = torch.clamp(a[0], min=a[1] if len(a) > 1 else None, max=a[2] if len(a) > 2 else None)
                elif op == "Relu":
                    y = torch.relu(a[0])
                elif op == "Add":
                    y = a[0] + a[1]
                elif op == "Mul":
                    y = a[0] * a[1]
                elif op == "GlobalAveragePool":
                    y = a[0].mean(dim=(2, 3), keepdim=True)
                elif op == "Flatten":
                    y = torch.flatten(a[0], at.get("axis", 1))
                elif op == "Gemm":
                    w = a[1].t() if at.get("transB", 0) else a[1]
                    y = torch.addmm(a[2], a[0], w, beta=at.get("beta", 1.0), alpha=at.get("alpha", 1.0))
                env[n["outputs"][0]] = y
            return [env[o] for o in graph["outputs"]]

    return Net().eval()


def bench(args):
    import torch

    graph = json.load(open(args.graph))
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check_torch: torch sees no CUDA device")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    net = build(graph).to(dev)
    c, h, w = graph["input_shape"][1:]
    x = torch.randn(args.batch, c, h, w, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):  # warm-up (and cuDNN's search when benchmark is on)
            net(x)
        sync()
        t = time.perf_counter()
        for _ in range(args.batches):
            out = net(x)
        sync()
        secs = time.perf_counter() - t
    print(json.dumps({
        "peer": "pytorch-eager", "torch": torch.__version__, "device": str(dev),
        "cudnn_benchmark": args.cudnn_benchmark, "batch": args.batch, "images": args.batch * args.batches,
        "seconds": secs, "images_per_s": args.batch * args.batches / secs,
        "features_shape": list(out[0].shape),
    }))


def verify(args):
    """The rebuilt graph with the ONNX file's real weights equals onnxruntime's output."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    graph = json.load(open(args.graph))
    net = build(graph)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(args.model).graph.initializer}
    with torch.no_grad():
        for name, p in net.params.items():
            src = next(k for k in inits if k.replace(".", "_") == name)
            p.copy_(torch.from_numpy(inits[src].copy()))
    c, h, w = graph["input_shape"][1:]
    x = np.random.default_rng(0).standard_normal((2, c, h, w)).astype(np.float32)
    want = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).run(None, {graph["input"]: x})
    with torch.no_grad():
        got = [t.numpy() for t in net(torch.from_numpy(x))]
    diffs = [float(np.abs(a - b).max()) for a, b in zip(want, got)]
    ok = all(d < 1e-3 for d in diffs) and all(a.shape == b.shape for a, b in zip(want, got))
    print(json.dumps({"outputs": graph["outputs"], "max_abs_diff": diffs, "ok": ok}))
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("describe")
    d.add_argument("model")
    b = sub.add_parser("bench")
    b.add_argument("graph")
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--batches", type=int, default=20)
    b.add_argument("--device", default="cuda")
    b.add_argument("--cudnn-benchmark", action="store_true")
    v = sub.add_parser("verify")
    v.add_argument("graph")
    v.add_argument("model")
    args = ap.parse_args()
    if args.cmd == "describe":
        json.dump(describe(args.model), sys.stdout)
    elif args.cmd == "bench":
        bench(args)
    else:
        verify(args)


if __name__ == "__main__":
    main()
