#!/usr/bin/env bash
# loom's server against llama.cpp's server (llama-server) on the serving workloads of
# scripts/gpu_bench.sh, side by side, on the same random-weight GGUF file (same weights, same
# 49,152-token vocabulary and tokenizer), both driven over HTTP by the same client
# (`loom bench --mode online`: streamed /v1/completions with token-id prompts, greedy, ignore_eos,
# so every request generates exactly its max_tokens). Run on the GPU machine from the repository
# root, after tools/gpu_peers.sh (which builds llama-server and writes the model files into
# PEERS_WORK), with loom built in LOOM_GPU_BUILD:
#   tools/gpu_server_workloads.sh                    # Llama-3.2-1B shape, workloads (a) and (b)
#   LOOM_BENCH_8B=1 tools/gpu_server_workloads.sh    # and the Llama-3.1-8B shape
#   SHAPES=llama-3.1-8b WORKLOADS=b tools/gpu_server_workloads.sh
# Workloads, every request sent at once (request rate 0) through at most CONCURRENCY streams:
#   (a) N prompts, input A_IN..A_IN_MAX tokens, output A_OUT..A_OUT_MAX tokens, uniform
#       (128-1,024 in, 64-512 out); (b) N prompts of B_IN tokens in, B_OUT out (256, 256).
# Per shape and workload: start `loom serve` (--max-num-seqs SLOTS, --max-num-batched-tokens
# MAX_NUM_BATCHED_TOKENS), wait for /health, send WARMUP_REQUESTS short untimed requests, run the
# workload into $OUT/server_<workload>_<shape>_loom.json, stop it; then the same with llama-server
# (-ngl NGL, -fa FA, -np SLOTS slots with continuous batching, each slot's own KV stream of
# LLAMA_SLOT_CTX tokens: room for the longest prompt and output; -b LLAMA_BATCH, -ub LLAMA_UBATCH;
# no host prompt cache, no web UI, --fit off: the sizes given are the sizes used) into
# $OUT/server_<workload>_<shape>_llamacpp.json. Then the table of both and their ratios
# (tools/server_workloads_summary.py; each figure's definition is in it), also as
# $OUT/server_workloads.json. Each step is timed and bounded (timeout); a failure is reported and
# the next step runs all the same; a server is always stopped (SIGTERM, then SIGKILL).
# Every server's own output is in $OUT/server_<workload>_<shape>_<engine>.log, the client's table
# in the .txt beside it, every step's output in $OUT/server_workloads.log, the exact commands in
# $OUT/server_workloads_commands.txt.
#
# Environment (defaults in brackets):
#   OUT [/tmp/loom-gpu-out]  PEERS_WORK: model folder (and llama.cpp build) [/tmp/loom-peers]
#   LOOM_GPU_BUILD [build-gpu]: loom is $LOOM_GPU_BUILD/loom  LOOM_DEVICE [cuda]: loom's --device
#   LLAMA_BIN: folder holding llama-server [$PEERS_WORK/build/bin, what tools/gpu_peers.sh builds]
#   SHAPES [llama-3.2-1b, plus llama-3.1-8b when LOOM_BENCH_8B=1]; also "tiny"  WORKLOADS [a b]
#   DTYPE [f16]  LAYERS []  VOCAB_FROM []: as tools/gpu_peers.sh, for model files made here when
#                absent (PEERS_TARBALL [.peers/llama.cpp-src.tar.gz] gives gguf-py)
#   LOOM_BENCH_REQUESTS [1000]  CONCURRENCY [256] (0: every request at once)  SEED [0]
#   A_IN [128] A_IN_MAX [1024] A_OUT [64] A_OUT_MAX [512]  B_IN [256] B_OUT [256]
#   SLOTS [256]  MAX_NUM_BATCHED_TOKENS [8192]  WARMUP_REQUESTS [16] (0: none)
#   NGL [99]  FA [on]  LLAMA_BATCH [8192]  LLAMA_UBATCH [2048]  KV_UNIFIED [0]
#   LLAMA_SLOT_CTX [the longest prompt + output of the workloads run, rounded up to 256]
#   THREADS: CPU threads of both servers [their default]
#   LOOM_SERVE_ARGS, LLAMA_SERVER_ARGS: extra arguments of either server []
#   READY_TIMEOUT [300] s for a server to answer /health  BENCH_TIMEOUT [420] s for one workload
#                 run (the client stops sending at BENCH_TIMEOUT - 30 s and reports what finished)
#   PYTHON [python3, with numpy and pyyaml: only to make missing model files]
# A CPU-only check of everything (a few minutes on 2 cores; the CPU llama-server of
# tools/build_llama_cpp.sh, loom built here):
#   LOOM_GPU_BUILD=build LOOM_DEVICE=cpu LLAMA_BIN=~/.cache/loom-peers/llama.cpp/build/bin \
#   SHAPES=tiny LOOM_BENCH_REQUESTS=24 SLOTS=8 CONCURRENCY=8 A_IN=16 A_IN_MAX=200 A_OUT=8 \
#   A_OUT_MAX=56 B_IN=200 B_OUT=56 MAX_NUM_BATCHED_TOKENS=512 LLAMA_BATCH=512 LLAMA_UBATCH=512 \
#   WARMUP_REQUESTS=2 THREADS=2 OUT=/tmp/srv-out tools/gpu_server_workloads.sh
# shellcheck disable=SC2317  # the step functions are called through step (tools/lib_steps.sh)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

