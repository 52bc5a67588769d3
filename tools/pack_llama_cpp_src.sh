#!/usr/bin/env bash
# Packs what the GPU machine needs to run tools/gpu_peers.sh and tools/gpu_server_workloads.sh
# (llama.cpp's CUDA build against loom) into .peers/ (ignored by git; carry it with the run: it
# travels as one ~10 MB folder):
#   .peers/llama.cpp-src.tar.gz   llama.cpp's source, pruned to what configures and builds
#                                 llama-bench, llama-batched-bench and llama-server with
#                                 -DGGML_CUDA=ON, plus gguf-py (the `gguf` package
#                                 tools/make_random_gguf.py imports)
#   .peers/vocab-smollm2.gguf     the default model's tokenizer metadata alone (49,152 tokens),
#                                 which tools/make_random_gguf.py copies when models/ is absent
#
#   tools/pack_llama_cpp_src.sh [SRC]    (default SRC: $HOME/.cache/loom-peers/llama.cpp/src,
#                                         what tools/build_llama_cpp.sh unpacks)
#   CHECK=1 tools/pack_llama_cpp_src.sh  # also unpack it to a temporary folder and configure it
#                                        # there with CUDA on (needs nvcc; builds nothing)
#   CHECK=2 tools/pack_llama_cpp_src.sh  # and preprocess every compile unit of that configuration
#                                        # (C, C++ and CUDA: every header must resolve; ~1 min
#                                        # on 16 cores, several on 2)
#   CHECK=3 tools/pack_llama_cpp_src.sh  # and build llama-server from it without CUDA, on every
#                                        # core, and run it (--version; ~10 min on 2 cores)
#
# The tree configures only with the parts that were dropped switched off, and the web UI neither
# built (npm) nor downloaded (the GPU machine has no network; the server then embeds no UI):
#   -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF
#   -DLLAMA_USE_PREBUILT_UI=OFF  (and -DLLAMA_BUILD_SERVER=ON, -DLLAMA_OPENSSL=OFF: plain HTTP)
# (tools/gpu_peers.sh passes them). Dropped: .git and CI files, docs, models, media, tests,
# benches, examples, pocs, the Python converters, the server's tests, benchmark and READMEs, the
# web UI's sources (kept: the three files that generate its empty asset table, and
# scripts/ui-assets.cmake, which writes it), and every ggml backend but CPU and CUDA.
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

# Top-level entries kept, and single files from folders otherwise dropped; everything else at the
# top is dropped.
keep=(CMakeLists.txt CMakePresets.json LICENSE cmake common ggml include licenses src tools vendor
  gguf-py scripts/ui-assets.cmake)
# Dropped below the kept entries (anchored at the tree's root).
drop=(./tools/server/tests ./tools/server/bench ./tools/server/README.md
  ./tools/server/README-dev.md ./gguf-py/tests ./gguf-py/examples ./ggml/src/ggml-blas
  ./ggml/src/ggml-cann ./ggml/src/ggml-et ./ggml/src/ggml-hexagon ./ggml/src/ggml-hip
  ./ggml/src/ggml-metal ./ggml/src/ggml-musa ./ggml/src/ggml-opencl ./ggml/src/ggml-openvino
  ./ggml/src/ggml-rpc ./ggml/src/ggml-sycl ./ggml/src/ggml-virtgpu ./ggml/src/ggml-vulkan
  ./ggml/src/ggml-webgpu ./ggml/src/ggml-zdnn ./ggml/src/ggml-zendnn)
# The web UI (tools/ui): only what its CMakeLists.txt needs to embed an empty asset table.
ui_keep=" CMakeLists.txt ui.h.in ui.cpp.in "
for f in "$src"/tools/ui/* "$src"/tools/ui/.[!.]*; do
  [ -e "$f" ] || continue
  [[ "$ui_keep" == *" ${f##*/} "* ]] || drop+=("./tools/ui/${f##*/}")
done
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

# The configuration tools/gpu_peers.sh uses, less the CUDA switches.
cfg=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF)
if [ "${CHECK:-0}" != 0 ]; then
  check=$(mktemp -d)
  trap 'rm -rf "$check"' EXIT
  tar -xzf "$tarball" -C "$check"
  cmake -S "$check/llama.cpp" -B "$check/build" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
    "${cfg[@]}" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$check/cmake.log" 2>&1 ||
    { tail -30 "$check/cmake.log"; exit 1; }
  grep -q "Including CUDA backend" "$check/cmake.log" ||
    { echo "pack_llama_cpp_src: the CUDA backend was not configured" >&2; exit 1; }
  targets=$(cmake --build "$check/build" --target help)
  for t in llama-bench llama-batched-bench llama-server; do
    grep -qw -- "$t" <<<"$targets" || { echo "pack_llama_cpp_src: no target $t" >&2; exit 1; }
  done
  echo "pack_llama_cpp_src: the unpacked tree configures with CUDA (sm_90a)"
fi
if [ "${CHECK:-0}" -ge 2 ]; then
  # The web UI's source files (an empty asset table) are written at build time: make them first.
  cmake --build "$check/build" --target llama-ui-assets >>"$check/cmake.log" 2>&1 ||
    { tail -30 "$check/cmake.log"; exit 1; }
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
if [ "${CHECK:-0}" -ge 3 ]; then
  # The server from the same tree without CUDA: its sources compile and link, and it runs.
  cmake -S "$check/llama.cpp" -B "$check/build-cpu" "${cfg[@]}" >"$check/cmake-cpu.log" 2>&1 ||
    { tail -30 "$check/cmake-cpu.log"; exit 1; }
  t0=$SECONDS
  cmake --build "$check/build-cpu" -j"$(nproc)" --target llama-server \
    >"$check/build-cpu.log" 2>&1 ||
    { tail -30 "$check/build-cpu.log"; exit 1; }
  "$check/build-cpu/bin/llama-server" --version 2>&1 | sed 's/^/pack_llama_cpp_src: /'
  echo "pack_llama_cpp_src: llama-server builds from the unpacked tree (CPU, $((SECONDS - t0)) s)"
fi
