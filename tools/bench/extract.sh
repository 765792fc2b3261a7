#!/usr/bin/env bash
# Extraction speed benchmark: xfer end to end vs ORT alone (xfer's own session) vs the
# Python-ORT peer, plain and the expert's (multiprocessing decoders, PIL draft) vs
# torchvision's ImageFolder/DataLoader, side by side, on the same
# images (data/bench/, made from data/photos/ by tools/bench/make_images.py) with the
# same thread count. Prints one table and writes data/bench/results-extract.json.
#
# Usage: tools/bench/extract.sh [options]
#   --threads T          intra-op threads for every contender (default 2)
#   --runs R             rounds; every figure is the median (default 3)
#   --quick              1 round, 64 small and 8 large images, 4 model-alone batches
#   --models a,b         (default efficientnet_lite0,resnet18)
#   --sets small,large   which timed sets (default both)
#   --small N --large M  set sizes (default 1024 / 48)
#   --rss 200,2000       sizes of the peak-RSS sets ('' to skip)
#   --batches B          batches for the model-alone figures (default 8)
#   --no-torch           skip the torchvision peer
#   --no-build           do not run `cargo build --release` first
#   --select-openblas    select Debian's OpenBLAS (openmp) as libblas/liblapack for the
#                        torch peer (needs root; Debian's reference BLAS trains ~10x slower); without it the script
#                        only reports which libblas is selected
#
# Commands it times (the lead's CLI):
#   target/release/xfer extract --model M --data DIR --out OUT.h5 --batch 32 --threads T
#   target/release/xfer bench-model --model M --batch 32 --batches B --threads T
#     (last stdout line: a JSON object with "images_per_s")
# If target/release/xfer is missing or fails, the Python peers still run.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=1
SELECT_OPENBLAS=0
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --select-openblas) SELECT_OPENBLAS=1 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

if [ ! -x .venv/bin/python ]; then
  say ".venv missing: run tools/setup.sh --torch first"; exit 1
fi

# GNU time for peak RSS, from apt only if absent
if [ ! -x /usr/bin/time ]; then
  say "installing Debian package 'time' (for peak RSS)"
  if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q time; }; then
    say "could not install 'time': peak RSS will be missing"
  fi
fi

# BLAS for Debian's torch
BLAS_ALT=libblas.so.3-x86_64-linux-gnu
LAPACK_ALT=liblapack.so.3-x86_64-linux-gnu
OPENBLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ "$SELECT_OPENBLAS" = 1 ]; then
  if dpkg-query -W -f='${Status}' libopenblas0-openmp 2>/dev/null | grep -q "install ok installed"; then
    $SUDO update-alternatives --set "$BLAS_ALT" "$OPENBLAS_DIR/libblas.so.3"
    $SUDO update-alternatives --set "$LAPACK_ALT" "$OPENBLAS_DIR/liblapack.so.3"
  else
    say "libopenblas0-openmp is not installed (tools/setup.sh --torch installs it); BLAS left as is"
  fi
fi
say "libblas.so.3 selected: $(update-alternatives --query "$BLAS_ALT" 2>/dev/null | sed -n 's/^Value: //p' || echo unknown)"

if [ "$BUILD" = 1 ]; then
  say "cargo build --release"
  if ! cargo build --release; then
    say "cargo build --release failed: timing what can run without it"
  fi
fi

exec .venv/bin/python tools/bench/run_extract.py "$@"
