#!/usr/bin/env bash
# The pip install, checked as a user on another machine would do it:
#   1. builds the wheel with the documented command (tools/build_wheel.sh) and
#      checks its tag with auditwheel (the newest glibc symbol the binaries need);
#   2. makes a clean Debian 12 root (debootstrap, minbase + python3-venv): no
#      HDF5, no Rust, no compiler, no -dev package, checked;
#   3. as a non-root user there, in a fresh venv: `pip install <wheel>
#      onnxruntime==1.31.1`, `xfer models fetch efficientnet_lite0`, `xfer extract`
#      on real photos, `xfer train` (default heads), `xfer-predict` — and compares
#      the predictions with the checkout build's on the same photos (equal);
#      `ldd` of both installed binaries lists only the C runtime; the [openvino]
#      extra installed there, xfer finds ONNX Runtime's OpenVINO plugin in it;
#   4. with --old-glibc, also runs the installed binaries (extract and predict)
#      in a Debian 11 root (glibc 2.31), ONNX Runtime and zoo copied in;
#   5. with --cuda, `pip install <wheel> "onnxruntime-gpu[cuda,cudnn]==1.31.1"`
#      (2.5 GB from PyPI) into a second venv: every NVIDIA library ONNX Runtime's
#      CUDA provider needs from pip must load, leaving only the driver's
#      libcuda.so.1, which no pip package has (this machine has no GPU); a CUDA
#      extraction then refuses, naming it, and --allow-cpu-fallback runs on CPU.
# Prints the wheel's size, the install time and the glibc the wheel needs.
# Needs root (debootstrap, chroot); without it prints SKIPPED. The roots are
# kept in data/cache/roots/ (delete them to start over).
#   tools/wheel_check.sh [--old-glibc] [--cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
old_glibc=0
cuda=0
for a in "$@"; do
  case "$a" in
    --old-glibc) old_glibc=1 ;;
    --cuda) cuda=1 ;;
    *) echo "wheel_check: unknown option $a (--old-glibc, --cuda)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1mwheel check:\033[0m %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }
. tools/root_check.sh
skip() { say "SKIPPED: $* — the pip install was NOT checked"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap and chroot)"
command -v debootstrap >/dev/null || {
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; } >/tmp/xfer-debootstrap-apt.log 2>&1 ||
    skip "apt could not install debootstrap (log: /tmp/xfer-debootstrap-apt.log)"
}

# 1. The wheel.
rm -f dist/xfer_learn-*.whl
tools/build_wheel.sh >/tmp/xfer-wheel-build.log 2>&1 || { tail -30 /tmp/xfer-wheel-build.log; fail "building the wheel"; }
wheel=$(ls dist/xfer_learn-*.whl)
say "built $(basename "$wheel"), $(du -h "$wheel" | cut -f1)"
audit=$(.venv-build/bin/auditwheel show "$wheel" 2>&1) || fail "auditwheel: $audit"
flat=$(echo "$audit" | tr -s ' \n' '  ')
echo "$flat" | grep -q 'consistent with the following platform tag: "manylinux_2_28_x86_64"' ||
  fail "the wheel is not manylinux_2_28: $audit"
newest=$(echo "$flat" | grep -o "GLIBC_[0-9.]*" | sed 's/GLIBC_//' | sort -V | tail -1)
say "auditwheel: manylinux_2_28_x86_64; the newest glibc symbol the binaries use: GLIBC_$newest"

# 2. A clean root.
roots=$repo/data/cache/roots
mkdir -p "$roots"
root=$roots/bookworm
make_root bookworm "$root" python3,python3-venv,ca-certificates
for bad in rustc cargo gcc cc clang; do
  if chroot "$root" sh -c "command -v $bad" >/dev/null 2>&1; then fail "the clean root has $bad"; fi
done
if chroot "$root" sh -c "ldconfig -p | grep -q libhdf5"; then fail "the clean root has an HDF5 library"; fi
if chroot "$root" dpkg-query -W -f '${Package}\n' | grep -- '-dev$'; then fail "the clean root has -dev packages"; fi
say "clean root: Debian $(cat "$root/etc/debian_version"), glibc $(chroot "$root" ldd --version | head -1 | grep -o '[0-9.]*$'), Python $(chroot "$root" python3 -c 'import platform; print(platform.python_version())'); no HDF5, Rust, compiler or -dev package"

# 3. As a user, in the root.
uid=4242
home=$root/home/xfer-user
rm -rf "$home"
mkdir -p "$home/photos"
for c in flowers fruit vegetables vehicles; do cp -r "data/stamps/$c" "$home/photos/"; done
cp "$wheel" "$home/"
chown -R $uid:$uid "$home"
in_root() {  # as the user, in a private mount namespace with /proc and /dev
  unshare -m --propagation private bash -c '
    set -e; r=$1; shift
    mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"
    exec chroot --userspec='$uid:$uid' "$r" /usr/bin/env -i HOME=/home/xfer-user PATH=/home/xfer-user/env/bin:/usr/bin:/bin \
      PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 LANG=C.UTF-8 "$@"' _ "$@"
}
whl=/home/xfer-user/$(basename "$wheel")
t0=$(date +%s.%N)
in_root "$root" bash -c "cd ~ && python3 -m venv env && env/bin/pip install -q '$whl' onnxruntime==1.31.1" ||
  fail "pip install of the wheel and onnxruntime"
