#include "store/query.hpp"

#include <sqlite3.h>

#include <tuple>
#include <utility>
#include <vector>

#include "store/sqlite_util.hpp"
#include "store/stats_sql.hpp"

namespace shmtrace::drain {
namespace {

constexpr const char* kSpanColumns =
    "process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, duration_ns, status, "
    "error_sequence, code";
constexpr const char* kSpanDataColumns =
    "process_key, ring, position, span_id, kind, ts_ns, tid, name, value, value_type, flags";

std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// A path as the file part of an SQLite URI: %, ? and # would end or escape it.
std::string uri_path(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '%') out += "%25";
    else if (c == '?') out += "%3f";
    else if (c == '#') out += "%23";
    else out += c;
  }
  return out;
}

}  // namespace

std::expected<std::string, std::string> query_views_sql(sqlite3* db, bool read_only) {
  auto listed = sql::Statement::prepare(db, "SELECT partition_id FROM partitions ORDER BY start_ns");
  if (!listed) return std::unexpected("not a shmtrace database (no partitions table): " + listed.error());
  // Partitions live in <db>.parts beside the main file, named by their id
  // (partition_set.hpp); SQLite knows the main file's absolute path, so the
  // statements work from any working directory.
  const char* main_file = sqlite3_db_filename(db, "main");
  if (main_file == nullptr || *main_file == '\0') return std::unexpected(std::string("not a database file"));
  const std::string directory = std::string(main_file) + ".parts/";
  std::vector<std::string> schemas;
  std::string text;
  while (sqlite3_step(listed->get()) == SQLITE_ROW) {
    const std::int64_t id = sqlite3_column_int64(listed->get(), 0);
    const std::string schema = "p" + std::to_string(id);
    const std::string file = directory + schema + ".db";
    text += "ATTACH DATABASE " + quoted(read_only ? "file:" + uri_path(file) + "?mode=ro" : file) + " AS " + schema + ";\n";
    schemas.push_back(schema);
  }
  // Version-1 rows first, then each partition in time order.
  struct View {
    const char* name;
    const char* columns;
    const char* legacy;  // version-1 rows of the same shape, "" when none
  };
  for (const View& v : {View{"spans", kSpanColumns, "main.v1_spans"}, View{"span_data", kSpanDataColumns, ""}}) {
    const char* view = v.name;
    const char* columns = v.columns;
    const char* legacy = v.legacy;
    text += std::string("CREATE TEMP VIEW ") + view + " AS ";
    std::string arms;
    if (*legacy != '\0') arms = std::string("SELECT ") + columns + " FROM " + legacy;
    for (const std::string& s : schemas) {
      arms += (arms.empty() ? "" : " UNION ALL ") + std::string("SELECT ") + columns + " FROM " + s + "." + view;
    }
    if (arms.empty()) {
      // No partition yet: an empty view with the right columns.
      arms = "SELECT 0 AS process_key, 0 AS ring, 0 AS position, 0 AS span_id, '' AS kind, 0 AS ts_ns, 0 AS tid, "
             "'' AS name, '' AS value, '' AS value_type, 0 AS flags WHERE 0";
    }
    text += arms + ";\n";
  }
  return text;
}

std::expected<QueryDatabase, std::string> QueryDatabase::open(const std::string& path) {
  QueryDatabase q;
  if (sqlite3_open_v2(path.c_str(), &q.db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr) != SQLITE_OK) {
    return std::unexpected("cannot open " + path + ": " + sqlite3_errmsg(q.db_));
  }
  sqlite3_busy_timeout(q.db_, 5000);
  if (register_stats_functions(q.db_) != SQLITE_OK) return std::unexpected(path + ": " + sqlite3_errmsg(q.db_));
  auto views = query_views_sql(q.db_, true);
  if (!views) return std::unexpected(path + ": " + views.error());
  if (auto ok = sql::exec(q.db_, *views); !ok) return std::unexpected(path + ": " + ok.error());
  return q;
}

QueryDatabase::QueryDatabase(QueryDatabase&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
QueryDatabase& QueryDatabase::operator=(QueryDatabase&& o) noexcept {
  std::swap(db_, o.db_);
  return *this;
}
QueryDatabase::~QueryDatabase() { sqlite3_close(db_); }

}  // namespace shmtrace::drain
