#include "alerts/alert_evaluator.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <utility>

extern char** environ;

namespace shmtrace::drain::alerts {
namespace {

constexpr std::int64_t kNanosPerMilli = 1'000'000;
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
constexpr std::string_view kEnvPrefix = "SHMTRACE_ALERT_";
// SQLite virtual-machine steps between two looks at the clock: a few
// microseconds of work, so a deadline is kept to well under a millisecond.
constexpr int kProgressSteps = 1000;
// The longest the thread sleeps: commands are reaped and a wall-clock jump
// noticed at least this often.
constexpr std::int64_t kMaxSleepNs = 1'000'000'000;
constexpr std::int64_t kReapSleepNs = 100'000'000;  // while a command runs
// How long a stopping evaluator still waits for the write lock to record
// the firings of its last tick.
constexpr std::int64_t kStopRecordNs = 250'000'000;

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) { return a > kNever - b ? kNever : a + b; }

std::int64_t to_ns(std::chrono::milliseconds d) {
  return d.count() > kNever / kNanosPerMilli ? kNever : d.count() * kNanosPerMilli;
}

std::string format_number(double value) {
  std::array<char, 64> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  if (ec != std::errc{}) return "?";
  return std::string(buffer.data(), end);
}

// As a rules file writes it: "100ms", "5s", "10m", "1h".
std::string format_duration(std::chrono::milliseconds d) {
  const std::int64_t ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1'000 == 0) return std::to_string(ms / 1'000) + "s";
  return std::to_string(ms) + "ms";
}

std::string quoted(const Rule& rule) { return "rule \"" + rule.name + "\""; }

// The outcome of one query: a number, nothing to report, or an error.
struct QueryResult {
  std::optional<double> value;
  std::string error;       // non-empty: the query failed
  bool timed_out = false;  // it ran past the rule's timeout
  bool stopped = false;    // interrupted by stop(): neither a failure nor a result
};

struct RuleState {
  Rule rule;
  sqlite3_stmt* query = nullptr;  // null: does not prepare on the current connection
  std::string prepare_error;      // why, then
  int since_index = 0;            // 0: the query does not use :since
  int now_index = 0;
  std::int64_t since_ns = 0;
  std::int64_t next_due_ns = std::numeric_limits<std::int64_t>::min();  // due at the first tick
  bool failing = false;
  pid_t running = 0;       // the exec'd command not reaped yet, 0 when none
  int spawn_failures = 0;  // in a row
};

struct Firing {
  std::size_t rule;  // index into Impl::rules
  std::int64_t fired_ns;
  double value;
  std::string outcome;
};

// Checks one rule's query and prepares it on `db`; the error says what is
// wrong with it (without the rule's name).
std::expected<sqlite3_stmt*, std::string> prepare_query(sqlite3* db, const Rule& rule, int& since_index,
                                                        int& now_index) {
  sqlite3_stmt* query = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v3(db, rule.sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &query, &tail) != SQLITE_OK) {
    sqlite3_finalize(query);
    return std::unexpected("sql does not prepare: " + std::string(sqlite3_errmsg(db)));
  }
  const auto fail = [&](const std::string& problem) {
    sqlite3_finalize(query);
    return std::unexpected("sql " + problem);
  };
  if (query == nullptr) return fail("holds no statement");
  // Whatever follows the first statement must be only spaces or comments.
  sqlite3_stmt* second = nullptr;
  const int rc = sqlite3_prepare_v2(db, tail, -1, &second, nullptr);
  sqlite3_finalize(second);
  if (rc != SQLITE_OK || second != nullptr) return fail("holds more than one statement");
  const int columns = sqlite3_column_count(query);
  if (columns == 0) return fail("returns no column; it must return one number");
  if (columns > 1) return fail("returns " + std::to_string(columns) + " columns; it must return one number");
  if (!sqlite3_stmt_readonly(query)) return fail("must only read the database");
  since_index = 0;
  now_index = 0;
  for (int i = 1; i <= sqlite3_bind_parameter_count(query); ++i) {
    const char* name = sqlite3_bind_parameter_name(query, i);
    const std::string_view shown = name != nullptr ? name : "?";
    if (shown == ":since") {
      since_index = i;
    } else if (shown == ":now") {
      now_index = i;
    } else {
      return fail("uses parameter " + std::string(shown) + "; only :since and :now are bound");
    }
  }
  return query;
}

