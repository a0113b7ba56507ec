// The metrics registry (drain/metrics/registry.hpp): exact text exposition,
// snapshot == render, the declaration rules, remove(), and updates from
// several threads while another renders.
#include "metrics/registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using shmtrace::drain::metrics::Counter;
using shmtrace::drain::metrics::format_value;
using shmtrace::drain::metrics::Histogram;
using shmtrace::drain::metrics::Labels;
using shmtrace::drain::metrics::Registry;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Declares and fills the registry every exact-output test reads.
void fill(Registry& registry) {
  registry.declare_counter("shmtrace_records_drained_total", "Records drained, by process.");
  registry.declare_gauge("shmtrace_ring_fill_ratio", "Fill of a ring \\ 0..1\nsampled each pass.");
  registry.declare_histogram("shmtrace_batch_commit_seconds", "Batch commit time.", {0.5, 1, 2});
  registry.declare_counter("shmtrace_drain_errors_total", "Drain errors.");

  Counter& first = registry.counter("shmtrace_records_drained_total", {{"pid", "7"}, {"exe", "/bin/true"}});
  first.add(3);
  first.add(2.5);
  registry.counter("shmtrace_records_drained_total", {{"pid", "42"}, {"exe", "/opt/a \"b\"\\c\nd"}}).add(10);
  registry.counter("shmtrace_drain_errors_total").add(1e6);

  registry.gauge("shmtrace_ring_fill_ratio", {{"pid", "42"}, {"ring", "0"}}).set(0.75);
  auto& other = registry.gauge("shmtrace_ring_fill_ratio", {{"pid", "42"}, {"ring", "1"}});
  other.set(-2);
  other.add(0.5);

  Histogram& commits = registry.histogram("shmtrace_batch_commit_seconds", {{"db", "main"}});
  for (const double v : {0.25, 0.5, 1.0, 4.0}) commits.observe(v);
}

const std::vector<std::string> kExpected = {
    "# HELP shmtrace_batch_commit_seconds Batch commit time.",
    "# TYPE shmtrace_batch_commit_seconds histogram",
    "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"0.5\"} 2",
    "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"1\"} 3",
    "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"2\"} 3",
    "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"+Inf\"} 4",
    "shmtrace_batch_commit_seconds_sum{db=\"main\"} 5.75",
    "shmtrace_batch_commit_seconds_count{db=\"main\"} 4",
    "# HELP shmtrace_drain_errors_total Drain errors.",
    "# TYPE shmtrace_drain_errors_total counter",
    "shmtrace_drain_errors_total 1e+06",
    "# HELP shmtrace_records_drained_total Records drained, by process.",
    "# TYPE shmtrace_records_drained_total counter",
    "shmtrace_records_drained_total{pid=\"42\",exe=\"/opt/a \\\"b\\\"\\\\c\\nd\"} 10",
    "shmtrace_records_drained_total{pid=\"7\",exe=\"/bin/true\"} 5.5",
    "# HELP shmtrace_ring_fill_ratio Fill of a ring \\\\ 0..1\\nsampled each pass.",
    "# TYPE shmtrace_ring_fill_ratio gauge",
    "shmtrace_ring_fill_ratio{pid=\"42\",ring=\"0\"} 0.75",
    "shmtrace_ring_fill_ratio{pid=\"42\",ring=\"1\"} -1.5",
};

TEST(MetricsRegistry, RendersEveryTypeExactly) {
  Registry registry;
  fill(registry);
  const std::string text = registry.render();
  EXPECT_EQ(lines_of(text), kExpected);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
}

TEST(MetricsRegistry, FormatsValuesAsPrometheusReadsThem) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(0.1), "0.1");
  EXPECT_EQ(format_value(123456789), "123456789");
  EXPECT_EQ(format_value(1e21), "1e+21");
  EXPECT_EQ(format_value(-0.25), "-0.25");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

