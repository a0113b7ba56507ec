// shmtrace-drain's metrics (SPEC D6) end to end: producers run to completion
// first, their segments say exactly how many records they wrote; the real
// drain then serves /metrics on a port it picks, its totals must reach exactly
// that count, the text must pass `promtool check metrics`, and the metrics
// table must hold the same total after SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;
using namespace std::chrono_literals;

// Records the segment holds for the drain: every ring's and the overflow
// area's (what the drain counts in shmtrace_drain_records_total).
std::uint64_t records_written(const std::string& name) {
  auto segment = reader::Segment::attach(name, reader::Access::kReadOnly);
  EXPECT_TRUE(segment) << (segment ? "" : segment.error().message);
  if (!segment) return 0;
  std::uint64_t total = 0;
  for (std::uint32_t r = 0; r < segment->ring_count(); ++r) {
    auto info = segment->ring_info(r);
    EXPECT_TRUE(info) << (info ? "" : info.error().message);
    if (info) total += info->written + info->overflowed;
  }
  return total;
}

int run_promtool(const std::string& text, std::string& output) {
  const std::string in = "/tmp/shmtrace-test-" + std::to_string(::getpid()) + "-metrics.prom";
  const std::string out = in + ".out";
  if (FILE* f = std::fopen(in.c_str(), "w")) {
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  const int status = std::system(("promtool check metrics < " + in + " > " + out + " 2>&1").c_str());
  output = h::read_file(out);
  std::remove(in.c_str());
  std::remove(out.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(DrainMetrics, EndpointAndTableCountExactlyTheRecordsProducersWrote) {
  const SessionScope session;  // its drain takes only its producers' segments
  const TempDb db("metrics");
  const std::string err_path = db.path + ".stderr";
  std::remove(err_path.c_str());

  std::vector<std::pair<pid_t, std::string>> producers;
  std::vector<std::unique_ptr<SegmentGuard>> guards;
  std::uint64_t expected = 0;
  for (const char* per : {"2500", "7000"}) {
    const RunResult r = run({program_path("st_producer"), "sequence", "2", per});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string name = find_segment(r.pid, 0);
    ASSERT_NE(name, "");
    guards.push_back(std::make_unique<SegmentGuard>(name));
    producers.emplace_back(r.pid, name);
    expected += records_written(name);
  }
  ASSERT_GT(expected, 2u * (2500 + 7000)) << "counters plus text arguments and thread records";

  const pid_t drain = h::spawn(session.drain({"--db", db.path, "--metrics-port", "0", "--metrics-interval", "200ms"}),
                               err_path);
  ASSERT_GT(drain, 0);
  int port = -1;
  const std::regex announced(R"(metrics on http://127\.0\.0\.1:(\d+)/metrics)");
  ASSERT_TRUE(h::wait_until(
      [&] {
        std::smatch m;
        const std::string err = h::read_file(err_path);
        if (!std::regex_search(err, m, announced)) return false;
        port = std::stoi(m[1]);
        return true;
      },
      30s))
      << h::read_file(err_path);
  ASSERT_GT(port, 0);

  std::string text;
  const bool reached = h::wait_until(
      [&] {
        auto body = h::http_get(port, "/metrics");
        if (!body) return false;
        text = *body;
        auto v = h::metric_value(text, "shmtrace_drain_records_total");
        return v && *v >= static_cast<double>(expected);
      },
      60s);
  EXPECT_TRUE(reached) << "records_total never reached " << expected << "\n" << text;
  EXPECT_EQ(h::metric_value(text, "shmtrace_drain_records_total"), static_cast<double>(expected)) << text;
  EXPECT_EQ(h::metric_value(text, "shmtrace_drain_circuit_state"), 0.0) << text;
  const auto failures = h::metric_value(text, "shmtrace_drain_commit_failures_total");
  EXPECT_TRUE(!failures || *failures == 0.0) << text;
  EXPECT_EQ(h::http_get(port, "/nothing-here"), std::nullopt) << "only /metrics is served";
  EXPECT_EQ(h::lines_with(text, "shmtrace_drain_info{").size(), 1u) << text;
  EXPECT_EQ(h::lines_with(text, "shmtrace_drain_info{session=\"" + session.id() + "\"} 1").size(), 1u) << text;

  std::string promtool;
  EXPECT_EQ(run_promtool(text, promtool), 0) << promtool << "\n" << text;

  ASSERT_EQ(::kill(drain, SIGTERM), 0);
  const h::Exit stopped = h::wait_exit(drain, 60s);
  EXPECT_TRUE(stopped.exited) << "the drain did not stop within 60 s of SIGTERM";
  EXPECT_EQ(stopped.code, 0) << h::read_file(err_path);

  Database d(db);
  ASSERT_EQ(d.error, "");
  EXPECT_GE(d.number("SELECT count(*) FROM metrics WHERE name = 'shmtrace_drain_records_total'"), 1);
  EXPECT_EQ(d.number("SELECT CAST(value AS INTEGER) FROM metrics WHERE name = 'shmtrace_drain_records_total' "
                     "AND labels = '' ORDER BY ts_ns DESC, rowid DESC LIMIT 1"),
            static_cast<std::int64_t>(expected));
  for (const auto& [pid, name] : producers) {
    SCOPED_TRACE(name);
    EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + std::to_string(pid)), "exited");
    EXPECT_EQ(find_segment(pid, 0), "") << "drained and removed";
  }
  std::remove(err_path.c_str());
}

}  // namespace
}  // namespace shmtrace::test
