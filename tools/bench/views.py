#!/usr/bin/env python3
"""Cached augmented views (xfer extract --views K) against the tutorial's method 1.

Data: the real photo classes data/stamps/{flowers,fruit,vegetables} (69 images;
the package's animals folder is never read). Backbone: the real EfficientNet-Lite0
(onnx/efficientnet_lite0.onnx, ImageNet weights), frozen.

  (a) method 1: every epoch, each training image is augmented afresh with
      torchvision's RandomResizedCrop(224) + RandomHorizontalFlip and goes through
      the frozen backbone again; a new head learns on those features. The frozen
      backbone's forward pass runs in onnxruntime-python on the same ONNX file
      (no gradient flows through a frozen backbone, so autograd is not needed);
      transforms, head and optimiser are PyTorch.
  (b) xfer plain: `xfer extract` (centre crops), `xfer train`, `xfer evaluate`.
  (c) xfer views: `xfer extract --views K --augment tutorial`, the same training
      (the MLP draws one view per image per epoch), K = 4, 8, 16.

The head is the same everywhere: Dropout(0.5) → Linear(1280, 1000) → ReLU →
Dropout(0.5) → Linear(1000, 3), Adam lr 1e-3, batch 32, E epochs, no validation,
no calibration (xfer: --preset tutorial --head mlp --optim adam --lr 0.001
--batch 32 --epochs E --no-calibrate). Splits: R repeated stratified 70/30
splits (seeds 0..R-1); every method sees the same split. Test images are the
centre crop (Resize 256, CenterCrop 224) everywhere.

The K = 4 and 8 training files are the first K views of the K = 16 file: a
view's crop depends only on (seed, path, view index), so they are exactly what
`--views 4` / `--views 8` write (the test suite checks that property). Extraction
speed is measured by separate runs for each K.

Also: bytes per image of each file, and a logistic head (scikit-learn, C = 1,
standardised) on the centre views only vs all views stacked.

Usage: .venv/bin/python tools/bench/views.py [--epochs 10] [--repeats 5] [--out data/bench/views]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torchvision import transforms as T

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
XFER = os.path.join(ROOT, "target", "release", "xfer")
CLASSES = ["flowers", "fruit", "vegetables"]
KS = [4, 8, 16]


def run(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode not in (0, 3):
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return time.perf_counter() - t, p.stdout


def loadavg():
    return os.getloadavg()[0]


def stratified_split(labels, seed, test_frac=0.3):
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test.extend(idx[: int(round(test_frac * len(idx)))])
    test = np.sort(np.array(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def subset_file(src, dst, rows, k=None):
    """A feature file with `rows` of `src` (and its first k views), as xfer writes them."""
    with h5py.File(src, "r") as s, h5py.File(dst, "w") as d:
        d["data"] = s["data"][:][rows]
        d["label"] = s["label"][:][rows]
        d.create_dataset("path", data=[p for p in s["path"][:][rows]], dtype=h5py.string_dtype())
        for name in ("skipped_path", "skipped_reason"):
            d.create_dataset(name, shape=(0,), dtype=h5py.string_dtype(), maxshape=(None,))
        for key, v in s.attrs.items():
            d.attrs[key] = v
        d.attrs["rows_done"] = np.uint64(len(rows))
        d.attrs["skipped_done"] = np.uint64(0)
        for key in ("list_sha256", "list_len"):
            if key in d.attrs:
                del d.attrs[key]
        if k is None:
            for key in ("views", "augment"):
                if key in d.attrs:
                    del d.attrs[key]
        else:
            d["views"] = s["views"][:, :k][rows]
            aug = json.loads(s.attrs["augment"])
            aug["views"] = k
            d.attrs["augment"] = json.dumps(aug)
            d.attrs["views"] = np.uint64(k)


def xfer_head(train_h5, test_h5, out, epochs, seed):
    t, _ = run([XFER, "train", "--train", train_h5, "--out", out, "--overwrite", "--preset", "tutorial",
                "--head", "mlp", "--optim", "adam", "--lr", "0.001", "--batch", "32", "--epochs", str(epochs),
                "--no-calibrate", "--seed", str(seed), "--threads", "1"])
    _, o = run([XFER, "evaluate", "--bundle", os.path.join(out, "mlp.safetensors"), "--features", test_h5, "--json"])
    e = json.loads(o)["evaluation"]
    return e["accuracy"], e["log_loss"], t


def rgb_on_white(path):
    """Decoded as xfer decodes it: EXIF-upright, alpha composited onto white."""
    from PIL import ImageOps
    img = ImageOps.exif_transpose(Image.open(path))
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, img).convert("RGB")
    return img.convert("RGB")


def method1(images, labels, train, test, epochs, seed, sess):
    torch.manual_seed(seed)
    norm = T.Normalize(mean=[127 / 255] * 3, std=[128 / 255] * 3)
    tf_train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    tf_test = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
    head = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(1280, 1000), torch.nn.ReLU(),
                               torch.nn.Dropout(0.5), torch.nn.Linear(1000, len(CLASSES)))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    y = torch.tensor(labels)
    t0 = time.perf_counter()
    backbone_s = 0.0
    for _ in range(epochs):
        head.train()
        perm = train[torch.randperm(len(train)).numpy()]
        for b in range(0, len(perm), 32):
            idx = perm[b:b + 32]
            x = torch.stack([tf_train(images[i]) for i in idx]).numpy()
            tb = time.perf_counter()
            f = sess.run(["features"], {"input": x})[0]
            backbone_s += time.perf_counter() - tb
            loss = torch.nn.functional.cross_entropy(head(torch.from_numpy(f)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    wall = time.perf_counter() - t0
    head.eval()
    x = torch.stack([tf_test(images[i]) for i in test]).numpy()
    with torch.no_grad():
        logits = head(torch.from_numpy(sess.run(["features"], {"input": x})[0]))
        loss = torch.nn.functional.cross_entropy(logits, y[test]).item()
        acc = (logits.argmax(1) == y[test]).float().mean().item()
    return acc, loss, wall, backbone_s


def logistic(train_x, train_y, test_x, test_y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler
    sc = StandardScaler().fit(train_x)
    m = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(train_x), train_y)
    p = m.predict_proba(sc.transform(test_x))
    return float((p.argmax(1) == test_y).mean()), float(log_loss(test_y, p, labels=m.classes_))


def ms(v):
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "bench", "views"))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    stamps = os.path.join(out, "stamps")  # links to the three classes only
    os.makedirs(stamps, exist_ok=True)
    for c in CLASSES:
        link = os.path.join(stamps, c)
        if not os.path.exists(link):
            os.symlink(os.path.realpath(os.path.join(ROOT, "data", "stamps", c)), link)
    report = {"load_before": loadavg(), "nproc": os.cpu_count()}

    # Extraction: plain and K views, whole processes, alternating order once.
    ext = {}
    for k in [None] + KS:
        name = "plain" if k is None else f"v{k}"
        cmd = [XFER, "extract", "--model", "efficientnet_lite0", "--data", stamps,
               "--out", os.path.join(out, f"{name}.h5"), "--overwrite", "-q", "--json"]
        if k:
            cmd += ["--views", str(k), "--augment", "tutorial", "--seed", "0"]
        la = loadavg()
        t, o = run(cmd)
        j = json.loads(o)
        ext[name] = {"seconds": t, "images_per_second": 69 / t, "load": la,
                     "bytes": os.path.getsize(os.path.join(out, f"{name}.h5"))}
        print(f"extract {name}: {t:.1f} s, {69 / t:.2f} images/s, load {la:.1f}", flush=True)
    report["extract"] = ext

    with h5py.File(os.path.join(out, "v16.h5"), "r") as f:
        labels = f["label"][:]
        paths = [p.decode() for p in f["path"][:]]
        views16 = f["views"][:]
        centre = f["data"][:]
    with h5py.File(os.path.join(out, "v4.h5"), "r") as f:
        assert np.array_equal(f["views"][:], views16[:, :4]), "views depend on (seed, path, index) only"
    images = [rgb_on_white(os.path.join(stamps, p)) for p in paths]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(os.path.join(ROOT, "onnx", "efficientnet_lite0.onnx"), so,
                                providers=["CPUExecutionProvider"])
    rows = {m: {"acc": [], "loss": [], "wall": []} for m in ["a_method1", "b_plain"] + [f"c_views{k}" for k in KS]}
    lr_rows = {"centre": {"acc": [], "loss": []}, "stacked16": {"acc": [], "loss": []}}
    m1_backbone = []
    tmp = os.path.join(out, "splits")
    os.makedirs(tmp, exist_ok=True)
    for seed in range(args.repeats):
        train, test = stratified_split(labels, seed)
        la = loadavg()
        acc, loss, wall, bb = method1(images, labels, train, test, args.epochs, seed, sess)
        m1_backbone.append(bb)
        rows["a_method1"]["acc"].append(acc); rows["a_method1"]["loss"].append(loss); rows["a_method1"]["wall"].append(wall)
        print(f"seed {seed}: method 1 acc {acc:.3f} loss {loss:.3f} {wall:.1f} s (backbone {bb:.1f} s) load {la:.1f}", flush=True)
        test_h5 = os.path.join(tmp, "test.h5")
        subset_file(os.path.join(out, "plain.h5"), test_h5, test)
        for name, k in [("b_plain", None)] + [(f"c_views{k}", k) for k in KS]:
            tr = os.path.join(tmp, "train.h5")
            subset_file(os.path.join(out, "v16.h5"), tr, train, k)
            acc, loss, t = xfer_head(tr, test_h5, os.path.join(tmp, "heads"), args.epochs, seed)
            rows[name]["acc"].append(acc); rows[name]["loss"].append(loss); rows[name]["wall"].append(t)
            print(f"seed {seed}: {name} acc {acc:.3f} loss {loss:.3f} train {t:.1f} s", flush=True)
        a, l = logistic(centre[train], labels[train], centre[test], labels[test])
        lr_rows["centre"]["acc"].append(a); lr_rows["centre"]["loss"].append(l)
        st = views16[train].reshape(-1, views16.shape[2])
        a, l = logistic(st, np.repeat(labels[train], 16), centre[test], labels[test])
        lr_rows["stacked16"]["acc"].append(a); lr_rows["stacked16"]["loss"].append(l)
    shutil.rmtree(tmp)
    report["load_after"] = loadavg()
    report["rows"] = rows
    report["logistic"] = lr_rows
    report["method1_backbone_seconds"] = m1_backbone
    report["epochs"] = args.epochs
    report["repeats"] = args.repeats
    with open(os.path.join(out, "views_bench.json"), "w") as f:
        json.dump(report, f, indent=1)

    n_train = len(stratified_split(labels, 0)[0])
    print(f"\n{args.repeats} stratified 70/30 splits of 69 stamps ({n_train} train / {69 - n_train} test), "
          f"{args.epochs} epochs, same MLP head and optimiser; load average {report['load_before']:.1f} → {report['load_after']:.1f} on {os.cpu_count()} cores")
    print("| method | test accuracy | test log loss | backbone passes per train image | head training wall s | extraction s (all 69, once) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        if name == "a_method1":
            passes, ext_s = f"{args.epochs} (+1 test)", "—"
        elif name == "b_plain":
            passes, ext_s = "1", f"{ext['plain']['seconds']:.1f}"
        else:
            k = int(name[len("c_views"):])
            passes, ext_s = f"{k}", f"{ext[f'v{k}']['seconds']:.1f}"
        print(f"| {name} | {ms(r['acc'])} | {ms(r['loss'])} | {passes} | {ms(r['wall'])} | {ext_s} |")
    print("\nlogistic (sklearn C=1, standardised): centre only acc", ms(lr_rows["centre"]["acc"]), "loss", ms(lr_rows["centre"]["loss"]),
          "| 16 views stacked acc", ms(lr_rows["stacked16"]["acc"]), "loss", ms(lr_rows["stacked16"]["loss"]))
    print("\nbytes per image (file size / 69):", {k: round(v["bytes"] / 69) for k, v in ext.items()},
          "| f16 views would be K × 1280 × 2 =", {k: k * 2560 for k in KS})


if __name__ == "__main__":
    main()
