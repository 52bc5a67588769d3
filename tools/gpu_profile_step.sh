#!/usr/bin/env bash
# Where a decode step's time goes: Nsight Compute's kernel durations over a window of decode
# steps of bench_cuda (`--only-batch N`: prefill the prompts, then decode steps at batch N),
# summed per kernel and divided by the number of steps in the window (one argmax a step).
# Run on the GPU machine from the repository root, with binaries built or carried as for
# scripts/gpu_bench.sh (LOOM_GPU_BUILD):
#   tools/gpu_profile_step.sh <shape> <batch> [bench_cuda options, e.g. --vocab 49152]
# Writes $OUT/profile_<shape>_b<batch>.csv (ncu's raw rows) and prints the table.
# ncu serialises kernels and adds overhead between them, so the sum exceeds the real step time;
# the per-kernel times and shares are what it is for. SKIP / COUNT: kernels skipped (past the
# prefill) and profiled.
set -uo pipefail
BUILD=${LOOM_GPU_BUILD:-build-gpu}
OUT=${OUT:-/tmp/loom-gpu-out}
shape=$1
batch=$2
shift 2
SKIP=${SKIP:-4000}
COUNT=${COUNT:-400}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$PWD/$BUILD/gpu_libs"
csv=$OUT/profile_${shape}_b${batch}.csv
ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  --cache-control none --launch-skip "$SKIP" --launch-count "$COUNT" \
  "$BUILD/bench/bench_cuda" "$shape" /tmp/profile_bench.json --only-batch "$batch" "$@" \
  >"$csv" 2>"$OUT/profile_${shape}_b${batch}.log" || { tail -5 "$OUT/profile_${shape}_b${batch}.log"; exit 1; }
python3 - "$csv" "$shape" "$batch" <<'PY'
import csv, sys, collections, re
path, shape, batch = sys.argv[1:4]
rows = [l for l in open(path) if l.startswith('"')]
per = collections.defaultdict(lambda: [0.0, 0])
for r in csv.DictReader(rows):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"]
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"\(anonymous namespace\)|<unnamed>", "anon", name)  # g++ / ncu spellings
    name = re.sub(r"\((?!anon).*", "", name)  # drop the argument list
    cut = name.split("<")[0].rfind("::")  # and the namespaces
    name = name[cut + 2:] if cut >= 0 else name
    per[name][0] += float(r["Metric Value"].replace(",", "")) / 1e3  # ns -> us
    per[name][1] += 1
steps = sum(v[1] for k, v in per.items() if k.startswith("argmax"))
if steps == 0:
    sys.exit("no argmax kernel in the window: raise COUNT")
total = sum(v[0] for v in per.values()) / steps
print(f"{shape}, batch {batch}: {steps} steps profiled, {total:.1f} us of kernels a step")
print(f"{'kernel':70s} {'us/step':>9s} {'share':>6s} {'launches/step':>13s}")
for k, (us, n) in sorted(per.items(), key=lambda kv: -kv[1][0]):
    print(f"{k[:70]:70s} {us / steps:9.1f} {100 * us / steps / total:5.1f}% {n / steps:13.1f}")
PY
