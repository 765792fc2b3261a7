#!/usr/bin/env python3
"""bf16 vs fp32 features: may a head trained on one predict on the other?

    .venv/bin/python tools/bench/bf16_quality.py [--seeds 10] [--batch 8]

Everything is written under data/bench/bf16/. Steps:

 1. The 88 real photos of data/stamps/{flowers,fruit,vegetables,vehicles} are
    preprocessed ONCE with tools/bench/peer_ort.py's Recipe for
    onnx/efficientnet_lite0.toml (no PIL draft; they are PNGs anyway). The same float
    tensors feed every arm, so the comparison is paired and isolates the precision.
 2. Pooled features (the manifest's `features` output, global-average-pooled, 1280-d)
    of those tensors, in batches of --batch, from:
      ort_fp32    ONNX Runtime CPU EP, fp32 (the reference; xfer's path)
      ov_bf16     OpenVINO CPU, INFERENCE_PRECISION_HINT=bf16
      ov_f32      OpenVINO CPU, INFERENCE_PRECISION_HINT=f32 (the engine change alone:
                  the noise floor against which bf16 is read)
      ov_default  OpenVINO CPU, no hint (the precision OpenVINO reports it chose is
                  recorded: bf16 on CPUs with AMX, f32 elsewhere)
    OpenVINO runs in its own venv, data/bench/bf16/venv (`pip install openvino
    scikit-learn`, made here when missing), through this same script (--stage).
 3. Per image, each arm against ort_fp32: cosine (mean, min) and
    max |a - b| / ||a|| (max and mean over images).
 4. Downstream: sklearn's StandardScaler + LogisticRegression with its defaults
    (C = 1, lbfgs, max_iter = 100), the scaler fitted on the training rows: that is
    xfer's logistic head (src/train/head/logistic.rs). Stratified 5-fold CV
    (shuffled, random_state = seed) for --seeds seeds, the same folds for every arm
    at a given seed. A pair TRAIN->TEST trains on TRAIN's features of the training
    rows and predicts TEST's features of the held-out rows (the same images). Per
    seed, accuracy and log loss over the 88 out-of-fold predictions; mean ± sd over
    seeds, and the paired difference to fp32->fp32 (mean ± sd over seeds). Against
    fp32->fp32: the number of out-of-fold predictions whose label changes (of
    88 x seeds) and the largest |Δ probability| over all of them and all classes.
    Yardstick for those counts: the fp32->fp32 labels that change from seed s to s+1
    (the head trained on another 80 % of the photos, same features).

Prints a table and writes data/bench/bf16/results.json, with the CPU's model name
and whether it has amx_bf16 / avx512_bf16 (lscpu flags).
"""
import argparse
import json
import os
import subprocess
import sys
import time

from bench_common import CLASSES, ROOT, cpu_info, log, openvino_venv

B = os.path.join(ROOT, "data", "bench", "bf16")
VENV = os.path.join(B, "venv")
VPY = os.path.join(VENV, "bin", "python")
MANIFEST = os.path.join(ROOT, "onnx", "efficientnet_lite0.toml")
OV_ARMS = {"ov_bf16": "bf16", "ov_f32": "f32", "ov_default": None}
# TRAIN->TEST pairs scored downstream; the first is the reference.
PAIRS = [("ort_fp32", "ort_fp32"), ("ort_fp32", "ov_bf16"), ("ov_bf16", "ov_bf16"),
         ("ov_bf16", "ort_fp32"), ("ort_fp32", "ov_f32"), ("ov_f32", "ov_f32"),
         ("ort_fp32", "ov_default")]
NAMES = {"ort_fp32": "fp32", "ov_bf16": "bf16", "ov_f32": "ovf32", "ov_default": "ovdefault"}


def manifest():
    import tomllib
    with open(MANIFEST, "rb") as f:
        man = tomllib.load(f)
    return man, os.path.join(os.path.dirname(MANIFEST), man["file"])


def batched(run, x, batch):
    import numpy as np
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


# ---- stages run in the OpenVINO venv ---------------------------------------

