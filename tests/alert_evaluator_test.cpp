// The alert evaluator (drain/alerts/alert_evaluator.hpp) on a temporary
// SQLite database holding the store's processes and errors tables and the
// alerts table: when rules run, what they bind, what fires, what is
// recorded, the exec action's command and environment and its backoff, and
// the evaluator's own thread and connections: a query's time limit, stop()
// interrupting a query, waiting for another connection's write lock.
#include "alerts/alert_evaluator.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/schema.hpp"

namespace {

namespace fs = std::filesystem;
using shmtrace::drain::alerts::default_rules;
using shmtrace::drain::alerts::Evaluator;
using shmtrace::drain::alerts::EvaluatorOptions;
using shmtrace::drain::alerts::QueryConnection;
using shmtrace::drain::alerts::Rule;
using namespace std::chrono_literals;

constexpr std::int64_t kSecond = 1'000'000'000;
// Counts forever: only a time limit or an interrupt ends it.
constexpr const char* kRunaway =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";


Rule make_rule(std::string name, std::string sql, Rule::Compare compare, double threshold,
               std::chrono::milliseconds interval = 1s) {
  Rule rule;
  rule.name = std::move(name);
  rule.sql = std::move(sql);
  rule.compare = compare;
  rule.threshold = threshold;
  rule.interval = interval;
  rule.origin = "test.toml:1";
  return rule;
}

class AlertEvaluatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/alert_evaluator_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db_), SQLITE_OK);
    // As the store: the evaluator's connections read beside a writer.
    exec("PRAGMA journal_mode=WAL");
    // The store's own schema (processes, errors, alerts, ...), not a copy.
    for (const std::string& migration : shmtrace::drain::schema::main_migrations()) exec(migration);
  }

  void TearDown() override {
    sqlite3_close(db_);
    fs::remove_all(dir_);
  }

  void exec(const std::string& sql) {
    char* message = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message), SQLITE_OK) << message;
  }

  void add_error(std::int64_t ts_ns, const std::string& kind) {
    // Columns named: later schema versions add columns of their own.
    exec("INSERT INTO errors (process_key, sequence, ts_ns, kind, tid, span_id, trace_id, grp, span_name, type, "
         "message, preview, signal, fault_address, frames) VALUES (1, " + std::to_string(next_sequence_++) + ", " + std::to_string(ts_ns) + ", '" +
         kind + "', 7, 0, '', 'g', 's', 'T', 'm', '', 0, 0, '')");
  }

  void add_process(const std::string& state, std::int64_t end_ns) {
    const std::string n = std::to_string(next_sequence_++);
    exec(
        "INSERT INTO processes (segment, pid, ppid, exe, cmdline, start_ns, end_ns, state, trace_id, "
        "parent_span_id) VALUES ('seg" +
        n + "', " + n + ", 1, '/bin/x', 'x', 0, " + std::to_string(end_ns) + ", '" + state + "', '', 0)");
  }

  // Every alerts row, in insertion order, as "fired_ns|rule|value|threshold|comparison|action|outcome".
  std::vector<std::string> alerts() {
    std::vector<std::string> rows;
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_,
                                 "SELECT fired_ns || '|' || rule || '|' || value || '|' || threshold || '|' || "
                                 "comparison || '|' || action || '|' || outcome FROM alerts ORDER BY rowid",
                                 -1, &s, nullptr),
              SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
    return rows;
  }

  std::string path() const { return (dir_ / "db.sqlite").string(); }

  Evaluator make(std::vector<Rule> rules, EvaluatorOptions options = {}) {
    auto evaluator = Evaluator::create(
        path(), std::move(rules),
        [this](const std::string& line) {
          const std::lock_guard lock(log_mutex_);
          log_.push_back(line);
        },
        std::move(options));
    if (!evaluator) ADD_FAILURE() << evaluator.error();
    return std::move(*evaluator);
  }

  std::string create_error(std::vector<Rule> rules) {
    auto evaluator = Evaluator::create(path(), std::move(rules), nullptr);
    return evaluator ? "(accepted)" : evaluator.error();
  }

  // The log so far (the evaluator's thread may be writing it).
  std::vector<std::string> log() {
    const std::lock_guard lock(log_mutex_);
    return log_;
  }

  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    std::string t;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      if (const unsigned char* v = sqlite3_column_text(s, 0)) t = reinterpret_cast<const char*>(v);
    }
    sqlite3_finalize(s);
    return t;
  }

  std::int64_t count(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    std::int64_t n = -1;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return n;
  }

  // Ticks at a time when no rule is due until the evaluator has reaped its
  // commands, for at most 10 s.
  static bool wait_for_commands(Evaluator& evaluator, std::int64_t idle_now_ns) {
    for (int i = 0; i < 1000 && evaluator.running_commands() != 0; ++i) {
      EXPECT_EQ(evaluator.tick(idle_now_ns), 0);
      std::this_thread::sleep_for(10ms);
    }
    return evaluator.running_commands() == 0;
  }

  // The file's content once it exists, waiting at most 10 s.
  static std::string wait_for_file(const fs::path& path) {
    for (int i = 0; i < 1000 && !fs::exists(path); ++i) std::this_thread::sleep_for(10ms);
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  fs::path dir_;
  sqlite3* db_ = nullptr;
  std::mutex log_mutex_;
  std::vector<std::string> log_;
  int next_sequence_ = 1;
};

