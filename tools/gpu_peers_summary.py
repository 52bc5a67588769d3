#!/usr/bin/env python3
"""The summary of one shape's llama.cpp run for tools/gpu_peers.sh: reads llama-bench's JSON and
llama-batched-bench's JSONL, writes one JSON with the headline figures, how each is defined, the
settings, the step timings and both tools' raw output, and prints the figures.

    gpu_peers_summary.py SHAPE MODEL LLAMA_BENCH_JSON BATCHED_JSONL TIMINGS GPU_TXT OUT_JSON

Settings come from the environment, under the names tools/gpu_peers.sh reads (DTYPE, NGL, FA,
LB_*, BB_*). A missing or unreadable input leaves its figures null and is listed under "errors";
the summary is written all the same. Standard library only.
"""
import json
import os
import statistics
import sys

DEFINITIONS = {
    "decode_tok_s_batch1":
        "llama-bench tg<n_gen> avg_ts: one sequence generating n_gen tokens one at a time from an "
        "empty context; mean over the repetitions of n_gen / wall time (after a warm-up run)",
    "prefill_tok_s":
        "llama-bench pp<N> avg_ts, keyed by N: one N-token prompt processed into an empty context "
        "in n_batch / n_ubatch chunks; mean over the repetitions of N / wall time",
    "batched_decode_tok_s":
        "llama-batched-bench S_TG (speed_tg = pl * ntg / t_tg), keyed by pl: pl sequences, each "
        "with its own npp-token random prompt (not shared) and its own KV stream (not unified "
        "unless settings say so), then ntg decode steps of pl tokens (one per sequence, random "
        "tokens, no sampling); aggregate tokens/s over all pl sequences; median over the repeats",
    "batched_prefill_tok_s":
        "llama-batched-bench S_PP (speed_pp = pl * npp / t_pp): the pl prompts processed together "
        "(in n_batch / n_ubatch chunks) before the decode steps; median over the repeats",
}


def read(path, parse, errors):
    try:
        with open(path) as f:
            return parse(f.read())
    except FileNotFoundError:
        errors.append(f"{os.path.basename(path)}: not written")
    except ValueError as e:
        errors.append(f"{os.path.basename(path)}: unreadable ({e})")
    return None


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def median(values):
    return statistics.median(values) if values else None


def main():
    shape, model, lb_path, bb_path, timings_path, gpu_path, out = sys.argv[1:8]
    env = os.environ
    errors = []
    lb = read(lb_path, json.loads, errors) or []
    bb = read(bb_path, jsonl, errors) or []

    decode = decode_sd = None
    prefill, prefill_sd = {}, {}
    for row in lb:
        if row.get("n_prompt", 0) == 0 and row.get("n_gen", 0) > 0:
            decode, decode_sd = row["avg_ts"], row["stddev_ts"]
        elif row.get("n_gen", 0) == 0 and row.get("n_prompt", 0) > 0:
            prefill[str(row["n_prompt"])] = row["avg_ts"]
            prefill_sd[str(row["n_prompt"])] = row["stddev_ts"]
    if lb and decode is None:
        errors.append("llama-bench: no decode (tg) row")

    rows = list(bb)
    warmup = rows.pop(0) if env.get("BB_WARMUP", "1") == "1" and rows else None
    npl = [int(x) for x in env.get("BB_NPL", "1,16,64,256").split(",")]
    tg_runs = {str(n): [r["speed_tg"] for r in rows if r["pl"] == n] for n in npl}
    pp_runs = {str(n): [r["speed_pp"] for r in rows if r["pl"] == n] for n in npl}
    if bb:
        errors += [f"batched-bench: no row for {n} sequences" for n, v in tg_runs.items() if not v]

    timings = {}
    if os.path.exists(timings_path):
        for line in open(timings_path):
            name, secs, state = line.split()
            timings[name] = {"seconds": float(secs), "ok": state == "ok"}
    for name in ("unpack", "configure", "build", f"model_{shape}", f"llama-bench_{shape}",
                 f"batched-bench_{shape}"):
        if name in timings and not timings[name]["ok"]:
            errors.append(f"step {name} failed (see llamacpp.log)")

    lb0 = lb[0] if lb else {}
    bb0 = bb[0] if bb else {}
    summary = {
        "engine": "llama.cpp",
        "shape": shape,
        "model_file": model,
        "model_bytes": os.path.getsize(model) if os.path.exists(model) else None,
        "weights_dtype": env.get("DTYPE", "f16"),
        "gpu": open(gpu_path).read().strip() if os.path.exists(gpu_path) else None,
        "llama_cpp": {k: lb0.get(k) for k in ("build_commit", "build_number", "backends",
                                              "gpu_info", "model_type", "model_size",
                                              "model_n_params")},
        "settings": {
            "llama_bench": {
                "n_prompt": env.get("LB_PROMPTS", "512,2048"),
                "n_gen": int(env.get("LB_GEN", "128")),
                "repetitions": int(env.get("LB_REPS", "3")),
                **{k: lb0.get(k) for k in ("n_gpu_layers", "flash_attn", "n_batch", "n_ubatch",
                                           "type_k", "type_v", "n_threads")},
            },
            "batched_bench": {
                "npp": int(env.get("BB_NPP", "128")),
                "ntg": int(env.get("BB_NTG", "128")),
                "npl": npl,
                "repeats": int(env.get("BB_REPEATS", "3")),
                "warmup_run_dropped": warmup is not None,
                "kv_unified": env.get("BB_KV_UNIFIED", "0") == "1",
                "prompt_shared": bool(bb0.get("is_pp_shared", 0)),
                "n_ctx": bb0.get("n_kv_max"),
                **{k: bb0.get(k) for k in ("n_batch", "n_ubatch", "flash_attn", "n_gpu_layers",
                                           "n_threads")},
            },
        },
        "decode_tok_s_batch1": decode,
        "decode_tok_s_batch1_stddev": decode_sd,
        "prefill_tok_s": prefill,
        "prefill_tok_s_stddev": prefill_sd,
        "batched_decode_tok_s": {n: median(v) for n, v in tg_runs.items()},
        "batched_prefill_tok_s": {n: median(v) for n, v in pp_runs.items()},
        "batched_decode_tok_s_runs": tg_runs,
        "batched_prefill_tok_s_runs": pp_runs,
        "definitions": DEFINITIONS,
        "timings_s": {k: v["seconds"] for k, v in timings.items()},
        "errors": errors,
        "raw": {"llama_bench": lb, "batched_bench": bb, "batched_bench_warmup": warmup},
    }
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)

    def fmt(v):
        return "-" if v is None else f"{v:,.1f}"

    print(f"{shape}: decode, batch 1: {fmt(decode)} tok/s; prefill: " +
          ", ".join(f"pp{k} {fmt(v)}" for k, v in prefill.items()) + " tok/s")
    print(f"{shape}: batched decode S_TG (tok/s): " +
          ", ".join(f"{n} seq {fmt(median(v))}" for n, v in tg_runs.items()))
    for e in errors:
        print(f"{shape}: problem: {e}")
    print(f"{shape}: summary {out}")


if __name__ == "__main__":
    main()
