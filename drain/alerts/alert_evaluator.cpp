#include "alerts/alert_evaluator.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

extern char** environ;

namespace shmtrace::drain::alerts {
namespace {

constexpr std::int64_t kNanosPerMilli = 1'000'000;
constexpr std::string_view kEnvPrefix = "SHMTRACE_ALERT_";

std::string format_number(double value) {
  std::array<char, 64> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  if (ec != std::errc{}) return "?";
  return std::string(buffer.data(), end);
}

std::string quoted(const Rule& rule) { return "rule \"" + rule.name + "\""; }

// The outcome of one query: a number, nothing to report, or an error.
struct QueryResult {
  std::optional<double> value;
  std::string error;  // non-empty: the query failed
};

struct RuleState {
  Rule rule;
  sqlite3_stmt* query = nullptr;
  int since_index = 0;  // 0: the query does not use :since
  int now_index = 0;
  std::int64_t since_ns = 0;
  std::int64_t next_due_ns = std::numeric_limits<std::int64_t>::min();  // due at the first tick
  bool failing = false;
  pid_t running = 0;  // the exec'd command not reaped yet, 0 when none
};

struct Firing {
  const RuleState* state;
  double value;
  std::string outcome;
};

}  // namespace

struct Evaluator::Impl {
  sqlite3* db = nullptr;
  LogSink log;
  std::vector<RuleState> rules;
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;

  ~Impl() {
    reap();
    for (RuleState& r : rules) sqlite3_finalize(r.query);
    for (sqlite3_stmt* s : {insert, begin, commit, rollback}) sqlite3_finalize(s);
  }

  void say(const std::string& line) const {
    if (log) log(line);
  }

  QueryResult run_query(RuleState& r, std::int64_t now_ns) {
    sqlite3_reset(r.query);
    if (r.since_index != 0) sqlite3_bind_int64(r.query, r.since_index, r.since_ns);
    if (r.now_index != 0) sqlite3_bind_int64(r.query, r.now_index, now_ns);
    QueryResult result;
    const int rc = sqlite3_step(r.query);
    if (rc == SQLITE_ROW) {
      switch (sqlite3_column_type(r.query, 0)) {
        case SQLITE_INTEGER:
        case SQLITE_FLOAT:
          result.value = sqlite3_column_double(r.query, 0);
          break;
        case SQLITE_NULL:
          break;  // nothing to report (max() of no rows)
        default:
          result.error = "returned text, not a number";
          break;
      }
    } else if (rc != SQLITE_DONE) {
      result.error = sqlite3_errmsg(db);
    }
    // Ends the statement's read transaction now rather than at the next tick.
    sqlite3_reset(r.query);
    return result;
  }

