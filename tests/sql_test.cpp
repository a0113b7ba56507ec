// shmtrace sql on a database the real drain wrote: a query through the
// partitions' views with the SQL functions loaded, as a table, CSV and JSON;
// the sqlite3 shell set up the same way; a bad query and a missing database.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/cli_runs.hpp"

namespace shmtrace::test {
namespace {

using nlohmann::json;
using namespace cli;

class Sql : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TempDb("sql");
    const RunResult r = run({program_path("st_report"), "measure"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    pid_ = r.pid;
    drain_into(*db_);
  }
  static void TearDownTestSuite() { delete db_; }
  std::string of_pid() const {
    return " WHERE process_key IN (SELECT process_key FROM processes WHERE pid = " + std::to_string(pid_) + ")";
  }
  static TempDb* db_;
  static pid_t pid_;
};
TempDb* Sql::db_ = nullptr;
pid_t Sql::pid_ = 0;

TEST_F(Sql, QueryPrintsAnAlignedTable) {
  const RunResult r = shmtrace(
      {"sql", *db_, "SELECT name, count(*) AS n FROM spans" + of_pid() + " GROUP BY name ORDER BY name"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "name       n\n"
            "m-leaf   100\n"
            "m-outer    1\n");
}

TEST_F(Sql, CsvAndJsonCarryTheValuesWithTheSqlFunctionsLoaded) {
  const std::string query = "SELECT name, sum(calls) AS calls, shmtrace_quantile(histogram, 0.5) AS p50, "
                            "'a,\"b\"' AS text, NULL AS empty FROM call_stats" + of_pid() +
                            " GROUP BY name ORDER BY name";
  Database d(*db_);
  const double p50 = [&] {
    sqlite3_stmt* s = nullptr;
    double v = -1;
    if (sqlite3_prepare_v2(d.db, ("SELECT shmtrace_quantile(histogram, 0.5) FROM call_stats" + of_pid() +
                                  " AND name = 'm-leaf'").c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      v = sqlite3_column_double(s, 0);
    }
    sqlite3_finalize(s);
    return v;
  }();
  ASSERT_GT(p50, 0);
  const RunResult j = shmtrace({"sql", *db_, "--json", query});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const json rows = json_of(j.out);
  ASSERT_EQ(rows.size(), 2u) << j.out;
  EXPECT_EQ(rows[0].at("name"), "m-leaf");
  EXPECT_EQ(rows[0].at("calls"), 100);
  EXPECT_DOUBLE_EQ(rows[0].at("p50").get<double>(), p50);
  EXPECT_EQ(rows[0].at("text"), "a,\"b\"");
  EXPECT_TRUE(rows[0].at("empty").is_null());
  EXPECT_EQ(rows[1].at("name"), "m-outer");
  EXPECT_EQ(rows[1].at("calls"), 1);

  const RunResult c = shmtrace({"sql", *db_, "--csv", query});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto records = csv_records(c.out);
  ASSERT_EQ(records.size(), 3u) << c.out;
  EXPECT_EQ(records[0], (std::vector<std::string>{"name", "calls", "p50", "text", "empty"}));
  EXPECT_EQ(records[1][0], "m-leaf");
  EXPECT_EQ(records[1][1], "100");
  EXPECT_DOUBLE_EQ(std::stod(records[1][2]), p50);
  EXPECT_EQ(records[1][3], "a,\"b\"");
  EXPECT_EQ(records[1][4], "");
  EXPECT_NE(c.out.find("\"a,\"\"b\"\"\""), std::string::npos) << "RFC 4180 quoting: " << c.out;
}

#if !SHMTRACE_SANITIZED_RUNTIME  // the system sqlite3 cannot load a sanitized extension
TEST_F(Sql, WithoutAQueryTheSqliteShellSeesThePartitionsAndFunctions) {
  const std::string input = "SELECT count(*) FROM spans" + of_pid() +
                            "; SELECT shmtrace_quantile(histogram, 0.5) > 0 FROM call_stats" + of_pid() +
                            " AND name = 'm-leaf';";
  const RunResult r = run({"/bin/sh", "-c", "printf '%s\\n' \"$1\" | \"$2\" sql \"$3\"", "sh", input,
                           SHMTRACE_CLI_PATH, db_->path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "101\n1\n");
}
#endif

TEST_F(Sql, ABadQueryIsOneLineAndExitOne) {
  expect_one_line_failure(shmtrace({"sql", *db_, "SELECT no_such_column FROM spans"}), 1, "no_such_column");
  expect_one_line_failure(shmtrace({"sql", *db_, "SELEKT 1"}), 1, "syntax error");
  // Read-only: a write is refused the same way.
  expect_one_line_failure(shmtrace({"sql", *db_, "DELETE FROM processes"}), 1, "readonly");
  expect_one_line_failure(shmtrace({"sql", *db_, "--csv", "--json", "SELECT 1"}), 2, "--csv");
}

TEST(SqlDatabase, AMissingDatabaseIsOneLineAndExitOne) {
  const TempDb db("sql-missing");
  expect_one_line_failure(shmtrace({"sql", db.path, "SELECT 1"}), 1, db.path);
  expect_one_line_failure(shmtrace({"sql", db.path}), 1, db.path);
  // A file that is not a shmtrace database.
  const std::string plain = db.path + ".txt";
  { std::ofstream(plain) << "hello\n"; }
  expect_one_line_failure(shmtrace({"sql", plain, "SELECT 1"}), 1, plain);
  std::filesystem::remove(plain);
}

}  // namespace
}  // namespace shmtrace::test
