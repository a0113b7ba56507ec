// Drain throughput into SQLite (SPEC §7), beside the raw SQLite insert
// ceiling for the same rows, schema and indexes, in the same binary.
//
// A producer thread of this process writes spans through the C API
// (libshmtrace.so) into its ring: each iteration, with the clock stopped,
// kSpansPerIteration spans (two records each: begin and end) over eight
// names, nested two deep like real code. Then the clock runs while the
// drain's own code consumes them: SegmentConsumer::collect (read, decode,
// pair begin and end, convert to rows) + Store::write (one transaction into
// the time partition, indexes in place) + release (slots handed back), until
// the ring is empty. Figures are records per second (a span is two).
//
//   BM_DrainRecords     the drain path above, records/s
//   BM_StoreWriteRows   the same rows, already converted, through
//                       Store::write: the store's share alone (information)
//   BM_SqliteCeiling    baseline: a bare prepared INSERT of the same span
//                       rows into a table of the same schema and indexes,
//                       one transaction per batch, nothing else; records/s
//                       counted as two per row, like the drain
#include <sqlite3.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <filesystem>
#include <thread>

#include "bench_support.hpp"
#include "store/checkpointer.hpp"
#include "store/schema.hpp"
#include "store/segment_consumer.hpp"
#include "store/store.hpp"

namespace {

namespace reader = shmtrace::reader;
namespace drain = shmtrace::drain;
using shmtrace::bench::Figure;
using shmtrace::bench::rate;

constexpr std::uint64_t kSpansPerIteration = 50'000;  // 100,000 records: a quarter of the ring below
constexpr std::uint32_t kRingRecords = 1u << 19;

std::string g_dir;
std::optional<reader::Segment> g_segment;
std::optional<drain::SegmentConsumer> g_consumer;

// The producer thread writes a given number of spans when asked.
std::atomic<std::uint64_t> g_target{0};
std::atomic<std::uint64_t> g_done{0};
std::atomic<bool> g_quit{false};

void producer_main() {
  ::prctl(PR_SET_NAME, "bench-producer", 0, 0, 0);
  shmtrace_name_t group = shmtrace_intern("bench");
  shmtrace_name_t names[8];
  const char* texts[8] = {"orders::load",       "orders::validate", "billing::charge", "billing::refund",
                          "storage::write_row", "storage::read_row", "net::send",       "net::receive"};
  for (int i = 0; i < 8; ++i) names[i] = shmtrace_intern(texts[i]);
  std::uint64_t done = 0;
  while (!g_quit.load(std::memory_order_acquire)) {
    const std::uint64_t target = g_target.load(std::memory_order_acquire);
    if (done >= target) {
      ::usleep(50);
      continue;
    }
    while (done < target) {
      // An outer span and an inner one: two spans, four records.
      shmtrace_span_t outer = shmtrace_span_begin_group(group, names[done % 8]);
      shmtrace_span_t inner = shmtrace_span_begin_group(group, names[(done + 3) % 8]);
      shmtrace_span_end(inner);
      shmtrace_span_end(outer);
      done += 2;
    }
    g_done.store(done, std::memory_order_release);
  }
}

// Asks the producer for one iteration's spans and waits for them.
void produce() {
  const std::uint64_t target = g_target.load() + kSpansPerIteration;
  g_target.store(target, std::memory_order_release);
  while (g_done.load(std::memory_order_acquire) < target) std::this_thread::yield();
}

std::string fresh_db(const char* name) {
  const std::string path = g_dir + "/" + name + ".db";
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path + suffix, ignored);
  std::filesystem::remove_all(path + ".parts", ignored);
  return path;
}

