#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang-16 with ASan+UBSan) in
# build-fuzz/ and runs each over its seed corpus (tests/fuzz/corpus/<target>).
#
#   scripts/fuzz.sh [--seconds N | --runs N] [TARGET...]
#       run each target (all by default) N seconds (default 15) or N
#       executions; new inputs go to build-fuzz/corpus/<target>, crashes to
#       build-fuzz/artifacts/; prints the executions of each target
#   scripts/fuzz.sh --seed
#       rewrite tests/fuzz/corpus from real producers' segments (needs the
#       normal build: scripts/setup.sh)
#
# Targets: segment decoder error_area spill_file histogram alert_rules
# redactor. Exits non-zero when a target crashed or broke an invariant.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=(segment decoder error_area spill_file histogram alert_rules redactor)
limit=(-max_total_time=15)
seed=false
chosen=()
while (($# > 0)); do
  case "$1" in
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    --seed) seed=true; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1'" >&2; exit 2 ;;
    *) chosen+=("$1"); shift ;;
  esac
done
((${#chosen[@]} > 0)) && targets=("${chosen[@]}")

bash "$root/scripts/setup.sh" --packages-only

if $seed; then
  cmake --build "$root/build" --target fuzz_seed_corpus --parallel "$(nproc)"
  # Rewrites the seeds it makes; inputs kept by hand (a crash a target
  # found, named for it) stay.
  "$root/build/tests/fuzz_seed_corpus" "$root/tests/fuzz/corpus"
  find "$root/tests/fuzz/corpus" -type f | wc -l | xargs echo "fuzz.sh: seed files written:"
  exit 0
fi

dir="$root/build-fuzz"
cmake -S "$root" -B "$dir" -DSHMTRACE_BUILD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16 >/dev/null
cmake --build "$dir" --parallel "$(nproc)" --target "${targets[@]/%/_fuzz}"

export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$dir/artifacts"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t"
  log="$dir/fuzz-$t.log"
  status=0
  "$dir/tests/fuzz/${t}_fuzz" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$t-" "$dir/corpus/$t" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  # What the targets keep in /dev/shm while they run (the error-area
  # target's chunk, the spill-file target's file), gone with them.
  rm -f /dev/shm/fuzz-spill-* /dev/shm/shmtrace.*.5eed5eed5eed5eed.*
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  echo "fuzz.sh: $t: ${runs:-?} executions, exit status $status"
  if ((status != 0)); then
    failed+=("$t")
    tail -n 40 "$log"
  fi
done
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]} (inputs in $dir/artifacts)"
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, no crash"
