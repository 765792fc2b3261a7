#!/usr/bin/env python3
"""`xfer audit` side by side with its peers, on the demo's photos (the Tux
Paint stamps: flowers, fruit, vegetables, vehicles; 88 photos):

1. label issues against cleanlab's `find_label_issues` (defaults) on the same
   out-of-fold probabilities (those `xfer train --cv 5` records): agreement of
   the flagged sets, and precision / recall against labels flipped on purpose
   (a seeded FLIP fraction of the photos moved to another class folder in a copy);
2. near-duplicates against an exact brute-force cosine search in numpy on the
   same features (the same pairs, and the time of each);
3. planted near-duplicates the way they occur in real data: every photo
   re-encoded as JPEG (quality 50 and 90), resized to 50 %, cropped 10 % and
   mirrored, in a second split: how many are found at the default threshold,
   their lowest similarity, and the false positives (pairs of different photos).

Needs a venv with cleanlab, numpy, h5py and pillow OUTSIDE the repo (or in a
gitignored folder):
    python3 -m venv /tmp/cl && /tmp/cl/bin/pip install cleanlab numpy h5py pillow
    cargo build --release && /tmp/cl/bin/python tools/bench/audit.py [--flip 0.08] [--seed 1]
"""
import argparse
import json
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
from PIL import Image, ImageOps

REPO = pathlib.Path(__file__).resolve().parents[2]
XFER = REPO / "target/release/xfer"
CLASSES = ["flowers", "fruit", "vegetables", "vehicles"]  # `animals` is held back


def run(*args):
    t = time.perf_counter()
    p = subprocess.run([str(XFER), *map(str, args)], cwd=REPO, capture_output=True, text=True)
    if p.returncode not in (0, 3):
        sys.exit(f"xfer {' '.join(map(str, args))} failed:\n{p.stderr}")
    return p.stdout, time.perf_counter() - t


def extract(data, out):
    run("extract", "--model", "efficientnet_lite0", "--data", data, "--out", out, "--quiet")


def photos():
    return [(c, p) for c in CLASSES for p in sorted((REPO / "data/stamps" / c).glob("*.png"))]


def on_white(path):
    img = Image.open(path).convert("RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, img).convert("RGB")


def label_issues(tmp, flip, seed):
    import cleanlab
    from cleanlab.filter import find_label_issues

    data = tmp / "flipped"
    rng = random.Random(seed)
    all_photos = photos()
    n_flip = round(flip * len(all_photos))
    flipped = set(rng.sample(range(len(all_photos)), n_flip))
    truth = {}
    for i, (c, p) in enumerate(all_photos):
        given = rng.choice([k for k in CLASSES if k != c]) if i in flipped else c
        (data / given).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, data / given / p.name)
        truth[f"{given}/{p.name}"] = (c, i in flipped)
    f = tmp / "flipped_efficientnet_lite0.h5"
    extract(data, f)
    run("train", "--train", f, "--out", tmp / "run", "--cv", "5", "--head", "logistic", "--quiet")
    out, t_xfer = run("audit", "--features", f, "--run", tmp / "run", "--json", "--no-hash")
    audit = json.loads(out)
    xfer_set = {i["path"] for i in audit["label_issues"]}
    oof = json.loads((tmp / "run/out_of_fold.json").read_text())
    probs = np.array(oof["heads"][0]["probabilities"], dtype=np.float64)
    labels = np.array(oof["labels"])
    t0 = time.perf_counter()
    mask = find_label_issues(labels, probs)
    t_cl = time.perf_counter() - t0
    cl_set = {oof["paths"][i] for i in np.flatnonzero(mask)}
    flips = {p for p, (_, f) in truth.items() if f}

    def pr(s):
        tp = len(s & flips)
        return (tp / len(s) if s else float("nan"), tp / len(flips) if flips else float("nan"))

    px, rx = pr(xfer_set)
    pc, rc = pr(cl_set)
    print(f"\n## Label issues ({len(all_photos)} photos, {len(flips)} labels flipped at random, seed {seed}; "
          f"logistic head, 5-fold out-of-fold probabilities from `xfer train`; cleanlab {cleanlab.__version__})")
    print(f"flagged: xfer {len(xfer_set)}, cleanlab {len(cl_set)}, both {len(xfer_set & cl_set)}, "
          f"only xfer {len(xfer_set - cl_set)}, only cleanlab {len(cl_set - xfer_set)}")
    print(f"precision / recall against the flips: xfer {px:.2f} / {rx:.2f}, cleanlab {pc:.2f} / {rc:.2f}")
    print(f"time: xfer audit (whole command, label step {audit['seconds']['label_issues']*1e6:.0f} µs) "
          f"{t_xfer:.2f} s; cleanlab find_label_issues {t_cl*1000:.1f} ms")
    missed = sorted(flips - xfer_set)
    if missed:
        print("flips not flagged: " + ", ".join(f"{p} (really {truth[p][0]})" for p in missed))
    extra = sorted(xfer_set - flips)
    if extra:
        print("flagged but not flipped: " + ", ".join(extra))
    return xfer_set == cl_set


def related(a, b):
    """Two paths of the same photo: a planted copy, or the stamps' own `_mirror` pairs."""
    def stem(p):
        s = pathlib.PurePath(p).stem
        for suffix in ("_q50", "_q90", "_half", "_crop", "_mirrored", "_mirror"):
            s = s.removesuffix(suffix)
        return s
    return stem(a) == stem(b)


