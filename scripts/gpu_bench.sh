#!/usr/bin/env bash
# GPU benchmarks of the CUDA backend, on a machine with an NVIDIA GPU (H100 / H200), from the
# repository root, with binaries built here or elsewhere (LOOM_GPU_BUILD, as scripts/gpu_test.sh):
#   1. bench_cuda per shape: decode step against the weight-bandwidth floor, the batched-decode
#      sweep (1, 16, 64, 256 sequences; 128-token prompts, 128 new tokens), prefill; with CUDA
#      graphs, without (--eager), and with an fp8 KV cache;
#   2. the serving workloads through the engine (`loom bench`, offline: every request at once):
#      (a) 1,000 prompts, input 128-1,024 and output 64-512 tokens uniform; (b) 1,000 prompts of
#      256 in, 256 out; and (c) online through `loom serve` at rising Poisson request rates;
#   3. peers when asked (LOOM_PEERS=1): tools/gpu_peers.sh (llama.cpp's CUDA backend).
# Shapes: Llama-3.2-1B, and Llama-3.1-8B too when LOOM_BENCH_8B=1. Weights are random
# (--load-format dummy); the tokenizer is the test one padded to the vocabulary
# (tools/make_dummy_tokenizer.py); prompts are random token ids.
# Optional: LOOM_BATCHING=1 adds continuous vs static vs padded static vs dynamic batching on the
# Anyscale workload (512-token prompts, exponential output lengths under each cap).
# Results (.txt tables and .json) go to $OUT (default /tmp/loom-gpu-out).
set -uo pipefail
BUILD=${LOOM_GPU_BUILD:-build-gpu}
OUT=${OUT:-/tmp/loom-gpu-out}
N=${LOOM_BENCH_REQUESTS:-1000}
RATES=${LOOM_BENCH_RATES:-"8 16 32 64"}
ONLINE_N=${LOOM_BENCH_ONLINE_REQUESTS:-200}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$PWD/$BUILD/gpu_libs"
# A tokenizer as large as the models' vocabulary, so every generated id streams as text.
TOKENIZER=/tmp/loom-dummy-tokenizer.json
python3 tools/make_dummy_tokenizer.py 128256 "$TOKENIZER" || exit 1
status=0
shapes=(llama-3.2-1b)
[ "${LOOM_BENCH_8B:-0}" = 1 ] && shapes+=(llama-3.1-8b)
[ -n "${LOOM_SHAPES:-}" ] && read -r -a shapes <<<"$LOOM_SHAPES"  # e.g. "llama-3.1-8b"
t_start=$SECONDS
step() { echo "== $* (t=$((SECONDS - t_start)) s)"; }

