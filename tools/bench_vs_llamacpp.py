#!/usr/bin/env python3
"""loom against llama.cpp on the CPU, same model, same machine, one run (issues 2 and 3).

Runs, alternating the two engines for each repeat so machine noise hits both alike:
  loom:      build/bench/bench_cpu_model (prefill of a 512-token prompt, single-stream decode of
             128 tokens, aggregate throughput at N concurrent 128-in/128-out sequences)
  llama.cpp: llama-bench -p 512 -n 128, and llama-batched-bench -npp 128 -ntg 128 -npl N
and prints medians and loom/llama.cpp ratios as a table, plus JSON (--json).

  tools/build_llama_cpp.sh                      # once: builds the peer outside the repository
  python3 tools/bench_vs_llamacpp.py --repeats 3 --json bench/results/vs_llamacpp.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json_lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{") or l.startswith("[")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--loom-bench", default=os.path.join(ROOT, "build/bench/bench_cpu_model"))
    ap.add_argument("--llama-bin", default=os.path.expanduser("~/.cache/loom-peers/llama.cpp/build/bin"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    loom = {"prefill": [], "decode": [], **{f"b{n}": [] for n in batches}}
    llama = {"prefill": [], "decode": [], **{f"b{n}": [] for n in batches}}
    tmp = os.path.join(ROOT, "bench", "results")
    os.makedirs(tmp, exist_ok=True)
    for r in range(args.repeats):
        out = os.path.join(tmp, "loom_cpu_model.json")
        subprocess.run([args.loom_bench, "--model", args.model, "--repeats", "1", "--batches",
                        args.batches, "--json", out], check=True, stdout=subprocess.DEVNULL)
        j = json.load(open(out))
        loom["prefill"].append(j["prefill_tok_s"])
        loom["decode"].append(j["decode_tok_s"])
        for b in j["batched"]:
            loom[f"b{b['concurrency']}"].append(b["decode_tok_s"])

        lb = json.loads(subprocess.run(
            [os.path.join(args.llama_bin, "llama-bench"), "-m", args.model, "-p", "512", "-n", "128",
             "-t", str(args.threads), "-r", "1", "-o", "json"],
            check=True, capture_output=True, text=True).stdout)
        for row in lb:
            if row["n_prompt"] > 0:
                llama["prefill"].append(row["avg_ts"])
            else:
                llama["decode"].append(row["avg_ts"])
        ctx = max(batches) * 256 + 256
        rows = run_json_lines([os.path.join(args.llama_bin, "llama-batched-bench"), "-m", args.model,
                               "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", "128", "-ntg", "128",
                               "-npl", args.batches, "-t", str(args.threads), "--output-format", "jsonl"])
        for row in rows:
            llama[f"b{row['pl']}"].append(row["speed_tg"])
        print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)

    med = lambda v: statistics.median(v) if v else float("nan")
    names = [("prefill", "prefill 512 tokens (tok/s)"), ("decode", "decode, 1 stream (tok/s)")] + \
            [(f"b{n}", f"decode, {n} concurrent (aggregate tok/s)") for n in batches]
    print(f"{'measure':42s} {'loom':>10s} {'llama.cpp':>10s} {'ratio':>7s}")
    result = {"repeats": args.repeats, "threads": args.threads, "rows": []}
    for key, label in names:
        a, b = med(loom[key]), med(llama[key])
        print(f"{label:42s} {a:10.1f} {b:10.1f} {a / b:7.2f}x")
        result["rows"].append({"measure": key, "loom": a, "llama_cpp": b, "ratio": a / b,
                               "loom_runs": loom[key], "llama_cpp_runs": llama[key]})
    if args.json:
        json.dump(result, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
