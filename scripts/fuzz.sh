#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang + ASan/UBSan) into build-fuzz/ (or $BUILD_DIR) and runs
# each for $FUZZ_SECONDS (default 30) on a copy of its seed corpus in tests/fuzz/corpus/<target>.
# Fails on the first crash, leak, UB report or timeout; the reproducer is left in $BUILD_DIR/fuzz-out/.
#   FUZZ_SECONDS=600 scripts/fuzz.sh            # a long run of every target
#   FUZZ_TARGETS="parser http" scripts/fuzz.sh  # only some
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build-fuzz}
secs=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"safetensors checkpoint gguf config tokenizer tokenizer_json encoder parser http"}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DDSV4_FUZZ=ON \
  -DDSV4_TESTS=OFF -DDSV4_BENCH=OFF >/dev/null
cmake --build "$dir" --target dsv4_fuzz -j"$(nproc)"
out="$dir/fuzz-out"
for t in $targets; do
  # New inputs go to a scratch corpus, so the tree's seed corpus stays small and reviewed.
  rm -rf "$out/$t" && mkdir -p "$out/$t/corpus" "$out/$t/artifacts"
  echo "== fuzz_$t: ${secs}s"
  if ! "$dir/tests/fuzz/fuzz_$t" "$out/$t/corpus" "tests/fuzz/corpus/$t" -max_total_time="$secs" \
      -timeout=25 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$out/$t/artifacts/" >"$out/$t/log" 2>&1; then
    tail -n 60 "$out/$t/log"
    echo "fuzz_$t FAILED: reproducer in $out/$t/artifacts/ (run: $dir/tests/fuzz/fuzz_$t FILE)" >&2
    exit 1
  fi
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$out/$t/log" || true
done
echo "fuzz: all targets ran ${secs}s without a finding"
