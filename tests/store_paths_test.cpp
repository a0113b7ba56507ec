// The database is one place however its path is spelled: the
// partition catalog names files relative to the database, so reopening it as
// ./t.db, by an absolute path from another working directory, or after its
// directory was moved keeps every span; the store never deletes a file it
// cannot prove it owns; the query views work from any directory.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "store/query.hpp"
#include "store/sqlite_util.hpp"
#include "store/store.hpp"
#include "support/test_database.hpp"

namespace shmtrace::test {
namespace {

namespace fs = std::filesystem;
using drain::Batch;
using drain::SegmentRows;
using drain::SpanRow;
constexpr std::int64_t kSecond = 1'000'000'000;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Batch spans_at(std::int64_t first_id, std::int64_t start_ns, int n) {
  Batch b;
  b.segments.push_back(SegmentRows{});
  SegmentRows& s = b.segments.back();
  s.process.segment = "seg.paths";
  s.process.pid = 4242;
  s.process.start_ns = start_ns;
  for (int i = 0; i < n; ++i) {
    SpanRow r;
    r.span_id = static_cast<std::uint64_t>(first_id + i);
    r.trace_id = std::string(32, 'a');
    r.group = "g";
    r.name = "f";
    r.start_ns = start_ns + i;
    r.duration_ns = 100;
    s.spans.push_back(r);
  }
  return b;
}

// A scratch directory made current for the test's lifetime (the paths under
// test are relative to it); the previous working directory comes back after.
struct ScratchDir {
  explicit ScratchDir(const std::string& name)
      : root(fs::temp_directory_path() / ("shmtrace-paths-" + std::to_string(::getpid()) + "-" + name)),
        previous(fs::current_path()) {
    fs::remove_all(root);
    fs::create_directories(root / "a");
    fs::create_directories(root / "elsewhere");
    fs::current_path(root / "a");
  }
  ~ScratchDir() {
    fs::current_path(previous);
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
  fs::path root;
  fs::path previous;
};

struct Opened {
  std::optional<drain::Store> store;
  std::string error;
  std::vector<std::string> notes;
};

Opened open_store(const std::string& path) {
  Opened out;
  drain::StoreOptions options;
  options.retention = std::chrono::seconds(3600);
  options.partition = std::chrono::seconds(600);
  options.log = [&notes = out.notes](const std::string& line) { notes.push_back(line); };
  auto s = drain::Store::open(path, options);
  if (s) {
    out.store.emplace(std::move(*s));
  } else {
    out.error = s.error().message;
  }
  return out;
}

std::int64_t span_count(const std::string& path) {
  Database d(path);
  EXPECT_EQ(d.error, "");
  return d.number("SELECT count(*) FROM spans");
}

// The files of a partitions directory, SQLite's -wal and -shm beside them left out.
std::vector<std::string> part_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!name.ends_with("-wal") && !name.ends_with("-shm")) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Three partitions (600 s wide) holding 300 spans, written through "t.db".
void fill(const std::string& path) {
  Opened o = open_store(path);
  ASSERT_TRUE(o.store) << o.error;
  const std::int64_t now = now_ns() / (600 * kSecond) * (600 * kSecond);
  for (int w = 2; w >= 0; --w) ASSERT_TRUE(o.store->write(spans_at(w * 100, now - w * 600 * kSecond, 100)));
  EXPECT_EQ(o.store->partition_count(), 3u);
  EXPECT_EQ(o.notes, std::vector<std::string>{});
}

TEST(StorePaths, TheSameDatabaseUnderAnotherSpellingKeepsEverySpan) {
  ScratchDir scratch("spelling");
  fill("t.db");
  const std::vector<std::string> files = part_files(scratch.root / "a" / "t.db.parts");
  ASSERT_EQ(files.size(), 3u);
  for (const std::string& spelling : {std::string("./t.db"), std::string("../a/t.db"), (scratch.root / "a/t.db").string()}) {
    Opened o = open_store(spelling);
    ASSERT_TRUE(o.store) << spelling << ": " << o.error;
    EXPECT_EQ(o.store->partition_count(), 3u) << spelling;
    EXPECT_EQ(o.notes, std::vector<std::string>{}) << spelling;
    o.store.reset();
    EXPECT_EQ(span_count(spelling), 300) << spelling;
    EXPECT_EQ(part_files(scratch.root / "a" / "t.db.parts"), files) << spelling;
  }
  // From another working directory, by its absolute path.
  fs::current_path(scratch.root / "elsewhere");
  {
    Opened o = open_store((scratch.root / "a/t.db").string());
    ASSERT_TRUE(o.store) << o.error;
    EXPECT_EQ(o.store->partition_count(), 3u);
  }
  EXPECT_EQ(span_count((scratch.root / "a/t.db").string()), 300);
  // After the directory holding it moved.
  fs::rename(scratch.root / "a", scratch.root / "moved");
  {
    Opened o = open_store((scratch.root / "moved/t.db").string());
    ASSERT_TRUE(o.store) << o.error;
    EXPECT_EQ(o.store->partition_count(), 3u);
    EXPECT_TRUE(o.store->write(spans_at(1000, now_ns(), 10)));
  }
  EXPECT_EQ(span_count((scratch.root / "moved/t.db").string()), 310);
  EXPECT_EQ(part_files(scratch.root / "moved" / "t.db.parts"), files);
  fs::rename(scratch.root / "moved", scratch.root / "a");  // for ScratchDir's cleanup of the cwd
}

TEST(StorePaths, ACatalogWrittenWithTypedPathsIsReadBesideTheDatabase) {
  ScratchDir scratch("legacy");
  fill("t.db");
  {
    // An older drain kept the paths as typed, relative to its own cwd.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open("t.db", &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE partitions SET file = 'somewhere/else/t.db.parts/p' || partition_id || '.db'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  fs::current_path(scratch.root / "elsewhere");
  {
    Opened o = open_store((scratch.root / "a/t.db").string());
    ASSERT_TRUE(o.store) << o.error;
    EXPECT_EQ(o.store->partition_count(), 3u);
    EXPECT_EQ(o.notes, std::vector<std::string>{});
  }
  Database d((scratch.root / "a/t.db").string());
  EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 300);
  EXPECT_EQ(d.number("SELECT count(*) FROM partitions WHERE file = 'p' || partition_id || '.db'"), 3);
}

TEST(StorePaths, FilesTheStoreDoesNotOwnAreLeftAloneAndTheirIdsNeverReused) {
  ScratchDir scratch("orphan");
  fill("t.db");
  // Not in the catalog: perhaps another database's partition, copied in.
  const fs::path parts = scratch.root / "a" / "t.db.parts";
  { std::ofstream(parts / "p7.db") << "not ours"; }
  { std::ofstream(parts / "notes.txt") << "the user's"; }
  Opened o = open_store("t.db");
  ASSERT_TRUE(o.store) << o.error;
  ASSERT_EQ(o.notes.size(), 1u);
  EXPECT_NE(o.notes[0].find("p7.db alone"), std::string::npos) << o.notes[0];
  // A new partition takes an id above every file there.
  ASSERT_TRUE(o.store->write(spans_at(5000, now_ns() + 3600 * kSecond, 5)));
  EXPECT_EQ(o.store->partition_count(), 4u);
  o.store.reset();
  std::ifstream in(parts / "p7.db");
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "not ours");
  EXPECT_TRUE(fs::exists(parts / "notes.txt"));
  EXPECT_TRUE(fs::exists(parts / "p8.db"));
  EXPECT_EQ(span_count("t.db"), 305);
}

