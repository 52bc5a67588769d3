#!/usr/bin/env python3
"""Tiny random HF checkpoints (2 layers) for loom's safetensors / HF-directory loader tests.

Writes, under the output directory, one folder per variant, each with config.json,
tokenizer.json, tokenizer_config.json and the weights written by the `safetensors` package:
    llama_f32/         LlamaForCausalLM, F32, one model.safetensors, separate lm_head
    llama_f16_llama3/  LlamaForCausalLM, F16, one file, tied embeddings, llama3 rope_scaling
    llama_bf16_sharded/ LlamaForCausalLM, BF16, two shards + model.safetensors.index.json, tied
    qwen2_bf16/        Qwen2ForCausalLM, BF16, one file, q/k/v biases, tied
and expected.json: per variant, the config values, tensor names (HF and GGUF), shapes, sampled
values (as float32 after rounding to the stored dtype) and, for llama3, the RoPE frequency
divisors computed the way transformers' _compute_llama3_parameters does (a NumPy transcription).

Run (from the repository root):
    . /work/ref/venv/bin/activate   # numpy, safetensors==0.8.0
    python tools/make_tiny_hf_llama.py tests/golden/model/tiny_hf
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import save_file

VOCAB = 64
HIDDEN = 32
HEADS = 2
KV_HEADS = 1
HEAD_DIM = 16
FFN = 48
LAYERS = 2
MAX_POS = 512
THETA = 10000.0
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 8.0, "original_max_position_embeddings": 256}

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def bf16_round(x):
    """float32 -> nearest-even bfloat16, returned as float32 (and as the raw uint16)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    back = (rounded.astype(np.uint32) << 16).view(np.float32)
    return back, rounded


