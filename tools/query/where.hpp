// A WHERE clause built from a Filter with every value a bound parameter:
// the text holds only `?` placeholders and column names chosen by the code,
// never a value the user typed, so no filter can change a query's meaning.
#ifndef SHMTRACE_TOOLS_QUERY_WHERE_HPP
#define SHMTRACE_TOOLS_QUERY_WHERE_HPP

#include <sqlite3.h>

#include <cstdint>
#include <expected>
#include <string>
#include <variant>
#include <vector>

#include "filter.hpp"

namespace shmtrace::query {

using Param = std::variant<std::int64_t, double, std::string>;

class Where {
 public:
  // `condition` with its own `?`s, and their values in order.
  Where& add(const std::string& condition, std::vector<Param> values = {});
  // column IN (?, ?, ...); nothing when `values` is empty.
  Where& in(const std::string& column, const std::vector<std::int64_t>& values);
  Where& in(const std::string& column, const std::vector<std::string>& values);
  // " WHERE a AND b" or "" when nothing was added.
  std::string sql() const;
  // " AND a AND b" (for a query with a WHERE of its own) or "".
  std::string and_sql() const;
  const std::vector<Param>& params() const { return params_; }

 private:
  std::vector<std::string> conditions_;
  std::vector<Param> params_;
};

// A prepared statement with its parameters bound, finalized at scope exit.
class Query {
 public:
  static std::expected<Query, std::string> prepare(sqlite3* db, const std::string& sql,
                                                   const std::vector<Param>& params);
  Query(Query&& o) noexcept;
  Query& operator=(Query&&) = delete;
  Query(const Query&) = delete;
  ~Query();
  // true on a row; false when done; an error when the step failed.
  std::expected<bool, std::string> step();
  // Calls `each` on every row left, which it reads through this Query; the
  // failed step's error after "`what`: ".
  template <class Each>
  std::expected<void, std::string> each_row(const std::string& what, Each&& each) {
    while (true) {
      auto row = step();
      if (!row) return std::unexpected(what + ": " + row.error());
      if (!*row) return {};
      each();
    }
  }
  // From the start again, with ?1 bound to `first` (the other values kept).
  void rerun(std::int64_t first) {
    sqlite3_reset(s_);
    sqlite3_bind_int64(s_, 1, first);
  }
  sqlite3_stmt* get() const { return s_; }
  std::int64_t integer(int column) const { return sqlite3_column_int64(s_, column); }
  double real(int column) const { return sqlite3_column_double(s_, column); }
  bool is_null(int column) const { return sqlite3_column_type(s_, column) == SQLITE_NULL; }
  std::string text(int column) const;

 private:
  Query() = default;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
};

// The process keys a filter's --pid names, as a condition on `column`
// (e.g. "c.process_key"): every image of those pids, exec'd ones included.
void add_pid_filter(Where& where, const std::string& column, const std::vector<std::int64_t>& pids);

}  // namespace shmtrace::query

#endif
