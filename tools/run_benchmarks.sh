#!/usr/bin/env bash
# Runs the batching benchmark suite (docs/benchmarks-batching.md) on the default model and writes
# every report (table .txt, JSON .json) plus the machine's load before and after into one folder,
# then draws the plots.
#
#   tools/run_benchmarks.sh                      # the whole suite (~15 min on 2 quiet cores, ~35 min on 2 busy ones)
#   QUICK=1 tools/run_benchmarks.sh              # tiny sizes: checks that everything runs (~5 min)
#   SUITES="batching load" tools/run_benchmarks.sh   # some of: stepcost batching load chunked
#                                                    #   tiers memory prefix peer
#   REPEATS=3 tools/run_benchmarks.sh            # each suite 3 times (OUT/r1..r3); medians reported
# Environment: LOOM (binary, default build-bench/loom, else build/loom), OUT (results folder,
# default bench/results/<UTC time>), MODEL, PLOTS_TO_DOCS=1 (copy the PNGs to docs/plots/),
# PYTHON (with matplotlib; default /work/ref/venv/bin/python or python3), LLAMA_BIN (folder of
# llama-server; default: what tools/build_llama_cpp.sh builds), THREADS (compute threads of loom
# and llama.cpp; default all cores). Every size below can be overridden from the environment (the
# names in capitals); conditions.txt in the results folder records them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

LOOM=${LOOM:-}
if [ -z "$LOOM" ]; then
  for cand in build-bench/loom build/loom; do [ -x "$cand" ] && LOOM=$root/$cand && break; done
fi
[ -x "${LOOM:-}" ] || { echo "no loom binary (build it or set LOOM)" >&2; exit 1; }
MODEL=${MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${OUT:-$root/bench/results/$(date -u +%Y%m%d-%H%M%S)}
SUITES=${SUITES:-stepcost batching load chunked tiers memory prefix peer}
QUICK=${QUICK:-0}
LLAMA_BIN=${LLAMA_BIN:-$HOME/.cache/loom-peers/llama.cpp/build/bin}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/ref/venv/bin/python ]; then PYTHON=/work/ref/venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$OUT"
base_out=$OUT

# Sizes. The full sizes are what docs/benchmarks-batching.md reports; QUICK shrinks each.
q() { if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi; }
SEED=${SEED:-0}
# 0. decode step cost: N sequences decoding together.
STEPCOST_N=${STEPCOST_N:-$(q "1 4 16 64" "1 4")}
# 1. batching modes on Anyscale: N requests through batches of B sequences.
ANYSCALE_N=${ANYSCALE_N:-$(q 16 8)}
ANYSCALE_B=${ANYSCALE_B:-4}
ANYSCALE_PROMPT=${ANYSCALE_PROMPT:-$(q 512 64)}
CAPS=${CAPS:-$(q "32 128 512 1536" "32 128")}
BATCH_MAX_S=${BATCH_MAX_S:-600}  # a run cut off here reports what finished (marked "cut off")
# 2. latency against load: Poisson arrivals at each rate (req/s).
LOAD_RATES=${LOAD_RATES:-$(q "1 2 3 4 6" "1 4")}
LOAD_N=${LOAD_N:-$(q 24 6)}
LOAD_B=${LOAD_B:-16}
LOAD_MAX_S=${LOAD_MAX_S:-$(q 60 20)}
# 3. chunked prefill: chats with long prompts arriving among them.
CHUNK_CHATS=${CHUNK_CHATS:-$(q 8 4)}
CHUNK_LONG_LEN=${CHUNK_LONG_LEN:-$(q 4096 1024)}
CHUNK_NUM_LONG=${CHUNK_NUM_LONG:-2}
CHUNK_CHAT_OUT=${CHUNK_CHAT_OUT:-$(q 96 32)}  # short enough that the stalls reach ITL p99
# 4. tiers: batch jobs filling every slot, interactive chats arriving under them.
TIER_SLOTS=${TIER_SLOTS:-$(q 16 4)}
TIER_BATCH=${TIER_BATCH:-$(q 24 6)}
TIER_BATCH_OUT=${TIER_BATCH_OUT:-$(q 192 24)}
TIER_INTERACTIVE=${TIER_INTERACTIVE:-$(q 8 3)}
# 5. memory pressure: a KV cache that holds a few sequences only.
MEM_N=${MEM_N:-$(q 24 6)}
MEM_KV_MIB=${MEM_KV_MIB:-$(q 32 12)}
# 6. prefix caching.
PREFIX_N=${PREFIX_N:-$(q 12 4)}
PREFIX_LEN=${PREFIX_LEN:-$(q 1024 256)}
# 7. loom against llama.cpp's server, online, at each client count.
PEER_CLIENTS=${PEER_CLIENTS:-$(q "16 64" "4")}
PEER_PROMPT=${PEER_PROMPT:-64}
PEER_OUT=${PEER_OUT:-$(q 64 16)}
PEER_ROUNDS=${PEER_ROUNDS:-2}  # requests per client