def stage_openvino(args):
    import numpy as np
    import openvino as ov
    man, onnx_path = manifest()
    x = np.load(os.path.join(B, "inputs.npy"))
    core = ov.Core()
    model = core.read_model(onnx_path)
    meta = {"openvino": ov.__version__, "device": core.get_property("CPU", "FULL_DEVICE_NAME"),
            "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")), "arms": {}}
    feats = {}
    for arm, hint in OV_ARMS.items():
        cfg = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
        compiled = core.compile_model(model, "CPU", cfg)
        out = compiled.output(man["output"]["features"])
        t = time.perf_counter()
        feats[arm] = batched(lambda b: compiled({0: b})[out], x, args.batch).astype(np.float32)
        dt = time.perf_counter() - t
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT")
        chosen = chosen.to_string() if hasattr(chosen, "to_string") else str(chosen)
        meta["arms"][arm] = {"hint": hint or "(default)", "reported_precision": chosen,
                             "seconds": dt}
        log(f"{arm}: hint {hint or '(default)'} -> OpenVINO reports {chosen}, {dt:.1f} s")
    np.savez(os.path.join(B, "features_ov.npz"), **feats)
    print(json.dumps(meta))


def msd(v):
    import numpy as np
    v = np.asarray(v, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def stage_analyse(args):
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import sklearn

    f = dict(np.load(os.path.join(B, "features_ort.npz")))
    f.update(np.load(os.path.join(B, "features_ov.npz")))
    y = f.pop("labels")
    f = {k: v.astype(np.float64) for k, v in f.items()}
    ref = f["ort_fp32"]
    res = {"sklearn": sklearn.__version__, "features": {}, "downstream": {}}

    # 3. Feature agreement.
    rn = np.linalg.norm(ref, axis=1)
    for arm in OV_ARMS:
        a = f[arm]
        cos = (a * ref).sum(1) / (np.linalg.norm(a, axis=1) * rn)
        rel = np.abs(a - ref).max(1) / rn
        l2 = np.linalg.norm(a - ref, axis=1) / rn
        res["features"][arm] = {
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "max_abs_diff_over_norm_max": float(rel.max()),
            "max_abs_diff_over_norm_mean": float(rel.mean()),
            "l2_diff_over_norm_mean": float(l2.mean()), "images": len(cos)}
    a, b = f["ov_bf16"], f["ov_f32"]
    res["features"]["ov_bf16_vs_ov_f32_cosine_min"] = float(
        ((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())

    # 4. Downstream.
    n, k = len(y), len(np.unique(y))
    per_seed = {p: {"acc": [], "loss": []} for p in PAIRS}
    probs = {p: [] for p in PAIRS}  # per seed: [n, k] out-of-fold probabilities
    for seed in range(args.seeds):
        folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(ref, y))
        oof = {p: np.zeros((n, k)) for p in PAIRS}
        for tr, te in folds:
            heads = {}
            for train_arm in {p[0] for p in PAIRS}:
                heads[train_arm] = make_pipeline(StandardScaler(), LogisticRegression()).fit(
                    f[train_arm][tr], y[tr])
            for p in PAIRS:
                oof[p][te] = heads[p[0]].predict_proba(f[p[1]][te])
        for p in PAIRS:
            per_seed[p]["acc"].append(float((oof[p].argmax(1) == y).mean()))
            per_seed[p]["loss"].append(float(log_loss(y, oof[p], labels=list(range(k)))))
            probs[p].append(oof[p])
        log(f"seed {seed}: " + ", ".join(
            f"{NAMES[p[0]]}->{NAMES[p[1]]} {per_seed[p]['acc'][-1]:.3f}" for p in PAIRS[:4]))
    base = PAIRS[0]
    pb = np.stack(probs[base])  # [seeds, n, k]
    for p in PAIRS:
        d = {"accuracy": msd(per_seed[p]["acc"]), "log_loss": msd(per_seed[p]["loss"]),
             "accuracy_per_seed": per_seed[p]["acc"], "log_loss_per_seed": per_seed[p]["loss"]}
        if p != base:
            d["accuracy_minus_fp32_fp32"] = msd(np.subtract(per_seed[p]["acc"], per_seed[base]["acc"]))
            d["log_loss_minus_fp32_fp32"] = msd(np.subtract(per_seed[p]["loss"], per_seed[base]["loss"]))
            pp = np.stack(probs[p])
            d["labels_changed_vs_fp32_fp32"] = int((pp.argmax(2) != pb.argmax(2)).sum())
            d["predictions"] = int(pp.shape[0] * pp.shape[1])
            d["max_abs_delta_probability"] = float(np.abs(pp - pb).max())
            d["mean_abs_delta_probability"] = float(np.abs(pp - pb).max(2).mean())
            # How sure was the fp32->fp32 head of the predictions that changed? (top-1 minus top-2)
            s = np.sort(pb, axis=2)
            margin = s[..., -1] - s[..., -2]
            flip = pp.argmax(2) != pb.argmax(2)
            d["fp32_margin_of_changed_max"] = float(margin[flip].max()) if flip.any() else None
            d["fp32_margin_median_all"] = float(np.median(margin))
            d["images_with_a_changed_label"] = int(flip.any(0).sum())
            d["changed_labels_now_right_minus_now_wrong"] = int(
                (flip & (pp.argmax(2) == y)).sum() - (flip & (pb.argmax(2) == y)).sum())
        res["downstream"][f"{NAMES[p[0]]}->{NAMES[p[1]]}"] = d
    # The yardstick: how many fp32->fp32 out-of-fold labels change from seed s to seed s+1,
    # i.e. when the head is trained on another 80 % of the photos (same features).
    res["fp32_labels_changed_between_consecutive_seeds"] = {
        "changed": int((pb[1:].argmax(2) != pb[:-1].argmax(2)).sum()),
        "predictions": int((pb.shape[0] - 1) * pb.shape[1]),
        "max_abs_delta_probability": float(np.abs(pb[1:] - pb[:-1]).max()) if len(pb) > 1 else 0.0}
    res["downstream_setup"] = (
        f"StandardScaler (fitted on the training rows) + LogisticRegression() defaults (C=1, lbfgs, "
        f"max_iter=100); StratifiedKFold(5, shuffle=True, random_state=seed) for seeds 0..{args.seeds - 1}, "
        "same folds for every pair; per seed accuracy and log loss over the 88 out-of-fold predictions")
    print(json.dumps(res))


# ---- the driver (.venv) -----------------------------------------------------


def venv_stage(stage, args):
    p = subprocess.run([VPY, os.path.abspath(__file__), "--stage", stage, "--seeds", str(args.seeds),
                        "--batch", str(args.batch)], cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"stage {stage} failed ({p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8, help="images per model run, every arm")
    ap.add_argument("--stage", choices=["openvino", "analyse"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage == "openvino":
        return stage_openvino(args)
    if args.stage == "analyse":
        return stage_analyse(args)

    t_start = time.time()
    os.makedirs(B, exist_ok=True)
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_ort import Recipe, make_session
    import onnxruntime as ort

    res = {"cpu": cpu_info(), "load_average_start": os.getloadavg(), "batch": args.batch,
           "seeds": args.seeds, "onnxruntime": ort.__version__}

    # OpenVINO + sklearn venv.
    ok, why = openvino_venv(VENV, ["scikit-learn"], system_site=False)
    if not ok:
        raise SystemExit(f"no OpenVINO venv: {why}")

    # 1. Preprocess once.
    man, onnx_path = manifest()
    recipe = Recipe(man["preprocess"], draft=False)
    paths, labels = [], []
    for i, c in enumerate(CLASSES):
        d = os.path.join(ROOT, "data", "stamps", c)
        for fn in sorted(os.listdir(d)):
            if fn.lower().endswith((".jpg", ".jpeg", ".png", ".webp", ".bmp")):
                paths.append(os.path.join(d, fn))
                labels.append(i)
    x = np.stack([recipe(p) for p in paths]).astype(np.float32)
    np.save(os.path.join(B, "inputs.npy"), x)
    res["images"] = {"n": len(paths), "per_class": {c: labels.count(i) for i, c in enumerate(CLASSES)}}
    log(f"{len(paths)} photos preprocessed -> {x.shape}")

    # 2a. ONNX Runtime fp32, the reference (twice: is it deterministic?).
    sess = make_session(onnx_path, 2)
    feat, inp = man["output"]["features"], man["input"]["name"]
    run = lambda b: sess.run([feat], {inp: b})[0]
    ort_fp32 = batched(run, x, args.batch)
    again = batched(run, x, args.batch)
    res["ort_fp32_rerun_max_abs_diff"] = float(np.abs(ort_fp32 - again).max())
    np.savez(os.path.join(B, "features_ort.npz"), ort_fp32=ort_fp32, labels=np.asarray(labels))
    log(f"ort_fp32 {ort_fp32.shape}, rerun max |diff| {res['ort_fp32_rerun_max_abs_diff']:.3g}")

    # 2b-d. OpenVINO; 3-4. analysis.
    res["openvino"] = venv_stage("openvino", args)
    res.update(venv_stage("analyse", args))
    res["load_average_end"] = os.getloadavg()
    res["seconds"] = time.time() - t_start
    with open(os.path.join(B, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1)

    # Summary.
    c = res["cpu"]
    print(f"CPU {c['model_name']}: amx_bf16 {c['flags']['amx_bf16']}, avx512_bf16 {c['flags']['avx512_bf16']}; "
          f"OpenVINO {res['openvino']['openvino']}, ONNX Runtime {res['onnxruntime']}")
    print(f"{res['images']['n']} photos, efficientnet_lite0 features (1280-d), batch {args.batch}")
    print("features vs ONNX Runtime fp32:")
    print(f"  {'arm':<11} {'hint':<10} {'reported':<9} {'cos mean':>10} {'cos min':>10} "
          f"{'max|d|/|a| max':>15} {'mean':>9}")
    for arm in OV_ARMS:
        m, ft = res["openvino"]["arms"][arm], res["features"][arm]
        print(f"  {arm:<11} {m['hint']:<10} {m['reported_precision']:<9} {ft['cosine_mean']:10.6f} "
              f"{ft['cosine_min']:10.6f} {ft['max_abs_diff_over_norm_max']:15.2e} "
              f"{ft['max_abs_diff_over_norm_mean']:9.2e}")
    print(f"downstream: {res['downstream_setup']}")
    print("  mean ± sd over seeds; Δ paired by seed vs fp32->fp32; label changes of "
          f"{88 * args.seeds} out-of-fold predictions vs fp32->fp32")
    print(f"  {'train->test':<18} {'accuracy':>15} {'log loss':>15} {'Δ accuracy (pts)':>18} "
          f"{'Δ log loss':>17} {'labels':>7} {'max|Δp|':>8}")
    for name, d in res["downstream"].items():
        line = (f"  {name:<18} {d['accuracy']['mean']:.4f} ± {d['accuracy']['sd']:.4f} "
                f"{d['log_loss']['mean']:.4f} ± {d['log_loss']['sd']:.4f}")
        if "accuracy_minus_fp32_fp32" in d:
            da, dl = d["accuracy_minus_fp32_fp32"], d["log_loss_minus_fp32_fp32"]
            line += (f" {100 * da['mean']:+7.2f} ± {100 * da['sd']:5.2f}  {dl['mean']:+.4f} ± {dl['sd']:.4f}"
                     f" {d['labels_changed_vs_fp32_fp32']:4d}/{d['predictions']} {d['max_abs_delta_probability']:.4f}")
        print(line)
    for name, d in res["downstream"].items():
        if d.get("fp32_margin_of_changed_max") is not None:
            print(f"  {name:<18} changed labels: {d['images_with_a_changed_label']} distinct images, "
                  f"net {d['changed_labels_now_right_minus_now_wrong']:+d} right; fp32->fp32 top1-top2 margin <= "
                  f"{d['fp32_margin_of_changed_max']:.3f} (median margin of all: {d['fp32_margin_median_all']:.3f})")
    y = res["fp32_labels_changed_between_consecutive_seeds"]
    print(f"  yardstick: fp32->fp32 labels that change from seed s to s+1 (another 80 % training split): "
          f"{y['changed']}/{y['predictions']}, max|Δp| {y['max_abs_delta_probability']:.4f}")
    print(f"took {res['seconds']:.0f} s; results in {os.path.relpath(os.path.join(B, 'results.json'), ROOT)}")


if __name__ == "__main__":
    main()
