// Alert rules (SPEC D8): what the drain watches its own database for, read
// from a TOML file the user writes.
//
// ## The file
//
//   default_rules = true          # optional; false drops the built-in rule
//
//   [[rule]]                      # one table per rule, any number of them
//   name = "many-errors"          # required, unique, no control characters
//   sql = "SELECT count(*) FROM errors WHERE ts_ns > :since"
//   above = 100                   # exactly one of: above (>), at_least (>=),
//                                 #   below (<), at_most (<=), equal (==);
//                                 #   an integer or a float
//   interval = "10s"              # optional: a whole number and ms, s, m or h;
//                                 #   default "60s", at least "100ms"
//   timeout = "2s"                # optional: how long the query may run before
//                                 #   it is interrupted (alert_evaluator.hpp);
//                                 #   default "5s", at least "10ms"
//   action = "log"                # optional: "log" (default) or "exec"
//   command = ["/usr/local/bin/page", "--team", "infra"]
//                                 # required for exec, refused for log
//
// `sql` is one read-only statement of the drain's database (tables
// processes, spans, errors, ...) returning one column; the first row's
// value is compared with the threshold, and the rule fires when it passes.
// No row or NULL is "nothing to report"; text is an error. It may use two
// named parameters, both nanoseconds since the epoch:
//   :since  when the rule was last evaluated (0 the first time), so a rule
//           can count only what is new: `WHERE ts_ns > :since`
//   :now    this evaluation's time
// Timestamps in the tables (errors.ts_ns, processes.end_ns) are when things
// happened, not when the drain stored them: a row the drain stores only
// after an evaluation whose :now had passed its time is missed by
// `ts_ns > :since`. The drain evaluates between its batches, so this takes
// a drain lagging behind its producers.
//
// A firing runs the action: `log` writes one line to the drain's stderr;
// `exec` starts `command` directly (posix_spawnp: no shell, PATH searched;
// write ["sh", "-c", "..."] to get one) with the alert in its environment:
//   SHMTRACE_ALERT_RULE, SHMTRACE_ALERT_VALUE, SHMTRACE_ALERT_THRESHOLD,
//   SHMTRACE_ALERT_FIRED_NS
// Each firing is also a row of the alerts table (alert_evaluator.hpp).
//
// The built-in rule, "crash-or-unhandled-error", logs every 10 s when
// crash or exception errors, or crashed processes, appeared since the
// previous evaluation (see default_rules()).
//
// A file with any mistake is refused as a whole, with one line naming the
// file, the line and the problem: "alerts.toml:7: rule "x": two comparisons
// (above at line 6, below at line 7); write exactly one".
#ifndef SHMTRACE_DRAIN_ALERTS_ALERT_RULES_HPP
#define SHMTRACE_DRAIN_ALERTS_ALERT_RULES_HPP

#include <chrono>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace shmtrace::drain::alerts {

inline constexpr std::chrono::milliseconds kDefaultInterval{60'000};
inline constexpr std::chrono::milliseconds kMinimumInterval{100};
inline constexpr std::chrono::milliseconds kDefaultTimeout{5'000};
inline constexpr std::chrono::milliseconds kMinimumTimeout{10};

struct Rule {
  enum class Compare { kAbove, kAtLeast, kBelow, kAtMost, kEqual };
  enum class Action { kLog, kExec };

  std::string name;
  std::string sql;
  Compare compare = Compare::kAbove;
  double threshold = 0;
  std::chrono::milliseconds interval = kDefaultInterval;
  std::chrono::milliseconds timeout = kDefaultTimeout;  // the query's time limit
  Action action = Action::kLog;
  std::vector<std::string> command;  // exec only: argv, command[0] searched in PATH
  // Where the rule was written, "path:line" ("built-in" for the default
  // rule), so that errors found later (the SQL against the database) point
  // at it too.
  std::string origin;
};

// The TOML key of a comparison ("above", ...) and its operator (">", ...).
[[nodiscard]] std::string_view compare_key(Rule::Compare compare) noexcept;
[[nodiscard]] std::string_view compare_operator(Rule::Compare compare) noexcept;
[[nodiscard]] std::string_view action_name(Rule::Action action) noexcept;

// True when `value` passes the rule's threshold (fires).
[[nodiscard]] bool passes(Rule::Compare compare, double value, double threshold) noexcept;

// "500ms", "10s", "5m", "1h" -> milliseconds; the error says what is wrong
// with the text (without file or line: the caller adds those).
[[nodiscard]] std::expected<std::chrono::milliseconds, std::string> parse_interval(std::string_view text);
// The same for a query's time limit: at least kMinimumTimeout.
[[nodiscard]] std::expected<std::chrono::milliseconds, std::string> parse_timeout(std::string_view text);

// The rules that exist without any file (enabled unless `default_rules =
// false`): crash-or-unhandled-error.
[[nodiscard]] std::vector<Rule> default_rules();

// Parses a rules file: its rules, after the default rules unless the file
// disables them. Error: one line, "path:line: problem" (or "path: problem"
// when the file cannot be read).
[[nodiscard]] std::expected<std::vector<Rule>, std::string> load_rules(const std::string& path);

// The same from text in memory; `source_name` stands for the path in errors
// and origins.
[[nodiscard]] std::expected<std::vector<Rule>, std::string> parse_rules(std::string_view text,
                                                                        const std::string& source_name);

}  // namespace shmtrace::drain::alerts

#endif  // SHMTRACE_DRAIN_ALERTS_ALERT_RULES_HPP
