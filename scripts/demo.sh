#!/usr/bin/env bash
# The quick start's main job: sets the machine up and builds (scripts/setup.sh),
# then runs shmtrace-demo, which traces several threads and reads the records
# back from shared memory. Arguments go to the demo; exits with its status.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"

demo="$root/build/tools/shmtrace-demo"
if [[ ! -x $demo ]]; then
  echo "demo.sh: $demo was not built" >&2
  exit 1
fi
exec "$demo" "$@"
