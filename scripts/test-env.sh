# Source this file: it points the tests at lavapipe and at the NVRTC wheels that
# scripts/setup-test-deps.sh installs.
#   WGPU_BACKEND=vulkan            wgpu must not fall back to GL silently
#   JOULEBENCH_CUDA_INCLUDE        CUDA headers (cuda_fp16.h, cuda_bf16.h, cuda_fp8.h…)
#   JOULEBENCH_PTXAS               ptxas, for the resource report of every kernel
#   LD_LIBRARY_PATH                gains the directory of libnvrtc.so.12
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
# Mesa's Vulkan loader complains on every start without a runtime directory.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/joulebench-runtime-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
_jb_nv=$(${PYTHON:-python3} -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0] + "/x"))' 2>/dev/null || true)
if [ -n "${_jb_nv}" ] && [ -d "${_jb_nv}/cuda_nvrtc/lib" ]; then
  export LD_LIBRARY_PATH="${_jb_nv}/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export JOULEBENCH_CUDA_INCLUDE=${JOULEBENCH_CUDA_INCLUDE:-${_jb_nv}/cuda_runtime/include}
  export JOULEBENCH_PTXAS=${JOULEBENCH_PTXAS:-${_jb_nv}/cuda_nvcc/bin/ptxas}
fi
unset _jb_nv
