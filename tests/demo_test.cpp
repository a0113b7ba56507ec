// The quick start's main job, as scripts/demo.sh runs it: `shmtrace run`
// traces shmtrace-demo-workload, and shmtrace-demo-check finds every count
// exact; and the check fails, naming each count, when records are missing
// (sampling drops whole requests).
#include <gtest/gtest.h>

#include <filesystem>

#include "support/drain_harness.hpp"
#include "support/run_support.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

std::string tool(const std::string& name) {
  return (std::filesystem::path(SHMTRACE_CLI_PATH).parent_path() / name).string();
}

const std::vector<std::string> kSmall = {"--workers", "2", "--threads", "2", "--requests", "300"};

std::vector<std::string> with(std::vector<std::string> argv, const std::vector<std::string>& more) {
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

TEST(Demo, TheWorkloadTracedByRunChecksOutExactly) {
  TempDir dir("demo");
  const std::string db = dir / "demo.db";
  const RunResult traced = run(run_argv({"--db", db, "--policy", "block"},
                                        with({tool("shmtrace-demo-workload")}, kSmall)),
                               {{"SHMTRACE_BLOCK_TIMEOUT_MS", "30000"}});
  ASSERT_EQ(traced.exit_code, 0) << traced.err;
  EXPECT_EQ(traced.out, "shmtrace demo workload: 2 worker processes x 2 threads x 300 requests\n");
  EXPECT_NE(traced.err.find("3600 spans stored, 0 records dropped, 120 errors"), std::string::npos) << traced.err;
  const RunResult checked = run(with({tool("shmtrace-demo-check"), "--db", db}, kSmall));
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  EXPECT_NE(checked.out.find("OK: every record of 2 worker processes stored exactly once (3600 spans, 120 errors, "
                             "1200 passwords redacted, 0 dropped)"),
            std::string::npos)
      << checked.out;
  EXPECT_EQ(checked.err, "");
}

TEST(Demo, TheCheckNamesEveryCountThatIsNotExact) {
  TempDir dir("demo");
  const std::string db = dir / "demo.db";
  const RunResult traced = run(run_argv({"--db", db, "--policy", "block", "--sample", "0.5"},
                                        with({tool("shmtrace-demo-workload")}, kSmall)),
                               {{"SHMTRACE_BLOCK_TIMEOUT_MS", "30000"}});
  ASSERT_EQ(traced.exit_code, 0) << traced.err;
  const RunResult checked = run(with({tool("shmtrace-demo-check"), "--db", db}, kSmall));
  EXPECT_EQ(checked.exit_code, 1);
  EXPECT_EQ(checked.out.find("OK:"), std::string::npos) << checked.out;
  // Sampled-out requests leave no spans, passwords or counters; the exact
  // call counts come from the statistics and still match.
  EXPECT_EQ(harness::lines_with(checked.err, "MISMATCH: spans: ").size(), 1u) << checked.err;
  EXPECT_EQ(harness::lines_with(checked.err, "MISMATCH: password arguments: ").size(), 1u) << checked.err;
  EXPECT_TRUE(harness::lines_with(checked.err, "calls (call_stats)").empty()) << checked.err;
  // The wrong workload size is a mismatch too.
  const RunResult wrong = run({tool("shmtrace-demo-check"), "--db", db, "--workers", "3"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_EQ(harness::lines_with(wrong.err, "MISMATCH: worker processes: 2 in the database, expected 3").size(), 1u)
      << wrong.err;
}

TEST(Demo, TheCheckRefusesAMissingDatabaseAndBadUsage) {
  TempDir dir("demo");
  const RunResult missing = run({tool("shmtrace-demo-check"), "--db", dir / "none.db"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
  EXPECT_NE(missing.err.find(dir / "none.db"), std::string::npos) << missing.err;
  EXPECT_EQ(run({tool("shmtrace-demo-check")}).exit_code, 2);
  // No runtime: a bad command line must not leave a segment behind.
  EXPECT_EQ(run({tool("shmtrace-demo-workload"), "--workers", "0"}, {{"SHMTRACE_DISABLE", "1"}}).exit_code, 2);
}

}  // namespace
}  // namespace shmtrace::test
