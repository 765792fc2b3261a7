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
if [ -n "${DATA:-}" ]; then input=(--data "$DATA"); elif [ -n "${LIST:-}" ]; then input=(--list "$LIST"); else
  echo "extract_shard.sh: set DATA (a folder) or LIST (a list file)" >&2; exit 2
fi
mkdir -p "$SHARDS"
out="$SHARDS/shard-$I-of-$N.h5"
resume=()
if [ ! -e "$out" ] && [ -e "$out.partial" ]; then resume=(--resume); fi
# shellcheck disable=SC2086  # XFER_FLAGS is a list of flags
rc=0; "$XFER" extract --model "$MODEL" "${input[@]}" --out "$out" --shard "auto/$N" "${resume[@]}" ${XFER_FLAGS:-} || rc=$?
if [ "$rc" = 3 ]; then rc=0; fi
exit "$rc"
