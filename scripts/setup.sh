#!/usr/bin/env bash
# Sets a Debian 12 machine up for shmtrace: installs the Debian packages the
# build needs (apt is skipped when they are all installed already), then
# configures and builds build/ (RelWithDebInfo unless CMAKE_BUILD_TYPE says
# otherwise).
#
#   scripts/setup.sh                   packages, configure, build
#   scripts/setup.sh --packages-only   packages only (scripts/test.sh uses this)
#   scripts/setup.sh --print-packages  print the package list, one a line
set -euo pipefail

# The one list of Debian packages; .ci/run installs the same through
# --print-packages.
packages=(
  g++                 # GCC 12: C++23, std::expected; pulls in the sanitizer runtimes
  make                # cmake's default generator (cmake only recommends it)
  cmake               # 3.25
  pkg-config          # consumers' pkg-config check of shmtrace.pc
  libboost-dev        # Boost.Interprocess, header-only
  libsqlite3-dev      # the drain's storage
  sqlite3             # inspecting the drain's database by hand
  libgtest-dev        # the test suite
  libgmock-dev
  libbenchmark-dev    # bench/
  libdw-dev           # drain/symbols: libdwfl, code addresses to function names
  libelf-dev
  libcli11-dev        # shmtrace-drain's command line
  nlohmann-json3-dev  # the tests parse the commands' JSON output (report, export) back
  libre2-dev          # the drain's redaction patterns (SPEC §6)
  libtomlplusplus-dev # the drain's configuration and alert rules
  libcpp-httplib-dev  # the drain's Prometheus endpoint
  prometheus          # promtool: the tests check the metrics exposition with it
  clang-16            # scripts/fuzz.sh: the libFuzzer targets (tests/fuzz)
  libclang-rt-16-dev  # libFuzzer and the sanitizers' runtimes for clang-16
  protobuf-compiler   # tests/export_perfetto_test: protoc --decode_raw of the Perfetto trace
  git
  ca-certificates
)
# Coming with the drain and tools (names checked with apt-cache policy on
# Debian 12); add each here when the build first needs it.

mode=all
case "${1:-}" in
  "") ;;
  --packages-only) mode=packages ;;
  --print-packages) printf '%s\n' "${packages[@]}"; exit 0 ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup.sh: unknown argument '$1' (expected --packages-only or --print-packages)" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup.sh: all ${#packages[@]} Debian packages are installed"
else
  echo "setup.sh: installing ${missing[*]}"
  if ((EUID == 0)); then
    as_root=(env DEBIAN_FRONTEND=noninteractive)
  elif command -v sudo >/dev/null; then
    as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
  else
    echo "setup.sh: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [[ $mode == packages ]]; then
  exit 0
fi

cmake -S "$root" -B "$root/build"
cmake --build "$root/build" --parallel "$(nproc)"
