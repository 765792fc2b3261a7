#!/usr/bin/env python3
"""PyTorch peer of `xfer train --head mlp` for tools/bench/train.sh: the tutorial's
head on the same feature file, the same settings, in memory, timed per epoch.

The loop is the fastest plain PyTorch one (a random permutation per epoch and
tensor indexing, no DataLoader/collate overhead), so the comparison is with
PyTorch at its best on this machine. Prints one JSON line.

  peer_torch_train.py --data F --epochs 3 --batch 64 --optim sgd --lr 1e-3 --threads 2
                      [--hidden 1000] [--dropout 0.5] [--no-input-dropout] [--flush-denormal]
"""
import argparse
import json
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--optim", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--no-input-dropout", action="store_true")
    ap.add_argument("--flush-denormal", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    with h5py.File(a.data, "r") as f:
        x = torch.from_numpy(f["data"][:])
        y = torch.from_numpy(f["label"][:].astype(np.int64))
    load_s = time.perf_counter() - t0
    n, d = x.shape
    c = int(y.max()) + 1
    layers = [] if a.no_input_dropout else [nn.Dropout(a.dropout)]
    layers += [nn.Linear(d, a.hidden), nn.ReLU(), nn.Dropout(a.dropout), nn.Linear(a.hidden, c)]
    model = nn.Sequential(*layers)
    model.train()
    if a.optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    epochs = []
    for _ in range(a.epochs):
        t, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(n)
        total, correct = 0.0, 0
        for i in range(0, n, a.batch):
            idx = perm[i : i + a.batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        epochs.append(
            {
                "seconds": time.perf_counter() - t,
                "cpu_seconds": time.process_time() - c0,
                "loss": total / n,
                "accuracy": correct / n,
            }
        )
    print(
        json.dumps(
            {
                "peer": "torch",
                "torch": torch.__version__,
                "threads": a.threads,
                "flush_denormal": a.flush_denormal,
                "load_seconds": load_s,
                "epochs": epochs,
            }
        )
    )


if __name__ == "__main__":
    main()
