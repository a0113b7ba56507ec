// shmtrace sql [DB] [QUERY]: runs QUERY on a trace with every time
// partition attached (the views spans and span_data) and the SQL functions
// loaded (shmtrace_quantile...), printing a table, CSV or JSON; without
// QUERY it opens the sqlite3 shell set up the same way, read-only.
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "commands.hpp"
#include "query/database.hpp"
#include "query/output.hpp"
#include "reading_options.hpp"

namespace shmtrace::cli {
namespace {

struct SqlOptions {
  std::string db = kDefaultDatabase;
  std::string query;
  bool csv = false;
  bool json = false;
};

// The SQL-functions extension: beside an installed shmtrace (its lib dir),
// else the one this build made.
std::string extension_path() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path prefix = self.parent_path().parent_path();
    for (const char* dir : {"lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"}) {
      const std::filesystem::path p = prefix / dir / "libshmtrace_sqlite.so";
      if (std::filesystem::exists(p, ec)) return p.string();
    }
  }
  return SHMTRACE_BUILD_SQLITE_EXTENSION_PATH;
}

// The table of one statement's rows; text cells in text form (as SQLite
// prints them), typed cells for JSON and CSV.
query::Table table_of(sqlite3_stmt* s, bool typed, std::string& error, sqlite3* db) {
  query::Table t;
  const int n = sqlite3_column_count(s);
  std::vector<bool> numeric(static_cast<std::size_t>(n), true);
  for (int c = 0; c < n; ++c) {
    const char* name = sqlite3_column_name(s, c);
    t.columns.push_back({name != nullptr ? name : "", query::Column::Kind::kText});
  }
  while (true) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      error = sqlite3_errmsg(db);
      return t;
    }
    std::vector<query::Cell> row;
    for (int c = 0; c < n; ++c) {
      const int type = sqlite3_column_type(s, c);
      if (type == SQLITE_NULL) {
        row.emplace_back();
        continue;
      }
      if (type != SQLITE_INTEGER && type != SQLITE_FLOAT) numeric[static_cast<std::size_t>(c)] = false;
      if (typed && type == SQLITE_INTEGER) row.emplace_back(static_cast<std::int64_t>(sqlite3_column_int64(s, c)));
      else if (typed && type == SQLITE_FLOAT) row.emplace_back(sqlite3_column_double(s, c));
      else if (type == SQLITE_BLOB) row.emplace_back("<blob " + std::to_string(sqlite3_column_bytes(s, c)) + " bytes>");
      else {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
        row.emplace_back(std::string(text != nullptr ? text : "", static_cast<std::size_t>(sqlite3_column_bytes(s, c))));
      }
    }
    t.rows.push_back(std::move(row));
  }
  for (int c = 0; c < n; ++c) {
    if (numeric[static_cast<std::size_t>(c)] && !t.rows.empty()) t.columns[static_cast<std::size_t>(c)].kind = query::Column::Kind::kNumber;
  }
  return t;
}

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

int run_query(const SqlOptions& o, sqlite3* db) {
  const query::Format format = o.json ? query::Format::kJson : o.csv ? query::Format::kCsv : query::Format::kText;
  const int width = query::terminal_width();
  std::string out;
  const char* rest = o.query.c_str();
  while (*rest != '\0') {
    sqlite3_stmt* s = nullptr;
    const char* tail = nullptr;
    if (sqlite3_prepare_v2(db, rest, -1, &s, &tail) != SQLITE_OK) {
      return say("sql", o.db + ": " + one_line(sqlite3_errmsg(db))), 1;
    }
    rest = tail;
    if (s == nullptr) continue;  // whitespace or a comment
    std::string error;
    const query::Table t = table_of(s, format != query::Format::kText, error, db);
    sqlite3_finalize(s);
    if (!error.empty()) return say("sql", o.db + ": " + one_line(error)), 1;
    if (!t.columns.empty()) out += query::render(t, format, width);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

// The sqlite3 shell on DB, read-only, with the extension loaded and the
// partitions attached; replaces this process.
int run_shell(const SqlOptions& o, sqlite3* db) {
  auto views = drain::query_views_sql(db, true);
  if (!views) return say("sql", o.db + ": " + views.error()), 1;
  const std::string load = ".load " + extension_path();
  std::vector<std::string> args = {"sqlite3", "-readonly", "-cmd", load, "-cmd", *views, o.db};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  ::execvp("sqlite3", argv.data());
  return say("sql", "cannot run the sqlite3 shell (Debian package sqlite3): " + std::string(std::strerror(errno))), 1;
}

int run_sql(SqlOptions o) {
  if (o.csv && o.json) return say("sql", "--csv and --json exclude each other"), 2;
  // `shmtrace sql "SELECT ..."`: one argument that is no file but has a
  // space is the query, on the default database.
  std::error_code ec;
  if (o.query.empty() && o.db.find(' ') != std::string::npos && !std::filesystem::exists(o.db, ec)) {
    o.query = o.db;
    o.db = kDefaultDatabase;
  }
  auto db = query::open_database(o.db);
  if (!db) return say("sql", db.error()), 1;
  return o.query.empty() ? run_shell(o, db->handle()) : run_query(o, db->handle());
}

}  // namespace

Command add_sql(CLI::App& app) {
  auto o = std::make_shared<SqlOptions>();
  CLI::App* sub = app.add_subcommand(
      "sql", "Run an SQL query on a trace (partitions attached, SQL functions loaded), or open the sqlite3 shell "
             "set up the same way when no query is given");
  add_database_argument(*sub, o->db);
  sub->add_option("query", o->query, "The SQL to run (one or more statements); none: the sqlite3 shell");
  sub->add_flag("--csv", o->csv, "Output as CSV (RFC 4180)");
  sub->add_flag("--json", o->json, "Output as JSON: an array of objects per statement");
  return [o] { return run_sql(*o); };
}

}  // namespace shmtrace::cli