THREADS=${THREADS:-$(nproc)}  # compute threads of loom and of llama.cpp alike
{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
  echo "loom: $LOOM ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "quick: $QUICK, threads: $THREADS, repeats: ${REPEATS:-1}"
  echo "sizes: STEPCOST_N='$STEPCOST_N' ANYSCALE_N=$ANYSCALE_N ANYSCALE_B=$ANYSCALE_B ANYSCALE_PROMPT=$ANYSCALE_PROMPT" \
    "CAPS='$CAPS' BATCH_MAX_S=$BATCH_MAX_S LOAD_RATES='$LOAD_RATES' LOAD_N=$LOAD_N LOAD_B=$LOAD_B" \
    "LOAD_MAX_S=$LOAD_MAX_S CHUNK_CHATS=$CHUNK_CHATS CHUNK_LONG_LEN=$CHUNK_LONG_LEN" \
    "CHUNK_NUM_LONG=$CHUNK_NUM_LONG CHUNK_CHAT_OUT=$CHUNK_CHAT_OUT TIER_SLOTS=$TIER_SLOTS" \
    "TIER_BATCH=$TIER_BATCH TIER_BATCH_OUT=$TIER_BATCH_OUT TIER_INTERACTIVE=$TIER_INTERACTIVE" \
    "MEM_N=$MEM_N MEM_KV_MIB=$MEM_KV_MIB PREFIX_N=$PREFIX_N PREFIX_LEN=$PREFIX_LEN" \
    "PEER_CLIENTS='$PEER_CLIENTS' PEER_PROMPT=$PEER_PROMPT PEER_OUT=$PEER_OUT PEER_ROUNDS=$PEER_ROUNDS"
  echo "uptime before: $(uptime)"
} >"$OUT/conditions.txt"
cat "$OUT/conditions.txt"
: >"$OUT/commands.txt"
# The load average every 30 s while the suite runs: other work on the machine shows up here.
(while sleep 30; do echo "$(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"; done) \
  >"$OUT/load.txt" &
load_pid=$!
trap 'kill $load_pid 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap runs

# bench NAME ARGS...: one `loom bench` run; the table goes to the terminal and NAME.txt.
bench() {
  local name=$1
  shift
  local cmd=("$LOOM" bench --model "$MODEL" --threads "$THREADS" --seed "$SEED" --no-progress --label "$name"
    --json-out "$OUT/$name.json" "$@")
  echo "${cmd[*]#$root/}" >>"$base_out/commands.txt"
  local t0=$SECONDS
  if ! "${cmd[@]}" >"$OUT/$name.txt" 2>"$OUT/$name.log"; then
    echo "!! $name failed; see $OUT/$name.log" >&2
    tail -3 "$OUT/$name.log" >&2
    return 0
  fi
  grep -E "^(duration|engine|-- group|  (TTFT|ITL) )" "$OUT/$name.txt" | sed "s/^/[$name] /"
  echo "[$name] took $((SECONDS - t0)) s"
}

has() { [[ " $SUITES " == *" $1 "* ]]; }

