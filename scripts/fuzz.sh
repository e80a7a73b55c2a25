#!/usr/bin/env bash
# Runs every libFuzzer target of a TL_FUZZ build for FUZZ_SECONDS each, one after the other.
#
#   scripts/fuzz.sh BUILD_DIR [TARGET...]      (make fuzz calls it; default: every target)
#
# Each target starts from its committed seeds, tests/fuzz/corpus/<name>/, which libFuzzer only
# reads: what it finds goes to BUILD_DIR/fuzz/corpus/<name>/ (kept between runs, so longer
# runs build on shorter ones; `make clean` removes it), crash artifacts to
# BUILD_DIR/fuzz/artifacts/<name>/. The repository stays clean.
# Environment: FUZZ_SECONDS (default 60) per target; FUZZ_ARGS, extra libFuzzer flags.
# Exits non-zero if any target crashed, leaked, hit undefined behaviour or broke an invariant;
# prints one summary line per target (runs, exec/s, coverage, corpus size).
set -uo pipefail
shopt -s nullglob

build=${1:?usage: scripts/fuzz.sh BUILD_DIR [TARGET...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
case "$seconds" in '' | *[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a whole number" >&2; exit 2 ;; esac

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in "$root"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    targets+=("${name#fuzz_}")
  done
fi

failed=()
summary=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  seeds="$root/tests/fuzz/corpus/$t"
  work="$build/fuzz/corpus/$t"
  artifacts="$build/fuzz/artifacts/$t"
  log="$build/fuzz/$t.log"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing (configure with -DTL_FUZZ=ON)" >&2
    failed+=("$t")
    summary+=("$(printf '%-14s MISSING %s' "$t" "$bin")")
    continue
  fi
  mkdir -p "$work" "$artifacts"
  dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=("-dict=$root/tests/fuzz/$t.dict")
  echo "fuzz: $t for ${seconds}s" >&2
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: runaway memory is a bug.
  # ${FUZZ_ARGS} is split on purpose: it holds several flags.
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} "$work" "$seeds" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1)
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); the report, then the input in $artifacts/:" >&2
    grep -E -A30 '^(==[0-9]+==|fuzz invariant failed|.*runtime error:|SUMMARY:)' "$log" \
      | head -60 >&2
    summary+=("$(printf '%-14s FAILED  see %s' "$t" "$log")")
  else
    summary+=("$(printf '%-14s ok  %10s runs  %7s exec/s  %-9s %s' "$t" "${runs:-?}" \
      "${speed:-?}" "${cov:-}" "${corp:-}")")
  fi
done

echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
