#!/usr/bin/env bash
# The test command: installs what the tests need (lavapipe, NVRTC, CUDA headers,
# ptxas), then runs every test of the workspace, the benches once in test mode,
# and the lints. Under CI=true a missing prerequisite fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-deps.sh
# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh
# A build from a clean clone gains nothing from incremental state; writing it costs.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
# The test binaries are built, then run several at a time (scripts/run-tests.py) while
# clippy checks the workspace beside them: most of the suite's time is waiting (a local
# Slurm cluster, meters that update every 100 ms), which the lints fill.
echo "== cargo test: build, then run with cargo clippy beside"
python3 scripts/run-tests.py \
  --beside "cargo clippy --quiet --workspace --all-targets -- -D warnings" \
  --workspace --all-targets
echo "== cargo test --doc"
cargo test --workspace --doc
echo "== the test command took ${SECONDS} s"
