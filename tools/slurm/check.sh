#!/usr/bin/env bash
# The Slurm recipe on a real Slurm: installs slurm-wlm and munge (apt), starts a
# single-node Slurm here (tools/slurm/local_slurm.sh), then does what docs/clusters.md's
# "Sharded extraction" section tells a Slurm user to do, on real photos:
#   1. submits docs/clusters.md's command (N=4, CPU partition, no GPU);
#   2. kills one array task mid-run with SIGKILL: its merge job must end by
#      itself (--kill-on-invalid-dep) instead of pending forever;
#   3. recovers the documented way (the same command again): finished shards
#      are kept, the killed one resumes, a new merge runs;
#   4. checks that the merged file equals an unsharded `xfer extract` (every
#      dataset bit for bit, every attribute), and the logs' names;
#   5. the wrong ways in: `sbatch extract.sbatch`, too many CPUs per task, a node
#      that cannot see the zoo;
# then stops the daemons it started, by pid. Run by tools/test.sh; needs root
# (slurmd). Without root or apt it prints SKIPPED and exits 0.
#   tools/slurm/check.sh [XFER_BINARY]      (default target/release/xfer)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
say() { printf '\033[1mslurm check:\033[0m %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }
skip() { say "SKIPPED: $* — the Slurm recipe was NOT tested"; exit 0; }

[ "$(id -u)" = 0 ] || skip "needs root (slurmd runs jobs as their users)"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge with apt"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge; } >/tmp/xfer-slurm-apt.log 2>&1 ||
    skip "apt could not install slurm-wlm and munge (log: /tmp/xfer-slurm-apt.log)"
fi
xfer_bin=$(realpath "${1:-target/release/xfer}")
[ -x "$xfer_bin" ] || fail "$xfer_bin not built (cargo build --release)"
lite=onnx/efficientnet_lite0.onnx
[ -f "$lite" ] || fail "$lite missing: run tools/setup.sh"

t=$(mktemp -d /tmp/xfer-slurm.XXXXXX)
passed=0
cleanup() {  # the daemons always; the folder only after a pass (else kept for its logs)
  tools/slurm/local_slurm.sh stop "$t/slurm" || true
  if [ "$passed" = 1 ]; then rm -rf "$t"; else say "files and logs kept in $t"; fi
}
trap cleanup EXIT
eval "$(tools/slurm/local_slurm.sh start "$t/slurm")"
say "Slurm $(sinfo --version | cut -d' ' -f2) up: $(sinfo -h -o '%N %c CPUs %T')"

# Real photos: the stamps, eight copies of each, and one broken file (skipped,
# status 3). With CPUS=1 (one ONNX Runtime thread) a task of 176 photos runs a few
# seconds, long enough to be killed mid-run however fast the machine.
photos=$t/photos
for c in flowers fruit vegetables vehicles; do
  mkdir -p "$photos/$c"
  for f in data/stamps/$c/*; do
    for k in 1 2 3 4 5 6 7 8; do cp "$f" "$photos/$c/$k-$(basename "$f")"; done
  done
done
: > "$photos/fruit/broken.jpg"
n_photos=$(find "$photos" -type f | wc -l)

# The unsharded reference.
"$xfer_bin" extract --model efficientnet_lite0 --data "$photos" --out "$t/whole.h5" --quiet || [ $? = 3 ] ||
  fail "the unsharded extraction failed"

# 1. docs/clusters.md's command (xfer on PATH, as a user has it), from a work folder.
mkdir -p "$t/bin" "$t/work"
ln -s "$xfer_bin" "$t/bin/xfer"
submit() {
  (cd "$t/work" && PATH="$t/bin:$PATH" N=4 MODEL=efficientnet_lite0 DATA="$photos" OUT="$t/feats/train_lite0.h5" \
     CPUS=1 XFER_PROGRESS_INTERVAL=0.2 bash "$repo/tools/slurm/extract.sbatch")
}
out1=$(submit) || fail "submitting: $out1"
echo "$out1"
jid=$(echo "$out1" | sed -n 's/.*as job array \([0-9]*\) .*/\1/p')
mid=$(echo "$out1" | sed -n 's/.* the merge as job \([0-9]*\).*/\1/p')
[ -n "$jid" ] && [ -n "$mid" ] || fail "no job ids in: $out1"

state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1; }
reason() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*Reason=\([^ ]*\).*/\1/p' | head -1; }
wait_gone() {  # until none of the jobs is pending or running
  local i
  for i in $(seq 600); do
    if [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; then return 0; fi
    sleep 0.2
  done
  squeue -j "$1"; fail "jobs $1 still queued after 120 s"
}

# 2. Kill task 1 once its log shows it has done at least a fifth of its photos.
log1="$t/work/xfer-extract-${jid}_1.out"
for i in $(seq 600); do
  if [ -f "$log1" ] && grep -Eq 'extract: [0-9]+/[0-9]+ images \(([2-9][0-9]) %\)' "$log1"; then break; fi
  [ "$(state "${jid}_1")" = COMPLETED ] && fail "task 1 finished before it could be killed; make its shard bigger"
  sleep 0.1
done
scancel --signal=KILL "${jid}_1"
wait_gone "$jid,$mid"
s1=$(state "${jid}_1")
[ "$s1" != COMPLETED ] || fail "task 1 completed although it was killed"
ms=$(state "$mid"); mr=$(reason "$mid")
say "task 1 after SIGKILL: $s1; merge job: $ms ($mr)"
[ "$ms" = CANCELLED ] || fail "the merge job is $ms ($mr): it should have ended by itself"
[ ! -e "$t/feats/train_lite0.h5" ] || fail "a merged file exists although a task was killed"

# 3. The documented recovery: the same command again.
out2=$(submit) || fail "resubmitting: $out2"
jid2=$(echo "$out2" | sed -n 's/.*as job array \([0-9]*\) .*/\1/p')
mid2=$(echo "$out2" | sed -n 's/.* the merge as job \([0-9]*\).*/\1/p')
wait_gone "$jid2,$mid2"
[ "$(state "$mid2")" = COMPLETED ] || { cat "$t/work/xfer-merge-$mid2.out" || true; fail "the second merge is $(state "$mid2")"; }
for i in 0 2 3; do
  grep -q "nothing to do" "$t/work/xfer-extract-${jid2}_$i.out" || { cat "$t/work/xfer-extract-${jid2}_$i.out"; fail "task $i did not find its shard complete"; }
done
grep -q "resum" "$t/work/xfer-extract-${jid2}_1.out" || { cat "$t/work/xfer-extract-${jid2}_1.out"; fail "task 1 did not resume its shard"; }
say "rerun: shards 0, 2, 3 kept; shard 1: $(grep -o 'resumed after [0-9]* rows' "$t/work/xfer-extract-${jid2}_1.out" | head -1)"
if grep -q "xfer merge --out" "$t"/work/xfer-extract-*.out; then fail "a task log tells the user to run xfer merge"; fi

# 4. The merged file equals the unsharded one.
.venv/bin/python tools/h5_same.py "$t/whole.h5" "$t/feats/train_lite0.h5" || fail "the merged file differs from the unsharded one"
# Logs: one per task and attempt-appending, the merge's named by its job id.
ls "$t/work" | grep -Eq "^xfer-extract-${jid}_[0-3]\.out$" || fail "task logs are not named xfer-extract-<array>_<task>.out"
[ -f "$t/work/xfer-merge-$mid2.out" ] || fail "no xfer-merge-$mid2.out"
if ls "$t/work" | grep -q -e '4294967294' -e 'xfer-xfer'; then fail "odd log names: $(ls "$t/work")"; fi

# 5. The wrong ways in.
(cd "$t/work" && N=4 MODEL=efficientnet_lite0 DATA="$photos" OUT="$t/x.h5" PATH="$t/bin:$PATH" \
   sbatch --wait --output=direct.out "$repo/tools/slurm/extract.sbatch") >/dev/null 2>&1 || true
grep -q "submits itself" "$t/work/direct.out" || { cat "$t/work/direct.out"; fail "sbatch extract.sbatch did not say how to submit"; }
# Inside an allocation (salloc, an interactive job) the command submits as on a login node.
o=$(cd "$t/work" && PATH="$t/bin:$PATH" N=2 MODEL=efficientnet_lite0 DATA="$photos" OUT="$t/s.h5" \
      salloc -n1 bash "$repo/tools/slurm/extract.sbatch" 2>&1) || fail "submitting inside salloc: $o"
sjid=$(echo "$o" | sed -n 's/.*as job array \([0-9]*\) .*/\1/p')
smid=$(echo "$o" | sed -n 's/.* the merge as job \([0-9]*\).*/\1/p')
[ -n "$sjid" ] && [ -n "$smid" ] || fail "inside salloc: $o"
scancel "$sjid" "$smid"
too_many=$(($(nproc) + 1))
if o=$(cd "$t/work" && CPUS=$too_many PATH="$t/bin:$PATH" N=2 MODEL=efficientnet_lite0 DATA="$photos" OUT="$t/y.h5" \
        bash "$repo/tools/slurm/extract.sbatch" 2>&1); then fail "CPUS=$too_many was accepted: $o"; fi
echo "$o" | grep -q "largest node has" || fail "CPUS=$too_many: $o"
if o=$(SLURM_ARRAY_TASK_ID=0 N=2 MODEL=efficientnet_lite0 DATA="$photos" SHARDS="$t/z" XFER="$xfer_bin" \
        XFER_ZOO=/nonexistent/zoo tools/extract_shard.sh 2>&1); then fail "a task without its zoo ran: $o"; fi
[ "$(echo "$o" | wc -l)" = 1 ] && echo "$o" | grep -q "'/nonexistent/zoo' (XFER_ZOO) is not there" || fail "zoo missing: $o"
# bash before 4.4 calls an empty "${a[@]}" unbound under set -u: every array that
# may be empty is expanded guarded in the recipe's scripts.
if grep -nE '"\$\{(extra|gres|resume)\[@\]\}"' tools/extract_shard.sh tools/slurm/extract.sbatch | grep -v '+"'; then
  fail "an unguarded expansion of an array that may be empty (bash < 4.4)"
fi
passed=1
say "passed: $n_photos photos, 4 shards, task 1 killed and recovered by rerunning the command"
