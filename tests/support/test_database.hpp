// A drain database for a test: a path in /tmp whose files (partitions, spill,
// lock) are removed before and after, and a query handle that sees the time
// partitions through the views spans and span_data; checks the drain tests
// share.
#ifndef SHMTRACE_TEST_DATABASE_HPP
#define SHMTRACE_TEST_DATABASE_HPP

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "store/query.hpp"

namespace shmtrace::test {

struct TempDb {
  explicit TempDb(const std::string& name)
      : path("/tmp/shmtrace-test-" + std::to_string(::getpid()) + "-" + name + ".db") {
    remove();
  }
  ~TempDb() { remove(); }
  void remove() const {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", ".lock", ".spill"}) std::filesystem::remove(path + suffix, ignored);
    std::filesystem::remove_all(path + ".parts", ignored);
  }
  operator const std::string&() const { return path; }
  std::string path;
};

struct Database {
  explicit Database(const std::string& path) {
    auto opened = drain::QueryDatabase::open(path);
    if (opened) {
      q.emplace(std::move(*opened));
      db = q->handle();
    } else {
      error = opened.error();
    }
  }
  // -1 when the query fails (the test's expectation then fails visibly).
  std::int64_t number(const std::string& sql) const {
    sqlite3_stmt* s = nullptr;
    std::int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      v = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return v;
  }
  std::string text(const std::string& sql) const {
    sqlite3_stmt* s = nullptr;
    std::string v;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      if (const unsigned char* t = sqlite3_column_text(s, 0)) v = reinterpret_cast<const char*>(t);
    }
    sqlite3_finalize(s);
    return v;
  }
  std::optional<drain::QueryDatabase> q;
  sqlite3* db = nullptr;
  std::string error;
};

// The counters st_producer's `sequence` mode wrote from process `pid`:
// `threads` threads, each exactly 0..n-1, each once.
inline void expect_exact_counters(const Database& d, pid_t pid, int threads, long n) {
  const std::string of_pid = " FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " +
                             std::to_string(pid) + " AND r.kind = 'counter'";
  EXPECT_EQ(d.number("SELECT count(*)" + of_pid), threads * n);
  EXPECT_EQ(d.number("SELECT count(DISTINCT tid)" + of_pid), threads);
  EXPECT_EQ(d.number("SELECT count(*) FROM (SELECT tid, count(DISTINCT value) c, min(CAST(value AS INTEGER)) lo, "
                     "max(CAST(value AS INTEGER)) hi" + of_pid + " GROUP BY tid) WHERE c = " + std::to_string(n) +
                     " AND lo = 0 AND hi = " + std::to_string(n - 1)),
            threads);
}

}  // namespace shmtrace::test

#endif
