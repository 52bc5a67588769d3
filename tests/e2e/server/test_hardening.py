"""Malformed and hostile requests over raw HTTP: each gets the right status and an OpenAI-shaped
error, and the server stays healthy and keeps serving others. Plus /metrics and shutdown."""
import json
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from conftest import API_KEY, ServerProcess

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
LONG_PROMPT = "hello " * 20000  # far over the model's context, under the body limit

# (name, path, raw body, headers, expected status, expected param or None, text in message)
CASES = [
    ("bad json", "/v1/completions", b'{"model": "smol", "prompt": ', AUTH, 400, None, "JSON"),
    ("not an object", "/v1/completions", b"[1, 2, 3]", AUTH, 400, None, "object"),
    ("wrong type max_tokens", "/v1/completions",
     b'{"prompt": "hi", "max_tokens": "ten"}', AUTH, 400, "max_tokens", "integer"),
    ("wrong type temperature", "/v1/completions",
     b'{"prompt": "hi", "temperature": "hot"}', AUTH, 400, "temperature", "number"),
    ("wrong type messages", "/v1/chat/completions", b'{"messages": "hi"}', AUTH, 400,
     "messages", "messages"),
    ("huge max_tokens", "/v1/completions",
     b'{"prompt": "hi", "max_tokens": 100000000000000000000000}', AUTH, 400, "max_tokens",
     "max_tokens"),
    ("huge n", "/v1/completions", b'{"prompt": "hi", "n": 4294967297}', AUTH, 400, "n", "n"),
    ("huge temperature", "/v1/completions", b'{"prompt": "hi", "temperature": 1e308}', AUTH,
     400, "temperature", "temperature"),
    ("negative max_tokens", "/v1/completions", b'{"prompt": "hi", "max_tokens": -5}', AUTH, 400,
     "max_tokens", "max_tokens"),
    ("invalid utf-8", "/v1/completions", b'{"prompt": "caf\xc3\x28 \xff"}', AUTH, 400, None,
     "UTF-8"),
    ("empty prompt", "/v1/completions", b'{"prompt": ""}', AUTH, 400, "prompt", "empty"),
    ("empty messages", "/v1/chat/completions", b'{"messages": []}', AUTH, 400, "messages",
     "messages"),
    ("prompt over the context", "/v1/completions",
     json.dumps({"prompt": LONG_PROMPT, "max_tokens": 4}).encode(), AUTH, 400, "prompt",
     "context"),
    ("max_tokens over the context", "/v1/completions",
     b'{"prompt": "hi", "max_tokens": 1000000}', AUTH, 400, "max_tokens", "max_tokens"),
    ("token id outside vocab", "/v1/completions", b'{"prompt": [1, 99999999]}', AUTH, 400,
     "prompt", "token"),
    ("too many stop strings", "/v1/completions",
     json.dumps({"prompt": "hi", "stop": [f"s{i}" for i in range(50)]}).encode(), AUTH, 400,
     "stop", "stop"),
    ("unknown tier", "/v1/completions", b'{"prompt": "hi", "tier": "gold"}', AUTH, 400, "tier",
     "tier"),
    ("unknown model", "/v1/completions", b'{"model": "gpt-4", "prompt": "hi"}', AUTH, 404,
     "model", "gpt-4"),
    ("unknown route", "/v1/embeddings", b'{"input": "hi"}', AUTH, 404, None, "route"),
    ("missing auth", "/v1/completions", b'{"prompt": "hi"}',
     {"Content-Type": "application/json"}, 401, None, "API key"),
    ("wrong auth", "/v1/models", b"", {"Authorization": "Bearer wrong"}, 401, None, "API key"),
    ("oversized body", "/v1/completions",
     json.dumps({"prompt": "x" * (9 << 20)}).encode(), AUTH, 413, None, "larger"),
]


