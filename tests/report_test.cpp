// shmtrace report on databases the real drain wrote from real programs:
// counts and percentiles against what a program measured of itself, self
// times against the stored spans, the process tree of a program that forks,
// execs and spawns, errors with their span paths, the slowest spans, drops,
// and the same numbers through text, JSON and CSV.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "support/cli_runs.hpp"

namespace shmtrace::test {
namespace {

using nlohmann::json;
using namespace cli;

std::string pid_text(const RunResult& r) { return std::to_string(r.pid); }

// The text format's durations, as the documentation gives them.
std::string human(double ns) {
  char b[48];
  if (ns < 1e3) std::snprintf(b, sizeof b, "%.0f ns", ns);
  else if (ns < 1e6) std::snprintf(b, sizeof b, "%.2f us", ns / 1e3);
  else if (ns < 1e9) std::snprintf(b, sizeof b, "%.2f ms", ns / 1e6);
  else std::snprintf(b, sizeof b, "%.2f s", ns / 1e9);
  return b;
}

json section(const std::string& db, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"report", db, "--format", "json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const RunResult r = shmtrace(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  return json_of(r.out);
}

const json* row_named(const json& rows, const std::string& key, const std::string& name) {
  for (const json& row : rows) {
    if (row.at(key) == name) return &row;
  }
  return nullptr;
}

// st_report measure, stored once for the tests that read it.
class Measured : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TempDb("report-measure");
    program_ = new RunResult(run({program_path("st_report"), "measure"}));
    ASSERT_EQ(program_->exit_code, 0) << program_->err;
    drain_into(*db_);
  }
  static void TearDownTestSuite() {
    delete db_;
    delete program_;
  }
  static TempDb* db_;
  static RunResult* program_;
};
TempDb* Measured::db_ = nullptr;
RunResult* Measured::program_ = nullptr;