  std::string spawn(RuleState& r, double value, std::int64_t now_ns) {
    if (r.running != 0) return "skipped: previous command still running";
    std::vector<std::string> env_strings = {
        "SHMTRACE_ALERT_RULE=" + r.rule.name,
        "SHMTRACE_ALERT_VALUE=" + format_number(value),
        "SHMTRACE_ALERT_THRESHOLD=" + format_number(r.rule.threshold),
        "SHMTRACE_ALERT_FIRED_NS=" + std::to_string(now_ns),
    };
    std::vector<char*> envp;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      // Ours replace any the drain inherited.
      if (std::string_view(*e).starts_with(kEnvPrefix)) continue;
      envp.push_back(*e);
    }
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = r.rule.command;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    // The command must not read the drain's stdin nor hold its database,
    // segments or sockets open.
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
    // The drain may block or ignore signals it handles itself; the command
    // starts as from a shell.
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attributes, &empty);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (const int sig : {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM}) {
      sigaddset(&defaults, sig);
    }
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (rc != 0) {
      const std::string reason = std::strerror(rc);
      say("alert " + quoted(r.rule) + ": cannot run " + r.rule.command.front() + ": " + reason);
      return "spawn failed: " + reason;
    }
    r.running = pid;
    return "spawned";
  }

  // Collects the commands that finished, never waiting for one.
  void reap() {
    for (RuleState& r : rules) {
      if (r.running == 0) continue;
      int status = 0;
      const pid_t done = waitpid(r.running, &status, WNOHANG);
      if (done == 0) continue;
      if (done < 0) {
        if (errno == EINTR) continue;
        r.running = 0;  // ECHILD: reaped elsewhere (SIGCHLD ignored)
        continue;
      }
      const std::string who = "alert " + quoted(r.rule) + ": command " + r.rule.command.front() + " (pid " +
                              std::to_string(r.running) + ")";
      if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        say(who + " exited with status " + std::to_string(WEXITSTATUS(status)));
      } else if (WIFSIGNALED(status)) {
        say(who + " was killed by signal " + std::to_string(WTERMSIG(status)));
      }
      r.running = 0;
    }
  }

  bool step_done(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  }

  void record(const std::vector<Firing>& firings, std::int64_t now_ns) {
    // The drain calls between its batches; should it ever call inside one,
    // the rows join its transaction rather than fail on a nested BEGIN.
    const bool own_transaction = sqlite3_get_autocommit(db) != 0;
    if (own_transaction && !step_done(begin)) {
      say("cannot record alerts: " + std::string(sqlite3_errmsg(db)));
      return;
    }
    for (const Firing& f : firings) {
      const Rule& rule = f.state->rule;
      sqlite3_bind_int64(insert, 1, now_ns);
      sqlite3_bind_text(insert, 2, rule.name.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_double(insert, 3, f.value);
      sqlite3_bind_double(insert, 4, rule.threshold);
      sqlite3_bind_text(insert, 5, compare_key(rule.compare).data(), -1, SQLITE_STATIC);
      sqlite3_bind_text(insert, 6, action_name(rule.action).data(), -1, SQLITE_STATIC);
      sqlite3_bind_text(insert, 7, f.outcome.c_str(), -1, SQLITE_TRANSIENT);
      if (!step_done(insert)) {
        say("cannot record alerts: " + std::string(sqlite3_errmsg(db)));
        if (own_transaction) step_done(rollback);
        return;
      }
    }
    if (own_transaction && !step_done(commit)) {
      say("cannot record alerts: " + std::string(sqlite3_errmsg(db)));
      step_done(rollback);
    }
  }

  int tick(std::int64_t now_ns) {
    reap();
    std::vector<Firing> firings;
    for (RuleState& r : rules) {
      if (now_ns < r.next_due_ns) continue;
      const std::int64_t interval_ns = r.rule.interval.count() * kNanosPerMilli;
      r.next_due_ns = now_ns > std::numeric_limits<std::int64_t>::max() - interval_ns
                          ? std::numeric_limits<std::int64_t>::max()
                          : now_ns + interval_ns;
      const QueryResult result = run_query(r, now_ns);
      if (!result.error.empty()) {
        if (!r.failing) {
          say("alert " + quoted(r.rule) + " (" + r.rule.origin + "): query failed: " + result.error +
              "; retrying every " + std::to_string(r.rule.interval.count()) + "ms");
        }
        r.failing = true;
        continue;  // :since stays, so the next evaluation covers this one's span
      }
      if (r.failing) say("alert " + quoted(r.rule) + ": query works again");
      r.failing = false;
      r.since_ns = now_ns;
      if (!result.value || !passes(r.rule.compare, *result.value, r.rule.threshold)) continue;
      const double value = *result.value;
      std::string outcome;
      if (r.rule.action == Rule::Action::kLog) {
        say("alert \"" + r.rule.name + "\" fired: value " + format_number(value) + " " +
            std::string(compare_operator(r.rule.compare)) + " " + format_number(r.rule.threshold));
        outcome = "logged";
      } else {
        outcome = spawn(r, value, now_ns);
      }
      firings.push_back({&r, value, std::move(outcome)});
    }
    if (!firings.empty()) record(firings, now_ns);
    return static_cast<int>(firings.size());
  }
};