for shape in "${shapes[@]}"; do
  if [ "${LOOM_SKIP_BENCH_CUDA:-0}" != 1 ]; then
    step "bench_cuda $shape"
    "$BUILD/bench/bench_cuda" "$shape" "$OUT/bench_cuda_${shape}.json" 2>&1 |
      tee "$OUT/bench_cuda_${shape}.txt" || status=1
    step "bench_cuda $shape --eager"
    "$BUILD/bench/bench_cuda" "$shape" "$OUT/bench_cuda_${shape}_eager.json" --eager 2>&1 |
      tee "$OUT/bench_cuda_${shape}_eager.txt" | grep -E "^ +[0-9]+ |prefill" || status=1
    step "bench_cuda $shape --kv-cache-dtype fp8"
    "$BUILD/bench/bench_cuda" "$shape" "$OUT/bench_cuda_${shape}_fp8.json" --kv-cache-dtype fp8 \
      2>&1 | tee "$OUT/bench_cuda_${shape}_fp8.txt" | grep -E "^ +[0-9]+ |prefill" || status=1
  fi
  common=(--device cuda --load-format dummy --model "$shape" --tokenizer "$TOKENIZER"
    --max-num-seqs 256 --max-num-batched-tokens 8192 --seed 0 --no-progress)
  if [ "${LOOM_BATCHING:-0}" = 1 ]; then
    for cap in ${LOOM_BATCHING_CAPS:-32 128 512 1536}; do
      for mode in continuous static paddedstatic dynamic; do
        flag=(--batching "$mode")
        [ "$mode" = paddedstatic ] && flag=(--batching static --static-padding)
        step "batching $shape: $mode, cap $cap"
        "$BUILD/loom" bench "${common[@]}" --workload anyscale \
          --num-requests "${LOOM_BATCHING_N:-1024}" --anyscale-prompt-len 512 --output-cap "$cap" \
          "${flag[@]}" --max-duration 120 --label "batching_${mode}_cap${cap}" \
          --json-out "$OUT/batching_${mode}_cap${cap}.json" 2>>"$OUT/batching.log" |
          grep -E "^duration|group all|TTFT" || status=1
      done
    done
  fi
  if [ "${LOOM_SKIP_WORKLOADS:-0}" != 1 ]; then
    step "workload (a) $shape: $N prompts, in 128-1024, out 64-512"
    "$BUILD/loom" bench "${common[@]}" --workload uniform --num-requests "$N" --input-len 128 \
      --input-len-max 1024 --output-len 64 --output-len-max 512 --max-duration 300 \
      --label "a_${shape}" --json-out "$OUT/workload_a_${shape}.json" 2>"$OUT/workload_a_${shape}.log" |
      tee "$OUT/workload_a_${shape}.txt" || { status=1; tail -5 "$OUT/workload_a_${shape}.log"; }
    step "workload (b) $shape: $N prompts, 256 in, 256 out"
    "$BUILD/loom" bench "${common[@]}" --workload fixed --num-requests "$N" --input-len 256 \
      --output-len 256 --max-duration 300 --label "b_${shape}" \
      --json-out "$OUT/workload_b_${shape}.json" 2>"$OUT/workload_b_${shape}.log" |
      tee "$OUT/workload_b_${shape}.txt" || { status=1; tail -5 "$OUT/workload_b_${shape}.log"; }
  fi

  if [ "${LOOM_SKIP_ONLINE:-0}" != 1 ]; then
    port=$((18000 + RANDOM % 1000))
    srv=("$BUILD/loom" serve --device cuda --load-format dummy --model "$shape"
      --tokenizer "$TOKENIZER" --max-num-seqs 256 --max-num-batched-tokens 8192 --port "$port")
    "${srv[@]}" >"$OUT/serve_${shape}.log" 2>&1 &
    pid=$!
    ready=0
    for _ in $(seq 1 240); do
      kill -0 "$pid" 2>/dev/null || break
      curl -sf -o /dev/null "http://127.0.0.1:$port/health" && { ready=1; break; }
      sleep 0.5
    done
    if [ "$ready" = 1 ]; then
      for rate in $RATES; do
        step "workload (c) $shape: online, $rate req/s"
        "$BUILD/loom" bench --mode online --base-url "http://127.0.0.1:$port" --workload uniform \
          --num-requests "$ONLINE_N" --input-len 128 --input-len-max 1024 --output-len 64 \
          --output-len-max 512 --request-rate "$rate" --seed 0 --no-progress --max-duration 120 \
          --vocab-size 128000 --label "c_${shape}_r${rate}" \
          --json-out "$OUT/workload_c_${shape}_r${rate}.json" 2>>"$OUT/workload_c_${shape}.log" |
          tee "$OUT/workload_c_${shape}_r${rate}.txt" | grep -E "^duration|TTFT|ITL|group all" ||
          status=1
        grep -m3 "request failed" "$OUT/workload_c_${shape}.log"
        : >"$OUT/workload_c_${shape}.log"
      done
    else
      echo "loom serve did not start"
      tail -5 "$OUT/serve_${shape}.log"
      status=1
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
done

if [ "${LOOM_PEERS:-0}" = 1 ] && [ -x tools/gpu_peers.sh ]; then
  step "peers: llama.cpp (CUDA) on random F16 GGUFs of the same shapes, 49,152-token vocab"
  tools/gpu_peers.sh || status=1
  for shape in "${shapes[@]}"; do
    step "bench_cuda $shape --vocab 49152 (the peer's vocabulary)"
    "$BUILD/bench/bench_cuda" "$shape" "$OUT/bench_cuda_${shape}_v49152.json" --vocab 49152 2>&1 |
      tee "$OUT/bench_cuda_${shape}_v49152.txt" || status=1
  done
fi
step "done"
exit $status
