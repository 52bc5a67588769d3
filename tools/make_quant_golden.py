#!/usr/bin/env python3
"""Golden fixtures for the CPU dequantization kernels (tests/unit/kernels/).

The expected values come from the `gguf` Python package (gguf.quants), an implementation of the
GGML block layouts that is independent of loom's C++ code.

Run (from the repository root, in an environment with gguf==0.19.0 and numpy installed):
    python3 tools/make_quant_golden.py tests/golden/kernels

For every type T it writes:
    T.bin  raw blocks (random bytes with sane fp16 scale fields), as a GGUF file stores them
    T.f32  the dequantized values, float32 little-endian, one per element
and for activation quantization:
    q8_0_quant_in.f32 / q8_0_quant_out.bin  float input and its Q8_0 blocks
"""
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

RNG = np.random.default_rng(20240611)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_scales(n, lo, hi):
    mag = RNG.uniform(lo, hi, n)
    sign = RNG.choice([-1.0, 1.0], n)
    return mag * sign


def make_blocks(qtype, n_blocks):
    block_elems, block_bytes = quants.GGML_QUANT_SIZES[qtype]
    raw = RNG.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # Overwrite the fp16 scale fields so values stay finite and of a realistic size.
    if qtype in (T.Q4_0, T.Q5_0, T.Q8_0):
        raw[:, 0:2] = f16_bytes(random_scales(n_blocks, 1e-3, 0.1)).reshape(n_blocks, 2)
    elif qtype in (T.Q4_1, T.Q5_1):
        raw[:, 0:2] = f16_bytes(random_scales(n_blocks, 1e-3, 0.1)).reshape(n_blocks, 2)
        raw[:, 2:4] = f16_bytes(random_scales(n_blocks, 1e-2, 1.0)).reshape(n_blocks, 2)
    elif qtype in (T.Q4_K, T.Q5_K):
        raw[:, 0:2] = f16_bytes(RNG.uniform(1e-4, 1e-2, n_blocks)).reshape(n_blocks, 2)
        raw[:, 2:4] = f16_bytes(RNG.uniform(1e-4, 1e-2, n_blocks)).reshape(n_blocks, 2)
    elif qtype == T.Q6_K:
        raw[:, 208:210] = f16_bytes(random_scales(n_blocks, 1e-4, 1e-2)).reshape(n_blocks, 2)
    return raw


def write(out_dir, name, raw, expected):
    (out_dir / f"{name}.bin").write_bytes(np.ascontiguousarray(raw).tobytes())
    (out_dir / f"{name}.f32").write_bytes(np.asarray(expected, dtype="<f4").tobytes())


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/kernels")
    out_dir.mkdir(parents=True, exist_ok=True)

    for qtype, n_blocks in [(T.Q4_0, 16), (T.Q4_1, 16), (T.Q5_0, 16), (T.Q5_1, 16),
                            (T.Q8_0, 16), (T.Q4_K, 3), (T.Q5_K, 3), (T.Q6_K, 3)]:
        raw = make_blocks(qtype, n_blocks)
        expected = quants.dequantize(raw, qtype).reshape(-1)
        write(out_dir, qtype.name, raw, expected)

    # F16: normal values, subnormals, signed zeros, infinities and a NaN.
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, -65504.0, 6.1035e-05,
                         5.96e-08, -5.96e-08, 3.0e-06, 1.0, -2.5], dtype=np.float16)
    f16 = np.concatenate([specials, RNG.normal(0, 3, 243).astype(np.float16)])
    write(out_dir, "F16", f16.view(np.uint8), f16.astype(np.float32))

    # BF16: random bit patterns (covers subnormals, infinities and NaNs) plus specials.
    bits = np.concatenate([np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x8001,
                                     0x3F80, 0x7F7F], dtype=np.uint16),
                           RNG.integers(0, 1 << 16, 247, dtype=np.uint16)])
    expected = quants.dequantize(bits.view(np.uint8), T.BF16).reshape(-1)
    write(out_dir, "BF16", bits.view(np.uint8), expected)

    # Activation quantization to Q8_0 (bit-exact with the reference C code, per gguf).
    x = RNG.normal(0, 1, 256).astype(np.float32)
    x[32:64] = 0.0  # an all-zero block: scale 0
    q = quants.quantize(x.reshape(1, -1), T.Q8_0)
    (out_dir / "q8_0_quant_in.f32").write_bytes(x.astype("<f4").tobytes())
    (out_dir / "q8_0_quant_out.bin").write_bytes(q.tobytes())


if __name__ == "__main__":
    main()