TEST_F(Measured, CountsAndPercentilesEqualWhatTheProgramMeasured) {
  ASSERT_NE(program_, nullptr);
  const json rows = section(*db_, {"--section", "functions", "--pid", pid_text(*program_)});
  const json* leaf = row_named(rows.at("functions"), "function", "m-leaf");
  ASSERT_NE(leaf, nullptr) << rows.dump();
  int quantiles = 0;
  for (const auto& l : words(program_->out)) {
    if (l.size() == 5 && l[0] == "calls") {
      EXPECT_EQ(leaf->at("calls").get<std::int64_t>(), std::stoll(l[2]));
      EXPECT_EQ(leaf->at("errors").get<std::int64_t>(), std::stoll(l[4]));
    }
    if (l.size() != 6 || l[0] != "quantile") continue;
    const double inner = std::stod(l[3]), outer = std::stod(l[5]);
    const std::string key = l[1] == "0.5" ? "p50_ns" : l[1] == "0.95" ? "p95_ns" : l[1] == "0.99" ? "p99_ns" : "max_ns";
    SCOPED_TRACE(key);
    const double got = leaf->at(key).get<double>();
    // Within the histogram's bucket (1.6 %) of the program's own figures;
    // max is kept exactly.
    const double slack = key == "max_ns" ? 0.001 : 0.02;
    EXPECT_GE(got, inner * (1 - slack)) << "inner " << inner;
    EXPECT_LE(got, outer * (1 + slack)) << "outer " << outer;
    ++quantiles;
  }
  EXPECT_EQ(quantiles, 4) << program_->out;
  // The very figures SQL's shmtrace_quantile gives over the same rows.
  Database sql(*db_);
  for (const auto& [key, q] : std::vector<std::pair<std::string, std::string>>{
           {"p50_ns", "0.5"}, {"p95_ns", "0.95"}, {"p99_ns", "0.99"}}) {
    sqlite3_stmt* s = nullptr;
    const std::string text = "SELECT shmtrace_quantile(histogram, " + q + ") FROM call_stats WHERE name = 'm-leaf' "
                             "AND process_key IN (SELECT process_key FROM processes WHERE pid = " +
                             pid_text(*program_) + ")";
    ASSERT_EQ(sqlite3_prepare_v2(sql.db, text.c_str(), -1, &s, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    EXPECT_DOUBLE_EQ(leaf->at(key).get<double>(), sqlite3_column_double(s, 0)) << key;
    sqlite3_finalize(s);
  }
  const json* outer = row_named(rows.at("functions"), "function", "m-outer");
  ASSERT_NE(outer, nullptr);
  EXPECT_EQ(outer->at("calls"), 1);
  EXPECT_EQ(outer->at("errors"), 0);
  EXPECT_EQ(outer->at("unfinished"), 0);
  // The outer call holds every leaf call.
  EXPECT_GE(outer->at("total_ns").get<double>(), leaf->at("total_ns").get<double>());
  // The statistics and the stored spans agree on each total (both whole here).
  Database d(*db_);
  const std::string of_pid = " AND process_key IN (SELECT process_key FROM processes WHERE pid = " +
                             pid_text(*program_) + ")";
  const double spans_total = static_cast<double>(
      d.number("SELECT sum(duration_ns) FROM spans WHERE name = 'm-leaf'" + of_pid));
  EXPECT_NEAR(leaf->at("total_ns").get<double>(), spans_total, spans_total * 0.01);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans WHERE name = 'm-leaf'" + of_pid), 100);
}

// Self time: total minus the time in traced callees, from the statistics;
// here it must equal what the stored spans say (nothing was dropped).
// (Fails while call_stats.self_ns is not filled: it then reads 0.)
TEST_F(Measured, SelfTimesEqualTotalMinusChildrenOfTheStoredSpans) {
  ASSERT_NE(program_, nullptr);
  const json rows = section(*db_, {"--section", "functions", "--pid", pid_text(*program_), "--sort", "self"});
  Database d(*db_);
  const std::string keys = "(SELECT process_key FROM processes WHERE pid = " + pid_text(*program_) + ")";
  for (const std::string name : {"m-outer", "m-leaf"}) {
    SCOPED_TRACE(name);
    const json* row = row_named(rows.at("functions"), "function", name);
    ASSERT_NE(row, nullptr);
    const double expected = static_cast<double>(d.number(
        "SELECT sum(s.duration_ns - coalesce((SELECT sum(c.duration_ns) FROM spans c WHERE c.process_key = "
        "s.process_key AND c.parent_span_id = s.span_id), 0)) FROM spans s WHERE s.name = '" + name +
        "' AND s.process_key IN " + keys));
    ASSERT_GT(expected, 0);
    EXPECT_NEAR(row->at("self_ns").get<double>(), expected, expected * 0.01 + 1000);
  }
  // Sorted by self time: the leaves' self time (all of theirs) comes first.
  ASSERT_GE(rows.at("functions").size(), 2u);
  EXPECT_EQ(rows.at("functions")[0].at("function"), "m-leaf");
}

TEST_F(Measured, JsonAndCsvCarryTheSameNumbersAndTextIsReadable) {
  ASSERT_NE(program_, nullptr);
  const std::vector<std::string> base = {"report", *db_, "--section", "functions", "--pid", pid_text(*program_)};
  auto with = [&](const std::string& format) {
    std::vector<std::string> a = base;
    a.insert(a.end(), {"--format", format});
    return shmtrace(a);
  };
  const RunResult j = with("json"), c = with("csv"), t = with("text");
  ASSERT_EQ(j.exit_code, 0) << j.err;
  ASSERT_EQ(c.exit_code, 0) << c.err;
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const json rows = json_of(j.out).at("functions");
  const auto records = csv_records(c.out);
  // "# functions", the header, one record per function.
  ASSERT_EQ(records.size(), rows.size() + 2) << c.out;
  EXPECT_EQ(records[0], std::vector<std::string>{"# functions"});
  const std::vector<std::string>& header = records[1];
  ASSERT_EQ(header.size(), rows[0].size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    ASSERT_EQ(records[r + 2].size(), header.size());
    for (std::size_t k = 0; k < header.size(); ++k) {
      const json& v = rows[r].at(header[k]);
      const std::string& field = records[r + 2][k];
      if (v.is_string()) EXPECT_EQ(field, v.get<std::string>());
      else EXPECT_DOUBLE_EQ(std::stod(field), v.get<double>()) << header[k];
    }
  }
  // Text: durations in human units, a line per function under the title.
  const json* leaf = row_named(rows, "function", "m-leaf");
  ASSERT_NE(leaf, nullptr);
  const auto text = lines(t.out);
  ASSERT_EQ(text.size(), rows.size() + 2) << t.out;
  EXPECT_EQ(text[0], "== functions ==");
  bool found = false;
  for (const auto& l : words(t.out)) {
    if (l[0] != "m-leaf") continue;
    found = true;
    EXPECT_EQ(l[1], std::to_string(leaf->at("calls").get<std::int64_t>()));
    EXPECT_EQ(l[4] + " " + l[5], human(leaf->at("total_ns").get<double>()));
  }
  EXPECT_TRUE(found) << t.out;
}

TEST_F(Measured, SlowestSpansComeWithTheirPathFromTheRoot) {
  ASSERT_NE(program_, nullptr);
  const json rows = section(*db_, {"--section", "slowest", "--limit", "3", "--pid", pid_text(*program_)});
  const json& slow = rows.at("slowest");
  ASSERT_EQ(slow.size(), 3u);
  EXPECT_EQ(slow[0].at("name"), "m-outer");
  EXPECT_EQ(slow[0].at("span_path"), json::array({"m-outer"}));
  Database d(*db_);
  const std::string keys = "(SELECT process_key FROM processes WHERE pid = " + pid_text(*program_) + ")";
  const std::int64_t longest_leaf =
      d.number("SELECT max(duration_ns) FROM spans WHERE name = 'm-leaf' AND process_key IN " + keys);
  EXPECT_EQ(slow[1].at("name"), "m-leaf");
  EXPECT_EQ(slow[1].at("duration_ns").get<std::int64_t>(), longest_leaf);
  EXPECT_EQ(slow[1].at("span_path"), json::array({"m-outer", "m-leaf"}));
  EXPECT_GE(slow[1].at("duration_ns").get<std::int64_t>(), slow[2].at("duration_ns").get<std::int64_t>());
  // --name narrows every section to that function.
  const json named = section(*db_, {"--section", "functions,slowest", "--name", "m-outer"});
  ASSERT_EQ(named.at("functions").size(), 1u);
  EXPECT_EQ(named.at("functions")[0].at("function"), "m-outer");
  ASSERT_EQ(named.at("slowest").size(), 1u);
  // A window after the trace holds no span.
  const json later = section(*db_, {"--section", "slowest", "--since", "+1h"});
  EXPECT_EQ(later.at("slowest").size(), 0u);
  const json all = section(*db_, {"--section", "slowest", "--since", "+0s", "--until", "+1h"});
  EXPECT_EQ(all.at("slowest").size(), 20u);
}

TEST(Report, ProcessTreeOfAForkExecSpawnProgramIsExact) {
  const TempDb db("report-tree");
  const std::string program = program_path("st_report");
  const RunResult r = run({program, "tree", program}, without_sanitizer_signal_handlers());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::int64_t> child;
  for (const auto& l : words(r.out)) {
    if (l.size() == 2) child[l[0]] = std::stoll(l[1]);
  }
  ASSERT_EQ(child.size(), 3u) << r.out;
  drain_into(db);
  const json rows = section(db, {"--section", "processes", "--pid", pid_text(r)}).at("processes");
  // The root, the forked child (exec'd), the program it exec'd, the spawned
  // child, the crashed child: in tree order.
  ASSERT_EQ(rows.size(), 5u) << rows.dump(1);
  const json& root = rows[0];
  EXPECT_EQ(root.at("pid"), r.pid);
  EXPECT_EQ(root.at("depth"), 0);
  EXPECT_EQ(root.at("origin"), "root");
  EXPECT_EQ(root.at("state"), "exited");
  EXPECT_EQ(root.at("exit_status"), 0);
  EXPECT_EQ(root.at("cmdline"), program + " tree " + program);

  const json& forked = rows[1];
  EXPECT_EQ(forked.at("pid"), child["fork"]);
  EXPECT_EQ(forked.at("parent_key"), root.at("process_key"));
  EXPECT_EQ(forked.at("depth"), 1);
  EXPECT_EQ(forked.at("origin"), "fork");
  EXPECT_EQ(forked.at("state"), "execed");
  EXPECT_EQ(forked.at("exec_target"), program);

  const json& execed = rows[2];
  EXPECT_EQ(execed.at("pid"), child["fork"]);
  EXPECT_EQ(execed.at("parent_key"), forked.at("process_key"));
  EXPECT_EQ(execed.at("depth"), 2);
  EXPECT_EQ(execed.at("origin"), "exec");
  EXPECT_EQ(execed.at("cmdline"), program + " leaf 3");
  EXPECT_EQ(execed.at("state"), "exited");
  EXPECT_EQ(execed.at("exit_status"), 3);

  const json& spawned = rows[3];
  EXPECT_EQ(spawned.at("pid"), child["spawn"]);
  EXPECT_EQ(spawned.at("parent_key"), root.at("process_key"));
  EXPECT_EQ(spawned.at("depth"), 1);
  EXPECT_NE(spawned.at("origin"), "root");
  EXPECT_EQ(spawned.at("cmdline"), program + " leaf 0");
  EXPECT_EQ(spawned.at("exit_status"), 0);

  const json& crashed = rows[4];
  EXPECT_EQ(crashed.at("pid"), child["crash"]);
  EXPECT_EQ(crashed.at("parent_key"), root.at("process_key"));
  EXPECT_EQ(crashed.at("origin"), "fork");
  EXPECT_EQ(crashed.at("state"), "crashed");
  EXPECT_EQ(crashed.at("signal"), 11);
  EXPECT_TRUE(crashed.at("exit_status").is_null());

  // Text: the tree indented, statuses in words.
  const RunResult text = shmtrace({"report", db, "--section", "processes", "--pid", pid_text(r)}, {{"COLUMNS", "200"}});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  const auto l = lines(text.out);
  ASSERT_EQ(l.size(), 7u) << text.out;
  EXPECT_EQ(l[2].rfind("st_report ", 0), 0u) << l[2];
  EXPECT_EQ(l[3].rfind("  st_report ", 0), 0u) << l[3];
  EXPECT_EQ(l[4].rfind("    st_report ", 0), 0u) << l[4];
  EXPECT_NE(l[4].find("exit 3"), std::string::npos) << l[4];
  EXPECT_NE(l[6].find("signal 11 (SIGSEGV)"), std::string::npos) << l[6];
}

TEST(Report, ErrorsCarryTypeMessageProcessAndSpanPath) {
  const TempDb db("report-errors");
  const RunResult r = run({program_path("st_report"), "calls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  drain_into(db);
  const json rows = section(db, {"--section", "errors", "--pid", pid_text(r)}).at("errors");
  ASSERT_EQ(rows.size(), 1u) << rows.dump(1);
  EXPECT_EQ(rows[0].at("type"), "Oops");
  EXPECT_EQ(rows[0].at("message"), "it failed");
  EXPECT_EQ(rows[0].at("pid"), r.pid);
  EXPECT_EQ(rows[0].at("tid"), r.pid);
  EXPECT_EQ(rows[0].at("span_path"), json::array({"main", "work", "fail"}));
  EXPECT_FALSE(rows[0].at("frames").empty());
  // And the crash of a process, with its signal.
  const RunResult crash = run({program_path("st_producer"), "crash", "segv", "3"}, without_sanitizer_signal_handlers());
  ASSERT_EQ(crash.signal, 11);
  drain_into(db);
  const json crashes = section(db, {"--section", "errors", "--pid", pid_text(crash)}).at("errors");
  ASSERT_EQ(crashes.size(), 1u) << crashes.dump(1);
  EXPECT_EQ(crashes[0].at("kind"), "crash");
  EXPECT_EQ(crashes[0].at("signal"), 11);
  EXPECT_EQ(crashes[0].at("span_path"), json::array({"doomed"}));
}

TEST(Report, DropsPerProcessAndThreadWhileCountsStayExact) {
  const TempDb db("report-drops");
  const RunResult r = run({program_path("st_stats_threads"), "2", "3000"},
                          {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  drain_into(db);
  Database d(db);
  const std::string keys = "(SELECT process_key FROM processes WHERE pid = " + pid_text(r) + ")";
  const json drops = section(db, {"--section", "drops", "--pid", pid_text(r)}).at("drops");
  const std::int64_t dropped = d.number("SELECT sum(records_dropped) FROM processes WHERE pid = " + pid_text(r));
  ASSERT_GT(dropped, 0);
  EXPECT_EQ(drops.at("total_dropped"), dropped);
  ASSERT_EQ(drops.at("processes").size(), 1u);
  EXPECT_EQ(drops.at("processes")[0].at("records_dropped"), dropped);
  std::int64_t gap_records = 0;
  std::set<std::int64_t> tids;
  for (const json& t : drops.at("threads")) {
    gap_records += t.at("dropped").get<std::int64_t>();
    tids.insert(t.at("tid").get<std::int64_t>());
  }
  EXPECT_EQ(gap_records, d.number("SELECT sum(dropped) FROM gaps WHERE process_key IN " + keys));
  EXPECT_EQ(static_cast<std::int64_t>(tids.size()),
            d.number("SELECT count(DISTINCT tid) FROM gaps WHERE process_key IN " + keys));
  EXPECT_NE(drops.at("meaning").get<std::string>().find("still exact"), std::string::npos);
  // The functions section's calls are the program's own counts all the same.
  const json functions = section(db, {"--section", "functions", "--pid", pid_text(r), "--limit", "0"}).at("functions");
  std::int64_t calls = 0;
  for (const json& f : functions) calls += f.at("calls").get<std::int64_t>();
  EXPECT_EQ(calls, d.number("SELECT sum(calls) FROM call_stats WHERE process_key IN " + keys));
  EXPECT_GT(calls, d.number("SELECT count(*) FROM spans WHERE process_key IN " + keys) * 10);
}

TEST(Report, BadOptionsExitTwoAndAMissingDatabaseOne) {
  const TempDb db("report-bad");
  ASSERT_EQ(run({program_path("st_report"), "leaf", "0"}).exit_code, 0);
  drain_into(db);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--sort", "fastest"}, {"--format", "xml"}, {"--section", "everything"}, {"--since", "yesterday"},
           {"--until", "+soon"}, {"--limit", "-1"}, {"--pid", "abc"}, {"--no-such-option"}}) {
    std::vector<std::string> args = {"report", db};
    args.insert(args.end(), bad.begin(), bad.end());
    SCOPED_TRACE(bad[0]);
    expect_one_line_failure(shmtrace(args), 2, "");
  }
  expect_one_line_failure(shmtrace({"report", db.path + ".missing"}), 1, db.path + ".missing");
  const RunResult help = shmtrace({"report", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--section"), std::string::npos);
}

// A database of an older schema is refused with the command that migrates
// it (the commands open read-only); a newer one with its version.
TEST(Report, AnotherSchemaVersionIsOneLineNamingIt) {
  const TempDb db("report-version");
  ASSERT_EQ(run({program_path("st_report"), "leaf", "0"}).exit_code, 0);
  drain_into(db);
  const auto set_version = [&](int version) {
    sqlite3* handle = nullptr;
    ASSERT_EQ(sqlite3_open(db.path.c_str(), &handle), SQLITE_OK);
    const std::string sql = "PRAGMA user_version = " + std::to_string(version);
    EXPECT_EQ(sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(handle);
  };
  set_version(3);
  expect_one_line_failure(shmtrace({"report", db}), 1, "schema version 3 is older than this shmtrace's 4; "
                                                       "`shmtrace-drain --db " + db.path + " --once` migrates it");
  set_version(5);
  expect_one_line_failure(shmtrace({"report", db}), 1, "schema version 5 is newer than this shmtrace reads (4)");
}

}  // namespace
}  // namespace shmtrace::test