std::string escape_value(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

TEST(MetricsRegistry, SnapshotHoldsTheSamplesOfRender) {
  Registry registry;
  fill(registry);
  const std::vector<Registry::Sample> samples = registry.snapshot();

  std::vector<std::string> from_snapshot;
  for (const Registry::Sample& sample : samples) {
    std::string line = sample.name;
    if (!sample.labels.empty()) {
      line += '{';
      for (std::size_t i = 0; i < sample.labels.size(); ++i) {
        line += (i > 0 ? "," : "") + sample.labels[i].first + "=\"" + escape_value(sample.labels[i].second) + "\"";
      }
      line += '}';
    }
    from_snapshot.push_back(line + " " + format_value(sample.value));
  }
  std::vector<std::string> from_render;
  for (const std::string& line : lines_of(registry.render())) {
    if (!line.starts_with("#")) from_render.push_back(line);
  }
  EXPECT_EQ(from_snapshot, from_render);

  ASSERT_EQ(samples.size(), 11u);
  EXPECT_EQ(samples[3], (Registry::Sample{"shmtrace_batch_commit_seconds_bucket", {{"db", "main"}, {"le", "+Inf"}}, 4}));
  EXPECT_EQ(samples[4], (Registry::Sample{"shmtrace_batch_commit_seconds_sum", {{"db", "main"}}, 5.75}));
  EXPECT_EQ(samples[5], (Registry::Sample{"shmtrace_batch_commit_seconds_count", {{"db", "main"}}, 4}));
  EXPECT_EQ(samples[8], (Registry::Sample{"shmtrace_records_drained_total", {{"pid", "7"}, {"exe", "/bin/true"}}, 5.5}));
}

TEST(MetricsRegistry, SeriesAreStableAndCreatedOnce) {
  Registry registry;
  registry.declare_counter("a_total", "A.");
  Counter& first = registry.counter("a_total", {{"k", "v"}});
  Counter& again = registry.counter("a_total", {{"k", "v"}});
  EXPECT_EQ(&first, &again);
  for (int i = 0; i < 100; ++i) registry.counter("a_total", {{"k", std::to_string(i)}});
  EXPECT_EQ(&first, &registry.counter("a_total", {{"k", "v"}}));
  first.add();
  EXPECT_EQ(again.value(), 1);
  EXPECT_EQ(registry.snapshot().size(), 101u);
}

TEST(MetricsRegistry, CountersNeverGoDown) {
  Registry registry;
  registry.declare_counter("c_total", "C.");
  Counter& counter = registry.counter("c_total");
  counter.add(2);
  counter.add(-1);
  counter.add(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(counter.value(), 2);
  counter.set_total(10);
  EXPECT_EQ(counter.value(), 10);
  counter.set_total(7);  // a stale read of the mirrored total
  EXPECT_EQ(counter.value(), 10);
  counter.add(1);
  EXPECT_EQ(counter.value(), 11);
}

TEST(MetricsRegistry, HistogramBucketsUseLessOrEqual) {
  Registry registry;
  registry.declare_histogram("h_seconds", "H.", {1, 2, std::numeric_limits<double>::infinity()});
  Histogram& h = registry.histogram("h_seconds");
  EXPECT_EQ(h.upper_bounds(), (std::vector<double>{1, 2}));  // the trailing +Inf is implied
  for (const double v : {-5.0, 1.0, 1.5, 2.0, 2.5, std::numeric_limits<double>::infinity()}) h.observe(v);
  const Histogram::Data data = h.read();
  EXPECT_EQ(data.cumulative, (std::vector<std::uint64_t>{2, 4, 6}));
  EXPECT_EQ(data.count, 6u);
  EXPECT_EQ(data.sum, std::numeric_limits<double>::infinity());
  // Reading folds the halves together; a second reading sees the same.
  h.observe(0.5);
  const Histogram::Data again = h.read();
  EXPECT_EQ(again.cumulative, (std::vector<std::uint64_t>{3, 5, 7}));
  EXPECT_EQ(again.count, 7u);
  EXPECT_EQ(h.read().cumulative, again.cumulative);
}

// The message of the std::logic_error that `f` throws, or "" if none.
template <class F>
std::string logic_error_of(F&& f) {
  try {
    f();
  } catch (const std::logic_error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_LOGIC_ERROR(statement, fragment)                                            \
  do {                                                                                      \
    const std::string message = logic_error_of([&] { statement; });                        \
    EXPECT_NE(message.find(fragment), std::string::npos)                                   \
        << #statement << " threw \"" << message << "\", expected it to mention " << fragment; \
  } while (false)

TEST(MetricsRegistry, RejectsBadDeclarations) {
  Registry registry;
  EXPECT_LOGIC_ERROR(registry.declare_gauge("1abc", "x"), "invalid metric name \"1abc\"");
  EXPECT_LOGIC_ERROR(registry.declare_gauge("a-b", "x"), "invalid metric name");
  EXPECT_LOGIC_ERROR(registry.declare_gauge("", "x"), "invalid metric name");
  EXPECT_LOGIC_ERROR(registry.declare_gauge("a b", "x"), "invalid metric name");
  EXPECT_LOGIC_ERROR(registry.declare_gauge("g", ""), "no help text");
  EXPECT_LOGIC_ERROR(registry.declare_counter("requests", "x"), "must end in _total");
  EXPECT_LOGIC_ERROR(registry.declare_gauge("g_total", "x"), "must not end in _total");
  EXPECT_LOGIC_ERROR(registry.declare_histogram("h_seconds", "x", {1, 1}), "strictly increasing");
  EXPECT_LOGIC_ERROR(registry.declare_histogram("h_seconds", "x", {2, 1}), "strictly increasing");
  EXPECT_LOGIC_ERROR(registry.declare_histogram("h_seconds", "x", {std::numeric_limits<double>::quiet_NaN()}),
                     "finite");

  // Valid names, including a colon and a leading underscore.
  EXPECT_EQ(logic_error_of([&] { registry.declare_gauge("_ns:g9", "x"); }), "");

  registry.declare_counter("c_total", "C.");
  EXPECT_EQ(logic_error_of([&] { registry.declare_counter("c_total", "C."); }), "");  // the same again is fine
  EXPECT_LOGIC_ERROR(registry.declare_counter("c_total", "Other help."), "declared twice");
  registry.declare_gauge("g", "G.");
  EXPECT_LOGIC_ERROR(registry.declare_histogram("g", "G.", {}), "already a gauge");
  registry.declare_histogram("h", "H.", {1});
  EXPECT_LOGIC_ERROR(registry.declare_histogram("h", "H.", {2}), "declared twice");
  EXPECT_LOGIC_ERROR(registry.declare_gauge("h_count", "x"), "already exposed by h");
  // c_bucket, c_sum and c_count are free beside c_total.
  EXPECT_EQ(logic_error_of([&] { registry.declare_histogram("c", "x", {}); }), "");
}

TEST(MetricsRegistry, RejectsBadLookups) {
  Registry registry;
  registry.declare_counter("c_total", "C.");
  registry.declare_histogram("h", "H.", {1});
  EXPECT_LOGIC_ERROR(registry.counter("missing_total"), "missing_total was never declared");
  EXPECT_LOGIC_ERROR(registry.gauge("c_total"), "c_total is a counter, not a gauge");
  EXPECT_LOGIC_ERROR(registry.counter("h"), "h is a histogram, not a counter");
  EXPECT_LOGIC_ERROR(registry.counter("c_total", {{"__name", "x"}}), "invalid label name \"__name\"");
  EXPECT_LOGIC_ERROR(registry.counter("c_total", {{"9x", "x"}}), "invalid label name");
  EXPECT_LOGIC_ERROR(registry.counter("c_total", {{"a-b", "x"}}), "invalid label name");
  EXPECT_LOGIC_ERROR(registry.counter("c_total", {{"a", "1"}, {"a", "2"}}), "label \"a\" given twice");
  EXPECT_LOGIC_ERROR(registry.histogram("h", {{"le", "1"}}), "\"le\" is reserved");

  registry.counter("c_total", {{"pid", "1"}, {"ring", "0"}});
  EXPECT_LOGIC_ERROR(registry.counter("c_total", {{"pid", "2"}}), "{pid,ring}");
  EXPECT_LOGIC_ERROR(registry.counter("c_total", {{"ring", "0"}, {"pid", "2"}}), "{pid,ring}");
  EXPECT_EQ(logic_error_of([&] { registry.counter("c_total", {{"pid", "2"}, {"ring", "0"}}); }), "");
  // A failed lookup created nothing.
  EXPECT_EQ(registry.snapshot().size(), 2u);
}

TEST(MetricsRegistry, RemoveDropsEverySeriesOfALabelValue) {
  Registry registry;
  fill(registry);
  EXPECT_EQ(registry.remove("pid", "42"), 3u);  // one counter, two gauges
  EXPECT_EQ(registry.remove("pid", "42"), 0u);
  EXPECT_EQ(registry.remove("nosuch", "x"), 0u);

  const std::vector<std::string> expected = {
      "# HELP shmtrace_batch_commit_seconds Batch commit time.",
      "# TYPE shmtrace_batch_commit_seconds histogram",
      "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"0.5\"} 2",
      "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"1\"} 3",
      "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"2\"} 3",
      "shmtrace_batch_commit_seconds_bucket{db=\"main\",le=\"+Inf\"} 4",
      "shmtrace_batch_commit_seconds_sum{db=\"main\"} 5.75",
      "shmtrace_batch_commit_seconds_count{db=\"main\"} 4",
      "# HELP shmtrace_drain_errors_total Drain errors.",
      "# TYPE shmtrace_drain_errors_total counter",
      "shmtrace_drain_errors_total 1e+06",
      "# HELP shmtrace_records_drained_total Records drained, by process.",
      "# TYPE shmtrace_records_drained_total counter",
      "shmtrace_records_drained_total{pid=\"7\",exe=\"/bin/true\"} 5.5",
  };  // the gauge family has no series left, so it is left out
  EXPECT_EQ(lines_of(registry.render()), expected);

  // The family stays declared; a series made again starts from zero.
  registry.gauge("shmtrace_ring_fill_ratio", {{"pid", "42"}, {"ring", "0"}}).add(1);
  EXPECT_EQ(registry.gauge("shmtrace_ring_fill_ratio", {{"pid", "42"}, {"ring", "0"}}).value(), 1);
  EXPECT_EQ(registry.remove("db", "main"), 1u);
  EXPECT_EQ(registry.snapshot().size(), 3u);
}

// Histogram::read() beside two observers, as fast as it can: every reading
// must hold whole observations only. (Reading the atomics without the
// hot/cold flip fails this within milliseconds: a reading catches an
// observation counted in its bucket but not yet in _sum or _count.)
TEST(MetricsRegistry, HistogramReadingsHoldWholeObservations) {
  constexpr int kObservers = 2;
  // The observers run until this many readings found new observations, so
  // reading and observing overlap however the threads are scheduled (or
  // until the deadline, on a machine too loaded to get there).
  constexpr std::uint64_t kReadingsWithProgress = 200;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  Histogram histogram({0.5, 2});
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> readings_with_progress{0};
  std::uint64_t readings = 0;
  std::uint64_t torn = 0;
  std::thread reader([&] {
    std::uint64_t last_count = 0;
    while (!done.load(std::memory_order_acquire)) {
      const Histogram::Data data = histogram.read();
      // Every observation is 1.0.
      if (data.sum != static_cast<double>(data.count) || data.cumulative[0] != 0 ||
          data.cumulative[1] != data.count || data.cumulative[2] != data.count || data.count < last_count) {
        ++torn;
      }
      if (data.count > last_count) readings_with_progress.fetch_add(1, std::memory_order_relaxed);
      last_count = data.count;
      ++readings;
    }
  });
  std::atomic<std::uint64_t> observed{0};
  std::vector<std::thread> observers;
  for (int t = 0; t < kObservers; ++t) {
    observers.emplace_back([&] {
      std::uint64_t mine = 0;
      while (readings_with_progress.load(std::memory_order_relaxed) < kReadingsWithProgress &&
             std::chrono::steady_clock::now() < deadline) {
        for (int i = 0; i < 16; ++i) histogram.observe(1.0);
        mine += 16;
      }
      observed.fetch_add(mine, std::memory_order_relaxed);
    });
  }
  for (std::thread& observer : observers) observer.join();
  done.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(torn, 0u) << "of " << readings << " readings";
  EXPECT_GT(readings_with_progress.load(), 0u) << "reading and observing never overlapped";
  const Histogram::Data data = histogram.read();
  EXPECT_EQ(data.count, observed.load());
  EXPECT_EQ(data.sum, static_cast<double>(observed.load()));
  EXPECT_EQ(data.cumulative, (std::vector<std::uint64_t>{0, data.count, data.count}));
}

// Four threads update shared and private series (and create new ones) while
// a fifth renders. Every rendering must be consistent per series, and the
// totals exact after the join.
TEST(MetricsRegistry, ConcurrentUpdatesWhileRendering) {
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  Registry registry;
  registry.declare_counter("t_events_total", "Events.");
  registry.declare_counter("t_lookups_total", "Series made while rendering.");
  registry.declare_gauge("t_level", "Level.");
  registry.declare_histogram("t_latency_seconds", "Latency.", {0.5, 2});
  Counter& shared = registry.counter("t_events_total", {{"thread", "all"}});
  auto& level = registry.gauge("t_level");
  Histogram& latency = registry.histogram("t_latency_seconds");

  std::atomic<bool> done{false};
  std::atomic<int> renders{0};
  std::thread renderer([&] {
    double last_shared = 0;
    while (!done.load(std::memory_order_acquire)) {
      std::map<std::string, double> values;
      for (const Registry::Sample& sample : registry.snapshot()) {
        std::string key = sample.name;
        for (const auto& [name, value] : sample.labels) key += "," + name + "=" + value;
        values[key] = sample.value;
      }
      // Every observation is 1.0: in a consistent reading sum == count ==
      // the le="2" and +Inf buckets, and le="0.5" stays empty.
      const double count = values["t_latency_seconds_count"];
      EXPECT_EQ(values["t_latency_seconds_sum"], count);
      EXPECT_EQ(values["t_latency_seconds_bucket,le=+Inf"], count);
      EXPECT_EQ(values["t_latency_seconds_bucket,le=2"], count);
      EXPECT_EQ(values["t_latency_seconds_bucket,le=0.5"], 0);
      const double now_shared = values["t_events_total,thread=all"];
      EXPECT_GE(now_shared, last_shared);
      last_shared = now_shared;
      (void)registry.render();
      renders.fetch_add(1, std::memory_order_relaxed);
    }
  });

  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      Counter& mine = registry.counter("t_events_total", {{"thread", std::to_string(t)}});
      for (int i = 0; i < kIterations; ++i) {
        shared.add();
        mine.add(2);
        level.add(1);
        latency.observe(1.0);
        if (i % 1000 == 0) {
          registry.counter("t_lookups_total", {{"thread", std::to_string(t)}, {"n", std::to_string(i)}}).add();
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  // Let the renderer run at least once after the workers, whatever the timing.
  while (renders.load(std::memory_order_relaxed) < 2) std::this_thread::yield();
  done.store(true, std::memory_order_release);
  renderer.join();

  EXPECT_EQ(shared.value(), kThreads * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(registry.counter("t_events_total", {{"thread", std::to_string(t)}}).value(), 2 * kIterations);
  }
  EXPECT_EQ(level.value(), kThreads * kIterations);
  const Histogram::Data data = latency.read();
  EXPECT_EQ(data.count, std::uint64_t{kThreads} * kIterations);
  EXPECT_EQ(data.sum, kThreads * kIterations);
  EXPECT_EQ(data.cumulative, (std::vector<std::uint64_t>{0, data.count, data.count}));
  // 4 threads x 20 lookups, each its own series.
  std::size_t lookups = 0;
  for (const Registry::Sample& sample : registry.snapshot()) {
    if (sample.name == "t_lookups_total") {
      ++lookups;
      EXPECT_EQ(sample.value, 1);
    }
  }
  EXPECT_EQ(lookups, std::size_t{kThreads} * (kIterations / 1000));
}

}  // namespace
