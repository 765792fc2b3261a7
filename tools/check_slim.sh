#!/usr/bin/env bash
# Builds the slim predictor as the README ships it (and `xfer package` builds it:
# its own target folder, target/slim, so that it never replaces the default
# build's xfer-predict) and checks its promise: it links no HDF5 and no other
# shared library beyond the C runtime (ONNX Runtime is loaded at run time,
# libjpeg-turbo is inside), and it says it is the slim build. Then the default
# build's target/release/xfer: HDF5 is compiled in (the default static-hdf5), so it
# too links only the C runtime. Run by tools/test.sh, after the default build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --no-default-features --features cuda,tensorrt --bin xfer-predict --target-dir target/slim
bin=target/slim/release/xfer-predict
only_c_runtime() {  # binary
  local libs
  libs=$(ldd "$1" | awk '{print $1}' | grep -v -E '^(linux-vdso\.so|/lib64/ld-linux-x86-64\.so|libc\.so|libm\.so|libgcc_s\.so)' || true)
  if [ -n "$libs" ]; then
    echo "check_slim: $1 links more than the C runtime:" >&2
    echo "$libs" >&2
    exit 1
  fi
}
only_c_runtime "$bin"
version=$("$bin" --version)
case "$version" in
  *"(slim)") ;;
  *) echo "check_slim: $bin --version says \"$version\", not the slim build" >&2; exit 1 ;;
esac
echo "check_slim: $bin links only the C runtime ($(du -h "$bin" | cut -f1), unstripped): $version"
full=target/release/xfer
[ -x "$full" ] || { echo "check_slim: no $full: run cargo build --release first" >&2; exit 1; }
only_c_runtime "$full"
echo "check_slim: $full (HDF5 built in) links only the C runtime too"
