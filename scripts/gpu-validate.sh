#!/usr/bin/env bash
# The real-GPU validation of joulebench, from prebuilt binaries (no Rust toolchain on
# the GPU machine): every backend, kernel and meter, and a reference sweep at the power
# limit as found. It never changes a power limit, clock or any other GPU setting.
#
# Build the bundle where Rust is, with the test binaries the validation runs (about 40 MB):
#   source scripts/test-env.sh && scripts/build-gpu-bundle.sh BUNDLE -p joulebench-cuda -p joulebench-wgpu
#
# Usage: scripts/gpu-validate.sh BIN_DIR WORK_DIR PART [ARCHIVE_DIR]
#   BIN_DIR      the bundle of scripts/build-gpu-bundle.sh (joulebench, tests/, include/)
#   WORK_DIR     where every log, JSONL, report and plot goes; parts add to it, and a
#                part run again resumes its sweeps (--resume)
#   PART         truth      the measurement-truth check: the main points of the first H200
#                           run with busy windows, --repeat 3, against two uninterrupted
#                           10 s windows per GEMM (J/FLOP within 1%, average power at or
#                           under the enforced limit, run-to-run spread)
#                check      devices (CUDA, NVML and wgpu matched by UUID / PCI id), the
#                           test binaries twice (a race shows as an error that changes),
#                           NVML check mode, the tool's overhead, a wgpu sweep
#                matmul     the reference matmul sweep (scripts/gpu/reference-matmul.toml)
#                attention  the reference attention sweep (scripts/gpu/reference-attention.toml)
#                report     Markdown report, plots, recommendation, summary tables
#                speed      kernel speed, meter off: ours against cuBLAS and the unfused
#                           attention baselines, forward and backward
#                           (scripts/gpu/kernel-speed.toml)
#                all        every part in order
#   ARCHIVE_DIR  when given, WORK_DIR is also packed into ARCHIVE_DIR/joulebench-validate.tar.gz
# Each part takes under 10 minutes on an H100-class GPU. STEP_TIMEOUT_S bounds a step.
set -u

BIN=${1:?usage: scripts/gpu-validate.sh BIN_DIR WORK_DIR PART [ARCHIVE_DIR]}
WORK=${2:?usage: scripts/gpu-validate.sh BIN_DIR WORK_DIR PART [ARCHIVE_DIR]}
PART=${3:?usage: scripts/gpu-validate.sh BIN_DIR WORK_DIR PART [ARCHIVE_DIR]}
ARCHIVE=${4:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "$BIN" && pwd) || { echo "gpu-validate: no such folder $1" >&2; exit 2; }
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
JB="$BIN/joulebench"
STEP_TIMEOUT_S=${STEP_TIMEOUT_S:-600}
LOG="$WORK/steps.log"
export JOULEBENCH_CACHE_DIR="$WORK/cache" RUST_BACKTRACE=1

# The same library set-up as gpu-check.sh (NVRTC, headers, CUDA 13 links), without its steps.
# shellcheck source=scripts/gpu/libraries.sh
source "$HERE/gpu/libraries.sh" "$BIN" "$WORK"

failed=0
step() {
  local name=$1
  shift
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$LOG"
  timeout --signal=INT --kill-after=30 "$STEP_TIMEOUT_S" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  if [ $rc != 0 ]; then
    failed=$((failed + 1))
    tail -n 12 "$WORK/$name.log" | sed 's/^/   | /'
  fi
}

