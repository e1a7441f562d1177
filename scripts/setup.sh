#!/usr/bin/env bash
# Installs the Debian packages dsv4 needs to build and test. Idempotent, non-interactive.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev libhwy-dev libcli11-dev libfmt-dev libutf8proc-dev
      libgtest-dev libgmock-dev googletest libbenchmark-dev
      python3 python3-numpy curl
      clang libclang-rt-14-dev   # the fuzz build (scripts/fuzz.sh): clang with libFuzzer and sanitizers
      libopenmpi-dev openmpi-bin)  # several machines: mpirun dsv4 ... (expert parallel)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Node.js and the official openai client for the server tests (tests/server), from the npm registry at
# the versions pinned in its package-lock.json. Skipped when both are already there.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
srv="$(cd "$(dirname "$0")/.." && pwd)/tests/server"
if ! cmp -s "$srv/package-lock.json" "$srv/node_modules/.package-lock.json.installed" 2>/dev/null; then
  (cd "$srv" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$srv/package-lock.json" "$srv/node_modules/.package-lock.json.installed"
fi
