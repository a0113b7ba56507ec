// shmtrace-drain end to end (SPEC D2, D3, D7, D9): real producers, the real
// drain process, the SQLite database read back: every record exactly once,
// also when the drain is SIGKILLed and restarted mid-stream.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "reader/reader.hpp"
#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

RunResult drain_once(const SessionScope& session, const std::string& db) {
  return run(session.drain({"--db", db, "--once"}));
}

TEST(DrainProcess, ProcessesAndThreadsLandExactlyOnceAndSegmentsAreRemoved) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("exact");
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) {
    const RunResult r = run({program_path("st_producer"), "sequence", "2", "3000"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    pids.push_back(r.pid);
  }
  const RunResult drained = drain_once(session, db);
  ASSERT_EQ(drained.exit_code, 0) << drained.err;
  EXPECT_EQ(drained.err, "");
  Database d(db);
  for (pid_t pid : pids) {
    SCOPED_TRACE(pid);
    expect_exact_counters(d, pid, 2, 3000);
    EXPECT_EQ(d.number("SELECT count(*) FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " +
                       std::to_string(pid) + " AND r.kind = 'arg' AND r.name = 'text'"),
              2 * 188);
    EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + std::to_string(pid)), "exited");
    EXPECT_EQ(find_segment(pid, 0), "") << "the drained segment is removed";
  }
  // A payload reassembled from continuation records, exactly.
  EXPECT_EQ(d.text("SELECT value FROM span_data WHERE kind = 'arg' AND name = 'text' AND value LIKE 'v2992:%' LIMIT 1").size(),
            192u);
  EXPECT_EQ(d.number("PRAGMA user_version"), 4);
}

TEST(DrainProcess, KilledAndRestartedDrainStoresEveryRecordExactlyOnce) {
  const SessionScope session;  // its drains take only its producers' segments
  constexpr long kCounters = 300000;
  const TempDb db("killed");
  // The producer waits for the drain (block policy) rather than dropping.
  Child producer = Child::start({program_path("st_producer"), "sequence", "2", std::to_string(kCounters)},
                                {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", "1024"},
                                 {"SHMTRACE_OVERFLOW_RECORDS", "64"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "60000"}});
  std::mt19937 random(12345);
  int kills = 0;
  constexpr int kKills = 20;
  for (int round = 0; round < kKills; ++round) {
    Child drain = Child::start(session.drain({"--db", db.path}), {});
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + random() % 80));
    ::kill(drain.pid(), SIGKILL);  // anywhere: mid-batch, mid-commit, between commit and hand-back
    const RunResult killed = drain.wait();
    kills += killed.signal == SIGKILL;
  }
  EXPECT_EQ(kills, kKills);
  // One last drain runs until the producer is done, then stops on SIGTERM.
  Child last = Child::start(session.drain({"--db", db.path}), {});
  const RunResult produced = producer.wait();
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(last.pid(), SIGTERM);
  const RunResult stopped = last.wait();
  EXPECT_EQ(stopped.exit_code, 0) << "SIGTERM: flush and exit 0; " << stopped.err;
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  expect_exact_counters(d, produced.pid, 2, kCounters);
  EXPECT_EQ(find_segment(produced.pid, 0), "");
}

