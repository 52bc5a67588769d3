#!/usr/bin/env python3
"""The table of tools/gpu_server_workloads.sh: loom's server against llama-server, per shape and
workload, from the `loom bench --mode online` reports the script writes, with the loom/llama.cpp
ratio of every figure and checks that both servers did the same work.

    server_workloads_summary.py OUT_DIR OUT_JSON

Reads OUT_DIR/server_<workload>_<shape>_{loom,llamacpp}.json for each shape in $SHAPES and each
workload in $WORKLOADS, OUT_DIR/server_workloads_timings.txt, server_workloads_gpu.txt and
server_workloads_commands.txt; the settings come from the environment under the script's names.
A missing or unreadable report leaves its figures null and is listed under "problems"; the JSON
is written all the same. Exits 1 when there is any problem. Standard library only.
"""
import json
import os
import sys

ENGINES = (("loom", "loom"), ("llamacpp", "llama.cpp"))

DEFINITIONS = {
    "output_tok_s": "tokens streamed back over all requests / the run's duration (the first "
                    "request sent to the last token received); tokens as the server's usage "
                    "reports them",
    "total_tok_s": "(prompt tokens + output tokens) / the run's duration",
    "requests_s": "finished requests / the run's duration",
    "ttft_ms": "time to first token: request sent to the first streamed chunk with text, per "
               "request; p50 and p99 over the requests (queueing in the server included)",
    "itl_ms": "inter-token latency: time between successive streamed chunks with text, over "
              "every gap of every request; p50 and p99",
    "ratio_loom_over_llamacpp": "loom's figure / llama.cpp's: above 1 means loom higher (better "
                                "for throughput, worse for latency)",
    "workloads": "every request sent at once (request rate 0) through at most `concurrency` "
                 "streams; random token-id prompts (the same for both servers: same seed); "
                 "greedy; ignore_eos, so each request generates exactly its max_tokens",
}

FIGURES = ("output_tok_s", "total_tok_s", "requests_s", "ttft_p50_ms", "ttft_p99_ms",
           "itl_p50_ms", "itl_p99_ms")


def read_report(path, problems):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        problems.append(f"{os.path.basename(path)}: not written")
    except ValueError as e:
        problems.append(f"{os.path.basename(path)}: unreadable ({e})")
    return None


def figures(report):
    """The headline figures of one `loom bench` report (its "all" group)."""
    g = report["groups"][0]
    return {
        "num_requests": g["num_requests"],
        "num_ok": g["num_ok"],
        "num_failed": g["num_failed"],
        "num_not_sent": report.get("num_not_sent", 0),
        "duration_s": report["duration_s"],
        "input_tokens": g["input_tokens"],
        "output_tokens": g["output_tokens"],
        "output_tok_s": g["output_tokens_per_s"],
        "total_tok_s": g["input_tokens_per_s"] + g["output_tokens_per_s"],
        "requests_s": g["requests_per_s"],
        "ttft_p50_ms": g["ttft_ms"]["p50"],
        "ttft_p99_ms": g["ttft_ms"]["p99"],
        "itl_p50_ms": g["itl_ms"]["p50"],
        "itl_p99_ms": g["itl_ms"]["p99"],
        "tpot_p50_ms": g["tpot_ms"]["p50"],
        "e2e_p50_ms": g["e2e_ms"]["p50"],
    }


