#!/usr/bin/env python3
"""Synthetic feature files for the head benchmark (tools/bench/train.sh): the
tutorial's large case, N × D pooled-feature-like rows (non-negative, about half
zeros, 5 % of the columns never fire, as dead ReLU channels do), 2 classes that a
linear model separates imperfectly. Written in the tutorial's layout (`data`,
`label`) so both xfer and the Python peers read the same file.

Usage: make_train_features.py OUT.hd5f [--n 20000] [--d 4608] [--classes 2] [--seed 0]
"""
import argparse

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=4608)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    g = np.random.default_rng(a.seed)
    y = g.integers(0, a.classes, a.n)
    centres = g.standard_normal((a.classes, a.d)).astype(np.float32) * 0.08
    x = np.empty((a.n, a.d), np.float32)
    step = 2000
    for i in range(0, a.n, step):
        block = g.standard_normal((min(step, a.n - i), a.d), dtype=np.float32)
        block += centres[y[i : i + step]]
        np.maximum(block, 0, out=block)
        x[i : i + step] = block
    dead = g.choice(a.d, a.d // 20, replace=False)
    x[:, dead] = 0
    with h5py.File(a.out, "w") as f:
        f.create_dataset("data", data=x, chunks=(256, a.d))
        f.create_dataset("label", data=y.astype(np.int64))
    print(f"wrote {a.out}: {a.n} x {a.d}, {a.classes} classes")


if __name__ == "__main__":
    main()
