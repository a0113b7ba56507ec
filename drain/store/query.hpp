// Opening a drain's database for queries (tests, report, exports, users'
// programs): attaches every time partition read-only and unites them in the
// temporary views spans and span_data, so queries read as if the database
// were one file. Open a new one to see partitions created since.
#ifndef SHMTRACE_DRAIN_QUERY_HPP
#define SHMTRACE_DRAIN_QUERY_HPP

#include <expected>
#include <string>

struct sqlite3;

namespace shmtrace::drain {

class QueryDatabase {
 public:
  static std::expected<QueryDatabase, std::string> open(const std::string& path);
  QueryDatabase(QueryDatabase&& o) noexcept;
  QueryDatabase& operator=(QueryDatabase&& o) noexcept;
  QueryDatabase(const QueryDatabase&) = delete;
  QueryDatabase& operator=(const QueryDatabase&) = delete;
  ~QueryDatabase();

  sqlite3* handle() const { return db_; }

 private:
  QueryDatabase() = default;
  sqlite3* db_ = nullptr;
};

// The SQL that makes a plain `sqlite3 <db>` session see the partitions
// (ATTACH statements and the temporary views), for `shmtrace-drain --print-views`.
std::expected<std::string, std::string> query_views_sql(sqlite3* main_db, bool read_only);

}  // namespace shmtrace::drain

#endif