std::expected<QueryConnection, std::string> open_plain(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  QueryConnection connection(db, [](sqlite3* d) { sqlite3_close(d); });
  if (rc != SQLITE_OK) return std::unexpected("cannot open " + path + ": " + sqlite3_errmsg(db));
  return connection;
}

}  // namespace

struct Evaluator::Impl {
  std::string path;
  LogSink log;
  EvaluatorOptions options;
  std::vector<RuleState> rules;

  // Queries: used by the evaluating thread alone; stop() interrupts it from
  // another thread, so it is replaced under connection_mutex.
  QueryConnection queries;
  std::mutex connection_mutex;
  std::optional<std::string> partitions_seen;  // the partitions when `queries` was opened
  bool reopen_failing = false;

  // Records, and the rows waiting for it.
  sqlite3* records = nullptr;
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* partitions = nullptr;
  std::vector<Firing> pending;
  bool record_failing = false;
  std::size_t dropped = 0;

  // Read by the progress and busy handlers, on the evaluating thread.
  std::int64_t deadline_ns = kNever;  // steady clock
  bool timed_out = false;
  bool recording = false;  // in record(): a stop shortens the lock wait, not ends it
  std::atomic<bool> stopping{false};
  std::atomic<std::int64_t> stop_deadline_ns{kNever};  // steady clock, set by stop()

  std::thread thread;
  std::atomic<bool> started{false};
  std::mutex wake_mutex;
  std::condition_variable wake;
  // For next_due_ns() and running_commands() from the owner's thread.
  std::atomic<std::int64_t> next_due{kNever};
  std::atomic<std::size_t> running_count{0};

  ~Impl() {
    reap();
    if (!pending.empty()) say("alerts: " + std::to_string(pending.size()) + " firings not recorded at exit");
    for (RuleState& r : rules) sqlite3_finalize(r.query);
    for (sqlite3_stmt* s : {insert, begin, commit, rollback, partitions}) sqlite3_finalize(s);
    sqlite3_close(records);
  }

  void say(const std::string& line) const {
    if (log) log(line);
  }

  // Interrupts the query running past its deadline, or any once stopping.
  static int on_progress(void* self) {
    auto* impl = static_cast<Impl*>(self);
    if (impl->stopping.load(std::memory_order_relaxed)) return 1;  // pairs with stop()'s store
    if (steady_ns() < impl->deadline_ns) return 0;
    impl->timed_out = true;
    return 1;
  }

  // Waits for a lock until the same deadline; once stopping, at once for a
  // query, and briefly for the last firings.
  static int on_busy(void* self, int attempts) {
    auto* impl = static_cast<Impl*>(self);
    const std::int64_t now = steady_ns();
    // Acquire: pairs with stop()'s release, which publishes stop_deadline_ns.
    if (impl->stopping.load(std::memory_order_acquire)) {
      if (!impl->recording || now >= impl->stop_deadline_ns.load(std::memory_order_relaxed)) return 0;
    }
    if (now >= impl->deadline_ns) {
      impl->timed_out = true;
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(attempts < 10 ? 1 : 5));
    return 1;
  }

  void set_deadline(std::chrono::milliseconds limit) {
    timed_out = false;
    deadline_ns = saturating_add(steady_ns(), to_ns(limit));
  }

