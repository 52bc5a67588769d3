#!/usr/bin/env python3
"""Random-weight Llama checkpoints built with HF transformers, with HF's own greedy tokens and
first-step logits as golden data for loom's CUDA backend (tests/cuda/test_cuda_backend.cpp).

For each config below: LlamaForCausalLM(config) with torch.manual_seed(seed), weights scaled so
the logits are peaked (random init at std 0.02 gives near-uniform logits where greedy ties are
noise), saved as BF16 safetensors + config.json + the tokenizer.json of the tiny test checkpoint.
The reference runs in float32 on the bf16-rounded weights (the exact function loom computes in
bf16), on the GPU when there is one. golden.json holds prompt_ids, greedy_ids, top5 (HF's top-5
ids at each greedy step) and first_logits (the prompt's last-row logits, vocab floats).

Run (on a machine with torch and transformers; scripts/gpu_test.sh does this):
    python3 tools/make_hf_random_llama.py OUT_DIR
"""
import json
import os
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(ROOT, "tests", "golden", "model", "tiny_hf", "llama_f32")

CONFIGS = {
    # head_dim 64, GQA group 4, untied output.
    "llama_d64": dict(vocab_size=4096, hidden_size=512, intermediate_size=1408,
                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                      tie_word_embeddings=False, rope_theta=10000.0, seed=1),
    # head_dim 128, GQA group 2, tied embeddings, llama3 rope scaling.
    "llama_d128_tied": dict(vocab_size=4096, hidden_size=1024, intermediate_size=2048,
                            num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4,
                            tie_word_embeddings=True, rope_theta=500000.0, seed=2,
                            rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 256}),
}
PROMPT_LEN = 37
NEW_TOKENS = 24


def build(name, spec, out_root, device):
    spec = dict(spec)
    seed = spec.pop("seed")
    torch.manual_seed(seed)
    config = LlamaConfig(max_position_embeddings=4096, rms_norm_eps=1e-5,
                         bos_token_id=0, eos_token_id=2, initializer_range=0.02, **spec)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                # std ~ 1/sqrt(fan_in) * 1.5: activations keep their scale through the layers
                # and the logits are peaked enough for greedy decoding to be well defined.
                p.copy_(torch.randn_like(p) * (1.5 / p.shape[-1] ** 0.5))
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    # Newer transformers write rope settings under "rope_parameters"; keep the classic keys too
    # (rope_theta, rope_scaling, tie_word_embeddings), which is what loom's loader reads.
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["rope_theta"] = spec.get("rope_theta", 10000.0)
    cfg["rope_scaling"] = spec.get("rope_scaling")
    cfg["tie_word_embeddings"] = spec["tie_word_embeddings"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER_DIR, f), os.path.join(out, f))

    ref = model.to(torch.float32).to(device)
    g = torch.Generator().manual_seed(100 + seed)
    prompt = torch.randint(3, config.vocab_size, (PROMPT_LEN,), generator=g).tolist()
    ids = list(prompt)
    greedy, top5, first = [], [], None
    with torch.no_grad():
        for step in range(NEW_TOKENS):
            logits = ref(torch.tensor([ids], device=device)).logits[0, -1].float().cpu()
            if first is None:
                first = logits.tolist()
            t5 = torch.topk(logits, 5).indices.tolist()
            top5.append(t5)
            greedy.append(t5[0])
            ids.append(t5[0])
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump({"prompt_ids": prompt, "greedy_ids": greedy, "top5": top5,
                   "first_logits": first}, f)
    print(f"{name}: prompt {len(prompt)} tokens, greedy {greedy[:8]}...")


def main():
    out_root = sys.argv[1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, spec in CONFIGS.items():
        build(name, spec, out_root, device)


if __name__ == "__main__":
    main()
