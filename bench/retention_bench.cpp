// Ingestion stall while retention expires 10 million rows (SPEC §7: < 50 ms).
//
// The drain is one thread: while Store::expire() runs, no batch is stored,
// so the stall is expire()'s time. The bench fills a store with 10,000,000
// span rows in expired time partitions (untimed; the rows are those the
// drain writes, indexes included), then times, in the same run:
//   BM_IngestBatch   baseline: storing one 32,768-span batch (the drain's
//                    unit of work, for scale)
//   BM_Expire10M     expire() removing the 10 M rows (one iteration: the
//                    rows can be expired once), then a batch stored right
//                    after it, to show ingestion goes straight on
// and for comparison what a DELETE of the same age would cost, measured on
// 1,000,000 rows (BM_Delete1M) and reported per row scaled to 10 M.
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "bench_support.hpp"
#include "store/store.hpp"

namespace {

namespace drain = shmtrace::drain;
constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::size_t kBatchSpans = 32'768;

std::string g_dir;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

drain::Batch spans(std::uint64_t first_id, std::int64_t start_ns, std::size_t n) {
  drain::Batch b;
  b.segments.push_back(drain::SegmentRows{});
  b.segments[0].process.segment = "bench.segment";
  b.segments[0].spans.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    drain::SpanRow r;
    r.span_id = first_id + i;
    r.trace_id = "0123456789abcdef0123456789abcdef";
    r.parent_span_id = first_id + i - 1;
    r.tid = 77;
    r.group = "orders";
    r.name = "orders::validate";
    r.start_ns = start_ns + static_cast<std::int64_t>(i) * 100;
    r.duration_ns = 250;
    b.segments[0].spans.push_back(std::move(r));
  }
  return b;
}

std::string fresh(const std::string& name) {
  const std::string path = g_dir + "/" + name + ".db";
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path + suffix, ignored);
  std::filesystem::remove_all(path + ".parts", ignored);
  return path;
}

// 10 M rows, 2 M in each of five windows that expired an hour ago.
std::uint64_t fill(drain::Store& store, std::uint64_t rows) {
  const std::int64_t old = now_ns() - 3600 * kSecond;
  std::uint64_t id = 1;
  for (std::uint64_t done = 0; done < rows; done += kBatchSpans) {
    const std::int64_t window = static_cast<std::int64_t>(done * 5 / rows) * 10 * kSecond;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kBatchSpans, rows - done));
    if (!store.write(spans(id, old + window + static_cast<std::int64_t>(done % 1000), n))) return 0;
    id += n;
  }
  return id - 1;
}

drain::StoreOptions options() {
  drain::StoreOptions o;
  o.retention = std::chrono::seconds(600);
  o.partition = std::chrono::seconds(10);
  return o;
}

void BM_IngestBatch(benchmark::State& state) {
  auto store = drain::Store::open(fresh("ingest"), options());
  if (!store) return state.SkipWithError(store.error().message.c_str());
  std::uint64_t id = 1;
  for (auto _ : state) {
    state.PauseTiming();
    drain::Batch b = spans(id, now_ns(), kBatchSpans);
    id += kBatchSpans;
    state.ResumeTiming();
    if (!store->write(b)) return state.SkipWithError("write failed");
  }
}

void BM_Expire10M(benchmark::State& state) {
  auto store = drain::Store::open(fresh("expire"), options());
  if (!store) return state.SkipWithError(store.error().message.c_str());
  const std::uint64_t filled = fill(*store, 10'000'000);
  if (filled != 10'000'000) return state.SkipWithError("fill failed");
  drain::Batch after = spans(filled + 1, now_ns(), kBatchSpans);
  for (auto _ : state) {
    auto expired = store->expire(now_ns());
    if (!expired) return state.SkipWithError(expired.error().message.c_str());
    state.counters["partitions"] = static_cast<double>(expired->partitions_removed);
    state.PauseTiming();
    const auto t0 = std::chrono::steady_clock::now();
    if (!store->write(after)) return state.SkipWithError("write after expiry failed");
    state.counters["next_batch_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    state.ResumeTiming();
  }
  state.counters["rows_expired"] = 10'000'000;
}

void BM_Delete1M(benchmark::State& state) {
  // The same rows in one plain table, removed by a DELETE on start time.
  const std::string path = fresh("delete");
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
               "CREATE TABLE spans (process_key INTEGER NOT NULL, span_id INTEGER NOT NULL, trace_id TEXT NOT NULL,"
               " parent_span_id INTEGER NOT NULL, tid INTEGER NOT NULL, grp TEXT NOT NULL, name TEXT NOT NULL,"
               " start_ns INTEGER NOT NULL, duration_ns INTEGER, status INTEGER NOT NULL,"
               " error_sequence INTEGER NOT NULL, code INTEGER NOT NULL, PRIMARY KEY (process_key, span_id))"
               " WITHOUT ROWID; CREATE INDEX spans_by_start ON spans (start_ns);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO spans VALUES (1, ?, '0123456789abcdef0123456789abcdef', ?, 77, 'orders',"
                         " 'orders::validate', ?, 250, 0, 0, 0)", -1, &insert, nullptr);
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  for (std::int64_t i = 1; i <= 1'000'000; ++i) {
    sqlite3_bind_int64(insert, 1, i);
    sqlite3_bind_int64(insert, 2, i - 1);
    sqlite3_bind_int64(insert, 3, i * 100);
    sqlite3_step(insert);
    sqlite3_reset(insert);
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_finalize(insert);
  for (auto _ : state) {
    sqlite3_exec(db, "DELETE FROM spans WHERE start_ns < 1000000000000", nullptr, nullptr, nullptr);
  }
  sqlite3_close(db);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!shmtrace::bench::has_flag(args, "--benchmark_repetitions")) args.push_back("--benchmark_repetitions=1");
  auto full = shmtrace::bench::with_defaults(argv[0], args);
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;
  g_dir = std::filesystem::temp_directory_path() / ("shmtrace-retention-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(g_dir);

  benchmark::RegisterBenchmark("BM_IngestBatch", BM_IngestBatch)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Expire10M", BM_Expire10M)
      ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Delete1M", BM_Delete1M)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  std::error_code ignored;
  std::filesystem::remove_all(g_dir, ignored);

  const auto* batch = reporter.find("BM_IngestBatch");
  const auto* expire = reporter.find("BM_Expire10M");
  const auto* del = reporter.find("BM_Delete1M");
  std::printf("\n==== retention_bench summary ====\n");
  if (batch != nullptr) std::printf("one batch of %zu spans stored        %8.2f ms\n", kBatchSpans, batch->ns / 1e6);
  if (expire != nullptr) {
    std::printf("expire 10,000,000 rows (the stall)   %8.2f ms  (target < 50 ms)\n", expire->ns / 1e6);
    const auto next = expire->counters.find("next_batch_ms");
    if (next != expire->counters.end()) std::printf("first batch stored after expiry      %8.2f ms\n", next->second);
  }
  if (del != nullptr) {
    std::printf("DELETE of 1,000,000 rows instead      %8.2f ms  (x10 for 10 M: %.0f ms)\n", del->ns / 1e6,
                del->ns / 1e5);
  }
  return 0;
}
