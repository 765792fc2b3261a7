#!/usr/bin/env bash
# tools/gpu_check.sh: xfer's GPU path (ONNX Runtime 1.31.1's CUDA and TensorRT providers) in one
# short run on an offline GPU machine that receives the working tree in transfers of at most 64 MiB.
#
#   tools/gpu_check.sh prepare    here (PyPI reachable): build xfer, fetch the onnxruntime-gpu wheel
#                                 into .gpu-wheels/, pack what the GPU machine needs into .gpu-carry/
#                                 (both git-ignored), print the transfers to make
#   tools/gpu_check.sh stage pN   GPU machine, transfers 1..N: receive one chunk of the CUDA provider
#   tools/gpu_check.sh run        GPU machine, last transfer: the check (RUN_BUDGET_S, 450 s by
#                                 default; every step under `timeout`); the table: $OUT/summary.txt
#   tools/gpu_check.sh dry-run    here, without a GPU: prepare, then each transfer as the device tool
#                                 makes it (a copy of the tree plus what it carries, size checked),
#                                 stage and run in that copy; passes when every step behaves as it
#                                 must on a machine without a GPU (the GPU steps fail with a clear
#                                 error, the fallbacks run and are recorded as CPU runs)
#
# Why stage transfers: one transfer carries at most 64 MiB. libonnxruntime_providers_cuda.so is
# 284 MB (185 MB with xz -9), so it goes over in chunks to a machine that stays warm between
# back-to-back transfers (about 30 s). The CUDA 13 / cuDNN 9 libraries are NOT carried: the GPU
# image has them (nvidia-cublas, -cuda-runtime, -cudnn-cu13, ... under PyTorch); run finds them.
# TensorRT 10 is not carried either (no TensorRT wheel installs offline, over 1 GB anyway): the TRT
# steps run only if libnvinfer.so.10 is there, otherwise they check that the failure is clear.
#
# Exit status of run / dry-run: the number of rows that did not behave as they must (0: pass).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

ORT_VER=1.31.1
MODEL=${MODEL:-efficientnet_lite0}
DATA=${DATA:-data/stamps}            # 88 real photos in 4 classes: at --batch 32, batches of 32, 32, 24
CARRY=.gpu-carry
WHEELS=.gpu-wheels
PART_MIB=${PART_MIB:-58}             # size of one stage chunk
BUDGET_MIB=${BUDGET_MIB:-63}         # what one transfer may carry (64 MiB, less a margin)
XZ_LEVEL=${XZ_LEVEL:-9}
PY=${PYTHON:-python3}
STAGE_DIR=${STAGE_DIR:-/tmp/xfer-gpu-stage} # where staged chunks wait, outside the tree
WORK=${GPU_WORK:-/tmp/xfer-gpu}             # where run unpacks and works

die() { echo "gpu_check: $*" >&2; exit 1; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f MiB", b/1048576}'; }
tree_bytes() { # what a transfer carries besides its carry paths: tracked + untracked-not-ignored files
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
    awk '{s+=$1} END{print s+0}'
}

unxz_cat() { # decompress the concatenation of its arguments to stdout
  if command -v xz >/dev/null; then
    cat "$@" | xz -dc
  else
    cat "$@" | "$PY" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.LZMAFile(sys.stdin.buffer), sys.stdout.buffer, 1<<20)'
  fi
}

