#!/usr/bin/env bash
# Sharding on one machine, and the cost of merging: is it worth running 2 shards
# of 1 intra-op thread each instead of 1 process of 2 threads, and what does
# `xfer merge` cost per million rows?
#
#  1. Scaling: on the same images (data/bench/small-N, made by make_images.py),
#     alternately (A B A B …, R rounds), whole processes timed:
#       A  one `xfer extract --threads 2` (decoders: one per core)
#       B  two `xfer extract --shard I/2 --threads 1 --decode-threads 1` started
#          together, until both have exited; then `xfer merge` of the two (timed
#          apart, and its output checked equal to A's file once).
#     Images/s = images / seconds; medians of the rounds, and the median of
#     the speed-ups measured within each round (robust to a busy machine).
#  2. Merge cost: ROWS rows of D = the model's width in S synthetic shard files
#     (tools/bench/make_merge_shards.py, a real size: 200,000 × 1280 f32 is 1 GB),
#     merged 5 times (the shard files are in the page cache; so is the output,
#     written back by the kernel afterwards); seconds per million rows from the median.
#
# Usage: tools/bench/shards.sh [--rounds R] [--images N] [--model M]
#                              [--merge-rows ROWS] [--merge-shards S] [--no-build]
# Prints a summary; writes data/bench/results-shards.json.
# Needs: .venv with numpy, Pillow and h5py (tools/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=5; IMAGES=1024; MODEL=efficientnet_lite0; ROWS=200000; SHARDS=8; BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --images) IMAGES=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --merge-rows) ROWS=$2; shift ;;
    --merge-shards) SHARDS=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "shards.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PY=.venv/bin/python
