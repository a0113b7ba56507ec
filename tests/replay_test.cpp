// shmtrace replay on databases the real drain wrote from real programs: a
// known call sequence line by line (durations masked), --depth and
// --min-duration, gaps where a tiny ring dropped records, an unfinished
// call of a crashed process, and the command line's failures.
#include <gtest/gtest.h>

#include <regex>

#include "support/cli_runs.hpp"

namespace shmtrace::test {
namespace {

using namespace cli;

// The lines with the duration column (the first 12 characters) masked.
std::vector<std::string> masked(const std::string& out) {
  std::vector<std::string> l = lines(out);
  for (std::string& line : l) {
    if (line.size() > 12 && line[0] != '#') line = "DURATION " + line.substr(12);
  }
  return l;
}

std::string tid_column(pid_t tid) {
  char b[32];
  std::snprintf(b, sizeof b, "[%6d] | ", static_cast<int>(tid));
  return b;
}

TEST(Replay, KnownCallSequenceLineByLine) {
  const TempDb db("replay-calls");
  const RunResult r = run({program_path("st_report"), "calls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  drain_into(db);
  const RunResult out = shmtrace({"replay", db, "--pid", std::to_string(r.pid)});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  const std::string t = tid_column(r.pid);
  const std::vector<std::string> expected = {
      "# DURATION     TID     FUNCTION",
      "DURATION " + t + "main() {",
      "DURATION " + t + "  parse(path=/etc/x) = 3;",
      "DURATION " + t + "  work(n=2) {",
      "DURATION " + t + "    leaf();",
      "DURATION " + t + "    leaf();",
      "DURATION " + t + "    fail(); /* error: Oops: it failed */",
      "DURATION " + t + "  } /* work */",
      "DURATION " + t + "} /* main */",
  };
  EXPECT_EQ(masked(out.out), expected) << out.out;
  // Opening lines have no duration; finished calls one in uftrace's form.
  const auto raw = lines(out.out);
  ASSERT_EQ(raw.size(), expected.size());
  EXPECT_EQ(raw[1].substr(0, 11), std::string(11, ' '));
  EXPECT_TRUE(std::regex_match(raw[2].substr(0, 11), std::regex(" [ 0-9]{3}\\.[0-9]{3} (us|ms| s)"))) << raw[2];
  EXPECT_TRUE(std::regex_match(raw[8].substr(0, 11), std::regex(" [ 0-9]{3}\\.[0-9]{3} (us|ms| s)"))) << raw[8];

  // --depth 2: main and its direct calls; work's children hidden, so it is a leaf.
  const RunResult shallow = shmtrace({"replay", db, "--pid", std::to_string(r.pid), "--depth", "2"});
  ASSERT_EQ(shallow.exit_code, 0) << shallow.err;
  EXPECT_EQ(masked(shallow.out), (std::vector<std::string>{
                                     "# DURATION     TID     FUNCTION",
                                     "DURATION " + t + "main() {",
                                     "DURATION " + t + "  parse(path=/etc/x) = 3;",
                                     "DURATION " + t + "  work(n=2);",
                                     "DURATION " + t + "} /* main */",
                                 }))
      << shallow.out;
  // --tid of another thread: nothing but the header.
  const RunResult none = shmtrace({"replay", db, "--tid", "999999999"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(lines(none.out).size(), 1u);
}

TEST(Replay, MinDurationHidesShorterCalls) {
  const TempDb db("replay-measure");
  const RunResult r = run({program_path("st_report"), "measure"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  drain_into(db);
  Database d(db);
  const std::string keys = "(SELECT process_key FROM processes WHERE pid = " + std::to_string(r.pid) + ")";
  const std::int64_t long_leaves =
      d.number("SELECT count(*) FROM spans WHERE name = 'm-leaf' AND duration_ns >= 100000 AND process_key IN " + keys);
  ASSERT_GE(long_leaves, 4);
  const RunResult out = shmtrace({"replay", db, "--pid", std::to_string(r.pid), "--min-duration", "100us"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  const auto l = masked(out.out);
  const std::string t = tid_column(r.pid);
  ASSERT_EQ(l.size(), static_cast<std::size_t>(long_leaves) + 3) << out.out;
  EXPECT_EQ(l[1], "DURATION " + t + "m-outer() {");
  for (std::size_t i = 2; i + 1 < l.size(); ++i) {
    EXPECT_TRUE(l[i] == "DURATION " + t + "  m-leaf();" || l[i] == "DURATION " + t + "  m-leaf(); /* ERR */")
        << l[i];
  }
  EXPECT_EQ(l.back(), "DURATION " + t + "} /* m-outer */");
}

TEST(Replay, GapsAreMarkedWithTheRecordsDropped) {
  const TempDb db("replay-gaps");
  const RunResult r = run({program_path("st_stats_threads"), "2", "3000"},
                          {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  drain_into(db);
  Database d(db);
  const std::string keys = "(SELECT process_key FROM processes WHERE pid = " + std::to_string(r.pid) + ")";
  // Every gap of the process: in its thread's tree, or as thread 0 when
  // the drain could not tell the thread.
  const std::int64_t expected = d.number("SELECT coalesce(sum(dropped), 0) FROM gaps WHERE process_key IN " + keys);
  ASSERT_GT(expected, 0);
  const RunResult out = shmtrace({"replay", db, "--pid", std::to_string(r.pid)});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  std::int64_t marked = 0;
  const std::regex gap(".*\\| *\\/\\* ([0-9]+) records (dropped here|of process " + std::to_string(r.pid) +
                       " dropped \\(thread unknown\\)) \\*\\/");
  for (const std::string& line : lines(out.out)) {
    std::smatch m;
    if (std::regex_match(line, m, gap)) marked += std::stoll(m[1]);
  }
  EXPECT_EQ(marked, expected);
}

TEST(Replay, UnfinishedCallOfACrashedProcessIsMarked) {
  const TempDb db("replay-crash");
  const RunResult r = run({program_path("st_producer"), "crash", "segv", "3"}, without_sanitizer_signal_handlers());
  ASSERT_EQ(r.signal, 11);
  drain_into(db);
  const RunResult out = shmtrace({"replay", db, "--pid", std::to_string(r.pid)});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(lines(out.out), (std::vector<std::string>{
                                "# DURATION     TID     FUNCTION",
                                std::string(11, ' ') + " " + tid_column(r.pid) +
                                    "doomed(); /* error: SIGSEGV: SIGSEGV at 0x10 */ /* unfinished */",
                            }))
      << out.out;
}

TEST(Replay, BadOptionsExitTwoAndAMissingDatabaseOne) {
  const TempDb db("replay-bad");
  ASSERT_EQ(run({program_path("st_report"), "leaf", "0"}).exit_code, 0);
  drain_into(db);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--depth", "0"}, {"--min-duration", "fast"}, {"--since", "now"}, {"--trace", "xyz"}, {"--tid", "-3"}}) {
    std::vector<std::string> args = {"replay", db};
    args.insert(args.end(), bad.begin(), bad.end());
    SCOPED_TRACE(bad[0]);
    expect_one_line_failure(shmtrace(args), 2, "");
  }
  expect_one_line_failure(shmtrace({"replay", db.path + ".missing"}), 1, db.path + ".missing");
}

}  // namespace
}  // namespace shmtrace::test
