#!/usr/bin/env bash
# A real single-node Slurm on this machine, for testing the recipe: munged,
# slurmctld and slurmd (Debian's slurm-wlm and munge), every file of theirs in
# one folder, on ports of their own, started and stopped by pid (no systemd).
#
#   tools/slurm/local_slurm.sh start DIR   # prints the SLURM_CONF line to export
#   tools/slurm/local_slurm.sh stop DIR    # stops the daemons it started
#
# The node is called "localhost" (slurmd -N localhost: the host name need not be
# "localhost") with this machine's CPUs and memory; one partition "debug".
# Needs root (slurmd runs jobs as their users) and the packages slurm-wlm and munge:
# `tools/slurm/check.sh` installs them.
set -euo pipefail
cmd=${1:?usage: local_slurm.sh start|stop DIR}
dir=${2:?usage: local_slurm.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "$cmd" = stop ]; then
  stop_pidfile "$dir/slurmd.pid"
  stop_pidfile "$dir/slurmctld.pid"
  stop_pidfile "$dir/munge/munged.pid"
  exit 0
fi
[ "$cmd" = start ] || { echo "local_slurm.sh: unknown command $cmd (start|stop)" >&2; exit 2; }

# A free pair of ports (another local Slurm or a leftover may hold the first).
port=$((20000 + RANDOM % 20000))
mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
chmod 0700 "$dir/munge"
if [ ! -s "$dir/munge/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 0400 "$dir/munge/munge.key"
# --force: munged refuses a key or socket folder under /tmp (sticky, world-writable) otherwise.
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
  --seed-file="$dir/munge/munged.seed"

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
user=$(id -un)
cat > "$dir/slurm.conf" <<CONF
ClusterName=xfertest
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# Keep finished jobs visible to scontrol show job for 10 minutes.
MinJobAge=600
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 100); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "local_slurm.sh: the node did not come up idle in 20 s; logs: $dir/slurmctld.log $dir/slurmd.log" >&2
sinfo >&2 || true
tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
