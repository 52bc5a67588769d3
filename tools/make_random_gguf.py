#!/usr/bin/env python3
"""Random-weight Llama GGUF files of a published shape, for benchmarks (loom against llama.cpp on
the same file).

    python3 tools/make_random_gguf.py SHAPE OUT.gguf [--dtype f16|bf16] [--seed 0] [--std 0.02]
    python3 tools/make_random_gguf.py --vocab-only OUT.gguf      # just the tokenizer metadata

SHAPE is one of:
  llama-3.2-1b  hidden 2048, ffn 8192, 16 layers, 32/8 heads, head_dim 64, tied (2.15 GB F16)
  llama-3.1-8b  hidden 4096, ffn 14336, 32 layers, 32/8 heads, head_dim 128, untied (14.8 GB)
  tiny          hidden 256, ffn 768, 2 layers, 4/2 heads, head_dim 64, tied (for tests)
(heads: query/KV.)
All use rope theta 500000 with Llama 3 frequency factors (rope_freqs.weight: 32 for the 1B shape
and tiny, 8 for the 8B, as the published checkpoints and loom's dummy configs have), RMS-norm eps
1e-5 and a context length of 131072. --layers N overrides the layer count.

The vocabulary and all tokenizer.* metadata are copied from --vocab-from (default: the default
model models/SmolLM2-135M-Instruct.Q4_1.gguf, else .peers/vocab-smollm2.gguf, the vocabulary-only
file that tools/pack_llama_cpp_src.sh writes with --vocab-only), so the vocabulary has 49,152
tokens, like the model behind llama.cpp's published peer numbers.

Weights: the matrices are seeded random normal (mean 0, std --std) in F16 (default) or BF16; the
norm weights are 1.0 and stay F32, as llama.cpp's converter stores them. Sampling is by inverse
CDF through a 65,536-entry table of normal quantiles indexed by random 16-bit integers (about as
fine as F16 / BF16 resolve, several times faster than numpy's normal sampler), in chunks of 4 M
elements spread over --threads threads. Each chunk has its own seed derived from (seed, tensor,
chunk), so a file does not depend on the thread count. Tensor data is written streaming, chunk by
chunk, so memory stays at a few chunks per thread whatever the model size (the 8B file is ~15 GB).

gguf-py: the `gguf` package (pinned gguf==0.19.0) is imported from, in order: --gguf-py DIR (a
folder holding the package folder `gguf/`, e.g. <llama.cpp source>/gguf-py, which the tarball of
tools/pack_llama_cpp_src.sh carries), then the normal import path (PYTHONPATH, or gguf installed
from its pure-Python wheel). gguf needs numpy and pyyaml (and imports nothing else that is not in
the standard library). The GPU machine's image lists no gguf package, so tools/gpu_peers.sh passes
--gguf-py with the unpacked tarball's gguf-py; any Python 3.10+ with numpy 2 runs it.
"""
import argparse
import collections
import concurrent.futures as cf
import math
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VOCABS = [os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                  os.path.join(ROOT, ".peers", "vocab-smollm2.gguf")]

SHAPES = {
    "tiny": dict(hidden=256, ffn=768, layers=2, heads=4, kv_heads=2, head_dim=64, tied=True,
                 rope_factor=32.0),
    "llama-3.2-1b": dict(hidden=2048, ffn=8192, layers=16, heads=32, kv_heads=8, head_dim=64,
                         tied=True, rope_factor=32.0),
    "llama-3.1-8b": dict(hidden=4096, ffn=14336, layers=32, heads=32, kv_heads=8, head_dim=128,
                         tied=False, rope_factor=8.0),
}
ROPE_THETA = 500000.0
CONTEXT = 131072
RMS_EPS = 1e-5
CHUNK = 1 << 22  # elements per generated chunk (8 MiB of F16)


def import_gguf(path):
    if path:
        sys.path.insert(0, os.path.abspath(path))
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        sys.exit(f"make_random_gguf: cannot import gguf ({e}); pass --gguf-py <llama.cpp>/gguf-py "
                 "or put gguf==0.19.0 on PYTHONPATH")
    return sys.modules["gguf"]


