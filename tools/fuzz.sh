#!/usr/bin/env bash
# Fuzzes xfer's input paths with cargo-fuzz (libFuzzer), on the stable toolchain.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Targets (fuzz/fuzz_targets/): decode bundle manifest feature_meta kaggle_id list
# shard_meta manifest_name model_graph
# (default: all, one after another; 600 s each). Installs cargo-fuzz if it is
# missing. The corpus grows in fuzz/corpus/<target> (seeded from
# fuzz/seeds/<target>), findings go to fuzz/artifacts/<target>, libFuzzer's log
# to fuzz/logs/<target>.log. Prints executions, exec/s, corpus size and
# findings per target; exits 1 if any target found a crash, OOM or timeout.
#
# Environment:
#   FUZZ_JOBS=N     run N targets at the same time (default 1)
#   FUZZ_KEEP_GOING=1  libFuzzer's fork mode: keep fuzzing after a finding
#                   (-fork=1 -ignore_crashes=1 …) instead of stopping at the first
#   XFER_FUZZ_STRICT=1  also flag silent wrong results (fuzz/src/checks.rs)
#   FUZZ_NICE=N     nice level (default 15)
#
# Why RUSTC_BOOTSTRAP=1: cargo-fuzz passes -Z flags (sanitizer coverage), which
# the stable compiler accepts only with it. `-s none`: no AddressSanitizer (it is
# for unsafe code; xfer has none on these paths, and it halves the speed);
# `-a`: debug assertions and overflow checks on, so silent wrap-arounds panic.
set -uo pipefail

cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
all=(decode bundle manifest feature_meta kaggle_id list shard_meta manifest_name model_graph)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
jobs=${FUZZ_JOBS:-1}
nice_level=${FUZZ_NICE:-15}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz…" >&2
    cargo install cargo-fuzz || exit 2
fi
export RUSTC_BOOTSTRAP=1
flags=(-s none -a)

echo "building fuzz targets…" >&2
nice -n "$nice_level" cargo fuzz build "${flags[@]}" >&2 || { echo "build failed" >&2; exit 2; }

max_len() {
    case $1 in
        decode) echo 65536 ;;
        bundle | model_graph) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

mkdir -p fuzz/logs
run_one() {
    local t=$1
    local corpus=fuzz/corpus/$t art=fuzz/artifacts/$t log=fuzz/logs/$t.log
    mkdir -p "$corpus" "$art"
    local dirs=("$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
    local extra=()
    if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
        extra=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    fi
    ls "$art" >"$log.before" 2>/dev/null
    nice -n "$nice_level" cargo fuzz run "${flags[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 "${extra[@]}" \
        >"$log" 2>&1
    echo $? >"$log.rc"
}

i=0
for t in "${targets[@]}"; do
    run_one "$t" &
    i=$((i + 1))
    if [ $((i % jobs)) -eq 0 ]; then wait; fi
done
wait

status=0
printf '%-13s %12s %9s %9s %7s %s\n' target executions exec/s seconds corpus findings
for t in "${targets[@]}"; do
    log=fuzz/logs/$t.log
    # Plain mode: "stat::number_of_executed_units: N"; fork mode: the last "#N: … exec/s: E" line.
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
    [ -z "$took" ] && took=$(grep -o 'time: [0-9]*s' "$log" | tail -1 | tr -dc 0-9)
    if [ -z "$execs" ]; then
        # fork mode: the status line's exec/s is the last job's; average over the run
        execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
        [ -n "$execs" ] && [ "${took:-0}" -gt 0 ] && eps=$((execs / took))
    fi
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    new=$(comm -13 <(sort "$log.before") <(ls fuzz/artifacts/"$t" | sort) | grep -E '^(crash|oom|timeout|leak|slow-unit)-' || true)
    rc=$(cat "$log.rc")
    findings=$(echo "$new" | grep -cE '^(crash|oom|timeout)-' || true)
    [ "$rc" != 0 ] && [ "$findings" = 0 ] && findings="exit $rc (see $log)"
    printf '%-13s %12s %9s %9s %7s %s\n' "$t" "${execs:-?}" "${eps:-?}" "${took:-?}" "$corpus" "$findings"
    for f in $new; do echo "    fuzz/artifacts/$t/$f"; done
    if [ "$findings" != 0 ]; then status=1; fi
done
exit $status