void BM_DrainRecords(benchmark::State& state) {
  auto store = drain::Store::open(fresh_db("drain"));
  if (!store) return state.SkipWithError(store.error().message.c_str());
  std::uint64_t records = 0;
  for (auto _ : state) {
    state.PauseTiming();
    produce();
    state.ResumeTiming();
    while (true) {
      drain::Batch batch;
      auto got = g_consumer->collect(batch, 65536);
      if (!got) return state.SkipWithError(got.error().message.c_str());
      if (got->records == 0) break;
      auto ok = store->write(batch);
      if (!ok) return state.SkipWithError(ok.error().message.c_str());
      if (auto released = g_consumer->release(); !released) return state.SkipWithError("release failed");
      records += got->records;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
}

// One iteration's batch as the drain built it, kept for the two baselines.
drain::Batch g_sample;

void make_sample() {
  produce();
  while (true) {
    drain::Batch batch;
    auto got = g_consumer->collect(batch, 65536);
    if (!got || got->records == 0) break;
    (void)g_consumer->release();
    for (auto& s : batch.segments) {
      if (g_sample.segments.empty()) g_sample.segments.push_back(s);
      else g_sample.segments[0].spans.insert(g_sample.segments[0].spans.end(), s.spans.begin(), s.spans.end());
    }
    g_sample.records += batch.records;
  }
  // A span whose begin and end fell in two batches is there twice (open,
  // then completed): keep its completed row, as the store's upsert does.
  auto& spans = g_sample.segments[0].spans;
  std::stable_sort(spans.begin(), spans.end(), [](const auto& a, const auto& b) { return a.span_id < b.span_id; });
  std::vector<drain::SpanRow> unique;
  for (auto& r : spans) {
    if (!unique.empty() && unique.back().span_id == r.span_id) {
      unique.back() = std::move(r);
    } else {
      unique.push_back(std::move(r));
    }
  }
  std::sort(unique.begin(), unique.end(), [](const auto& a, const auto& b) { return a.start_ns < b.start_ns; });
  spans = std::move(unique);
}

// New span ids each iteration, so every insert is a new row, as in the drain.
void renumber(drain::Batch& b, std::uint64_t iteration) {
  for (auto& s : b.segments) {
    for (auto& r : s.spans) r.span_id += iteration << 40;
  }
}

void BM_StoreWriteRows(benchmark::State& state) {
  auto store = drain::Store::open(fresh_db("store"));
  if (!store) return state.SkipWithError(store.error().message.c_str());
  std::uint64_t records = 0, iteration = 0;
  drain::Batch batch = g_sample;
  for (auto _ : state) {
    state.PauseTiming();
    renumber(batch, 1);
    ++iteration;
    state.ResumeTiming();
    for (std::size_t at = 0; at < batch.segments[0].spans.size(); at += 32768) {
      drain::Batch part;
      part.segments.push_back(drain::SegmentRows{});
      part.segments[0].process = batch.segments[0].process;
      const auto& spans = batch.segments[0].spans;
      part.segments[0].spans.assign(spans.begin() + static_cast<std::ptrdiff_t>(at),
                                    spans.begin() + static_cast<std::ptrdiff_t>(std::min(spans.size(), at + 32768)));
      if (auto ok = store->write(part); !ok) return state.SkipWithError(ok.error().message.c_str());
    }
    records += 2 * batch.segments[0].spans.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
}

void BM_SqliteCeiling(benchmark::State& state) {
  const std::string path = fresh_db("ceiling");
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  // The store's connection settings (schema.hpp), so only the work differs.
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, nullptr);
  sqlite3_exec(db, ("PRAGMA journal_size_limit=" + std::to_string(drain::schema::kWalLimitBytes)).c_str(), nullptr,
               nullptr, nullptr);
  // SQLite's automatic checkpoint, inline, at the store's threshold.
  sqlite3_wal_autocheckpoint(db, drain::Checkpointer::kStartPages);
  sqlite3_exec(db, drain::schema::kPartitionTables, nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO spans (process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, "
                     "duration_ns, status, error_sequence, code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     -1, &insert, nullptr);
  std::uint64_t records = 0;
  drain::Batch batch = g_sample;
  for (auto _ : state) {
    state.PauseTiming();
    renumber(batch, 1);
    state.ResumeTiming();
    const auto& spans = batch.segments[0].spans;
    for (std::size_t at = 0; at < spans.size(); at += 32768) {
      sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
      for (std::size_t i = at; i < std::min(spans.size(), at + 32768); ++i) {
        const drain::SpanRow& r = spans[i];
        sqlite3_bind_int64(insert, 1, 1);
        sqlite3_bind_int64(insert, 2, static_cast<std::int64_t>(r.span_id));
        sqlite3_bind_text(insert, 3, r.trace_id.data(), static_cast<int>(r.trace_id.size()), SQLITE_STATIC);
        sqlite3_bind_int64(insert, 4, static_cast<std::int64_t>(r.parent_span_id));
        sqlite3_bind_int64(insert, 5, r.tid);
        sqlite3_bind_text(insert, 6, r.group.data(), static_cast<int>(r.group.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert, 7, r.name.data(), static_cast<int>(r.name.size()), SQLITE_STATIC);
        sqlite3_bind_int64(insert, 8, r.start_ns);
        sqlite3_bind_int64(insert, 9, r.duration_ns.value_or(0));
        sqlite3_bind_int64(insert, 10, r.status);
        sqlite3_bind_int64(insert, 11, static_cast<std::int64_t>(r.error_sequence));
        sqlite3_bind_int64(insert, 12, static_cast<std::int64_t>(r.code));
        if (sqlite3_step(insert) != SQLITE_DONE) return state.SkipWithError(sqlite3_errmsg(db));
        sqlite3_reset(insert);
      }
      sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    }
    records += 2 * spans.size();
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
}

}  // namespace

int main(int argc, char** argv) {
  drain::configure_sqlite_process();  // as shmtrace-drain does; the ceiling gets it too
  // The ring must hold an iteration's records: set its size before the
  // runtime starts, by running this program again with it in the environment.
  if (std::getenv("SHMTRACE_RING_RECORDS") == nullptr) {
    ::setenv("SHMTRACE_RING_RECORDS", std::to_string(kRingRecords).c_str(), 1);
    ::execv("/proc/self/exe", argv);
    std::perror("drain_bench: re-exec");
    return 1;
  }
  std::atexit(shmtrace::bench::unlink_own_segment);
  if (shmtrace_enabled() == 0) {
    std::fprintf(stderr, "drain_bench: the shmtrace runtime is off in this process; nothing to measure\n");
    return 1;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  auto full = shmtrace::bench::with_defaults(argv[0], args, "0.5");
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;

  g_dir = std::filesystem::temp_directory_path() / ("shmtrace-drain-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(g_dir);
  std::thread producer(producer_main);
  produce();  // the producer's ring exists before we attach
  auto segment = reader::Segment::attach(shmtrace_segment_name(), reader::Access::kConsume);
  if (!segment) {
    std::fprintf(stderr, "drain_bench: cannot attach: %s\n", segment.error().message.c_str());
    g_quit = true;
    producer.join();
    return 1;
  }
  g_consumer.emplace(std::move(*segment), std::nullopt, nullptr);
  { drain::Batch discard; (void)g_consumer->collect(discard, 1 << 20); (void)g_consumer->release(); }
  make_sample();

  benchmark::RegisterBenchmark("BM_SqliteCeiling", BM_SqliteCeiling)->UseRealTime();
  benchmark::RegisterBenchmark("BM_StoreWriteRows", BM_StoreWriteRows)->UseRealTime();
  benchmark::RegisterBenchmark("BM_DrainRecords", BM_DrainRecords)->UseRealTime();
  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  g_quit.store(true, std::memory_order_release);
  producer.join();
  std::error_code ignored;
  std::filesystem::remove_all(g_dir, ignored);

  std::printf("\n==== drain_bench summary: records per second (a span is two), median ====\n");
  for (const char* name : {"BM_SqliteCeiling", "BM_StoreWriteRows", "BM_DrainRecords"}) {
    std::printf("%-20s %8.3f M records/s\n", name, rate(reporter.find(name)) / 1e6);
  }
  const double drain_rate = rate(reporter.find("BM_DrainRecords"));
  const double ceiling = rate(reporter.find("BM_SqliteCeiling"));
  if (drain_rate > 0 && ceiling > 0) {
    std::printf("ratio DrainRecords / SqliteCeiling        %6.3f  (target >= 0.70)\n", drain_rate / ceiling);
    std::printf("DrainRecords vs 1,000,000 records/s       %6.3f  (target >= 1.00)\n", drain_rate / 1e6);
  }
  return 0;
}
