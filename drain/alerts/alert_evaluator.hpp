// Evaluates alert rules (alert_rules.hpp) against the drain's database,
// runs their actions and records every firing (SPEC D8).
//
// ## Where rules run
//
// Off the drain's path: the evaluator has its own thread (start(), stop())
// and its own two connections to the database, so a slow or never-ending
// query cannot delay a batch, retention or a SIGTERM:
//   queries  read-only, opened by OpenQueryConnection (the drain's attaches
//            the time partitions and creates the spans and span_data views,
//            and registers the SQL functions of stats_sql.hpp). WAL lets it
//            read beside the drain's writer. It is reopened when the
//            partitions table changes, so a rule sees new partitions (and
//            stops reading expired ones) from its next evaluation.
//   records  read-write, used only for the short INSERTs of the alerts
//            table. The drain's writer holds BEGIN IMMEDIATE transactions,
//            so it waits for the write lock for up to `busy_timeout`; rows
//            it could not write are kept (at most kMaxPendingFirings) and
//            written with the next tick's. It never checkpoints: that is
//            the store's work.
//
// ## Time limit
//
// Each query runs under its rule's `timeout` (default 5 s, the TOML key
// `timeout`): a progress handler interrupts it once that much time has
// passed (also a busy wait on the database: a custom busy handler gives up
// at the same deadline). A query that ran out of time is a failed
// evaluation: logged once per failure streak, as any failing query,
//   alert rule "r" (f.toml:3): query failed: ran past its 200ms timeout and
//   was interrupted; retrying every 100ms
// and retried one `interval` after it gave up. While one query runs, the
// rules due after it wait; at most their timeouts add up.
//
// stop() (the drain calls it when it stops, and the destructor does)
// interrupts a running query at once (sqlite3_interrupt) and any wait for a
// lock, except that the last tick's firings still wait up to 250 ms for the
// write lock to be recorded; then it joins the thread.
//
// ## When rules run
//
// A rule whose interval has elapsed since its last evaluation runs its query
// with :since = that evaluation's time (0 the first time) and :now = this
// one's. Every evaluation moves :since forward, whether it fired or not, so
// a rule counting `ts_ns > :since` sees each row once. An evaluation whose
// query fails does not move it, and the next one covers the gap. A rule is
// due at its first tick, then `interval` after each evaluation (not catching
// up missed ones after a stall).
//
// ## Firings
//
// A firing appends one row to the alerts table, all of one tick's firings in
// one short transaction:
//   fired_ns    the tick's now_ns
//   rule        the rule's name
//   value       what its query returned
//   threshold   the rule's threshold
//   comparison  above, at_least, below, at_most or equal
//   action      log or exec
//   outcome     log: "logged";
//               exec: "spawned" (pid in the drain's log when it fails),
//                     "spawn failed: <reason>",
//                     "skipped: previous command still running"
//
// `exec` never blocks the evaluator: posix_spawnp (no shell), stdin from
// /dev/null, file descriptors above 2 closed, default signal mask and
// dispositions; the alert is in SHMTRACE_ALERT_RULE, SHMTRACE_ALERT_VALUE,
// SHMTRACE_ALERT_THRESHOLD, SHMTRACE_ALERT_FIRED_NS beside the drain's own
// environment. At most one command per rule runs at a time, so a hung
// command cannot pile up processes. Children are reaped with WNOHANG on
// every tick (only those the evaluator started, by pid), and a command that
// exits non-zero or by a signal is logged. A command that cannot be started
// backs its rule off: after k spawn failures in a row the rule is next
// evaluated interval * 2^k later (at most kMaxSpawnBackoff), so a missing
// program costs a row and a try every few minutes, not every interval; the
// streak is logged once, when it begins, and ends at the first spawn that
// works.
#ifndef SHMTRACE_DRAIN_ALERTS_ALERT_EVALUATOR_HPP
#define SHMTRACE_DRAIN_ALERTS_ALERT_EVALUATOR_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "alerts/alert_rules.hpp"

struct sqlite3;

namespace shmtrace::drain::alerts {

// DDL of the alerts table; the store's migration executes this text, so the
// evaluator and the store cannot disagree on it.
inline constexpr const char* kAlertsTableSql =
    "CREATE TABLE alerts (fired_ns INTEGER NOT NULL, rule TEXT NOT NULL, value REAL NOT NULL, "
    "threshold REAL NOT NULL, comparison TEXT NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL); "
    "CREATE INDEX alerts_by_time ON alerts (fired_ns);";

// The longest a failing exec rule waits between tries.
inline constexpr std::chrono::milliseconds kMaxSpawnBackoff{600'000};
// Firings kept while the alerts table cannot be written; older ones beyond
// are dropped (and counted in the log).
inline constexpr std::size_t kMaxPendingFirings = 1024;

// One line for the drain's stderr (no newline). Called from the evaluator's
// thread once started: it must be safe to call beside the drain's own log.
using LogSink = std::function<void(const std::string&)>;

// A connection for the rules' queries and what closes it.
using QueryConnection = std::unique_ptr<sqlite3, std::function<void(sqlite3*)>>;
// Opens the database at `path` for the rules' queries, read-only, with
// whatever they may use (views, functions). Called once by create() and
// again, on the evaluator's thread, whenever the partitions change.
using OpenQueryConnection = std::function<std::expected<QueryConnection, std::string>(const std::string& path)>;

struct EvaluatorOptions {
  OpenQueryConnection open_queries;             // empty: a plain read-only connection
  std::chrono::milliseconds busy_timeout{5000};  // the longest wait for the write lock
};

class Evaluator {
 public:
  // Opens the database at `path` twice (queries, records) and prepares every
  // rule's query; the database must already hold the alerts table. Refused,
  // with one line naming the rule and where it was written: a query that
  // does not prepare, holds more than one statement, writes, returns other
  // than one column, or uses a parameter other than :since and :now.
  [[nodiscard]] static std::expected<Evaluator, std::string> create(const std::string& path, std::vector<Rule> rules,
                                                                    LogSink log, EvaluatorOptions options = {});

  Evaluator(Evaluator&&) noexcept;
  Evaluator& operator=(Evaluator&&) noexcept;
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;
  // Stops the thread, finalizes, closes, reaps what has exited (WNOHANG);
  // commands still running are left to finish on their own.
  ~Evaluator();

  // Runs the rules on the evaluator's own thread from now on, each when it
  // is due by the wall clock, until stop(). Signals are blocked there, so
  // the drain's SIGTERM goes to its own threads.
  void start();
  // Interrupts a running query, ends the thread and waits for it (bounded
  // by a spawn and the last firings' INSERT, 250 ms at most waiting for the
  // lock). The evaluator can be started again.
  void stop() noexcept;
  [[nodiscard]] bool started() const noexcept;

  // Evaluates the rules due at `now_ns` (ns since the epoch) on the calling
  // thread, fires those whose value passes their threshold, reaps finished
  // commands. Returns how many fired; 0 while started (the thread ticks).
  // Never throws; a failing query is logged once per rule per failure
  // streak, and once more when it works again.
  int tick(std::int64_t now_ns) noexcept;

  // The earliest time a rule is due (INT64_MAX without rules).
  [[nodiscard]] std::int64_t next_due_ns() const noexcept;

  // Commands started and not yet reaped.
  [[nodiscard]] std::size_t running_commands() const noexcept;

 private:
  struct Impl;
  explicit Evaluator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmtrace::drain::alerts

#endif  // SHMTRACE_DRAIN_ALERTS_ALERT_EVALUATOR_HPP
