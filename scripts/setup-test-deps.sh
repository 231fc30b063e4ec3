#!/usr/bin/env bash
# Installs what the test suite needs on a machine without a GPU, when missing:
#   - Slurm and munge (Debian's slurm-wlm, munge), for the job-array test;
#   - Mesa's lavapipe (Vulkan on the CPU), so the wgpu kernels run for real;
#   - NVRTC, the CUDA headers and ptxas from NVIDIA's PyPI wheels (pinned), so the
#     CUDA kernels compile for real and `ptxas -v` reports their resources.
# Needs root (or sudo) for apt-get. Safe to run again: it skips what is present.
set -euo pipefail

NVRTC_VERSION=12.9.86
CUDART_VERSION=12.9.79
NVCC_VERSION=12.9.86

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

have_lavapipe() {
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ldconfig -p | grep -q 'libvulkan.so.1'
}
if ! have_lavapipe; then
  echo "setup: installing Mesa lavapipe (mesa-vulkan-drivers, libvulkan1)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

# Slurm and munge for tests/slurm.rs, which starts a one-node cluster in a temp dir
# (scripts/slurm/local-cluster.sh); no daemon is started or enabled here.
have_slurm() {
  for b in munged slurmctld slurmd sbatch squeue scontrol scancel; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
  done
}
if ! have_slurm; then
  echo "setup: installing Slurm and munge (slurm-wlm, munge)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi

PY=${PYTHON:-python3}
if ! $PY - <<PYEOF 2>/dev/null
import importlib.metadata as m
want = {"nvidia-cuda-nvrtc-cu12": "$NVRTC_VERSION", "nvidia-cuda-runtime-cu12": "$CUDART_VERSION", "nvidia-cuda-nvcc-cu12": "$NVCC_VERSION"}
assert all(m.version(k) == v for k, v in want.items())
PYEOF
then
  echo "setup: installing NVRTC, CUDA headers and ptxas wheels"
  $PY -m pip install -q --disable-pip-version-check \
    "nvidia-cuda-nvrtc-cu12==$NVRTC_VERSION" \
    "nvidia-cuda-runtime-cu12==$CUDART_VERSION" \
    "nvidia-cuda-nvcc-cu12==$NVCC_VERSION" 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
echo "setup: test dependencies present"
