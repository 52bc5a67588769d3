#!/usr/bin/env bash
# llama.cpp's CUDA backend on the GPU machine, on the same random-weight GGUF files that loom is
# benchmarked on, for side-by-side numbers. Run from the repository root on the GPU machine,
# carrying .peers/ (made here by tools/pack_llama_cpp_src.sh: the pruned llama.cpp source with
# gguf-py, and the vocabulary-only GGUF):
#   tools/gpu_peers.sh                     # Llama-3.2-1B shape (expected ~4 min on an H200, 16 cores)
#   LOOM_BENCH_8B=1 tools/gpu_peers.sh     # and the Llama-3.1-8B shape (expected ~6 min)
# Steps, each timed, each one's failure reported and the next one run all the same:
#   1. unpack .peers/llama.cpp-src.tar.gz to /tmp and build llama-bench, llama-batched-bench and
#      llama-server (for tools/gpu_server_workloads.sh; no web UI) with CUDA for sm_90a on every
#      core, in one build (skipped when LLAMA_BIN names prebuilt binaries);
#   2. meanwhile, in the background, write the random F16 GGUF of each shape into /tmp
#      (tools/make_random_gguf.py; kept and reused when it is already there);
#   3. per shape: llama-bench (prefill pp512 and pp2048, single-stream decode tg128; -ngl 99,
#      -fa 1, -r 3) and llama-batched-bench (128-token prompts, 128 new tokens, 1/16/64/256
#      sequences, each with its own prompt and its own KV stream: no -pps, --no-kv-unified);
#   4. per shape: $OUT/llamacpp_<shape>.json, the summary (tools/gpu_peers_summary.py; each
#      figure's definition is in it) with both tools' raw output embedded.
# $OUT (default /tmp/loom-gpu-out) gets the summaries and llamacpp.log (every tool's own output);
# PEERS_RAW=1 also copies the raw llama-bench JSON and batched-bench JSONL there.
#
# Environment (defaults in brackets):
#   LLAMA_BIN        folder holding llama-bench and llama-batched-bench: no build []
#                    (without it, llama-server is built too, into $PEERS_WORK/build/bin)
#   PEERS_TARBALL    [.peers/llama.cpp-src.tar.gz]  PEERS_WORK: build and model folder [/tmp/loom-peers]
#   SHAPES           [llama-3.2-1b, plus llama-3.1-8b when LOOM_BENCH_8B=1]; also "tiny"
#   DTYPE [f16]  LAYERS: override each shape's layer count []  VOCAB_FROM: a GGUF with the
#                tokenizer [models/SmolLM2-135M-Instruct.Q4_1.gguf, else .peers/vocab-smollm2.gguf]
#   NGL [99]  FA [1]  THREADS: CPU threads of both tools [their default]
#   LB_PROMPTS [512,2048]  LB_GEN [128]  LB_REPS [3]
#   BB_NPP [128]  BB_NTG [128]  BB_NPL [1,16,64,256]  BB_REPEATS [3]  BB_CTX [2 x the largest
#                need, at least 65536]  BB_KV_UNIFIED [0]  BB_WARMUP [1]: one extra first run at the
#                first BB_NPL, dropped from the summary
#   STEP_TIMEOUT [240] seconds for each benchmark run; BUILD_TIMEOUT [480]
#   REBUILD [0]: 1 builds again when PEERS_WORK already holds the three binaries; REGEN [0]: 1
#                writes the model files again when they are already there
#   PYTHON [python3, with numpy and pyyaml]
# A CPU-only check of everything but the CUDA build (seconds):
#   LLAMA_BIN=~/.cache/loom-peers/llama.cpp/build/bin SHAPES=tiny THREADS=2 LB_PROMPTS=16 \
#   LB_GEN=8 LB_REPS=1 BB_NPP=16 BB_NTG=8 BB_NPL=1,4 BB_REPEATS=2 tools/gpu_peers.sh
# shellcheck disable=SC2317  # the step functions are called through step (tools/lib_steps.sh)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

