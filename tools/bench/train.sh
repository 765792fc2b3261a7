#!/usr/bin/env bash
# Head-training speed benchmark: `xfer train` side by side with PyTorch (the same
# head, the same settings, the same thread count) on the tutorial's large case,
# a synthetic 20,000 × 4,608 feature file with 2 classes, hidden 1000, SGD lr 1e-3,
# batches of 64, 32 and 256; and xfer's logistic baseline against sklearn's
# LogisticRegression(lbfgs). Prints one table; writes data/bench/results-train-t{T}.json.
#
# Usage: tools/bench/train.sh [options]
#   --threads T        threads for every contender (default 2)
#   --epochs E         epochs per run (default 2); the figure is the median epoch
#   --runs R           runs per contender, alternating order (default 1)
#   --batches a,b,c    (default 64,32,256)
#   --optim sgd|adam   (default sgd)
#   --flush-denormal   torch.set_flush_denormal(True) in the PyTorch peer
#   --no-torch / --no-logistic
#   --no-build         do not run `cargo build --release` first
#   --select-openblas  select Debian's OpenBLAS (openmp) as libblas/liblapack for the
#                      PyTorch peer fairly (needs root); without it the
#                      table reports whichever libblas is selected
# Needs: .venv with torch and h5py (tools/setup.sh --torch), python3-sklearn (apt).
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=1
SELECT_OPENBLAS=0
pass=()
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --select-openblas) SELECT_OPENBLAS=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$arg") ;;
  esac
done

say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }

if [ "$SELECT_OPENBLAS" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
  if [ -e "$dir/libblas.so.3" ]; then
    $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$dir/libblas.so.3"
    $SUDO update-alternatives --set liblapack.so.3-x86_64-linux-gnu "$dir/liblapack.so.3"
    [ -e "$dir/libopenblas.so.0" ] && $SUDO update-alternatives --set libopenblas.so.0-x86_64-linux-gnu "$dir/libopenblas.so.0" || true
  else
    say "libopenblas0-openmp is not installed (tools/setup.sh --torch installs it); BLAS left as is"
  fi
fi
if [ "$BUILD" = 1 ]; then
  say "cargo build --release"
  cargo build --release --quiet
fi
exec .venv/bin/python tools/bench/run_train.py "${pass[@]}"
