#!/usr/bin/env bash
# Sets everything up and starts the OpenAI-compatible server with the default model on
# 127.0.0.1:8080 (extra arguments go to `loom serve`, e.g. --port 9000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
LOOM_SKIP_PYTHON=1 "$root/scripts/setup.sh"
exec "$root/build/loom" serve --model "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$@"