// One consumer per segment, for good: a drain stopped (SIGSTOP, as a drain
// starved of CPU looks to the others) for longer than any heartbeat limit
// keeps its segment; a second drain on another database beside it takes
// nothing, and every record lands in the first drain's database exactly once.
TEST(DrainProcess, AStalledDrainKeepsItsSegmentAndNoRecordIsSplitBetweenDatabases) {
  const SessionScope session;  // its drains take only its producers' segments
  constexpr long kCounters = 100000;
  const TempDb first_db("stalled-first");
  const TempDb second_db("stalled-second");
  Child first = Child::start(session.drain({"--db", first_db.path}), {});
  Child producer = Child::start({program_path("st_producer"), "sequence", "2", std::to_string(kCounters)},
                                {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", "1024"},
                                 {"SHMTRACE_OVERFLOW_RECORDS", "64"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "60000"}});
  const std::string name = find_segment(producer.pid());
  ASSERT_NE(name, "");
  std::optional<reader::Segment> segment;
  std::string why;
  ASSERT_TRUE(harness::wait_until(
      [&] {
        auto s = reader::Segment::attach(name, reader::Access::kReadOnly);
        if (s) segment.emplace(std::move(*s)); else why = s.error().message;
        return segment.has_value();
      },
      std::chrono::seconds(10)))
      << why;
  ASSERT_TRUE(harness::wait_until([&] { return segment->consumer_pid() == static_cast<std::uint32_t>(first.pid()); },
                                  std::chrono::seconds(10)));
  ::kill(first.pid(), SIGSTOP);
  Child second = Child::start(session.drain({"--db", second_db.path}), {});
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // past the 2 s an older drain waited
  EXPECT_EQ(segment->consumer_pid(), static_cast<std::uint32_t>(first.pid()));
  ::kill(first.pid(), SIGCONT);
  const RunResult produced = producer.wait();
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  ASSERT_TRUE(harness::wait_until([&] { return find_segment(produced.pid, 0).empty(); }, std::chrono::seconds(20)));
  ::kill(first.pid(), SIGTERM);
  ::kill(second.pid(), SIGTERM);
  EXPECT_EQ(first.wait().exit_code, 0);
  const RunResult second_run = second.wait();
  EXPECT_EQ(second_run.exit_code, 0);
  EXPECT_NE(second_run.err.find("leaving " + name + " to the other drain"), std::string::npos) << second_run.err;
  Database d(first_db);
  expect_exact_counters(d, produced.pid, 2, kCounters);
  Database other(second_db);
  EXPECT_EQ(other.number("SELECT count(*) FROM processes"), 0);
  EXPECT_EQ(other.number("SELECT count(*) FROM span_data"), 0);
}

// A database deleted under a running drain is noticed before any slot is
// handed back: the drain says so and stops, what it read stays in shared
// memory, and the next drain on the same path stores every record exactly.
TEST(DrainProcess, ADatabaseDeletedUnderTheDrainIsNoticedAndNothingIsLost) {
  const SessionScope session;  // its drains take only its producers' segments
  constexpr long kCounters = 20000;
  const TempDb db("deleted");
  Child first = Child::start(session.drain({"--db", db.path}), {});
  ASSERT_TRUE(harness::wait_until([&] { return harness::file_size(db.path + ".lock") >= 0; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::kill(first.pid(), SIGSTOP);
  db.remove();  // the main file, its WAL, the partitions and the lock
  Child producer = Child::start({program_path("st_producer"), "sequence", "2", std::to_string(kCounters)},
                                {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", "1024"},
                                 {"SHMTRACE_OVERFLOW_RECORDS", "64"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "60000"}});
  ASSERT_NE(find_segment(producer.pid()), "");
  ::kill(first.pid(), SIGCONT);
  const RunResult stopped = first.wait();
  EXPECT_EQ(stopped.exit_code, 1);
  EXPECT_EQ(harness::lines_with(stopped.err, "was deleted or moved while the drain ran").size(), 1u) << stopped.err;
  EXPECT_NE(stopped.err.find("stays in shared memory"), std::string::npos) << stopped.err;
  Child second = Child::start(session.drain({"--db", db.path}), {});
  const RunResult produced = producer.wait();
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  ASSERT_TRUE(harness::wait_until([&] { return find_segment(produced.pid, 0).empty(); }, std::chrono::seconds(20)));
  ::kill(second.pid(), SIGTERM);
  EXPECT_EQ(second.wait().exit_code, 0);
  Database d(db);
  expect_exact_counters(d, produced.pid, 2, kCounters);
}

// Every bad invocation: one line on stderr, exit 2 (like every tool); a
// configuration file that is not text is not echoed to the terminal.
TEST(DrainProcess, CommandLineErrorsAreOneLineAndExitTwo) {
  const TempDb db("usage");
  const std::string binary = "/tmp/shmtrace-test-" + std::to_string(::getpid()) + "-binary.toml";
  {
    std::FILE* f = std::fopen(binary.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("db = \"x\"\n\x01\x02\xff\xfe\x1b[31m garbage = \n", f);
    std::fclose(f);
  }
  const std::vector<std::vector<std::string>> bad = {
      {SHMTRACE_DRAIN_PATH, "--bogus"},
      {SHMTRACE_DRAIN_PATH},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--retention", "0"},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--retention", "500ms"},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--partition", "10ms"},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--interval", "soon"},
      {SHMTRACE_DRAIN_PATH, "--config", binary},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", "1run"},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", "run.1"},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", ""},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", std::string(33, 'a')},
      {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", "a\x1b[31m"},
  };
  for (const auto& argv : bad) {
    const RunResult r = run(argv);
    SCOPED_TRACE(argv.back());
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("shmtrace-drain: ", 0), 0u) << r.err;
    for (char c : r.err) EXPECT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << "byte " << int(static_cast<unsigned char>(c));
  }
  std::remove(binary.c_str());
  const RunResult help = run({SHMTRACE_DRAIN_PATH, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--db"), std::string::npos);
  // A lock that cannot be taken says why.
  std::filesystem::create_directory(db.path + ".lock");
  const RunResult locked = run({SHMTRACE_DRAIN_PATH, "--db", db.path, "--once"});
  EXPECT_EQ(locked.exit_code, 1);
  EXPECT_EQ(locked.err, "shmtrace-drain: cannot open the lock file " + db.path + ".lock: Is a directory\n");
  std::filesystem::remove(db.path + ".lock");
}

TEST(DrainProcess, ASecondDrainOnTheSameDatabaseIsRefused) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("second");
  Child first = Child::start(session.drain({"--db", db.path}), {});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const RunResult second = run(session.drain({"--db", db.path, "--once"}));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_EQ(second.err, "shmtrace-drain (session " + session.id() + "): another shmtrace-drain is using " + db.path +
                            " (lock " + db.path + ".lock)\n");
  ::kill(first.pid(), SIGTERM);
  EXPECT_EQ(first.wait().exit_code, 0);
}

TEST(DrainProcess, ACrashedProducerIsStoredWithItsCrashAndUnfinishedSpan) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("crash");
  const RunResult r = run({program_path("st_producer"), "crash", "segv", "700"}, without_sanitizer_signal_handlers());
  ASSERT_EQ(r.signal, SIGSEGV);
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  const std::string pid = std::to_string(r.pid);
  EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + pid), "crashed");
  EXPECT_EQ(d.number("SELECT exit_status FROM processes WHERE pid = " + pid), SIGSEGV);
  EXPECT_EQ(d.number("SELECT count(*) FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " + pid +
                     " AND kind = 'counter'"),
            700);
  EXPECT_EQ(d.text("SELECT message FROM errors e JOIN processes p USING (process_key) WHERE p.pid = " + pid +
                   " AND e.kind = 'crash'"),
            "SIGSEGV at 0x10");
  EXPECT_EQ(d.number("SELECT count(*) FROM spans s JOIN processes p USING (process_key) WHERE p.pid = " + pid +
                     " AND s.name = 'doomed' AND s.duration_ns IS NULL"),
            1)
      << "the span open at the crash is stored unfinished";
  EXPECT_EQ(find_segment(r.pid, 0), "");
}

