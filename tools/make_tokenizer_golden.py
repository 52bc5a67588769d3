#!/usr/bin/env python3
"""Golden data for loom's tokenizer tests (tests/unit/tokenizer), made with independent
implementations:

  gguf_smollm2.json     ids and decodes from llama.cpp (llama-cpp-python 0.3.36, vocab_only) for
                        the default model's GGUF vocabulary.
  hf_*.tokenizer.json   small byte-level BPE tokenizers (the first NUM_HF_MERGES merges of the
                        default model's vocabulary) saved by HF `tokenizers`, with three
                        pre-tokenizers (SmolLM2's Digits+ByteLevel, a Llama 3 Split, a Qwen2
                        Split), and hf_golden.json with `tokenizers`' ids for the corpus.
  hf_tokenizer_config.json  BOS/EOS/chat template for the tokenizer.json loader.
  spm_model.json        pieces/scores/types of a tiny SentencePiece BPE model (byte_fallback)
                        trained on spm_train.txt, and spm_golden.json with sentencepiece's ids.
  chat_golden.json      jinja2 renders of chat templates (the model's own and reference ones).

Run (from the repository root):
  . /work/ref/venv/bin/activate    # numpy, gguf, jinja2 3.1.6, llama-cpp-python 0.3.36,
  pip install tokenizers==0.23.3 sentencepiece==0.2.3
  python tools/make_tokenizer_golden.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import json
import os
import tempfile

import jinja2
from gguf import GGUFReader

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "tokenizer")
NUM_HF_MERGES = 1200

# Text cases: (name, bytes). Valid UTF-8 unless the name starts with "invalid".
CORPUS = [
    ("empty", ""),
    ("english", "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."),
    ("contractions", "It's, they're, we'LL, I'M, you've, she'd, don't, 'S 'Re 'VE 'd 'll"),
    ("chinese", "海边的灯塔每天晚上都亮着。人工智能正在改变世界，我们需要理解它。"),
    ("japanese", "灯台守は毎晩日誌を書きました。東京タワーはとても高いです。カタカナとひらがな"),
    ("arabic", "كان حارس المنارة يكتب في دفتره كل مساء. مرحبا بالعالم!"),
    ("hindi", "प्रकाशस्तंभ का रखवाला हर शाम अपनी डायरी में लिखता था। नमस्ते दुनिया"),
    ("russian", "Прохладный ветер дул с моря. Привет, мир! ЁЖИК в тумане"),
    ("korean", "등대지기는 매일 저녁 일지를 썼습니다. 안녕하세요 세계"),
    ("greek_accents", "Ο φαροφύλακας έγραφε; Ça va? naïve café, Zoë, ﬁne, Å"),
    ("emoji", "I love pizza 🍕🍕 and cats 🐱! 👍🏽 ok 🇫🇷 flags"),
    ("emoji_zwj", "family 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏾‍💻 coder"),
    ("python", "def f(x):\n    if x > 0:\n        return x ** 2  # square\n    return -x\n\nprint(f(3))\n"),
    ("cpp_tabs", "int main() {\n\tfor (int i = 0; i < 10; ++i) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n\treturn 0;\n}\n"),
    ("spaces", "a  b   c    d     e      f"),
    ("newlines", "line1\nline2\n\nline3\n\n\n\nline4"),
    ("crlf", "first line\r\nsecond line\r\n\r\nthird\r\n"),
    ("trailing_spaces", "trailing spaces   "),
    ("leading_spaces", "   leading spaces"),
    ("only_spaces", "     "),
    ("only_newlines", "\n\n\n"),
    ("tabs_mixed", "\t \t x\t\ty \n\t"),
    ("digits", "0 1 12 123 1234 12345 123456789 3.14159 -42 1,000,000 2024-01-31"),
    ("numbers_words", "There are 365 days, 24h, 60min and 3600s; 1st 2nd 3rd 4th; v1.2.3"),
    ("punctuation", "Hello!!! What?? ... --- *** (a) [b] {c} <d> @e #f $g %h ^i &j"),
    ("url_email", "Visit https://example.com/path?q=1&r=2 or mail someone@example.org."),
    ("special_im", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"),
    ("special_eot", "The end.<|endoftext|>Next document starts here."),
    ("special_partial", "<|im_start <|im_end| |im_start|> <|im_start|><|im_start|>"),
    ("special_other", "<repo_name>loom<file_sep>main.cpp<filename>x.py<gh_stars>10"),
    ("mixed", "Hello 世界! Привет 🌍. 1+1=2 <b>bold</b> naïve"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("repeated", "the the the the the the the the the the, and and and and"),
    ("unicode_spaces", "non\u00a0breaking\u2003em\u3000ideographic"),
    ("combining", "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937"),
    ("single_char", "a"),
    ("control_chars", "bell\x07 dc3\x13 end\x00nul"),
    ("single_space", " "),
]
INVALID = [
    ("invalid_lone_continuation", b"abc\x80def"),
    ("invalid_truncated", b"caf\xc3"),
    ("invalid_ff", b"\xff\xfe hello \xff"),
    ("invalid_truncated_3byte", b"x\xe4\xb8 y"),
]


def corpus_bytes():
    return [(n, t.encode("utf-8")) for n, t in CORPUS] + INVALID


def write_json(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def gguf_metadata(model_path):
    reader = GGUFReader(model_path)
    fields = reader.fields

    def strings(key):
        f = fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def ints(key):
        f = fields[key]
        return [int(f.parts[i][0]) for i in f.data]

    def scalar(key):
        f = fields[key]
        return f.contents()

    return {
        "tokens": strings("tokenizer.ggml.tokens"),
        "merges": strings("tokenizer.ggml.merges"),
        "types": ints("tokenizer.ggml.token_type"),
        "chat_template": scalar("tokenizer.chat_template"),
        "bos_id": scalar("tokenizer.ggml.bos_token_id"),
        "eos_id": scalar("tokenizer.ggml.eos_token_id"),
    }


def make_gguf_golden(model_path):
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    cases = []
    for name, text in corpus_bytes():
        plain = llm.tokenize(text, add_bos=False, special=False)
        special = llm.tokenize(text, add_bos=True, special=True)
        cases.append({
            "name": name,
            "text_hex": text.hex(),
            "ids_plain": plain,  # add_special=false, parse_special=false
            "ids_special": special,  # add_special=true, parse_special=true
            # Detokenized bytes of ids_special, with and without control tokens.
            "decode_hex": llm.detokenize(special, special=True).hex(),
            "decode_skip_hex": llm.detokenize(special, special=False).hex(),
        })
    write_json("gguf_smollm2.json", {
        "model": os.path.basename(model_path),
        "source": "llama-cpp-python 0.3.36 Llama(vocab_only=True).tokenize/detokenize",
        "cases": cases,
    })


def gpt2_byte_symbols():
    """GPT-2's printable stand-in for each byte 0..255 (the published bytes_to_unicode table)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))
                 + list(range(0xAE, 0x100)))
    extra = 0
    out = []
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


