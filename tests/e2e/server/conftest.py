"""Starts the real `loom serve` binary on a free loopback port for the black-box tests.

Environment: LOOM_BIN (default build/loom), LOOM_MODEL (default the SmolLM2 GGUF),
LOOM_SERVE_ARGS (extra flags, split on spaces).
"""
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
API_KEY = "sk-loom-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, extra_args=(), env=None):
        self.bin = os.environ.get("LOOM_BIN", str(REPO / "build" / "loom"))
        self.model = os.environ.get(
            "LOOM_MODEL", str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
        if not Path(self.bin).exists():
            pytest.skip(f"server binary {self.bin} not built (set LOOM_BIN)")
        if not Path(self.model).exists():
            pytest.skip(f"model {self.model} missing (set LOOM_MODEL)")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [self.bin, "serve", "--model", self.model, "--host", "127.0.0.1",
                "--port", str(self.port), "--served-model-name", "smol"]
        args += shlex.split(os.environ.get("LOOM_SERVE_ARGS", "")) + list(extra_args)
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"loom-serve-{self.port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self.wait_ready()

    def wait_ready(self, timeout_s=120.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.base + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not healthy after {timeout_s} s:\n{self.logs()}")

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig=15, timeout_s=60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    """One server for the session, with an API key (LOOM_API_KEY in its environment)."""
    s = ServerProcess(env={"LOOM_API_KEY": API_KEY})
    yield s
    rc = s.stop()
    assert rc == 0, f"server exit status {rc} on SIGTERM:\n{s.logs()}"


@pytest.fixture(scope="session")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0,
                         timeout=120.0)


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=server.base, timeout=60.0,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c
