#!/bin/sh
# Idempotent, non-interactive install of exactly what tools/nano needs (Debian 12 packages).
#   python3-torch, python3-numpy, python3-regex, python3-matplotlib: model, tokenizer, plots
#   libopenblas0-openmp: Debian's torch is built against the generic reference BLAS (~7 GFLOP/s);
#     installing OpenBLAS switches libblas.so.3 (update-alternatives) and makes training ~10x faster
#   bible-kjv (+ bible-kjv-text), dict-devil, fortunes-min: the corpus sources
set -eu
PKGS="python3-torch python3-numpy python3-regex python3-matplotlib libopenblas0-openmp bible-kjv dict-devil fortunes-min"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
/usr/bin/python3 -c "import torch, numpy, regex, matplotlib; print('tools/nano deps OK: torch', torch.__version__)"
