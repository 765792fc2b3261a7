# Shared by the install checks that run xfer as a user in a clean Debian root
# (tools/wheel_check.sh, tools/cargo_install_check.sh): sourced, not run. The
# caller defines `fail` (print and exit) and `repo` (the checkout).

# make_root SUITE DIR PACKAGES: a minbase Debian SUITE root in DIR with PACKAGES
# (comma-separated), made once (debootstrap into DIR.tmp, then renamed, so a
# DIR that exists is whole); this machine's resolver and certificate
# authorities copied in (the registries may be reached through its own CA).
make_root() {
  local suite=$1 dir=$2 packages=$3
  if [ ! -d "$dir" ]; then
    rm -rf "$dir.tmp"
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir.tmp" http://deb.debian.org/debian \
      >"/tmp/xfer-debootstrap-$suite-$(basename "$dir").log" 2>&1 ||
      fail "debootstrap $suite (log: /tmp/xfer-debootstrap-$suite-$(basename "$dir").log)"
    mv "$dir.tmp" "$dir"
  fi
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
}

# ldd_libs TEXT: the libraries named in the `ldd` listings of TEXT (from its
# first line starting "ldd " on), each once.
ldd_libs() {
  echo "$1" | sed -n '/^ldd /,$p' | grep '=>\|ld-linux\|vdso' | awk '{print $1}' | sort -u
}

# only_c_runtime LIBS: fails naming any of LIBS (one a line) that is not the C
# runtime (the loader, libc, libm, libpthread, libdl, librt, libgcc_s, the vdso).
only_c_runtime() {
  local extra
  extra=$(echo "$1" | grep -v -E '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libgcc_s\.so\.1)$' || true)
  [ -z "$extra" ] || fail "the installed binaries link more than the C runtime: $extra"
}

# checkout_predictions DIR HOME [ARGS...]: what the checkout's own build makes of
# HOME's photos, as the user's flow does (extract all of photos/, train the
# default heads, xfer-predict photos/fruit and photos/vehicles from HOME), into
# DIR/pred.csv. ARGS (e.g. --zoo Z) go to extract and xfer-predict.
checkout_predictions() {
  local dir=$1 home=$2
  shift 2
  "$repo/target/release/xfer" extract "$@" --model efficientnet_lite0 --data "$home/photos" --out "$dir/feats.h5" >/dev/null 2>&1 ||
    fail "the checkout build's extraction"
  "$repo/target/release/xfer" train --train "$dir/feats.h5" --out "$dir/run" >/dev/null || fail "the checkout build's training"
  (cd "$home" && "$repo/target/release/xfer-predict" "$@" --bundle "$dir/run/best.safetensors" --csv "$dir/pred.csv" \
    photos/fruit photos/vehicles >/dev/null) || fail "the checkout build's xfer-predict"
}
