#!/usr/bin/env python3
"""Runner behind tools/bench/extract.sh: xfer vs ORT-alone vs Python-ORT vs torchvision.

For each model and image set, R rounds, each round running side by side:
  xfer      target/release/xfer extract --model M --data DIR --out OUT.h5 --batch 32 --threads T
            (wall clock measured here around the whole process; peak RSS from
            /usr/bin/time -v, or from wait4 if GNU time is missing)
  ort       target/release/xfer bench-model --model M --batch 32 --batches B --threads T --data SMALL
            (the first 32 small photos, preprocessed once: real tensors, as the py peer uses)
            (last stdout line: JSON with images_per_s) -- once per model per round
  py        tools/bench/peer_ort.py (e2e) and, once per model per round, --mode model
  pyx       the expert's peer: tools/bench/peer_ort.py --workers T --draft (decoders in
            a multiprocessing pool, JPEGs reduced in the IDCT by PIL's draft)
  torch     tools/bench/peer_torch.py (resnet18, small set only)
and, per model, xfer extract on the rss-200 and rss-2000 sets for peak RSS.
XFER_BIN=/path/to/xfer overrides target/release/xfer.
Every figure is the median over the rounds. Anything that fails or is missing is
reported as missing and the rest still runs.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BENCH = os.path.join(ROOT, "data", "bench")
PY = os.path.join(ROOT, ".venv", "bin", "python")
XFER = os.environ.get("XFER_BIN") or os.path.join(ROOT, "target", "release", "xfer")
GNU_TIME = "/usr/bin/time"
EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TARGETS = {
    "xfer_over_ort_alone": 0.85,
    "xfer_over_py_small": 1.15,
    "xfer_over_py_large": 3.0,
    "xfer_over_py_expert": 1.0,
    "xfer_over_torch": 1.5,
}

LOG_DIR = os.path.join(BENCH, "logs")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def count_images(d):
    n = 0
    for _, _, fns in os.walk(d):
        n += sum(1 for f in fns if f.lower().endswith(EXTS))
    return n


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run(cmd, tag, timeout, measure_rss=False):
    """Run cmd; return dict(rc, wall, stdout, stderr, maxrss_kb)."""
    os.makedirs(LOG_DIR, exist_ok=True)
    full = list(cmd)
    use_gnu = measure_rss and os.access(GNU_TIME, os.X_OK)
    if use_gnu:
        full = [GNU_TIME, "-v"] + full
    log(f"{tag}: {' '.join(cmd)}")
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
    except OSError as e:
        log(f"{tag}: cannot start: {e}")
        return {"rc": -1, "wall": None, "stdout": "", "stderr": str(e), "maxrss_kb": None}
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        log(f"{tag}: timed out after {timeout} s")
        return {"rc": -9, "wall": None, "stdout": out, "stderr": err, "maxrss_kb": None}
    wall = time.perf_counter() - t0
    maxrss = None
    if use_gnu:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        maxrss = int(m.group(1)) if m else None
    with open(os.path.join(LOG_DIR, f"{tag}.log"), "w") as f:
        f.write(f"$ {' '.join(full)}\n# rc={p.returncode} wall={wall:.3f}s\n"
                f"--- stdout\n{out}\n--- stderr\n{err}\n")
    if p.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-6:])
        log(f"{tag}: exit {p.returncode}\n{tail}")
    return {"rc": p.returncode, "wall": wall, "stdout": out, "stderr": err, "maxrss_kb": maxrss}


def h5_rows(path):
    try:
        import h5py
        with h5py.File(path, "r") as f:
            return int(f["data"].shape[0])
    except Exception:
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def machine_info():
    info = {"nproc": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["onnxruntime_python"] = subprocess.run(
            [PY, "-c", "import onnxruntime; print(onnxruntime.__version__)"],
            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description="xfer extraction speed benchmark")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=None, help="rounds (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="1 round, fewer images")
    ap.add_argument("--models", default="efficientnet_lite0,resnet18")
    ap.add_argument("--sets", default="small,large", help="image sets to time")
    ap.add_argument("--small", type=int, default=None,
                    help="small-set size (1024, so that start-up (~0.2 s) weighs as little as in a real run; quick 64)")
    ap.add_argument("--large", type=int, default=None, help="large-set size (48; quick 8)")
    ap.add_argument("--rss", default="200,2000", help="rss set sizes ('' to skip)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=None,
                    help="model-alone batches (8; quick 4)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--timeout", type=int, default=1800, help="per command, seconds")
    ap.add_argument("--out", default=os.path.join(BENCH, "results-extract.json"))
    # handled by extract.sh; accepted here so the flags can be passed straight through
    ap.add_argument("--no-build", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--select-openblas", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    runs = a.runs or (1 if a.quick else 3)
    n_small = a.small or (64 if a.quick else 1024)
    n_large = a.large or (8 if a.quick else 48)
    batches = a.batches or (4 if a.quick else 8)
    rss_sizes = [int(x) for x in a.rss.split(",") if x.strip()]
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    set_names = [s.strip() for s in a.sets.split(",") if s.strip()]
    T = a.threads

    # ---- image sets ---------------------------------------------------------------
    r = subprocess.run([PY, os.path.join(ROOT, "tools", "bench", "make_images.py"),
                        "--small", str(n_small), "--large", str(n_large),
                        "--rss", *map(str, rss_sizes)], cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        sys.exit("bench: could not make the image sets")
    dirs = json.loads(r.stdout.strip().splitlines()[-1])
    counts = {k: count_images(v) for k, v in dirs.items()}

    # ---- what can run -------------------------------------------------------------
    have_xfer = os.access(XFER, os.X_OK)
    notes = []
    if not have_xfer:
        notes.append(f"{os.path.relpath(XFER, ROOT)} missing: xfer columns skipped")
    ok_models = []
    for m in models:
        man = os.path.join(ROOT, "onnx", f"{m}.toml")
        if not os.path.exists(man):
            notes.append(f"{m}: onnx/{m}.toml missing, model skipped")
            continue
        import tomllib
        with open(man, "rb") as f:
            fname = tomllib.load(f)["file"]
        if not os.path.exists(os.path.join(ROOT, "onnx", fname)):
            notes.append(f"{m}: onnx/{fname} missing (run its generator), model skipped")
            continue
        ok_models.append(m)
    for n in notes:
        log(n)
    out_dir = os.path.join(BENCH, "out")
    os.makedirs(out_dir, exist_ok=True)
    if os.path.isdir(LOG_DIR):
        shutil.rmtree(LOG_DIR)

    raw = {}  # key -> list of per-round figures
    info = {}
    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        log(f"WARNING: load average {load_start[0]:.2f} at start: other work is running, "
            "figures will be noisy")

    def add(key, val):
        raw.setdefault(key, []).append(val)

    xfer_broken = {}  # (model, set) -> reason; no more retries once it failed

    def xfer_extract(m, set_key, tag):
        if not have_xfer or (m, set_key) in xfer_broken:
            return None, None
        out = os.path.join(out_dir, f"xfer-{m}-{set_key}.h5")
        # --overwrite: also starts afresh over what a killed earlier run left (.partial, .lock)
        res = run([XFER, "extract", "--model", m, "--data", dirs[set_key], "--out", out,
                   "--batch", str(a.batch), "--threads", str(T), "--overwrite"], tag, a.timeout,
                  measure_rss=True)
        if res["rc"] != 0:
            xfer_broken[(m, set_key)] = f"xfer extract exited {res['rc']} (see data/bench/logs/{tag}.log)"
            return None, None
        m_self = re.search(r"([0-9.]+) images/s", res["stdout"] + res["stderr"])
        add((m, set_key, "xfer_self_reported"), float(m_self.group(1)) if m_self else None)
        rows = h5_rows(out)
        if rows is not None and rows != counts[set_key]:
            log(f"{tag}: WARNING {out} has {rows} rows, expected {counts[set_key]}")
        return counts[set_key] / res["wall"], res["maxrss_kb"]

    for rnd in range(runs):
        log(f"---- round {rnd + 1}/{runs}")
        for m in ok_models:
            # model alone: xfer's own session, then the Python session
            if have_xfer:
                res = run([XFER, "bench-model", "--model", m, "--batch", str(a.batch),
                           "--batches", str(batches), "--threads", str(T),
                           "--data", dirs["small"]],
                          f"ort-alone-{m}-r{rnd}", a.timeout)
                j = last_json(res["stdout"]) if res["rc"] == 0 else None
                add((m, "ort_alone"), j.get("images_per_s") if j else None)
            res = run([PY, "tools/bench/peer_ort.py", "--model", m, "--mode", "model",
                       "--data", dirs["small"], "--batch", str(a.batch),
                       "--batches", str(batches), "--threads", str(T)],
                      f"py-alone-{m}-r{rnd}", a.timeout)
            j = last_json(res["stdout"]) if res["rc"] == 0 else None
            add((m, "py_alone"), j.get("images_per_s") if j else None)

            for s in set_names:
                ips, rss = xfer_extract(m, s, f"xfer-{m}-{s}-r{rnd}")
                add((m, s, "xfer"), ips)
                add((m, s, "xfer_rss_kb"), rss)
                res = run([PY, "tools/bench/peer_ort.py", "--model", m, "--data", dirs[s],
                           "--batch", str(a.batch), "--threads", str(T),
                           "--out", os.path.join(out_dir, f"py-{m}-{s}.h5")],
                          f"py-{m}-{s}-r{rnd}", a.timeout)
                j = last_json(res["stdout"]) if res["rc"] == 0 else None
                add((m, s, "py"), j.get("images_per_s") if j else None)
                res = run([PY, "tools/bench/peer_ort.py", "--model", m, "--data", dirs[s],
                           "--batch", str(a.batch), "--threads", str(T),
                           "--workers", str(T), "--draft"],
                          f"pyx-{m}-{s}-r{rnd}", a.timeout)
                j = last_json(res["stdout"]) if res["rc"] == 0 else None
                add((m, s, "pyx"), j.get("images_per_s") if j else None)
                if m == "resnet18" and s == "small" and not a.no_torch:
                    res = run([PY, "tools/bench/peer_torch.py", "--data", dirs[s],
                               "--batch", str(a.batch), "--threads", str(T), "--workers", "2"],
                              f"torch-{m}-{s}-r{rnd}", a.timeout)
                    j = last_json(res["stdout"]) if res["rc"] == 0 else None
                    add((m, s, "torch"), j.get("images_per_s") if j else None)
                    if j:
                        info["torch_blas"] = j.get("blas")

            for k in rss_sizes:
                key = f"rss-{k}"
                ips, rss = xfer_extract(m, key, f"xfer-{m}-{key}-r{rnd}")
                add((m, key, "xfer"), ips)
                add((m, key, "xfer_rss_kb"), rss)

    # ---- medians, ratios, table ---------------------------------------------------
    def M(*key):
        return med(raw.get(key, []))

    def R(num, den):
        """Median over rounds of the ratio within a round (rounds run side by side, so
        this cancels drift between rounds); the ratio of medians if rounds are unpaired."""
        a, b = raw.get(num, []), raw.get(den, [])
        if len(a) == len(b) and a:
            per = [x / y for x, y in zip(a, b) if x is not None and y]
            if per:
                return statistics.median(per)
        return ratio(med(a), med(b))

    rows = []
    for m in ok_models:
        for s in set_names:
            x, o, p = M(m, s, "xfer"), M(m, "ort_alone"), M(m, s, "py")
            t = M(m, s, "torch") if (m == "resnet18" and s == "small") else None
            row = {
                "model": m, "set": s, "n_images": counts[s],
                "xfer_img_s": x,
                "xfer_self_reported_img_s": M(m, s, "xfer_self_reported"),
                "ort_alone_img_s": o, "py_ort_img_s": p,
                "py_expert_img_s": M(m, s, "pyx"),
                "py_ort_alone_img_s": M(m, "py_alone"), "torch_img_s": t,
                "xfer_peak_rss_mb": (M(m, s, "xfer_rss_kb") or 0) / 1024 or None,
                "xfer_over_ort_alone": R((m, s, "xfer"), (m, "ort_alone")),
                "xfer_over_py_ort": R((m, s, "xfer"), (m, s, "py")),
                "xfer_over_py_expert": R((m, s, "xfer"), (m, s, "pyx")),
                "xfer_over_torch": R((m, s, "xfer"), (m, s, "torch")) if t is not None else None,
            }
            tgt_py = TARGETS["xfer_over_py_small" if s == "small" else "xfer_over_py_large"]
            row["targets"] = {
                "xfer_over_ort_alone": TARGETS["xfer_over_ort_alone"],
                "xfer_over_py_ort": tgt_py,
                "xfer_over_py_expert": TARGETS["xfer_over_py_expert"],
                **({"xfer_over_torch": TARGETS["xfer_over_torch"]} if t is not None else {}),
            }
            row["pass"] = {k: (row[k] >= v if row[k] is not None else None)
                           for k, v in row["targets"].items()}
            rows.append(row)
    rss_rows = []
    for m in ok_models:
        r = {"model": m}
        for k in rss_sizes:
            kb = M(m, f"rss-{k}", "xfer_rss_kb")
            r[f"peak_rss_mb_{k}"] = kb / 1024 if kb else None
            r[f"img_s_{k}"] = M(m, f"rss-{k}", "xfer")
        if len(rss_sizes) >= 2:
            lo, hi = r[f"peak_rss_mb_{rss_sizes[0]}"], r[f"peak_rss_mb_{rss_sizes[-1]}"]
            r["rss_growth"] = ratio(hi, lo)
        rss_rows.append(r)

    def f(v, fmt="{:.1f}"):
        return fmt.format(v) if v is not None else "-"

    def fr(v, tgt):
        if v is None:
            return "-"
        return f"{v:.2f}{'' if v >= tgt else '!'}"

    print()
    print(f"xfer extraction benchmark: {T} threads, batch {a.batch}, median of {runs} run(s); "
          f"img/s; py-x = the expert's peer (multiprocessing decoders + PIL draft);\nxfer = whole process (start-up included), (self) = xfer's own summary (after the "
          f"model is loaded);\nratios = median of within-round ratios (target in brackets, '!' = below "
          f"target); RSS = xfer peak RSS")
    hdr = (f"{'model':<20}{'set':<7}{'n':>5} {'xfer':>7} {'(self)':>6} {'ORT-alone':>9} {'py-ORT':>7} "
           f"{'py-alone':>8} {'py-x':>6} {'torch':>6} {'xfer/ORT(.85)':>13} {'xfer/py':>11} {'xfer/py-x(1)':>12} "
           f"{'xfer/torch(1.5)':>15} {'RSS MB':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        tp = r["targets"]["xfer_over_py_ort"]
        print(f"{r['model']:<20}{r['set']:<7}{r['n_images']:>5} {f(r['xfer_img_s']):>7} "
              f"{f(r['xfer_self_reported_img_s']):>6} {f(r['ort_alone_img_s']):>9} {f(r['py_ort_img_s']):>7} "
              f"{f(r['py_ort_alone_img_s']):>8} {f(r['py_expert_img_s']):>6} {f(r['torch_img_s']):>6} "
              f"{fr(r['xfer_over_ort_alone'], .85):>13} "
              f"{fr(r['xfer_over_py_ort'], tp) + f'({tp:g})':>11} "
              f"{fr(r['xfer_over_py_expert'], 1.0):>12} "
              f"{fr(r['xfer_over_torch'], 1.5):>15} {f(r['xfer_peak_rss_mb'], '{:.0f}'):>7}")
    if rss_sizes:
        print()
        for r in rss_rows:
            parts = [f"{k} imgs {f(r[f'peak_rss_mb_{k}'], '{:.0f}')} MB" for k in rss_sizes]
            g = r.get("rss_growth")
            print(f"xfer peak RSS {r['model']:<20} " + ", ".join(parts) +
                  (f"  ({rss_sizes[-1]}/{rss_sizes[0]} = {g:.2f}x)" if g else ""))
    print(f"\nload average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    if info.get("torch_blas"):
        print(f"torch libblas: {info['torch_blas']}")
    for n in notes + [f"{m} {k}: {why}" for (m, k), why in xfer_broken.items()]:
        print(f"note: {n}")

    result = {
        "config": {"threads": T, "batch": a.batch, "runs": runs, "quick": a.quick,
                   "model_alone_batches": batches, "models": models, "sets": set_names,
                   "set_dirs": {k: os.path.relpath(v, ROOT) for k, v in dirs.items()},
                   "set_counts": counts, "rss_sizes": rss_sizes},
        "machine": machine_info(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "targets": TARGETS,
        "rows": rows,
        "rss": rss_rows,
        "torch_blas": info.get("torch_blas"),
        "ratio_method": "median over rounds of the within-round ratio",
        "notes": notes + [f"{m} {k}: {why}" for (m, k), why in xfer_broken.items()],
        "raw": {"|".join(k) if isinstance(k, tuple) else k: v for k, v in raw.items()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    print(f"\nresults: {os.path.relpath(a.out, ROOT)}")


if __name__ == "__main__":
    main()
