#!/usr/bin/env python3
"""The tutorial's own way: torchvision ImageFolder + DataLoader + resnet18 forward.

    torch.set_num_threads(T)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(DATA, tf)
    dl = DataLoader(ds, batch_size=32, shuffle=False, num_workers=2)
    model = torchvision.models.resnet18(weights=None)   # random weights (offline)
    model.fc = torch.nn.Identity()                      # pooled 512-d features
    model.eval()
    with torch.no_grad():
        for x, y in dl: feats.append(model(x))

Timed from creating the DataLoader iterator (worker start-up included) to the last
batch out; the model is built and run once on a dummy batch beforehand.
Debian's torch uses whatever libblas.so.3 is selected (the reference BLAS is ~10x slower); the selected
one is reported. Last stdout line: JSON with images_per_s.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms as T


def selected_blas():
    try:
        out = subprocess.run(["update-alternatives", "--query", "libblas.so.3-x86_64-linux-gnu"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Value:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="ImageFolder root")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(args.data, tf)
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()
    model.eval()
    with torch.no_grad():
        model(torch.zeros(args.batch, 3, 224, 224))  # warm-up

    dl = DataLoader(ds, batch_size=args.batch, shuffle=False, num_workers=args.workers)
    feats = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for x, _ in dl:
            feats.append(model(x))
    dt = time.perf_counter() - t0
    feats = torch.cat(feats)  # [n, 512]
    n = len(ds)
    blas = selected_blas()
    res = {
        "tool": "peer_torch",
        "model": "resnet18",
        "images_per_s": n / dt,
        "n_images": n,
        "seconds": dt,
        "threads": args.threads,
        "workers": args.workers,
        "batch": args.batch,
        "feature_shape": list(feats.shape),
        "torch": torch.__version__,
        "blas": blas,
    }
    print(f"peer_torch resnet18: {n} images in {dt:.2f} s = {n / dt:.1f} img/s "
          f"(libblas: {blas})", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
