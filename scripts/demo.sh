#!/usr/bin/env bash
# The quick start's main job: sets the machine up and builds (scripts/setup.sh),
# then runs shmtrace-demo, which starts the real shmtrace-drain, traces a
# multi-process workload into SQLite through it, prints a report from the
# database and checks that every record was stored exactly once. The database
# stays in build/shmtrace-demo.db (replaced on each run) for you to query.
# Arguments go to the demo (--workers, --threads, --requests, --db, --drain);
# exits with its status.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"

demo="$root/build/tools/shmtrace-demo"
if [[ ! -x $demo ]]; then
  echo "demo.sh: $demo was not built" >&2
  exit 1
fi
# A later --db among the arguments wins.
exec "$demo" --db "$root/build/shmtrace-demo.db" "$@"