# ----------------------------------------------------------------------------------- prepare
prepare() {
  local prep_py=${PREP_PYTHON:-.venv/bin/python}
  [ -x "$prep_py" ] || prep_py=$PY
  command -v "$PY" >/dev/null || die "python3 is needed"
  for f in "onnx/$MODEL.onnx" "onnx/$MODEL.toml"; do
    [ -f "$f" ] || die "$f is missing: run tools/setup.sh"
  done
  [ -d "$DATA" ] || die "$DATA is missing: run tools/fetch_stamps.sh"
  for p in "$CARRY/x" "$WHEELS/x"; do
    git check-ignore -q "$p" || die "$(dirname "$p")/ is not git-ignored: it must not travel with every transfer"
  done

  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --bin xfer || die "cargo build failed"
  fi
  [ -x target/release/xfer ] || die "target/release/xfer is missing"

  mkdir -p "$WHEELS"
  local whl; whl=$(ls "$WHEELS"/onnxruntime_gpu-$ORT_VER-*.whl 2>/dev/null | head -n1)
  if [ -z "$whl" ]; then
    # 255.6 MB; only its C libraries are used (any cp3xx wheel has the same ones).
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 -d "$WHEELS" "onnxruntime-gpu==$ORT_VER" || die "pip download failed"
    whl=$(ls "$WHEELS"/onnxruntime_gpu-$ORT_VER-*.whl | head -n1)
  fi
  # Not carried (the GPU machine has them), for a machine that lacks them (~1.25 GB):
  #   pip download --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 -d $WHEELS \
  #     'nvidia-cuda-runtime~=13.0' 'nvidia-cublas~=13.0' 'nvidia-cudnn-cu13~=9.0' \
  #     'nvidia-cufft~=12.0' 'nvidia-curand~=10.0' 'nvidia-cuda-nvrtc~=13.0'

  rm -rf "$CARRY"; mkdir -p "$CARRY/base" "$CARRY/tmp"
  local t=$CARRY/tmp b=$CARRY/base
  "$PY" - "$whl" "$t" <<'PY' || die "could not unpack the wheel"
import os, sys, zipfile
whl, out = sys.argv[1:]
want = ("libonnxruntime.so.", "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_shared.so", "libonnxruntime_providers_tensorrt.so")
got = []
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/") and base.startswith(want):
            with z.open(n) as src, open(os.path.join(out, base), "wb") as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    dst.write(chunk)
            got.append(base)
if len(got) != 4:
    sys.exit(f"expected 4 libraries in {whl}, found {got}")
PY
  # The backbone's structure (no weights) for the PyTorch eager comparison.
  "$prep_py" tools/gpu_check_torch.py describe "onnx/$MODEL.onnx" >"$b/graph.json" ||
    die "could not describe onnx/$MODEL.onnx (needs the onnx package: .venv from tools/setup.sh)"
  cp target/release/xfer "$t/xfer" && strip "$t/xfer"
  (cd "$t" && sha256sum "libonnxruntime.so.$ORT_VER" libonnxruntime_providers_*.so xfer) >"$b/SHA256SUMS"
  xz "-$XZ_LEVEL" -T0 -c "$t/libonnxruntime.so.$ORT_VER" >"$b/libonnxruntime.so.$ORT_VER.xz"
  cp "$t/libonnxruntime_providers_shared.so" "$t/libonnxruntime_providers_tensorrt.so" "$b/"
  xz "-$XZ_LEVEL" -T0 -c "$t/xfer" >"$b/xfer.xz"
  # Whatever xfer links beyond the C runtime (nothing with HDF5 built in, the default;
  # a --no-default-features build links the system's libhdf5 and its libraries): carry it.
  mkdir -p "$t/hostlibs"
  ldd target/release/xfer | awk '/=> \//{print $3}' |
    grep -vE '/(libc|libm|libgcc_s|ld-linux-x86-64|libresolv|libpthread|libdl|librt)\.so' |
    while read -r l; do cp -L "$l" "$t/hostlibs/"; done
  tar -C "$t/hostlibs" -cf - . | xz "-$XZ_LEVEL" -T0 >"$b/hostlibs.tar.xz"

  # The compressed CUDA provider is kept beside the wheel: compressing it takes minutes.
  local cxz=$WHEELS/libonnxruntime_providers_cuda.so.$ORT_VER.xz$XZ_LEVEL
  if [ ! -s "$cxz" ] || [ "$whl" -nt "$cxz" ]; then
    echo "gpu_check: compressing libonnxruntime_providers_cuda.so (284 MB; xz -$XZ_LEVEL takes minutes)"
    xz "-$XZ_LEVEL" -T0 -c "$t/libonnxruntime_providers_cuda.so" >"$cxz.tmp" && mv "$cxz.tmp" "$cxz" ||
      die "xz failed"
  fi
  (cd "$t" && unxz_cat "$OLDPWD/$cxz" | cmp -s - libonnxruntime_providers_cuda.so) ||
    die "$cxz does not decompress to the wheel's libonnxruntime_providers_cuda.so; delete it and run again"
  cp "$cxz" "$t/cuda.xz"
  (cd "$t" && split -b "${PART_MIB}M" -d -a 2 cuda.xz cuda.xz.part && sha256sum cuda.xz.part*) >"$b/PARTS"

  # What each transfer carries: the tree plus its carry paths.
  local tree extra budget base_now last n i
  tree=$(tree_bytes)
  extra=$(du -sbL "onnx/$MODEL.onnx" "$DATA" | awk '{s+=$1} END{print s}')
  budget=$((BUDGET_MIB * 1048576))
  local parts=("$t"/cuda.xz.part*)
  n=${#parts[@]}
  last=${parts[$((n - 1))]}
  base_now=$(du -sb "$b" | cut -f1)
  if ((tree + extra + base_now + $(stat -c %s "$last") <= budget)); then
    mv "$last" "$b/"; n=$((n - 1))
  fi
  for ((i = 0; i < n; i++)); do
    mkdir -p "$CARRY/p$((i + 1))"; mv "${parts[$i]}" "$CARRY/p$((i + 1))/"
    (cd "$CARRY/p$((i + 1))" && sha256sum cuda.xz.part*) >"$CARRY/p$((i + 1))/SHA256SUM"
    local s=$((tree + $(du -sb "$CARRY/p$((i + 1))" | cut -f1)))
    ((s <= budget)) || die "transfer p$((i + 1)) would carry $(mib $s); lower PART_MIB"
  done
  echo "$n" >"$CARRY/STAGES"
  local final=$((tree + extra + $(du -sb "$b" | cut -f1)))
  ((final <= budget)) || die "the run transfer would carry $(mib $final); lower PART_MIB or shrink the tree"
  rm -rf "$t"

  echo
  echo "gpu_check: ready. Tree $(mib "$tree"); run transfer $(mib "$final"). Transfers, back to back"
  echo "(the machine goes back after ~30 s idle; if it did, the run says so: redo all of them):"
  for ((i = 1; i <= n; i++)); do
    echo "  $i. carry $CARRY/p$i: bash tools/gpu_check.sh stage p$i   (under 60 s)"
  done
  echo "  last. carry $CARRY/base, onnx/$MODEL.onnx and $DATA: bash tools/gpu_check.sh run   (timeout 540 s)"
}

# ------------------------------------------------------------------------------------- stage
stage() {
  local p=${1:?usage: gpu_check.sh stage pN} d=$CARRY/${1:-}
  [ -d "$d" ] || die "$d did not arrive: name it in carry"
  (cd "$d" && sha256sum -c --quiet SHA256SUM) || die "$d is damaged"
  mkdir -p "$STAGE_DIR" && cp "$d"/cuda.xz.part* "$STAGE_DIR/" # a second copy, outside the tree
  echo "gpu_check: $p staged; chunks on this machine: $(ls "$STAGE_DIR" | tr '\n' ' ')"
}

# --------------------------------------------------------------------------------------- run
run() {
  local START DEADLINE O G B X DRY=${DRY_RUN:-0}
  START=$(date +%s); DEADLINE=$((START + ${RUN_BUDGET_S:-450}))
  O=${OUT:-$PWD/gpu-check-out}; G=$WORK; B=$CARRY/base; X=$G/xfer
  mkdir -p "$O"; rm -rf "$G"; mkdir -p "$G/ort" "$G/bin" "$G/hostlibs" "$G/work" "$G/trt-cache"
  exec > >(tee "$O/run.log") 2>&1
  local ROWS=() RC=0 SECS=0 BAD=0

  row() { ROWS+=("$1|$2|$3|$4|$5|$6"); case $2 in FAIL | TIMEOUT | UNEXPECTED*) BAD=$((BAD + 1)) ;; esac; }
  left() { echo $((DEADLINE - $(date +%s))); }
  # step NAME TIMEOUT CMD...: stdout -> $G/NAME.out, stderr -> $G/NAME.err; sets RC and SECS
  step() {
    local name=$1 t=$2 s; shift 2
    (($(left) < t)) && t=$(left)
    if ((t < 10)); then RC=125; SECS=0; : >"$G/$name.out"; : >"$G/$name.err"; echo "[$name] skipped: out of time"; return; fi
    echo "=== [$name] timeout ${t}s: $*"
    s=$(date +%s.%N)
    timeout --kill-after=5 "$t" "$@" >"$G/$name.out" 2>"$G/$name.err"; RC=$?
    SECS=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    tail -n 2 "$G/$name.out"; grep -v '^\s*$' "$G/$name.err" | tail -n 4
    echo "[$name] rc=$RC ${SECS}s"
  }
  status() { case $RC in 0 | 3) echo ok ;; 124 | 137) echo TIMEOUT ;; 125) echo skip ;; *) echo FAIL ;; esac; }
  jfield() { tail -n 1 "$1" 2>/dev/null | sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" | tr -d '"' | head -n1; }
  ips() { local v; v=$(jfield "$1" images_per_s); if [ -n "$v" ]; then awk -v v="$v" 'BEGIN{printf "%.0f", v}'; else echo -; fi; }
  errline() { # the error line (xfer prints one, the whole chain), shortened
    local l; l=$(grep -m1 -E '^(error|warning)' "$1" 2>/dev/null)
    echo "${l:0:200}"
  }
  # An error that says what went wrong and what to do, not a crash or a hang.
  clear_error() { [ "$RC" = 1 ] && grep -qE '^error: .*(pass|check|install|use) ' "$G/$1.err" && ! grep -q panicked "$G/$1.err"; }
  # bench_row LABEL NAME PROVIDER-PATTERN: must run, on a provider matching the pattern
  # (in a dry run, a GPU row must fail clearly instead).
  bench_row() {
    local p st; p=$(jfield "$G/$2.out" provider); st=$(status)
    if [ "$DRY" = 1 ] && [ "$3" != CPUExecutionProvider ]; then
      if clear_error "$2"; then st="ok (no GPU)"; else st=FAIL; fi
    elif [ "$st" = ok ] && ! [[ $p =~ ^$3$ ]]; then
      st=FAIL
    fi
    row "$1" "$st" "$SECS" "$(ips "$G/$2.out")" "${p:--}" "$(errline "$G/$2.err")"
  }
  extract_row() { # LABEL NAME PROVIDER-PATTERN, as bench_row
    local line ipsv p st
    line=$(grep -m1 '^wrote ' "$G/$2.out")
    ipsv=$(echo "$line" | sed -n 's/.* \([0-9.]*\) images\/s, provider .*/\1/p')
    p=$(echo "$line" | sed -n 's/.*, provider //p')
    st=$(status)
    if [ "$DRY" = 1 ] && [ "$3" != CPUExecutionProvider ]; then
      if clear_error "$2"; then st="ok (no GPU)"; else st=FAIL; fi
    elif [ "$st" = ok ] && ! [[ $p =~ ^$3$ ]]; then
      st=FAIL
    fi
    row "$1" "$st" "$SECS" "${ipsv:--}" "${p:--}" "$(errline "$G/$2.err")"
  }

  echo "gpu_check run: $(date -u +%FT%TZ), $(nproc) cores, budget ${RUN_BUDGET_S:-450}s$([ "$DRY" = 1 ] && echo ", DRY RUN (no GPU expected)")"
  echo "$(uname -srm); $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null); $(ldd --version 2>&1 | head -n1); python: $(command -v "$PY")"
  # --- 1. unpack what was carried ---------------------------------------------------------
  [ -f "$B/PARTS" ] || die "$B did not arrive: name it in carry"
  local parts=() name sum f ok=1
  while read -r sum name; do
    f=$(ls "$CARRY"/p*/"$name" "$STAGE_DIR/$name" "$B/$name" 2>/dev/null | head -n1)
    if [ -z "$f" ] || [ "$(sha256sum <"$f" | cut -d' ' -f1)" != "$sum" ]; then
      echo "MISSING or damaged: $name"; ok=0
    fi
    parts+=("$f")
  done <"$B/PARTS"
  if ((ok == 0)); then
    echo "gpu_check: CUDA provider chunks missing: the machine was not the one the stage transfers"
    echo "reached (it went back between transfers). Redo every stage transfer, then run, back to back."
    exit 100
  fi
  unxz_cat "${parts[@]}" >"$G/ort/libonnxruntime_providers_cuda.so"
  unxz_cat "$B/libonnxruntime.so.$ORT_VER.xz" >"$G/ort/libonnxruntime.so.$ORT_VER"
  cp "$B"/libonnxruntime_providers_{shared,tensorrt}.so "$G/ort/"
  unxz_cat "$B/xfer.xz" >"$G/bin/xfer"
  unxz_cat "$B/hostlibs.tar.xz" | tar -C "$G/hostlibs" -xf -
  cp "$G/bin/xfer" "$G/ort/xfer" # SHA256SUMS names it next to the libraries
  (cd "$G/ort" && sha256sum -c --quiet "$OLDPWD/$B/SHA256SUMS") || die "unpacked files do not match SHA256SUMS"
  rm -f "$G/ort/xfer"; chmod 755 "$G/bin/xfer" "$G"/ort/*.so*

  # --- 2. find CUDA 13 / cuDNN 9 / TensorRT 10 ------------------------------------------------
  local dirs="" pydirs d n p
  pydirs=$(timeout 60 "$PY" - <<'PY' 2>/dev/null
import glob, os
roots = []
for mod in ("nvidia", "tensorrt_libs", "tensorrt"):
    try:
        m = __import__(mod)
        roots += list(getattr(m, "__path__", []))
    except Exception:
        pass
found = set()
for r in roots:
    for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True):
        found.add(os.path.dirname(p))
print(":".join(sorted(found)))
PY
  )
  [ -n "$pydirs" ] && dirs=":$pydirs"
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 \
    /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu/tensorrt /opt/tensorrt/lib /usr/local/tensorrt/lib; do
    [ -d "$d" ] && dirs="$dirs:$d"
  done
  findlib() {
    local n=$1 d
    local IFS=:
    for d in $dirs; do [ -n "$d" ] && [ -e "$d/$n" ] && { echo "$d/$n"; return; }; done
    ldconfig -p 2>/dev/null | awk -v n="$n" '$1==n{print $NF; exit}'
  }
  local libs="" missing_cuda="" have_trt=1
  for n in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 \
    libcufft.so.12 libnvrtc.so.13 libcudnn.so.9 libnvinfer.so.10 libnvonnxparser.so.10; do
    p=$(findlib "$n")
    libs+=$(printf '%-24s %s\n' "$n" "${p:-MISSING}")$'\n'
    if [ -z "$p" ]; then
      case $n in libnvinfer* | libnvonnxparser*) have_trt=0 ;; *) missing_cuda+="$n " ;; esac
    fi
  done
  printf '%s' "$libs" | tee "$O/libs.txt"

  cat >"$X" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH="$G/ort$dirs:$G/hostlibs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$G/bin/xfer" --ort-lib "$G/ort/libonnxruntime.so.$ORT_VER" "\$@"
EOF
  chmod 755 "$X"
  echo "--- ldd libonnxruntime_providers_cuda.so / _tensorrt.so (not found only):"
  for f in cuda tensorrt; do
    LD_LIBRARY_PATH="$G/ort$dirs:$G/hostlibs" ldd "$G/ort/libonnxruntime_providers_$f.so" |
      grep 'not found' | sed "s/^/  $f: /"
  done
  LD_LIBRARY_PATH="$G/ort$dirs:$G/hostlibs" ldd "$G/bin/xfer" | grep 'not found' | sed 's/^/  xfer: /'
  row "unpack + libraries" ok "$(($(date +%s) - START))" - - \
    "$([ -z "$missing_cuda" ] && echo "CUDA libs found" || echo "MISSING $missing_cuda")$([ $have_trt = 1 ] && echo "; TRT 10 found" || echo "; no TRT 10")"

  # --- 3. GPU and xfer info ---------------------------------------------------------------------
  if command -v nvidia-smi >/dev/null; then
    step smi 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
    row "nvidia-smi" "$(status)" "$SECS" - - "$(head -n1 "$G/smi.out")"
  else
    : >"$G/smi.out"
    row "nvidia-smi" "$([ "$DRY" = 1 ] && echo "skip (no GPU)" || echo FAIL)" 0 - - "nvidia-smi not found"
  fi
  step info 90 "$X" info
  cat "$G/info.out"
  # info must say for each provider what happened when it was tried, never just "available".
  local inf; inf=$(grep -E '^\s+(CPU|CUDA|Tensorrt)ExecutionProvider' "$G/info.out" | sed 's/ExecutionProvider//' |
    awk '{printf "%s=%s ", $1, $2}')
  local ist; ist=$(status)
  [ "$ist" = ok ] && { grep -q 'CPUExecutionProvider *works' "$G/info.out" && ! grep -q ' available$' "$G/info.out"; } || ist=FAIL
  row "xfer info (real try per provider)" "$ist" "$SECS" - - "$inf"
  grep -E 'CUDAExecutionProvider|TensorrtExecutionProvider' "$G/info.out" | sed 's/^ */  /' >"$O/info_providers.txt"

  # --- 4. bench-model: CPU, CUDA ----------------------------------------------------------------
  local BM=(bench-model --model "$MODEL" --data "$DATA")
  step bench_cpu 120 "$X" "${BM[@]}" --device cpu --batch 32 --batches 5
  bench_row "bench cpu b32" bench_cpu CPUExecutionProvider
  step bench_cuda32 120 "$X" "${BM[@]}" --device cuda --batch 32 --batches 50
  bench_row "bench cuda b32" bench_cuda32 CUDAExecutionProvider
  step bench_cuda128 120 "$X" "${BM[@]}" --device cuda --batch 128 --batches 20
  bench_row "bench cuda b128" bench_cuda128 CUDAExecutionProvider
  # Where ONNX Runtime really put the nodes: xfer reads its session log and reports it.
  local pl src=bench_cuda32; [ "$DRY" = 1 ] && src=bench_cpu
  pl=$(tail -n 1 "$G/$src.out" 2>/dev/null | sed -n 's/.*"placement":{\([^}]*\)}.*/\1/p' | tr -d '"')
  echo "$src: ${pl:-none}" >"$O/placement.txt"
  row "node placement ($src)" "$([ -n "$pl" ] && echo ok || echo FAIL)" - - - "${pl:-no placement in the JSON}"

  # --- 5. a GPU that cannot be used: error without --allow-cpu-fallback, a recorded CPU run with --
  step bad_device 60 "$X" "${BM[@]}" --device cuda --device-id 7 --batch 1 --batches 1
  row "cuda --device-id 7" "$(clear_error bad_device && echo "error (expected)" || echo UNEXPECTED)" "$SECS" - - "$(errline "$G/bad_device.err")"
  step bad_device_fb 60 "$X" "${BM[@]}" --device cuda --device-id 7 --allow-cpu-fallback --batch 1 --batches 1
  local bp; bp=$(jfield "$G/bad_device_fb.out" provider)
  row "cuda --device-id 7 +fallback" "$([ $RC = 0 ] && [ "$bp" = CPUExecutionProvider ] && grep -q 'running on CPU' "$G/bad_device_fb.err" && echo "fell back" || echo UNEXPECTED)" \
    "$SECS" - "${bp:--}" "$(errline "$G/bad_device_fb.err")"

  # --- 6. extract real photos on CPU and CUDA, compare the features ------------------------------
  local EX=(extract --model "$MODEL" --data "$DATA" --batch 32 --overwrite)
  step extract_cpu 150 "$X" "${EX[@]}" --device cpu --out "$G/work/cpu.h5"
  extract_row "extract cpu" extract_cpu CPUExecutionProvider
  step extract_cuda 150 "$X" "${EX[@]}" --device cuda --out "$G/work/cuda.h5"
  extract_row "extract cuda" extract_cuda CUDAExecutionProvider
  if [ "$DRY" = 1 ]; then # exercise the comparison: the fallback run is a CPU run, recorded as one
    step extract_cuda_fb 150 "$X" "${EX[@]}" --device cuda --allow-cpu-fallback --out "$G/work/cuda.h5"
    extract_row "extract cuda +fallback" extract_cuda_fb CPUExecutionProvider
  fi
  compare() { # LABEL A.h5 B.h5 MIN-COSINE
    local label=$1 a=$2 b=$3 thr=$4
    [ -f "$a" ] && [ -f "$b" ] || { row "$label" FAIL - - - "feature file missing"; return; }
    step "cos_$label" 60 "$PY" - "$a" "$b" "$thr" <<'PY'
import json, os, sys
try:
    if os.environ.get("GPU_CHECK_NO_H5PY"):
        raise ImportError
    import h5py, numpy as np
except ImportError:
    sys.exit(3)
def load(p):
    with h5py.File(p, "r") as f:
        return dict(zip(f["path"].asstr()[...], f["data"][...].astype(np.float64))), f.attrs.get("execution_provider")
(a, pa), (b, pb), thr = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
keys = sorted(set(a) & set(b))
A = np.stack([a[k] for k in keys]); B = np.stack([b[k] for k in keys])
cos = (A * B).sum(1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1) + 1e-30)
ok = len(keys) == len(a) == len(b) and cos.min() >= thr
print(json.dumps({"rows": len(keys), "min_cos": float(cos.min()), "mean_cos": float(cos.mean()),
                  "max_abs_diff": float(abs(A - B).max()), "providers": [str(pa), str(pb)], "ok": bool(ok)}))
print(f"{len(keys)} rows: min cos {cos.min():.6f}, mean {cos.mean():.6f}, max |diff| {abs(A - B).max():.2e}")
sys.exit(0 if ok else 1)
PY
    if [ "$RC" = 3 ]; then # no h5py: train a head on the first file, compare its probabilities on both
      step "head_$label" 120 sh -c "'$X' train --train '$a' --val-split 0.2 --head mlp --epochs 5 --seed 0 \
          --out '$G/work/head' --overwrite >/dev/null &&
        '$X' evaluate --bundle '$G/work/head/mlp.safetensors' --features '$a' --csv '$G/work/a.csv' --overwrite >/dev/null &&
        '$X' evaluate --bundle '$G/work/head/mlp.safetensors' --features '$b' --csv '$G/work/b.csv' --overwrite >/dev/null &&
        awk -F, 'NR==FNR{if(FNR>1){c[\$1]=\$2; for(i=3;i<=NF;i++) v[\$1,i]=\$i} next}
          FNR>1{n++; if(c[\$1]!=\$2) d++; for(i=3;i<=NF;i++){x=\$i-v[\$1,i]; if(x<0) x=-x; if(x>m) m=x}}
          END{printf \"rows %d, top-1 disagreements %d, max |dp| %.2e\n\", n, d, m; exit (n==0 || d>0 || m>0.01)}' \
          '$G/work/a.csv' '$G/work/b.csv'"
      row "$label (head probs, no h5py)" "$(status)" "$SECS" - - "$(tail -n1 "$G/head_$label.out")"
    else
      head -n1 "$G/cos_$label.out" >>"$O/cosine.txt"
      row "$label" "$(status)" "$SECS" - - "$(tail -n1 "$G/cos_$label.out")"
    fi
  }
  compare cpu_vs_cuda "$G/work/cpu.h5" "$G/work/cuda.h5" 0.999
  if [ "$DRY" = 1 ]; then # the comparison without h5py, as on a GPU machine that lacks it
    GPU_CHECK_NO_H5PY=1 compare cpu_vs_cuda_nohdf "$G/work/cpu.h5" "$G/work/cuda.h5" 0.999
  fi

  # --- 7. TensorRT ------------------------------------------------------------------------------
  # A cache folder that cannot be made (a file in the way): a clear error naming --trt-cache.
  : >"$G/a-file"
  step trt_badcache 60 "$X" "${BM[@]}" --device tensorrt --trt-cache "$G/a-file/cache" --batch 1 --batches 1
  row "trt --trt-cache under a file" "$(clear_error trt_badcache && grep -q 'engine cache folder' "$G/trt_badcache.err" && echo "error (expected)" || echo UNEXPECTED)" \
    "$SECS" - - "$(errline "$G/trt_badcache.err")"
  local TR=(--device tensorrt --trt-fp16 --trt-cache "$G/trt-cache/fp16")
  if [ $have_trt = 1 ] && [ "$DRY" != 1 ]; then
    step trt_cold 240 "$X" "${BM[@]}" "${TR[@]}" --batch 32 --batches 50
    bench_row "trt fp16 b32 (cold cache)" trt_cold 'TensorrtExecutionProvider(\+CUDAExecutionProvider)?'
    local engines; engines=$(find "$G/trt-cache" -name '*.engine' | wc -l)
    step trt_warm 120 "$X" "${BM[@]}" "${TR[@]}" --batch 32 --batches 50
    bench_row "trt fp16 b32 (warm cache)" trt_warm 'TensorrtExecutionProvider(\+CUDAExecutionProvider)?'
    # 88 images at --batch 32: the last batch of 24 is inside the profile (1..32): no new engine.
    local before; before=$(find "$G/trt-cache" -name '*.engine' -newer "$G/trt_warm.out" | wc -l)
    step extract_trt 180 "$X" "${EX[@]}" "${TR[@]}" --out "$G/work/trt.h5"
    extract_row "extract trt fp16 (warm cache)" extract_trt 'TensorrtExecutionProvider(\+CUDAExecutionProvider)?'
    local rebuilt; rebuilt=$(find "$G/trt-cache" -name '*.engine' -newer "$G/trt_warm.out" | wc -l)
    row "  engines: built by cold run / new after warm" "$([ "$engines" -ge 1 ] && [ "$rebuilt" = "$before" ] && echo ok || echo FAIL)" - - - \
      "$engines engine file(s) after the cold run; $((rebuilt - before)) written by the 88-image extract (last batch 24)"
    ls -la "$G/trt-cache/fp16" >"$O/trt-cache.txt" 2>&1
    compare cpu_vs_trt16 "$G/work/cpu.h5" "$G/work/trt.h5" 0.99
  else
    step trt_missing 60 "$X" "${BM[@]}" "${TR[@]}" --batch 1 --batches 1
    row "trt without libnvinfer" "$(clear_error trt_missing && echo "error (expected)" || echo UNEXPECTED)" "$SECS" - - "$(errline "$G/trt_missing.err")"
    step trt_fallback 60 "$X" "${BM[@]}" "${TR[@]}" --allow-cpu-fallback --batch 1 --batches 1
    local tp; tp=$(jfield "$G/trt_fallback.out" provider)
    row "trt +allow-cpu-fallback" "$([ $RC = 0 ] && [ "$tp" = CPUExecutionProvider ] && echo "fell back" || echo UNEXPECTED)" "$SECS" - "${tp:--}" "$(errline "$G/trt_fallback.err")"
  fi

  # --- 8. the same backbone in PyTorch eager (random weights: speed only) ------------------------
  if "$PY" -c 'import torch' 2>/dev/null; then
    if [ "$DRY" = 1 ]; then # no CUDA here: check the rebuilt graph on the CPU, against onnxruntime when present
      step torch_cpu 120 "$PY" tools/gpu_check_torch.py bench "$B/graph.json" --device cpu --batch 2 --batches 1
      row "pytorch eager cpu b2 (dry)" "$(status)" "$SECS" "$(ips "$G/torch_cpu.out")" - "$(jfield "$G/torch_cpu.out" torch)"
      if "$PY" -c 'import onnx, onnxruntime' 2>/dev/null; then
        step torch_verify 120 "$PY" tools/gpu_check_torch.py verify "$B/graph.json" "onnx/$MODEL.onnx"
        row "pytorch graph == onnxruntime" "$(status)" "$SECS" - - "$(tail -n1 "$G/torch_verify.out")"
      fi
    else
      local bsz
      for bsz in 32 128; do
        step "torch_b$bsz" 120 "$PY" tools/gpu_check_torch.py bench "$B/graph.json" --device cuda --batch "$bsz" --batches 50
        row "pytorch eager cuda b$bsz" "$(status)" "$SECS" "$(ips "$G/torch_b$bsz.out")" - "torch $(jfield "$G/torch_b$bsz.out" torch)"
        step "torch_b${bsz}_bm" 120 "$PY" tools/gpu_check_torch.py bench "$B/graph.json" --device cuda --batch "$bsz" --batches 50 --cudnn-benchmark
        row "pytorch eager cuda b$bsz cudnn.benchmark" "$(status)" "$SECS" "$(ips "$G/torch_b${bsz}_bm.out")" - -
      done
    fi
  else
    row "pytorch eager" skip - - - "no torch on this machine"
  fi

  # --- 9. summary -------------------------------------------------------------------------------
  {
    echo
    echo "xfer GPU check$([ "$DRY" = 1 ] && echo " (DRY RUN, no GPU)"), $(head -n1 "$G/smi.out" 2>/dev/null), $(($(date +%s) - START)) s, $BAD row(s) not as they must be"
    printf '%-44s %-16s %7s %8s  %-28s %s\n' step status secs img/s provider note
    local r a b c d e f
    for r in "${ROWS[@]}"; do
      IFS='|' read -r a b c d e f <<<"$r"
      printf '%-44s %-16s %7s %8s  %-28s %s\n' "$a" "$b" "$c" "$d" "$e" "$f"
    done
  } | tee "$O/summary.txt"
  exit "$BAD"
}