TEST_F(AlertEvaluatorTest, FiresOncePerDueIntervalWhileTheThresholdPasses) {
  Evaluator evaluator = make({make_rule("errors", "SELECT count(*) FROM errors", Rule::Compare::kAbove, 1, 2s)});
  add_error(1, "explicit");
  EXPECT_EQ(evaluator.tick(10 * kSecond), 0);  // 1 is not above 1
  add_error(2, "explicit");
  EXPECT_EQ(evaluator.tick(10 * kSecond + 1), 0);  // evaluated at 10 s: not due yet
  EXPECT_EQ(evaluator.tick(12 * kSecond - 1), 0);  // 1 ns before its interval elapsed
  EXPECT_EQ(evaluator.next_due_ns(), 12 * kSecond);
  EXPECT_EQ(evaluator.tick(12 * kSecond), 1);            // 2 > 1
  EXPECT_EQ(evaluator.tick(12 * kSecond + kSecond), 0);  // not due
  EXPECT_EQ(evaluator.tick(14 * kSecond), 1);            // still above: fires again, once
  EXPECT_EQ(evaluator.tick(14 * kSecond), 0);
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "12000000000|errors|2.0|1.0|above|log|logged",
                          "14000000000|errors|2.0|1.0|above|log|logged",
                      }));
  EXPECT_EQ(log_, (std::vector<std::string>{
                      "alert \"errors\" fired: value 2 > 1",
                      "alert \"errors\" fired: value 2 > 1",
                  }));
}

TEST_F(AlertEvaluatorTest, ComparesAtTheBoundaryAndRecordsTheComparison) {
  add_error(1, "explicit");
  add_error(2, "explicit");
  const std::string count = "SELECT count(*) FROM errors";
  Evaluator evaluator = make({
      make_rule("above", count, Rule::Compare::kAbove, 2),
      make_rule("at_least", count, Rule::Compare::kAtLeast, 2),
      make_rule("below", count, Rule::Compare::kBelow, 2),
      make_rule("at_most", count, Rule::Compare::kAtMost, 2),
      make_rule("equal", count, Rule::Compare::kEqual, 2),
      make_rule("equal_not", count, Rule::Compare::kEqual, 2.5),
  });
  EXPECT_EQ(evaluator.tick(kSecond), 3);
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "1000000000|at_least|2.0|2.0|at_least|log|logged",
                          "1000000000|at_most|2.0|2.0|at_most|log|logged",
                          "1000000000|equal|2.0|2.0|equal|log|logged",
                      }));
  EXPECT_EQ(log_, (std::vector<std::string>{
                      "alert \"at_least\" fired: value 2 >= 2",
                      "alert \"at_most\" fired: value 2 <= 2",
                      "alert \"equal\" fired: value 2 == 2",
                  }));
}