OUT=${OUT:-/tmp/loom-gpu-out}
WORK=${PEERS_WORK:-/tmp/loom-peers}
PEERS_TARBALL=${PEERS_TARBALL:-$root/.peers/llama.cpp-src.tar.gz}
LLAMA_BIN=${LLAMA_BIN:-}
if [ -z "${SHAPES:-}" ]; then
  SHAPES=llama-3.2-1b
  [ "${LOOM_BENCH_8B:-0}" = 1 ] && SHAPES="$SHAPES llama-3.1-8b"
fi
DTYPE=${DTYPE:-f16}
LAYERS=${LAYERS:-}
VOCAB_FROM=${VOCAB_FROM:-}
NGL=${NGL:-99}
FA=${FA:-1}
THREADS=${THREADS:-}
LB_PROMPTS=${LB_PROMPTS:-512,2048}
LB_GEN=${LB_GEN:-128}
LB_REPS=${LB_REPS:-3}
BB_NPP=${BB_NPP:-128}
BB_NTG=${BB_NTG:-128}
BB_NPL=${BB_NPL:-1,16,64,256}
BB_REPEATS=${BB_REPEATS:-3}
BB_KV_UNIFIED=${BB_KV_UNIFIED:-0}
BB_WARMUP=${BB_WARMUP:-1}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-480}
PYTHON=${PYTHON:-python3}
PEERS_RAW=${PEERS_RAW:-0}
jobs=$(nproc)

mkdir -p "$OUT" "$WORK/models" || exit 1
log=$OUT/llamacpp.log
: >"$log"
t_start=$(date +%s%N)
timings=$WORK/timings.txt # "<step> <seconds> <ok|failed>" lines, read by the summaries
: >"$timings"
status=0

STEP_TIMEOUT_HINT="limit in STEP_TIMEOUT / BUILD_TIMEOUT"
# shellcheck source=tools/lib_steps.sh
. "$root/tools/lib_steps.sh"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
  echo "no GPU visible"; } | head -1 >"$WORK/gpu.txt"
echo "gpu: $(cat "$WORK/gpu.txt"); $jobs cores; shapes: $SHAPES; out: $OUT"

# 1a. Unpack the source (also when LLAMA_BIN is set: gguf-py comes from it).
src=$WORK/llama.cpp
gguf_py=
if [ -f "$PEERS_TARBALL" ]; then
  unpack() { rm -rf "$src" && tar -xzf "$PEERS_TARBALL" -C "$WORK" && [ -f "$src/CMakeLists.txt" ]; }
  step unpack unpack && gguf_py=$src/gguf-py
else
  echo "-- no $PEERS_TARBALL (tools/pack_llama_cpp_src.sh makes it): no source, no gguf-py"
  [ -z "$LLAMA_BIN" ] && status=1
fi

# 2. Models, in the background while the build runs.
model_path() { echo "$WORK/models/random-$1-$DTYPE${LAYERS:+-l$LAYERS}.gguf"; }
gen_models() {
  local shape log=$WORK/models.log # step() writes here: the build writes the main log meanwhile
  : >"$log"
  for shape in $SHAPES; do
    local m
    m=$(model_path "$shape")
    if [ -f "$m" ] && [ "${REGEN:-0}" != 1 ]; then
      echo "model $shape: reusing $m"
      continue
    fi
    step "model_$shape" nice -n 10 "$PYTHON" tools/make_random_gguf.py "$shape" "$m" \
      --dtype "$DTYPE" ${LAYERS:+--layers "$LAYERS"} ${VOCAB_FROM:+--vocab-from "$VOCAB_FROM"} \
      ${gguf_py:+--gguf-py "$gguf_py"}
  done
}
gen_models >"$WORK/models.out" 2>&1 &
gen_pid=$!