t1=$(date +%s.%N)
say "pip install <wheel> onnxruntime==1.31.1 into a fresh venv, as uid $uid: $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
run_flow() {  # docs/install.md's pip path, as the user; predictions in ~/pred.csv
  in_root "$root" bash -c '
    set -e; cd ~
    xfer info | head -4
    xfer models fetch efficientnet_lite0 2>&1 | tail -1
    xfer extract --model efficientnet_lite0 --data photos --out feats.h5 >/dev/null 2>&1
    xfer train --train feats.h5 --out run >/dev/null
    xfer-predict --bundle run/best.safetensors --csv pred.csv photos/fruit photos/vehicles | tail -1
    # NVIDIA libraries from pip, found and loaded without a GPU: the CUDA runtime alone.
    pip install -q "nvidia-cuda-runtime~=13.0"
    xfer info | grep -E "NVIDIA|libcudart"
    # The [openvino] extra: ONNX Runtime'"'"'s OpenVINO plugin, found in the same environment.
    pip install -q "$(ls xfer_learn-*.whl)[openvino]"
    xfer info | grep -A1 "^OpenVINO plugin"
    for b in xfer xfer-predict; do echo "ldd $b:"; ldd "$(command -v $b)"; done'
}
flow=$(run_flow 2>&1) || { echo "$flow"; fail "the pip user's flow"; }
echo "$flow"
echo "$flow" | grep -q "found via the onnxruntime package of the Python environment /home/xfer-user/env" ||
  fail "xfer did not take ONNX Runtime from its Python environment"
echo "$flow" | grep -q "libcudart.so.13 loaded (/home/xfer-user/env/lib/python3.*/site-packages/nvidia/cu13/lib/libcudart.so.13)" ||
  fail "xfer did not load NVIDIA's CUDA runtime from the environment's nvidia/ folder"
echo "$flow" | grep -q "found via the onnxruntime_ep_openvino package of the Python environment /home/xfer-user/env" ||
  fail "xfer did not find the OpenVINO plugin of the [openvino] extra in its Python environment"
libs=$(ldd_libs "$flow")
only_c_runtime "$libs"
say "ldd: $(echo $libs)"

# The checkout's build on the same photos and model: the same predictions.
ref=$(mktemp -d /tmp/xfer-wheel-ref.XXXXXX)
checkout_predictions "$ref" "$home"
cmp -s "$ref/pred.csv" "$home/pred.csv" || { diff "$ref/pred.csv" "$home/pred.csv" | head; fail "the wheel's predictions differ from the checkout build's"; }
say "predictions of the installed xfer-predict == the checkout build's ($(($(wc -l <"$ref/pred.csv") - 1)) photos)"
rm -rf "$ref"

# 3b. pipx and uv tool, with docs/install.md's lines: the package found as on PyPI
# (--find-links to a folder holding the wheel), ONNX Runtime from the [cpu] extra,
# the commands linked into ~/.local/bin. Each must take ONNX Runtime from its own
# tool environment and predict as the pip install did.
tools_flow() {
  in_root "$root" bash -c '
    set -e; cd ~
    # uv trusts the system certificates
    # only when told: the registries may be reached through this machine'"'"'s own CA.
    export UV_SYSTEM_CERTS=1 UV_NATIVE_TLS=1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_PYTHON_DOWNLOADS=never
    rm -rf wheels tools uv .local/bin .local/share/pipx .local/share/uv
    mkdir wheels && cp xfer_learn-*.whl wheels/
    # Separate venvs: pipx beside uv would install through uv; alone it uses pip, as most pipx users have it.
    python3 -m venv tools && tools/bin/pip install -q "pipx==1.18.4"
    python3 -m venv uv && uv/bin/pip install -q "uv==0.13.9"
    tools/bin/pipx install "xfer-learn[cpu]" --pip-args="--find-links=$HOME/wheels" >/dev/null
    echo "pipx: $(.local/bin/xfer info | grep -o "found via the onnxruntime package of the Python environment [^ ]*")"
    .local/bin/xfer-predict --bundle run/best.safetensors --csv pred-pipx.csv photos/fruit photos/vehicles >/dev/null
    tools/bin/pipx uninstall xfer-learn >/dev/null
    uv/bin/uv tool install -q "xfer-learn[cpu]" --with pip --find-links "$HOME/wheels" --python /usr/bin/python3
    echo "uv: $(.local/bin/xfer info | grep -o "found via the onnxruntime package of the Python environment [^ ]*")"
    .local/bin/xfer-predict --bundle run/best.safetensors --csv pred-uv.csv photos/fruit photos/vehicles >/dev/null'
}
flow=$(tools_flow 2>&1) || { echo "$flow"; fail "pipx / uv tool install"; }
echo "$flow"
echo "$flow" | grep -q "^pipx: found via the onnxruntime package of the Python environment /home/xfer-user/.local/share/pipx/venvs/xfer-learn" ||
  fail "xfer installed by pipx did not take ONNX Runtime from its pipx environment"