run_suites() {
if has stepcost; then
  for n in $STEPCOST_N; do
    bench "stepcost_n${n}" --workload fixed --num-requests "$n" --input-len 16 --output-len 64 \
      --max-num-seqs "$n" --max-duration 300
  done
fi

if has batching; then
  for cap in $CAPS; do
    # paddedstatic: static batches whose finished members keep computing until the longest
    # ends (--static-padding), as padded static batching (HF generate) does.
    for mode in continuous static paddedstatic dynamic; do
      flag=(--batching "$mode")
      [ "$mode" = paddedstatic ] && flag=(--batching static --static-padding)
      bench "batching_${mode}_cap${cap}" --workload anyscale --num-requests "$ANYSCALE_N" \
        --anyscale-prompt-len "$ANYSCALE_PROMPT" --output-cap "$cap" "${flag[@]}" \
        --max-num-seqs "$ANYSCALE_B" --max-duration "$BATCH_MAX_S"
    done
  done
fi

if has load; then
  for mode in continuous static; do
    for rate in $LOAD_RATES; do
      bench "load_${mode}_rate${rate}" --workload uniform --num-requests "$LOAD_N" \
        --input-len 64 --input-len-max 192 --output-len 16 --output-len-max 96 \
        --request-rate "$rate" --batching "$mode" --max-num-seqs "$LOAD_B" \
        --max-duration "$LOAD_MAX_S" --goodput-ttft-ms 2000 --goodput-tpot-ms 250
    done
  done
fi

if has chunked; then
  for chunk in on off; do
    flag=()
    [ "$chunk" = off ] && flag=(--no-chunked-prefill)
    bench "chunked_${chunk}" --workload long-prompt-mix --num-requests "$CHUNK_CHATS" \
      --input-len 64 --output-len "$CHUNK_CHAT_OUT" --num-long "$CHUNK_NUM_LONG" \
      --long-prompt-len "$CHUNK_LONG_LEN" --long-output-len 8 --long-first-s 1 \
      --long-every-s 2 --max-num-batched-tokens 512 "${flag[@]}" --max-duration 300
  done
fi

if has tiers; then
  for tiers in on off; do
    flag=()
    [ "$tiers" = off ] && flag=(--no-tiers)
    bench "tiers_${tiers}" --workload tier-mix --num-requests "$TIER_INTERACTIVE" \
      --input-len 32 --output-len 16 --num-batch "$TIER_BATCH" --batch-prompt-len 128 \
      --batch-output-len "$TIER_BATCH_OUT" --interactive-start-s 2 --request-rate 1 \
      --max-num-seqs "$TIER_SLOTS" "${flag[@]}" --max-duration 300
  done
fi

if has memory; then
  mem=(--workload uniform --num-requests "$MEM_N" --input-len 32 --input-len-max 64
    --output-len 16 --output-len-max 112 --max-num-seqs 32 --kv-cache-memory "$MEM_KV_MIB"
    --swap-space 64 --max-duration 300)
  for adm in optimistic conservative profiled; do
    bench "memory_admission_${adm}" "${mem[@]}" --admission "$adm" --preemption auto
  done
  for pre in recompute swap; do  # auto is the optimistic run above
    bench "memory_preemption_${pre}" "${mem[@]}" --admission optimistic --preemption "$pre"
  done
fi

if has prefix; then
  for cache in on off; do
    flag=()
    [ "$cache" = off ] && flag=(--no-prefix-caching)
    bench "prefix_${cache}" --workload shared-prefix --num-requests "$PREFIX_N" \
      --prefix-len "$PREFIX_LEN" --input-len 32 --output-len 16 --request-rate 1 \
      "${flag[@]}" --max-duration 300
  done
fi

wait_ready() {  # URL PID: until GET URL answers 200, the process dies, or 120 s pass
  for _ in $(seq 1 240); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.5
  done
  return 1
}
stop_server() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

if has peer; then
  max_clients=0
  for c in $PEER_CLIENTS; do [ "$c" -gt "$max_clients" ] && max_clients=$c; done
  port=$((18000 + RANDOM % 1000))
  ctx=$((max_clients * (PEER_PROMPT + PEER_OUT + 64)))
  servers=(loom)
  if [ -x "$LLAMA_BIN/llama-server" ]; then
    servers+=(llamacpp)
  else
    echo "!! no $LLAMA_BIN/llama-server (run tools/build_llama_cpp.sh): loom alone" >&2
  fi
  for server in "${servers[@]}"; do
    port=$((port + 1))  # a fresh port: the last server's may still be closing
    if [ "$server" = loom ]; then
      srv=("$LOOM" serve --model "$MODEL" --threads "$THREADS" --port "$port"
        --max-num-seqs "$max_clients")
    else
      # One slot per client, each with room for its prompt and output; continuous batching is
      # llama.cpp's default.
      srv=("$LLAMA_BIN/llama-server" -m "$MODEL" --port "$port" -t "$THREADS" -np "$max_clients"
        -c "$ctx" --metrics --no-webui)
    fi
    echo "${srv[*]#$root/}" >>"$base_out/commands.txt"
    "${srv[@]}" >"$OUT/peer_${server}_server.log" 2>&1 &
    pid=$!
    if ! wait_ready "http://127.0.0.1:$port/health" "$pid"; then
      echo "!! $server did not start; see $OUT/peer_${server}_server.log" >&2
      stop_server "$pid"
      continue
    fi
    for c in $PEER_CLIENTS; do
      bench "peer_${server}_c${c}" --mode online --base-url "http://127.0.0.1:$port" \
        --workload fixed --num-requests $((c * PEER_ROUNDS)) --input-len "$PEER_PROMPT" \
        --output-len "$PEER_OUT" --max-concurrency "$c" --max-duration 300
    done
    stop_server "$pid"
  done
fi

}

REPEATS=${REPEATS:-1}
if [ "$REPEATS" -gt 1 ]; then
  # Whole-suite repeats, each in OUT/rN; plot_bench.py reports the median of every figure.
  base=$OUT
  for rep in $(seq 1 "$REPEATS"); do
    OUT=$base/r$rep
    mkdir -p "$OUT"
    echo "== repeat $rep of $REPEATS"
    run_suites
  done
  OUT=$base
else
  run_suites
fi

echo "uptime after: $(uptime)" >>"$OUT/conditions.txt"
tail -1 "$OUT/conditions.txt"
plots=()
[ "${PLOTS_TO_DOCS:-0}" = 1 ] && plots=(--copy-to "$root/docs/plots")
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then
  "$PYTHON" "$root/tools/plot_bench.py" "$OUT" "${plots[@]}"
else
  echo "!! $PYTHON has no matplotlib (pip install -r tools/requirements-bench.txt): no plots" >&2
  "$PYTHON" "$root/tools/plot_bench.py" "$OUT" --tables-only || true
fi
echo "results in $OUT"
