#!/usr/bin/env python3
"""Where a layer of the persistent decode kernel spends its time, hand-over by hand-over.

Reads the JSON that `bench_persistent_decode ... out.json --trace` writes (trace.events_ns:
[cta][layer][event] in ns, events as PersistentTraceEvent in decode_persistent.cuh) and cuts each
layer's period, from the last CTA's store of the residual stream x to the next layer's, into
segments that alternate between
  - a hand-over: from the last writer's store to the readers' input in shared memory (median
    over the readers): the round trip to L2 and the readers' own prologue;
  - the work after it: from the readers' input (median) to the last writer of the next vector
    (the slowest CTA's products, epilogue and its lag behind the median).
The segments add up to the layer's period. Prints the mean over layers 1..L-1 of each segment.

    tools/persistent_trace_handovers.py out.json
"""
import json
import statistics
import sys

# PersistentTraceEvent (decode_persistent.cuh).
(QKV_START, QKV_INPUT, QKV_DONE, ATTN_START, ATTN_QKV_IN, ATTN_KEYS_DONE, ATTN_DONE, O_INPUT,
 O_DONE, GATE_UP_START, GATE_UP_INPUT, GATE_UP_DONE, DOWN_START, DOWN_INPUT, DOWN_DONE) = range(15)


def main() -> None:
    doc = json.load(open(sys.argv[1]))
    ev = doc["trace"]["events_ns"]  # [cta][layer][event]
    attn_ctas = doc["trace"]["attention_ctas"]
    merge_ctas = doc["trace"]["merge_ctas"]
    grid, layers = len(ev), len(ev[0])
    everyone = range(grid)

    def last(l, e, ctas=everyone):
        return max(ev[c][l][e] for c in ctas)

    def median(l, e, ctas=everyone):
        return statistics.median(ev[c][l][e] for c in ctas)

    # (name, time of the segment's end in layer l); a segment runs from the previous one's end.
    points = [
        ("x stored -> qkv input (median CTA)", lambda l: median(l, QKV_INPUT)),
        ("qkv products -> last qkv stored", lambda l: last(l, ATTN_START)),
        ("qkv -> attention's words in (median)", lambda l: median(l, ATTN_QKV_IN, attn_ctas)),
        ("keys -> last split's partials", lambda l: last(l, ATTN_KEYS_DONE, attn_ctas)),
        ("merge -> last attention output", lambda l: last(l, ATTN_DONE, merge_ctas)),
        ("attention -> o input (median)", lambda l: median(l, O_INPUT)),
        ("o products -> last x stored", lambda l: last(l, GATE_UP_START)),
        ("x stored -> gate_up input (median)", lambda l: median(l, GATE_UP_INPUT)),
        ("gate_up products -> last act stored", lambda l: last(l, DOWN_START)),
        ("act -> down input (median)", lambda l: median(l, DOWN_INPUT)),
        ("down products -> last x stored", lambda l: last(l + 1, QKV_START)),
    ]
    sums = [0.0] * len(points)
    counted = 0
    for l in range(1, layers - 1):
        prev = last(l, QKV_START)
        for i, (_, end) in enumerate(points):
            t = end(l)
            sums[i] += (t - prev) / 1e3
            prev = t
        counted += 1
    print(f"{grid} CTAs ({len(attn_ctas)} with attention, {len(merge_ctas)} writing its output), "
          f"layers 1..{layers - 2}, mean us")
    total = 0.0
    for (name, _), s in zip(points, sums):
        print(f"  {name:42s} {s / counted:7.2f}")
        total += s / counted
    print(f"  {'layer period':42s} {total:7.2f}")
    # The skew of each writer set: last writer against the median one.
    print("lag of the last writer behind the median one, mean us:")
    for name, e, ctas in [("x after down", QKV_START, everyone), ("qkv", ATTN_START, everyone),
                          ("partials", ATTN_KEYS_DONE, attn_ctas),
                          ("x after o", GATE_UP_START, everyone), ("act", DOWN_START, everyone)]:
        lag = statistics.mean((last(l, e, ctas) - median(l, e, ctas)) / 1e3
                              for l in range(1, layers - 1))
        print(f"  {name:42s} {lag:7.2f}")


if __name__ == "__main__":
    main()