def raw_request(port, method, path, body, headers, timeout=30.0):
    """One HTTP/1.1 request on a fresh socket; returns (status, headers dict, body bytes)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as c:
        r = c.request(method, path, content=body if body else None, headers=headers)
        return r.status_code, r.headers, r.content


@pytest.mark.parametrize("name,path,body,headers,status,param,text", CASES,
                         ids=[c[0] for c in CASES])
def test_malformed_request(server, http, name, path, body, headers, status, param, text):
    method = "GET" if path == "/v1/models" else "POST"
    got_status, _, got_body = raw_request(server.port, method, path, body, headers)
    assert got_status == status, got_body[:500]
    err = json.loads(got_body)["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["param"] == param
    assert text.lower() in err["message"].lower(), err["message"]
    # Still healthy and serving others.
    assert http.get("/health").status_code == 200
    ok = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert ok.status_code == 200, ok.text


def test_slowloris_is_disconnected(server, http):
    """A client that sends part of its headers and goes silent, and one that dribbles a byte at
    a time, are both disconnected; meanwhile others are served."""
    silent = socket.create_connection(("127.0.0.1", server.port))
    silent.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    dribbler = socket.create_connection(("127.0.0.1", server.port))
    header = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000
    closed_after = None
    start = time.monotonic()
    for i, byte in enumerate(header):
        try:
            dribbler.sendall(bytes([byte]))
        except OSError:
            closed_after = time.monotonic() - start
            break
        if i % 5 == 0:
            assert http.get("/health").status_code == 200
        time.sleep(0.5)
        if time.monotonic() - start > 60:
            break
    assert closed_after is not None, "dribbling client still connected after 60 s"
    assert closed_after < 40
    silent.settimeout(30)
    assert silent.recv(100) in (b"",) or True  # closed (data, if any, is an error response)
    silent.close()
    dribbler.close()
    assert http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2}).status_code == 200


def read_metrics(http):
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def metric_value(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels or "{" in line[len(name):len(name) + 1] else " ")):
            if all(l in line for l in labels.split(",") if l):
                return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_metrics_pass_promtool(http):
    text = read_metrics(http)
    for family in ("loom_time_to_first_token_seconds", "loom_inter_token_latency_seconds",
                   "loom_e2e_request_latency_seconds", "loom_request_queue_time_seconds",
                   "loom_prompt_tokens_total", "loom_generation_tokens_total",
                   "loom_requests_running", "loom_requests_waiting", "loom_requests_swapped",
                   "loom_kv_cache_usage_ratio", "loom_preemptions_total",
                   "loom_prefix_cache_hit_ratio", "loom_requests_finished_total",
                   "loom_http_request_errors_total"):
        assert f"# TYPE {family} " in text, family
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'): lint not run")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


def test_client_disconnect_frees_blocks(server, http):
    """Streams dropped mid-generation are aborted: once idle, no KV block is held."""
    disconnects_before = metric_value(read_metrics(http), "loom_client_disconnects_total")
    socks = []
    body = json.dumps({"prompt": "Write a long story about a dragon.", "max_tokens": 400,
                       "stream": True, "ignore_eos": True}).encode()
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        socks.append(s)
    for s in socks:
        s.settimeout(60)
        assert s.recv(4096)  # streaming started
        s.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = read_metrics(http)
        live = sum(metric_value(text, f"loom_requests_{state}", f'tier="{t}"')
                   for state in ("running", "waiting", "swapped")
                   for t in ("interactive", "standard", "batch"))
        if (metric_value(text, "loom_kv_cache_blocks", 'state="used"') == 0 and live == 0 and
                metric_value(text, "loom_client_disconnects_total") >= disconnects_before + 4):
            break
        time.sleep(0.2)
    else:
        pytest.fail("KV blocks held or disconnects not seen 30 s after the clients left:\n" + text)


def test_sigterm_drains_running_requests():
    """SIGTERM: a request already generating finishes with all its tokens, new connections are
    refused, then the process exits 0."""
    s = ServerProcess()
    body = {"prompt": "Count to fifty:", "max_tokens": 40, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    text, usage, finish = "", None, None
    with httpx.Client(timeout=120) as c:
        with c.stream("POST", s.base + "/v1/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("data: {"):
                    break  # generating: now ask the server to stop
            s.proc.send_signal(15)
            for line in lines:
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    usage = event["usage"]
                for ch in event["choices"]:
                    finish = ch["finish_reason"] or finish
    assert finish == "length"
    assert usage["completion_tokens"] == 40
    rc = s.stop(sig=15)
    assert rc == 0, s.logs()
