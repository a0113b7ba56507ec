#!/bin/sh
# Checks that every name st_workload prints in its count lines is the
# demangled name of a function symbol of the binary, as `nm -C` prints it:
# the name the drain resolves that function's address to. A compiler that
# spells a name differently fails here, not in the end-to-end test.
#   check_names.sh <path/to/st_workload>
set -eu
binary=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Function symbols (global T/W or local t), without address and type.
nm -C --defined-only "$binary" | sed -n 's/^[0-9a-f]* [TtWw] //p' | sort -u >"$dir/symbols"
SHMTRACE_DISABLE=1 "$binary" --list-functions >"$dir/names"
status=0
while IFS= read -r name; do
  if ! grep -qxF -- "$name" "$dir/symbols"; then
    echo "check_names: '$name' is not a function symbol of $binary" >&2
    status=1
  fi
done <"$dir/names"
[ "$status" -eq 0 ] && echo "check_names: all $(wc -l <"$dir/names") names found"
exit "$status"