# ----------------------------------------------------------------------------------- dry-run
dry_run() {
  local T=${DRY_DIR:-/tmp/xfer-gpu-dry} budget=$((BUDGET_MIB * 1048576)) n i size
  rm -rf "$T"; mkdir -p "$T"
  [ -f "$CARRY/base/PARTS" ] && [ "${REUSE_PREPARE:-0}" = 1 ] || prepare || die "prepare failed"
  n=$(cat "$CARRY/STAGES")
  # One transfer as the device tool makes it: a fresh copy of the tree plus the carried paths.
  send() {
    rm -rf "$T/tree"; mkdir -p "$T/tree"
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$T/tree" -xf -
    local p
    for p in "$@"; do mkdir -p "$T/tree/$(dirname "$p")"; cp -rL "$p" "$T/tree/$p"; done
    size=$(du -sb "$T/tree" | cut -f1)
    echo "dry-run: transfer with ${*:-nothing} carried: $(mib "$size")"
    ((size <= budget)) || die "that transfer is $(mib "$size"), over $BUDGET_MIB MiB"
  }
  rm -rf "$T/stage"
  for ((i = 1; i <= n; i++)); do
    send "$CARRY/p$i"
    (cd "$T/tree" && STAGE_DIR=$T/stage bash tools/gpu_check.sh stage "p$i") || die "stage p$i failed"
  done
  send "$CARRY/base" "onnx/$MODEL.onnx" "$DATA"
  local rc py=$PY
  [ -x "$PWD/.venv/bin/python" ] && py=$PWD/.venv/bin/python # h5py, torch, onnx: every branch runs
  (cd "$T/tree" && PYTHON=$py STAGE_DIR=$T/stage GPU_WORK=$T/work OUT=$T/out DRY_RUN=1 bash tools/gpu_check.sh run)
  rc=$?
  echo "dry-run: run exited $rc; table in $T/out/summary.txt"
  exit "$rc"
}

case ${1:-} in
  prepare) prepare ;;
  stage) stage "${2:-}" ;;
  run) run ;;
  dry-run) dry_run ;;
  *) echo "usage: $0 prepare | stage pN | run | dry-run" >&2; exit 2 ;;
esac