def llama3_rope_factors(head_dim, factor, theta=ROPE_THETA, low=1.0, high=4.0, old_ctx=8192):
    """Per-pair frequency divisors, as llama.cpp's converter computes them for Llama 3.x."""
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (theta ** (i / head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def quantile_table(std, dtype):
    """65,536 normal quantiles at the midpoints of equal-probability bins, as F16 or BF16 bits."""
    nd = statistics.NormalDist(0.0, std)
    t = np.array([nd.inv_cdf((k + 0.5) / 65536) for k in range(65536)], dtype=np.float32)
    if dtype == "f16":
        return t.astype(np.float16)
    bits = t.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
    return bits.astype(np.uint16)


def tensor_plan(shape, vocab):
    """[(name, numpy shape (rows, cols) — GGUF stores it reversed, kind)] in file order."""
    s = shape
    hd = s["head_dim"]
    plan = [("rope_freqs.weight", (hd // 2,), "rope"),
            ("token_embd.weight", (vocab, s["hidden"]), "normal")]
    for i in range(s["layers"]):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (s["hidden"],), "ones"),
                 (b + "attn_q.weight", (s["heads"] * hd, s["hidden"]), "normal"),
                 (b + "attn_k.weight", (s["kv_heads"] * hd, s["hidden"]), "normal"),
                 (b + "attn_v.weight", (s["kv_heads"] * hd, s["hidden"]), "normal"),
                 (b + "attn_output.weight", (s["hidden"], s["heads"] * hd), "normal"),
                 (b + "ffn_norm.weight", (s["hidden"],), "ones"),
                 (b + "ffn_gate.weight", (s["ffn"], s["hidden"]), "normal"),
                 (b + "ffn_up.weight", (s["ffn"], s["hidden"]), "normal"),
                 (b + "ffn_down.weight", (s["hidden"], s["ffn"]), "normal")]
    plan.append(("output_norm.weight", (s["hidden"],), "ones"))
    if not s["tied"]:
        plan.append(("output.weight", (vocab, s["hidden"]), "normal"))
    return plan


def copy_tokenizer(gguf, writer, vocab_path):
    reader = gguf.GGUFReader(vocab_path)
    n = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        writer.add_key_value(name, value, vtype, sub)
        if name == "tokenizer.ggml.tokens":
            n = len(value)
    if n == 0:
        sys.exit(f"make_random_gguf: {vocab_path} has no tokenizer.ggml.tokens")
    return n


def normal_chunk(table, seed, tensor_index, chunk_index, n):
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, tensor_index,
                                                                       chunk_index])))
    return table[rng.integers(0, 65536, size=n, dtype=np.uint16)]


def write_model(gguf, args):
    shape = dict(SHAPES[args.shape])
    if args.layers:
        shape["layers"] = args.layers
    writer = gguf.GGUFWriter(args.out, "llama")
    vocab = copy_tokenizer(gguf, writer, args.vocab_from)
    writer.add_name(f"random {args.shape}")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if args.dtype == "f16"
                         else gguf.LlamaFileType.MOSTLY_BF16)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(shape["hidden"])
    writer.add_block_count(shape["layers"])
    writer.add_feed_forward_length(shape["ffn"])
    writer.add_head_count(shape["heads"])
    writer.add_head_count_kv(shape["kv_heads"])
    writer.add_key_length(shape["head_dim"])
    writer.add_value_length(shape["head_dim"])
    writer.add_rope_dimension_count(shape["head_dim"])
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(vocab)

    wtype = gguf.GGMLQuantizationType.F16 if args.dtype == "f16" else gguf.GGMLQuantizationType.BF16
    plan = tensor_plan(shape, vocab)
    total = 0
    for name, shp, kind in plan:
        if kind == "normal":
            nbytes = math.prod(shp) * 2
            writer.add_tensor_info(name, shp, np.dtype(np.uint16 if args.dtype == "bf16" else
                                                       np.float16), nbytes, raw_dtype=wtype)
        else:
            nbytes = math.prod(shp) * 4
            writer.add_tensor_info(name, shp, np.dtype(np.float32), nbytes)
        total += nbytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    fout = writer.fout[0]
    align = writer.data_alignment

    def pad():
        extra = (-fout.tell()) % align
        if extra:
            fout.write(bytes(extra))

    table = quantile_table(args.std, args.dtype)
    rope = llama3_rope_factors(shape["head_dim"], shape["rope_factor"])

    # Jobs in file order: (tensor index, chunk index, elements); norms and rope factors are made
    # here, the random chunks by the pool, at most 2 x threads chunks in flight.
    pool = cf.ThreadPoolExecutor(args.threads)
    inflight = collections.deque()

    def drain(limit):
        while len(inflight) > limit:
            first, fut = inflight.popleft()
            if first:
                pad()
            fout.write(memoryview(fut.result()).cast("B"))

    for ti, (name, shp, kind) in enumerate(plan):
        n = math.prod(shp)
        if kind != "normal":
            drain(0)
            pad()
            data = rope if kind == "rope" else np.ones(n, dtype=np.float32)
            assert data.size == n
            fout.write(data.tobytes())
            continue
        for ci, start in enumerate(range(0, n, CHUNK)):
            fut = pool.submit(normal_chunk, table, args.seed, ti, ci, min(CHUNK, n - start))
            inflight.append((ci == 0, fut))
            drain(2 * args.threads)
    drain(0)
    pad()
    pool.shutdown()
    writer.close()
    return plan, total, vocab, rope


