#!/usr/bin/env bash
# GPU checks of the CUDA backend, in one go, on a machine with an NVIDIA GPU (H100 / H200):
#   1. build test_cuda, bench_cuda and loom (or use the binaries already in $LOOM_GPU_BUILD),
#   2. build random-weight Llamas with HF transformers and dump HF's golden tokens and logits
#      (tools/make_hf_random_llama.py; needs python3 with torch and transformers),
#   3. run the GPU tests (op-level and end to end against HF),
#   4. a CLI smoke run on the GPU, then the benchmarks (Llama-3.2-1B shape, dummy weights; the
#      8B shape too when LOOM_BENCH_8B=1).
# Logs go to $OUT (default /tmp/loom-gpu-out). Run from the repository root:
#   scripts/gpu_test.sh                      # configure + build in build-gpu, then run
#   LOOM_GPU_BUILD=build-cuda scripts/gpu_test.sh   # binaries built elsewhere (same x86-64 ABI)
set -uo pipefail
BUILD=${LOOM_GPU_BUILD:-build-gpu}
OUT=${OUT:-/tmp/loom-gpu-out}
HF_DIR=${LOOM_HF_RANDOM_DIR:-/tmp/loom-hf-random}
# Optional: a Llama GGUF for the KV-cache quantization accuracy test (its KVQ-GPU lines).
export LOOM_GPU_ACCURACY_MODEL=${LOOM_GPU_ACCURACY_MODEL:-}
mkdir -p "$OUT" "$HF_DIR"
# gpu_libs: optional host libraries carried beside prebuilt binaries (used last).
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$PWD/$BUILD/gpu_libs"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"

if [ ! -x "$BUILD/tests/test_cuda" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=ON >"$OUT/cmake.log" 2>&1 &&
    cmake --build "$BUILD" -j"$(nproc)" --target test_cuda bench_cuda loom >"$OUT/build.log" 2>&1 ||
    { echo "build failed: see $OUT/build.log"; tail -30 "$OUT/cmake.log" "$OUT/build.log"; exit 1; }
fi

status=0
echo "== HF golden"
PYTHONUNBUFFERED=1 python3 tools/make_hf_random_llama.py "$HF_DIR" 2>&1 | tee "$OUT/hf_golden.log" |
  grep -v Warning || status=1

echo "== test_cuda"
LOOM_HF_RANDOM_DIR="$HF_DIR" "$BUILD/tests/test_cuda" 2>&1 | tee "$OUT/test_cuda.log" |
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |cosine|greedy|KVQ|token-identical|Failure|error|Expected|Which is" || true
grep -q "^\[  PASSED" "$OUT/test_cuda.log" && ! grep -q "^\[  FAILED" "$OUT/test_cuda.log" || status=1

echo "== CLI smoke (loom generate --device cuda)"
if [ -x "$BUILD/loom" ]; then
  "$BUILD/loom" generate --device cuda --model "$HF_DIR/llama_d64" --prompt "the cat is" \
    --max-tokens 16 2>&1 | tail -5 | tee "$OUT/cli.log"
fi

echo "== bench_cuda (Llama-3.2-1B shape, dummy weights)"
"$BUILD/bench/bench_cuda" llama-3.2-1b "$OUT/bench_llama-3.2-1b.json" 2>&1 | tee "$OUT/bench_1b.log" ||
  status=1
if [ "${LOOM_BENCH_8B:-0}" = 1 ]; then
  echo "== bench_cuda (Llama-3.1-8B shape, dummy weights)"
  "$BUILD/bench/bench_cuda" llama-3.1-8b "$OUT/bench_llama-3.1-8b.json" 2>&1 |
    tee "$OUT/bench_8b.log" || status=1
fi
exit $status
