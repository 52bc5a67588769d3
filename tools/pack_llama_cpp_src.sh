#!/usr/bin/env bash
# Packs what the GPU machine needs to run tools/gpu_peers.sh (llama.cpp's CUDA build against loom)
# into .peers/ (ignored by git; carry it with the run: it travels as one ~10 MB folder):
#   .peers/llama.cpp-src.tar.gz   llama.cpp's source, pruned to what configures and builds
#                                 llama-bench and llama-batched-bench with -DGGML_CUDA=ON, plus
#                                 gguf-py (the `gguf` package tools/make_random_gguf.py imports)
#   .peers/vocab-smollm2.gguf     the default model's tokenizer metadata alone (49,152 tokens),
#                                 which tools/make_random_gguf.py copies when models/ is absent
#
#   tools/pack_llama_cpp_src.sh [SRC]    (default SRC: $HOME/.cache/loom-peers/llama.cpp/src,
#                                         what tools/build_llama_cpp.sh unpacks)
#   CHECK=1 tools/pack_llama_cpp_src.sh  # also unpack it to a temporary folder and configure it
#                                        # there with CUDA on (needs nvcc; builds nothing)
#   CHECK=2 tools/pack_llama_cpp_src.sh  # and preprocess every compile unit of that configuration
#                                        # (C, C++ and CUDA: every header must resolve; ~1 min)
#
# The tree configures only with the parts that were dropped switched off:
#   -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
# (tools/gpu_peers.sh passes them). Dropped: .git and CI files, docs, models, media, tests,
# benches, examples, pocs, the Python converters, the server and its web UI, and every ggml
# backend but CPU and CUDA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$HOME/.cache/loom-peers/llama.cpp/src}
out_dir=$root/.peers
tarball=$out_dir/llama.cpp-src.tar.gz
vocab=$out_dir/vocab-smollm2.gguf
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/ref/venv/bin/python ]; then PYTHON=/work/ref/venv/bin/python; else PYTHON=python3; fi
fi

if [ ! -f "$src/CMakeLists.txt" ] || [ ! -d "$src/ggml/src/ggml-cuda" ] || [ ! -d "$src/gguf-py/gguf" ]
then
  echo "pack_llama_cpp_src: no llama.cpp source at $src (run tools/build_llama_cpp.sh)" >&2
  exit 1
fi
mkdir -p "$out_dir"

# Top-level entries kept; everything else at the top is dropped.
keep=(CMakeLists.txt CMakePresets.json LICENSE cmake common ggml include licenses src tools vendor
  gguf-py)
# Dropped below the kept entries (anchored at the tree's root).
drop=(./tools/server ./tools/ui ./gguf-py/tests ./gguf-py/examples ./ggml/src/ggml-blas
  ./ggml/src/ggml-cann ./ggml/src/ggml-et ./ggml/src/ggml-hexagon ./ggml/src/ggml-hip
  ./ggml/src/ggml-metal ./ggml/src/ggml-musa ./ggml/src/ggml-opencl ./ggml/src/ggml-openvino
  ./ggml/src/ggml-rpc ./ggml/src/ggml-sycl ./ggml/src/ggml-virtgpu ./ggml/src/ggml-vulkan
  ./ggml/src/ggml-webgpu ./ggml/src/ggml-zdnn ./ggml/src/ggml-zendnn)
members=()
for k in "${keep[@]}"; do [ -e "$src/$k" ] && members+=("./$k"); done
excludes=(--exclude=__pycache__ --exclude='*.pyc' --exclude=.git --exclude=.gitignore)
for d in "${drop[@]}"; do excludes+=(--anchored --exclude="$d" --no-anchored); done

tmp=$(mktemp "$tarball.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# Reproducible: sorted names, fixed time and owner; one top folder, llama.cpp/.
tar -C "$src" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --transform 's,^\.,llama.cpp,' "${excludes[@]}" -cf - "${members[@]}" | gzip -9 -n >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$tarball"
trap - EXIT
echo "pack_llama_cpp_src: $tarball ($(du -k "$tarball" | cut -f1) KiB)"

if [ -f "$model" ]; then
  "$PYTHON" "$root/tools/make_random_gguf.py" --vocab-only "$vocab" --vocab-from "$model" \
    --gguf-py "$src/gguf-py"
else
  echo "pack_llama_cpp_src: $model is missing (scripts/fetch_model.sh): no $vocab written" >&2
  [ -f "$vocab" ] || exit 1
fi

if [ "${CHECK:-0}" != 0 ]; then
  check=$(mktemp -d)
  trap 'rm -rf "$check"' EXIT
  tar -xzf "$tarball" -C "$check"
  cmake -S "$check/llama.cpp" -B "$check/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$check/cmake.log" 2>&1 ||
    { tail -30 "$check/cmake.log"; exit 1; }
  grep -q "Including CUDA backend" "$check/cmake.log" ||
    { echo "pack_llama_cpp_src: the CUDA backend was not configured" >&2; exit 1; }
  targets=$(cmake --build "$check/build" --target help)
  for t in llama-bench llama-batched-bench; do
    grep -qw -- "$t" <<<"$targets" || { echo "pack_llama_cpp_src: no target $t" >&2; exit 1; }
  done
  echo "pack_llama_cpp_src: the unpacked tree configures with CUDA (sm_90a)"
fi
if [ "${CHECK:-0}" = 2 ]; then
  # Each compile unit run through its own command with -M (full preprocessing, no code): a
  # header left out of the tarball fails here.
  "$PYTHON" - "$check/build/compile_commands.json" <<'PY'
import concurrent.futures as cf, json, os, shlex, subprocess, sys
units = json.load(open(sys.argv[1]))
def deps(e):
    args = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
    cmd, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c":
            cmd.append(a)
    cmd += ["-M", "-o", "/dev/null"] if e["file"].endswith(".cu") else ["-M", "-MF", "/dev/null"]
    r = subprocess.run(cmd, cwd=e["directory"], capture_output=True, text=True)
    return e["file"], r.returncode, r.stderr[-600:]
bad = 0
with cf.ThreadPoolExecutor(os.cpu_count() or 1) as ex:
    for f, rc, err in ex.map(deps, units):
        if rc:
            bad += 1
            print("pack_llama_cpp_src: FAILED", f, err)
print(f"pack_llama_cpp_src: {len(units) - bad} of {len(units)} compile units preprocess")
sys.exit(1 if bad else 0)
PY
fi
