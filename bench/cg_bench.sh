#!/usr/bin/env bash
# Runs a command inside a memory cgroup (v1) after evicting a model's pages, to measure a model larger
# than the memory it is given (docs/performance.md, "Models larger than RAM"). Needs root.
#   bench/cg_bench.sh LIMIT_BYTES MODEL_DIR -- build/dsv4 bench -m MODEL_DIR --ram-budget 4G --json
set -euo pipefail
limit=$1; model=$2; shift 3
cg=/sys/fs/cgroup/memory/dsv4bench
mkdir -p $cg
echo "$limit" > $cg/memory.limit_in_bytes
/usr/bin/python3 - "$model" <<'PY'
import glob, os, sys
for f in glob.glob(sys.argv[1] + "/*.safetensors"):
    fd = os.open(f, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
bash -c "echo \$\$ > $cg/cgroup.procs; exec $*"
echo "cgroup max_usage_in_bytes $(cat $cg/memory.max_usage_in_bytes)" >&2
echo 0 > $cg/memory.max_usage_in_bytes || true