# --- HF tokenizers ----------------------------------------------------------------------------

def hf_pre_tokenizers():
    from tokenizers import Regex, pre_tokenizers

    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    qwen2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    byte_level_no_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return {
        "smollm": pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]),
        "llama3": pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(llama3), behavior="isolated", invert=False),
            byte_level_no_regex,
        ]),
        "qwen2": pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(qwen2), behavior="isolated", invert=False),
            byte_level_no_regex,
        ]),
    }


def make_hf_golden(meta):
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tokens, types = meta["tokens"], meta["types"]
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    # Ids: the special tokens first (as in the model), then the 256 byte symbols, then one token
    # per merge, so a prefix of the merge list is a complete BPE model of its own.
    vocab = {}
    for t in specials:
        vocab[t] = len(vocab)
    for t in gpt2_byte_symbols():
        vocab.setdefault(t, len(vocab))
    merges = []
    for m in meta["merges"][:NUM_HF_MERGES]:
        left, right = m.split(" ", 1)
        merged = left + right
        if left in vocab and right in vocab:
            merges.append((left, right))
            vocab.setdefault(merged, len(vocab))

    cases_by_pre = {}
    for pre_name, pre in hf_pre_tokenizers().items():
        model = models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre_name == "llama3"))
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        path = os.path.join(OUT, f"hf_{pre_name}.tokenizer.json")
        tok.save(path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        cases = []
        for name, text in CORPUS:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"name": name, "text": text, "ids": ids,
                          "decode": tok.decode(ids, skip_special_tokens=False),
                          "decode_skip": tok.decode(ids, skip_special_tokens=True)})
        cases_by_pre[pre_name] = cases
    write_json("hf_golden.json", {"source": "tokenizers 0.23.3", "num_merges": len(merges),
                                  "cases": cases_by_pre})
    write_json("hf_tokenizer_config.json", {
        "add_bos_token": False,
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "chat_template": meta["chat_template"],
    })


# --- SentencePiece --------------------------------------------------------------------------

def make_spm_golden():
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            input=os.path.join(OUT, "spm_train.txt"), model_prefix=prefix, model_type="bpe",
            vocab_size=700, byte_fallback=True, character_coverage=0.995,
            normalization_rule_name="identity", add_dummy_prefix=True,
            remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
            bos_id=1, eos_id=2, unk_id=0, pad_id=-1, hard_vocab_limit=False,
            num_threads=1, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    n = sp.get_piece_size()

    def piece_type(i):
        if sp.is_unknown(i):
            return 2
        if sp.is_control(i):
            return 3
        if sp.is_byte(i):
            return 6
        if sp.is_unused(i):
            return 5
        return 1

    write_json("spm_model.json", {
        "source": "sentencepiece 0.2.3 BPE, byte_fallback, identity normalization",
        "tokens": [sp.id_to_piece(i) for i in range(n)],
        "scores": [sp.get_score(i) for i in range(n)],
        "types": [piece_type(i) for i in range(n)],
        "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(),
        "add_space_prefix": True,
    })
    cases = []
    for name, text in CORPUS:
        if "<" in text and "|" in text:
            continue  # sentencepiece has no special-token parsing to compare with
        ids = sp.encode(text)
        cases.append({"name": name, "text": text, "ids": ids, "decode": sp.decode(ids)})
    write_json("spm_golden.json", {"cases": cases})


