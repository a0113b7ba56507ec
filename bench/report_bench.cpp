// `shmtrace report` on a database of 10 million spans: each section's query
// (the query library's functions, as the command runs them) beside a plain
// `SELECT COUNT(*)` over the same spans. The target: every section under a
// second.
//
// The database is built once and kept between runs in
// $TMPDIR/shmtrace-report-bench/ (delete it to rebuild): the main file and
// one partition created through the drain's Store (the real schema), then
// filled with bulk SQL: 10,000,000 spans of 200 processes (20 function
// names, chains 8 deep), 400,000 call_stats rows (200 processes x 20
// functions x 100 intervals, each with a histogram), 4,000 errors, 1,000 gaps.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "query/database.hpp"
#include "query/sections.hpp"
#include "store/histogram_blob.hpp"
#include "store/store.hpp"

namespace {

constexpr std::int64_t kSpans = 10'000'000;
constexpr std::int64_t kProcesses = 200;
constexpr std::int64_t kFunctions = 20;
constexpr std::int64_t kIntervals = 100;

std::filesystem::path g_db;
std::optional<shmtrace::drain::QueryDatabase> g_query;

bool exec(sqlite3* db, const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::fprintf(stderr, "report_bench: %s: %s\n", sql.substr(0, 120).c_str(), message ? message : "?");
    sqlite3_free(message);
    return false;
  }
  return true;
}

std::int64_t count(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  std::int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    n = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  return n;
}

// The main file and one partition through the Store: one span per process.
bool create_through_store(std::int64_t t0) {
  using namespace shmtrace::drain;
  auto store = Store::open(g_db.string());
  if (!store) {
    std::fprintf(stderr, "report_bench: %s\n", store.error().message.c_str());
    return false;
  }
  Batch batch;
  for (std::int64_t p = 0; p < kProcesses; ++p) {
    SegmentRows rows;
    rows.process.segment = "shmtrace.bench." + std::to_string(p);
    rows.process.pid = static_cast<std::uint32_t>(10000 + p);
    rows.process.ppid = p == 0 ? 1u : 10000u;
    rows.process.exe = "/usr/bin/bench-worker";
    rows.process.cmdline = "/usr/bin/bench-worker " + std::to_string(p);
    rows.process.start_ns = t0 + p * 1000;
    rows.process.trace_id = "0123456789abcdef0123456789abcdef";
    SpanRow span;
    span.span_id = 1;
    span.trace_id = rows.process.trace_id;
    span.tid = rows.process.pid;
    span.name = "main";
    span.start_ns = t0 + p * 1000;
    span.duration_ns = 600'000'000'000;
    rows.spans.push_back(span);
    ProcessFate fate;
    fate.state = p % 50 == 7 ? "crashed" : "exited";
    fate.exit_status = p % 50 == 7 ? 11 : 0;
    fate.end_ns = t0 + 600'000'000'000;
    rows.fate = fate;
    batch.segments.push_back(std::move(rows));
  }
  auto written = store->write(batch);
  if (!written) {
    std::fprintf(stderr, "report_bench: %s\n", written.error().message.c_str());
    return false;
  }
  return true;
}

