"""The load test (tools/loadtest/loadtest.py) at a size this machine runs in about a minute.
The full size (1,000 concurrent streams) runs as a benchmark: see the script's docstring.
LOOM_LOADTEST_REQUESTS overrides the size."""
import os
import sys
from pathlib import Path

from conftest import API_KEY, REPO

sys.path.insert(0, str(REPO / "tools" / "loadtest"))
import loadtest  # noqa: E402


def test_concurrent_streams_with_drops(server):
    n = int(os.environ.get("LOOM_LOADTEST_REQUESTS", "200"))
    rc = loadtest.main(["--url", server.base, "--api-key", API_KEY, "--requests", str(n),
                        "--concurrency", str(n), "--drop-fraction", "0.2", "--max-tokens", "16",
                        "--timeout-s", "300"])
    assert rc == 0
