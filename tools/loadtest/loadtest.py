#!/usr/bin/env python3
"""Load test for `loom serve`: many concurrent streaming completions, a fraction of them dropped
mid-stream by the client. Bounded in count and time, loopback only.

Checks: every request that is not dropped completes with all its tokens (ignore_eos, so exactly
max_tokens) and no errors; after the run every KV block is free again (from /metrics).
Uses aiohttp (httpx's pool is too slow for a thousand concurrent streams on two cores).
Prints throughput and TTFT / inter-token latency percentiles as a table and as JSON.

  .venv/bin/python tools/loadtest/loadtest.py --url http://127.0.0.1:8080 \
      --requests 1000 --concurrency 1000 --drop-fraction 0.2 --max-tokens 32
Exit status 0 when every check passes.
"""
import argparse
import asyncio
import json
import random
import re
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import aiohttp

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "List some facts about the moon.",
    "Describe your favourite meal.",
    "What makes a good friend?",
]


@dataclass
class Outcome:
    ok: bool = False
    dropped: bool = False
    error: str = ""
    num_tokens: int = 0            # content chunks received
    usage_tokens: int = -1         # completion_tokens from the final usage chunk
    ttft_s: float = float("nan")
    itl_s: list = field(default_factory=list)
    e2e_s: float = float("nan")


async def one_request(client, args, index, drop_after, sem):
    out = Outcome()
    body = {"model": args.model, "prompt": PROMPTS[index % len(PROMPTS)],
            "max_tokens": args.max_tokens, "temperature": args.temperature, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    if args.model is None:
        del body["model"]
    async with sem:
        start = time.perf_counter()
        last = None
        try:
            async with client.post(args.url + "/v1/completions", json=body) as r:
                if r.status != 200:
                    out.error = f"HTTP {r.status}: {(await r.read())[:200]!r}"
                    return out
                done = False
                async for raw in r.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        out.error = event["error"].get("message", "error event")
                        return out
                    if event.get("usage"):
                        out.usage_tokens = event["usage"]["completion_tokens"]
                    for choice in event.get("choices", []):
                        if choice.get("text"):
                            now = time.perf_counter()
                            if last is None:
                                out.ttft_s = now - start
                            else:
                                out.itl_s.append(now - last)
                            last = now
                            out.num_tokens += 1
                    if drop_after is not None and out.num_tokens >= drop_after:
                        out.dropped = True
                        r.close()  # closes the connection mid-stream
                        return out
                out.e2e_s = time.perf_counter() - start
                if not done:
                    out.error = "stream ended without [DONE]"
                elif out.usage_tokens != args.max_tokens:
                    out.error = f"usage says {out.usage_tokens} tokens, wanted {args.max_tokens}"
                else:
                    out.ok = True
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as e:
            out.error = f"{type(e).__name__}: {e}"
    return out


def percentiles(values, ps=(50, 90, 99)):
    v = sorted(x for x in values if x == x)
    if not v:
        return {f"p{p}": None for p in ps}
    return {f"p{p}": v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] for p in ps}


def metric(text, name, label_filter=""):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) == name and label_filter in (m.group(2) or ""):
            total += float(m.group(3))
            found = True
    if not found:
        raise KeyError(name)
    return total


async def wait_blocks_free(client, url, timeout_s):
    """Polls /metrics until no KV block is held by a live sequence and nothing runs."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        async with client.get(url + "/metrics") as r:
            text = await r.text()
        used = metric(text, "loom_kv_cache_blocks", 'state="used"')
        live = sum(metric(text, n) for n in ("loom_requests_running", "loom_requests_waiting",
                                             "loom_requests_swapped"))
        if used == 0 and live == 0:
            return True, used, metric(text, "loom_kv_cache_blocks_capacity")
        await asyncio.sleep(0.25)
    return False, metric(text, "loom_kv_cache_blocks", 'state="used"'), metric(
        text, "loom_kv_cache_blocks_capacity")


async def run(args):
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"loadtest: loopback only, refusing {args.url}")
    rng = random.Random(args.seed)
    num_drop = int(round(args.requests * args.drop_fraction))
    drop_set = set(rng.sample(range(args.requests), num_drop))
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    timeout = aiohttp.ClientTimeout(total=args.timeout_s)
    sem = asyncio.Semaphore(args.concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     timeout=timeout) as client:
        start = time.perf_counter()
        tasks = [one_request(client, args, i,
                             rng.randint(1, max(1, args.max_tokens // 2)) if i in drop_set
                             else None, sem)
                 for i in range(args.requests)]
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.timeout_s)
        except asyncio.TimeoutError:
            raise SystemExit(f"loadtest: not finished within {args.timeout_s} s")
        wall_s = time.perf_counter() - start
        freed, used, capacity = await wait_blocks_free(client, args.url, args.drain_timeout_s)

    completed = [o for o in outcomes if o.ok]
    dropped = [o for o in outcomes if o.dropped and not o.error]
    errors = [o for o in outcomes if o.error]
    tokens = sum(o.num_tokens for o in outcomes)
    report = {
        "requests": args.requests, "concurrency": args.concurrency,
        "max_tokens": args.max_tokens, "completed": len(completed), "dropped": len(dropped),
        "expected_dropped": num_drop, "errors": len(errors),
        "error_samples": sorted({o.error for o in errors})[:5],
        "wall_s": wall_s, "tokens_received": tokens,
        "throughput_tokens_per_s": tokens / wall_s if wall_s > 0 else 0.0,
        "throughput_requests_per_s": len(completed) / wall_s if wall_s > 0 else 0.0,
        "ttft_s": percentiles([o.ttft_s for o in completed + dropped]),
        "itl_s": percentiles([x for o in completed for x in o.itl_s]),
        "e2e_s": percentiles([o.e2e_s for o in completed]),
        "kv_blocks_used_after": used, "kv_blocks_capacity": capacity, "kv_blocks_freed": freed,
    }
    report["passed"] = (len(errors) == 0 and len(completed) == args.requests - num_drop and
                        len(dropped) == num_drop and freed)
    return report


def print_table(r):
    def ms(x):
        return "-" if x is None else f"{x * 1000:.1f}"
    print(f"requests {r['requests']}  concurrency {r['concurrency']}  max_tokens "
          f"{r['max_tokens']}  wall {r['wall_s']:.1f} s")
    print(f"completed {r['completed']}  dropped {r['dropped']}/{r['expected_dropped']}  "
          f"errors {r['errors']}  KV blocks used after: {r['kv_blocks_used_after']:.0f} of "
          f"{r['kv_blocks_capacity']:.0f}")
    print(f"throughput {r['throughput_tokens_per_s']:.1f} tokens/s, "
          f"{r['throughput_requests_per_s']:.2f} requests/s")
    print(f"{'latency (ms)':<16}{'p50':>10}{'p90':>10}{'p99':>10}")
    for key, name in (("ttft_s", "TTFT"), ("itl_s", "inter-token"), ("e2e_s", "end-to-end")):
        p = r[key]
        print(f"{name:<16}{ms(p['p50']):>10}{ms(p['p90']):>10}{ms(p['p99']):>10}")
    for e in r["error_samples"]:
        print("error:", e)
    print("PASS" if r["passed"] else "FAIL")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--model", default=None)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--drop-fraction", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=900.0, help="bound on the whole run")
    ap.add_argument("--drain-timeout-s", type=float, default=60.0)
    ap.add_argument("--json-out", default="", help="also write the JSON report here")
    args = ap.parse_args(argv)
    report = asyncio.run(run(args))
    print_table(report)
    print(json.dumps(report))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
