#!/usr/bin/env bash
# Checks joulebench on a machine with an NVIDIA GPU and no Rust toolchain, from the
# prebuilt folder scripts/build-gpu-bundle.sh makes: environment, the test binaries (the
# CUDA correctness suite among them), `joulebench devices`, a quick CUDA sweep and its
# report. Every log and JSONL goes into one output folder, each step runs even when an
# earlier one failed, and a summary closes the run.
#
# It never changes power limits, clocks or any other GPU setting: it reads nvidia-smi's
# status and runs the sweep without power caps.
#
# Usage: scripts/gpu-check.sh BIN_DIR [OUT_DIR]
#   BIN_DIR   the bundle (joulebench, tests/, include/, optionally lib/ and ptxas)
#   OUT_DIR   output folder (default: $OUT, else gpu-check-<UTC time>)
# Environment: STEP_TIMEOUT_S (default 1800) bounds each step.
set -u

BIN=${1:?usage: scripts/gpu-check.sh BIN_DIR [OUT_DIR]}
BIN=$(cd "$BIN" && pwd) || { echo "gpu-check: no such folder $1" >&2; exit 2; }
OUT=${2:-${OUT:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-1800}
SUMMARY="$OUT/summary.md"

names=()
statuses=()
durations=()

# run_step NAME COMMAND...: output to $OUT/NAME.log, status recorded, never aborts.
# Commands are bounded by STEP_TIMEOUT_S; shell functions (quick, local) are not.
run_step() {
  local name=$1
  shift
  local log="$OUT/$name.log"
  local t0 rc
  t0=$(date +%s)
  echo "== $name: $*"
  {
    echo "\$ $*"
    echo "# started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$log"
  if ! declare -F "$1" >/dev/null && command -v timeout >/dev/null 2>&1; then
    timeout --signal=INT --kill-after=30 "$STEP_TIMEOUT_S" "$@" >>"$log" 2>&1
  else
    "$@" >>"$log" 2>&1
  fi
  rc=$?
  local dt=$(($(date +%s) - t0))
  local status="ok"
  if [ "$rc" = 124 ]; then
    status="TIMEOUT (${STEP_TIMEOUT_S}s)"
  elif [ "$rc" != 0 ]; then
    status="FAILED (exit $rc)"
  fi
  echo "# exit $rc after ${dt}s" >>"$log"
  names+=("$name")
  statuses+=("$status")
  durations+=("$dt")
  echo "   $status in ${dt}s -> $log"
  if [ "$status" != ok ]; then tail -n 15 "$log" | sed 's/^/   | /'; fi
  return 0
}

# --- libraries: prefer the machine's CUDA, fall back to what the bundle carries -------
# shellcheck source=scripts/gpu/libraries.sh
source "$(dirname "$0")/gpu/libraries.sh" "$BIN" "$OUT"

environment() {
  echo "## host"; uname -a; cat /etc/os-release 2>/dev/null | head -3
  echo "## bundle"; cat "$BIN/MANIFEST.txt" 2>/dev/null || echo "(no MANIFEST.txt)"
  echo "## libraries"; cat "$LIB_NOTES"
  echo "## nvidia-smi (read only)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi
    nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,compute_cap,memory.total,power.limit,power.default_limit,clocks.sm,clocks.max.sm,temperature.gpu,pstate --format=csv
  else
    echo "nvidia-smi not found"
  fi
  echo "## CUDA libraries in the loader cache"
  ldconfig -p 2>/dev/null | grep -E 'libcuda\.|libnvrtc|libcublas' || echo "(none)"
}
run_step environment environment

# --- test binaries ------------------------------------------------------------------
# One thread: GPU tests share one device. --nocapture keeps the suite's per-case lines.
if [ -d "$BIN/tests" ]; then
  for t in "$BIN"/tests/*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    run_step "test-$(basename "$t")" "$t" --test-threads=1 --nocapture
  done
else
  echo "gpu-check: $BIN/tests missing: no test binaries to run" >&2
fi

# --- the CLI --------------------------------------------------------------------------
JB="$BIN/joulebench"
SWEEP="$OUT/sweep-cuda-quick.jsonl"
run_step devices "$JB" devices
run_step sweep-cuda "$JB" sweep --backend cuda --preset quick --out "$SWEEP"
report() { "$JB" report "$SWEEP" --format markdown >"$OUT/report-cuda-quick.md"; }
run_step report report

# --- summary ------------------------------------------------------------------------
failed=0
{
  echo "# joulebench GPU check"
  echo
  echo "- output: \`$OUT\`"
  echo "- bundle: \`$BIN\` ($(sed -n 2p "$BIN/MANIFEST.txt" 2>/dev/null))"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo
  echo "| step | status | seconds | log |"
  echo "|---|---|---|---|"
  for i in "${!names[@]}"; do
    echo "| ${names[$i]} | ${statuses[$i]} | ${durations[$i]} | ${names[$i]}.log |"
    [ "${statuses[$i]}" = ok ] || failed=$((failed + 1))
  done
  echo
  # The correctness suite's verdicts, pulled out of the test logs.
  echo "## correctness cases"
  echo
  echo '```'
  grep -h -E '^(ok|n/a|FAILED) +(cuda-|cublas)' "$OUT"/test-*.log 2>/dev/null || echo "(none ran)"
  grep -h -o 'skipped: .*' "$OUT"/test-*.log 2>/dev/null | sort | uniq -c
  echo '```'
} >"$SUMMARY"
cat "$SUMMARY"
echo
echo "gpu-check: $failed of ${#names[@]} steps failed; everything is in $OUT"
[ "$failed" = 0 ]
