#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, entirely inside one directory: munged,
# slurmctld and slurmd with a minimal slurm.conf, no systemd and nothing written
# under /etc. For trying the job-array script before a real cluster, and for the
# test that submits it (tests/slurm.rs). Needs root and Debian's slurm-wlm and munge.
#
#   scripts/slurm/local-cluster.sh start DIR   start it (DIR is created), wait for the node
#   scripts/slurm/local-cluster.sh stop DIR    stop every daemon it started in DIR
#   scripts/slurm/local-cluster.sh env DIR     print the export line for sbatch, squeue…
#
# After `start`, point the Slurm commands at it: export SLURM_CONF=DIR/slurm.conf
# Ports: free ones are picked, or set SLURMCTLD_PORT and SLURMD_PORT.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin # the daemons, for users whose PATH lacks them

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

say() { echo "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

pid_alive() { local p; p=$(cat "$1" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

stop_pidfile() {
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null) || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

env_of() { { tr '\0' '\n' <"$1/environ"; } 2>/dev/null || true; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    if port_free "$p" && port_free "$((p + 1))"; then echo "$p"; return; fi
  done
  die "no free port found"
}

# `slurmd -C` prints this machine as Slurm sees it; the node line must match it,
# or slurmctld drains the node.
node_hardware() {
  slurmd -C | head -n1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' '
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (slurmd runs jobs as their users)"
  for b in munged slurmctld slurmd sbatch scontrol sinfo; do
    command -v "$b" >/dev/null || die "$b not found: install Debian's slurm-wlm and munge"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid_alive "$dir/slurmctld.pid" || pid_alive "$dir/munge/munged.pid"; then
    die "a cluster already runs in $dir (stop it first)"
  fi
  # munged wants every directory above its socket searchable, and its key private
  chmod 755 "$dir"
  local up=$dir
  while up=$(dirname "$up") && [ "$up" != / ]; do
    [ -n "$(find "$up" -maxdepth 0 -perm -o+x)" ] ||
      die "munged needs every directory above its socket searchable by all: chmod o+x $up (or choose another DIR)"
  done
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 755 "$dir/munge"
  if [ ! -f "$dir/munge/munge.key" ]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 400 "$dir/munge/munge.key"
  munged --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" \
    --log-file="$dir/log/munged.log" || die "munged did not start: $(tail -n3 "$dir/log/munged.log" 2>/dev/null)"

  local ctld_port=${SLURMCTLD_PORT:-$(free_port)}
  local d_port=${SLURMD_PORT:-$((ctld_port + 1))}
  cat >"$dir/slurm.conf" <<EOF
# A one-node cluster for trying joulebench's job arrays (scripts/slurm/local-cluster.sh).
ClusterName=joulebench-local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 $(node_hardware) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" || die "slurmctld did not start: $(tail -n5 "$dir/log/slurmctld.log" 2>/dev/null)"
  slurmd -f "$SLURM_CONF" -N localhost || die "slurmd did not start: $(tail -n5 "$dir/log/slurmd.log" 2>/dev/null)"
  local state=""
  for _ in $(seq 150); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  if [ "$state" != idle ]; then
    say "node state '${state:-unknown}' after 30 s; last log lines:"
    tail -n5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
  fi
  say "running in $dir (slurmctld port $ctld_port); export SLURM_CONF=$SLURM_CONF"
}

stop() {
  dir=$(cd "$dir" 2>/dev/null && pwd) || return 0
  if [ -f "$dir/slurm.conf" ] && pid_alive "$dir/slurmctld.pid"; then
    # jobs first: slurmstepd outlives slurmd by design
    SLURM_CONF=$dir/slurm.conf timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1 || true
    for _ in $(seq 100); do
      [ -z "$(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
    SLURM_CONF=$dir/slurm.conf timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    for _ in $(seq 50); do
      pid_alive "$dir/slurmctld.pid" || pid_alive "$dir/slurmd.pid" || break
      sleep 0.1
    done
  fi
  stop_pidfile "$dir/slurmd.pid"
  stop_pidfile "$dir/slurmctld.pid"
  stop_pidfile "$dir/munge/munged.pid"
  # whatever a job of this cluster left behind: its processes carry this SLURM_CONF
  local p
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = $$ ] && continue
    env_of "$p" | grep -qx "SLURM_CONF=$dir/slurm.conf" || continue
    if [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || env_of "$p" | grep -q '^SLURM_JOB_ID='; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  say "stopped the cluster in $dir"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$(cd "$dir" && pwd)/slurm.conf" ;;
  *) usage ;;
esac
