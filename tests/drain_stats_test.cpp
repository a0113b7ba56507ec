// Call-site statistics through the real drain (SPEC P13, D3) and the block
// policy against a real drain (P4): real programs count their own calls and
// time their own waits; the database's call_stats must match exactly,
// whatever the ring dropped, sampling left out, or how often the drain was
// killed; a producer under `block` loses nothing while the drain runs and
// goes on by itself when the drain is stopped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using namespace std::chrono_literals;

RunResult drain_once(const SessionScope& session, const std::string& db) {
  return run(session.drain({"--db", db, "--once"}));
}

std::vector<std::vector<std::string>> words_of(const std::string& out) {
  std::vector<std::vector<std::string>> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    for (std::string w; words >> w;) fields.push_back(w);
    if (!fields.empty()) lines.push_back(std::move(fields));
  }
  return lines;
}

// st_stats_threads' own counts: (tid, function) -> calls, and each
// function's address.
struct ProgramCounts {
  std::map<std::pair<std::int64_t, std::string>, std::int64_t> calls;
  std::map<std::int64_t, std::string> function_at;
};

ProgramCounts counts_of(const std::string& out) {
  ProgramCounts c;
  std::map<std::string, std::int64_t> tid_of;
  for (const auto& l : words_of(out)) {
    if (l.size() == 3 && l[0] == "fn") c.function_at[static_cast<std::int64_t>(std::stoull(l[2], nullptr, 16))] = l[1];
    if (l.size() == 4 && l[0] == "thread" && l[2] == "tid") tid_of[l[1]] = std::stoll(l[3]);
    if (l.size() == 5 && l[0] == "thread" && l[2] == "count") c.calls[{tid_of.at(l[1]), l[3]}] = std::stoll(l[4]);
  }
  return c;
}

// The database's calls per (tid, function) of one process, by the code
// address its call sites recorded; also checks completed == calls.
std::map<std::pair<std::int64_t, std::string>, std::int64_t> stored_calls(const Database& d, pid_t pid,
                                                                          const ProgramCounts& program) {
  std::map<std::pair<std::int64_t, std::string>, std::int64_t> out;
  sqlite3_stmt* s = nullptr;
  const std::string sql =
      "SELECT c.tid, s.code, sum(c.calls), sum(c.completed), sum(c.unfinished), sum(c.errors) FROM call_stats c "
      "JOIN call_sites s USING (site_key) JOIN processes p ON p.process_key = c.process_key WHERE p.pid = " +
      std::to_string(pid) + " AND s.kind = 'code' GROUP BY c.tid, s.code";
  EXPECT_EQ(sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(d.db);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const std::int64_t tid = sqlite3_column_int64(s, 0);
    const std::int64_t code = sqlite3_column_int64(s, 1);
    const std::int64_t calls = sqlite3_column_int64(s, 2);
    auto name = program.function_at.find(code);
    if (name == program.function_at.end()) continue;  // the Worker constructor and the like
    out[{tid, name->second}] = calls;
    EXPECT_EQ(sqlite3_column_int64(s, 3), calls) << name->second << ": every call ended";
    EXPECT_EQ(sqlite3_column_int64(s, 4), 0) << name->second;
    EXPECT_EQ(sqlite3_column_int64(s, 5), 0) << name->second;
  }
  sqlite3_finalize(s);
  return out;
}