part_check() {
  step environment bash -c 'uname -a; nvidia-smi; nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,compute_cap,memory.total,power.limit,power.default_limit,clocks.max.sm --format=csv'
  step devices "$JB" devices
  step devices-json bash -c "'$JB' devices --json > '$WORK/devices.json'"
  step device-match bash -c "python3 '$HERE/gpu/summarize.py' match '$WORK/devices.json' > '$WORK/device-match.md'"
  for t in "$BIN"/tests/*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    for run in 1 2; do
      step "test-$(basename "$t")-run$run" "$t" --test-threads=1 --nocapture
    done
  done
  step meter-check "$JB" sweep --backend cuda --config "$HERE/gpu/meter-check.toml" --meter check \
    --out "$WORK/meter-check.jsonl" --resume
  step meter-summary bash -c "python3 '$HERE/gpu/summarize.py' meter '$WORK/meter-check.jsonl' > '$WORK/meter-check.md'"
  step overhead-on "$JB" sweep --backend cuda --config "$HERE/gpu/overhead.toml" \
    --out "$WORK/overhead-meter-on.jsonl" --resume
  step overhead-off "$JB" sweep --backend cuda --config "$HERE/gpu/overhead.toml" --meter none \
    --out "$WORK/overhead-meter-off.jsonl" --resume
  step overhead-summary bash -c "python3 '$HERE/gpu/summarize.py' overhead '$WORK/overhead-meter-on.jsonl' '$WORK/overhead-meter-off.jsonl' > '$WORK/overhead.md'"
  step sweep-wgpu "$JB" sweep --backend wgpu --preset quick --out "$WORK/wgpu-quick.jsonl" --resume
}

part_truth() {
  step truth-points "$JB" sweep --backend cuda --config "$HERE/gpu/truth.toml" --repeat 3 \
    --out "$WORK/truth-points.jsonl" --resume
  step truth-long "$JB" sweep --backend cuda --config "$HERE/gpu/truth.toml" --ops matmul \
    --min-window-s 10 --min-windows 2 --stop-rule fixed-count --point-budget-s 120 \
    --out "$WORK/truth-long.jsonl" --resume
  step truth-summary bash -c "python3 '$HERE/gpu/summarize.py' truth '$WORK/truth-points.jsonl' '$WORK/truth-long.jsonl' > '$WORK/truth.md'"
}

part_matmul() {
  step sweep-matmul "$JB" sweep --backend cuda --config "$HERE/gpu/reference-matmul.toml" \
    --out "$WORK/reference-matmul.jsonl" --resume
}

part_attention() {
  step sweep-attention "$JB" sweep --backend cuda --config "$HERE/gpu/reference-attention.toml" \
    --out "$WORK/reference-attention.jsonl" --resume
}

part_report() {
  local files=()
  for f in "$WORK"/reference-*.jsonl "$WORK"/wgpu-quick.jsonl; do [ -s "$f" ] && files+=("$f"); done
  step report "$JB" report "${files[@]}" --format markdown --plots "$WORK/plots" --out "$WORK/report.md"
  step recommend bash -c "'$JB' recommend ${files[*]} --format markdown > '$WORK/recommend.md'"
  step speed bash -c "python3 '$HERE/gpu/summarize.py' speed ${files[*]} > '$WORK/speed.md'"
}

part_speed() {
  step sweep-speed "$JB" sweep --backend cuda --config "$HERE/gpu/kernel-speed.toml" --meter none \
    --out "$WORK/kernel-speed.jsonl" --resume
  step speed-summary bash -c "python3 '$HERE/gpu/summarize.py' speed '$WORK/kernel-speed.jsonl' > '$WORK/kernel-speed.md'"
}

case "$PART" in
  truth) part_truth ;;
  check) part_check ;;
  matmul) part_matmul ;;
  attention) part_attention ;;
  report) part_report ;;
  speed) part_speed ;;
  all) part_truth; part_check; part_matmul; part_attention; part_report; part_speed ;;
  *) echo "gpu-validate: unknown part '$PART' (truth, check, matmul, attention, report, speed, all)" >&2; exit 2 ;;
esac

if [ -n "$ARCHIVE" ]; then
  mkdir -p "$ARCHIVE"
  tar czf "$ARCHIVE/joulebench-validate.tar.gz" -C "$(dirname "$WORK")" --exclude cache "$(basename "$WORK")"
  cp "$LOG" "$ARCHIVE/steps.log" 2>/dev/null || true
fi
echo "gpu-validate: part $PART: $failed step(s) failed; everything is in $WORK"
[ "$failed" = 0 ]
