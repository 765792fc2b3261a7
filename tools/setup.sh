#!/usr/bin/env bash
# Sets up everything xfer and its tests need on a fresh Debian machine, offline
# except for the package registries (Debian, PyPI, crates.io):
#   - system packages: nasm (libjpeg-turbo's SIMD decoder), Python 3.11 with numpy/PIL/h5py (no HDF5 library:
#     the build compiles HDF5 from source)
#   - a Python venv (.venv) with onnxruntime==1.31.1, onnx and ml_dtypes (onnxruntime.quantization, for xfer quantize),
#     kubernetes-validate (tools/k8s/check.py) and CMake >= 3.26 (the HDF5 build; tools/cmake finds it)
#   - the ONNX Runtime shared library, copied to $XFER_HOME/onnxruntime/
#   - EfficientNet-Lite0 with real ImageNet weights, converted into onnx/
#   - a few real photos into data/photos/ (scikit-image's chelsea and coffee)
#   - a small labelled photo set into data/stamps/ (tools/fetch_stamps.sh)
# Options:  --torch   also install Debian's torch/torchvision (for tools/export_torchvision.py
#                     and the PyTorch benchmarks)
#           --lite N  also build efficientnet_lite{N} (1 or 2); repeatable
#           --openvino also install ONNX Runtime's OpenVINO plugin (PyPI onnxruntime-ep-openvino, with
#                     OpenVINO's libraries) into .venv and copy it to $XFER_HOME/openvino-ep/, where
#                     `xfer --device openvino` finds it; and qemu-user, which tests/it/openvino.rs runs
#                     xfer under to present an Intel CPU (the plugin serves no other)
#           --browser also install Debian's chromium and DejaVu fonts, for
#                     tests/it/report_browser.rs (the test command passes it); if apt
#                     cannot install them, say so and go on (that test then skips)
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
XFER_HOME=${XFER_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/xfer}
WITH_TORCH=0
WITH_BROWSER=0
WITH_OPENVINO=0
OPENVINO_EP_VERSION=1.8.1
LITES=(0)
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) WITH_TORCH=1 ;;
    --browser) WITH_BROWSER=1 ;;
    --openvino) WITH_OPENVINO=1 ;;
    --lite) shift; LITES+=("$1") ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# --- system packages ---------------------------------------------------------
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in nasm python3.11 python3-venv python3-numpy python3-pil python3-h5py; do
  have_pkg "$p" || need+=("$p")
done
if [ "$WITH_OPENVINO" = 1 ]; then
  have_pkg qemu-user || need+=(qemu-user)
fi
if [ "$WITH_TORCH" = 1 ]; then
  for p in python3-torch python3-torchvision libopenblas0-openmp python3-sklearn; do
    have_pkg "$p" || need+=("$p")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} with apt"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# --- a real browser for the HTML report's test (--browser) --------------------