// Bulk rows, straight into the tables the store created.
bool fill(std::int64_t t0) {
  sqlite3* db = nullptr;
  if (sqlite3_open(g_db.c_str(), &db) != SQLITE_OK) return false;
  const std::int64_t partition = count(db, "SELECT min(partition_id) FROM partitions");
  const std::string file = g_db.string() + ".parts/p" + std::to_string(partition) + ".db";
  const std::string t = std::to_string(t0);
  const std::int64_t per = kSpans / kProcesses;
  bool ok = exec(db, "ATTACH DATABASE '" + file + "' AS p") && exec(db, "PRAGMA p.journal_mode=OFF") &&
            exec(db, "PRAGMA synchronous=OFF");
  // The partition's indexes (whatever the schema holds) are dropped for the
  // bulk insert and built again after it: sorting once beats 10 M inserts.
  std::vector<std::pair<std::string, std::string>> indexes;  // name, SQL
  {
    sqlite3_stmt* list = nullptr;
    ok = ok && sqlite3_prepare_v2(db, "SELECT name, sql FROM p.sqlite_master WHERE type = 'index' AND "
                                      "tbl_name = 'spans' AND sql IS NOT NULL", -1, &list, nullptr) == SQLITE_OK;
    while (ok && sqlite3_step(list) == SQLITE_ROW) {
      indexes.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(list, 0)),
                           reinterpret_cast<const char*>(sqlite3_column_text(list, 1)));
    }
    sqlite3_finalize(list);
  }
  ok = ok && exec(db, "BEGIN");
  for (const auto& [name, sql] : indexes) ok = ok && exec(db, "DROP INDEX p." + name);
  ok = ok &&
            // Spans: in key order (process, span id) so the B-tree grows at its end.
            exec(db,
                 "INSERT INTO p.spans SELECT 1 + i / " + std::to_string(per) + ", 2 + i % " + std::to_string(per) +
                     ", '0123456789abcdef0123456789abcdef', CASE WHEN i % 8 = 0 THEN 1 ELSE 1 + i % " +
                     std::to_string(per) + " END, 10000 + i / " + std::to_string(per) + ", '', 'fn' || (i % " +
                     std::to_string(kFunctions) + "), " + t + " + (i % " + std::to_string(per) +
                     ") * 12000, (i * 7919) % 1000003, (i % 997 = 0), 0, 0 FROM (WITH RECURSIVE c(i) AS "
                     "(SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < " + std::to_string(kSpans - 1) +
                     ") SELECT i FROM c)") &&
            [&] {
              for (const auto& [name, sql] : indexes) {
                // "CREATE INDEX name ON ..." in the attached schema.
                if (!exec(db, "CREATE INDEX p." + sql.substr(sql.find(name)))) return false;
              }
              return true;
            }() &&
            exec(db, "INSERT INTO errors (process_key, sequence, ts_ns, kind, tid, span_id, trace_id, grp, span_name, "
                     "type, message, preview, signal, fault_address, frames) SELECT 1 + i % 200, 1 + i / 200, " + t +
                     " + i * 1000000, 'explicit', 10000 + i % 200, 2 + i * 37 % " + std::to_string(per) +
                     ", '', '', 'fn1', 'BenchError', 'failure ' || i, '', 0, 0, '0x1000 0x2000' FROM (WITH RECURSIVE "
                     "c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 3999) SELECT i FROM c)") &&
            exec(db, "INSERT INTO gaps SELECT 1 + i % 200, 0, i, 10000 + i % 200, " + t +
                     " + i * 1000000, 100, " + t + " + i * 1000000 - 5000, " + t +
                     " + i * 1000000 FROM (WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE "
                     "i < 999) SELECT i FROM c)") &&
            exec(db, "UPDATE processes SET records_dropped = 500");
  // call_stats: one row per process, function and interval, with a histogram.
  shmtrace::drain::histogram::Histogram h;
  h.ns_per_tick = 1;
  // About 300 ns to 900 us.
  for (std::uint32_t b = 150; b <= 500; b += 50) h.buckets.push_back({b, 10 + b % 7});
  const std::string blob = shmtrace::drain::histogram::encode(h);
  sqlite3_stmt* s = nullptr;
  ok = ok && sqlite3_prepare_v2(db,
                                "INSERT INTO call_stats (site_key, end_ns, start_ns, process_key, tid, name, calls, "
                                "errors, unfinished, completed, total_ns, min_ns, max_ns, histogram, self_ns) "
                                "VALUES (?, ?, ?, ?, ?, ?, 1000, 3, 0, 1000, 5e7, 100, 9e5, ?, 2e7)",
                                -1, &s, nullptr) == SQLITE_OK;
  for (std::int64_t p = 0; ok && p < kProcesses; ++p) {
    for (std::int64_t f = 0; ok && f < kFunctions; ++f) {
      for (std::int64_t i = 0; ok && i < kIntervals; ++i) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, p * kFunctions + f + 1);
        sqlite3_bind_int64(s, 2, t0 + (i + 1) * 1'000'000'000);
        sqlite3_bind_int64(s, 3, t0 + i * 1'000'000'000);
        sqlite3_bind_int64(s, 4, p + 1);
        sqlite3_bind_int64(s, 5, 10000 + p);
        const std::string name = "fn" + std::to_string(f);
        sqlite3_bind_text(s, 6, name.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(s, 7, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
        ok = sqlite3_step(s) == SQLITE_DONE;
      }
    }
  }
  sqlite3_finalize(s);
  ok = ok && exec(db, "COMMIT");
  sqlite3_close(db);
  return ok;
}

bool prepare_database() {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "shmtrace-report-bench";
  g_db = dir / "trace.db";
  if (std::filesystem::exists(g_db)) {
    auto q = shmtrace::drain::QueryDatabase::open(g_db.string());
    if (q && count(q->handle(), "SELECT count(*) FROM spans") == kSpans + kProcesses) {
      g_query.emplace(std::move(*q));
      return true;
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  std::filesystem::create_directories(dir);
  std::fprintf(stderr, "report_bench: building %s (once)...\n", g_db.c_str());
  const auto started = std::chrono::steady_clock::now();
  const std::int64_t t0 = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count() - 900'000'000'000;
  if (!create_through_store(t0) || !fill(t0)) return false;
  std::fprintf(stderr, "report_bench: built in %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  auto q = shmtrace::drain::QueryDatabase::open(g_db.string());
  if (!q) return false;
  g_query.emplace(std::move(*q));
  return count(g_query->handle(), "SELECT count(*) FROM spans") == kSpans + kProcesses;
}

template <typename F>
void run_section(benchmark::State& state, F&& section) {
  for (auto _ : state) {
    auto r = section(g_query->handle());
    if (!r) {
      state.SkipWithError(r.error().c_str());
      return;
    }
    benchmark::DoNotOptimize(r);
  }
}

void BM_CountSpans(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(count(g_query->handle(), "SELECT COUNT(*) FROM spans"));
}

const shmtrace::query::Filter kAll{};

void BM_Functions(benchmark::State& state) {
  run_section(state, [](sqlite3* db) { return shmtrace::query::functions(db, kAll, shmtrace::query::SortKey::kTotal, 20); });
}
void BM_Processes(benchmark::State& state) {
  run_section(state, [](sqlite3* db) { return shmtrace::query::process_tree(db, kAll); });
}
void BM_Errors(benchmark::State& state) {
  run_section(state, [](sqlite3* db) { return shmtrace::query::errors(db, kAll, 20); });
}
void BM_Slowest(benchmark::State& state) {
  run_section(state, [](sqlite3* db) { return shmtrace::query::slowest(db, kAll, 20); });
}
void BM_Drops(benchmark::State& state) {
  run_section(state, [](sqlite3* db) { return shmtrace::query::drops(db, kAll); });
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!shmtrace::bench::has_flag(args, "--benchmark_repetitions")) args.push_back("--benchmark_repetitions=3");
  auto full = shmtrace::bench::with_defaults(argv[0], args);
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;
  if (!prepare_database()) {
    std::fprintf(stderr, "report_bench: could not build the database at %s\n", g_db.c_str());
    return 1;
  }
  const char* sections[] = {"BM_Functions", "BM_Processes", "BM_Errors", "BM_Slowest", "BM_Drops"};
  benchmark::RegisterBenchmark("BM_CountSpans", BM_CountSpans)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark(sections[0], BM_Functions)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark(sections[1], BM_Processes)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark(sections[2], BM_Errors)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark(sections[3], BM_Slowest)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark(sections[4], BM_Drops)->Unit(benchmark::kMillisecond)->UseRealTime();
  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  g_query.reset();

  std::printf("\n==== report_bench summary (10,000,000 spans; target: each section < 1000 ms) ====\n");
  const auto* base = reporter.find("BM_CountSpans");
  if (base != nullptr) std::printf("%-14s %9.1f ms  (baseline: SELECT COUNT(*) FROM spans)\n", "count(*)", base->ns / 1e6);
  for (const char* name : sections) {
    const auto* f = reporter.find(name);
    if (f == nullptr) continue;
    std::printf("%-14s %9.1f ms  x%.2f of count(*)  %s\n", name + 3, f->ns / 1e6, base ? f->ns / base->ns : 0.0,
                f->ns < 1e9 ? "ok" : "OVER 1 s");
  }
  for (const std::string& e : reporter.errors()) std::printf("error: %s\n", e.c_str());
  return 0;
}
