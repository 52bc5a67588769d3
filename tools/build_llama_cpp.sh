#!/usr/bin/env bash
# Builds llama.cpp's benchmark tools and server (the peer loom is compared with) from the source
# that the PyPI sdist of llama-cpp-python ships, outside the repository.
#   tools/build_llama_cpp.sh [DEST]     (default DEST: $HOME/.cache/loom-peers/llama.cpp)
# Produces DEST/build/bin/{llama-bench,llama-batched-bench,llama-server}. Idempotent.
set -euo pipefail
version=0.3.36
dest=${1:-$HOME/.cache/loom-peers/llama.cpp}
if [ -x "$dest/build/bin/llama-bench" ] && [ -x "$dest/build/bin/llama-batched-bench" ] &&
  [ -x "$dest/build/bin/llama-server" ]; then
  echo "$dest/build/bin"
  exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$version"
tar -xzf "$tmp"/llama_cpp_python-$version.tar.gz -C "$tmp"
rm -rf "$dest/src"
mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$dest/src"
# Native build for this CPU (llama.cpp's default), no GPU, no network features.
cmake -S "$dest/src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >/dev/null
cmake --build "$dest/build" -j"$(nproc)" --target llama-bench llama-batched-bench llama-server
echo "$dest/build/bin"