TEST(StorePaths, AnInterruptedExpiryIsFinishedAndAMissingPartitionSaidOnce) {
  ScratchDir scratch("expiry");
  fill("t.db");
  const fs::path parts = scratch.root / "a" / "t.db.parts";
  // p1: set aside by an expiry that was killed before its row went; p2:
  // deleted by hand.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ignored;
    fs::rename(parts / ("p1.db" + std::string(suffix)), parts / ("p1.db.expired" + std::string(suffix)), ignored);
    fs::remove(parts / ("p2.db" + std::string(suffix)), ignored);
  }
  Opened o = open_store("t.db");
  ASSERT_TRUE(o.store) << o.error;
  EXPECT_EQ(o.store->partition_count(), 1u);
  ASSERT_EQ(o.notes.size(), 1u);
  EXPECT_NE(o.notes[0].find("p2.db is listed but missing"), std::string::npos) << o.notes[0];
  o.store.reset();
  EXPECT_EQ(part_files(parts), std::vector<std::string>{"p3.db"});
  EXPECT_EQ(span_count("t.db"), 100);
}

TEST(StorePaths, ADatabaseMovedWithoutItsPartitionsIsRefused) {
  ScratchDir scratch("without-parts");
  fill("t.db");
  fs::rename(scratch.root / "a" / "t.db", scratch.root / "elsewhere" / "t.db");
  Opened o = open_store((scratch.root / "elsewhere" / "t.db").string());
  EXPECT_FALSE(o.store);
  EXPECT_NE(o.error.find("lists 3 partitions but"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("does not exist"), std::string::npos) << o.error;
  // Nothing was forgotten: back beside its partitions, it has every span.
  fs::rename(scratch.root / "elsewhere" / "t.db", scratch.root / "a" / "t.db");
  EXPECT_EQ(span_count("t.db"), 300);
}

TEST(StorePaths, TheViewsStatementsWorkFromAnyDirectory) {
  ScratchDir scratch("views");
  fill("t.db");
  std::string text;
  {
    auto q = drain::QueryDatabase::open("./t.db");
    ASSERT_TRUE(q) << q.error();
    auto views = drain::query_views_sql(q->handle(), false);
    ASSERT_TRUE(views) << views.error();
    text = *views;
  }
  EXPECT_NE(text.find((scratch.root / "a" / "t.db.parts" / "p1.db").string()), std::string::npos) << text;
  // A plain sqlite3 session elsewhere, as `sqlite3 db -cmd "$(--print-views)"`.
  fs::current_path(scratch.root / "elsewhere");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((scratch.root / "a" / "t.db").c_str(), &db), SQLITE_OK);
  ASSERT_TRUE(drain::sql::exec(db, text));
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM spans", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(s, 0), 300);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// A drain killed while making a partition: whole but not yet renamed from
// p<id>.db.new (its row written) is put in place; a .new file no row names
// is its own leftover and removed; a listed file left empty by an older
// drain gets its tables. Every span stays readable and writable after.
TEST(StorePaths, APartitionMadeWhenTheDrainWasKilledIsFinishedAtTheNextStart) {
  ScratchDir scratch("killed-create");
  fill("t.db");
  const fs::path parts = scratch.root / "a" / "t.db.parts";
  fs::rename(parts / "p2.db", parts / "p2.db.new");        // listed, not renamed yet
  { std::ofstream(parts / "p9.db.new") << "half made"; }     // made, never listed
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(parts / ("p3.db" + std::string(suffix)));
  fs::resize_file(parts / "p3.db", 0);                      // listed, never given its tables
  {
    Opened o = open_store("t.db");
    ASSERT_TRUE(o.store) << o.error;
    EXPECT_EQ(o.store->partition_count(), 3u);
    EXPECT_EQ(o.notes, std::vector<std::string>{});
    // p3 held the newest window: writing into it works again.
    EXPECT_TRUE(o.store->write(spans_at(7000, now_ns() / (600 * kSecond) * (600 * kSecond) + 1, 4)));
  }
  EXPECT_EQ(part_files(parts), (std::vector<std::string>{"p1.db", "p2.db", "p3.db"}));
  EXPECT_EQ(span_count("t.db"), 204) << "p3's 100 spans went with its emptied file; the rest stay";
}

}  // namespace
}  // namespace shmtrace::test