TEST_F(AlertEvaluatorTest, BindsSinceAndNow) {
  Evaluator evaluator = make({
      make_rule("since", "SELECT :since", Rule::Compare::kAtLeast, 0, 100ms),
      make_rule("now", "SELECT :now", Rule::Compare::kAtLeast, 0, 100ms),
      make_rule("both", "SELECT :now - :since", Rule::Compare::kAtLeast, 0, 100ms),
  });
  EXPECT_EQ(evaluator.tick(5 * kSecond), 3);
  EXPECT_EQ(evaluator.tick(5 * kSecond + 250'000'000), 3);
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "5000000000|since|0.0|0.0|at_least|log|logged",
                          "5000000000|now|5000000000.0|0.0|at_least|log|logged",
                          "5000000000|both|5000000000.0|0.0|at_least|log|logged",
                          "5250000000|since|5000000000.0|0.0|at_least|log|logged",
                          "5250000000|now|5250000000.0|0.0|at_least|log|logged",
                          "5250000000|both|250000000.0|0.0|at_least|log|logged",
                      }));
}

TEST_F(AlertEvaluatorTest, CountsOnlyWhatIsNewSinceTheLastEvaluation) {
  Evaluator evaluator =
      make({make_rule("new-errors", "SELECT count(*) FROM errors WHERE ts_ns > :since AND ts_ns <= :now",
                      Rule::Compare::kAtLeast, 1, 1s)});
  add_error(1 * kSecond, "explicit");
  add_error(3 * kSecond, "explicit");  // after the first evaluation's :now
  EXPECT_EQ(evaluator.tick(2 * kSecond), 1);
  EXPECT_EQ(evaluator.tick(3 * kSecond), 1);  // the second error, alone
  EXPECT_EQ(evaluator.tick(4 * kSecond), 0);  // nothing new
  add_error(4 * kSecond + 1, "explicit");
  add_error(4 * kSecond + 2, "explicit");
  EXPECT_EQ(evaluator.tick(5 * kSecond), 1);
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "2000000000|new-errors|1.0|1.0|at_least|log|logged",
                          "3000000000|new-errors|1.0|1.0|at_least|log|logged",
                          "5000000000|new-errors|2.0|1.0|at_least|log|logged",
                      }));
}

TEST_F(AlertEvaluatorTest, DefaultRuleFiresOnceForEachNewCrashOrUnhandledError) {
  Evaluator evaluator = make(default_rules());
  add_error(1 * kSecond, "explicit");    // handled: not for the default rule
  add_error(2 * kSecond, "span_error");  // neither
  add_process("exited", 2 * kSecond);
  EXPECT_EQ(evaluator.tick(10 * kSecond), 0);

  add_error(15 * kSecond, "crash");
  EXPECT_EQ(evaluator.tick(15 * kSecond), 0);  // not due: evaluated at 10 s, every 10 s
  EXPECT_EQ(evaluator.tick(20 * kSecond), 1);
  EXPECT_EQ(evaluator.tick(30 * kSecond), 0);  // the same crash does not fire again

  add_error(35 * kSecond, "exception");
  EXPECT_EQ(evaluator.tick(40 * kSecond), 1);

  add_process("crashed", 45 * kSecond);
  EXPECT_EQ(evaluator.tick(50 * kSecond), 1);
  EXPECT_EQ(evaluator.tick(60 * kSecond), 0);

  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "20000000000|crash-or-unhandled-error|1.0|1.0|at_least|log|logged",
                          "40000000000|crash-or-unhandled-error|1.0|1.0|at_least|log|logged",
                          "50000000000|crash-or-unhandled-error|1.0|1.0|at_least|log|logged",
                      }));
  EXPECT_EQ(log_, (std::vector<std::string>{
                      "alert \"crash-or-unhandled-error\" fired: value 1 >= 1",
                      "alert \"crash-or-unhandled-error\" fired: value 1 >= 1",
                      "alert \"crash-or-unhandled-error\" fired: value 1 >= 1",
                  }));
}

