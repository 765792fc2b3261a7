#!/usr/bin/env python3
"""xfer on OpenVINO (issue 30) against xfer fp32, xfer int8 and the OpenVINO Python peer.

    .venv/bin/python tools/bench/xfer_openvino.py [--rounds R] [--small N] [--large M] [--cold K]

(Not named openvino.py: a file of that name in tools/bench shadows the openvino package
for tools/bench/peer_openvino.py, whose folder is first on its sys.path.)

Everything is written under data/bench/openvino/. Whole processes are timed
(/usr/bin/time -v for peak RSS), the arms alternating within each round; figures are
medians over the rounds (the 8.4 MP set gets max(1, R - 1) rounds, as in int8.py).
On N small photos (~0.19 MP JPEGs) and M 8.4 MP JPEGs of tools/bench/make_images.py
(the same sets as tools/bench/int8.py), EfficientNet-Lite0:

  xfer/fp32          `xfer extract` on the CPU (ONNX Runtime's CPU EP)
  xfer/int8          `xfer extract` of the INT8 copy (`xfer quantize`, calibrated as
                     int8.py does; reused from data/bench/int8/zoo when there)
  xfer-ov/auto       `xfer extract --device openvino --precision auto`
  xfer-ov/f32        `xfer extract --device openvino --precision f32`
  peer-ov/default    tools/bench/peer_openvino.py (multiprocessing PIL decoders,
                     batch 32, OpenVINO's default precision hint: the precision it
                     reports choosing is recorded; bf16 on CPUs with AMX or AVX512_BF16)
  peer-ov/f32        the same peer with INFERENCE_PRECISION_HINT=f32 (compile_model
                     wrapped; peer_openvino.py itself is unchanged)

The xfer-ov arms are first tried once on a handful of images; where that exits
non-zero (as on a CPU the ONNX Runtime OpenVINO plugin offers no device for, e.g.
AMD) the arm is recorded as skipped with the last line of its error, and the rest
goes on. Cold start: K images, two processes without --model-cache and two with a
fresh --model-cache DIR (the first fills it, the second starts from it), for
xfer/fp32 and, unless skipped, xfer-ov/auto.

OpenVINO runs from data/bench/int8/ovenv (int8.py's venv, `pip install openvino`),
made here when missing. `xfer info` is recorded as text. Prints a summary and writes
data/bench/openvino/results.json, with lscpu's model name, flags of interest and the
load average (on a shared machine quote the ratios).
"""
import argparse
import json
import os
import shutil
import tempfile
import time

from bench_common import ROOT, cpu_info, image_lists, last_json, log, med, openvino_venv, run, stamps4

B = os.path.join(ROOT, "data", "bench", "openvino")
ZOO = os.path.join(B, "zoo")
INT8_ZOO = os.path.join(ROOT, "data", "bench", "int8", "zoo")
XFER = os.path.join(ROOT, "target", "release", "xfer")
OVENV = os.path.join(ROOT, "data", "bench", "int8", "ovenv")
OVPY = os.path.join(OVENV, "bin", "python")
# peer_openvino.py with the f32 hint: compile_model wrapped, then the script run as __main__.
PEER_F32 = (
    "import runpy, sys, openvino as ov\n"
    "orig = ov.Core.compile_model\n"
    "def compile_model(self, model, device=None, config=None, **kw):\n"
    "    return orig(self, model, device, {**(config or {}), 'INFERENCE_PRECISION_HINT': 'f32'}, **kw)\n"
    "ov.Core.compile_model = compile_model\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")








def last_line(text):
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else "(no message)"


def error_line(text):
    """The first line that says `error` (clap's usage errors end on a `--help` hint)."""
    return next((l.strip() for l in text.splitlines() if "error" in l.lower()), last_line(text))





