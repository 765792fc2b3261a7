#!/usr/bin/env bash
# `cargo install` as docs/install.md says, checked where a user would run it: as a
# non-root user (uid 4242) in a clean Debian 12 root with no HDF5 and no -dev
# package but the C runtime's, given only
#   - a C compiler (gcc, libc6-dev, make: the one thing installed with apt, as root),
#   - CMake from pip, installed by the user into a venv of their own,
#   - this machine's Rust toolchain, mounted read-only (rustup would need
#     static.rust-lang.org, which this machine does not reach),
# and crates.io. No nasm: the build goes on without it (JPEG decoding without
# SIMD), as it would for a user who lacks it. Then the installed `xfer` extracts
# and trains on real photos and the installed slim `xfer-predict` predicts, equal
# to the checkout build's predictions; `ldd` of both lists only the C runtime.
#
# Not part of the test command: it builds everything from scratch (~25 min on 2
# cores). tools/wheel_check.sh, which the test command runs, checks the pip path.
# Needs root (debootstrap, chroot) and a built checkout (target/release/xfer).
#   tools/cargo_install_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
say() { printf '\033[1mcargo install check:\033[0m %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }
. tools/root_check.sh
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap and chroot)"
[ -x target/release/xfer ] && [ -x target/release/xfer-predict ] || fail "build the checkout first: cargo build --release"
toolchain=$(rustc --print sysroot)
lib=${ORT_LIB:-${XFER_HOME:-$HOME/.local/share/xfer}/onnxruntime/libonnxruntime.so.1.31.1}
[ -f "$lib" ] || fail "no ONNX Runtime 1.31.1 at $lib: run tools/setup.sh"
command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap >/dev/null

roots=$repo/data/cache/roots
root=$roots/bookworm-cc
make_root bookworm "$root" python3,python3-venv,ca-certificates,gcc,libc6-dev,make
if chroot "$root" sh -c "ldconfig -p | grep -q libhdf5 || ls /usr/include/hdf5* /usr/include/hdf5/ 2>/dev/null | grep -q ."; then
  fail "the root has HDF5"
fi
for bad in cmake nasm cargo rustc; do
  if chroot "$root" sh -c "command -v $bad" >/dev/null 2>&1; then fail "the root has $bad"; fi
done
dev=$(chroot "$root" dpkg-query -W -f '${Package}\n' | grep -- '-dev$' | tr '\n' ' ')
say "clean root: Debian $(cat "$root/etc/debian_version"), gcc $(chroot "$root" gcc -dumpversion); -dev packages: $dev(the C runtime's); no HDF5, CMake, nasm or Rust"

# The user's home: the checkout's files (as git sees them), photos, the zoo, ONNX Runtime.
uid=4242
home=$root/home/xfer-user
rm -rf "$home"
mkdir -p "$home/xfer" "$home/photos" "$home/zoo" "$home/ort" "$root/opt/rust"
git ls-files -co --exclude-standard -z | grep -zv '^data/' | tar --null -T - -cf - | tar -C "$home/xfer" -xf -
for c in flowers fruit vegetables vehicles; do cp -r "data/stamps/$c" "$home/photos/"; done
cp onnx/efficientnet_lite0.onnx onnx/efficientnet_lite0.toml "$home/zoo/"
cp "$lib" "$home/ort/"
chown -R $uid:$uid "$home"

out=$(unshare -m --propagation private bash -c '
  set -e; r=$1; tc=$2
  mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"
  mount --bind "$tc" "$r/opt/rust"; mount -o remount,bind,ro "$r/opt/rust"
  exec chroot --userspec=4242:4242 "$r" /usr/bin/env -i HOME=/home/xfer-user LANG=C.UTF-8 \
    PATH=/home/xfer-user/cmake/bin:/home/xfer-user/.cargo/bin:/opt/rust/bin:/usr/bin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt CARGO_TARGET_DIR=/home/xfer-user/target \
    bash -c "
      set -e; cd ~
      python3 -m venv cmake && cmake/bin/pip install -q cmake==4.4.5
      cd xfer
      t0=\$(date +%s)
      cargo install --locked --path . 2>&1 | tail -2
      cargo install --locked --path . --no-default-features --features cuda,tensorrt --bin xfer-predict --root ~/slim 2>&1 | tail -1
      echo \"build: \$(( \$(date +%s) - t0 )) s\"
      cd ~
      export ORT_DYLIB_PATH=\$HOME/ort/libonnxruntime.so.1.31.1
      xfer info | head -2
      xfer extract --zoo zoo --model efficientnet_lite0 --data photos --out feats.h5 >/dev/null 2>&1
      xfer train --train feats.h5 --out run >/dev/null
      slim/bin/xfer-predict --zoo zoo --bundle run/best.safetensors --csv pred.csv photos/fruit photos/vehicles | tail -1
      for b in .cargo/bin/xfer slim/bin/xfer-predict; do echo \"ldd \$b:\"; ldd \$b; done"' _ "$root" "$toolchain" 2>&1) ||
  { echo "$out" | tail -40; fail "cargo install as a user"; }
echo "$out"
libs=$(ldd_libs "$out")
only_c_runtime "$libs"

# The checkout's build on the same photos and model: the same predictions.
ref=$(mktemp -d /tmp/xfer-cargo-ref.XXXXXX)
trap 'rm -rf "$ref"' EXIT
ORT_DYLIB_PATH=$lib checkout_predictions "$ref" "$home" --zoo "$home/zoo"
cmp -s "$ref/pred.csv" "$home/pred.csv" || { diff "$ref/pred.csv" "$home/pred.csv" | head; fail "the cargo-installed binaries predict differently from the checkout build"; }
say "ldd: $(echo $libs)"
say "passed: predictions of the cargo-installed xfer-predict == the checkout build's ($(($(wc -l <"$ref/pred.csv") - 1)) photos)"
