#!/usr/bin/env bash
# Builds, on a machine with Rust, everything scripts/gpu-check.sh runs on a GPU machine
# without Rust: the release `joulebench` binary and the release test binaries, copied
# into one folder to carry there, with the CUDA headers the kernels compile against.
#
# Usage: scripts/build-gpu-bundle.sh [DIR] [--with-nvrtc] [--keep-debug] [-p PACKAGE]...
#   DIR            destination folder (default: bin); emptied first
#   --with-nvrtc   also carry NVRTC (libnvrtc.so.12 and its builtins, ~115 MB) and ptxas,
#                  for GPU machines that have a driver but no CUDA toolkit
#   --keep-debug   keep debug info (line tables); by default it is stripped, which makes
#                  the binaries 5-15x smaller (backtraces then show no line numbers)
#   -p PACKAGE     test binaries of these packages only (default: the whole workspace)
#
# NVRTC, headers and ptxas are taken from the environment scripts/test-env.sh sets up
# (LD_LIBRARY_PATH, JOULEBENCH_CUDA_INCLUDE, JOULEBENCH_PTXAS); source it first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=bin
WITH_NVRTC=0
KEEP_DEBUG=0
PACKAGES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --with-nvrtc) WITH_NVRTC=1 ;;
    --keep-debug) KEEP_DEBUG=1 ;;
    -p|--package) shift; PACKAGES+=("-p" "${1:?-p needs a package name}") ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "build-gpu-bundle: unknown option $1" >&2; exit 2 ;;
    *) DIR=$1 ;;
  esac
  shift
done
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=(--workspace)

cd "$ROOT"
case "$DIR" in /*) ;; *) DIR="$ROOT/$DIR" ;; esac
if [ -e "$DIR" ] && [ ! -f "$DIR/MANIFEST.txt" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
  echo "build-gpu-bundle: $DIR exists and is not a bundle; refusing to empty it" >&2
  exit 2
fi
rm -rf "$DIR"
mkdir -p "$DIR/tests"

echo "build-gpu-bundle: building the release joulebench binary"
cargo build --release --bin joulebench

echo "build-gpu-bundle: building release test binaries (${PACKAGES[*]})"
JSON=$(mktemp)
trap 'rm -f "$JSON"' EXIT
cargo test --no-run --release --message-format=json "${PACKAGES[@]}" >"$JSON"

# One line per test executable: <package>__<target>\t<path>. Package names come from the
# package id ("path+file:///…/crates/cuda#joulebench-cuda@0.1.0" or "…#0.1.0").
python3 - "$JSON" >"$DIR/tests/.list" <<'PY'
import json, sys, re
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    pid = m.get("package_id", "")
    frag = pid.split("#")[-1]
    pkg = frag.split("@")[0] if "@" in frag else re.sub(r"/$", "", pid.split("#")[0]).split("/")[-1]
    name = f"{pkg}__{m['target']['name']}"
    if name in seen:
        continue
    seen.add(name)
    print(f"{name}\t{m['executable']}")
PY

while IFS=$'\t' read -r name path; do
  cp "$path" "$DIR/tests/$name"
done <"$DIR/tests/.list"
rm -f "$DIR/tests/.list"
cp target/release/joulebench "$DIR/joulebench"
if [ "$KEEP_DEBUG" = 0 ]; then
  if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$DIR/joulebench" "$DIR"/tests/*
  else
    echo "build-gpu-bundle: strip not found: binaries keep their debug info" >&2
  fi
fi

if [ -n "${JOULEBENCH_CUDA_INCLUDE:-}" ] && [ -f "$JOULEBENCH_CUDA_INCLUDE/cuda_fp16.h" ]; then
  cp -r "$JOULEBENCH_CUDA_INCLUDE" "$DIR/include"
else
  echo "build-gpu-bundle: JOULEBENCH_CUDA_INCLUDE not set: the bundle carries no CUDA headers" >&2
fi

if [ "$WITH_NVRTC" = 1 ]; then
  nvrtc=""
  IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
  for d in "${dirs[@]}"; do
    if [ -n "$d" ] && [ -f "$d/libnvrtc.so.12" ]; then nvrtc=$d; break; fi
  done
  if [ -z "$nvrtc" ]; then
    echo "build-gpu-bundle: --with-nvrtc: libnvrtc.so.12 is not on LD_LIBRARY_PATH (source scripts/test-env.sh)" >&2
    exit 1
  fi
  mkdir -p "$DIR/lib"
  cp "$nvrtc"/libnvrtc.so.12 "$nvrtc"/libnvrtc-builtins.so.* "$DIR/lib/"
  if [ -n "${JOULEBENCH_PTXAS:-}" ] && [ -x "$JOULEBENCH_PTXAS" ]; then
    cp "$JOULEBENCH_PTXAS" "$DIR/ptxas"
  fi
fi

{
  echo "joulebench GPU bundle"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
  echo "rustc: $(rustc --version)"
  echo "files:"
  (cd "$DIR" && find . -type f ! -path './include/*' | sort | sed 's/^/  /')
} >"$DIR/MANIFEST.txt"

echo "build-gpu-bundle: $(find "$DIR/tests" -type f | wc -l) test binaries in $DIR ($(du -sh "$DIR" | cut -f1))"
echo "build-gpu-bundle: on the GPU machine run: scripts/gpu-check.sh $DIR [OUT_DIR]"
