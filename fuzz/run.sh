#!/bin/sh
# Runs every fuzz target for SECS seconds (default 240), one at a time,
# seeding each corpus with the kept regression inputs.
set -e
cd "$(dirname "$0")/.."
SECS=${1:-240}
for t in path_normalize token_verify config_parse wechat_answer upstream_answer; do
  mkdir -p fuzz/corpus/$t
  cp fuzz/regressions/$t/* fuzz/corpus/$t/
  cargo +nightly fuzz run "$t" fuzz/corpus/$t -- -max_total_time="$SECS" -rss_limit_mb=1024 \
    > "fuzz/$t.log" 2>&1 || echo "$t: FAILED (see fuzz/$t.log)"
  grep -E '^Done|stat::number_of_executed_units' "fuzz/$t.log" | tail -2
done