TEST_F(AlertEvaluatorTest, DefaultRuleCountsTheCrashErrorAndTheCrashedProcessOfOneCrash) {
  Evaluator evaluator = make(default_rules());
  add_error(5 * kSecond, "crash");
  add_process("crashed", 5 * kSecond);
  add_process("running", 6 * kSecond);
  add_error(12 * kSecond, "exception");  // stamped after this evaluation's :now: the next one's
  EXPECT_EQ(evaluator.tick(10 * kSecond), 1);
  EXPECT_EQ(evaluator.tick(20 * kSecond), 1);
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "10000000000|crash-or-unhandled-error|2.0|1.0|at_least|log|logged",
                          "20000000000|crash-or-unhandled-error|1.0|1.0|at_least|log|logged",
                      }));
}

TEST_F(AlertEvaluatorTest, NoRowOrNullIsNothingToReport) {
  Evaluator evaluator = make({
      make_rule("none", "SELECT ts_ns FROM errors", Rule::Compare::kAtLeast, 0),
      make_rule("null", "SELECT max(ts_ns) FROM errors", Rule::Compare::kAtLeast, 0),
  });
  EXPECT_EQ(evaluator.tick(kSecond), 0);
  EXPECT_TRUE(alerts().empty());
  EXPECT_TRUE(log_.empty());
}

TEST_F(AlertEvaluatorTest, AFailingQueryIsLoggedOncePerStreak) {
  exec("CREATE TABLE extra (x INTEGER)");
  Evaluator evaluator = make({make_rule("extra", "SELECT count(*) FROM extra", Rule::Compare::kAtLeast, 0, 100ms),
                              make_rule("text", "SELECT 'abc'", Rule::Compare::kAtLeast, 0, 100ms)});
  exec("DROP TABLE extra");
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(evaluator.tick(i * kSecond), 0);
  exec("CREATE TABLE extra (x INTEGER)");
  EXPECT_EQ(evaluator.tick(4 * kSecond), 1);
  EXPECT_EQ(log_, (std::vector<std::string>{
                      "alert rule \"extra\" (test.toml:1): query failed: no such table: extra; retrying every 100ms",
                      "alert rule \"text\" (test.toml:1): query failed: returned text, not a number; retrying every "
                      "100ms",
                      "alert rule \"extra\": query works again",
                      "alert \"extra\" fired: value 0 >= 0",
                  }));
  EXPECT_EQ(alerts(), (std::vector<std::string>{"4000000000|extra|0.0|0.0|at_least|log|logged"}));
}

TEST_F(AlertEvaluatorTest, AFailedEvaluationDoesNotMoveSince) {
  exec("CREATE TABLE extra (x INTEGER)");
  Evaluator evaluator =
      make({make_rule("since", "SELECT :since FROM extra LIMIT 1", Rule::Compare::kAtLeast, 0, 100ms)});
  exec("INSERT INTO extra VALUES (1)");
  EXPECT_EQ(evaluator.tick(1 * kSecond), 1);  // :since 0
  exec("DROP TABLE extra");
  EXPECT_EQ(evaluator.tick(2 * kSecond), 0);  // fails
  exec("CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1)");
  EXPECT_EQ(evaluator.tick(3 * kSecond), 1);  // :since still 1 s
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "1000000000|since|0.0|0.0|at_least|log|logged",
                          "3000000000|since|1000000000.0|0.0|at_least|log|logged",
                      }));
}

