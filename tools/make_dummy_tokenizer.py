#!/usr/bin/env python3
"""Writes a byte-level BPE tokenizer.json whose vocabulary has exactly N tokens, for benchmarks on
random-weight models (--load-format dummy --tokenizer ...): every id a model of that vocabulary
can produce then detokenizes to visible text, so a streaming server sends one chunk per token, as
with a real tokenizer (ids a tokenizer does not know detokenize to nothing, and a server holds
back empty deltas, which would distort inter-token latency).

It extends the small test tokenizer tests/golden/tokenizer/hf_llama3.tokenizer.json (byte-level,
1,473 tokens) with filler tokens " w<id>" (no merges reach them; encoding text still works through
the original merges).

    python3 tools/make_dummy_tokenizer.py 128256 /tmp/dummy-tokenizer.json
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "tests", "golden", "tokenizer", "hf_llama3.tokenizer.json")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, out = int(sys.argv[1]), sys.argv[2]
    with open(BASE) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    used = set(vocab.values()) | {t["id"] for t in tok.get("added_tokens", [])}
    if n < len(used):
        sys.exit(f"{n} is smaller than the base vocabulary ({len(used)})")
    # "\u0120" is the byte-level alphabet's space: " w123" once decoded.
    for i in range(n):
        if i not in used:
            vocab[f"\u0120w{i}"] = i
    with open(out, "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    print(f"{out}: {n} tokens")


if __name__ == "__main__":
    main()
