#!/bin/sh
# A stand-in for a training program, to try `joulebench run` where there is no GPU
# (on the fake device of a test build, as the loop of docs/run.md does). It does no work: it
# sleeps, and says what a training loop says on the FIFO joulebench names in
# JOULEBENCH_PHASE_FIFO — `warmup`, then `train`, then the tokens of each step, then
# `end`. Whatever figures a run of it shows come from the device it runs beside.
#
#   STEPS (default 5) steps of STEP_S seconds (0.1), TOKENS_PER_STEP tokens each
#   (8192: micro-batch 8 × 1024, the gpt2 setting of the loop of docs/run.md).
set -eu
fifo=${JOULEBENCH_PHASE_FIFO:-/dev/null}
steps=${STEPS:-5}
step_s=${STEP_S:-0.1}
tokens=${TOKENS_PER_STEP:-8192}

echo warmup >"$fifo"
sleep 0.3
echo train >"$fifo"
i=0
while [ "$i" -lt "$steps" ]; do
    sleep "$step_s"
    echo "tokens $tokens" >"$fifo"
    i=$((i + 1))
done
echo end >"$fifo"
echo "fake training: $steps steps of $tokens tokens"
