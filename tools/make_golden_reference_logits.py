#!/usr/bin/env python3
"""First-step logits of the default model computed exactly: weights dequantized by the `gguf`
package (gguf-py, independent of loom), the Llama forward in float64 numpy, no activation
quantization. llama.cpp quantizes activations to 8 bits inside its matrix products, which on
short prompts of this small model moves logits by up to ~1% (cosine 0.99 against this reference),
so tests/e2e/test_forward.cpp checks loom's first-step logits against these (cosine > 0.999) and
its greedy continuations against llama.cpp's (tools/make_golden.py).

Run (a minute):  python3 tools/make_golden_reference_logits.py MODEL.gguf tests/golden/model_outputs
Needs: numpy==2.4.6, gguf==0.19.0 (pip).
"""
import json
import sys

import gguf
import numpy as np


def main():
    model_path, out_dir = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(model_path)
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.")}
    arch = meta["general.architecture"]
    hidden = meta[f"{arch}.embedding_length"]
    n_heads = meta[f"{arch}.attention.head_count"]
    n_kv = meta[f"{arch}.attention.head_count_kv"]
    n_layers = meta[f"{arch}.block_count"]
    eps = meta[f"{arch}.attention.layer_norm_rms_epsilon"]
    theta = meta[f"{arch}.rope.freq_base"]
    hd = hidden // n_heads
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        w[t.name] = a.reshape([int(x) for x in reversed(t.shape)]) if a.ndim == 1 and len(t.shape) > 1 else a
    out_w = w.get("output.weight", w["token_embd.weight"])

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x, pos):  # GGUF llama: rotation pairs are adjacent (interleaved)
        inv = theta ** (-np.arange(0, hd, 2) / hd)
        ang = pos[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    golden = json.load(open(f"{out_dir}/golden.json"))
    for p in golden["prompts"]:
        ids = np.array(p["prompt_ids"])
        n = len(ids)
        x = w["token_embd.weight"][ids]
        pos = np.arange(n, dtype=np.float64)
        mask = np.triu(np.full((n, n), -np.inf), 1)[None]
        for l in range(n_layers):
            b = f"blk.{l}."
            h = rms(x, w[b + "attn_norm.weight"])
            q = rope((h @ w[b + "attn_q.weight"].T).reshape(n, n_heads, hd), pos)
            k = rope((h @ w[b + "attn_k.weight"].T).reshape(n, n_kv, hd), pos)
            v = (h @ w[b + "attn_v.weight"].T).reshape(n, n_kv, hd)
            k = np.repeat(k, n_heads // n_kv, axis=1)
            v = np.repeat(v, n_heads // n_kv, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            x = x + np.einsum("hts,shd->thd", s, v).reshape(n, hidden) @ w[b + "attn_output.weight"].T
            h = rms(x, w[b + "ffn_norm.weight"])
            gate = h @ w[b + "ffn_gate.weight"].T
            x = x + ((gate / (1 + np.exp(-gate))) * (h @ w[b + "ffn_up.weight"].T)) @ w[b + "ffn_down.weight"].T
        logits = rms(x[-1], w["output_norm.weight"]) @ out_w.T
        logits.astype(np.float32).tofile(f"{out_dir}/{p['name']}.first_logits_exact.f32")
        print(p["name"], int(logits.argmax()))


if __name__ == "__main__":
    main()
