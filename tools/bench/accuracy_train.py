#!/usr/bin/env python3
"""Validation accuracy of xfer's MLP head vs PyTorch's, same hyperparameters, on
real features (issue: within 1 percentage point).

Takes xfer feature files of real photos (one per backbone, rows matched by
`path`), concatenates them, and for K seeded stratified 75/25 splits writes
train/val files in the tutorial's layout, trains `xfer train --head mlp` and the
same head in PyTorch (same architecture, optimiser, lr, batch, epochs; the epoch
with the lowest validation loss kept, as xfer does), and prints both validation
accuracies per split and their means.

  accuracy_train.py [--features F.h5 ...] [--splits 5] [--epochs 30] [--batch 16]
                    [--optim adam] [--lr 1e-3] [--threads 2]
Default features: data/heads/stamps_efficientnet_lite0.h5 and _lite1.h5 (make them
with `xfer extract --model efficientnet_lite0|1 --data data/stamps --out …`,
after tools/fetch_stamps.sh and tools/setup.sh --lite 1).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
XFER = os.path.join(ROOT, "target", "release", "xfer")
OUT = os.path.join(ROOT, "data", "bench", "accuracy")


def load(files):
    base = None
    parts = []
    for f in files:
        with h5py.File(f, "r") as h:
            paths = [p.decode() if isinstance(p, bytes) else p for p in h["path"][:]]
            data, label = h["data"][:], h["label"][:]
        order = {p: i for i, p in enumerate(paths)}
        if base is None:
            base = (paths, label)
        idx = [order[p] for p in base[0]]  # KeyError = files of different images
        assert (label[idx] == base[1]).all(), f"{f}: labels differ"
        parts.append(data[idx])
    return np.concatenate(parts, axis=1), base[1].astype(np.int64)


def split(y, seed, frac=0.25):
    g = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        g.shuffle(rows)
        val.extend(rows[: max(1, round(len(rows) * frac))])
    val = np.array(sorted(val))
    train = np.setdiff1d(np.arange(len(y)), val)
    return train, val


def write(path, x, y):
    with h5py.File(path, "w") as f:
        f["data"] = x.astype(np.float32)
        f["label"] = y


def torch_run(xtr, ytr, xva, yva, a, seed):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(seed)
    d, c = xtr.shape[1], int(max(ytr.max(), yva.max())) + 1
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(d, a.hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(a.hidden, c))
    opt = (torch.optim.Adam if a.optim == "adam" else torch.optim.SGD)(model.parameters(), lr=a.lr)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    xv, yv = torch.from_numpy(xva), torch.from_numpy(yva)
    best = (float("inf"), 0.0)
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(len(yt))
        for i in range(0, len(yt), a.batch):
            idx = perm[i : i + a.batch]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            loss = F.cross_entropy(out, yv).item()
            acc = (out.argmax(1) == yv).float().mean().item()
        if loss < best[0]:
            best = (loss, acc)
    return best[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", nargs="*", default=[
        os.path.join(ROOT, "data", "heads", "stamps_efficientnet_lite0.h5"),
        os.path.join(ROOT, "data", "heads", "stamps_efficientnet_lite1.h5")])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--optim", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    x, y = load(a.features)
    os.makedirs(OUT, exist_ok=True)
    rows = []
    for k in range(a.splits):
        tr, va = split(y, seed=k)
        ftr, fva = os.path.join(OUT, f"split{k}_train.hd5f"), os.path.join(OUT, f"split{k}_val.hd5f")
        write(ftr, x[tr], y[tr])
        write(fva, x[va], y[va])
        out = os.path.join(OUT, f"xfer-split{k}")
        cmd = [XFER, "train", "--train", ftr, "--val", fva, "--head", "mlp", "--out", out, "--overwrite",
               "--preset", "tutorial", "--epochs", str(a.epochs), "--batch", str(a.batch), "--optim", a.optim, "--lr", str(a.lr),
               "--hidden", str(a.hidden), "--seed", str(k), "--threads", str(a.threads)]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(os.path.join(out, "metrics.json")) as f:
            xacc = json.load(f)["heads"][0]["validation"]["accuracy"]
        tacc = torch_run(x[tr], y[tr], x[va], y[va], a, seed=k)
        rows.append((k, len(tr), len(va), xacc, tacc))
        print(f"split {k}: {len(tr)} train / {len(va)} val rows: xfer {100 * xacc:6.2f} %   PyTorch {100 * tacc:6.2f} %", flush=True)
    mx = statistics.mean(r[3] for r in rows)
    mt = statistics.mean(r[4] for r in rows)
    print(f"mean over {a.splits} splits ({x.shape[1]} features from {len(a.features)} file(s), {a.optim} lr {a.lr}, "
          f"batch {a.batch}, {a.epochs} epochs): xfer {100 * mx:.2f} %, PyTorch {100 * mt:.2f} %, "
          f"difference {100 * (mx - mt):+.2f} points")
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"features": a.features, "settings": vars(a), "splits": rows, "xfer_mean": mx, "torch_mean": mt}, f, indent=1)


if __name__ == "__main__":
    main()