def duplicates(tmp, threshold):
    orig = tmp / "orig"
    planted = tmp / "planted"
    kinds = ["q50", "q90", "half", "crop", "mirrored"]
    for c, p in photos():
        (orig / c).mkdir(parents=True, exist_ok=True)
        (planted / c).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, orig / c / p.name)
        img = on_white(p)
        w, h = img.size
        img.save(planted / c / f"{p.stem}_q50.jpg", quality=50)
        img.save(planted / c / f"{p.stem}_q90.jpg", quality=90)
        img.resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR).save(planted / c / f"{p.stem}_half.png")
        img.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(planted / c / f"{p.stem}_crop.png")
        ImageOps.mirror(img).save(planted / c / f"{p.stem}_mirrored.png")
    fo, fp = tmp / "orig_efficientnet_lite0.h5", tmp / "planted_efficientnet_lite0.h5"
    extract(orig, fo)
    extract(planted, fp)
    extra = [] if threshold is None else ["--threshold", threshold]
    out, t_xfer = run("audit", "--features", fo, "--features", fp, "--json", "--no-hash", *extra)
    audit = json.loads(out)
    threshold = audit["threshold"]
    # numpy brute force on the same features.
    x, paths, split = [], [], []
    for name, f in (("orig", fo), ("planted", fp)):
        with h5py.File(f, "r") as h:
            x.append(h["data"][:].astype(np.float32))
            ps = [p.decode() if isinstance(p, bytes) else p for p in h["path"][:]]
            paths += ps
            split += [name] * len(ps)
    x = np.concatenate(x)
    t0 = time.perf_counter()
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    s = u @ u.T
    i, j = np.nonzero(np.triu(s >= threshold, 1))
    t_np = time.perf_counter() - t0
    np_pairs = {(min((split[a], paths[a]), (split[b], paths[b])), max((split[a], paths[a]), (split[b], paths[b]))) for a, b in zip(i, j)}
    xf_pairs = {(min((d["a"]["split"], d["a"]["path"]), (d["b"]["split"], d["b"]["path"])),
                 max((d["a"]["split"], d["a"]["path"]), (d["b"]["split"], d["b"]["path"]))) for d in audit["duplicates"]}
    print(f"\n## Near-duplicates ({len(paths)} rows: {len(photos())} photos + {len(kinds)} planted copies of each, "
          f"threshold {threshold})")
    print(f"same pairs as numpy brute force: {xf_pairs == np_pairs} ({len(xf_pairs)} pairs; "
          f"only xfer {len(xf_pairs - np_pairs)}, only numpy {len(np_pairs - xf_pairs)})")
    print(f"time: xfer audit whole command {t_xfer:.2f} s (neighbour search {audit['seconds']['neighbours']*1000:.1f} ms); "
          f"numpy normalise + X·Xᵀ + threshold {t_np*1000:.1f} ms")
    # Planted copies found (pair original ~ its copy), per kind.
    index = {(sp, p): k for k, (sp, p) in enumerate(zip(split, paths))}
    for kind in kinds:
        found, sims = 0, []
        for c, p in photos():
            a = index[("orig", f"{c}/{p.name}")]
            b = index[("planted", f"{c}/{p.stem}_{kind}" + (".jpg" if kind.startswith("q") else ".png"))]
            sims.append(float(s[a, b]))
            found += (min(("orig", paths[a]), ("planted", paths[b])), max(("orig", paths[a]), ("planted", paths[b]))) in xf_pairs
        print(f"  {kind:9s} found {found:3d} of {len(sims)}   similarity min {min(sims):.3f}, median {np.median(sims):.3f}")
    fps = [(a, b) for a, b in xf_pairs if not related(a[1], b[1])]
    unrelated = [float(s[a, b]) for a in range(len(paths)) for b in range(a + 1, len(paths)) if not related(paths[a], paths[b])]
    print(f"false positives (pairs of different photos) at {threshold}: {len(fps)}"
          + (": " + ", ".join(f"{a[1]} ~ {b[1]}" for a, b in sorted(fps)[:8]) if fps else ""))
    # The whole trade-off: planted copies found and false positives per threshold.
    pair_sims = {kind: [] for kind in kinds}
    for c, p in photos():
        a = index[("orig", f"{c}/{p.name}")]
        for kind in kinds:
            b = index[("planted", f"{c}/{p.stem}_{kind}" + (".jpg" if kind.startswith("q") else ".png"))]
            pair_sims[kind].append(float(s[a, b]))
    unrel = np.array(unrelated)
    print("\n  threshold | found: " + " ".join(f"{k:>8s}" for k in kinds) + f" | false positives (of {len(unrelated)} pairs of different photos)")
    for t in (0.80, 0.85, 0.88, 0.90, 0.92, 0.95):
        found = " ".join(f"{sum(v >= t for v in pair_sims[k]):8d}" for k in kinds)
        print(f"  {t:9.2f} |        {found} | {int((unrel >= t).sum())}")
    print(f"highest similarity of two different photos: {max(unrelated):.3f}; "
          f"the stamps' own mirrored pairs are counted as duplicates, not false positives")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flip", type=float, default=0.08, help="fraction of labels flipped (default 0.08)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=None, help="default: xfer's")
    a = ap.parse_args()
    if not XFER.exists():
        sys.exit("build first: cargo build --release")
    with tempfile.TemporaryDirectory() as t:
        same = label_issues(pathlib.Path(t), a.flip, a.seed)
        print(f"flagged sets identical: {same}")
        duplicates(pathlib.Path(t), a.threshold)


if __name__ == "__main__":
    main()