namespace {

// Checks one rule and prepares its query; the error names the rule.
std::expected<RuleState, std::string> prepare_rule(sqlite3* db, Rule rule) {
  const std::string where = rule.origin.empty() ? quoted(rule) : rule.origin + ": " + quoted(rule);
  if (rule.interval < kMinimumInterval) return std::unexpected(where + ": interval is below the 100ms minimum");
  if (rule.action == Rule::Action::kExec && (rule.command.empty() || rule.command.front().empty())) {
    return std::unexpected(where + ": action \"exec\" needs a command");
  }
  RuleState state;
  const char* tail = nullptr;
  if (sqlite3_prepare_v3(db, rule.sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &state.query, &tail) != SQLITE_OK) {
    sqlite3_finalize(state.query);
    return std::unexpected(where + ": sql does not prepare: " + sqlite3_errmsg(db));
  }
  const auto fail = [&](const std::string& problem) {
    sqlite3_finalize(state.query);
    return std::unexpected(where + ": sql " + problem);
  };
  if (state.query == nullptr) return fail("holds no statement");
  // Whatever follows the first statement must be only spaces or comments.
  sqlite3_stmt* second = nullptr;
  const int rc = sqlite3_prepare_v2(db, tail, -1, &second, nullptr);
  sqlite3_finalize(second);
  if (rc != SQLITE_OK || second != nullptr) return fail("holds more than one statement");
  const int columns = sqlite3_column_count(state.query);
  if (columns == 0) return fail("returns no column; it must return one number");
  if (columns > 1) return fail("returns " + std::to_string(columns) + " columns; it must return one number");
  if (!sqlite3_stmt_readonly(state.query)) return fail("must only read the database");
  for (int i = 1; i <= sqlite3_bind_parameter_count(state.query); ++i) {
    const char* name = sqlite3_bind_parameter_name(state.query, i);
    const std::string_view shown = name != nullptr ? name : "?";
    if (shown == ":since") {
      state.since_index = i;
    } else if (shown == ":now") {
      state.now_index = i;
    } else {
      return fail("uses parameter " + std::string(shown) + "; only :since and :now are bound");
    }
  }
  state.rule = std::move(rule);
  return state;
}

}  // namespace

std::expected<Evaluator, std::string> Evaluator::create(sqlite3* db, std::vector<Rule> rules, LogSink log) {
  auto impl = std::make_unique<Impl>();
  impl->db = db;
  impl->log = std::move(log);
  std::set<std::string, std::less<>> names;
  for (Rule& rule : rules) {
    if (!names.insert(rule.name).second) return std::unexpected("duplicate alert rule name \"" + rule.name + "\"");
    auto state = prepare_rule(db, std::move(rule));
    if (!state) return std::unexpected(std::move(state.error()));
    impl->rules.push_back(std::move(*state));
  }
  const auto prepare = [&](const char* sql, sqlite3_stmt** out) {
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr) == SQLITE_OK;
  };
  if (!prepare("INSERT INTO alerts (fired_ns, rule, value, threshold, comparison, action, outcome) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               &impl->insert)) {
    return std::unexpected("cannot record alerts (the store creates the alerts table): " +
                           std::string(sqlite3_errmsg(db)));
  }
  if (!prepare("BEGIN IMMEDIATE", &impl->begin) || !prepare("COMMIT", &impl->commit) ||
      !prepare("ROLLBACK", &impl->rollback)) {
    return std::unexpected("cannot prepare the alerts transaction: " + std::string(sqlite3_errmsg(db)));
  }
  return Evaluator(std::move(impl));
}

Evaluator::Evaluator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Evaluator::Evaluator(Evaluator&&) noexcept = default;
Evaluator& Evaluator::operator=(Evaluator&&) noexcept = default;
Evaluator::~Evaluator() = default;

int Evaluator::tick(std::int64_t now_ns) noexcept {
  if (!impl_) return 0;
  try {
    return impl_->tick(now_ns);
  } catch (...) {
    // Out of memory, or a log sink that threw: skip this tick, never the drain.
    return 0;
  }
}

std::int64_t Evaluator::next_due_ns() const noexcept {
  std::int64_t due = std::numeric_limits<std::int64_t>::max();
  if (impl_) {
    for (const RuleState& r : impl_->rules) due = std::min(due, r.next_due_ns);
  }
  return due;
}

std::size_t Evaluator::running_commands() const noexcept {
  std::size_t count = 0;
  if (impl_) {
    for (const RuleState& r : impl_->rules) count += r.running != 0 ? 1 : 0;
  }
  return count;
}

}  // namespace shmtrace::drain::alerts