if [ "$WITH_BROWSER" = 1 ]; then
  browser=()
  for p in chromium fonts-dejavu-core; do
    have_pkg "$p" || browser+=("$p")
  done
  if [ ${#browser[@]} -gt 0 ]; then
    say "installing ${browser[*]} with apt (tests/it/report_browser.rs opens the report in it)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${browser[@]}"; }; then
      say "WARNING: could not install ${browser[*]}: tests/it/report_browser.rs will skip"
    fi
  fi
  if command -v chromium >/dev/null; then
    say "browser: $(chromium --version 2>/dev/null)"
  fi
fi

# --- Python venv (Debian's python3.11, so Debian's torch is visible) ----------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  /usr/bin/python3.11 -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import onnxruntime, onnx; assert onnxruntime.__version__ == '$ORT_VERSION'" 2>/dev/null; then
  say "installing onnxruntime==$ORT_VERSION and onnx into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "onnxruntime==$ORT_VERSION" "onnx==1.17.0" "numpy<2"
fi
# `xfer quantize` runs onnxruntime.quantization (tools/quantize.py), which imports ml_dtypes.
if ! .venv/bin/python -c "import onnxruntime.quantization" 2>/dev/null; then
  say "installing ml_dtypes into .venv (for onnxruntime.quantization)"
  .venv/bin/pip install -q --disable-pip-version-check "numpy<2" "ml_dtypes==0.5.4"
fi

# HDF5 is compiled from source by the build and needs CMake >= 3.26 (Debian 12 has 3.25).
if ! .venv/bin/cmake --version 2>/dev/null | grep -q "^cmake version 4.4.5$"; then
  say "installing cmake into .venv (the build compiles HDF5 with it)"
  .venv/bin/pip install -q --disable-pip-version-check "cmake==4.4.5"
fi

# The cluster checks (tools/k8s/check.py) validate the Kubernetes Jobs offline.
if ! .venv/bin/python -c "import kubernetes_validate" 2>/dev/null; then
  say "installing kubernetes-validate into .venv (for tools/k8s/check.py)"
  .venv/bin/pip install -q --disable-pip-version-check "kubernetes-validate==1.37.0"
fi

# --- the ONNX Runtime library, where xfer looks for it -------------------------
lib_src=$(.venv/bin/python -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.$ORT_VERSION'))")
mkdir -p "$XFER_HOME/onnxruntime"
if ! cmp -s "$lib_src" "$XFER_HOME/onnxruntime/libonnxruntime.so.$ORT_VERSION"; then
  cp "$lib_src" "$XFER_HOME/onnxruntime/libonnxruntime.so.$ORT_VERSION.tmp"
  mv "$XFER_HOME/onnxruntime/libonnxruntime.so.$ORT_VERSION.tmp" "$XFER_HOME/onnxruntime/libonnxruntime.so.$ORT_VERSION"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$XFER_HOME/onnxruntime/libonnxruntime.so"
say "ONNX Runtime $ORT_VERSION library: $XFER_HOME/onnxruntime/libonnxruntime.so"

# --- ONNX Runtime's OpenVINO plugin (--openvino) --------------------------------
if [ "$WITH_OPENVINO" = 1 ]; then
  if ! .venv/bin/python -c "import onnxruntime_ep_openvino as o, importlib.metadata as m; assert m.version('onnxruntime-ep-openvino') == '$OPENVINO_EP_VERSION'" 2>/dev/null; then
    say "installing onnxruntime-ep-openvino==$OPENVINO_EP_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "onnxruntime-ep-openvino==$OPENVINO_EP_VERSION" "onnxruntime==$ORT_VERSION" "numpy<2"
  fi
  # The plugin finds OpenVINO's libraries beside itself (RUNPATH $ORIGIN): the whole folder is copied.
  ov_src=$(.venv/bin/python -c "import onnxruntime_ep_openvino, os; print(os.path.dirname(onnxruntime_ep_openvino.__file__))")
  ov_dst="$XFER_HOME/openvino-ep"
  if ! cmp -s "$ov_src/libonnxruntime_providers_openvino_plugin.so" "$ov_dst/libonnxruntime_providers_openvino_plugin.so"; then
    rm -rf "$ov_dst.tmp"
    mkdir -p "$ov_dst.tmp"
    cp -a "$ov_src"/*.so* "$ov_dst.tmp"/
    rm -rf "$ov_dst"
    mv "$ov_dst.tmp" "$ov_dst"
  fi
  say "OpenVINO plugin $OPENVINO_EP_VERSION: $ov_dst/libonnxruntime_providers_openvino_plugin.so"
fi

# --- EfficientNet-Lite with real ImageNet weights ------------------------------
for n in "${LITES[@]}"; do
  .venv/bin/python tools/lite_to_onnx.py --variant "$n"
done

# --- real photos ----------------------------------------------------------------
tools/fetch_photos.sh     # chelsea and coffee (scikit-image, CC0)
tools/fetch_stamps.sh     # Tux Paint photo cut-outs in 4 classes (Debian, GPL-2)

say "done"
