// shmtrace top against real processes: st_dump makes a known number of
// calls (API spans and an instrumented function) and blocks, so the totals
// top reads from shared memory are exact; a burst of calls made between two
// refreshes shows in the interval's columns exactly once.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <sstream>

#include "support/live_tools.hpp"

namespace shmtrace::test {
namespace {

struct TopRow {
  double calls_per_s = 0, errors_per_s = 0;
  std::string p50, p99;
  std::uint64_t calls = 0, errors = 0, total = 0, total_errors = 0;
  std::string function;
};

struct TopBlock {
  double interval_s = 0;
  std::vector<TopRow> rows;
  const TopRow* row(const std::string& function) const {
    for (const TopRow& r : rows) {
      if (r.function == function) return &r;
    }
    return nullptr;
  }
};

// Blocks of `shmtrace top` output written to a pipe: a title line, the
// column names, one line per function, an empty line.
std::vector<TopBlock> parse_blocks(const std::string& out) {
  std::vector<TopBlock> blocks;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("shmtrace top")) {
      TopBlock b;
      const auto at = line.find("interval ");
      if (at != std::string::npos) b.interval_s = std::strtod(line.c_str() + at + 9, nullptr);
      blocks.push_back(b);
      continue;
    }
    if (line.empty() || line.find("CALLS/S") != std::string::npos || blocks.empty()) continue;
    std::istringstream fields(line);
    TopRow r;
    fields >> r.calls_per_s >> r.errors_per_s >> r.p50 >> r.p99 >> r.calls >> r.errors >> r.total >> r.total_errors;
    std::getline(fields >> std::ws, r.function);
    blocks.back().rows.push_back(r);
  }
  return blocks;
}

// "200.50us" -> 200500; "-" -> -1.
double duration_ns(const std::string& text) {
  if (text == "-") return -1;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = end;
  if (unit == "ns") return v;
  if (unit == "us") return v * 1e3;
  if (unit == "ms") return v * 1e6;
  if (unit == "s") return v * 1e9;
  ADD_FAILURE() << "bad duration " << text;
  return -1;
}

TEST(TopTest, OnceReportsExactTotalsPerFunction) {
  // 40 calls of span "work-a" (every 4th with status ERR), 25 of the
  // instrumented dump_traced_leaf, then it blocks.
  LiveProducer p = start_st_dump({"calls", "40", "25", "10"});
  SegmentGuard guard(p.segment);
  const RunResult r = run_cli({"top", "--pid", std::to_string(p.pid()), "--once", "--interval", "200ms"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "escape codes on a pipe";
  const auto blocks = parse_blocks(r.out);
  ASSERT_EQ(blocks.size(), 1u) << r.out;
  ASSERT_EQ(blocks[0].rows.size(), 2u) << r.out;
  const TopRow* api = blocks[0].row("work-a");
  ASSERT_NE(api, nullptr) << r.out;
  EXPECT_EQ(api->total, 40u);
  EXPECT_EQ(api->total_errors, 10u);
  EXPECT_EQ(api->calls, 0u);  // nothing ran during the interval
  EXPECT_EQ(api->errors, 0u);
  EXPECT_EQ(api->calls_per_s, 0.0);
  EXPECT_EQ(api->p50, "-");
  // The instrumented function, named through the module map and the resolver.
  const TopRow* code = blocks[0].row("dump_traced_leaf");
  ASSERT_NE(code, nullptr) << r.out;
  EXPECT_EQ(code->total, 25u);
  EXPECT_EQ(code->total_errors, 0u);
  EXPECT_EQ(code->calls, 0u);
  // Sorted by the interval's calls, then total calls.
  EXPECT_EQ(blocks[0].rows[0].function, "work-a");

  const RunResult limited = run_cli({"top", "--pid", std::to_string(p.pid()), "--once", "--interval", "50ms", "--limit", "1"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  const auto one = parse_blocks(limited.out);
  ASSERT_EQ(one.size(), 1u);
  ASSERT_EQ(one[0].rows.size(), 1u);
  EXPECT_EQ(one[0].rows[0].function, "work-a");
}

TEST(TopTest, IntervalColumnsCountTheCallsMadeBetweenRefreshes) {
  LiveProducer p = start_st_dump({"calls", "40", "25", "10"}, {{"SHMTRACE_SESSION", "topburst"}});
  SegmentGuard guard(p.segment);
  Child top = Child::start({shmtrace_cli(), "top", "--session", "topburst", "--interval", "300ms"}, {});
  // The first refresh is out: both of its snapshots are taken.
  ASSERT_TRUE(top.wait_for_output("\n\n", 10000));
  ::kill(p.pid(), SIGUSR1);  // 10 more calls of work-a, calls 41..50: 44 and 48 end with ERR
  ASSERT_TRUE(p.child.wait_for_output("burst 0 done"));
  // A refresh whose totals hold the whole burst: 50 calls, 12 errors.
  ASSERT_TRUE(top.wait_for_output("50" + std::string(9, ' ') + "12  work-a", 10000));  // %12llu %10llu  %s
  ::kill(top.pid(), SIGINT);
  const RunResult r = top.wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto blocks = parse_blocks(r.out);
  ASSERT_GE(blocks.size(), 2u) << r.out;
  std::uint64_t calls = 0, errors = 0;
  for (const TopBlock& b : blocks) {
    const TopRow* api = b.row("work-a");
    ASSERT_NE(api, nullptr) << r.out;
    calls += api->calls;
    errors += api->errors;
    EXPECT_NEAR(api->calls_per_s, static_cast<double>(api->calls) / b.interval_s, 0.1 + api->calls_per_s * 0.01);
    EXPECT_NEAR(api->errors_per_s, static_cast<double>(api->errors) / b.interval_s, 0.1 + api->errors_per_s * 0.01);
    if (api->calls > 1) {
      // Each call busy-waits 200 us: the interval's p50 (a bucket's
      // midpoint, within 1.6 %) cannot be below that.
      EXPECT_GE(duration_ns(api->p50), 200'000 * 0.98) << api->p50;
      EXPECT_GE(duration_ns(api->p99), duration_ns(api->p50));
    }
    const TopRow* code = b.row("dump_traced_leaf");
    ASSERT_NE(code, nullptr);
    EXPECT_EQ(code->calls, 0u);
    EXPECT_EQ(code->total, 25u);
  }
  EXPECT_EQ(calls, 10u) << r.out;
  EXPECT_EQ(errors, 2u) << r.out;
  EXPECT_EQ(blocks.front().row("work-a")->calls, 0u);  // before the burst
  EXPECT_EQ(blocks.back().row("work-a")->total, 50u);
}

TEST(TopTest, BadOptionsExitTwoAndAMissingPidOne) {
  const std::vector<std::vector<std::string>> bad = {
      {"top", "--interval", "soon"}, {"top", "--interval", "0"},    {"top", "--interval", "5x"},
      {"top", "--limit", "0"},       {"top", "--session", "1abc"}, {"top", "--bogus"},
      {"top", "extra"},
  };
  for (const auto& args : bad) {
    const RunResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << args[1] << " " << r.err;
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  }
  const RunResult missing = run_cli({"top", "--pid", "3999999997", "--once", "--interval", "10ms"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("3999999997"), std::string::npos) << missing.err;
  EXPECT_EQ(run_cli({"top", "--help"}).exit_code, 0);
}

}  // namespace
}  // namespace shmtrace::test
