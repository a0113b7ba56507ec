// WAL checkpoints off the commit path (store/checkpointer.hpp): a writer
// that keeps committing sees its WAL copied into the database by the
// background thread, completed by its own next commit, and restarted, so
// the WAL file stays bounded; nothing written is lost; forget() keeps the
// background away from a file about to go.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <string>

#include "store/checkpointer.hpp"
#include "support/test_database.hpp"

namespace shmtrace::test {
namespace {

std::int64_t size_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_size) : -1;
}

struct Writer {
  explicit Writer(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=16777216;"
         "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  }
  ~Writer() { sqlite3_close(db); }
  void exec(const std::string& sql) const { ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db); }
  // One transaction of `rows` rows of 1 KiB.
  void commit(int rows) {
    exec("BEGIN");
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO t (k, v) VALUES (?, zeroblob(1024))", -1, &s, nullptr);
    for (int i = 0; i < rows; ++i) {
      sqlite3_bind_int64(s, 1, next++);
      ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
      sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT");
  }
  sqlite3* db = nullptr;
  std::int64_t next = 0;
};

TEST(Checkpointer, TheBackgroundCopiesTheWalTheWriterRestartsItAndNothingIsLost) {
  const TempDb db("checkpointer");
  Writer w(db);
  std::int64_t largest_wal = 0;
  {
    drain::Checkpointer checkpointer(w.db, [&](const std::string& schema) { return schema == "main" ? db.path : ""; });
    // 120 MiB in 2 MiB transactions: the WAL crosses 16 MiB many times.
    for (int i = 0; i < 60; ++i) {
      w.commit(2048);
      largest_wal = std::max(largest_wal, size_of(db.path + "-wal"));
    }
    EXPECT_GE(checkpointer.background_checkpoints(), 2u);
    EXPECT_GE(checkpointer.inline_checkpoints(), 2u) << "the writer completes what the background copied";
  }
  // Bounded below the 120 MiB written (the inline fallback at 256 MiB was
  // never needed): the start threshold plus what commits add while the
  // background copies (more on a loaded machine).
  EXPECT_LT(largest_wal, 100ll << 20) << "the WAL was restarted";
  Database d(db.path);
  sqlite3* plain = nullptr;
  ASSERT_EQ(sqlite3_open(db.path.c_str(), &plain), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(plain, "SELECT count(*), min(k), max(k) FROM t", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(s, 0), 60 * 2048);
  EXPECT_EQ(sqlite3_column_int64(s, 1), 0);
  EXPECT_EQ(sqlite3_column_int64(s, 2), 60 * 2048 - 1);
  sqlite3_finalize(s);
  sqlite3_close(plain);
}

TEST(Checkpointer, ForgetDropsAPendingRequestAndASchemaWithoutAFileIsLeftAlone) {
  const TempDb db("checkpointer-forget");
  Writer w(db);
  drain::Checkpointer checkpointer(w.db, [](const std::string&) { return std::string(); });
  for (int i = 0; i < 12; ++i) w.commit(2048);  // 24 MiB
  checkpointer.forget(db.path, true);
  EXPECT_EQ(checkpointer.background_checkpoints(), 0u) << "no file: no background checkpoint";
}

}  // namespace
}  // namespace shmtrace::test
