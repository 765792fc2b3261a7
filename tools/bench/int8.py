#!/usr/bin/env python3
"""fp32 vs INT8 backbones: speed, memory and downstream accuracy, with the OpenVINO peer.

    .venv/bin/python tools/bench/int8.py [--rounds R] [--small N] [--large M] [--seeds S] [--no-resnet]

Everything is written under data/bench/int8/ (a zoo of its own; the repository's
onnx/ is only read, except that tools/export_torchvision.py writes onnx/resnet50.onnx
when it is missing). Steps:

 1. `xfer quantize` of EfficientNet-Lite0 (real ImageNet weights) calibrated on the
    real photos of the demo's classes, data/stamps/{flowers,fruit,vegetables,vehicles}
    (48 calibrate, 16 held back), once with 8-bit weights and once with
    --reduce-range; and of ResNet-50
    exported by tools/export_torchvision.py with RANDOM weights (structure and speed
    only: its cosine and accuracy mean nothing about a trained ResNet-50).
 2. ONNX Runtime alone (tools/bench/peer_ort.py --mode model: Python ORT, batch 32,
    2 threads, random tensors) and OpenVINO alone (tools/bench/peer_openvino.py
    --mode model) on the fp32 and int8 files, alternating.
 3. End to end, whole processes timed, alternating, with peak RSS (/usr/bin/time -v):
    `xfer extract` with each model, and the OpenVINO peer (multiprocessing PIL
    decoders, batch 32), on N small photos (~0.19 MP JPEGs) and M 8.4 MP JPEGs from
    tools/bench/make_images.py (random crops of the real photos in data/photos; the
    8.4 MP ones are upscaled with PIL bicubic, there being no real 8 MP photos here).
 4. Downstream: features of the 88 real photos of those 4 classes from each Lite0
    model; `xfer train --cv 5 --head both --seed s` for S seeds (the same folds for
    every model at a given seed); per model the mean ± sd over seeds of the 5-fold
    accuracy and log loss, and per int8 model the paired difference to fp32 (mean ±
    sd over seeds): 88 photos move a fold's accuracy by 5 points a photo, and the
    paired difference cancels most of that. Also the feature cosine of each int8
    model against fp32 over those 88 images (h5py). The calibration images are among
    these 88 (calibration uses no labels).

OpenVINO runs from its own venv, data/bench/int8/ovenv (`pip install openvino`),
made here when missing; if that fails the peer is reported as missing, with why.
Prints a summary and writes data/bench/int8/results.json. Figures are medians over
the rounds; on a shared machine quote the ratios (the load average is recorded).
"""
import argparse
import json
import os
import shutil
import time

from bench_common import PY, ROOT, image_lists, last_json, log, med, openvino_venv, run, stamps4

B = os.path.join(ROOT, "data", "bench", "int8")
ZOO = os.path.join(B, "zoo")
XFER = os.path.join(ROOT, "target", "release", "xfer")
OVPY = os.path.join(B, "ovenv", "bin", "python")








def zoo_link(name):
    """The repository's manifest and model, linked into the bench zoo."""
    src = os.path.join(ROOT, "onnx")
    shutil.copy(os.path.join(src, f"{name}.toml"), os.path.join(ZOO, f"{name}.toml"))
    dst = os.path.join(ZOO, f"{name}.onnx")
    if not os.path.exists(dst):
        os.symlink(os.path.join(src, f"{name}.onnx"), dst)


def quantize(model, name, extra):
    if os.path.exists(os.path.join(ZOO, f"{name}.toml")):
        return
    log(f"quantize {model} -> {name} {' '.join(extra)}")
    run([XFER, "--zoo", ZOO, "quantize", "--model", model, "--calib", os.path.join(B, "stamps4"),
         "--n", "48", "--holdout", "16", "--name", name, "--quiet", "--overwrite"] + extra)


def agreement(name):
    import tomllib
    with open(os.path.join(ZOO, f"{name}.toml"), "rb") as f:
        return tomllib.load(f)["quantization"]