OUT=${OUT:-/tmp/loom-gpu-out}
WORK=${PEERS_WORK:-/tmp/loom-peers}
PEERS_TARBALL=${PEERS_TARBALL:-$root/.peers/llama.cpp-src.tar.gz}
BUILD=${LOOM_GPU_BUILD:-build-gpu}
LOOM=$BUILD/loom
[[ "$LOOM" == /* ]] || LOOM=$root/$LOOM
LOOM_DEVICE=${LOOM_DEVICE:-cuda}
LLAMA_BIN=${LLAMA_BIN:-$WORK/build/bin}
if [ -z "${SHAPES:-}" ]; then
  SHAPES=llama-3.2-1b
  [ "${LOOM_BENCH_8B:-0}" = 1 ] && SHAPES="$SHAPES llama-3.1-8b"
fi
WORKLOADS=${WORKLOADS:-a b}
DTYPE=${DTYPE:-f16}
LAYERS=${LAYERS:-}
VOCAB_FROM=${VOCAB_FROM:-}
N=${LOOM_BENCH_REQUESTS:-1000}
CONCURRENCY=${CONCURRENCY:-256}
SEED=${SEED:-0}
A_IN=${A_IN:-128}
A_IN_MAX=${A_IN_MAX:-1024}
A_OUT=${A_OUT:-64}
A_OUT_MAX=${A_OUT_MAX:-512}
B_IN=${B_IN:-256}
B_OUT=${B_OUT:-256}
SLOTS=${SLOTS:-256}
MAX_NUM_BATCHED_TOKENS=${MAX_NUM_BATCHED_TOKENS:-8192}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-16}
NGL=${NGL:-99}
FA=${FA:-on}
LLAMA_BATCH=${LLAMA_BATCH:-8192}
LLAMA_UBATCH=${LLAMA_UBATCH:-2048}
KV_UNIFIED=${KV_UNIFIED:-0}
THREADS=${THREADS:-}
READY_TIMEOUT=${READY_TIMEOUT:-300}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-420}
PYTHON=${PYTHON:-python3}
read -r -a loom_extra <<<"${LOOM_SERVE_ARGS:-}"
read -r -a llama_extra <<<"${LLAMA_SERVER_ARGS:-}"

# Each llama-server slot holds one request: its prompt and every token but the last generated
# (the server stops a slot once its tokens + 1 reach the slot's context).
need=0
for w in $WORKLOADS; do
  case $w in
    a) n=$((A_IN_MAX + A_OUT_MAX)) ;;
    b) n=$((B_IN + B_OUT)) ;;
    *) echo "gpu_server_workloads: unknown workload '$w' (a, b)" >&2; exit 2 ;;
  esac
  [ "$n" -gt "$need" ] && need=$n
done
LLAMA_SLOT_CTX=${LLAMA_SLOT_CTX:-$(((need + 255) / 256 * 256))}
bench_max_s=$((BENCH_TIMEOUT > 60 ? BENCH_TIMEOUT - 30 : BENCH_TIMEOUT / 2))

mkdir -p "$OUT" "$WORK/models" || exit 1
loom_libs=$(dirname "$LOOM")/gpu_libs
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$loom_libs"
log=$OUT/server_workloads.log
timings=$OUT/server_workloads_timings.txt # "<step> <seconds> <ok|failed>" lines, for the summary
commands=$OUT/server_workloads_commands.txt
: >"$log"
: >"$timings"
: >"$commands"
t_start=$(date +%s%N)
status=0

STEP_TAIL=15
# shellcheck source=tools/lib_steps.sh
. "$root/tools/lib_steps.sh"

# The server running now (the pid of the `timeout` that bounds its life), stopped on any exit.
srv_pid=
stop_server() {
  [ -n "$srv_pid" ] || return 0
  kill -TERM "$srv_pid" 2>/dev/null
  for _ in $(seq 1 60); do
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$srv_pid" 2>/dev/null; then
    echo "-- the server did not stop in 30 s: killed"
    pkill -KILL -P "$srv_pid" 2>/dev/null
    kill -KILL "$srv_pid" 2>/dev/null
  fi
  wait "$srv_pid" 2>/dev/null
  srv_pid=
  return 0
}
# The step running now and everything it started, then the server.
step_pid=
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null
}
cleanup() {
  [ -n "$step_pid" ] && kill_tree "$step_pid"
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM # so that the EXIT trap runs

port=$((18000 + RANDOM % 1000))
# A port nothing answers on: the last server's may still be closing.
next_port() {
  for _ in $(seq 1 50); do
    port=$((port + 1))
    curl -s -m 1 -o /dev/null "http://127.0.0.1:$port/" || return 0
  done
  return 0
}
wait_ready() { # until GET /health answers 200, the server exits, or READY_TIMEOUT passes
  local deadline=$((SECONDS + READY_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$srv_pid" 2>/dev/null || { echo "the server exited"; return 1; }
    curl -sf -m 2 -o /dev/null "http://127.0.0.1:$port/health" && return 0
    sleep 0.5
  done
  echo "no answer on /health in $READY_TIMEOUT s"
  return 124
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
  echo "no GPU visible"; } | head -1 >"$OUT/server_workloads_gpu.txt"
echo "gpu: $(cat "$OUT/server_workloads_gpu.txt"); shapes: $SHAPES; workloads: $WORKLOADS;" \
  "$N requests; out: $OUT"
echo "loom: $LOOM (--device $LOOM_DEVICE); llama-server: $LLAMA_BIN/llama-server"
[ -x "$LOOM" ] || { echo "-- no loom binary $LOOM: loom's runs will fail"; status=1; }
if [ ! -x "$LLAMA_BIN/llama-server" ]; then
  echo "-- no $LLAMA_BIN/llama-server (tools/gpu_peers.sh builds it): its runs will fail"
  status=1
fi

# Model files, as tools/gpu_peers.sh names and makes them.
model_path() { echo "$WORK/models/random-$1-$DTYPE${LAYERS:+-l$LAYERS}.gguf"; }
gguf_py=
if [ -d "$WORK/llama.cpp/gguf-py" ]; then
  gguf_py=$WORK/llama.cpp/gguf-py
fi
for shape in $SHAPES; do
  m=$(model_path "$shape")
  [ -f "$m" ] && continue
  if [ -z "$gguf_py" ] && [ -f "$PEERS_TARBALL" ]; then
    step unpack_gguf_py tar -xzf "$PEERS_TARBALL" -C "$WORK" llama.cpp/gguf-py &&
      gguf_py=$WORK/llama.cpp/gguf-py
  fi
  step "model_$shape" nice -n 10 "$PYTHON" tools/make_random_gguf.py "$shape" "$m" \
    --dtype "$DTYPE" ${LAYERS:+--layers "$LAYERS"} ${VOCAB_FROM:+--vocab-from "$VOCAB_FROM"} \
    ${gguf_py:+--gguf-py "$gguf_py"}
done

threads=()
[ -n "$THREADS" ] && threads=(--threads "$THREADS")
kvu=--no-kv-unified
[ "$KV_UNIFIED" = 1 ] && kvu=--kv-unified

# workload_args W: the client's workload flags.
workload_args() {
  case $1 in
    a) echo "--workload uniform --input-len $A_IN --input-len-max $A_IN_MAX --output-len $A_OUT" \
      "--output-len-max $A_OUT_MAX" ;;
    b) echo "--workload fixed --input-len $B_IN --output-len $B_OUT" ;;
  esac
}

# run_engine ENGINE W SHAPE MODEL: one server, one workload.
run_engine() {
  local engine=$1 w=$2 shape=$3 m=$4
  local tag="${w}_${shape}_${engine}"
  local json=$OUT/server_$tag.json srv
  rm -f "$json"
  next_port
  if [ "$engine" = loom ]; then
    srv=("$LOOM" serve --device "$LOOM_DEVICE" --model "$m" --max-num-seqs "$SLOTS"
      --max-num-batched-tokens "$MAX_NUM_BATCHED_TOKENS" --port "$port" "${threads[@]}"
      "${loom_extra[@]}")
  else
    srv=("$LLAMA_BIN/llama-server" -m "$m" --port "$port" -ngl "$NGL" -fa "$FA" -np "$SLOTS"
      -c $((SLOTS * LLAMA_SLOT_CTX)) "$kvu" -cb -b "$LLAMA_BATCH" -ub "$LLAMA_UBATCH" -cram 0
      -fit off --no-webui --metrics ${THREADS:+-t "$THREADS"} "${llama_extra[@]}")
  fi
  echo "${srv[*]}" >>"$commands"
  # The server's life is bounded too, should this script be killed before it stops it.
  timeout -k 10 $((READY_TIMEOUT + BENCH_TIMEOUT + 600)) "${srv[@]}" </dev/null \
    >"$OUT/server_$tag.log" 2>&1 &
  srv_pid=$!
  if ! step "start_$tag" wait_ready; then
    tail -5 "$OUT/server_$tag.log" | sed 's/^/   | /'
    stop_server
    return 1
  fi
  local base=(--mode online --base-url "http://127.0.0.1:$port" --model "$m" --request-rate 0
    --no-progress)
  if [ "$WARMUP_REQUESTS" -gt 0 ]; then
    # Untimed: first-use costs (kernel loading, graph capture, allocations) out of the way.
    step "warmup_$tag" timeout -k 10 180 "$LOOM" bench "${base[@]}" --workload fixed \
      --num-requests "$WARMUP_REQUESTS" --input-len 64 --output-len 16 --seed $((SEED + 1)) \
      --max-duration 150
  fi
  local wargs
  read -r -a wargs <<<"$(workload_args "$w")"
  local cmd=("$LOOM" bench "${base[@]}" "${wargs[@]}" --num-requests "$N"
    --max-concurrency "$CONCURRENCY" --seed "$SEED" --max-duration "$bench_max_s"
    --label "$tag" --json-out "$json")
  echo "${cmd[*]}" >>"$commands"
  run_bench() { timeout -k 10 "$BENCH_TIMEOUT" "${cmd[@]}" >"$OUT/server_$tag.txt"; }
  step "bench_$tag" run_bench
  grep -E "^duration|^-- group all|^  (TTFT|ITL) " "$OUT/server_$tag.txt" | sed 's/^/   /'
  stop_server
}

for shape in $SHAPES; do
  m=$(model_path "$shape")
  if [ ! -f "$m" ]; then
    echo "-- $shape: no model file $m: skipped"
    status=1
    continue
  fi
  for w in $WORKLOADS; do
    run_engine loom "$w" "$shape" "$m"
    run_engine llamacpp "$w" "$shape" "$m"
  done
done

export SHAPES WORKLOADS N CONCURRENCY SLOTS MAX_NUM_BATCHED_TOKENS NGL FA LLAMA_BATCH LLAMA_UBATCH \
  KV_UNIFIED LLAMA_SLOT_CTX LOOM_DEVICE DTYPE WARMUP_REQUESTS
# The table, to the terminal and the log; it fails when a run is missing or a check fails.
echo "== summary (at $(now_s) s)" | tee -a "$log"
"$PYTHON" tools/server_workloads_summary.py "$OUT" "$OUT/server_workloads.json" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== done in $(now_s) s; status $status; results in $OUT"
exit $status