# 1b. Build.
if [ -z "$LLAMA_BIN" ] && [ -d "$src" ]; then
  build=$WORK/build
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  # The server without its web UI (neither built with npm nor downloaded: no network there) and
  # without TLS (plain HTTP on the loopback).
  configure() {
    rm -rf "$build" && cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
      -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
  }
  if [ -x "$build/bin/llama-bench" ] && [ -x "$build/bin/llama-batched-bench" ] &&
    [ -x "$build/bin/llama-server" ] && [ "${REBUILD:-0}" != 1 ]; then
    echo "-- build: reusing $build/bin (REBUILD=1 rebuilds)"
  else
    step configure configure &&
      step build timeout "$BUILD_TIMEOUT" cmake --build "$build" -j"$jobs" \
        --target llama-bench llama-batched-bench llama-server
  fi
  LLAMA_BIN=$build/bin
fi

wait "$gen_pid"
cat "$WORK/models.out"
cat "$WORK/models.log" >>"$log"
# The background steps' failures count too.
grep -q " failed$" "$timings" && status=1

# 3 and 4. Benchmarks and summaries, shape by shape.
threads=()
[ -n "$THREADS" ] && threads=(-t "$THREADS")
npl_max=$(tr ',' '\n' <<<"$BB_NPL" | sort -n | tail -1)
bb_ctx=${BB_CTX:-$((2 * npl_max * (BB_NPP + BB_NTG)))}
[ -z "${BB_CTX:-}" ] && [ "$bb_ctx" -lt 65536 ] && bb_ctx=65536
npl_run=$(for _ in $(seq "$BB_REPEATS"); do echo "$BB_NPL"; done | paste -sd,)
[ "$BB_WARMUP" = 1 ] && npl_run="${BB_NPL%%,*},$npl_run"
kvu=--no-kv-unified
[ "$BB_KV_UNIFIED" = 1 ] && kvu=--kv-unified
fa_bb=on
[ "$FA" = 0 ] && fa_bb=off

# stdout is the tool's JSON, stderr its log.
run_lb() {
  timeout "$STEP_TIMEOUT" "$LLAMA_BIN/llama-bench" -m "$m" -ngl "$NGL" -fa "$FA" -r "$LB_REPS" \
    -p "$LB_PROMPTS" -n "$LB_GEN" "${threads[@]}" -o json >"$lb"
}
run_bb() {
  timeout "$STEP_TIMEOUT" "$LLAMA_BIN/llama-batched-bench" -m "$m" -ngl "$NGL" -fa "$fa_bb" \
    -c "$bb_ctx" -npp "$BB_NPP" -ntg "$BB_NTG" -npl "$npl_run" "$kvu" "${threads[@]}" \
    --output-format jsonl >"$bb"
}
summarize() {
  "$PYTHON" tools/gpu_peers_summary.py "$shape" "$m" "$lb" "$bb" "$timings" "$WORK/gpu.txt" \
    "$OUT/llamacpp_$shape.json"
}
export DTYPE LB_PROMPTS LB_GEN LB_REPS BB_NPP BB_NTG BB_NPL BB_REPEATS BB_KV_UNIFIED BB_WARMUP
for shape in $SHAPES; do
  m=$(model_path "$shape")
  lb=$WORK/llama-bench_$shape.json
  bb=$WORK/batched-bench_$shape.jsonl
  rm -f "$lb" "$bb"
  if [ ! -f "$m" ]; then
    echo "-- $shape: no model file $m: benchmarks skipped"
    status=1
  elif [ ! -x "$LLAMA_BIN/llama-bench" ] || [ ! -x "$LLAMA_BIN/llama-batched-bench" ]; then
    echo "-- $shape: no llama-bench / llama-batched-bench in '$LLAMA_BIN': benchmarks skipped"
    status=1
  else
    step "llama-bench_$shape" run_lb
    step "batched-bench_$shape" run_bb
    if [ "$PEERS_RAW" = 1 ]; then
      cp "$lb" "$bb" "$OUT/" 2>/dev/null
    fi
  fi
  # The summary's figures go to the log like every step's output; show them here too.
  step "summary_$shape" summarize
  awk -v n="== summary_$shape:" 'index($0, n) == 1 {p = 1; next} /^== / {p = 0} p' "$log" |
    sed 's/^/   /'
done

echo "== done in $(now_s) s; status $status; results in $OUT"
exit $status
