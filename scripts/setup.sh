#!/usr/bin/env bash
# Installs the Debian packages dsv4 needs to build and test. Idempotent, non-interactive.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev libhwy-dev libcli11-dev libfmt-dev libutf8proc-dev
      libgtest-dev libgmock-dev googletest libbenchmark-dev
      python3 python3-numpy curl)
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