def verify(gguf, path, plan, std, rope):
    """Reads the file back: the tensor list, the data ending the file, the rope factors and the
    last norm exact (they sit before and after the random data: a misplaced tensor shows), and
    the embedding's spread."""
    r = gguf.GGUFReader(path)
    names = [t.name for t in r.tensors]
    if names != [p[0] for p in plan]:
        sys.exit("make_random_gguf: tensor list read back differs from the one written")
    last = r.tensors[-1]
    end = last.data_offset + last.n_bytes
    size = os.path.getsize(path)
    if end > size or size - end >= r.alignment:
        sys.exit(f"make_random_gguf: data ends at {end} in a file of {size} bytes")
    by_name = {t.name: t for t in r.tensors}
    if not np.array_equal(np.asarray(by_name["rope_freqs.weight"].data), rope) or \
            not np.all(np.asarray(by_name["output_norm.weight"].data) == 1.0):
        sys.exit("make_random_gguf: rope_freqs / output_norm read back differ from those written")
    embd = by_name["token_embd.weight"]
    sample = np.asarray(embd.data).reshape(-1)[:1 << 16]
    vals = sample.astype(np.float32) if sample.dtype == np.float16 else \
        (sample.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if not np.all(np.isfinite(vals)) or not (0.5 < vals.std() / std < 1.5):
        sys.exit("make_random_gguf: token_embd.weight read back is not the normal sample written")


def write_vocab_only(gguf, args):
    writer = gguf.GGUFWriter(args.out, "llama")
    n = copy_tokenizer(gguf, writer, args.vocab_from)
    writer.add_name("vocabulary of " + os.path.basename(args.vocab_from))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", nargs="?", choices=sorted(SHAPES))
    ap.add_argument("out")
    ap.add_argument("--vocab-only", action="store_true",
                    help="write only the tokenizer metadata of --vocab-from to OUT")
    ap.add_argument("--vocab-from", help="GGUF whose tokenizer.* metadata is copied")
    ap.add_argument("--dtype", choices=["f16", "bf16"], default="f16")
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=0, help="override the shape's layer count")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gguf-py", help="folder holding the gguf package (<llama.cpp>/gguf-py)")
    ap.add_argument("--no-verify", action="store_true", help="skip reading the file back")
    args = ap.parse_args()
    if not args.vocab_only and not args.shape:
        ap.error("a SHAPE is needed unless --vocab-only")
    if args.vocab_from is None:
        args.vocab_from = next((p for p in DEFAULT_VOCABS if os.path.exists(p)), None)
        if args.vocab_from is None:
            sys.exit("make_random_gguf: no vocabulary source; run scripts/fetch_model.sh or pass "
                     "--vocab-from (" + " or ".join(DEFAULT_VOCABS) + ")")
    if not (args.std > 0) or args.threads < 1 or args.layers < 0:
        ap.error("--std must be positive, --threads at least 1, --layers not negative")
    gguf = import_gguf(args.gguf_py)
    t0 = time.time()
    tmp = args.out + ".part"
    final, args.out = args.out, tmp
    try:
        if args.vocab_only:
            n = write_vocab_only(gguf, args)
            os.replace(tmp, final)
            print(f"make_random_gguf: {final}: vocabulary of {n} tokens from {args.vocab_from}")
            return
        plan, total, vocab, rope = write_model(gguf, args)
        if not args.no_verify:
            verify(gguf, tmp, plan, args.std, rope)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    dt = time.time() - t0
    print(f"make_random_gguf: {final}: {args.shape} {args.dtype}, {len(plan)} tensors, "
          f"{total / 1e9:.2f} GB of weights, vocabulary {vocab}, {dt:.1f} s "
          f"({total / 1e9 / max(dt, 1e-9):.2f} GB/s, {args.threads} threads)")


if __name__ == "__main__":
    main()
