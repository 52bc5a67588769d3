#!/usr/bin/env python3
"""Draws the plots and prints the markdown tables of a `tools/run_benchmarks.sh` results folder.

  python tools/plot_bench.py bench/results/<run> [--copy-to docs/plots] [--tables-only]

Reads every <name>.json that `loom bench --json-out` wrote (names as the run script gives them:
batching_<mode>_cap<N>, load_<mode>_rate<R>, chunked_<on|off>, tiers_<on|off>,
memory_<admission|preemption>_<policy>, prefix_<on|off>, peer_<server>_c<N>) and writes
<folder>/plots/*.png (small: 100 dpi, few colours) and <folder>/tables.md.
Needs matplotlib (tools/requirements-bench.txt) unless --tables-only.
"""
import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path


def load_one(folder):
    runs = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            runs[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
    return runs


def median_of(values):
    """Leaf-wise median of same-shaped JSON values: numbers -> median (booleans: any), dicts and
    lists recursively; anything else (strings, nulls) is taken from the first repeat."""
    first = values[0]
    if isinstance(first, bool):
        return any(v for v in values if isinstance(v, bool))
    if isinstance(first, (int, float)):
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return statistics.median(nums) if nums else first
    if isinstance(first, dict):
        return {k: median_of([v[k] for v in values if isinstance(v, dict) and k in v])
                for k in first}
    if isinstance(first, list):
        same = [v for v in values if isinstance(v, list) and len(v) == len(first)]
        return [median_of([v[i] for v in same]) for i in range(len(first))]
    return first


def load(folder):
    """The reports of a results folder. With repeats (subfolders r1, r2, ...), each report is the
    leaf-wise median of its repeats, and gets "repeats": how many there were."""
    reps = sorted(p for p in Path(folder).glob("r[0-9]*") if p.is_dir())
    if not reps:
        return load_one(folder)
    per_rep = [load_one(r) for r in reps]
    runs = {}
    for name in sorted({n for rep in per_rep for n in rep}):
        values = [rep[name] for rep in per_rep if name in rep]
        runs[name] = median_of(values)
        runs[name]["repeats"] = len(values)
    return runs


def group(run, name="all"):
    for g in run["groups"]:
        if g["group"] == name:
            return g
    return None


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        digits = 0 if abs(v) >= 1000 else 1 if abs(v) >= 10 else 2 if abs(v) >= 1 else 3
        return f"{v:,.{digits}f}"
    return str(v)


def ms(summary, key):
    return summary.get(key) if summary else None


def cut_off(run):
    g = group(run)
    return g["num_failed"] > 0 or run.get("num_not_sent", 0) > 0


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def by_pattern(runs, pattern):
    rx = re.compile(pattern)
    out = []
    for name, run in runs.items():
        m = rx.fullmatch(name)
        if m:
            out.append((m, run))
    return out


def batching_tables(runs):
    rows, series = [], {}
    for m, run in by_pattern(runs, r"batching_(\w+)_cap(\d+)"):
        mode, cap = m.group(1), int(m.group(2))
        g = group(run)
        rows.append((cap, mode, g["num_ok"], run["duration_s"], g["requests_per_s"],
                     g["output_tokens_per_s"], ms(g["ttft_ms"], "p50"), ms(g["ttft_ms"], "p99"),
                     ms(g["e2e_ms"], "p50"), ms(g["e2e_ms"], "p99"),
                     "yes" if cut_off(run) else "no"))
        series.setdefault(mode, {})[cap] = g["output_tokens_per_s"]
    order = ["continuous", "static", "paddedstatic", "dynamic"]
    rows.sort(key=lambda r: (r[0], order.index(r[1]) if r[1] in order else 9))
    others = [m for m in order[1:] if m in series]
    ratio_rows = []
    for cap in sorted(series.get("continuous", {})):
        c = series["continuous"][cap]
        ratio_rows.append([cap] + [f"{c / series[m][cap]:.2f}x" if series[m].get(cap) else None
                                   for m in others])
    text = table(["cap", "batching", "ok", "duration s", "req/s", "output tok/s", "TTFT p50 ms",
                  "TTFT p99 ms", "E2E p50 ms", "E2E p99 ms", "cut off"], rows)
    if ratio_rows:
        text += "\n" + table(["cap"] + [f"continuous / {m}" for m in others], ratio_rows)
    return text, series


def stepcost_table(runs):
    rows = []
    for m, run in sorted(by_pattern(runs, r"stepcost_n(\d+)"), key=lambda x: int(x[0].group(1))):
        n = int(m.group(1))
        g = group(run)
        step_ms = ms(g["itl_ms"], "p50")
        rows.append((n, g["output_tokens_per_s"], step_ms,
                     step_ms / n if step_ms else None, run["server"]["iterations"]))
    return table(["sequences per step", "output tok/s", "step time p50 ms (ITL p50)",
                  "ms per token", "steps"], rows)


def load_tables(runs):
    rows, series = [], {}
    for m, run in by_pattern(runs, r"load_(\w+)_rate([\d.]+)"):
        mode, rate = m.group(1), float(m.group(2))
        g = group(run)
        rows.append((mode, rate, g["num_ok"], g["requests_per_s"], g["output_tokens_per_s"],
                     ms(g["ttft_ms"], "p50"), ms(g["ttft_ms"], "p99"), ms(g["itl_ms"], "p50"),
                     ms(g["itl_ms"], "p99"), ms(g["tpot_ms"], "p50"),
                     None if g["goodput_share"] is None else 100 * g["goodput_share"],
                     "yes" if cut_off(run) else "no"))
        series.setdefault(mode, []).append((rate, g))
    rows.sort(key=lambda r: (r[0], r[1]))
    for s in series.values():
        s.sort(key=lambda x: x[0])
    return table(["batching", "rate req/s", "ok", "achieved req/s", "output tok/s", "TTFT p50 ms",
                  "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "TPOT p50 ms", "goodput %",
                  "cut off"], rows), series


def pair_table(runs, prefix, variants, groups, extra=()):
    rows = []
    for v in variants:
        run = runs.get(f"{prefix}_{v}")
        if not run:
            continue
        for gname in groups:
            g = group(run, gname)
            if not g:
                continue
            srv = run["server"]
            rows.append((v, gname, g["num_ok"], g["output_tokens_per_s"], ms(g["ttft_ms"], "p50"),
                         ms(g["ttft_ms"], "p99"), ms(g["itl_ms"], "p50"), ms(g["itl_ms"], "p99"),
                         ms(g["itl_ms"], "max"), ms(g["e2e_ms"], "p99"), run["duration_s"])
                        + tuple(f(run, g) for _, f in extra))
    return table(["run", "group", "ok", "output tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",
                  "ITL p99 ms", "ITL max ms", "E2E p99 ms", "duration s"]
                 + [h for h, _ in extra], rows)


def memory_table(runs):
    rows = []
    for m, run in by_pattern(runs, r"memory_(admission|preemption)_(\w+)"):
        e = run["config"]["engine"]
        g = group(run)
        s = run["server"]
        rows.append((e["admission"], e["preemption"], g["num_ok"], g["output_tokens_per_s"],
                     s["preemptions_swap"], s["preemptions_recompute"],
                     None if s["peak_kv_usage"] is None else 100 * s["peak_kv_usage"],
                     ms(g["ttft_ms"], "p50"), ms(g["ttft_ms"], "p99"), ms(g["itl_ms"], "p99"),
                     ms(g["e2e_ms"], "p99"), run["duration_s"]))
    return table(["admission", "preemption", "ok", "output tok/s", "swaps", "recomputes",
                  "peak KV %", "TTFT p50 ms", "TTFT p99 ms", "ITL p99 ms", "E2E p99 ms",
                  "duration s"], rows)


def peer_table(runs):
    rows, ratio_rows = [], []
    clients = sorted({int(m.group(2)) for m, _ in by_pattern(runs, r"peer_(\w+?)_c(\d+)")})
    for c in clients:
        per = {}
        for server in ("loom", "llamacpp"):
            run = runs.get(f"peer_{server}_c{c}")
            if not run:
                continue
            g = group(run)
            per[server] = g
            rows.append((c, server, g["num_ok"], g["output_tokens_per_s"], ms(g["ttft_ms"], "p50"),
                         ms(g["ttft_ms"], "p99"), ms(g["itl_ms"], "p50"), ms(g["itl_ms"], "p99"),
                         run["duration_s"]))
        if len(per) == 2:
            lo, ll = per["loom"], per["llamacpp"]
            tput = lo["output_tokens_per_s"] / ll["output_tokens_per_s"] if ll["output_tokens_per_s"] else None
            t_lo, t_ll = ms(lo["ttft_ms"], "p99"), ms(ll["ttft_ms"], "p99")
            ratio_rows.append((c, f"{tput:.2f}x" if tput else None,
                               f"{t_lo / t_ll:.2f}x" if t_lo and t_ll else None))
    text = table(["clients", "server", "ok", "output tok/s", "TTFT p50 ms", "TTFT p99 ms",
                  "ITL p50 ms", "ITL p99 ms", "duration s"], rows)
    if ratio_rows:
        text += "\n" + table(["clients", "output tok/s loom / llama.cpp",
                              "p99 TTFT loom / llama.cpp (lower is better)"], ratio_rows)
    return text


def plot_all(runs, batching_series, load_series, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"continuous": "tab:blue", "static": "tab:red", "paddedstatic": "tab:purple",
               "dynamic": "tab:orange"}
    written = []

    def save(fig, name):
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if batching_series:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for mode, pts in batching_series.items():
            caps = sorted(pts)
            ax.plot(caps, [pts[c] for c in caps], "o-", label=mode, color=colours.get(mode))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({c for pts in batching_series.values() for c in pts}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("output length cap (tokens)")
        ax.set_ylabel("output tokens / s")
        ax.set_title("Anyscale workload: throughput against the cap")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "batching_throughput_vs_cap.png")

    if load_series:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for mode, pts in load_series.items():
            rates = [r for r, _ in pts]
            for ax, key in zip(axes, ("ttft_ms", "itl_ms")):
                for q, style in (("p50", "o-"), ("p99", "s--")):
                    ax.plot(rates, [g[key][q] for _, g in pts], style, color=colours.get(mode),
                            label=f"{mode} {q}")
        all_rates = sorted({r for pts in load_series.values() for r, _ in pts})
        for ax, title in zip(axes, ("time to first token", "inter-token latency")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_rates)
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_yscale("log")
            ax.set_xlabel("arrival rate (requests / s)")
            ax.set_ylabel("ms")
            ax.set_title(title)
            ax.grid(alpha=0.3, which="both")
        axes[0].legend(fontsize=8)
        save(fig, "latency_vs_load.png")

    def bars(name, title, labels, values, ylabel):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(labels, values, color=["tab:blue", "tab:red", "tab:orange", "tab:green",
                                      "tab:purple", "tab:gray"][: len(values)])
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.0f}", (i, v), ha="center", va="bottom", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        save(fig, name)

    chunk = [(v, runs.get(f"chunked_{v}")) for v in ("on", "off")]
    if all(r for _, r in chunk):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        labels = [f"chunked {v}" for v, _ in chunk]
        x = range(len(chunk))
        axes[0].bar([i - 0.2 for i in x], [group(r, "chat")["itl_ms"]["p99"] for _, r in chunk],
                    0.4, label="p99", color="tab:blue")
        axes[0].bar([i + 0.2 for i in x], [group(r, "chat")["itl_ms"]["max"] for _, r in chunk],
                    0.4, label="max", color="tab:red")
        axes[0].set_xticks(list(x))
        axes[0].set_xticklabels(labels)
        axes[0].legend(fontsize=8)
        axes[0].set_title("running chats: ITL (ms)")
        axes[1].bar(labels, [group(r, "long")["ttft_ms"]["mean"] or 0 for _, r in chunk],
                    color="tab:gray")
        axes[1].set_title("long prompts: mean TTFT (ms)")
        for ax in axes:
            ax.grid(alpha=0.3, axis="y")
        save(fig, "chunked_prefill.png")

    tiers = [(v, runs.get(f"tiers_{v}")) for v in ("on", "off")]
    if all(r for _, r in tiers):
        bars("tiers.png", "interactive TTFT p99 under batch jobs",
             [f"tiers {v}" for v, _ in tiers],
             [group(r, "interactive")["ttft_ms"]["p99"] for _, r in tiers], "ms")

    mem = by_pattern(runs, r"memory_(admission|preemption)_(\w+)")
    if mem:
        mem.sort(key=lambda x: x[0].group(0))
        labels = [f"{r['config']['engine']['admission']}\n{r['config']['engine']['preemption']}"
                  for _, r in mem]
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
        axes[0].bar(labels, [group(r)["output_tokens_per_s"] for _, r in mem])
        axes[0].set_title("output tok/s")
        axes[1].bar(labels, [r["server"]["preemptions_swap"] or 0 for _, r in mem], label="swap")
        axes[1].bar(labels, [r["server"]["preemptions_recompute"] or 0 for _, r in mem],
                    bottom=[r["server"]["preemptions_swap"] or 0 for _, r in mem],
                    label="recompute")
        axes[1].set_title("preemptions")
        axes[1].legend(fontsize=8)
        axes[2].bar(labels, [group(r)["e2e_ms"]["p99"] or 0 for _, r in mem])
        axes[2].set_title("E2E p99 (ms)")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(alpha=0.3, axis="y")
        save(fig, "memory_pressure.png")

    pre = [(v, runs.get(f"prefix_{v}")) for v in ("on", "off")]
    if all(r for _, r in pre):
        bars("prefix_caching.png", "shared prefix: mean TTFT", [f"prefix cache {v}" for v, _ in pre],
             [group(r)["ttft_ms"]["mean"] for _, r in pre], "ms")

    peers = by_pattern(runs, r"peer_(\w+?)_c(\d+)")
    if peers:
        clients = sorted({int(m.group(2)) for m, _ in peers})
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        width = 0.38
        for k, server in enumerate(("loom", "llamacpp")):
            xs = [i + (k - 0.5) * width for i in range(len(clients))]
            gs = [group(runs[f"peer_{server}_c{c}"]) if f"peer_{server}_c{c}" in runs else None
                  for c in clients]
            axes[0].bar(xs, [g["output_tokens_per_s"] if g else 0 for g in gs], width, label=server)
            axes[1].bar(xs, [g["ttft_ms"]["p99"] if g else 0 for g in gs], width, label=server)
        for ax, title in zip(axes, ("output tok/s", "TTFT p99 (ms)")):
            ax.set_xticks(range(len(clients)))
            ax.set_xticklabels([f"{c} clients" for c in clients])
            ax.set_title(title)
            ax.grid(alpha=0.3, axis="y")
        axes[0].legend(fontsize=8)
        save(fig, "loom_vs_llamacpp.png")
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--copy-to", help="also copy the PNGs here (docs/plots)")
    ap.add_argument("--tables-only", action="store_true")
    args = ap.parse_args()
    runs = load(args.folder)
    if not runs:
        sys.exit(f"no JSON reports in {args.folder}")
    sections = []
    btext, bseries = batching_tables(runs)
    if bseries:
        sections.append("### Batching modes on the Anyscale workload\n\n" + btext)
    if by_pattern(runs, r"stepcost_n\d+"):
        sections.append("### Decode step cost against batch size\n\n" + stepcost_table(runs))
    ltext, lseries = load_tables(runs)
    if lseries:
        sections.append("### Latency against load\n\n" + ltext)
    if "chunked_on" in runs or "chunked_off" in runs:
        sections.append("### Chunked prefill\n\n" +
                        pair_table(runs, "chunked", ("on", "off"), ("chat", "long")))
    if "tiers_on" in runs or "tiers_off" in runs:
        sections.append("### Priority tiers\n\n" +
                        pair_table(runs, "tiers", ("on", "off"), ("interactive", "batch"),
                                   (("preemptions", lambda r, g: (r["server"]["preemptions_swap"] or 0)
                                     + (r["server"]["preemptions_recompute"] or 0)),)))
    if by_pattern(runs, r"memory_.*"):
        sections.append("### Memory pressure\n\n" + memory_table(runs))
    if "prefix_on" in runs or "prefix_off" in runs:
        sections.append("### Prefix caching\n\n" +
                        pair_table(runs, "prefix", ("on", "off"), ("all",),
                                   (("cache hit tokens", lambda r, g: r["server"]["prefix_cache_hit_tokens"]),)))
    if by_pattern(runs, r"peer_.*"):
        sections.append("### loom against llama.cpp's server\n\n" + peer_table(runs))
    text = "\n".join(sections)
    Path(args.folder, "tables.md").write_text(text)
    print(text)
    if args.tables_only:
        return
    out_dir = Path(args.folder) / "plots"
    out_dir.mkdir(exist_ok=True)
    written = plot_all(runs, bseries, lseries, out_dir)
    for p in written:
        print(f"wrote {p}")
        if args.copy_to:
            Path(args.copy_to).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, Path(args.copy_to) / p.name)


if __name__ == "__main__":
    main()
