# Sourced by scripts/gpu-check.sh and scripts/gpu-validate.sh: makes the CUDA libraries
# and headers findable on a GPU machine, preferring the machine's own CUDA and falling
# back to what the bundle carries. Arguments: BIN_DIR OUT_DIR. Nothing outside OUT_DIR
# is changed.
BIN=${1:?libraries.sh BIN_DIR OUT_DIR}
OUT=${2:?libraries.sh BIN_DIR OUT_DIR}
LIB_NOTES="$OUT/libraries.txt"
: >"$LIB_NOTES"
if [ -d "$BIN/lib" ]; then
  export LD_LIBRARY_PATH="$BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "NVRTC from the bundle: $BIN/lib" >>"$LIB_NOTES"
  # Headers travel with the NVRTC they were taken next to.
  if [ -z "${JOULEBENCH_CUDA_INCLUDE:-}" ] && [ -f "$BIN/include/cuda_fp16.h" ]; then
    export JOULEBENCH_CUDA_INCLUDE="$BIN/include"
  fi
fi
if [ -z "${JOULEBENCH_CUDA_INCLUDE:-}" ]; then
  found=""
  for d in "${CUDA_HOME:-}/include" "${CUDA_PATH:-}/include" /usr/local/cuda/include; do
    if [ -f "$d/cuda_fp16.h" ]; then found=$d; break; fi
  done
  if [ -z "$found" ] && [ -f "$BIN/include/cuda_fp16.h" ]; then
    export JOULEBENCH_CUDA_INCLUDE="$BIN/include"
  fi
fi
echo "CUDA headers: ${JOULEBENCH_CUDA_INCLUDE:-(CUDA_HOME or /usr/local/cuda)}" >>"$LIB_NOTES"
if [ -z "${JOULEBENCH_PTXAS:-}" ] && [ -x "$BIN/ptxas" ] && ! command -v ptxas >/dev/null 2>&1; then
  export JOULEBENCH_PTXAS="$BIN/ptxas"
fi

# joulebench's CUDA bindings load lib<name>.so or lib<name>.so.12. A CUDA 13-only
# toolkit ships lib<name>.so.13, reachable through the unversioned dev link; when that
# link is missing, make one in the output folder (nothing outside it is touched).
resolvable() {
  ldconfig -p 2>/dev/null | grep -qF "$1 (" && return 0
  local d IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do
    if [ -n "$d" ] && [ -e "$d/$1" ]; then return 0; fi
  done
  return 1
}
LINKS="$OUT/lib-links"
for lib in nvrtc cublas cublasLt; do
  if resolvable "lib$lib.so" || resolvable "lib$lib.so.12"; then continue; fi
  for d in "${CUDA_HOME:-/nonexistent}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/targets/sbsa-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
    if [ -e "$d/lib$lib.so.13" ]; then
      mkdir -p "$LINKS"
      ln -sf "$d/lib$lib.so.13" "$LINKS/lib$lib.so"
      echo "lib$lib.so -> $d/lib$lib.so.13 (CUDA 13 library, linked in $LINKS)" >>"$LIB_NOTES"
      break
    fi
  done
done
if [ -d "$LINKS" ]; then export LD_LIBRARY_PATH="$LINKS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$LIB_NOTES"

# Compiled kernels are cached inside the output folder, so a run leaves nothing behind.
export JOULEBENCH_CACHE_DIR="$OUT/cache"
export RUST_BACKTRACE=1

