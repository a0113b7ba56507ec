// Evaluates alert rules (alert_rules.hpp) against the drain's database,
// runs their actions and records every firing (SPEC D8).
//
// The drain calls tick() between its batches, on its own connection and
// outside its transactions; a rule whose interval has elapsed since its
// last evaluation runs its query with :since = that evaluation's time (0 the
// first time) and :now = this one's. Every evaluation moves :since forward,
// whether it fired or not, so a rule counting `ts_ns > :since` sees each row
// once. An evaluation whose query fails does not move it, and the next one
// covers the gap. A rule is due at its first tick, then `interval` after
// each evaluation (not catching up missed ones after a stall).
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
// `exec` never blocks the drain: posix_spawnp (no shell), stdin from
// /dev/null, file descriptors above 2 closed, default signal mask and
// dispositions; the alert is in SHMTRACE_ALERT_RULE, SHMTRACE_ALERT_VALUE,
// SHMTRACE_ALERT_THRESHOLD, SHMTRACE_ALERT_FIRED_NS beside the drain's own
// environment. At most one command per rule runs at a time, so a hung
// command cannot pile up processes. Children are reaped with WNOHANG on
// every tick (only those the evaluator started, by pid), and a command that
// exits non-zero or by a signal is logged.
#ifndef SHMTRACE_DRAIN_ALERTS_ALERT_EVALUATOR_HPP
#define SHMTRACE_DRAIN_ALERTS_ALERT_EVALUATOR_HPP

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

// One line for the drain's stderr (no newline).
using LogSink = std::function<void(const std::string&)>;

class Evaluator {
 public:
  // Prepares every rule's query on `db`, which must outlive the evaluator
  // and already hold the alerts table. Refused, with one line naming the
  // rule and where it was written: a query that does not prepare, holds
  // more than one statement, writes, returns other than one column, or
  // uses a parameter other than :since and :now.
  [[nodiscard]] static std::expected<Evaluator, std::string> create(sqlite3* db, std::vector<Rule> rules, LogSink log);

  Evaluator(Evaluator&&) noexcept;
  Evaluator& operator=(Evaluator&&) noexcept;
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;
  // Finalizes the statements and reaps what has exited (WNOHANG); commands
  // still running are left to finish on their own.
  ~Evaluator();

  // Evaluates the rules due at `now_ns` (ns since the epoch), fires those
  // whose value passes their threshold, reaps finished commands. Returns
  // how many fired. Never throws; a failing query is logged once per rule
  // per failure streak, and once more when it works again.
  int tick(std::int64_t now_ns) noexcept;

  // The earliest time a rule is due (INT64_MAX without rules), for the
  // drain's poll timeout.
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
