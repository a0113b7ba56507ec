// Spans exported per second by `shmtrace export` in each format, beside a
// plain scan of the same rows.
//
// The bench writes a database through the drain's own store (untimed):
// kSpans spans on 4 threads of 2 processes, call trees 4 deep, each span
// with an int argument, every 4th with a text result, a counter every 16th.
// Then, in the same run:
//   BM_PlainScan       baseline: SELECT of the columns the export reads, every
//                      row of spans and of span_data, each column fetched
//   BM_SpanScan        query::SpanScan over the same rows (per-span lookup of
//                      its arguments), no output
//   BM_Export/chrome   the shmtrace executable writing Chrome JSON to a file
//   BM_Export/perfetto ... the Perfetto protobuf trace
//   BM_Export/otlp     ... OTLP/JSON Lines
// The summary prints each as a ratio of the plain scan's rate, and the
// bytes per span of each format (the Perfetto trace's size beside JSON's).
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "bench_support.hpp"
#include "query/database.hpp"
#include "query/span_scan.hpp"
#include "store/store.hpp"

namespace {

namespace drain = shmtrace::drain;
constexpr std::size_t kSpans = 100'000;
constexpr int kThreads = 4;
constexpr int kDepth = 4;

std::string g_db;
std::map<std::string, double> g_bytes_per_span;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Span i of a thread: depth i % kDepth, parent the span one level up.
bool fill(drain::Store& store) {
  const std::int64_t base = now_ns() - 60'000'000'000;
  std::uint64_t position = 0;
  for (int process = 0; process < 2; ++process) {
    drain::Batch b;
    drain::SegmentRows& rows = b.segments.emplace_back();
    rows.process.segment = "bench." + std::to_string(process);
    rows.process.pid = 1000 + static_cast<std::uint32_t>(process);
    rows.process.ppid = 1;
    rows.process.exe = "/usr/bin/bench_app";
    rows.process.cmdline = "bench_app --serve";
    rows.process.start_ns = base;
    const std::size_t per_thread = kSpans / 2 / kThreads;
    for (int t = 0; t < kThreads; ++t) {
      const std::uint32_t tid = rows.process.pid * 10 + static_cast<std::uint32_t>(t);
      std::uint64_t stack[kDepth] = {};
      for (std::size_t i = 0; i < per_thread; ++i) {
        const int depth = static_cast<int>(i % kDepth);
        drain::SpanRow r;
        r.span_id = (std::uint64_t{tid} << 32) + i + 1;
        r.trace_id = "0123456789abcdef0123456789abcdef";
        r.parent_span_id = depth == 0 ? 0 : stack[depth - 1];
        stack[depth] = r.span_id;
        r.tid = tid;
        r.group = "orders";
        r.name = "orders::level" + std::to_string(depth);
        // A root every 4 spans lasting 1000 ns; each level 100 ns inside its parent.
        const std::int64_t root_start = base + static_cast<std::int64_t>(i / kDepth) * 2000;
        r.start_ns = root_start + depth * 100;
        r.duration_ns = 1000 - depth * 200;
        rows.span_data.push_back(drain::SpanDataRow{static_cast<std::uint32_t>(t), position++, r.span_id, "arg",
                                                    r.start_ns + 1, tid, "order_id", std::to_string(i), "int", 0});
        if (i % 4 == 0) {
          rows.span_data.push_back(drain::SpanDataRow{static_cast<std::uint32_t>(t), position++, r.span_id, "result",
                                                      r.start_ns + 2, tid, "outcome", "accepted", "string", 0});
        }
        if (i % 16 == 0) {
          rows.span_data.push_back(drain::SpanDataRow{static_cast<std::uint32_t>(t), position++, r.span_id,
                                                      "counter", r.start_ns + 3, tid, "queue_depth",
                                                      std::to_string(i % 100), "int", 0});
        }
        rows.spans.push_back(std::move(r));
      }
    }
    if (!store.write(b)) return false;
  }
  return true;
}

void BM_PlainScan(benchmark::State& state) {
  auto db = shmtrace::query::open_database(g_db);
  if (!db) return state.SkipWithError(db.error().c_str());
  std::int64_t rows = 0;
  for (auto _ : state) {
    for (const char* sql : {"SELECT process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, "
                            "duration_ns, status, error_sequence, code FROM spans",
                            "SELECT process_key, span_id, kind, name, value, value_type, ts_ns FROM span_data"}) {
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(db->handle(), sql, -1, &s, nullptr);
      while (sqlite3_step(s) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(s); ++c) {
          if (sqlite3_column_type(s, c) == SQLITE_TEXT) benchmark::DoNotOptimize(sqlite3_column_text(s, c));
          else benchmark::DoNotOptimize(sqlite3_column_int64(s, c));
        }
        ++rows;
      }
      sqlite3_finalize(s);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kSpans));
  state.counters["rows"] = static_cast<double>(rows) / static_cast<double>(state.iterations());
}