TEST_F(AlertEvaluatorTest, RefusesQueriesThatCannotServeAsARule) {
  const auto rule = [](std::string sql) { return make_rule("r", std::move(sql), Rule::Compare::kAbove, 0); };
  EXPECT_EQ(create_error({rule("SELECT count(*) FROM erors")}),
            "test.toml:1: rule \"r\": sql does not prepare: no such table: erors");
  EXPECT_EQ(create_error({rule("SELEC 1")}),
            "test.toml:1: rule \"r\": sql does not prepare: near \"SELEC\": syntax error");
  EXPECT_EQ(create_error({rule("DELETE FROM errors")}),
            "test.toml:1: rule \"r\": sql returns no column; it must return one number");
  EXPECT_EQ(create_error({rule("SELECT 1, 2")}),
            "test.toml:1: rule \"r\": sql returns 2 columns; it must return one number");
  EXPECT_EQ(create_error({rule("DELETE FROM errors RETURNING ts_ns")}),
            "test.toml:1: rule \"r\": sql must only read the database");
  EXPECT_EQ(create_error({rule("SELECT 1; SELECT 2")}), "test.toml:1: rule \"r\": sql holds more than one statement");
  EXPECT_EQ(create_error({rule("-- nothing")}), "test.toml:1: rule \"r\": sql holds no statement");
  EXPECT_EQ(create_error({rule("SELECT count(*) FROM errors WHERE ts_ns > :from")}),
            "test.toml:1: rule \"r\": sql uses parameter :from; only :since and :now are bound");
  EXPECT_EQ(create_error({rule("SELECT ?")}),
            "test.toml:1: rule \"r\": sql uses parameter ?; only :since and :now are bound");
  EXPECT_EQ(create_error({rule("SELECT 1; -- a comment\n")}), "(accepted)");
  EXPECT_EQ(create_error({rule("SELECT 1"), rule("SELECT 2")}), "duplicate alert rule name \"r\"");
}

TEST_F(AlertEvaluatorTest, RefusesADatabaseWithoutTheAlertsTable) {
  exec("DROP TABLE alerts");
  EXPECT_EQ(create_error(default_rules()),
            "cannot record alerts (the store creates the alerts table): no such table: alerts");
}

TEST_F(AlertEvaluatorTest, ExecRunsTheCommandWithTheAlertInItsEnvironment) {
  setenv("SHMTRACE_ALERT_RULE", "inherited", 1);  // the alert's own value must win
  const fs::path out = dir_ / "out";
  Rule rule = make_rule("page me", "SELECT count(*) FROM errors", Rule::Compare::kAbove, 1.5);
  rule.action = Rule::Action::kExec;
  rule.command = {"sh", "-c",
                  "echo \"$SHMTRACE_ALERT_RULE|$SHMTRACE_ALERT_VALUE|$SHMTRACE_ALERT_THRESHOLD|"
                  "$SHMTRACE_ALERT_FIRED_NS|$0\" > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"",
                  "alert-script", out.string()};
  add_error(1, "crash");
  add_error(2, "crash");
  Evaluator evaluator = make({rule});
  EXPECT_EQ(evaluator.tick(7 * kSecond + 5), 1);
  EXPECT_EQ(wait_for_file(out), "page me|2|1.5|7000000005|alert-script\n");
  EXPECT_TRUE(wait_for_commands(evaluator, 7 * kSecond + 6));
  EXPECT_TRUE(log_.empty()) << log_.front();  // exit status 0: nothing to say
  EXPECT_EQ(alerts(), (std::vector<std::string>{"7000000005|page me|2.0|1.5|above|exec|spawned"}));
  unsetenv("SHMTRACE_ALERT_RULE");
}

// Without a shell between, the program sees the environment exactly as
// built: glibc's getenv returns the first SHMTRACE_ALERT_RULE, which must be
// the alert's, not the one the drain inherited.
TEST_F(AlertEvaluatorTest, ExecReplacesInheritedAlertVariables) {
  setenv("SHMTRACE_ALERT_RULE", "inherited", 1);
  const fs::path out = dir_ / "stdout";
  Rule rule = make_rule("direct", "SELECT 1", Rule::Compare::kAtLeast, 1);
  rule.action = Rule::Action::kExec;
  rule.command = {"printenv", "SHMTRACE_ALERT_RULE", "SHMTRACE_ALERT_THRESHOLD"};
  Evaluator evaluator = make({rule});
  // The command inherits stdout: point it at a file for the spawn.
  std::fflush(stdout);
  const int saved = dup(STDOUT_FILENO);
  const int file = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(file, 0);
  dup2(file, STDOUT_FILENO);
  const int fired = evaluator.tick(kSecond);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  close(file);
  unsetenv("SHMTRACE_ALERT_RULE");
  EXPECT_EQ(fired, 1);
  ASSERT_TRUE(wait_for_commands(evaluator, kSecond));
  EXPECT_EQ(wait_for_file(out), "direct\n1\n");
  EXPECT_TRUE(log_.empty()) << log_.front();
}

