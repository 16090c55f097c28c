#!/usr/bin/env bash
# Runs on the device machine, in the repository root, after every part of packaging/gpu/split.sh
# has arrived in .cache/gpu-parts (see packaging/gpu/README.md): checks and unpacks them, finds the
# CUDA 13 libraries of the machine's PyTorch venv (python -c 'import nvidia'), records them in
# .cache/onnxruntime-gpu/lib/cuda_libs.path, and runs the gpu-check binary (golden figures on
# CUDA, then the benchmark). Output also goes to $OUT/gpu-check.log when $OUT is set.
#
#   packaging/gpu/device.sh            # check + benchmark
#   PYTHON=/path/to/venv/bin/python packaging/gpu/device.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
parts=.cache/gpu-parts
[ -f "$parts/SHA256SUMS" ] || { echo "device.sh: $parts/SHA256SUMS missing: carry the parts first" >&2; exit 2; }
(cd "$parts" && sha256sum -c --quiet SHA256SUMS) || { echo "device.sh: a part is missing or damaged; carry it again" >&2; exit 2; }
stage=.cache/gpu-stage && rm -rf "$stage" && mkdir -p "$stage"
cat "$parts"/part-* | xz -d | tar -xf - -C "$stage"
# Everything but the binary goes where the checkout keeps it.
(cd "$stage" && tar -cf - .cache weights) | tar -xf - -C .
# The binary looks for the checkout at the path it was built in.
built=$(cat "$stage/checkout.path")
if [ "$(readlink -f "$built" 2>/dev/null)" != "$(pwd -P)" ]; then
  [ -e "$built" ] && { echo "device.sh: $built exists and is not this checkout; move it away" >&2; exit 2; }
  mkdir -p "$(dirname "$built")" && ln -s "$(pwd -P)" "$built"
fi
# The CUDA 13 libraries of PyTorch's nvidia-* packages (nvidia/cu13/lib, nvidia/cudnn/lib, ...).
PY=${PYTHON:-python3}
dirs=$("$PY" -c 'import glob, os, nvidia; print("\n".join(d for p in nvidia.__path__ for d in sorted(glob.glob(os.path.join(p, "*", "lib")))))' 2>/dev/null || true)
[ -n "$dirs" ] || { echo "device.sh: $PY cannot import nvidia (PyTorch's CUDA wheels); set PYTHON=<venv>/bin/python" >&2; exit 2; }
printf '%s\n' "$dirs" > .cache/onnxruntime-gpu/lib/cuda_libs.path
echo "== CUDA libraries from:"; cat .cache/onnxruntime-gpu/lib/cuda_libs.path
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
log=${OUT:-.cache}/gpu-check.log
mkdir -p "$(dirname "$log")"
set -o pipefail
env -u ORT_DYLIB_PATH ELPIPS_GPU_CHECK=1 "$stage/gpu-check.bin" --nocapture --test-threads=1 2>&1 | tee "$log"
