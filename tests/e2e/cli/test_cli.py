"""Black-box tests of the `loom` command line: info, generate (one prompt, JSONL files) and
clear errors for bad input. LOOM_BIN and LOOM_MODEL name the binary and the model."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.environ.get("LOOM_BIN", os.path.join(ROOT, "build", "loom"))
MODEL = os.environ.get("LOOM_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def loom(*args, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def test_info_describes_the_model():
    r = loom("info", "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert "architecture:      llama" in r.stdout
    assert "layers:            30" in r.stdout
    assert "Q4_1 x210" in r.stdout
    assert "368640 bytes per block of 16 tokens" in r.stdout


def test_info_on_a_missing_or_broken_file_is_a_clear_error(tmp_path):
    r = loom("info", "--model", str(tmp_path / "nope.gguf"))
    assert r.returncode != 0
    assert "nope.gguf" in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 20)
    r = loom("info", "--model", str(bad))
    assert r.returncode != 0 and r.stderr.strip(), r.stderr
    assert "Segmentation" not in r.stderr


def test_generate_streams_greedy_text_and_reports_speed():
    r = loom("generate", "--model", MODEL, "--prompt", "The capital of France is", "--max-tokens", "8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris"), r.stdout  # llama.cpp's greedy answer too
    assert "prefill" in r.stderr and "decode" in r.stderr


def test_generate_rejects_invalid_sampling_parameters():
    r = loom("generate", "--model", MODEL, "--prompt", "x", "--top-p", "0")
    assert r.returncode != 0
    assert "top_p" in r.stderr


def test_generate_jsonl_keeps_order_and_reports_bad_lines(tmp_path):
    lines = [
        {"id": "a", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
        {"id": "b", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6},
        {"id": "c", "prompt": ""},
        "this is not json",
        {"id": "e", "prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0.7, "seed": 5},
        {"id": "f", "prompt": "Hi", "max_tokens": -3},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    out = tmp_path / "out.jsonl"
    r = loom("generate", "--model", MODEL, "--input", str(inp), "--output", str(out))
    assert r.returncode == 0, r.stderr
    res = [json.loads(l) for l in out.read_text().splitlines()]
    assert [x["id"] for x in res] == ["a", "b", "c", 4, "e", "f"]
    assert res[0]["text"].startswith(" Paris") and res[0]["completion_tokens"] == 8
    assert res[0]["finish_reason"] == "length"
    for key in ("queue_ms", "ttft_ms", "decode_ms", "e2e_ms"):
        assert res[0]["timings"][key] >= 0
    assert res[1]["prompt_tokens"] > 10 and res[1]["completion_tokens"] <= 6
    assert "prompt" in res[2]["error"]
    assert "JSON" in res[3]["error"]
    assert res[4]["completion_tokens"] == 4
    assert "max_tokens" in res[5]["error"]
