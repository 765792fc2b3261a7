#!/usr/bin/env python3
"""Make the benchmark image sets in data/bench/ from the real photos in data/photos/.

  data/bench/small-N/{a,b}/s_XXXXX.jpg   N JPEGs of ~0.19 MP (500x375 or 375x500):
                                         random crops (55-100 % of each side), flips
                                         and scales of the real photos, quality 90.
                                         ImageFolder layout (two class folders).
  data/bench/large-M/{a,b}/l_XXXXX.jpg   M JPEGs of 8.4 MP (3500x2400 or 2400x3500),
                                         upscaled with PIL bicubic from random crops
                                         of the real photos, quality 90.
  data/bench/rss-K/{a,b}/r_XXXXX.jpg     K hard links (distinct names) onto the 200
                                         files of data/bench/rss-pool (made like the
                                         small set), for the peak-RSS check.

Every photo under data/photos (recursively; .png/.jpg/.jpeg/.webp/.bmp, folders
named `cartoon` skipped) is a source; transparency is flattened onto a grey
background. Deterministic (seeded); a set that already exists with the same
parameters (data/bench/<set>/params.json) is left alone.

Usage: make_images.py [--small N] [--large M] [--rss K ...] [--seed S]
Prints the set directories as JSON on its last line.
"""
import argparse
import json
import os
import random
import shutil
import sys

from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PHOTOS = os.path.join(ROOT, "data", "photos")
BENCH = os.path.join(ROOT, "data", "bench")
EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VERSION = 1


def find_photos():
    out = []
    for dp, dns, fns in os.walk(PHOTOS):
        dns[:] = sorted(d for d in dns if d.lower() != "cartoon")
        for fn in sorted(fns):
            if fn.lower().endswith(EXTS):
                out.append(os.path.join(dp, fn))
    return out


def load_rgb(path):
    im = Image.open(path)
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
        bg.alpha_composite(im)
        im = bg
    return im.convert("RGB")


def random_view(rng, im, out_w, out_h, min_frac, resample):
    """A random crop with the output's aspect, flipped at random, resized to out."""
    w, h = im.size
    aspect = out_w / out_h
    frac = rng.uniform(min_frac, 1.0)
    cw = min(w, h * aspect) * frac
    ch = cw / aspect
    cw, ch = max(8, int(round(cw))), max(8, int(round(ch)))
    x0 = rng.randint(0, w - cw)
    y0 = rng.randint(0, h - ch)
    v = im.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        v = v.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return v.resize((out_w, out_h), resample)


def params_match(d, params):
    try:
        with open(os.path.join(d, "params.json")) as f:
            return json.load(f) == params
    except (OSError, ValueError):
        return False


def write_set(name, params, make):
    d = os.path.join(BENCH, name)
    if params_match(d, params):
        return d
    if os.path.exists(d):
        shutil.rmtree(d)
    tmp = d + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    for c in ("a", "b"):
        os.makedirs(os.path.join(tmp, c))
    make(tmp)
    with open(os.path.join(tmp, "params.json"), "w") as f:
        json.dump(params, f)
    os.rename(tmp, d)
    print(f"make_images: wrote {d}", file=sys.stderr)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=256)
    ap.add_argument("--large", type=int, default=48)
    ap.add_argument("--rss", type=int, nargs="*", default=[200, 2000])
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    photos = find_photos()
    if not photos:
        sys.exit(f"make_images: no photos in {PHOTOS}; run tools/fetch_photos.sh first")
    rels = [os.path.relpath(p, PHOTOS) for p in photos]
    srcs = [load_rgb(p) for p in photos]
    os.makedirs(BENCH, exist_ok=True)
    sets = {}

    def small_files(d, n):
        return [os.path.join(d, "ab"[i % 2], f"s_{i:05d}.jpg") for i in range(n)]

    def make_small(tmp):
        rng = random.Random(args.seed)
        for i, path in enumerate(small_files(tmp, args.small)):
            im = srcs[i % len(srcs)]
            w, h = (500, 375) if rng.random() < 0.6 else (375, 500)
            v = random_view(rng, im, w, h, 0.55, Image.Resampling.BICUBIC)
            v.save(path, quality=90)

    p_small = {"v": VERSION, "n": args.small, "seed": args.seed, "photos": rels}
    sets["small"] = write_set(f"small-{args.small}", p_small, make_small)

    def make_large(tmp):
        rng = random.Random(args.seed + 1)
        for i in range(args.large):
            im = srcs[i % len(srcs)]
            w, h = (3500, 2400) if rng.random() < 0.7 else (2400, 3500)
            v = random_view(rng, im, w, h, 0.7, Image.Resampling.BICUBIC)
            v.save(os.path.join(tmp, "ab"[i % 2], f"l_{i:05d}.jpg"), quality=90)

    p_large = {"v": VERSION, "n": args.large, "seed": args.seed, "photos": rels}
    sets["large"] = write_set(f"large-{args.large}", p_large, make_large)

    # the RSS sets link onto a pool of their own (independent of --small, so that
    # switching between --quick and full runs does not rebuild them)
    n_pool = 200
    p_pool = {"v": VERSION, "n": n_pool, "seed": args.seed + 2, "photos": rels}

    def make_pool(tmp):
        rng = random.Random(args.seed + 2)
        for i, path in enumerate(small_files(tmp, n_pool)):
            im = srcs[i % len(srcs)]
            w, h = (500, 375) if rng.random() < 0.6 else (375, 500)
            random_view(rng, im, w, h, 0.55, Image.Resampling.BICUBIC).save(path, quality=90)

    pool = small_files(write_set("rss-pool", p_pool, make_pool), n_pool) if args.rss else []
    for k in args.rss:
        def make_rss(tmp, k=k):
            for i in range(k):
                os.link(pool[i % n_pool], os.path.join(tmp, "ab"[i % 2], f"r_{i:05d}.jpg"))

        p = {"v": VERSION, "n": k, "pool": p_pool}
        sets[f"rss-{k}"] = write_set(f"rss-{k}", p, make_rss)

    print(json.dumps(sets))


if __name__ == "__main__":
    main()
