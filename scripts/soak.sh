#!/usr/bin/env bash
# Soak: the real drain under waves of 8 producer processes x 16 threads for
# a while (default 10 minutes: half under block, half under drop), in a
# private /dev/shm (a mount namespace, as root). Checks at the end:
#   block: every thread's counters stored exactly once, no gap;
#   drop:  no counter stored twice, every process's records_dropped equal to
#          its gaps, i.e. stored + dropped = produced as the drain counts;
#   the drain's RSS flat (the last wave within 10 % + 8 MiB of the second),
#   its file descriptors constant, no segment left in /dev/shm.
#
#   scripts/soak.sh [SECONDS]     (needs the normal build: scripts/setup.sh)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-600}"
if [[ "${SHMTRACE_SOAK_ISOLATED:-}" != 1 ]]; then
  ((EUID == 0)) || { echo "soak.sh: run as root (it mounts a private /dev/shm)" >&2; exit 2; }
  exec unshare -m env SHMTRACE_SOAK_ISOLATED=1 bash -c \
    "mount --make-rprivate / && mount -t tmpfs -o size=4g,mode=1777 tmpfs /dev/shm && exec bash '$0' '$seconds'"
fi

# The drain below takes only segments of no session: so must the producers be.
unset SHMTRACE_SESSION
build="$root/build"
drain_bin="$build/drain/shmtrace-drain"
producer="$build/tests/st_producer"
[[ -x $drain_bin && -x $producer ]] || { echo "soak.sh: build first (bash scripts/setup.sh)" >&2; exit 2; }
work="$(mktemp -d /tmp/shmtrace-soak.XXXXXX)"
db="$work/soak.db"
per_thread=20000

"$drain_bin" --db "$db" 2>"$work/drain.log" &
drain=$!
trap 'kill $drain 2>/dev/null || true; wait $drain 2>/dev/null || true' EXIT
sleep 0.5

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$drain/status"; }
fds() { ls "/proc/$drain/fd" | wc -l; }

declare -A policy_of
first_rss=0 last_rss=0 first_fds=0 last_fds=0 waves=0
end=$((SECONDS + seconds))
half=$((SECONDS + seconds / 2))
while ((SECONDS < end)); do
  policy=block
  ((SECONDS >= half)) && policy=drop
  pids=()
  for _ in 1 2 3 4 5 6 7 8; do
    SHMTRACE_POLICY=$policy SHMTRACE_BLOCK_TIMEOUT_MS=60000 "$producer" sequence 16 "$per_thread" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    wait "$p" || { echo "soak.sh: producer $p failed" >&2; exit 1; }
    policy_of[$p]=$policy
  done
  # Drained: no segment left once the drain caught up.
  for _ in $(seq 600); do
    compgen -G "/dev/shm/shmtrace.*" >/dev/null || break
    sleep 0.1
  done
  waves=$((waves + 1))
  last_rss=$(rss_kib) last_fds=$(fds)
  # The first wave opens what the drain keeps open (partitions, their WAL,
  # the checkpointer's connection): the baseline is the second.
  ((waves <= 2)) && first_rss=$last_rss first_fds=$last_fds
  echo "soak.sh: wave $waves ($policy): drain RSS ${last_rss} KiB, ${last_fds} fds"
done
kill -TERM $drain
wait $drain || { echo "soak.sh: the drain exited $?" >&2; exit 1; }
trap - EXIT

failed=0
views="$("$drain_bin" --db "$db" --print-views)"
query() { sqlite3 -batch -noheader "$db" -cmd "$views" "$1"; }
block_pids=() drop_pids=()
for p in "${!policy_of[@]}"; do
  if [[ ${policy_of[$p]} == block ]]; then block_pids+=("$p"); else drop_pids+=("$p"); fi
done
list() { local IFS=,; echo "$*"; }
if ((${#block_pids[@]} > 0)); then
  exact="$(query "SELECT count(*) FROM (SELECT p.pid, r.tid, count(*) n, count(DISTINCT r.value) d,
    min(CAST(r.value AS INTEGER)) lo, max(CAST(r.value AS INTEGER)) hi FROM span_data r JOIN processes p
    USING (process_key) WHERE r.kind = 'counter' AND p.pid IN ($(list "${block_pids[@]}")) GROUP BY p.pid, r.tid)
    WHERE n = $per_thread AND d = n AND lo = 0 AND hi = $((per_thread - 1))")"
  gaps="$(query "SELECT count(*) FROM gaps JOIN processes p USING (process_key) WHERE p.pid IN ($(list "${block_pids[@]}"))")"
  echo "soak.sh: block: $exact of $((16 * ${#block_pids[@]})) threads exact, $gaps gaps"
  ((exact == 16 * ${#block_pids[@]} && gaps == 0)) || failed=1
fi
if ((${#drop_pids[@]} > 0)); then
  twice="$(query "SELECT count(*) FROM (SELECT p.pid, r.tid, r.value FROM span_data r JOIN processes p USING (process_key)
    WHERE r.kind = 'counter' AND p.pid IN ($(list "${drop_pids[@]}")) GROUP BY 1, 2, 3 HAVING count(*) > 1)")"
  unbalanced="$(query "SELECT count(*) FROM processes p WHERE p.pid IN ($(list "${drop_pids[@]}")) AND
    p.records_dropped <> (SELECT coalesce(sum(dropped), 0) FROM gaps g WHERE g.process_key = p.process_key)")"
  dropped="$(query "SELECT sum(records_dropped) FROM processes WHERE pid IN ($(list "${drop_pids[@]}"))")"
  echo "soak.sh: drop: ${#drop_pids[@]} processes, $dropped records dropped, $twice counters twice, $unbalanced processes whose drops and gaps differ"
  ((twice == 0 && unbalanced == 0)) || failed=1
fi
echo "soak.sh: drain RSS after wave 2 ${first_rss} KiB, last ${last_rss} KiB; fds ${first_fds} -> ${last_fds}"
((last_rss <= first_rss * 11 / 10 + 8192)) || { echo "soak.sh: RSS grew"; failed=1; }
((last_fds == first_fds)) || { echo "soak.sh: file descriptors leaked"; failed=1; }
if compgen -G "/dev/shm/shmtrace.*" >/dev/null; then echo "soak.sh: segments left in /dev/shm"; failed=1; fi
((failed == 0)) && rm -rf "$work"
((failed == 0)) || echo "soak.sh: the drain log and database are in $work"
((failed == 0)) && echo "soak.sh: $waves waves in $seconds s: all checks hold"
exit $failed
