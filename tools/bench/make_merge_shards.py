#!/usr/bin/env python3
"""Synthetic shard files of a real size, to time `xfer merge` (tools/bench/shards.sh).

Writes N shard files with ROWS rows in all, laid out as `xfer extract --shard I/N`
writes them: `data` f32 [rows, D] chunked (256, D), `label`, `path`, empty
`skipped_*`, the provenance attributes of TEMPLATE (a real shard or feature file
of xfer), and the list and shard attributes of a synthetic list of ROWS files
(`list_sha256` is the sha256 of that list, computed as xfer does). The feature
values are random; the merge only copies them.

Usage: make_merge_shards.py TEMPLATE.h5 OUTDIR --rows 200000 --shards 8 [--seed 0]
Prints the shard files, one per line.
"""
import argparse
import hashlib
import os

import h5py
import numpy as np

PROVENANCE = ("backbone", "model_sha256", "preprocess", "class_names", "ort_version",
              "execution_provider", "xfer_version", "dataset_root", "layout", "decode")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("template")
    ap.add_argument("outdir")
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    g = np.random.default_rng(a.seed)
    with h5py.File(a.template, "r") as t:
        attrs = {k: t.attrs[k] for k in PROVENANCE}
        dim = t["data"].shape[1]
    n_classes = max(1, len(__import__("json").loads(attrs["class_names"])))
    paths = [f"c{i % n_classes}/{i:09d}.jpg" for i in range(a.rows)]
    labels = np.arange(a.rows, dtype=np.int64) % n_classes
    h = hashlib.sha256()
    for p, l in zip(paths, labels):
        h.update(p.encode() + b"\0" + str(int(l)).encode() + b"\0")
    sha = h.hexdigest()
    os.makedirs(a.outdir, exist_ok=True)
    s = h5py.string_dtype("utf-8")
    for i in range(a.shards):
        start, end = i * a.rows // a.shards, (i + 1) * a.rows // a.shards
        out = os.path.join(a.outdir, f"synth-{i}-of-{a.shards}.h5")
        with h5py.File(out, "w") as f:
            d = f.create_dataset("data", (end - start, dim), np.float32,
                                 chunks=(256, dim), maxshape=(None, dim))
            for b in range(start, end, 8192):
                e = min(b + 8192, end)
                d[b - start:e - start] = g.random((e - b, dim), dtype=np.float32)
            f.create_dataset("label", data=labels[start:end], chunks=(256,), maxshape=(None,))
            f.create_dataset("path", data=paths[start:end], dtype=s, chunks=(256,), maxshape=(None,))
            for name in ("skipped_path", "skipped_reason"):
                f.create_dataset(name, (0,), dtype=s, chunks=(256,), maxshape=(None,))
            for k, v in attrs.items():
                f.attrs.create(k, v, dtype=s)
            f.attrs.create("list_sha256", sha, dtype=s)
            for k, v in (("format_version", 3), ("list_len", a.rows), ("shard_index", i),
                         ("shard_count", a.shards), ("shard_start", start), ("shard_end", end),
                         ("rows_done", end - start), ("skipped_done", 0), ("complete", 1)):
                f.attrs.create(k, v, dtype=np.uint64)
        print(out)


if __name__ == "__main__":
    main()
