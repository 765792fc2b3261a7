#!/usr/bin/env python3
"""Cold start of a packaged predictor: one image, process start to exit.

    tools/bench/cold_start.py PACKAGE_DIR IMAGE [--runs 20]

Runs PACKAGE_DIR/predict.sh IMAGE --quiet RUNS times with a clean environment
(env -i: an empty HOME, PATH=/usr/bin:/bin, as on a machine with nothing else),
after one unclocked run that brings the files into the OS cache, and prints the
median and quartiles of the wall time. Then RUNS more runs with --timings give
the median of each phase xfer-predict reports (checks, ONNX Runtime load,
backbone load = sha256 + session build, decode, backbone run, head, output).
The two kinds of run alternate, so that the machine's load falls on both alike;
other processes on the machine still add noise: say how loaded it was.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], home: str) -> tuple[float, str]:
    env = {"HOME": home, "PATH": "/usr/bin:/bin"}
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed ({p.returncode}):\n{p.stderr}")
    return dt, p.stderr


PHASE = re.compile(r"([a-zA-Z][a-zA-Z0-9 ()+,=-]*?) ([0-9.]+) ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", type=Path)
    ap.add_argument("image", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    sh = str((args.package / "predict.sh").resolve())
    image = str(args.image.resolve())
    with tempfile.TemporaryDirectory() as home:
        run([sh, image, "--quiet"], home)  # the page cache, unclocked
        walls, phases = [], {}
        for _ in range(args.runs):
            walls.append(run([sh, image, "--quiet"], home)[0])
            _, err = run([sh, image, "--quiet", "--timings"], home)
            line = next(l for l in err.splitlines() if l.startswith("timings:"))
            for name, ms in PHASE.findall(line[len("timings:"):]):
                phases.setdefault(name.strip(" ,"), []).append(float(ms))
    q = statistics.quantiles(walls, n=4)
    print(f"{args.runs} runs of predict.sh on {args.image.name} (env -i), wall time: "
          f"median {1e3 * statistics.median(walls):.1f} ms, quartiles {1e3 * q[0]:.1f}–{1e3 * q[2]:.1f} ms, "
          f"min {1e3 * min(walls):.1f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("median of each phase (xfer-predict --timings):")
    for name, v in phases.items():
        print(f"  {name:<48} {statistics.median(v):7.1f} ms")


if __name__ == "__main__":
    main()