def check(name, report, fig, problems):
    """Every request finished, and (fixed output length) with all its tokens."""
    if fig["num_ok"] != fig["num_requests"] or fig["num_not_sent"]:
        problems.append(f"{name}: {fig['num_ok']} of {fig['num_requests'] + fig['num_not_sent']}"
                        f" requests finished ({fig['num_failed']} failed or cut off,"
                        f" {fig['num_not_sent']} not sent)")
    w = report.get("config", {}).get("workload", {})
    if w.get("name") == "fixed" and fig["num_ok"] == fig["num_requests"]:
        want = fig["num_requests"] * w["output_len"]
        if fig["output_tokens"] != want:
            problems.append(f"{name}: {fig['output_tokens']} output tokens, not {want}: a request "
                            "ended early (EOS not ignored, or the context full)")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main():
    out_dir, out_json = sys.argv[1:3]
    env = os.environ
    shapes = env.get("SHAPES", "llama-3.2-1b").split()
    workloads = env.get("WORKLOADS", "a b").split()
    problems, results = [], []
    for shape in shapes:
        for w in workloads:
            entry = {"shape": shape, "workload": w}
            reports = {}
            for key, label in ENGINES:
                name = f"server_{w}_{shape}_{key}"
                report = read_report(os.path.join(out_dir, name + ".json"), problems)
                fig = None
                if report is not None:
                    try:
                        fig = figures(report)
                        check(name, report, fig, problems)
                        reports[key] = report
                    except (KeyError, IndexError, TypeError) as e:
                        problems.append(f"{name}.json: no figure {e}")
                        fig = None
                entry[key] = fig
            lo, ll = entry["loom"], entry["llamacpp"]
            if lo and ll:
                # Same seed, same workload: the same prompts and lengths, so the same token counts.
                for k in ("input_tokens", "output_tokens"):
                    if lo["num_ok"] == lo["num_requests"] and ll["num_ok"] == ll["num_requests"] \
                            and lo[k] != ll[k]:
                        problems.append(f"{w} {shape}: {k} differ: loom {lo[k]}, llama.cpp {ll[k]}")
                cl = reports["loom"].get("config", {}).get("workload")
                cr = reports["llamacpp"].get("config", {}).get("workload")
                if cl != cr:
                    problems.append(f"{w} {shape}: the two runs' workloads differ")
                entry["workload_config"] = cl
                entry["max_concurrency"] = reports["loom"].get("config", {}).get("max_concurrency")
            entry["ratio_loom_over_llamacpp"] = {
                k: ratio(lo[k] if lo else None, ll[k] if ll else None) for k in FIGURES}
            results.append(entry)

    def text(name):
        path = os.path.join(out_dir, name)
        return open(path).read() if os.path.exists(path) else ""

    timings = {}
    for line in text("server_workloads_timings.txt").splitlines():
        parts = line.split()
        if len(parts) == 3:
            timings[parts[0]] = {"seconds": float(parts[1]), "ok": parts[2] == "ok"}
            if parts[2] != "ok":
                problems.append(f"step {parts[0]} failed (see server_workloads.log)")
    settings = {k: env.get(k) for k in (
        "LOOM_DEVICE", "DTYPE", "N", "CONCURRENCY", "SLOTS", "MAX_NUM_BATCHED_TOKENS",
        "WARMUP_REQUESTS", "NGL", "FA", "LLAMA_BATCH", "LLAMA_UBATCH", "KV_UNIFIED",
        "LLAMA_SLOT_CTX")}
    summary = {
        "gpu": text("server_workloads_gpu.txt").strip() or None,
        "settings": settings,
        "commands": text("server_workloads_commands.txt").splitlines(),
        "definitions": DEFINITIONS,
        "results": results,
        "timings_s": {k: v["seconds"] for k, v in timings.items()},
        "problems": problems,
    }
    with open(out_json, "w") as f:
        json.dump(summary, f, indent=1)

    def cell(v, ratio_row=False):
        if v is None:
            return "-"
        return f"{v:.2f}x" if ratio_row else f"{v:,.1f}"

    head = ("shape", "wl", "engine", "ok/sent", "out tok/s", "total tok/s", "req/s",
            "TTFT p50", "TTFT p99", "ITL p50", "ITL p99")
    widths = (14, 2, 15, 11, 10, 11, 8, 9, 9, 8, 8)
    line = lambda cols: "  ".join(  # noqa: E731
        str(c).ljust(n) if i < 4 else str(c).rjust(n) for i, (c, n) in enumerate(zip(cols, widths)))
    print(f"server workloads: {summary['gpu'] or 'gpu ?'}; latencies in ms; ratio = loom / "
          "llama.cpp (throughput: above 1 is loom faster; latency: below 1 is loom lower)")
    print(line(head))
    for e in results:
        for key, label in ENGINES:
            f = e[key]
            if f is None:
                print(line((e["shape"], e["workload"], label, "missing") + ("-",) * 7))
                continue
            sent = f["num_requests"]
            print(line((e["shape"], e["workload"], label, f"{f['num_ok']}/{sent}")
                       + tuple(cell(f[k]) for k in FIGURES)))
        r = e["ratio_loom_over_llamacpp"]
        print(line((e["shape"], e["workload"], "loom/llama.cpp", "")
                   + tuple(cell(r[k], True) for k in FIGURES)))
    for p in problems:
        print(f"problem: {p}")
    print(f"summary: {out_json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