void BM_SpanScan(benchmark::State& state) {
  auto db = shmtrace::query::open_database(g_db);
  if (!db) return state.SkipWithError(db.error().c_str());
  for (auto _ : state) {
    auto scan = shmtrace::query::SpanScan::open(db->handle(), {});
    if (!scan) return state.SkipWithError(scan.error().c_str());
    shmtrace::query::SpanRow row;
    std::size_t n = 0;
    while (true) {
      auto more = scan->next_span(row);
      if (!more || !*more) break;
      ++n;
    }
    if (n != kSpans) return state.SkipWithError("the scan missed spans");
    shmtrace::query::CounterRow counter;
    while (true) {
      auto more = scan->next_counter(counter);
      if (!more || !*more) break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kSpans));
}

// The real command, run as users run it; its start (a few ms) is in the figure.
void BM_Export(benchmark::State& state, const char* format) {
  const std::string out = g_db + "." + format;
  for (auto _ : state) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl(SHMTRACE_CLI_PATH, SHMTRACE_CLI_PATH, "export", g_db.c_str(), "--format", format, "-o", out.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return state.SkipWithError("shmtrace export failed");
  }
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(out, ec);
  g_bytes_per_span[format] = static_cast<double>(bytes) / static_cast<double>(kSpans);
  std::filesystem::remove(out, ec);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kSpans));
  state.counters["bytes_per_span"] = g_bytes_per_span[format];
}

}  // namespace

int main(int argc, char** argv) {
  char dir_template[] = "/tmp/shmtrace-export-bench-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return 1;
  const std::string dir = dir_template;
  g_db = dir + "/export.db";
  {
    drain::StoreOptions options;
    options.retention = std::chrono::seconds(24 * 3600);
    auto store = drain::Store::open(g_db, options);
    if (!store || !fill(*store)) {
      std::fprintf(stderr, "export_bench: could not write the database in %s\n", dir.c_str());
      return 1;
    }
  }
  benchmark::RegisterBenchmark("BM_PlainScan", BM_PlainScan)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("BM_SpanScan", BM_SpanScan)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (const char* format : {"chrome", "perfetto", "otlp"}) {
    benchmark::RegisterBenchmark((std::string("BM_Export_") + format).c_str(), BM_Export, format)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  auto args = shmtrace::bench::with_defaults(argv[0], std::vector<std::string>(argv + 1, argv + argc), "0.5");
  int bench_argc = args.argc();
  benchmark::Initialize(&bench_argc, args.argv.data());
  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double plain = shmtrace::bench::rate(reporter.find("BM_PlainScan"));
  std::printf("\n%zu spans (and their span_data rows) per iteration\n", kSpans);
  for (const char* name : {"BM_SpanScan", "BM_Export_chrome", "BM_Export_perfetto", "BM_Export_otlp"}) {
    const double r = shmtrace::bench::rate(reporter.find(name));
    if (r == 0 || plain == 0) {
      std::printf("ratio %-34s n/a\n", name);
      continue;
    }
    std::printf("ratio %-34s %6.3f  (%.0f spans/s beside the plain scan's %.0f)\n", name, r / plain, r, plain);
  }
  for (const auto& [format, bytes] : g_bytes_per_span) std::printf("size  %-10s %8.1f bytes/span\n", format.c_str(), bytes);
  if (g_bytes_per_span.contains("chrome") && g_bytes_per_span.contains("perfetto")) {
    std::printf("size  chrome JSON / perfetto: %.2fx\n", g_bytes_per_span["chrome"] / g_bytes_per_span["perfetto"]);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return reporter.errors().empty() ? 0 : 1;
}