TEST_F(AlertEvaluatorTest, ExecOfAMissingProgramIsRecordedAndLogged) {
  Rule rule = make_rule("missing", "SELECT 1", Rule::Compare::kAtLeast, 1);
  rule.action = Rule::Action::kExec;
  rule.command = {"/nonexistent/alert-command", "x"};
  Evaluator evaluator = make({rule});
  EXPECT_EQ(evaluator.tick(kSecond), 1);
  EXPECT_EQ(evaluator.running_commands(), 0u);
  EXPECT_EQ(log_, (std::vector<std::string>{
                      "alert rule \"missing\": cannot run /nonexistent/alert-command: No such file or directory; "
                      "next try in 2s, the wait doubling up to 10m"}));
  EXPECT_EQ(evaluator.next_due_ns(), 3 * kSecond) << "backed off: twice the interval";
  EXPECT_EQ(
      alerts(),
      (std::vector<std::string>{"1000000000|missing|1.0|1.0|at_least|exec|spawn failed: No such file or directory"}));
}

TEST_F(AlertEvaluatorTest, ExecSkipsWhileTheRulesPreviousCommandRuns) {
  const fs::path go = dir_ / "go";
  Rule rule = make_rule("slow", "SELECT 1", Rule::Compare::kAtLeast, 1, 100ms);
  rule.action = Rule::Action::kExec;
  rule.command = {"/bin/sh", "-c", "while [ ! -e \"$1\" ]; do sleep 0.01; done; exit 3", "slow", go.string()};
  Evaluator evaluator = make({rule});
  EXPECT_EQ(evaluator.tick(1 * kSecond), 1);
  EXPECT_EQ(evaluator.running_commands(), 1u);
  EXPECT_EQ(evaluator.tick(2 * kSecond), 1);  // still waiting for `go`
  std::ofstream(go).put('\n');
  EXPECT_TRUE(wait_for_commands(evaluator, 2 * kSecond));
  EXPECT_EQ(evaluator.tick(3 * kSecond), 1);
  EXPECT_TRUE(wait_for_commands(evaluator, 3 * kSecond));
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "1000000000|slow|1.0|1.0|at_least|exec|spawned",
                          "2000000000|slow|1.0|1.0|at_least|exec|skipped: previous command still running",
                          "3000000000|slow|1.0|1.0|at_least|exec|spawned",
                      }));
  // Exit status 3, logged when reaped, once per command.
  ASSERT_EQ(log_.size(), 2u);
  for (const std::string& line : log_) {
    EXPECT_TRUE(line.starts_with("alert rule \"slow\": command /bin/sh (pid ")) << line;
    EXPECT_TRUE(line.ends_with(") exited with status 3")) << line;
  }
}

// The drain's writer holds BEGIN IMMEDIATE transactions: the evaluator's
// own connection reads beside it (WAL) and waits for its commit to record.
TEST_F(AlertEvaluatorTest, RecordsOnceAnotherConnectionsWriteTransactionEnds) {
  Evaluator evaluator = make({make_rule("one", "SELECT count(*) FROM errors", Rule::Compare::kAtLeast, 0)});
  exec("BEGIN IMMEDIATE");
  add_error(1, "explicit");  // not committed: the rule does not see it
  std::thread writer([this] {
    std::this_thread::sleep_for(300ms);
    exec("COMMIT");
  });
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(evaluator.tick(kSecond), 1);
  const auto waited = std::chrono::steady_clock::now() - started;
  writer.join();
  EXPECT_GE(waited, 250ms) << "it waited for the lock";
  EXPECT_LT(waited, 4s) << "not for its whole busy timeout";
  EXPECT_EQ(alerts(), (std::vector<std::string>{"1000000000|one|0.0|0.0|at_least|log|logged"}));
}

