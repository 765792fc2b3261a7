#!/usr/bin/env python3
"""Driver of tools/bench/train.sh: xfer's heads side by side with PyTorch and
sklearn on the same synthetic feature file, same threads, same settings.

MLP: the tutorial's head (Dropout(0.5) → Linear(D, 1000) → ReLU → Dropout(0.5) →
Linear(1000, 2)), SGD lr 1e-3 (or --optim adam), each batch size in --batches;
figure = median seconds per epoch over all epochs of all runs, also CPU seconds
per epoch (all threads; fairer when other work shares the machine) and peak RSS.
Logistic: `xfer train --head logistic` fit time vs sklearn's
LogisticRegression(lbfgs, C=1, max_iter=100) on the StandardScaler'd matrix.
Runs alternate xfer / peer so that drifting machine load hits both alike.
Writes data/bench/results-train-t{THREADS}.json.

On a machine shared with other work, PyTorch's OpenMP threads wait for each
other at every barrier while one of them is descheduled: compare at --threads 1
too, and read the 'busy' column.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PY = os.path.join(ROOT, ".venv", "bin", "python")
XFER = os.path.join(ROOT, "target", "release", "xfer")
OUT = os.path.join(ROOT, "data", "bench")


def say(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def busy_fraction_of_others(fn):
    """Runs fn(); returns (result, share of the machine's CPU used meanwhile by all
    processes, from /proc/stat): how loaded the machine was."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v), idle
    t0, i0 = snap()
    r = fn()
    t1, i1 = snap()
    return r, 1.0 - (i1 - i0) / max(1, t1 - t0)


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (stdout, peak RSS MiB, wall s)."""
    full = ["/usr/bin/time", "-f", "RSS_KB=%M WALL=%e"] + cmd
    p = subprocess.run(full, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    line = [l for l in p.stderr.splitlines() if l.startswith("RSS_KB=")][-1]
    kv = dict(x.split("=") for x in line.split())
    return p.stdout, int(kv["RSS_KB"]) / 1024, float(kv["WALL"])


def xfer_mlp(data, batch, a):
    out = os.path.join(OUT, "out", f"train-xfer-b{batch}")
    # --preset tutorial: the tutorial's settings (raw features, constant lr, no
    # validation split), the same work as the PyTorch peer.
    cmd = [XFER, "train", "--train", data, "--head", "mlp", "--out", out, "--overwrite", "--preset", "tutorial",
           "--epochs", str(a.epochs), "--batch", str(batch), "--optim", a.optim,
           "--lr", str(a.lr), "--threads", str(a.threads)]
    _, rss, wall = timed(cmd)
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    h = m["heads"][0]["history"]
    return {"epoch_seconds": [e["seconds"] for e in h], "epoch_cpu_seconds": [e["cpu_seconds"] for e in h],
            "final_loss": h[-1]["train_loss"], "rss_mib": rss, "wall_s": wall}


def torch_mlp(data, batch, a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    cmd = [PY, os.path.join(ROOT, "tools", "bench", "peer_torch_train.py"), "--data", data,
           "--epochs", str(a.epochs), "--batch", str(batch), "--optim", a.optim, "--lr", str(a.lr),
           "--threads", str(a.threads)]
    if a.flush_denormal:
        cmd.append("--flush-denormal")
    out, rss, wall = timed(cmd, env)
    r = json.loads(out.strip().splitlines()[-1])
    e = r["epochs"]
    return {"epoch_seconds": [x["seconds"] for x in e], "epoch_cpu_seconds": [x["cpu_seconds"] for x in e],
            "final_loss": e[-1]["loss"], "rss_mib": rss, "wall_s": wall}


def xfer_logistic(data, a):
    out = os.path.join(OUT, "out", "train-xfer-logistic")
    cmd = [XFER, "train", "--train", data, "--head", "logistic", "--out", out, "--overwrite",
           "--preset", "tutorial", "--threads", str(a.threads)]
    _, rss, wall = timed(cmd)
    with open(os.path.join(out, "metrics.json")) as f:
        h = json.load(f)["heads"][0]
    return {"fit_seconds": h["train_seconds"], "train_accuracy": h["train_accuracy"], "rss_mib": rss, "wall_s": wall,
            "engine": h["description"]}


def sklearn_logistic(data, a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    cmd = [PY, os.path.join(ROOT, "tools", "bench", "peer_sklearn_train.py"), "--data", data,
           "--threads", str(a.threads)]
    out, rss, wall = timed(cmd, env)
    r = json.loads(out.strip().splitlines()[-1])
    r.update(rss_mib=rss, wall_s=wall)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--batches", default="64,32,256")
    ap.add_argument("--optim", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=4608)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-logistic", action="store_true")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) in the peer")
    a = ap.parse_args()
    os.makedirs(os.path.join(OUT, "out"), exist_ok=True)
    data = os.path.join(OUT, f"train-{a.n}x{a.d}.hd5f")
    if not os.path.exists(data):
        say(f"making {data}")
        subprocess.run([PY, os.path.join(ROOT, "tools", "bench", "make_train_features.py"), data,
                        "--n", str(a.n), "--d", str(a.d)], check=True)
    blas = subprocess.run(["update-alternatives", "--query", "libblas.so.3-x86_64-linux-gnu"],
                          capture_output=True, text=True).stdout
    blas = next((l.split(": ", 1)[1] for l in blas.splitlines() if l.startswith("Value: ")), "unknown")
    results = {"n": a.n, "d": a.d, "threads": a.threads, "epochs": a.epochs, "runs": a.runs, "optim": a.optim,
               "lr": a.lr, "libblas": blas, "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"),
               "feature_matrix_mib": a.n * a.d * 4 / 2**20, "mlp": {}, "logistic": {}}
    for b in [int(x) for x in a.batches.split(",")]:
        rows = {"xfer": [], "torch": []}
        for run in range(a.runs):
            order = ["xfer", "torch"] if run % 2 == 0 else ["torch", "xfer"]
            for who in order:
                if who == "torch" and a.no_torch:
                    continue
                say(f"MLP batch {b}, run {run + 1}/{a.runs}: {who}")
                f = xfer_mlp if who == "xfer" else torch_mlp
                r, busy = busy_fraction_of_others(lambda: f(data, b, a))
                r["machine_busy"] = busy
                rows[who].append(r)
        results["mlp"][str(b)] = rows
    if not a.no_logistic:
        say("logistic: xfer")
        r, busy = busy_fraction_of_others(lambda: xfer_logistic(data, a))
        r["machine_busy"] = busy
        results["logistic"]["xfer"] = r
        say("logistic: sklearn")
        try:
            r, busy = busy_fraction_of_others(lambda: sklearn_logistic(data, a))
            r["machine_busy"] = busy
            results["logistic"]["sklearn"] = r
        except RuntimeError as e:
            say(f"sklearn peer failed (apt-get install python3-sklearn): {e}")
    with open(os.path.join(OUT, f"results-train-t{a.threads}.json"), "w") as f:
        json.dump(results, f, indent=1)
    # Table
    def med(runs, key):
        v = [x for r in runs for x in r[key]]
        return statistics.median(v) if v else float("nan")
    print(f"\nheads benchmark: {a.n} x {a.d} -> 1000 -> 2, {a.optim.upper()} lr {a.lr}, {a.threads} threads, "
          f"{a.epochs} epochs x {a.runs} runs; {results['cpu']}; torch BLAS: {blas}")
    print(f"{'batch':>5} {'xfer s/ep':>10} {'torch s/ep':>11} {'ratio':>6} {'xfer cpu-s/ep':>14} {'torch cpu-s/ep':>15} "
          f"{'xfer RSS':>9} {'torch RSS':>10} {'busy':>5}")
    for b, rows in results["mlp"].items():
        xs, ts = med(rows["xfer"], "epoch_seconds"), med(rows["torch"], "epoch_seconds")
        xc, tc = med(rows["xfer"], "epoch_cpu_seconds"), med(rows["torch"], "epoch_cpu_seconds")
        xr = max(r["rss_mib"] for r in rows["xfer"])
        tr = max((r["rss_mib"] for r in rows["torch"]), default=float("nan"))
        busy = statistics.mean(r["machine_busy"] for r in rows["xfer"] + rows["torch"])
        print(f"{b:>5} {xs:>10.2f} {ts:>11.2f} {xs / ts:>6.2f} {xc:>14.2f} {tc:>15.2f} {xr:>8.0f}M {tr:>9.0f}M {busy:>5.0%}")
    print(f"(feature matrix {results['feature_matrix_mib']:.0f} MiB; 'busy' = share of all CPUs in use during the runs, ours included)")
    lg = results["logistic"]
    if "xfer" in lg:
        x = lg["xfer"]
        line = f"logistic fit: xfer {x['fit_seconds']:.2f} s ({x['engine']}; peak RSS {x['rss_mib']:.0f} MiB)"
        if "sklearn" in lg:
            s = lg["sklearn"]
            line += (f"; sklearn {s['fit_seconds']:.2f} s fit + {s['scale_seconds']:.2f} s StandardScaler "
                     f"({s['iterations']} iterations, peak RSS {s['rss_mib']:.0f} MiB)")
        print(line)


if __name__ == "__main__":
    main()
