#!/usr/bin/env bash
# Extraction speed of two xfer builds, side by side: the same images, the same
# flags, runs alternating (A B A B …) in one go, whole processes timed. Used to
# show that a change does not slow extraction down (e.g. the one-pipeline
# restructuring: a build of the commit before it against the current one).
#
# Usage: tools/bench/compare_builds.sh OLD_XFER NEW_XFER [--rounds R] [--small N] [--large M] [--predict BUNDLE]
#   OLD_XFER, NEW_XFER   xfer binaries (e.g. one built from `git worktree add ../old <commit>`)
#   --rounds R           alternating rounds (default 5); figures are medians
#   --small N --large M  image sets from tools/bench/make_images.py (default 1024 / 48)
#   --predict BUNDLE     also time `xfer predict --bundle BUNDLE` on each set (a bundle
#                        trained on efficientnet_lite0 features, any classes)
# Prints one line per set: median seconds of each build and NEW/OLD speed ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2"); shift 2
ROUNDS=5; SMALL=1024; LARGE=48; BUNDLE=
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --small) SMALL=$2; shift ;;
    --large) LARGE=$2; shift ;;
    --predict) BUNDLE=$(realpath "$2"); shift ;;
    *) echo "compare_builds: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PY=.venv/bin/python
sets=$($PY tools/bench/make_images.py --small "$SMALL" --large "$LARGE" | tail -1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# time_runs NAME ARGS...: runs `BUILD ARGS...` for each build in turn; "$tmp/out*" is cleared first.
time_runs() {
  local name=$1; shift
  for who in old new; do : > "$tmp/$name.$who"; done
  for r in $(seq 1 "$ROUNDS"); do
    for who in old new; do
      bin=$OLD; [ $who = new ] && bin=$NEW
      rm -f "$tmp"/out*
      t0=$(date +%s.%N)
      rc=0; "$bin" "$@" >/dev/null 2>"$tmp/err" || rc=$?
      # 3 = finished with skipped files; anything else is a failed run, not a time.
      if [ $rc != 0 ] && [ $rc != 3 ]; then
        echo "compare_builds: the $who build failed ($rc): $(tail -3 "$tmp/err")" >&2; exit 1
      fi
      t1=$(date +%s.%N)
      echo "$t0 $t1" >> "$tmp/$name.$who"
    done
  done
  $PY - "$name" "$tmp/$name.old" "$tmp/$name.new" <<'PYEOF'
import statistics, sys
def secs(path):
    return [float(t1) - float(t0) for t0, t1 in (line.split() for line in open(path))]
name, a, b = sys.argv[1], secs(sys.argv[2]), secs(sys.argv[3])
ma, mb = statistics.median(a), statistics.median(b)
print(f"{name}: old {ma:.2f} s, new {mb:.2f} s (medians of {len(a)}; old runs {', '.join(f'{x:.2f}' for x in a)}; new {', '.join(f'{x:.2f}' for x in b)}); new/old speed {ma / mb:.3f}")
PYEOF
}
for set in small-$SMALL large-$LARGE; do
  dir=data/bench/$set
  [ -d "$dir" ] || { echo "compare_builds: $dir missing ($sets)" >&2; exit 1; }
  time_runs "extract $set" extract --model efficientnet_lite0 --data "$dir" --out "$tmp/out.h5" --batch 32 --threads 2
  if [ -n "$BUNDLE" ]; then
    time_runs "predict $set" predict --bundle "$BUNDLE" "$dir" --quiet --csv "$tmp/out.csv" --batch 32 --threads 2
  fi
done