TEST(DrainStats, CountsExactWhileATinyRingDropsAlmostEverything) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("stats-tiny");
  const RunResult r = run({program_path("st_stats_threads"), "4", "3000"},
                          {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const RunResult drained = drain_once(session, db);
  ASSERT_EQ(drained.exit_code, 0) << drained.err;
  Database d(db);
  ASSERT_EQ(d.error, "");
  const ProgramCounts program = counts_of(r.out);
  ASSERT_EQ(program.calls.size(), 16u) << r.out;  // 4 threads x 4 functions
  EXPECT_EQ(stored_calls(d, r.pid, program), program.calls);
  // The spans themselves mostly dropped: the statistics did not need them.
  const std::string of_pid = " JOIN processes p USING (process_key) WHERE p.pid = " + std::to_string(r.pid);
  std::int64_t calls = 0;
  for (const auto& [key, n] : program.calls) calls += n;
  const std::int64_t spans = d.number("SELECT count(*) FROM spans" + of_pid);
  EXPECT_GT(spans, 0);
  EXPECT_LT(spans * 10, calls) << "the ring was meant to drop most spans";
  EXPECT_GT(d.number("SELECT sum(dropped) FROM gaps" + of_pid), calls);
  // Names resolved like the spans': the function_stats view sums threads.
  EXPECT_EQ(d.number("SELECT calls FROM function_stats WHERE name LIKE '%::leaf(int)'"), 4 * 6000);
}

// Sampling at 1 %: every call and every error counted; the errors
// themselves all stored; the spans a few percent.
TEST(DrainStats, CountsAndErrorsExactAtSampleRateOnePercent) {
  const SessionScope session;  // its drains take only its producers' segments
  constexpr int kRoots = 3000;
  const TempDb db("stats-sampled");
  const RunResult r = run({program_path("st_producer"), "sampling", std::to_string(kRoots)},
                          {{"SHMTRACE_SAMPLE_RATE", "0.01"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  const std::string of_pid = " JOIN processes p USING (process_key) WHERE p.pid = " + std::to_string(r.pid);
  EXPECT_EQ(d.number("SELECT sum(calls) FROM call_stats" + of_pid + " AND name = 'root'"), kRoots);
  EXPECT_EQ(d.number("SELECT sum(completed) FROM call_stats" + of_pid + " AND name = 'root'"), kRoots);
  EXPECT_EQ(d.number("SELECT sum(errors) FROM call_stats" + of_pid + " AND name = 'root'"), 0);
  EXPECT_EQ(d.number("SELECT sum(calls) FROM call_stats" + of_pid + " AND name = 'child'"), 2 * kRoots);
  EXPECT_EQ(d.number("SELECT sum(errors) FROM call_stats" + of_pid + " AND name = 'child'"), kRoots);
  EXPECT_EQ(d.number("SELECT count(*) FROM errors" + of_pid + " AND type = 'SampledError'"), kRoots);
  const std::int64_t roots = d.number("SELECT count(*) FROM spans" + of_pid + " AND name = 'root'");
  EXPECT_GT(roots, 0);
  EXPECT_LT(roots, kRoots / 10);
}

// Percentiles from SQL (the shmtrace_quantile aggregate the drain library
// registers), against what the program measured of its own busy-waits.
TEST(DrainStats, PercentilesFromSqlMatchWhatTheProgramMeasured) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("stats-busy");
  const RunResult r = run({program_path("st_stats_api"), "busy", "200"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  int checked = 0;
  for (const auto& l : words_of(r.out)) {
    if (l.size() != 6 || l[0] != "measured") continue;
    const std::string& name = l[1];
    SCOPED_TRACE(name);
    const double inner = std::stod(l[3]);
    const double outer = std::stod(l[5]);
    const std::string where = " FROM call_stats WHERE name = '" + name + "'";
    EXPECT_EQ(d.number("SELECT sum(calls)" + where), 200);
    EXPECT_EQ(d.number("SELECT sum(shmtrace_histogram_count(histogram))" + where), 200);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(d.db,
                                 ("SELECT shmtrace_quantile(histogram, 0.5), shmtrace_quantile(histogram, 0.99), "
                                  "min(min_ns), max(max_ns)" + where).c_str(),
                                 -1, &s, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    const double p50 = sqlite3_column_double(s, 0), p99 = sqlite3_column_double(s, 1);
    const double min = sqlite3_column_double(s, 2), max = sqlite3_column_double(s, 3);
    sqlite3_finalize(s);
    EXPECT_GE(p50, inner * 0.97) << "inner p50 " << inner;
    EXPECT_LE(p50, outer * 1.03) << "outer p50 " << outer;
    EXPECT_LE(min, p50 * 1.016);
    EXPECT_LE(p50, p99);
    EXPECT_LE(p99, max * 1.016);
    ++checked;
  }
  EXPECT_EQ(checked, 3) << r.out;
}

// Self time per function from the statistics against the same figure
// derived from the stored spans: each span's duration minus the durations
// of the spans whose parent it is.
struct SelfFigures {
  std::int64_t spans = 0;     // ended spans of the function (spans side) or calls (stats side)
  std::int64_t children = 0;  // their ended child spans
  double total_ns = 0;
  double self_ns = 0;
};

std::map<std::string, SelfFigures> self_from_spans(const Database& d, pid_t pid) {
  std::map<std::string, SelfFigures> out;
  sqlite3_stmt* s = nullptr;
  const std::string sql =
      "SELECT s.name, count(*), sum(coalesce(c.n, 0)), sum(s.duration_ns), sum(s.duration_ns - coalesce(c.d, 0)) "
      "FROM spans s JOIN processes p ON p.process_key = s.process_key "
      "LEFT JOIN (SELECT process_key, parent_span_id, count(*) AS n, sum(duration_ns) AS d FROM spans "
      "           GROUP BY process_key, parent_span_id) c "
      "  ON c.process_key = s.process_key AND c.parent_span_id = s.span_id "
      "WHERE p.pid = " + std::to_string(pid) + " AND s.duration_ns IS NOT NULL GROUP BY s.name";
  EXPECT_EQ(sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(d.db);
  while (sqlite3_step(s) == SQLITE_ROW) {
    SelfFigures& f = out[reinterpret_cast<const char*>(sqlite3_column_text(s, 0))];
    f.spans = sqlite3_column_int64(s, 1);
    f.children = sqlite3_column_int64(s, 2);
    f.total_ns = sqlite3_column_double(s, 3);
    f.self_ns = sqlite3_column_double(s, 4);
  }
  sqlite3_finalize(s);
  return out;
}

std::map<std::string, SelfFigures> self_from_stats(const Database& d, pid_t pid) {
  std::map<std::string, SelfFigures> out;
  sqlite3_stmt* s = nullptr;
  const std::string sql =
      "SELECT c.name, sum(c.completed), sum(c.total_ns), sum(c.self_ns) FROM call_stats c "
      "JOIN processes p ON p.process_key = c.process_key WHERE p.pid = " + std::to_string(pid) + " GROUP BY c.name";
  EXPECT_EQ(sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(d.db);
  while (sqlite3_step(s) == SQLITE_ROW) {
    SelfFigures& f = out[reinterpret_cast<const char*>(sqlite3_column_text(s, 0))];
    f.spans = sqlite3_column_int64(s, 1);
    f.total_ns = sqlite3_column_double(s, 2);
    f.self_ns = sqlite3_column_double(s, 3);
  }
  sqlite3_finalize(s);
  return out;
}

// Both sides come from the same two clock reads per call. A span's
// duration_ns is its tick difference converted and truncated to whole ns
// (at most 1 ns under), the statistics' ticks are summed first and
// converted once: the spans' total may be short by up to 1 ns per span, and
// their self time off by up to 1 ns per span and per child span (either
// way). Plus double rounding, far below 1 ns at these sums.
void expect_self_time_matches_spans(const Database& d, pid_t pid, const std::vector<std::string>& names) {
  const auto spans = self_from_spans(d, pid);
  const auto stats = self_from_stats(d, pid);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(spans.contains(name) && stats.contains(name));
    const SelfFigures& from_spans = spans.at(name);
    const SelfFigures& from_stats = stats.at(name);
    ASSERT_EQ(from_spans.spans, from_stats.spans) << "every call has its span: none dropped or sampled out";
    EXPECT_GT(from_stats.self_ns, 0);
    EXPECT_LE(from_stats.self_ns, from_stats.total_ns);
    const auto spans_n = static_cast<double>(from_spans.spans);
    EXPECT_GE(from_stats.total_ns, from_spans.total_ns - 1e-6);
    EXPECT_LE(from_stats.total_ns, from_spans.total_ns + spans_n);
    EXPECT_NEAR(from_stats.self_ns, from_spans.self_ns, spans_n + static_cast<double>(from_spans.children));
  }
}

TEST(DrainStats, SelfTimeEqualsTotalMinusChildSpansOfApiSpans) {
  const SessionScope session;  // its drain takes only its programs' segments
  constexpr int kRoots = 200;
  const TempDb db("stats-self-api");
  const RunResult r = run({program_path("st_stats_api"), "nest", std::to_string(kRoots)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  ASSERT_EQ(d.error, "");
  const auto stats = self_from_stats(d, r.pid);
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats.at("f").spans, kRoots);
  EXPECT_EQ(stats.at("g").spans, 2 * kRoots);
  EXPECT_EQ(stats.at("h").spans, 2 * kRoots);
  // To the tick, from the statistics alone: every h is a child of a g and
  // every g of an f, so g's self time is g's total less h's, f's is f's
  // total less g's, and h (a leaf) has all of its own.
  const auto ticks = [&](const char* name, const char* column) {
    return d.number(std::string("SELECT sum(s.") + column + ") FROM call_sites s JOIN processes p USING "
                    "(process_key) WHERE p.pid = " + std::to_string(r.pid) + " AND s.name = '" + name + "'");
  };
  EXPECT_GT(ticks("h", "total_ticks"), 0);
  EXPECT_EQ(ticks("h", "self_ticks"), ticks("h", "total_ticks"));
  EXPECT_EQ(ticks("g", "self_ticks"), ticks("g", "total_ticks") - ticks("h", "total_ticks"));
  EXPECT_EQ(ticks("f", "self_ticks"), ticks("f", "total_ticks") - ticks("g", "total_ticks"));
  expect_self_time_matches_spans(d, r.pid, {"f", "g", "h"});
}

// Instrumented functions (-finstrument-functions), recursion included.
TEST(DrainStats, SelfTimeEqualsTotalMinusChildSpansOfInstrumentedFunctions) {
  const SessionScope session;  // its drain takes only its programs' segments
  const TempDb db("stats-self-code");
  const RunResult r = run({program_path("st_stats_threads"), "2", "200"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  ASSERT_EQ(d.error, "");
  std::vector<std::string> names;
  for (const auto& [name, figures] : self_from_stats(d, r.pid)) {
    if (name.find("outer") != std::string::npos || name.find("middle") != std::string::npos ||
        name.find("leaf") != std::string::npos || name.find("deep") != std::string::npos) {
      names.push_back(name);
    }
  }
  ASSERT_EQ(names.size(), 4u);
  EXPECT_EQ(d.number("SELECT count(*) FROM gaps g JOIN processes p USING (process_key) WHERE p.pid = " +
                     std::to_string(r.pid)),
            0);
  expect_self_time_matches_spans(d, r.pid, names);
}

// The drain SIGKILLed at random points while statistics flow (an interval
// every 10 ms), each time after it stored something, and restarted: every
// call counted once.
TEST(DrainStats, KilledAndRestartedDrainCountsEveryCallOnce) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("stats-killed");
  Child producer = Child::start({program_path("st_stats_threads"), "2", "1500000"}, {});
  std::mt19937 random(2026);
  std::int64_t rows_before = 0;
  int kills_with_progress = 0;
  for (int round = 0; round < 6; ++round) {
    Child drain = Child::start(session.drain({"--db", db.path, "--stats-interval", "10ms"}), {});
    // Until this drain stored statistics of its own (or 10 s passed).
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    std::int64_t rows = rows_before;
    while (rows <= rows_before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      if (!std::filesystem::exists(db.path)) continue;
      rows = Database(db).number("SELECT count(*) FROM call_stats");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(random() % 40));
    ::kill(drain.pid(), SIGKILL);
    EXPECT_EQ(drain.wait().signal, SIGKILL);
    kills_with_progress += rows > rows_before;
    rows_before = rows;
  }
  const RunResult produced = producer.wait();
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  EXPECT_GE(kills_with_progress, 3) << "the drains were killed while statistics flowed";
  ASSERT_EQ(drain_once(session, db).exit_code, 0);
  Database d(db);
  const ProgramCounts program = counts_of(produced.out);
  ASSERT_EQ(program.calls.size(), 8u) << produced.out;
  EXPECT_EQ(stored_calls(d, produced.pid, program), program.calls);
  EXPECT_GT(d.number("SELECT count(*) FROM call_stats c JOIN processes p USING (process_key) WHERE p.pid = " +
                     std::to_string(produced.pid)),
            16)
      << "several intervals per call site";
}

// The drain finished the process: its segment is removed.
bool wait_for_drained(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!find_segment(pid, 0).empty()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// A drain claimed the process's segment as its consumer.
bool wait_for_consumer(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string name = find_segment(pid, 0);
    if (!name.empty()) {
      auto s = reader::Segment::attach(name, reader::Access::kReadOnly);
      if (s && s->consumer_pid() != 0) return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::string of_pid(pid_t pid) { return " JOIN processes p USING (process_key) WHERE p.pid = " + std::to_string(pid); }

// block: the producer is far faster than the drain (a few ns a record
// against a microsecond), and waits for it instead of dropping.
TEST(DrainStats, BlockPolicyAgainstALiveDrainStoresEverythingAndDropsNothing) {
  const SessionScope session;  // its drains take only its producers' segments
  constexpr long kCounters = 200000;
  const TempDb db("block-live");
  Child drain = Child::start(session.drain({"--db", db.path}), {});
  const RunResult produced =
      run({program_path("st_producer"), "sequence", "2", std::to_string(kCounters)},
          {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", "256"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"},
           {"SHMTRACE_BLOCK_TIMEOUT_MS", "30000"}});
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  ASSERT_TRUE(wait_for_drained(produced.pid, 30'000)) << "the drain did not finish the producer's segment";
  ::kill(drain.pid(), SIGTERM);
  EXPECT_EQ(drain.wait().exit_code, 0);
  Database d(db);
  expect_exact_counters(d, produced.pid, 2, kCounters);
  EXPECT_EQ(d.number("SELECT count(*) FROM gaps" + of_pid(produced.pid)), 0) << "nothing dropped";
}

// block with the drain stopped (SIGSTOP, its heartbeat frozen): the producer
// waits SHMTRACE_BLOCK_TIMEOUT_MS, then drops and counts, and exits with its
// own status; once the drain goes on, what was kept and what was dropped
// account for every counter.
TEST(DrainStats, BlockPolicyWithAStoppedDrainDropsAfterTheTimeoutAndExits) {
  const SessionScope session;  // its drains take only its producers' segments
  constexpr long kCounters = 100000;
  const TempDb db("block-stopped");
  Child drain = Child::start(session.drain({"--db", db.path}), {});
  Child producer = Child::start({program_path("st_producer"), "--wait-signal", "sequence", "2",
                                 std::to_string(kCounters)},
                                {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", "256"},
                                 {"SHMTRACE_OVERFLOW_RECORDS", "64"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "200"}});
  // The drain attaches and publishes its heartbeat; then it stops.
  ASSERT_TRUE(wait_for_consumer(producer.pid(), 10'000)) << "the drain never attached";
  ::kill(drain.pid(), SIGSTOP);
  const auto started = std::chrono::steady_clock::now();
  ::kill(producer.pid(), SIGUSR1);
  const RunResult produced = producer.wait();
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(produced.exit_code, 0) << produced.err;
  EXPECT_EQ(produced.signal, 0);
  EXPECT_GE(took, 200ms) << "it waited for the drain first";
  EXPECT_LT(took, 60s);
  ::kill(drain.pid(), SIGCONT);
  ASSERT_TRUE(wait_for_drained(produced.pid, 30'000));
  ::kill(drain.pid(), SIGTERM);
  EXPECT_EQ(drain.wait().exit_code, 0);
  Database d(db);
  const std::string counters = " FROM span_data r" + of_pid(produced.pid) + " AND r.kind = 'counter'";
  const std::int64_t kept = d.number("SELECT count(*)" + counters);
  const std::int64_t dropped = d.number("SELECT sum(dropped) FROM gaps" + of_pid(produced.pid));
  EXPECT_EQ(d.number("SELECT count(*) FROM (SELECT DISTINCT tid, value" + counters + ")"), kept) << "none twice";
  EXPECT_GT(dropped, 0) << "drops are counted";
  EXPECT_LT(kept, 2 * kCounters);
  // Dropped records include the string arguments' (several records each), so
  // kept counters + dropped records cover every counter at least.
  EXPECT_GE(kept + dropped, 2 * kCounters);
}

}  // namespace
}  // namespace shmtrace::test