  // The partitions table's ids, read on the records connection; nullopt
  // when it cannot be read (a database without partitions).
  std::optional<std::string> read_partitions() {
    if (partitions == nullptr) return std::nullopt;
    set_deadline(options.busy_timeout);
    std::optional<std::string> ids;
    if (sqlite3_step(partitions) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(partitions, 0);
      ids = text != nullptr ? reinterpret_cast<const char*>(text) : "";
    }
    sqlite3_reset(partitions);
    deadline_ns = kNever;
    return ids;
  }

  // Opens the query connection and prepares every rule on it. At create()
  // a rule that does not prepare is an error; later it only fails its own
  // evaluations.
  std::expected<void, std::string> open_queries(bool strict) {
    auto opened = options.open_queries ? options.open_queries(path) : open_plain(path);
    if (!opened) return std::unexpected(std::move(opened.error()));
    sqlite3* db = opened->get();
    sqlite3_progress_handler(db, kProgressSteps, &Impl::on_progress, this);
    sqlite3_busy_handler(db, &Impl::on_busy, this);
    // Preparing reads the schema: bounded as a lock wait.
    set_deadline(options.busy_timeout);
    const struct NoDeadline {
      Impl& impl;
      ~NoDeadline() { impl.deadline_ns = kNever; }
    } no_deadline{*this};
    std::vector<RuleState> prepared(rules.size());
    const auto discard = [&] {
      for (RuleState& p : prepared) sqlite3_finalize(p.query);
    };
    for (std::size_t i = 0; i < rules.size(); ++i) {
      if (stopping.load(std::memory_order_relaxed)) {
        discard();
        return std::unexpected("stopping");
      }
      auto query = prepare_query(db, rules[i].rule, prepared[i].since_index, prepared[i].now_index);
      if (query) {
        prepared[i].query = *query;
      } else if (strict) {
        discard();
        const Rule& rule = rules[i].rule;
        return std::unexpected((rule.origin.empty() ? quoted(rule) : rule.origin + ": " + quoted(rule)) + ": " +
                               query.error());
      } else {
        prepared[i].prepare_error = std::move(query.error());
      }
    }
    for (std::size_t i = 0; i < rules.size(); ++i) {
      sqlite3_finalize(rules[i].query);
      rules[i].query = prepared[i].query;
      rules[i].prepare_error = std::move(prepared[i].prepare_error);
      rules[i].since_index = prepared[i].since_index;
      rules[i].now_index = prepared[i].now_index;
    }
    QueryConnection old;
    {
      const std::lock_guard lock(connection_mutex);
      old = std::exchange(queries, std::move(*opened));
    }
    return {};  // `old` closes here, its statements already finalized
  }

  // Reopens the query connection when the partitions changed, so the rules
  // see new ones. Read before the reopen: a partition added meanwhile is
  // still new at the next look.
  void refresh_partitions() {
    std::optional<std::string> now = read_partitions();
    if (!now || (now == partitions_seen && !reopen_failing)) return;
    auto reopened = open_queries(false);
    if (!reopened) {
      if (stopping.load(std::memory_order_relaxed)) return;
      if (!reopen_failing) {
        say("alert rules: cannot reopen " + path + " to see new partitions: " + reopened.error() +
            "; rules read the partitions seen before");
      }
      reopen_failing = true;
      return;
    }
    if (reopen_failing) say("alert rules: reopened " + path);
    reopen_failing = false;
    partitions_seen = std::move(now);
  }