[ -x "$PY" ] || { echo "shards.sh: .venv missing: run tools/setup.sh" >&2; exit 1; }
if [ "$BUILD" = 1 ]; then cargo build --release >&2; fi
XFER=target/release/xfer
$PY tools/bench/make_images.py --small "$IMAGES" --large 0 --rss >/dev/null 2>&1 || true
DATA=data/bench/small-$IMAGES
[ -d "$DATA" ] || { echo "shards.sh: $DATA missing (tools/bench/make_images.py --small $IMAGES)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export HDF5_USE_FILE_LOCKING=FALSE
now() { date +%s.%N; }
# check RC: 0 or 3 (skipped files) is a finished run; anything else fails the benchmark.
check() { if [ "$1" != 0 ] && [ "$1" != 3 ]; then echo "shards.sh: a run failed ($1): $(tail -3 "$tmp/err")" >&2; exit 1; fi; }
ex=(extract --model "$MODEL" --data "$DATA" --batch 32)
: > "$tmp/one"; : > "$tmp/two"; : > "$tmp/merge"
for r in $(seq 1 "$ROUNDS"); do
  order="one two"; [ $((r % 2)) = 0 ] && order="two one"
  for who in $order; do
    rm -f "$tmp"/*.h5
    t0=$(now)
    if [ $who = one ]; then
      rc=0; $XFER "${ex[@]}" --out "$tmp/one.h5" --threads 2 >/dev/null 2>"$tmp/err" || rc=$?; check $rc
    else
      pids=()
      for i in 0 1; do
        $XFER "${ex[@]}" --out "$tmp/s$i.h5" --shard "$i/2" --threads 1 --decode-threads 1 >/dev/null 2>"$tmp/err" &
        pids+=($!)
      done
      for p in "${pids[@]}"; do rc=0; wait "$p" || rc=$?; check $rc; done
    fi
    t1=$(now)
    echo "$t0 $t1" >> "$tmp/$who"
    if [ $who = two ]; then
      t0=$(now); $XFER merge --out "$tmp/merged.h5" "$tmp/s0.h5" "$tmp/s1.h5" >/dev/null 2>"$tmp/err" || check $?; t1=$(now)
      echo "$t0 $t1" >> "$tmp/merge"
      mkdir -p "$tmp/keep"; cp "$tmp/merged.h5" "$tmp/keep/merged.h5"; cp "$tmp/s0.h5" "$tmp/keep/template.h5"
    else
      mkdir -p "$tmp/keep"; cp "$tmp/one.h5" "$tmp/keep/one.h5"
    fi
  done
done
# The sharded result is the unsharded one.
$PY - "$tmp/keep/one.h5" "$tmp/keep/merged.h5" <<'PYEOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
for k in a:
    assert np.array_equal(a[k][()], b[k][()]), k
print("check: the merged shards equal the unsharded file (every dataset)", file=sys.stderr)
PYEOF
# Merge cost at a real size.
$PY tools/bench/make_merge_shards.py "$tmp/keep/template.h5" "$tmp/synth" --rows "$ROWS" --shards "$SHARDS" > "$tmp/synth.list"
mapfile -t synth < "$tmp/synth.list"
: > "$tmp/bigmerge"
for r in 1 2 3 4 5; do
  rm -f "$tmp/big.h5"
  t0=$(now); $XFER merge --out "$tmp/big.h5" "${synth[@]}" >/dev/null 2>"$tmp/err" || check $?; t1=$(now)
  echo "$t0 $t1" >> "$tmp/bigmerge"
done
bytes=$(stat -c %s "$tmp/big.h5")
$PY - "$tmp" "$IMAGES" "$ROUNDS" "$ROWS" "$SHARDS" "$bytes" "$MODEL" "$(nproc)" <<'PYEOF'
import json, statistics, sys
tmp, images, rounds, rows, shards, nbytes, model, cores = sys.argv[1:]
images, rows, nbytes = int(images), int(rows), int(nbytes)
def secs(name):
    return [float(b) - float(a) for a, b in (l.split() for l in open(f"{tmp}/{name}"))]
one, two, merge, big = secs("one"), secs("two"), secs("merge"), secs("bigmerge")
m1, m2, mm, mb = (statistics.median(x) for x in (one, two, merge, big))
res = {
    "model": model, "images": images, "rounds": int(rounds), "cores": int(cores),
    "one_process_2_threads_s": one, "two_shards_1_thread_s": two, "merge_2_shards_s": merge,
    "one_process_img_s": images / m1, "two_shards_img_s": images / m2,
    "two_shards_with_merge_img_s": images / (m2 + mm),
    "speedup": m1 / m2, "speedup_with_merge": m1 / (m2 + mm),
    "speedup_per_round": [a / b for a, b in zip(one, two)],
    "merge_rows": rows, "merge_shards": int(shards), "merge_bytes": nbytes, "merge_s": big,
    "merge_s_per_million_rows": statistics.median(big) / rows * 1e6,
    "merge_mb_per_s": nbytes / statistics.median(big) / 1e6,
}
json.dump(res, open("data/bench/results-shards.json", "w"), indent=1)
f = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"{model}, {images} small photos, {cores} cores, medians of {rounds} alternating rounds:")
print(f"  1 process x 2 threads:        {m1:6.2f} s  {images / m1:6.1f} img/s   (runs {f(one)})")
print(f"  2 shards x 1 thread at once:  {m2:6.2f} s  {images / m2:6.1f} img/s   (runs {f(two)})  x{m1 / m2:.3f}")
print(f"  ... plus merging the 2:       {mm:6.2f} s  {images / (m2 + mm):6.1f} img/s   x{m1 / (m2 + mm):.3f}")
pr = [a / b for a, b in zip(one, two)]
print(f"  speed-up within each round:   median x{statistics.median(pr):.3f} (min {min(pr):.3f}, max {max(pr):.3f})")
print(f"merge of {rows:,} rows in {shards} shards ({nbytes / 1e9:.2f} GB out): {statistics.median(big):.2f} s "
      f"(runs {f(big)}) = {statistics.median(big) / rows * 1e6:.2f} s per million rows, {nbytes / statistics.median(big) / 1e6:.0f} MB/s")
PYEOF
