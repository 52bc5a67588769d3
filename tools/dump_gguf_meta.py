#!/usr/bin/env python3
"""Dumps what loom's GGUF loader must agree with, read by the `gguf` Python package (the
reference reader that ships with llama.cpp), into a small JSON golden file.

Run:
    . /work/ref/venv/bin/activate   # numpy, gguf==0.19.0
    python tools/dump_gguf_meta.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/golden/model/smollm2_meta.json

Hashes are 64-bit FNV-1a (easy to recompute anywhere) of the first 1024 bytes of a tensor's
data, and of the whole data for small tensors.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(data: bytes) -> str:
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def main(src, dst):
    r = GGUFReader(src)
    arch = field(r, "general.architecture")
    cfg = {
        "version": int(field(r, "GGUF.version")),
        "architecture": arch,
        "name": field(r, "general.name"),
        "alignment": int(field(r, "general.alignment") or 32),
        "data_offset": int(r.data_offset),
        "kv_count": len([k for k in r.fields if not k.startswith("GGUF.")]),
    }
    for key in ["context_length", "embedding_length", "block_count", "feed_forward_length",
                "attention.head_count", "attention.head_count_kv", "vocab_size",
                "rope.dimension_count", "rope.freq_base", "attention.layer_norm_rms_epsilon"]:
        cfg[key] = field(r, f"{arch}.{key}")

    tokens = field(r, "tokenizer.ggml.tokens")
    merges = field(r, "tokenizer.ggml.merges")
    token_type = field(r, "tokenizer.ggml.token_type")
    tok = {
        "model": field(r, "tokenizer.ggml.model"),
        "pre": field(r, "tokenizer.ggml.pre"),
        "num_tokens": len(tokens),
        "num_merges": len(merges) if merges is not None else 0,
        "tokens_sample": {str(i): tokens[i] for i in [0, 1, 2, 100, 1000, len(tokens) - 1]},
        "merges_sample": {str(i): merges[i] for i in [0, 1, len(merges) - 1]},
        "token_type_sample": {str(i): int(token_type[i]) for i in [0, 1, 2, 100]},
        "bos_token_id": field(r, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(r, "tokenizer.ggml.eos_token_id"),
        "unknown_token_id": field(r, "tokenizer.ggml.unknown_token_id"),
        "padding_token_id": field(r, "tokenizer.ggml.padding_token_id"),
        "add_bos_token": field(r, "tokenizer.ggml.add_bos_token"),
        "add_space_prefix": field(r, "tokenizer.ggml.add_space_prefix"),
        "chat_template_fnv1a64": fnv1a64(field(r, "tokenizer.chat_template").encode()),
        "im_end_id": tokens.index("<|im_end|>") if "<|im_end|>" in tokens else None,
    }

    tensors = {}
    counts = {}
    total_elements = 0
    total_bytes = 0
    for t in r.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        total_elements += int(t.n_elements)
        total_bytes += int(t.n_bytes)
    wanted = ["token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
              "blk.0.attn_k.weight", "blk.0.ffn_down.weight", "blk.29.ffn_up.weight",
              "output_norm.weight"]
    for t in r.tensors:
        if t.name not in wanted:
            continue
        raw = np.asarray(t.data).tobytes()
        entry = {
            "type": t.tensor_type.name,
            "type_id": int(t.tensor_type),
            "ne": [int(d) for d in t.shape],  # GGUF order, innermost first
            "offset": int(t.data_offset) - int(r.data_offset),  # relative to the data section
            "nbytes": int(t.n_bytes),
            "head_fnv1a64": fnv1a64(raw[:1024]),
        }
        if t.n_bytes <= 8192:
            entry["all_fnv1a64"] = fnv1a64(raw)
        if t.tensor_type.name == "F32":
            entry["first_values"] = [float(x) for x in np.asarray(t.data).reshape(-1)[:4]]
        tensors[t.name] = entry
    out = {
        "file": src.split("/")[-1],
        "config": cfg,
        "tokenizer": tok,
        "num_tensors": len(r.tensors),
        "tensor_type_counts": counts,
        "num_parameters": total_elements,
        "weight_bytes": total_bytes,
        "has_output_weight": any(t.name == "output.weight" for t in r.tensors),
        "tensors": tensors,
    }
    with open(dst, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
