// Small SQLite helpers shared by the store, its partitions and the query
// side: an owning statement, a binder, and exec with the error as a value.
#ifndef SHMTRACE_DRAIN_SQLITE_UTIL_HPP
#define SHMTRACE_DRAIN_SQLITE_UTIL_HPP

#include <sqlite3.h>

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace shmtrace::drain::sql {

// Runs SQL text (several statements allowed); the error is SQLite's message.
inline std::expected<void, std::string> exec(sqlite3* db, const std::string& text) {
  char* message = nullptr;
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string e = message != nullptr ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    return std::unexpected(e);
  }
  return {};
}

class Statement {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Statement& operator=(Statement&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Statement() { sqlite3_finalize(s_); }

  static std::expected<Statement, std::string> prepare(sqlite3* db, const std::string& text) {
    Statement st;
    if (sqlite3_prepare_v3(db, text.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st.s_, nullptr) != SQLITE_OK) {
      return std::unexpected(std::string(sqlite3_errmsg(db)) + " in: " + text.substr(0, 80));
    }
    return st;
  }
  sqlite3_stmt* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }
  void reset() { s_ != nullptr ? (void)sqlite3_finalize(std::exchange(s_, nullptr)) : void(); }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// Binds values in order. Text is bound SQLITE_STATIC: it must outlive the
// step, which every caller here guarantees (rows outlive their statement's
// execution).
class Binder {
 public:
  explicit Binder(sqlite3_stmt* s) : s_(s) { sqlite3_reset(s_); }
  Binder& operator()(std::int64_t v) {
    sqlite3_bind_int64(s_, ++i_, v);
    return *this;
  }
  Binder& operator()(std::uint64_t v) { return (*this)(static_cast<std::int64_t>(v)); }
  Binder& operator()(std::uint32_t v) { return (*this)(static_cast<std::int64_t>(v)); }
  Binder& operator()(int v) { return (*this)(static_cast<std::int64_t>(v)); }
  Binder& operator()(double v) {
    sqlite3_bind_double(s_, ++i_, v);
    return *this;
  }
  Binder& operator()(std::string_view v) {
    sqlite3_bind_text(s_, ++i_, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Binder& operator()(const std::string& v) { return (*this)(std::string_view(v)); }
  Binder& blob(std::string_view v) {
    sqlite3_bind_blob(s_, ++i_, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Binder& null() {
    sqlite3_bind_null(s_, ++i_);
    return *this;
  }

 private:
  sqlite3_stmt* s_;
  int i_ = 0;
};

// Steps a statement that returns no rows, then resets it.
inline bool step_done(sqlite3_stmt* s) {
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE;
}

}  // namespace shmtrace::drain::sql

#endif