# --- Chat templates ---------------------------------------------------------------------------

# Reference templates written from the structure the model cards publish.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set sys = messages[0]['content'] %}{%- set turns = messages[1:] %}"
    "{%- else %}{%- set sys = none %}{%- set turns = messages %}{%- endif %}"
    "{%- for m in turns %}"
    "{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('roles must alternate user/assistant') }}{%- endif %}"
    "{%- if loop.index0 == 0 and sys is not none %}"
    "{%- set text = '<<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' + m['content'] %}"
    "{%- else %}{%- set text = m['content'] %}{%- endif %}"
    "{%- if m['role'] == 'user' %}{{- bos_token + '[INST] ' + text | trim + ' [/INST]' }}"
    "{%- else %}{{- ' ' + text | trim + ' ' + eos_token }}{%- endif %}"
    "{%- endfor %}"
)
MISTRAL_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set sys = messages[0]['content'] %}{%- set turns = messages[1:] %}"
    "{%- else %}{%- set sys = none %}{%- set turns = messages %}{%- endif %}"
    "{%- for m in turns %}"
    "{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('roles must alternate user/assistant') }}{%- endif %}"
    "{%- if m['role'] == 'user' %}"
    "{%- if loop.index0 == 0 and sys is not none %}{%- set text = sys + '\\n\\n' + m['content'] %}"
    "{%- else %}{%- set text = m['content'] %}{%- endif %}"
    "{{- '[INST] ' + text + ' [/INST]' }}"
    "{%- else %}{{- m['content'] + eos_token }}{%- endif %}"
    "{%- endfor %}"
)
# ChatML as Qwen2 writes it: a default system turn, newlines as escapes in the Jinja source.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Plain ChatML without a default system turn.
CHATML_PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CONVERSATIONS = [
    ("user_only", [{"role": "user", "content": "Hello!"}]),
    ("system_user", [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What is 2+2?"}]),
    ("multi_turn", [{"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello, how can I help?"},
                    {"role": "user", "content": "Tell me a joke."}]),
    ("system_multi_turn", [{"role": "system", "content": "Be kind."},
                           {"role": "user", "content": "  padded question  "},
                           {"role": "assistant", "content": "An answer.\n"},
                           {"role": "user", "content": "Unicode: 世界 🌍\nsecond line"}]),
    ("ends_with_assistant", [{"role": "user", "content": "Say yes."},
                             {"role": "assistant", "content": "Yes."}]),
    ("two_users", [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]),
    ("empty", []),
]


def make_chat_golden(meta):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    templates = {
        "smollm2": (meta["chat_template"], "<|im_start|>", "<|im_end|>"),
        "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|end_of_text|>"),
        "llama2": (LLAMA2_TEMPLATE, "<s>", "</s>"),
        "mistral": (MISTRAL_TEMPLATE, "<s>", "</s>"),
        "chatml_qwen": (CHATML_TEMPLATE, "<|endoftext|>", "<|im_end|>"),
        "chatml_plain": (CHATML_PLAIN_TEMPLATE, "<|endoftext|>", "<|im_end|>"),
    }
    cases = []
    for tname, (source, bos, eos) in templates.items():
        tmpl = env.from_string(source)
        for cname, messages in CONVERSATIONS:
            for gen in (True, False):
                try:
                    text = tmpl.render(messages=messages, add_generation_prompt=gen,
                                       bos_token=bos, eos_token=eos)
                    error = False
                except (jinja2.exceptions.TemplateError, IndexError, jinja2.exceptions.UndefinedError):
                    text, error = "", True
                cases.append({"template": tname, "conversation": cname, "messages": messages,
                              "add_generation_prompt": gen, "error": error, "expected": text})
    write_json("chat_golden.json", {
        "source": "jinja2 3.1.6, trim_blocks and lstrip_blocks as HF transformers renders",
        "templates": {k: {"source": v[0], "bos_token": v[1], "eos_token": v[2]}
                      for k, v in templates.items()},
        "cases": cases,
    })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "models",
        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    meta = gguf_metadata(args.model)
    make_gguf_golden(args.model)
    make_hf_golden(meta)
    make_spm_golden()
    make_chat_golden(meta)


if __name__ == "__main__":
    main()
