#!/usr/bin/env bash
# Overlapped steps against serial steps (`loom bench --no-overlap`), through the engine on the
# GPU, alternating the two modes within one run (these machines drift between runs):
#   (b) 1,000 prompts of 256 in, 256 out, every request at once (256 running), and
#   single stream: one request of 128 in, 1,024 out (the engine's batch-1 step).
# Shapes: $SHAPES (default both); $REPEATS rounds (default 2). From the repository root, with
# binaries in $LOOM_GPU_BUILD (as scripts/gpu_bench.sh). Results (.txt, .json) go to $OUT and a
# table of medians is printed.
set -uo pipefail
BUILD=${LOOM_GPU_BUILD:-build-gpu}
OUT=${OUT:-/tmp/loom-gpu-out}
SHAPES=${SHAPES:-"llama-3.2-1b llama-3.1-8b"}
REPEATS=${REPEATS:-2}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$PWD/$BUILD/gpu_libs"
TOKENIZER=/tmp/loom-dummy-tokenizer.json
"$PYTHON" tools/make_dummy_tokenizer.py 128256 "$TOKENIZER" || exit 1
status=0
for shape in $SHAPES; do
  common=(--device cuda --load-format dummy --model "$shape" --tokenizer "$TOKENIZER"
    --max-num-seqs 256 --max-num-batched-tokens 8192 --seed 0 --no-progress --max-duration 300)
  for r in $(seq 1 "$REPEATS"); do
    for mode in overlap serial; do
      flag=()
      [ "$mode" = serial ] && flag=(--no-overlap)
      echo "== $shape $mode, round $r"
      "$BUILD/loom" bench "${common[@]}" "${flag[@]}" --workload fixed --num-requests 1000 \
        --input-len 256 --output-len 256 --label "b_${shape}_${mode}_$r" \
        --json-out "$OUT/ab_b_${shape}_${mode}_$r.json" 2>"$OUT/ab_b_${shape}_${mode}_$r.log" |
        tee "$OUT/ab_b_${shape}_${mode}_$r.txt" | grep -E "^duration|group all|TPOT" || status=1
      "$BUILD/loom" bench "${common[@]}" "${flag[@]}" --workload fixed --num-requests 1 \
        --input-len 128 --output-len 1024 --label "one_${shape}_${mode}_$r" \
        --json-out "$OUT/ab_one_${shape}_${mode}_$r.json" 2>"$OUT/ab_one_${shape}_${mode}_$r.log" |
        tee "$OUT/ab_one_${shape}_${mode}_$r.txt" | grep -E "^duration|TPOT" || status=1
    done
  done
done
"$PYTHON" - "$OUT" <<'PY'
import glob, json, os, re, statistics, sys
out = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "ab_*_*.json"))):
    m = re.match(r"ab_(b|one)_(.+)_(overlap|serial)_\d+\.json", os.path.basename(f))
    if not m:
        continue
    d = json.load(open(f))
    rows.setdefault((m.group(1), m.group(2), m.group(3)), []).append(d)
def med(ds, key, sub=None):
    vals = []
    for d in ds:
        g = next((g for g in d.get("groups", []) if g.get("group") == "all"), None)
        v = g.get(key) if g else None
        if sub is not None and isinstance(v, dict):
            v = v.get(sub)
        if isinstance(v, (int, float)):
            vals.append(v)
    return statistics.median(vals) if vals else float("nan")
print("| workload | shape | mode | output tok/s | req/s | TPOT p50 ms | runs |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
for (w, shape, mode), ds in sorted(rows.items()):
    print(f"| {w} | {shape} | {mode} | {med(ds, 'output_tokens_per_s'):,.0f} | "
          f"{med(ds, 'requests_per_s'):.1f} | {med(ds, 'tpot_ms', 'p50'):.3f} | {len(ds)} |")
PY
exit $status
