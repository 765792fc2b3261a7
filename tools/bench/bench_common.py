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
# The checkout's venv (tools/setup.sh).
PY = os.path.join(ROOT, ".venv", "bin", "python")


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


# The photo classes of the demo, data/stamps/<class> (never `animals`: held back).
CLASSES = ["flowers", "fruit", "vegetables", "vehicles"]
# CPU flags the int8 / bf16 figures depend on.
CPU_FLAGS = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni"]


def cpu_info():
    """lscpu's model name, the core count and which of CPU_FLAGS the CPU has."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in out.splitlines() if l.startswith("Flags")), [])
    return {"model_name": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS}}


def stamps4(dir):
    """dir/<class> linked to data/stamps/<class> for the four CLASSES; returns dir."""
    os.makedirs(dir, exist_ok=True)
    for c in CLASSES:
        link = os.path.join(dir, c)
        if not os.path.islink(link):
            os.symlink(os.path.join(ROOT, "data", "stamps", c), link)
    return dir


def image_lists(dir, counts):
    """The image sets of tools/bench/make_images.py (1,024 small JPEGs, 48 of 8.4 MP),
    made once; counts maps a list name to (set, n): dir/<name>.txt gets the first n
    files of that set, sorted. Returns (the sets' folders, the list files)."""
    _, _, out, _, _ = run([PY, "tools/bench/make_images.py", "--small", "1024", "--large", "48"])
    sets = json.loads(out.strip().splitlines()[-1])
    lists = {}
    for name, (key, n) in counts.items():
        files = []
        for dp, dns, fns in os.walk(sets[key]):
            dns.sort()
            files += [os.path.join(dp, f) for f in sorted(fns) if f.endswith(".jpg")]
        lists[name] = os.path.join(dir, f"{name}.txt")
        write_list(lists[name], files[:n])
    return sets, lists


def openvino_venv(venv, packages=("numpy<2",), system_site=True):
    """A venv with PyPI's openvino and `packages`, made when missing; returns
    (True, OpenVINO's version) or (False, why not)."""
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        log(f"making {os.path.relpath(venv, ROOT)} (pip install openvino {' '.join(packages)})")
        subprocess.run(["/usr/bin/python3.11", "-m", "venv", venv] + (["--system-site-packages"] if system_site else []),
                       capture_output=True, text=True)
        p = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "openvino", *packages],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return False, p.stderr[-500:]
    p = subprocess.run([py, "-c", "import openvino; print(openvino.__version__)"], capture_output=True, text=True)
    return p.returncode == 0, (p.stdout.strip() if p.returncode == 0 else p.stderr[-500:])
