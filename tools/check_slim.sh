#!/usr/bin/env bash
# Builds the slim predictor as the README ships it and checks its promise: it links
# no HDF5 and no other shared library beyond the C runtime (ONNX Runtime is loaded
# at run time, libjpeg-turbo is inside). Run by tools/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --no-default-features --features cuda,tensorrt --bin xfer-predict
bin=target/release/xfer-predict
libs=$(ldd "$bin" | awk '{print $1}' | grep -v -E '^(linux-vdso\.so|/lib64/ld-linux-x86-64\.so|libc\.so|libm\.so|libgcc_s\.so)' || true)
if [ -n "$libs" ]; then
  echo "check_slim: $bin links more than the C runtime:" >&2
  echo "$libs" >&2
  exit 1
fi
echo "check_slim: $bin links only the C runtime ($(du -h "$bin" | cut -f1), unstripped)"