echo "$flow" | grep -q "^uv: found via the onnxruntime package of the Python environment /home/xfer-user/.local/share/uv/tools/xfer-learn" ||
  fail "xfer installed by uv tool did not take ONNX Runtime from its tool environment"
for t in pipx uv; do
  cmp -s "$home/pred.csv" "$home/pred-$t.csv" || fail "the predictions of the $t-installed xfer-predict differ from pip's"
done
say "pipx install and uv tool install \"xfer-learn[cpu]\": ONNX Runtime from their own environments, predictions equal"

# 4. An older glibc: the installed binaries in a Debian 11 root.
if [ "$old_glibc" = 1 ]; then
  old=$roots/bullseye
  make_root bullseye "$old" python3,python3-venv,ca-certificates
  rm -rf "$old/home/xfer-user"
  cp -a "$home" "$old/home/xfer-user"
  rm -rf "$old/home/xfer-user/env" "$old/home/xfer-user/pred.csv" "$old/home/xfer-user/feats.h5" "$old/home/xfer-user/run"
  lib=$(ls "$home"/env/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1)
  mkdir -p "$old/home/xfer-user/ort"
  cp "$lib" "$old/home/xfer-user/ort/"
  chown -R $uid:$uid "$old/home/xfer-user"
  # Python 3.9 there: the wheel installs (it is py3-none), onnxruntime 1.31.1 does not (3.11+), so the library is copied.
  out=$(in_root "$old" bash -c "
    set -e; cd ~; ldd --version | head -1
    python3 -m venv env && env/bin/pip install -q '$whl'
    export ORT_DYLIB_PATH=\$HOME/ort/libonnxruntime.so.1.31.1
    xfer info | head -2
    xfer extract --model efficientnet_lite0 --data photos --out feats.h5 >/dev/null 2>&1
    xfer train --train feats.h5 --out run >/dev/null
    xfer-predict --bundle run/best.safetensors --csv pred.csv photos/fruit photos/vehicles | tail -1" 2>&1) || { echo "$out"; fail "the binaries on Debian 11"; }
  echo "$out" | head -3
  cmp -s "$old/home/xfer-user/pred.csv" "$home/pred.csv" || fail "Debian 11's predictions differ"
  say "Debian 11 (glibc 2.31): the installed binaries extract, train and predict; predictions equal"
fi

# 5. The GPU build of ONNX Runtime with NVIDIA's libraries from pip, on a machine without a GPU.
if [ "$cuda" = 1 ]; then
  out=$(in_root "$root" bash -c "
    set -e; cd ~; rm -rf env-gpu
    python3 -m venv env-gpu && env-gpu/bin/pip install -q '$whl' 'onnxruntime-gpu[cuda,cudnn]==1.31.1'
    env-gpu/bin/xfer info
    env-gpu/bin/xfer extract --model efficientnet_lite0 --data photos/fruit --out gpu.h5 --device cuda 2>&1 && exit 9 || true
    env-gpu/bin/xfer extract --model efficientnet_lite0 --data photos/fruit --out gpu.h5 --device cuda --allow-cpu-fallback 2>&1 | tail -1" 2>&1) ||
    { echo "$out"; fail "the onnxruntime-gpu install"; }
  echo "$out"
  for l in libcublasLt.so.13 libcublas.so.13 libnvrtc.so.13 libcurand.so.10 libcufft.so.12 libcudart.so.13 libcudnn.so.9; do
    echo "$out" | grep -q "  $l loaded (/home/xfer-user/env-gpu/lib/python3.*/site-packages/nvidia/" || fail "$l was not loaded from the environment's nvidia/ folder"
  done
  echo "$out" | grep "CUDAExecutionProvider  *not usable" | grep -q "libcuda.so.1: cannot open shared object file" ||
    fail "the CUDA provider did not get as far as the driver's libcuda.so.1"
  echo "$out" | grep -q "^error: .*CUDAExecutionProvider is not available.*libcuda.so.1" || fail "a CUDA extraction did not refuse naming libcuda.so.1"
  echo "$out" | grep -q "provider CPUExecutionProvider" || fail "--allow-cpu-fallback did not run on CPU"
  say "onnxruntime-gpu from pip: the 7 NVIDIA libraries of its CUDA provider loaded from the venv, no system CUDA, no LD_LIBRARY_PATH; only the driver's libcuda.so.1 is missing (no GPU here)"
fi
say "passed"