def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", type=int, default=1024, help="small photos used (of 1024)")
    ap.add_argument("--large", type=int, default=48, help="8.4 MP photos used (of 48)")
    ap.add_argument("--seeds", type=int, default=10, help="downstream: 5-fold CV repeated with this many seeds")
    ap.add_argument("--no-resnet", action="store_true")
    args = ap.parse_args()
    t_start = time.time()
    os.makedirs(ZOO, exist_ok=True)
    res = {"load_average_start": os.getloadavg(), "rounds": args.rounds}

    # Image sets.
    calib = stamps4(os.path.join(B, "stamps4"))
    sets, lists = image_lists(B, {"small": ("small", args.small), "large": ("large", args.large)})
    res["sets"] = {"small": f"{args.small} of {sets['small']}", "large": f"{args.large} of {sets['large']}"}

    # Models.
    zoo_link("efficientnet_lite0")
    quantize("efficientnet_lite0", "lite0_int8", [])
    quantize("efficientnet_lite0", "lite0_int8_rr", ["--reduce-range"])
    lite = ["efficientnet_lite0", "lite0_int8", "lite0_int8_rr"]
    resnet = []
    if not args.no_resnet:
        if not os.path.exists(os.path.join(ROOT, "onnx", "resnet50.onnx")):
            log("export resnet50 (random weights)")
            run([PY, "tools/export_torchvision.py", "resnet50"])
        zoo_link("resnet50")
        quantize("resnet50", "resnet50_int8", [])
        resnet = ["resnet50", "resnet50_int8"]
    res["agreement"] = {m: agreement(m)["agreement"] for m in lite[1:] + resnet[1:]}

    # OpenVINO venv.
    ov_ok, ov_why = openvino_venv(os.path.join(B, "ovenv"))
    res["openvino"] = ov_why
    log(f"openvino: {ov_why}")

    # 2. Model alone.
    model_only = {}
    for r in range(args.rounds):
        for m in lite + resnet:
            man = os.path.join(ZOO, f"{m}.toml")
            _, _, out, _, _ = run([PY, "tools/bench/peer_ort.py", "--model", man, "--mode", "model",
                             "--batch", "32", "--batches", "2" if m.startswith("resnet") else "3"])
            model_only.setdefault(f"ort/{m}", []).append(last_json(out)["images_per_s"])
            if ov_ok and m != "lite0_int8_rr":
                _, _, out, _, _ = run([OVPY, "tools/bench/peer_openvino.py", "--manifest", man,
                                 "--mode", "model", "--batch", "32",
                                 "--batches", "2" if m.startswith("resnet") else "3"])
                model_only.setdefault(f"openvino/{m}", []).append(last_json(out)["images_per_s"])
        log(f"model-only round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in model_only.items()))
    res["model_only_images_per_s"] = {k: med(v) for k, v in model_only.items()}
    res["model_only_runs"] = model_only

    # 3. End to end.
    e2e = {}
    h5 = os.path.join(B, "e2e.h5")
    for key in ("small", "large"):
        for r in range(args.rounds if key == "small" else max(1, args.rounds - 1)):
            for m in ["efficientnet_lite0", "lite0_int8"]:
                if os.path.exists(h5):
                    os.remove(h5)
                dt, rss, _, _, _ = run([XFER, "--zoo", ZOO, "extract", "--model", m, "--list", lists[key],
                                  "--out", h5, "--quiet", "--overwrite"], timed=True)
                e2e.setdefault(f"{key}/xfer/{m}", []).append((dt, rss))
                if ov_ok:
                    dt, rss, _, _, _ = run([OVPY, "tools/bench/peer_openvino.py", "--manifest",
                                      os.path.join(ZOO, f"{m}.toml"), "--list", lists[key],
                                      "--workers", "2", "--batch", "32"], timed=True)
                    e2e.setdefault(f"{key}/openvino/{m}", []).append((dt, rss))
            log(f"e2e {key} round {r + 1}: " + ", ".join(
                f"{k} {v[-1][0]:.1f}s" for k, v in e2e.items() if k.startswith(key)))
    res["e2e_seconds"] = {k: med([d for d, _ in v]) for k, v in e2e.items()}
    res["e2e_peak_rss_mib"] = {k: max(r or 0 for _, r in v) for k, v in e2e.items()}
    res["e2e_runs"] = e2e

    # 4. Downstream on real photos.
    down = {}
    import h5py
    import numpy as np
    feats = {}
    per_seed = {}  # (model, head) -> [(accuracy, log loss) per seed]
    for m in lite:
        f = os.path.join(B, f"stamps4_{m}.h5")
        if os.path.exists(f):
            os.remove(f)
        run([XFER, "--zoo", ZOO, "extract", "--model", m, "--data", calib, "--out", f, "--quiet"])
        for seed in range(args.seeds):
            _, _, out, _, _ = run([XFER, "--zoo", ZOO, "train", "--train", f, "--cv", "5", "--head", "both",
                             "--seed", str(seed), "--out", os.path.join(B, f"train_{m}"),
                             "--overwrite", "--json"])
            for h in json.loads(out)["heads"]:
                cv = h["cv"]
                per_seed.setdefault((m, h["kind"]), []).append((cv["accuracy_mean"], cv["log_loss_mean"]))
        with h5py.File(f, "r") as h:
            feats[m] = (h["data"][:].astype(np.float64), [p.decode() if isinstance(p, bytes) else p for p in h["path"][:]])
        log(f"downstream {m}: " + ", ".join(
            f"{head} acc {np.mean([a for a, _ in v]):.3f}" for (mm, head), v in per_seed.items() if mm == m))

    def msd(v):
        return {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}

    for (m, head), v in per_seed.items():
        acc, loss = [a for a, _ in v], [l for _, l in v]
        d = {"accuracy": msd(acc), "log_loss": msd(loss), "seeds": len(v)}
        base = per_seed.get(("efficientnet_lite0", head))
        if m != "efficientnet_lite0" and base:
            d["accuracy_minus_fp32"] = msd([a - b for (a, _), (b, _) in zip(v, base)])
            d["log_loss_minus_fp32"] = msd([a - b for (_, a), (_, b) in zip(v, base)])
        down.setdefault(m, {})[head] = d
    a, pa = feats["efficientnet_lite0"]
    for m in lite[1:]:
        b, pb = feats[m]
        assert pa == pb
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        down[m]["cosine_vs_fp32"] = {"mean": float(cos.mean()), "min": float(cos.min()),
                                     "p5": float(np.percentile(cos, 5)), "images": len(cos)}
    res["downstream"] = down
    res["load_average_end"] = os.getloadavg()
    res["seconds"] = time.time() - t_start
    with open(os.path.join(B, "results.json"), "w") as f:
        json.dump(res, f, indent=1)

    # Summary.
    mo = res["model_only_images_per_s"]
    print(f"load average at start {res['load_average_start']}, at end {res['load_average_end']} (2 cores)")
    print("model alone, batch 32, images/s (median):")
    for eng in ("ort", "openvino"):
        for m in lite + resnet:
            k = f"{eng}/{m}"
            if k in mo:
                src = "resnet50" if m.startswith("resnet") else "efficientnet_lite0"
                print(f"  {k:<32} {mo[k]:7.1f}   x{mo[k] / mo[f'{eng}/{src}']:.2f} vs fp32")
    es, rss = res["e2e_seconds"], res["e2e_peak_rss_mib"]
    print("end to end, whole process, seconds (median) and peak RSS:")
    for k in es:
        key, eng, m = k.split("/")
        base = es[f"{key}/{eng}/efficientnet_lite0"]
        print(f"  {k:<36} {es[k]:7.2f} s  {rss[k]:6.0f} MiB   x{base / es[k]:.2f} vs fp32")
    for key in ("small", "large"):
        k = f"{key}/xfer/lite0_int8"
        o = f"{key}/openvino/efficientnet_lite0"
        if o in es:
            print(f"  {key}: xfer int8 vs OpenVINO fp32 x{es[o] / es[k]:.2f}, "
                  f"vs OpenVINO int8 x{es[f'{key}/openvino/lite0_int8'] / es[k]:.2f}")
    print(f"downstream, 88 real photos, 4 classes, 5-fold CV repeated over {args.seeds} seeds "
          "(mean ± sd over seeds; differences paired by seed):")
    for m, d in down.items():
        for head in ("logistic", "mlp"):
            if head not in d:
                continue
            x = d[head]
            line = (f"  {m:<20} {head:<8} accuracy {x['accuracy']['mean']:.3f} ± {x['accuracy']['sd']:.3f}  "
                    f"log loss {x['log_loss']['mean']:.3f} ± {x['log_loss']['sd']:.3f}")
            if "accuracy_minus_fp32" in x:
                da, dl = x["accuracy_minus_fp32"], x["log_loss_minus_fp32"]
                line += (f"   vs fp32: accuracy {100 * da['mean']:+.1f} ± {100 * da['sd']:.1f} points, "
                         f"log loss {dl['mean']:+.3f} ± {dl['sd']:.3f}")
            print(line)
        c = d.get("cosine_vs_fp32")
        if c:
            print(f"  {m:<20} cosine vs fp32 mean {c['mean']:.4f} min {c['min']:.4f} p5 {c['p5']:.4f}")
    print("agreement reports (held-back images):")
    for m, a in res["agreement"].items():
        print(f"  {m:<20} {json.dumps(a)}")
    print(f"took {res['seconds']:.0f} s; results in {os.path.relpath(os.path.join(B, 'results.json'), ROOT)}")


if __name__ == "__main__":
    main()