// -finstrument-functions names the runtime only knew by address ("@0x...")
// are stored resolved, through the module map, after the workers exited.
TEST(DrainProcess, InstrumentedFunctionsAreStoredByNameWithExactCounts) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("workload");
  const RunResult r = run({program_path("st_workload"), "--workers", "2", "--iterations", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  const std::map<int, WorkloadWorker> workers = parse_workload_output(r.out);
  ASSERT_EQ(workers.size(), 2u) << r.out;
  for (const auto& [index, worker] : workers) {
    SCOPED_TRACE("worker " + std::to_string(index));
    const pid_t pid = worker.pid;
    // The exec'd image's row (its post-fork image is the one marked execed).
    const std::string image = "(SELECT process_key FROM processes WHERE pid = " + std::to_string(pid) +
                              " AND state = 'exited')";
    EXPECT_EQ(d.number("SELECT count(*) FROM spans WHERE process_key = " + image + " AND name LIKE '@0x%'"), 0);
    ASSERT_GE(worker.counts.size(), 15u);
    for (const auto& [function, calls] : worker.counts) {
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(d.db, ("SELECT count(*) FROM spans WHERE process_key = " + image + " AND name = ?").c_str(),
                         -1, &s, nullptr);
      sqlite3_bind_text(s, 1, function.c_str(), -1, SQLITE_TRANSIENT);
      const std::int64_t stored = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
      sqlite3_finalize(s);
      EXPECT_EQ(stored, static_cast<std::int64_t>(calls)) << function;
    }
  }
}

}  // namespace
}  // namespace shmtrace::test
