#!/usr/bin/env bash
# The quick start's main job: sets the machine up and builds (scripts/setup.sh),
# then does what a user does in their first five minutes:
#   1. shmtrace run --db build/shmtrace-demo.db --policy block -- shmtrace-demo-workload
#      traces a multi-process program (forked workers, threads, nested spans,
#      arguments with a password among them, counters, errors) through a
#      private drain, and exits with the program's status;
#   2. shmtrace report build/shmtrace-demo.db
#      reports on what was stored;
#   3. shmtrace-demo-check --db build/shmtrace-demo.db
#      checks every count in the database against what the workers wrote
#      (with the defaults: 36,000 spans, 1,200 errors, 12,000 passwords
#      redacted, 0 dropped).
# The database stays in build/shmtrace-demo.db (the one before it in
# build/shmtrace-demo.db.old) for `shmtrace report`, `shmtrace sql`, ...
# Arguments (--workers N, --threads N, --requests N) go to the workload and
# the check. Exits non-zero when any step fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"

tools="$root/build/tools"
for program in shmtrace shmtrace-demo-workload shmtrace-demo-check; do
  if [[ ! -x $tools/$program ]]; then
    echo "demo.sh: $tools/$program was not built" >&2
    exit 1
  fi
done
db="$root/build/shmtrace-demo.db"
# Lossless: a worker whose ring is full waits for the drain instead of
# dropping; a long wait allows for a slow (sanitizer) drain.
export SHMTRACE_BLOCK_TIMEOUT_MS="${SHMTRACE_BLOCK_TIMEOUT_MS:-30000}"

set -x
"$tools/shmtrace" run --db "$db" --policy block -- "$tools/shmtrace-demo-workload" "$@"
"$tools/shmtrace" report "$db"
"$tools/shmtrace-demo-check" --db "$db" "$@"
