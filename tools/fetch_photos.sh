#!/usr/bin/env bash
# Puts a few real photos into data/photos/, offline except for PyPI:
#   chelsea.png  a tabby cat          (scikit-image's skimage/data/chelsea.png)
#   coffee.png   a cup of coffee      (scikit-image's skimage/data/coffee.png)
#   SOURCES.txt  where they come from and their licence, quoted from the wheel
# The scikit-image wheel (cp311, manylinux x86_64, pinned version) is downloaded with
# `pip download` into data/cache/pip/ — never installed — and only the two PNGs are
# extracted, each checked against the sha256 in the wheel's RECORD.
# Idempotent: does nothing when all three files are present.
set -euo pipefail
cd "$(dirname "$0")/.."

SKIMAGE_VERSION=0.25.2
CACHE=data/cache/pip
OUT=data/photos

if [ -f "$OUT/chelsea.png" ] && [ -f "$OUT/coffee.png" ] && [ -f "$OUT/SOURCES.txt" ]; then
  echo "fetch_photos: $OUT/ already has chelsea.png, coffee.png and SOURCES.txt; nothing to do"
  exit 0
fi

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

mkdir -p "$CACHE" "$OUT"
wheel=$(ls "$CACHE"/scikit_image-"$SKIMAGE_VERSION"-cp311-cp311-*manylinux*x86_64*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "fetch_photos: downloading the scikit-image $SKIMAGE_VERSION wheel (about 15 MB) into $CACHE/"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64 \
    -d "$CACHE" "scikit-image==$SKIMAGE_VERSION"
  wheel=$(ls "$CACHE"/scikit_image-"$SKIMAGE_VERSION"-cp311-cp311-*manylinux*x86_64*.whl | head -n1)
fi

# Extract the two PNGs (checked against RECORD, written atomically) and write
# SOURCES.txt with the licence notes quoted from the docstrings of skimage.data.chelsea
# and skimage.data.coffee (skimage/data/_fetchers.py; skimage/data/README.txt itself
# says nothing about licences).
"$PY" - "$wheel" "$OUT" "$SKIMAGE_VERSION" <<'EOF'
import ast, base64, csv, hashlib, io, os, sys, zipfile

wheel, out, version = sys.argv[1], sys.argv[2], sys.argv[3]
photos = {"chelsea.png": "chelsea", "coffee.png": "coffee"}  # file -> skimage.data function

with zipfile.ZipFile(wheel) as z:
    record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    record = {row[0]: row[1] for row in csv.reader(io.StringIO(z.read(record_name).decode()))
              if len(row) >= 2}
    readme = z.read("skimage/data/README.txt").decode("utf-8").strip()
    fetchers = ast.parse(z.read("skimage/data/_fetchers.py").decode("utf-8"))
    docs = {f.name: ast.get_docstring(f) for f in fetchers.body if isinstance(f, ast.FunctionDef)}
    lines = []
    for fname, func in photos.items():
        member = f"skimage/data/{fname}"
        data = z.read(member)
        digest = hashlib.sha256(data).digest()
        want = record.get(member, "")
        if want != "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode():
            sys.exit(f"fetch_photos: {member} does not match the wheel's RECORD")
        tmp = os.path.join(out, f".{fname}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out, fname))
        doc = docs.get(func) or ""
        notes = [l.strip() for l in doc.splitlines() if "copyright" in l.lower() or "CC0" in l]
        if not notes:
            sys.exit(f"fetch_photos: no licence note found in skimage.data.{func}'s docstring")
        summary = doc.split("\n\n")[0].strip()
        courtesy = [l.strip() for l in doc.splitlines() if "courtesy" in l.lower()]
        lines.append(
            f"{fname}  (sha256 {digest.hex()})\n"
            f"  from: {member} in {os.path.basename(wheel)}\n"
            f"  skimage.data.{func}() docstring: \"{summary}\"\n"
            + "".join(f"  \"{c}\"\n" for c in courtesy)
            + "".join(f"  licence note, quoted: \"{n}\"\n" for n in notes))

text = (
    "Photos in this folder, fetched by tools/fetch_photos.sh from the PyPI wheel of\n"
    f"scikit-image {version} (https://pypi.org/project/scikit-image/). Not committed.\n"
    "\n"
    "The licence notes below are quoted verbatim from the docstrings of skimage.data.chelsea\n"
    "and skimage.data.coffee (skimage/data/_fetchers.py in the wheel): both photos are CC0\n"
    "(public domain dedication) by their photographers, with no copyright restrictions.\n"
    "scikit-image's own code is BSD-3-Clause; skimage/data/README.txt in the wheel does\n"
    "not mention licences. It reads:\n"
    + "".join(f"  | {l}\n" for l in readme.splitlines())
    + "\n" + "\n".join(lines)
)
tmp = os.path.join(out, ".SOURCES.txt.tmp")
with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
os.replace(tmp, os.path.join(out, "SOURCES.txt"))
EOF
echo "fetch_photos: wrote $OUT/chelsea.png, $OUT/coffee.png and $OUT/SOURCES.txt"
