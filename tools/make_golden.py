#!/usr/bin/env python3
"""Golden outputs of the default model from an independent implementation (llama.cpp through
llama-cpp-python), for tests/e2e/test_golden.cpp.

For each prompt: the prompt's token ids (llama.cpp's tokenizer), the first-step logits (float32,
full vocabulary), and a 64-token greedy continuation with llama.cpp's top-5 token ids at every step.

Run (about a minute):
  python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy==1.26.4 llama-cpp-python==0.3.36
  /tmp/ref/bin/python tools/make_golden.py models/SmolLM2-135M-Instruct.Q4_1.gguf tests/golden/model_outputs
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama

PROMPTS = [
    ("plain_fox", "The quick brown fox", False),
    ("plain_capital", "The capital of France is", False),
    ("plain_code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
    ("plain_list", "Here are three tips for staying healthy:\n1.", False),
    ("plain_story", "Once upon a time, in a small village by the sea, there lived", False),
    ("chat_hello", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello! Who are you?<|im_end|>\n<|im_start|>assistant\n", True),
    ("chat_math", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n", True),
    ("chat_poem", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWrite a haiku about the ocean.<|im_end|>\n<|im_start|>assistant\n", True),
    ("plain_unicode", "Les élèves ont étudié l'histoire de la Révolution française, et ensuite", False),
    ("plain_numbers", "1, 2, 3, 5, 8, 13, 21,", False),
]
NUM_STEPS = 64
TOP = 5


def main():
    model_path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    llm = Llama(model_path=model_path, n_ctx=1024, n_batch=512, n_threads=2, logits_all=True,
                verbose=False, seed=0)
    index = []
    for name, text, special in PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        llm.reset()
        llm.eval(ids)
        first = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
        first.tofile(os.path.join(out_dir, f"{name}.first_logits.f32"))
        tokens, top5 = [], []
        logits = first
        for _ in range(NUM_STEPS):
            order = np.argsort(-logits, kind="stable")
            top5.append([int(t) for t in order[:TOP]])
            tok = int(order[0])
            tokens.append(tok)
            llm.eval([tok])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        index.append({"name": name, "prompt": text, "parse_special": special, "prompt_ids": ids,
                      "greedy_ids": tokens, "top5": top5})
        print(name, len(ids), llm.detokenize(tokens)[:60])
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump({"model": os.path.basename(model_path), "generator": "llama-cpp-python 0.3.36",
                   "num_steps": NUM_STEPS, "prompts": index}, f, indent=1)


if __name__ == "__main__":
    main()
