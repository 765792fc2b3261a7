#!/usr/bin/env bash
# One shard of a sharded extraction, as a scheduler task runs it: the Slurm
# recipe (tools/slurm/extract.sbatch) and the Kubernetes one
# (tools/k8s/extract-job.yaml) both run this.
#
# The shard index comes from the scheduler: SLURM_ARRAY_TASK_ID (a Slurm job
# array task), else JOB_COMPLETION_INDEX (a Kubernetes Indexed Job pod);
# `xfer extract --shard auto/N` reads the same variables in the same order.
#
# Settings (environment):
#   N           number of shards (required)
#   MODEL       backbone (required)
#   DATA | LIST the dataset folder, or a list file (one of them, required)
#   SHARDS      folder of the shard files (required; shared by every task)
#   XFER        the xfer binary (default: xfer on PATH)
#   XFER_FLAGS  more flags for `xfer extract` (e.g. "--device cuda --batch 128")
#   XFER_ZOO, ORT_DYLIB_PATH  optional: checked here, so that a node that cannot
#               see them fails at once with one line naming them
#
# Under Slurm, xfer runs with --threads $SLURM_CPUS_PER_TASK (the task's CPUs, not
# the node's) unless XFER_FLAGS has --threads.
#
# Writes $SHARDS/shard-<I>-of-<N>.h5. Safe to run again, as schedulers do on
# retries: an interrupted shard (its .partial file) is continued with
# --resume, a completed one is left as it is (xfer says so). Exit status 0
# when the shard is complete, also when some images were skipped (xfer's
# status 3: they are recorded in the file and carried into the merge), so
# that Slurm's afterok and Kubernetes' completions count it as done.
set -euo pipefail
: "${N:?set N, the number of shards}" "${MODEL:?set MODEL}" "${SHARDS:?set SHARDS, the folder of shard files}"
XFER=${XFER:-xfer}
I=${SLURM_ARRAY_TASK_ID:-${JOB_COMPLETION_INDEX:-}}
if [ -z "$I" ]; then
  echo "extract_shard.sh: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set: run it as a job array task or an Indexed Job pod" >&2
  exit 2
fi
# What this node must see, checked before anything starts: one line each.
node=$(hostname 2>/dev/null || echo '?')
missing() {
  echo "extract_shard.sh on $node: $1 is not there; it must be on a file system every node shares (or in the image)" >&2
  exit 2
}
command -v "$XFER" >/dev/null 2>&1 || missing "the xfer binary '$XFER' (XFER)"
if [ -n "${XFER_ZOO:-}" ] && [ ! -d "$XFER_ZOO" ]; then missing "the zoo '$XFER_ZOO' (XFER_ZOO)"; fi
if [ -n "${ORT_DYLIB_PATH:-}" ] && [ ! -f "$ORT_DYLIB_PATH" ]; then missing "the ONNX Runtime library '$ORT_DYLIB_PATH' (ORT_DYLIB_PATH)"; fi
if [ -n "${DATA:-}" ]; then
  [ -d "$DATA" ] || missing "the photo folder '$DATA' (DATA)"
  input=(--data "$DATA")
elif [ -n "${LIST:-}" ]; then
  [ -f "$LIST" ] || missing "the list file '$LIST' (LIST)"
  input=(--list "$LIST")
else
  echo "extract_shard.sh: set DATA (a folder) or LIST (a list file)" >&2; exit 2
fi
mkdir -p "$SHARDS"
out="$SHARDS/shard-$I-of-$N.h5"
# Arrays that may be empty are expanded as ${a[@]+"${a[@]}"}: bash before 4.4
# (RHEL/CentOS 7) calls "${a[@]}" of an empty array unbound under set -u.
extra=()
if [ ! -e "$out" ] && [ -e "$out.partial" ]; then extra+=(--resume); fi
case " ${XFER_FLAGS:-} " in
  *" --threads "* | *" --threads="*) ;;
  *) if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then extra+=(--threads "$SLURM_CPUS_PER_TASK"); fi ;;
esac
# shellcheck disable=SC2086  # XFER_FLAGS is a list of flags
rc=0; "$XFER" extract --model "$MODEL" "${input[@]}" --out "$out" --shard "auto/$N" ${extra[@]+"${extra[@]}"} ${XFER_FLAGS:-} || rc=$?
if [ "$rc" = 3 ]; then rc=0; fi
exit "$rc"
