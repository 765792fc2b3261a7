"""What the whole-process benchmarks of tools/bench share (int8.py, xfer_openvino.py):
running a command from the repository and timing it, and small helpers.
Imported by name: the scripts' own folder is first on their import path."""
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, check=True, timed=False):
    """Runs cmd (list) in the repository, HDF5 file locking off; returns (seconds,
    peak RSS MiB or None, stdout, stderr, exit code). timed: under /usr/bin/time -v
    (for the RSS; its report is cut from stderr). check: a non-zero exit stops the
    benchmark with the command and its error."""
    if timed:
        cmd = ["/usr/bin/time", "-v"] + cmd
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"})
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = None
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[1]) / 1024
    err = p.stderr
    if timed:
        cut = err.find("\tCommand being timed:")
        err = err[:cut] if cut >= 0 else err
    return dt, rss, p.stdout, err, p.returncode


def last_json(text):
    """The JSON object of a command's output: the whole text (xfer --json prints one,
    indented), else its last line that parses (the peers print it last)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def write_list(path, files):
    with open(path, "w") as f:
        f.write("".join(p + "\n" for p in files))


def med(v):
    return statistics.median(v) if v else None