def tokenizer_files():
    # A byte-level BPE vocabulary: 3 specials, then single characters, then a few merges.
    chars = list("abcdefghijklmnopqrstuvwxyz") + ["Ġ", "Ċ", ".", ",", "!", "?", "'", "-"]
    merges = [("t", "h"), ("th", "e"), ("Ġ", "t"), ("Ġt", "he"), ("a", "n"), ("i", "n"),
              ("e", "r"), ("o", "n"), ("r", "e"), ("a", "t"), ("e", "n"), ("Ġ", "a"),
              ("Ġ", "s"), ("o", "r"), ("i", "s"), ("Ġ", "o"), ("e", "s"), ("Ġ", "w"),
              ("i", "t"), ("a", "r")]
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for c in chars:
        vocab[c] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    assert len(vocab) <= VOCAB, len(vocab)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIALS)]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    cfg = {"add_bos_token": False, "add_eos_token": False, "bos_token": None,
           "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
           "unk_token": "<|endoftext|>", "model_max_length": MAX_POS,
           "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] "
                            "+ '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                            "{% endif %}"}
    return tok, cfg, len(vocab)


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module...>.weight|bias
    n, rest = parts[2], ".".join(parts[3:-1])
    table = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    return f"blk.{n}.{table[rest]}.{parts[-1]}"


def make_weights(rng, tied, bias):
    w = {"model.embed_tokens.weight": rng.standard_normal((VOCAB, HIDDEN)),
         "model.norm.weight": 1.0 + 0.1 * rng.standard_normal(HIDDEN)}
    if not tied:
        w["lm_head.weight"] = rng.standard_normal((VOCAB, HIDDEN))
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(HIDDEN)
        w[p + "post_attention_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(HIDDEN)
        w[p + "self_attn.q_proj.weight"] = rng.standard_normal((q, HIDDEN))
        w[p + "self_attn.k_proj.weight"] = rng.standard_normal((kv, HIDDEN))
        w[p + "self_attn.v_proj.weight"] = rng.standard_normal((kv, HIDDEN))
        w[p + "self_attn.o_proj.weight"] = rng.standard_normal((HIDDEN, q))
        w[p + "mlp.gate_proj.weight"] = rng.standard_normal((FFN, HIDDEN))
        w[p + "mlp.up_proj.weight"] = rng.standard_normal((FFN, HIDDEN))
        w[p + "mlp.down_proj.weight"] = rng.standard_normal((HIDDEN, FFN))
        if bias:
            w[p + "self_attn.q_proj.bias"] = rng.standard_normal(q)
            w[p + "self_attn.k_proj.bias"] = rng.standard_normal(kv)
            w[p + "self_attn.v_proj.bias"] = rng.standard_normal(kv)
    return {k: (0.05 * v).astype(np.float32) for k, v in w.items()}


def store(w, dtype):
    """Tensors as saved, and their float32 values after rounding to the stored dtype."""
    saved, exact = {}, {}
    for k, v in w.items():
        if dtype == "F32":
            saved[k], exact[k] = v, v
        elif dtype == "F16":
            saved[k] = v.astype(np.float16)
            exact[k] = saved[k].astype(np.float32)
        else:  # BF16: numpy has no bfloat16; safetensors.numpy cannot write it, see write_bf16
            exact[k], saved[k] = bf16_round(v)
    return saved, exact


def write_bf16(path, tensors):
    """safetensors file with BF16 tensors (uint16 payloads relabelled after writing)."""
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        raw = tensors[name].astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def save(path, saved, dtype):
    if dtype == "BF16":
        write_bf16(path, saved)
    else:
        save_file(saved, path, metadata={"format": "pt"})


def llama3_divisors(scaling, theta, head_dim):
    # transformers.modeling_rope_utils._compute_llama3_parameters, in NumPy float32.
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32)
                                / head_dim))
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    inv_freq_llama = np.where(is_medium, smoothed, inv_freq_llama)
    return [float(x) for x in (inv_freq / inv_freq_llama)]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tok, tok_cfg, num_tokens = tokenizer_files()
    variants = [
        ("llama_f32", "LlamaForCausalLM", "F32", False, False, None, 1),
        ("llama_f16_llama3", "LlamaForCausalLM", "F16", True, False, LLAMA3, 1),
        ("llama_bf16_sharded", "LlamaForCausalLM", "BF16", True, False, None, 2),
        ("qwen2_bf16", "Qwen2ForCausalLM", "BF16", True, True, None, 1),
    ]
    expected = {"num_tokens": num_tokens, "variants": {}}
    for seed, (name, arch, dtype, tied, bias, rope, shards) in enumerate(variants):
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        rng = np.random.default_rng(1234 + seed)
        w = make_weights(rng, tied, bias)
        saved, exact = store(w, dtype)
        config = {"architectures": [arch], "model_type": "qwen2" if bias else "llama",
                  "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": FFN,
                  "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                  "num_key_value_heads": KV_HEADS, "max_position_embeddings": MAX_POS,
                  "rms_norm_eps": 1e-5 if bias else 1e-6, "rope_theta": THETA,
                  "tie_word_embeddings": tied, "rope_scaling": rope,
                  "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype],
                  "bos_token_id": 0, "eos_token_id": 2}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump(tok, f, ensure_ascii=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tok_cfg, f, indent=1)
        names = sorted(saved)
        if shards == 1:
            save(os.path.join(d, "model.safetensors"), saved, dtype)
        else:
            half = len(names) // 2
            parts = [names[:half], names[half:]]
            weight_map = {}
            for s, part in enumerate(parts):
                fname = f"model-{s + 1:05d}-of-{len(parts):05d}.safetensors"
                save(os.path.join(d, fname), {k: saved[k] for k in part}, dtype)
                weight_map.update({k: fname for k in part})
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)
        samples = []
        for hf in names:
            v = exact[hf]
            flat = v.reshape(-1)
            for idx in sorted({0, flat.size // 3, flat.size - 1}):
                samples.append({"hf_name": hf, "name": gguf_name(hf), "index": int(idx),
                                "value": float(flat[idx])})
        entry = {
            "arch": "qwen2" if bias else "llama", "dtype": dtype, "tied": tied,
            "num_tensors": len(names), "num_parameters": int(sum(v.size for v in w.values())),
            "tensors": {gguf_name(k): {"hf_name": k, "ne": list(reversed(w[k].shape))}
                        for k in names},
            "samples": samples,
        }
        if rope is not None:
            entry["rope_freq_factors"] = llama3_divisors(rope, THETA, HEAD_DIM)
        expected["variants"][name] = entry
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