def zoo_models():
    """efficientnet_lite0 and its INT8 copy in the bench zoo; returns the int8 model's origin."""
    os.makedirs(ZOO, exist_ok=True)
    src = os.path.join(ROOT, "onnx")
    shutil.copy(os.path.join(src, "efficientnet_lite0.toml"), os.path.join(ZOO, "efficientnet_lite0.toml"))
    dst = os.path.join(ZOO, "efficientnet_lite0.onnx")
    if os.path.lexists(dst) and not os.path.exists(dst):
        os.remove(dst)  # a link into a checkout that is gone
    if not os.path.exists(dst):
        os.symlink(os.path.join(src, "efficientnet_lite0.onnx"), dst)
    if os.path.exists(os.path.join(ZOO, "lite0_int8.toml")):
        return "data/bench/openvino/zoo (earlier run)"
    import tomllib
    t = os.path.join(INT8_ZOO, "lite0_int8.toml")
    if os.path.exists(t):
        with open(t, "rb") as f:
            onnx = tomllib.load(f)["file"]
        if os.path.exists(os.path.join(INT8_ZOO, onnx)):
            shutil.copy(t, os.path.join(ZOO, "lite0_int8.toml"))
            os.symlink(os.path.join(INT8_ZOO, onnx), os.path.join(ZOO, onnx))
            return "data/bench/int8/zoo"
    # Quantize as int8.py does: calibrated on the real photos of the 4 classes, 48 + 16 held back.
    log("quantize efficientnet_lite0 -> lite0_int8")
    run([XFER, "--zoo", ZOO, "quantize", "--model", "efficientnet_lite0", "--calib", stamps4(os.path.join(B, "stamps4")),
         "--n", "48", "--holdout", "16", "--name", "lite0_int8", "--quiet", "--overwrite"])
    return "xfer quantize (this run)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", type=int, default=1024, help="small photos used (of 1024)")
    ap.add_argument("--large", type=int, default=48, help="8.4 MP photos used (of 48)")
    ap.add_argument("--cold", type=int, default=8, help="images of the cold-start runs")
    args = ap.parse_args()
    t_start = time.time()
    os.makedirs(B, exist_ok=True)
    res = {"cpu": cpu_info(), "load_average_start": os.getloadavg(), "rounds": args.rounds}
    _, _, out, _, _ = run([XFER, "--version"])
    res["xfer"] = out.strip()
    _, _, out, err, rc = run([XFER, "info"], check=False)
    res["xfer_info"] = {"exit": rc, "text": (out + err).strip()}

    # Image sets (shared with int8.py).
    sets, lists = image_lists(B, {"small": ("small", args.small), "large": ("large", args.large),
                                  "cold": ("small", args.cold)})
    rel = lambda d: os.path.relpath(d, ROOT)
    res["sets"] = {"small": f"{args.small} of {rel(sets['small'])}", "large": f"{args.large} of {rel(sets['large'])}",
                   "cold": f"first {args.cold} of the small set"}

    res["int8_model_from"] = zoo_models()
    import tomllib
    with open(os.path.join(ZOO, "lite0_int8.toml"), "rb") as f:
        res["int8_quantization"] = tomllib.load(f).get("quantization")
    ov_ok, ov_why = openvino_venv(OVENV)
    res["openvino_python"] = ov_why if ov_ok else f"missing: {ov_why}"
    log(f"openvino (Python): {res['openvino_python']}")

    h5 = os.path.join(B, "e2e.h5")

    def xfer_cmd(model, lst, extra=()):
        return [XFER, "--zoo", ZOO, "extract", "--model", model, "--list", lst, "--out", h5,
                "--quiet", "--overwrite", "--json"] + list(extra)

    arms = {
        "xfer/fp32": lambda lst: xfer_cmd("efficientnet_lite0", lst),
        "xfer/int8": lambda lst: xfer_cmd("lite0_int8", lst),
        "xfer-ov/auto": lambda lst: xfer_cmd("efficientnet_lite0", lst, ["--device", "openvino", "--precision", "auto"]),
        "xfer-ov/f32": lambda lst: xfer_cmd("efficientnet_lite0", lst, ["--device", "openvino", "--precision", "f32"]),
    }
    if ov_ok:
        peer = ["tools/bench/peer_openvino.py", "--manifest", os.path.join(ZOO, "efficientnet_lite0.toml"),
                "--workers", "2", "--batch", "32"]
        arms["peer-ov/default"] = lambda lst: [OVPY] + peer + ["--list", lst]
        arms["peer-ov/f32"] = lambda lst: [OVPY, "-c", PEER_F32] + peer + ["--list", lst]

    # Probe the xfer OpenVINO arms once; a non-zero exit skips the arm.
    skipped, info = {}, {}
    for name in ("xfer-ov/auto", "xfer-ov/f32"):
        dt, _, out, err, rc = run(arms[name](lists["cold"]), check=False)
        if rc != 0:
            skipped[name] = {"exit": rc, "reason": last_line(err), "error": error_line(err)}
            log(f"{name}: skipped (exit {rc}): {last_line(err)} | {error_line(err)}")
        else:
            info[name] = last_json(out)
    res["skipped"] = skipped

    # End to end.
    e2e, outputs = {}, {}
    live = [a for a in arms if a not in skipped]
    for key in ("small", "large"):
        for r in range(args.rounds if key == "small" else max(1, args.rounds - 1)):
            for name in live:
                if os.path.exists(h5):
                    os.remove(h5)
                dt, rss, out, err, rc = run(arms[name](lists[key]), check=False, timed=True)
                if rc != 0:
                    raise SystemExit(f"{name} failed ({rc}) on {key}:\n{err[-3000:]}")
                e2e.setdefault(f"{key}/{name}", []).append((dt, rss))
                j = last_json(out)
                if j is not None:
                    outputs[f"{key}/{name}"] = j
            log(f"e2e {key} round {r + 1}: " + ", ".join(
                f"{k.split('/', 1)[1]} {v[-1][0]:.2f}s" for k, v in e2e.items() if k.startswith(key + "/")))
    n = {"small": args.small, "large": args.large}
    res["e2e_seconds"] = {k: med([d for d, _ in v]) for k, v in e2e.items()}
    res["e2e_images_per_s"] = {k: n[k.split("/")[0]] / s for k, s in res["e2e_seconds"].items()}
    res["e2e_peak_rss_mib"] = {k: max(r or 0 for _, r in v) for k, v in e2e.items()}
    res["e2e_runs"] = e2e
    # What each arm said about itself (xfer --json: provider ...; the peer: precision chosen).
    res["arm_reports"] = {**outputs, **{f"probe {k}": v for k, v in info.items()}}

    # Cold start, K images: two processes without a model cache, two with a fresh one.
    cold = {}
    for name in ("xfer/fp32", "xfer-ov/auto"):
        if name in skipped:
            continue
        cache = tempfile.mkdtemp(prefix="xfer-ovcache-", dir=B)
        try:
            for label, extra in (("no_cache_1", []), ("no_cache_2", []),
                                 ("cache_fill", ["--model-cache", cache]),
                                 ("cache_hit", ["--model-cache", cache])):
                base = arms[name](lists["cold"])
                dt, rss, _, err, rc = run(base + extra, check=False, timed=True)
                if rc != 0:
                    cold.setdefault(name, {})[label] = {"failed": rc, "reason": last_line(err)}
                    continue
                cold.setdefault(name, {})[label] = {"seconds": dt, "peak_rss_mib": rss}
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    res["cold_start"] = cold
    res["load_average_end"] = os.getloadavg()
    res["seconds"] = time.time() - t_start
    with open(os.path.join(B, "results.json"), "w") as f:
        json.dump(res, f, indent=1)

    # Summary.
    c = res["cpu"]
    print(f"CPU {c['model_name']} ({c['cores']} cores): " + ", ".join(f for f, v in c["flags"].items() if v))
    print(f"load average at start {res['load_average_start']}, at end {res['load_average_end']}")
    print(f"OpenVINO (Python): {res['openvino_python']}; {res['xfer']}; int8 model from {res['int8_model_from']}")
    for k, v in res["arm_reports"].items():
        if k.startswith("small/"):
            what = v.get("inference_precision") or v.get("provider")
            print(f"  {k.split('/', 1)[1]:<16} ran on: {what}")
    for name, s in skipped.items():
        print(f"skipped {name}: exit {s['exit']}: {s['reason']}"
              + (f" ({s['error']})" if s["error"] != s["reason"] else ""))
    es, ips, rss = res["e2e_seconds"], res["e2e_images_per_s"], res["e2e_peak_rss_mib"]
    print(f"end to end, whole process, median of rounds ({res['sets']['small']} small, {res['sets']['large']} 8.4 MP):")
    for k in es:
        key = k.split("/")[0]
        base = es.get(f"{key}/xfer/fp32")
        print(f"  {k:<24} {es[k]:7.2f} s {ips[k]:7.1f} img/s {rss[k]:6.0f} MiB   x{base / es[k]:.2f} vs xfer fp32")
    if cold:
        print(f"cold start, {args.cold} images, seconds (peak RSS MiB):")
        for name, d in cold.items():
            print(f"  {name:<14} " + "  ".join(
                f"{k} {v['seconds']:.2f} ({v['peak_rss_mib']:.0f})" if "seconds" in v else f"{k} failed"
                for k, v in d.items()))
    print(f"took {res['seconds']:.0f} s; results in {os.path.relpath(os.path.join(B, 'results.json'), ROOT)}")


if __name__ == "__main__":
    main()
