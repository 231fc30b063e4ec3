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
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc
