#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests, end-to-end tests on the default
# model, and the black-box HTTP server tests. Exit status is non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
# Formatting is part of the suite: every C++ / CUDA source must be clang-format clean.
(cd "$root" && git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' '*.inc' | xargs clang-format --dry-run --Werror)
cd "$root/build"
ctest --output-on-failure -j1 --timeout 900
cd "$root"
LOOM_BIN="$root/build/loom" LOOM_MODEL="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  "$root/.venv/bin/python" -m pytest -q tests/e2e/cli tests/e2e/server
