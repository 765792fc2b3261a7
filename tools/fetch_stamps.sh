#!/usr/bin/env bash
# A small real photo set with labels, offline except for Debian's archive:
# Debian's tuxpaint-stamps-default (GPL-2) holds photo cut-outs (PNG with
# transparent backgrounds), labelled by folder. This makes the ImageFolder
#   data/stamps/{flowers,fruit,vegetables,vehicles}/*.png
# from food/fruit, food/vegetables, plants/flowers and vehicles/* (all its
# subfolders), leaving out every `cartoon` folder (drawings, not photos).
# town/houses holds only cartoons in this package, so it is not used.
# Idempotent; never commit data/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/stamps
if [ -f "$out/.complete" ]; then
  echo "fetch_stamps: $out is ready"
  exit 0
fi
cache=data/cache/apt
mkdir -p "$cache"
if ! ls "$cache"/tuxpaint-stamps-default_*.deb >/dev/null 2>&1; then
  echo "fetch_stamps: downloading tuxpaint-stamps-default with apt-get (about 160 MB)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  if ! (cd "$cache" && apt-get download tuxpaint-stamps-default 2>/dev/null); then
    $SUDO apt-get update -q   # the package lists may be missing on a fresh machine
    (cd "$cache" && apt-get download tuxpaint-stamps-default 2>/dev/null)
  fi
fi
deb=$(ls "$cache"/tuxpaint-stamps-default_*.deb | head -n 1)
[ -f "$deb" ] || { echo "fetch_stamps: download failed; run 'apt-get update' and retry" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg -x "$deb" "$tmp"
stamps="$tmp/usr/share/tuxpaint/stamps"
rm -rf "$out.tmp"
copy() { # class, source folder (recursive), excluding cartoon folders
  mkdir -p "$out.tmp/$1"
  find "$stamps/$2" -name '*.png' -not -path '*/cartoon/*' | sort | while read -r f; do
    rel=${f#"$stamps/$2/"}
    cp "$f" "$out.tmp/$1/${rel//\//_}"
  done
}
copy fruit food/fruit
copy vegetables food/vegetables
copy flowers plants/flowers
copy vehicles vehicles
cat > "$out.tmp/SOURCES.txt" <<TXT
Photo cut-outs from Debian's package $(basename "$deb") (Tux Paint stamps),
licensed GPL-2 (see /usr/share/doc/tuxpaint-stamps-default/copyright in the package).
Classes: fruit = food/fruit, vegetables = food/vegetables, flowers = plants/flowers,
vehicles = vehicles/* (subfolder joined into the file name); cartoon folders left out.
TXT
touch "$out.tmp/.complete"
rm -rf "$out"
mv "$out.tmp" "$out"
for c in "$out"/*/; do echo "fetch_stamps: $(ls "$c" | wc -l) images in $c"; done
