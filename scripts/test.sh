#!/usr/bin/env bash
# Builds shmtrace and runs its whole test suite with ctest.
#
#   scripts/test.sh [normal]   build/       RelWithDebInfo
#   scripts/test.sh asan       build-asan/  ASan + UBSan, leaks checked
#   scripts/test.sh tsan       build-tsan/  ThreadSanitizer
#
# Installs missing Debian packages first (scripts/setup.sh). Exits with
# ctest's status.
set -euo pipefail

mode="${1:-normal}"
case "$mode" in
  normal)
    dir=build
    options=()
    ;;
  asan)
    dir=build-asan
    options=(-DSHMTRACE_SANITIZE=address -DSHMTRACE_BUILD_BENCH=OFF)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  tsan)
    dir=build-tsan
    options=(-DSHMTRACE_SANITIZE=thread -DSHMTRACE_BUILD_BENCH=OFF)
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    ;;
  -h|--help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "test.sh: unknown mode '$mode': use normal, asan or tsan" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" --packages-only

echo "test.sh: $mode build in $dir/"
cmake -S "$root" -B "$root/$dir" -DSHMTRACE_BUILD_TESTS=ON "${options[@]}"
cmake --build "$root/$dir" --parallel "$(nproc)"

runner=()
if [[ $mode == tsan ]]; then
  # GCC 12's TSan cannot map its shadow when the kernel randomizes mmap with
  # more than 28 bits ("unexpected memory mapping"); run without ASLR there.
  rnd_bits="$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)"
  if ((rnd_bits > 28)) && command -v setarch >/dev/null; then
    echo "test.sh: vm.mmap_rnd_bits=$rnd_bits, running TSan tests with ASLR off"
    runner=(setarch "$(uname -m)" -R)
  fi
fi

cd "$root/$dir"
status=0
"${runner[@]}" ctest --output-on-failure --no-tests=error -j2 || status=$?
exit "$status"