// Issue 14: a rule whose query never ends held the drain for good. Now the
// query is interrupted at the rule's timeout, logged once per streak naming
// the rule and the limit, and the other rules are evaluated in the same
// tick as before.
TEST_F(AlertEvaluatorTest, ARunawayQueryIsInterruptedAtItsTimeoutAndOtherRulesStillFire) {
  Rule runaway = make_rule("runaway", kRunaway, Rule::Compare::kAbove, 0, 100ms);
  runaway.timeout = 200ms;
  Evaluator evaluator = make({runaway, make_rule("steady", "SELECT 1", Rule::Compare::kAtLeast, 1, 100ms)});
  for (int i = 1; i <= 3; ++i) {
    const auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(evaluator.tick(i * kSecond), 1) << "steady fires at " << i << " s";
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_GE(took, 190ms) << "the runaway query ran until its timeout";
    EXPECT_LT(took, 1500ms) << "and not much longer";
  }
  EXPECT_EQ(log(), (std::vector<std::string>{
                       "alert rule \"runaway\" (test.toml:1): query failed: ran past its 200ms timeout and was "
                       "interrupted; retrying every 100ms",
                       "alert \"steady\" fired: value 1 >= 1",
                       "alert \"steady\" fired: value 1 >= 1",
                       "alert \"steady\" fired: value 1 >= 1",
                   }));
  EXPECT_EQ(alerts(), (std::vector<std::string>{
                          "1000000000|steady|1.0|1.0|at_least|log|logged",
                          "2000000000|steady|1.0|1.0|at_least|log|logged",
                          "3000000000|steady|1.0|1.0|at_least|log|logged",
                      }));
}

// The same on the evaluator's own thread, by the wall clock: the steady rule
// keeps firing every interval (and the runaway one's 200 ms), and stop()
// returns at once although a runaway query is running.
TEST_F(AlertEvaluatorTest, OnItsThreadARunawayRuleNeitherStopsOtherRulesNorDelaysStop) {
  Rule runaway = make_rule("runaway", kRunaway, Rule::Compare::kAbove, 0, 100ms);
  runaway.timeout = 200ms;
  Evaluator evaluator = make({runaway, make_rule("steady", "SELECT 1", Rule::Compare::kAtLeast, 1, 100ms)});
  evaluator.start();
  EXPECT_TRUE(evaluator.started());
  EXPECT_EQ(evaluator.tick(kSecond), 0) << "the thread ticks, not the caller";
  std::this_thread::sleep_for(1500ms);
  const auto stopping = std::chrono::steady_clock::now();
  evaluator.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 150ms) << "stop interrupts the running query";
  EXPECT_FALSE(evaluator.started());
  // Each round: the runaway query's 200 ms, then the steady rule.
  const std::int64_t steady = count("SELECT count(*) FROM alerts WHERE rule = 'steady'");
  EXPECT_GE(steady, 4);
  EXPECT_LE(steady, 16);
  const std::int64_t widest_gap = count(
      "SELECT max(fired_ns - prev) FROM (SELECT fired_ns, lag(fired_ns) OVER (ORDER BY fired_ns) prev FROM alerts "
      "WHERE rule = 'steady')");
  EXPECT_LT(widest_gap, 700'000'000) << "interval + runaway's timeout, not more";
  EXPECT_EQ(count("SELECT count(*) FROM alerts WHERE rule = 'runaway'"), 0);
  const std::vector<std::string> lines = log();
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                          [](const std::string& l) { return l.starts_with("alert rule \"runaway\""); }),
            1)
      << "one line for the whole failure streak";
}

// A query with a long limit is still interrupted by stop() at once.
TEST_F(AlertEvaluatorTest, StopInterruptsAQueryWithinItsTimeLimit) {
  Rule runaway = make_rule("runaway", kRunaway, Rule::Compare::kAbove, 0, 100ms);
  runaway.timeout = 60s;
  Evaluator evaluator = make({runaway});
  evaluator.start();
  std::this_thread::sleep_for(300ms);
  const auto stopping = std::chrono::steady_clock::now();
  evaluator.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 150ms);
  EXPECT_TRUE(log().empty()) << log().front();  // stopped, not failed
  // Started again, the interrupted evaluation is due at once.
  evaluator.start();
  std::this_thread::sleep_for(100ms);
  evaluator.stop();
  EXPECT_TRUE(log().empty()) << log().front();
}

