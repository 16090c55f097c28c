#!/usr/bin/env bash
# Packs what `make gpu-check` needs on a machine that has an NVIDIA GPU and CUDA 13 libraries
# (e.g. in a PyTorch venv) but no network and no Rust toolchain: the onnxruntime-gpu runtime of
# `make setup DEVICE=cuda`, the models, the upstream images and linear weights, and the prebuilt
# tests/gpu.rs binary. One xz stream cut into parts under 60 MiB (a device call carries at most
# 64 MiB), with SHA256SUMS; packaging/gpu/device.sh reassembles and runs them.
#
#   packaging/gpu/split.sh [OUT_DIR]     (make gpu-parts; default .cache/gpu-parts; XZ_LEVEL=0..9, default 9)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-.cache/gpu-parts}
gpu=.cache/onnxruntime-gpu/lib
[ -f "$gpu/libonnxruntime_providers_cuda.so" ] || { echo "split.sh: no GPU runtime in $gpu; run \`make setup DEVICE=cuda\` first" >&2; exit 2; }
# The test binary, built here (cargo prints its path); it finds everything else through the
# checkout path compiled into it, which device.sh recreates on the device.
bin=$(cargo test --release --test gpu --no-run --message-format=json 2>/dev/null \
  | grep '"kind":\["test"\],[^}]*"name":"gpu"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "split.sh: cargo did not build the tests/gpu.rs binary" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"
stage=$(mktemp -d) && trap 'rm -rf "$stage"' EXIT
cp "$bin" "$stage/gpu-check.bin"
pwd > "$stage/checkout.path"
# The CUDA provider and runtime only: the device brings its own CUDA libraries (device.sh).
tar -cf - -C "$stage" gpu-check.bin checkout.path \
  -C "$PWD" "$gpu/libonnxruntime.so.1.31.1" "$gpu/libonnxruntime.so.1" "$gpu/libonnxruntime.so" \
  "$gpu/libonnxruntime_providers_shared.so" "$gpu/libonnxruntime_providers_cuda.so" "$gpu"/LICENSE-onnxruntime_gpu.txt \
  $(ls weights/models/*.onnx | grep -v -- '-grad') .cache/upstream .cache/linear \
  | xz -T0 -"${XZ_LEVEL:-9}" | split -b 55M -d -a 2 - "$out/part-"
(cd "$out" && sha256sum part-* > SHA256SUMS)
ls -l "$out"
echo "split.sh: carry one part per device call (see packaging/gpu/README.md), then run packaging/gpu/device.sh"
