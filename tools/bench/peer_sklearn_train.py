#!/usr/bin/env python3
"""sklearn peer of `xfer train --head logistic` for tools/bench/train.sh: the same
feature file, standardised (StandardScaler), LogisticRegression(lbfgs, C=1,
max_iter=100) as xfer's defaults; times the fit alone. Prints one JSON line.

  peer_sklearn_train.py --data F [--threads 2] [--c 1.0] [--max-iter 100]
"""
import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--c", type=float, default=1.0)
    ap.add_argument("--max-iter", type=int, default=100)
    a = ap.parse_args()
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)
    import h5py
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    import sklearn

    with h5py.File(a.data, "r") as f:
        x = f["data"][:]
        y = f["label"][:]
    t = time.perf_counter()
    xs = StandardScaler().fit_transform(x)
    scale_s = time.perf_counter() - t
    c0, t = time.process_time(), time.perf_counter()
    model = LogisticRegression(C=a.c, max_iter=a.max_iter, solver="lbfgs").fit(xs, y)
    fit_s = time.perf_counter() - t
    cpu_s = time.process_time() - c0
    print(json.dumps({
        "peer": "sklearn",
        "sklearn": sklearn.__version__,
        "threads": a.threads,
        "scale_seconds": scale_s,
        "fit_seconds": fit_s,
        "fit_cpu_seconds": cpu_s,
        "iterations": int(np.max(model.n_iter_)),
        "train_accuracy": float(model.score(xs, y)),
    }))


if __name__ == "__main__":
    main()