  QueryResult run_query(RuleState& r, std::int64_t now_ns) {
    QueryResult result;
    if (r.query == nullptr) {
      result.error = r.prepare_error;
      return result;
    }
    sqlite3_reset(r.query);
    if (r.since_index != 0) sqlite3_bind_int64(r.query, r.since_index, r.since_ns);
    if (r.now_index != 0) sqlite3_bind_int64(r.query, r.now_index, now_ns);
    set_deadline(r.rule.timeout);
    const int rc = sqlite3_step(r.query);
    deadline_ns = kNever;
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
      if (stopping.load(std::memory_order_relaxed)) {
        result.stopped = true;
      } else if (timed_out) {
        result.timed_out = true;
        result.error = "ran past its " + format_duration(r.rule.timeout) + " timeout and was interrupted";
      } else {
        result.error = sqlite3_errmsg(sqlite3_db_handle(r.query));
      }
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
    // The drain may block or ignore signals it handles itself (this thread
    // blocks them all); the command starts as from a shell.
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
      ++r.spawn_failures;
      const std::chrono::milliseconds wait = spawn_backoff(r);
      r.next_due_ns = saturating_add(now_ns, to_ns(wait));
      if (r.spawn_failures == 1) {
        say("alert " + quoted(r.rule) + ": cannot run " + r.rule.command.front() + ": " + reason +
            "; next try in " + format_duration(wait) + ", the wait doubling up to " +
            format_duration(std::max(kMaxSpawnBackoff, r.rule.interval)));
      }
      return "spawn failed: " + reason;
    }
    if (r.spawn_failures > 0) {
      say("alert " + quoted(r.rule) + ": command " + r.rule.command.front() + " started again after " +
          std::to_string(r.spawn_failures) + " failed attempts");
    }
    r.spawn_failures = 0;
    r.running = pid;
    return "spawned";
  }

  // interval * 2^failures, at most kMaxSpawnBackoff (or the interval, when
  // that is longer).
  static std::chrono::milliseconds spawn_backoff(const RuleState& r) {
    const std::chrono::milliseconds cap = std::max(kMaxSpawnBackoff, r.rule.interval);
    std::chrono::milliseconds wait = r.rule.interval;
    for (int i = 0; i < r.spawn_failures && wait < cap; ++i) wait = std::min(cap, wait * 2);
    return wait;
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

  static bool step_done(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  }

  void record_failed() {
    const std::string reason = sqlite3_errmsg(records);
    if (sqlite3_get_autocommit(records) == 0) step_done(rollback);
    if (stopping.load(std::memory_order_relaxed)) return;  // the destructor counts what is left
    if (!record_failing) {
      say("cannot record alerts: " + reason + "; keeping them (at most " + std::to_string(kMaxPendingFirings) +
          ") for the next try");
    }
    record_failing = true;
  }

  // Writes the pending firings in one short transaction; kept on failure.
  void record() {
    if (pending.size() > kMaxPendingFirings) {
      const std::size_t excess = pending.size() - kMaxPendingFirings;
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(excess));
      dropped += excess;
    }
    set_deadline(options.busy_timeout);
    recording = true;
    const auto done = [&] {
      deadline_ns = kNever;
      recording = false;
    };
    if (!step_done(begin)) {
      record_failed();
      return done();
    }
    for (const Firing& f : pending) {
      const Rule& rule = rules[f.rule].rule;
      sqlite3_bind_int64(insert, 1, f.fired_ns);
      sqlite3_bind_text(insert, 2, rule.name.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_double(insert, 3, f.value);
      sqlite3_bind_double(insert, 4, rule.threshold);
      sqlite3_bind_text(insert, 5, compare_key(rule.compare).data(), -1, SQLITE_STATIC);
      sqlite3_bind_text(insert, 6, action_name(rule.action).data(), -1, SQLITE_STATIC);
      sqlite3_bind_text(insert, 7, f.outcome.c_str(), -1, SQLITE_TRANSIENT);
      if (!step_done(insert)) {
        record_failed();
        return done();
      }
    }
    if (!step_done(commit)) {
      record_failed();
      return done();
    }
    done();
    if (record_failing) {
      say("alerts recorded again (" + std::to_string(pending.size()) + " kept" +
          (dropped > 0 ? ", " + std::to_string(dropped) + " older ones dropped" : std::string()) + ")");
    }
    record_failing = false;
    dropped = 0;
    pending.clear();
  }

  int tick(std::int64_t now_ns) {
    reap();
    const bool any_due = std::any_of(rules.begin(), rules.end(), [&](const RuleState& r) {
      return now_ns >= r.next_due_ns;
    });
    if (any_due) refresh_partitions();
    int fired = 0;
    for (std::size_t i = 0; i < rules.size() && any_due; ++i) {
      if (stopping.load(std::memory_order_relaxed)) break;
      RuleState& r = rules[i];
      if (now_ns < r.next_due_ns) continue;
      const std::int64_t interval_ns = to_ns(r.rule.interval);
      r.next_due_ns = saturating_add(now_ns, interval_ns);
      const std::int64_t started_ns = steady_ns();
      const QueryResult result = run_query(r, now_ns);
      if (result.stopped) {
        r.next_due_ns = now_ns;  // not evaluated: due again at the next start
        break;
      }
      if (!result.error.empty()) {
        // Retried one interval after it gave up, not at once.
        if (result.timed_out) r.next_due_ns = saturating_add(r.next_due_ns, steady_ns() - started_ns);
        if (!r.failing) {
          say("alert " + quoted(r.rule) + " (" + r.rule.origin + "): query failed: " + result.error +
              "; retrying every " + format_duration(r.rule.interval));
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
      pending.push_back({i, now_ns, value, std::move(outcome)});
      ++fired;
    }
    if (!pending.empty()) record();
    publish();
    return fired;
  }

  void publish() {
    std::int64_t due = kNever;
    std::size_t running = 0;
    for (const RuleState& r : rules) {
      due = std::min(due, r.next_due_ns);
      running += r.running != 0 ? 1 : 0;
    }
    next_due.store(due, std::memory_order_relaxed);
    running_count.store(running, std::memory_order_relaxed);
  }

  // The evaluator's thread: ticks by the wall clock until stop().
  void run() {
    // The drain's signals (SIGTERM, SIGINT, ...) are for its own threads.
    sigset_t blocked;
    sigemptyset(&blocked);
    for (const int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM}) {
      sigaddset(&blocked, sig);
    }
    pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
    while (!stopping.load(std::memory_order_relaxed)) {  // pairs with stop()'s store
      try {
        tick(wall_ns());
      } catch (...) {
        // Out of memory, or a log sink that threw: skip this tick, never the drain.
      }
      const std::int64_t due = next_due.load(std::memory_order_relaxed);
      const std::int64_t now = wall_ns();
      std::int64_t sleep_ns = due <= now ? 0 : (due == kNever ? kMaxSleepNs : due - now);
      sleep_ns = std::min(sleep_ns, running_count.load(std::memory_order_relaxed) > 0 ? kReapSleepNs : kMaxSleepNs);
      std::unique_lock lock(wake_mutex);
      wake.wait_for(lock, std::chrono::nanoseconds(sleep_ns),
                    [&] { return stopping.load(std::memory_order_relaxed); });
    }
  }
};

std::expected<Evaluator, std::string> Evaluator::create(const std::string& path, std::vector<Rule> rules, LogSink log,
                                                        EvaluatorOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->log = std::move(log);
  impl->options = std::move(options);
  std::set<std::string, std::less<>> names;
  for (Rule& rule : rules) {
    if (!names.insert(rule.name).second) return std::unexpected("duplicate alert rule name \"" + rule.name + "\"");
    const std::string where = rule.origin.empty() ? quoted(rule) : rule.origin + ": " + quoted(rule);
    if (rule.interval < kMinimumInterval) return std::unexpected(where + ": interval is below the 100ms minimum");
    if (rule.timeout <= std::chrono::milliseconds::zero()) return std::unexpected(where + ": timeout must be positive");
    if (rule.action == Rule::Action::kExec && (rule.command.empty() || rule.command.front().empty())) {
      return std::unexpected(where + ": action \"exec\" needs a command");
    }
    RuleState state;
    state.rule = std::move(rule);
    impl->rules.push_back(std::move(state));
  }

  // Records first: the partitions it reads now are those the query
  // connection, opened after, sees at least.
  sqlite3* records = nullptr;
  const int opened = sqlite3_open_v2(path.c_str(), &records, SQLITE_OPEN_READWRITE, nullptr);
  impl->records = records;
  if (opened != SQLITE_OK) return std::unexpected("cannot open " + path + ": " + sqlite3_errmsg(records));
  sqlite3_busy_handler(records, &Impl::on_busy, impl.get());
  impl->set_deadline(impl->options.busy_timeout);  // for the prepares below
  // Checkpoints are the store's (its checkpointer); this connection's
  // commits must stay short.
  sqlite3_db_config(records, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_exec(records, "PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
  const auto prepare = [&](const char* sql, sqlite3_stmt** out) {
    return sqlite3_prepare_v3(records, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr) == SQLITE_OK;
  };
  if (!prepare("INSERT INTO alerts (fired_ns, rule, value, threshold, comparison, action, outcome) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               &impl->insert)) {
    return std::unexpected("cannot record alerts (the store creates the alerts table): " +
                           std::string(sqlite3_errmsg(records)));
  }
  if (!prepare("BEGIN IMMEDIATE", &impl->begin) || !prepare("COMMIT", &impl->commit) ||
      !prepare("ROLLBACK", &impl->rollback)) {
    return std::unexpected("cannot prepare the alerts transaction: " + std::string(sqlite3_errmsg(records)));
  }
  // A database without partitions (tests) has no partition to refresh.
  if (!prepare("SELECT group_concat(partition_id) FROM (SELECT partition_id FROM partitions ORDER BY partition_id)",
               &impl->partitions)) {
    impl->partitions = nullptr;
  }
  impl->partitions_seen = impl->read_partitions();  // ends the deadline

  if (auto ok = impl->open_queries(true); !ok) return std::unexpected(std::move(ok.error()));
  impl->publish();
  return Evaluator(std::move(impl));
}

Evaluator::Evaluator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Evaluator::Evaluator(Evaluator&&) noexcept = default;
Evaluator& Evaluator::operator=(Evaluator&& other) noexcept {
  if (this != &other) {
    stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}
Evaluator::~Evaluator() { stop(); }

void Evaluator::start() {
  if (!impl_ || impl_->started.load(std::memory_order_relaxed)) return;
  impl_->stopping.store(false, std::memory_order_relaxed);
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
  impl_->started.store(true, std::memory_order_relaxed);
}

void Evaluator::stop() noexcept {
  if (!impl_ || !impl_->started.load(std::memory_order_relaxed)) return;
  Impl& d = *impl_;
  d.stop_deadline_ns.store(saturating_add(steady_ns(), kStopRecordNs), std::memory_order_relaxed);
  // Release: publishes stop_deadline_ns to on_busy's acquire load; the loop
  // and the progress handler only need to see the flag.
  d.stopping.store(true, std::memory_order_release);
  {
    const std::lock_guard lock(d.connection_mutex);
    if (d.queries) sqlite3_interrupt(d.queries.get());
  }
  {
    // Under the mutex: the thread either sees `stopping` before it waits,
    // or is waiting and gets the notification.
    const std::lock_guard lock(d.wake_mutex);
  }
  d.wake.notify_all();
  d.thread.join();
  d.stopping.store(false, std::memory_order_relaxed);
  d.started.store(false, std::memory_order_relaxed);
}

bool Evaluator::started() const noexcept { return impl_ && impl_->started.load(std::memory_order_relaxed); }

int Evaluator::tick(std::int64_t now_ns) noexcept {
  if (!impl_ || impl_->started.load(std::memory_order_relaxed)) return 0;
  try {
    return impl_->tick(now_ns);
  } catch (...) {
    // Out of memory, or a log sink that threw: skip this tick, never the drain.
    return 0;
  }
}

std::int64_t Evaluator::next_due_ns() const noexcept {
  return impl_ ? impl_->next_due.load(std::memory_order_relaxed) : kNever;
}

std::size_t Evaluator::running_commands() const noexcept {
  return impl_ ? impl_->running_count.load(std::memory_order_relaxed) : 0;
}

}  // namespace shmtrace::drain::alerts
