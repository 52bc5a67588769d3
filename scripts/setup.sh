#!/usr/bin/env bash
# Installs what loom needs on Debian 12 and builds it. Idempotent and quick when nothing is
# missing: packages are checked with dpkg before apt-get runs, the Python test environment is
# rebuilt only when its requirements change, the model is fetched only when absent, and the build
# is incremental (ccache keeps objects outside the clone).
#   scripts/setup.sh            # packages, model, Release build in build/
#   LOOM_SKIP_PYTHON=1 ...      # skip the Python test environment
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Debian packages: compiler and build tools, the libraries loom links, and tools the tests use.
packages=(build-essential cmake pkg-config ccache git clang-format python3 python3-venv python3-pip
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libpcre2-dev
  libcpp-httplib-dev libcli11-dev prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The default model (checked against its pinned sha256).
"$root/scripts/fetch_model.sh"

# Python environment for the black-box server tests and benchmark plots.
if [ "${LOOM_SKIP_PYTHON:-0}" != "1" ]; then
  req="$root/tests/e2e/requirements.txt"
  stamp="$root/.venv/.requirements.sha256"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$root/.venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$root/.venv"
    "$root/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
  fi
fi

# Build (Release). Parallelism follows the machine's cores.
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths below the clone hash as relative ones, so a fresh clone elsewhere still hits the cache.
export CCACHE_BASEDIR="$root"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)"
