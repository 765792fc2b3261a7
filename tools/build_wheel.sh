#!/usr/bin/env bash
# Builds the Python wheel that carries xfer's binaries, as ruff and uv are built:
#
#   tools/build_wheel.sh            → dist/xfer_learn-<version>-py3-none-manylinux_2_28_x86_64.whl
#
# What it runs (the documented command; no root, no system HDF5 or CUDA needed):
#   pip install "maturin>=1.7,<2" ziglang cmake
#   maturin build --release --zig --compatibility manylinux_2_28 --out dist
# maturin builds `xfer` and `xfer-predict` with the features in pyproject.toml
# (static-hdf5: HDF5 and zlib compiled in, from source, with CMake), links them
# with zig against glibc 2.28's symbols (manylinux_2_28: RHEL/Rocky 8, Ubuntu
# 20.04, Debian 11 and newer), and checks that they need nothing else.
# The build tools go into .venv-build (override: XFER_BUILD_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${XFER_BUILD_VENV:-.venv-build}
if ! "$venv/bin/python" -c "import ziglang" 2>/dev/null || [ ! -x "$venv/bin/maturin" ] || [ ! -x "$venv/bin/cmake" ]; then
  echo "build_wheel: installing maturin, ziglang, cmake and auditwheel into $venv" >&2
  python3 -m venv "$venv"
  # The versions the wheel was checked with (tools/wheel_check.sh).
  "$venv/bin/pip" install -q --disable-pip-version-check "maturin==1.16.0" "ziglang==0.17.1" "cmake==4.4.5" "auditwheel==6.8.2"
fi
export PATH="$PWD/$venv/bin:$PATH"
maturin build --release --zig --compatibility manylinux_2_28 --target x86_64-unknown-linux-gnu --out dist "$@"
