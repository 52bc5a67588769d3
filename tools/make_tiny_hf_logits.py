#!/usr/bin/env python3
"""Reference logits for the tiny HF checkpoints in tests/golden/model/tiny_hf/ (made by
tools/make_tiny_hf_llama.py): a float64 NumPy forward of the HF Llama / Qwen2 architecture
(NeoX "rotate_half" RoPE on unpermuted Q/K, llama3 frequency divisors as expected.json gives them,
Qwen2 q/k/v biases), over a fixed token sequence, every position's logits.
tests/e2e/test_hf_forward.cpp runs loom's CPU backend on the same directories and compares.

Run:  . /work/ref/venv/bin/activate  (numpy)
      python tools/make_tiny_hf_logits.py tests/golden/model/tiny_hf
"""
import glob
import json
import os
import sys

import numpy as np

TOKENS = [0, 7, 19, 3, 44, 12, 12, 61, 5, 30, 2, 9, 17, 50]


def load_weights(d):
    """Reads safetensors files directly (the format is an 8-byte header length, a JSON header,
    then raw little-endian data), so BF16 needs no library support."""
    w = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        raw = open(f, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        for k, t in header.items():
            if k == "__metadata__":
                continue
            a, b = t["data_offsets"]
            buf = raw[base + a: base + b]
            if t["dtype"] == "BF16":
                v = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                v = np.frombuffer(buf, {"F32": np.float32, "F16": np.float16}[t["dtype"]])
            w[k] = v.astype(np.float64).reshape(t["shape"])
    return w


def forward(d, factors):
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = load_weights(d)
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    n = len(TOKENS)
    inv = theta ** (-np.arange(0, hd, 2) / hd)
    if factors:
        inv = inv / np.array(factors)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):  # rotate_half: pairs (i, i + hd/2)
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    x = w["model.embed_tokens.weight"][TOKENS]
    mask = np.triu(np.full((n, n), -np.inf), 1)[None]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rope(lin(h, p + "self_attn.q_proj").reshape(n, nh, hd))
        k = rope(lin(h, p + "self_attn.k_proj").reshape(n, nkv, hd))
        v = lin(h, p + "self_attn.v_proj").reshape(n, nkv, hd)
        k, v = np.repeat(k, nh // nkv, 1), np.repeat(v, nh // nkv, 1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + lin(np.einsum("hts,shd->thd", s, v).reshape(n, H), p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin((g / (1 + np.exp(-g))) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    out = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return rms(x, w["model.norm.weight"]) @ out.T


def main():
    root = sys.argv[1]
    expected = json.load(open(os.path.join(root, "expected.json")))
    result = {"tokens": TOKENS, "variants": {}}
    for name, info in expected["variants"].items():
        logits = forward(os.path.join(root, name), info.get("rope_freq_factors"))
        result["variants"][name] = np.round(logits, 6).tolist()
        print(name, logits.shape, logits[-1].argmax())
    json.dump(result, open(os.path.join(root, "reference_logits.json"), "w"))


if __name__ == "__main__":
    main()