// Issue 14: an exec rule whose command cannot start wrote a row every
// interval. With 100 ms, ticked every 10 ms for 10 s, that was 100 rows;
// backing off (200 ms, 400 ms, ... after each failure) it is log2 of that.
TEST_F(AlertEvaluatorTest, SpawnFailuresBackOffExponentiallyAndResetOnSuccess) {
  const fs::path program = dir_ / "page";
  Rule rule = make_rule("page", "SELECT 1", Rule::Compare::kAtLeast, 1, 100ms);
  rule.action = Rule::Action::kExec;
  rule.command = {program.string()};
  Evaluator evaluator = make({rule});
  std::int64_t now = 0;
  for (; now <= 10 * kSecond; now += 10'000'000) evaluator.tick(now);
  // At 0, 0.2, 0.6, 1.4, 3.0 and 6.2 s.
  EXPECT_EQ(count("SELECT count(*) FROM alerts WHERE outcome LIKE 'spawn failed: %'"), 6);
  EXPECT_EQ(text("SELECT group_concat(fired_ns / 100000000) FROM alerts"), "0,2,6,14,30,62");
  ASSERT_EQ(log().size(), 1u) << "one line for the streak";
  EXPECT_EQ(log().front(), "alert rule \"page\": cannot run " + program.string() +
                               ": No such file or directory; next try in 200ms, the wait doubling up to 10m");

  // The program appears: the next try (at 12.6 s) starts it, and from then
  // on the rule fires every interval again.
  std::ofstream(program) << "#!/bin/sh\nexit 0\n";
  fs::permissions(program, fs::perms::owner_all);
  for (; now <= 12'600'000'000; now += 10'000'000) evaluator.tick(now);
  EXPECT_EQ(count("SELECT count(*) FROM alerts WHERE outcome = 'spawned'"), 1);
  ASSERT_TRUE(wait_for_commands(evaluator, now));
  for (int i = 0; i < 3; ++i) {
    now += 100'000'000;
    EXPECT_EQ(evaluator.tick(now), 1);
    ASSERT_TRUE(wait_for_commands(evaluator, now));
  }
  EXPECT_EQ(count("SELECT count(*) FROM alerts WHERE outcome = 'spawned'"), 4) << "every interval again";
  EXPECT_EQ(log().back(),
            "alert rule \"page\": command " + program.string() + " started again after 6 failed attempts");
  EXPECT_EQ(log().size(), 2u);
}

// New partitions are seen: the query connection is reopened when the
// partitions table changes, not otherwise.
TEST_F(AlertEvaluatorTest, ReopensTheQueryConnectionWhenThePartitionsChange) {
  std::atomic<int> opens{0};
  EvaluatorOptions options;
  options.open_queries = [&opens](const std::string& path) -> std::expected<QueryConnection, std::string> {
    ++opens;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return std::unexpected("cannot open " + path);
    }
    return QueryConnection(db, [](sqlite3* d) { sqlite3_close(d); });
  };
  Evaluator evaluator = make({make_rule("parts", "SELECT count(*) FROM partitions", Rule::Compare::kAtLeast, 0,
                                        100ms)},
                             std::move(options));
  EXPECT_EQ(opens.load(), 1);
  EXPECT_EQ(evaluator.tick(1 * kSecond), 1);
  EXPECT_EQ(evaluator.tick(2 * kSecond), 1);
  EXPECT_EQ(opens.load(), 1) << "nothing changed";
  exec("INSERT INTO partitions (file, start_ns, end_ns) VALUES ('p1.db', 0, 10)");
  EXPECT_EQ(evaluator.tick(3 * kSecond), 1);
  EXPECT_EQ(opens.load(), 2);
  EXPECT_EQ(evaluator.tick(4 * kSecond), 1);
  EXPECT_EQ(opens.load(), 2);
  EXPECT_EQ(alerts().back(), "4000000000|parts|1.0|0.0|at_least|log|logged");
}

TEST_F(AlertEvaluatorTest, AMovedFromEvaluatorDoesNothing) {
  Evaluator first = make({make_rule("one", "SELECT 1", Rule::Compare::kAtLeast, 1)});
  Evaluator second = std::move(first);
  EXPECT_EQ(first.tick(kSecond), 0);  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_EQ(second.tick(kSecond), 1);
}

}  // namespace
