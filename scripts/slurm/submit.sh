#!/usr/bin/env bash
# Submit a joulebench job array: one task per node (or per GPU type), each measuring
# its node's GPUs into RESULTS/RUN/<task>.jsonl (see sweep-array.sbatch).
#
#   scripts/slurm/submit.sh --results /shared/joulebench --run h100-survey \
#     --partition gpu --gpus 8 --time 04:00:00 --array 0-3 --backend cuda --preset standard
#
# Options:
#   --results DIR        results directory on storage every node sees (required)
#   --run NAME           run name: tasks write DIR/NAME/<task>.jsonl (default: joulebench-<date>)
#   --array SPEC         array indices, e.g. 0-3 or 1,3 (default: one per --sim-profiles entry, else 0)
#   --partition NAME     Slurm partition
#   --gpus N             GPUs per node (--gpus-per-node); each task measures all of them
#   --time T             time limit per task (e.g. 02:00:00)
#   --backend NAME       cuda, wgpu, sim or auto (default: auto)
#   --preset NAME        quick or standard (default: quick)
#   --config FILE        a sweep config (TOML) instead of a preset; every node must read it
#   --devices LIST       the node's GPUs: all (default), a list (0,2), or one
#   --sim-profiles LIST  simulated device profile per task (sim-h100,sim-a100,…)
#   --sim-devices N      simulated GPUs per task
#   --joulebench PATH    the joulebench binary on the nodes (default: joulebench on PATH)
#   --shared             do not ask for whole nodes (by default a task gets its node
#                        alone: another job's work would show in the GPUs' energy)
#   --sbatch "ARGS"      more sbatch options (split on spaces), e.g. "--account=x --qos=y"
#   --dry-run            print the sbatch command instead of running it
#   -- FLAGS…            the rest is passed to every task's sweep (e.g. --power-caps default,80%)
#
# Prints the job id on stdout. To continue a partly failed array, submit again with the
# same --results, --run and sweep options, and --array set to the indices that failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "submit: $*" >&2; exit 2; }
need() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi; }

results="" run="joulebench-$(date +%Y%m%d-%H%M%S)" array="" partition="" gpus="" time_limit=""
backend=auto preset="" config="" devices=all profiles="" sim_devices="" bin="${JOULEBENCH:-joulebench}"
exclusive=1 sbatch_extra="" dry_run=0 sweep_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --results) need "$@"; results=$2; shift 2 ;;
    --run) need "$@"; run=$2; shift 2 ;;
    --array) need "$@"; array=$2; shift 2 ;;
    --partition) need "$@"; partition=$2; shift 2 ;;
    --gpus) need "$@"; gpus=$2; shift 2 ;;
    --time) need "$@"; time_limit=$2; shift 2 ;;
    --backend) need "$@"; backend=$2; shift 2 ;;
    --preset) need "$@"; preset=$2; shift 2 ;;
    --config) need "$@"; config=$2; shift 2 ;;
    --devices) need "$@"; devices=$2; shift 2 ;;
    --sim-profiles) need "$@"; profiles=$2; shift 2 ;;
    --sim-devices) need "$@"; sim_devices=$2; shift 2 ;;
    --joulebench) need "$@"; bin=$2; shift 2 ;;
    --shared) exclusive=0; shift ;;
    --sbatch) need "$@"; sbatch_extra=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; sweep_args=("$@"); break ;;
    -h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -n "$results" ] || die "--results DIR is required: a directory every node can write"
[ -z "$preset" ] || [ -z "$config" ] || die "--preset and --config exclude each other"
case $run in */* | "") die "--run '$run' must be a plain name" ;; esac
results=$(realpath -m "$results")
if [ -n "$config" ]; then
  [ -r "$config" ] || die "--config $config cannot be read"
  config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
fi
if [ -z "$array" ]; then
  if [ -n "$profiles" ]; then
    IFS=, read -ra p <<<"$profiles"
    array="0-$((${#p[@]} - 1))"
  else
    array=0
  fi
fi
case $bin in */*) bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") ;; esac

cmd=(sbatch --parsable --array="$array" --job-name="$run"
  --output="$results/$run/logs/%A_%a.out" --chdir="$results/$run")
[ -n "$partition" ] && cmd+=(--partition="$partition")
[ -n "$gpus" ] && cmd+=(--gpus-per-node="$gpus")
[ -n "$time_limit" ] && cmd+=(--time="$time_limit")
[ "$exclusive" = 1 ] && cmd+=(--exclusive)
if [ -n "$sbatch_extra" ]; then
  read -ra extra <<<"$sbatch_extra"
  cmd+=("${extra[@]}")
fi
cmd+=("$here/sweep-array.sbatch")

# The job reads its parameters from the environment sbatch exports (values may hold
# commas, which --export=NAME=VALUE cannot carry).
export JB_RESULTS="$results" JB_RUN="$run" JB_BACKEND="$backend" JB_DEVICES="$devices" JOULEBENCH="$bin"
export JB_PRESET="$preset" JB_CONFIG="$config" JB_SIM_PROFILES="$profiles" JB_SIM_DEVICES="$sim_devices"
export JB_SWEEP_ARGS="${sweep_args[*]}"

if [ "$dry_run" = 1 ]; then
  env | grep -E '^(JB_|JOULEBENCH=)' | sort >&2
  echo "${cmd[*]}"
  exit 0
fi
mkdir -p "$results/$run/logs" # Slurm writes the logs there, and does not create it
job=$("${cmd[@]}")
job=${job%%;*}
echo "submit: job $job, tasks $array, run $run: results in $results/$run/<task>.jsonl, logs in $results/$run/logs/" >&2
echo "submit: when it ends: scripts/slurm/collect.sh $results/$run" >&2
echo "$job"
