// `shmtrace run` on the two real programs of the field proof: a whole
// `make -j2` build of a generated C project with the system's gcc (every
// process of the build's tree in the database, its output and status
// unchanged, a failing build's status passed through), and an instrumented
// multi-process program (-finstrument-functions: tests/workload) whose
// per-function call counts in function_stats equal the program's own.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "support/run_support.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

constexpr int kSources = 12;

// A small C project: kSources files of one function each, a main calling
// them all, and a Makefile compiling each file through its own recipe (so
// the build runs exactly one compiler driver per file, plus one to link).
void write_project(const std::string& dir, bool broken) {
  std::string makefile = "CC = gcc\nOBJS =";
  std::string main_c = "#include <stdio.h>\n";
  for (int i = 0; i < kSources; ++i) {
    const std::string n = std::to_string(i);
    write_file(dir + "/f" + n + ".c", "int f" + n + "(int x) { return x * " + n + " + 1; }\n" +
                                          (broken && i == 7 ? "this is not C\n" : ""));
    makefile += " f" + n + ".o";
    main_c += "int f" + n + "(int);\n";
  }
  main_c += "int main(void) {\n  int sum = 0;\n";
  for (int i = 0; i < kSources; ++i) main_c += "  sum += f" + std::to_string(i) + "(" + std::to_string(i) + ");\n";
  main_c += "  printf(\"sum %d\\n\", sum);\n  return 0;\n}\n";
  write_file(dir + "/main.c", main_c);
  makefile +=
      " main.o\n"
      "app: $(OBJS)\n\t@echo LINK $@\n\t@$(CC) -o $@ $(OBJS)\n"
      "%.o: %.c\n\t@$(CC) -c $< -o $@\n"
      "clean:\n\t@rm -f app *.o\n";
  write_file(dir + "/Makefile", makefile);
}

std::vector<std::string> make_argv(const std::string& dir) { return {"/usr/bin/make", "-s", "-j2", "-C", dir}; }

#if !SHMTRACE_SANITIZED_RUNTIME  // traces system programs: built in the plain build only
TEST(RunField, AMakeBuildIsStoredWholeWithItsOutputAndStatusUnchanged) {
  TempDir dir("run-make");
  write_project(dir.path(), false);
  const RunResult plain = run(make_argv(dir.path()));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(run({"/usr/bin/make", "-s", "-C", dir.path(), "clean"}).exit_code, 0);

  const std::string db = dir / "build.db";
  const RunResult traced = run(run_argv({"--db", db}, make_argv(dir.path())));
  ASSERT_EQ(traced.exit_code, 0) << traced.err;
  EXPECT_EQ(traced.out, plain.out);
  EXPECT_EQ(traced.out, "LINK app\n");
  EXPECT_EQ(run({dir / "app"}).out, "sum 518\n");

  Database d(db);
  ASSERT_NE(d.db, nullptr) << d.error;
  const int files = kSources + 1;
  // One compiler proper and one assembler per file, one driver per file and
  // one for the link, whose linker runs once.
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/cc1' AND state = 'exited'"), files);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%-as' AND state = 'exited'"), files);
  // (The driver is gcc or <triplet>-gcc-<version>; its helpers live in
  // .../lib/gcc/...; the linker is ld, ld.bfd, ld.gold ...)
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%gcc%' AND exe NOT LIKE '%/lib/gcc/%'"),
            files + 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/collect2'"), 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/ld' OR exe LIKE '%-ld' OR exe LIKE '%/ld.%' "
                     "OR exe LIKE '%-ld.%'"),
            1);
  // The above, make, and the echo of the link's recipe.
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/echo'"), 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes"), 3 * files + 5)
      << d.text("SELECT group_concat(exe || ' ' || n, '; ') FROM (SELECT exe, count(*) n FROM processes GROUP BY exe)");
  // The tree is whole: make is the root, child of `run`, and every other
  // process's parent is in the database too; all ended well.
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(traced.pid)), 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(traced.pid) +
                     " AND exe LIKE '%/make'"),
            1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid != " + std::to_string(traced.pid) +
                     " AND ppid NOT IN (SELECT pid FROM processes)"),
            0);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE state NOT IN ('exited', 'execed') OR "
                     "(state = 'exited' AND exit_status != 0)"),
            0);
}
#endif

#if !SHMTRACE_SANITIZED_RUNTIME  // traces system programs: built in the plain build only
TEST(RunField, AFailingBuildsStatusAndMessagesPassThrough) {
  TempDir dir("run-make");
  write_project(dir.path(), true);
  const RunResult plain = run(make_argv(dir.path()));
  ASSERT_EQ(plain.exit_code, 2);
  const RunResult traced = run(run_argv({"--db", dir / "build.db"}, make_argv(dir.path())));
  EXPECT_EQ(traced.exit_code, 2) << traced.err;
  EXPECT_EQ(traced.out, plain.out);
  EXPECT_NE(traced.err.find("f7.c:2"), std::string::npos) << traced.err;
  Database d(dir / "build.db");
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/make' AND exit_status = 2"), 1);
}
#endif

TEST(RunField, AnInstrumentedProgramsCallsAreExactInFunctionStats) {
  TempDir dir("run-workload");
  const std::string db = dir / "workload.db";
  const RunResult r =
      run(run_argv({"--db", db, "--policy", "block"},
                   {program_path("st_workload"), "--workers", "3", "--iterations", "400"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::map<int, WorkloadWorker> workers = parse_workload_output(r.out);
  ASSERT_EQ(workers.size(), 3u) << r.out;
  std::map<std::string, std::uint64_t> calls;
  for (const auto& [index, w] : workers) {
    for (const auto& [function, n] : w.counts) calls[function] += n;
  }
  ASSERT_GE(calls.size(), 15u);
  // The parent runs main too, and the functions only it runs: once, and
  // once per worker.
  ASSERT_TRUE(calls.contains("main"));
  calls["main"] += 1;
  Database d(db);
  ASSERT_NE(d.db, nullptr) << d.error;
  for (const auto& [function, n] : calls) {
    std::string quoted;
    for (char c : function) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    EXPECT_EQ(d.number("SELECT calls FROM function_stats WHERE name = '" + quoted + "'"),
              static_cast<std::int64_t>(n))
        << function;
    EXPECT_EQ(d.number("SELECT count(*) FROM spans WHERE name = '" + quoted + "'"), static_cast<std::int64_t>(n))
        << function;
  }
  EXPECT_EQ(d.number("SELECT calls FROM function_stats WHERE name LIKE 'workload::run_parent(%'"), 1);
  EXPECT_EQ(d.number("SELECT calls FROM function_stats WHERE name LIKE 'workload::start_worker(%'"), 3);
  // The parent and three workers (each a fork, then an exec of itself).
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE state = 'exited' AND exit_status = 0"), 4);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE state = 'execed'"), 3);
  EXPECT_EQ(d.number("SELECT coalesce(sum(records_dropped), 0) FROM processes"), 0);
  // The summary's busiest functions come from the same statistics.
  const auto busiest = std::max_element(calls.begin(), calls.end(),
                                        [](const auto& a, const auto& b) { return a.second < b.second; });
  EXPECT_NE(r.err.find(std::to_string(busiest->second)), std::string::npos) << r.err;
}

}  // namespace
}  // namespace shmtrace::test
