#include "where.hpp"

#include <utility>

namespace shmtrace::query {
namespace {

std::string placeholders(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += i == 0 ? "?" : ", ?";
  return s;
}

}  // namespace

Where& Where::add(const std::string& condition, std::vector<Param> values) {
  conditions_.push_back("(" + condition + ")");
  for (Param& p : values) params_.push_back(std::move(p));
  return *this;
}

Where& Where::in(const std::string& column, const std::vector<std::int64_t>& values) {
  if (values.empty()) return *this;
  conditions_.push_back(column + " IN (" + placeholders(values.size()) + ")");
  for (std::int64_t v : values) params_.emplace_back(v);
  return *this;
}

Where& Where::in(const std::string& column, const std::vector<std::string>& values) {
  if (values.empty()) return *this;
  conditions_.push_back(column + " IN (" + placeholders(values.size()) + ")");
  for (const std::string& v : values) params_.emplace_back(v);
  return *this;
}

std::string Where::sql() const {
  std::string s;
  for (const std::string& c : conditions_) s += (s.empty() ? " WHERE " : " AND ") + c;
  return s;
}

std::string Where::and_sql() const {
  std::string s;
  for (const std::string& c : conditions_) s += " AND " + c;
  return s;
}

void add_pid_filter(Where& where, const std::string& column, const std::vector<std::int64_t>& pids) {
  if (pids.empty()) return;
  std::vector<Param> values(pids.begin(), pids.end());
  where.add(column + " IN (SELECT process_key FROM processes WHERE pid IN (" + placeholders(pids.size()) + "))",
            std::move(values));
}

std::expected<Query, std::string> Query::prepare(sqlite3* db, const std::string& sql,
                                                 const std::vector<Param>& params) {
  Query q;
  q.db_ = db;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q.s_, nullptr) != SQLITE_OK) {
    return std::unexpected(std::string(sqlite3_errmsg(db)));
  }
  int i = 0;
  for (const Param& p : params) {
    ++i;
    if (const auto* n = std::get_if<std::int64_t>(&p)) sqlite3_bind_int64(q.s_, i, *n);
    else if (const auto* d = std::get_if<double>(&p)) sqlite3_bind_double(q.s_, i, *d);
    else {
      const std::string& t = std::get<std::string>(p);
      sqlite3_bind_text(q.s_, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
    }
  }
  return q;
}

Query::Query(Query&& o) noexcept : db_(std::exchange(o.db_, nullptr)), s_(std::exchange(o.s_, nullptr)) {}

Query::~Query() { sqlite3_finalize(s_); }

std::expected<bool, std::string> Query::step() {
  const int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(std::string(sqlite3_errmsg(db_)));
}

std::string Query::text(int column) const {
  const unsigned char* t = sqlite3_column_text(s_, column);
  if (t == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(t), static_cast<std::size_t>(sqlite3_column_bytes(s_, column)));
}

}  // namespace shmtrace::query
