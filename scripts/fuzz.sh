#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each, one after the other, and
# prints per target the executions and the corpus size at the end. New inputs the fuzzer finds
# go into fuzz/corpus/<target>/; a crash, hang or out-of-memory stops that target and leaves its
# input in fuzz/artifacts/<target>/ (see docs/fuzzing.md for what to do with it).
#
#   scripts/fuzz.sh SECONDS [TARGET...]     (needs a nightly toolchain and cargo-fuzz)
#
# Logs: fuzz/artifacts/logs/<target>.log. Exit status 1 when a target failed.
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

logs=fuzz/artifacts/logs
mkdir -p "$logs"
if ! cargo +nightly fuzz build >"$logs/build.log" 2>&1; then
  tail -30 "$logs/build.log" >&2
  echo "fuzz build failed (log: $logs/build.log)" >&2
  exit 1
fi

failed=0
summary=()
for t in "${targets[@]}"; do
  corpus=(fuzz/corpus/"$t")
  [ -d fuzz/regressions/"$t" ] && corpus+=(fuzz/regressions/"$t")
  log="$logs/$t.log"
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run "$t" "${corpus[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
  files=$(find fuzz/corpus/"$t" -type f | wc -l)
  status=ok
  if [ $rc -ne 0 ]; then
    status="FAILED (rc $rc; see $log and fuzz/artifacts/$t/)"
    grep -E "^(==[0-9]+==ERROR|thread '.*' panicked|SUMMARY|artifact_prefix|Test unit written)" "$log" | head -5 >&2
    failed=1
  fi
  summary+=("$(printf '%-14s %12s %8s  %s' "$t" "${execs:-?}" "$files" "$status")")
done

printf '%-14s %12s %8s  %s\n' target executions corpus status
printf '%s\n' "${summary[@]}"
exit $failed
