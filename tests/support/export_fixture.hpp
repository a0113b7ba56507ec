// The database the export tests read: real traced processes (nested spans
// with events and counters, sampled roots with errors, every argument type,
// a fork whose child continues its parent's trace, a crash, counters with no
// span) stored by the real drain; and what the database says, read back
// with plain SQL, for the tests to compare each export with.
#ifndef SHMTRACE_TESTS_EXPORT_FIXTURE_HPP
#define SHMTRACE_TESTS_EXPORT_FIXTURE_HPP

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test::exporting {

inline std::string hex16(std::uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

struct StoredSpan {
  std::int64_t process_key = 0;
  std::int64_t pid = 0;
  std::int64_t tid = 0;
  std::string span_id;    // 16 hex digits
  std::string parent_id;  // 16 hex digits, "" for a root
  std::string remote_parent_id;  // a root's parent in another process, "" for none
  std::string trace_id;
  std::string name;
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> duration_ns;
  int status = 0;
};

// The rows of `sql`, each column as text ("" for NULL).
inline std::vector<std::vector<std::string>> rows(const Database& d, const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(d.db);
    return out;
  }
  while (sqlite3_step(s) == SQLITE_ROW) {
    auto& row = out.emplace_back();
    for (int i = 0; i < sqlite3_column_count(s); ++i) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
      row.emplace_back(t != nullptr ? t : "");
    }
  }
  sqlite3_finalize(s);
  return out;
}

// Spans of the database in `where` (a condition on spans s and processes p).
inline std::vector<StoredSpan> stored_spans(const Database& d, const std::string& where = "1") {
  std::vector<StoredSpan> out;
  for (const auto& r : rows(d, "SELECT s.process_key, p.pid, s.tid, s.span_id, s.parent_span_id, s.trace_id, s.name, "
                               "s.start_ns, s.duration_ns, s.status, p.parent_span_id, p.trace_id FROM spans s JOIN "
                               "processes p USING (process_key) WHERE " + where + " ORDER BY s.start_ns")) {
    StoredSpan s;
    s.process_key = std::stoll(r[0]);
    s.pid = std::stoll(r[1]);
    s.tid = std::stoll(r[2]);
    s.span_id = hex16(static_cast<std::uint64_t>(std::stoll(r[3])));
    const auto parent = static_cast<std::uint64_t>(std::stoll(r[4]));
    if (parent != 0) s.parent_id = hex16(parent);
    s.trace_id = r[5];
    s.name = r[6];
    s.start_ns = std::stoll(r[7]);
    if (!r[8].empty()) s.duration_ns = std::stoll(r[8]);
    s.status = std::stoi(r[9]);
    const auto remote = static_cast<std::uint64_t>(std::stoll(r[10]));
    if (parent == 0 && remote != 0 && r[11] == s.trace_id) s.remote_parent_id = hex16(remote);
    out.push_back(std::move(s));
  }
  return out;
}

// Runs the programs and the drain once per test program.
class ExportDatabase : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The programs and the drain in a session of their own: the test runs
    // beside any other.
    const SessionScope session;
    db_ = new TempDb("export");
    const auto expect_run = [](const std::vector<std::string>& argv, const std::vector<EnvChange>& env = {}) {
      const RunResult r = run(argv, env);
      return r;
    };
    ASSERT_EQ(expect_run({program_path("st_producer"), "spans", "5"}).exit_code, 0);
    ASSERT_EQ(expect_run({program_path("st_producer"), "sampling", "3"}).exit_code, 0);
    const RunResult args = expect_run({program_path("st_producer"), "args"});
    ASSERT_EQ(args.exit_code, 0);
    args_pid_ = args.pid;
    const RunResult forked = expect_run({program_path("st_producer"), "forked", "2", "20"});
    ASSERT_EQ(forked.exit_code, 0) << forked.err;
    forked_pid_ = forked.pid;
    ASSERT_EQ(std::sscanf(forked.out.c_str(), "child %d", &child_pid_), 1) << forked.out;
    const RunResult crash =
        expect_run({program_path("st_producer"), "crash", "segv", "10"}, without_sanitizer_signal_handlers());
    ASSERT_EQ(crash.signal, SIGSEGV) << crash.err;
    crash_pid_ = crash.pid;
    ASSERT_EQ(expect_run({program_path("st_producer"), "sequence", "1", "40"}).exit_code, 0);
    // Started under a span of another (untraced here) process.
    const RunResult remote = expect_run({program_path("st_producer"), "spans", "2"},
                                        {{"TRACEPARENT", "00-" + std::string(kRemoteTrace) + "-" + kRemoteParent + "-01"}});
    ASSERT_EQ(remote.exit_code, 0);
    remote_pid_ = remote.pid;
    const RunResult drained = run(session.drain({"--db", db_->path, "--once"}));
    ASSERT_EQ(drained.exit_code, 0) << drained.err;
  }
  static void TearDownTestSuite() {
    delete db_;
    db_ = nullptr;
  }

  // `shmtrace export DB ARGS...`, its output in a file returned in `out`.
  static RunResult export_to(const std::vector<std::string>& args, std::string& out) {
    const std::string path = db_->path + ".out";
    std::vector<std::string> argv = {SHMTRACE_CLI_PATH, "export", db_->path, "-o", path};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = run(argv);
    out = harness::read_file(path);
    std::remove(path.c_str());
    return r;
  }

  static inline TempDb* db_ = nullptr;
  static inline pid_t args_pid_ = 0;
  static inline pid_t forked_pid_ = 0;
  static inline int child_pid_ = 0;
  static inline pid_t crash_pid_ = 0;
  static inline pid_t remote_pid_ = 0;
  static constexpr const char* kRemoteTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  static constexpr const char* kRemoteParent = "00f067aa0ba902b7";
};

}  // namespace shmtrace::test::exporting

#endif
