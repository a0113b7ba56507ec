// The store's time partitions and retention (SPEC D3, D4): rows go to the
// partition of their timestamp, expiry removes (or archives) whole partition
// files and bounded slices of the main file, ingestion goes on meanwhile,
// and storing a batch twice changes nothing.
#include <gtest/gtest.h>

#include <filesystem>

#include "store/store.hpp"
#include "support/test_database.hpp"

namespace shmtrace::test {
namespace {

using drain::Batch;
using drain::SegmentRows;
using drain::SpanRow;
constexpr std::int64_t kSecond = 1'000'000'000;

Batch spans_at(const std::string& segment, std::int64_t first_id, std::int64_t start_ns, int n) {
  Batch b;
  b.segments.push_back(SegmentRows{});
  SegmentRows& s = b.segments.back();
  s.process.segment = segment;
  s.process.pid = 4242;
  s.process.start_ns = start_ns;
  for (int i = 0; i < n; ++i) {
    SpanRow r;
    r.span_id = static_cast<std::uint64_t>(first_id + i);
    r.trace_id = std::string(32, 'a');
    r.group = "g";
    r.name = "f" + std::to_string(i % 3);
    r.start_ns = start_ns + i;
    r.duration_ns = 100 + i;
    s.spans.push_back(r);
    drain::SpanDataRow d;
    d.position = static_cast<std::uint64_t>(first_id + i);
    d.span_id = r.span_id;
    d.kind = "arg";
    d.ts_ns = r.start_ns;
    d.name = "x";
    d.value = std::to_string(i);
    d.value_type = "int";
    s.span_data.push_back(d);
  }
  return b;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(StoreRetention, RowsGoToTheirPartitionAndExpireWithIt) {
  const TempDb db("retention");
  drain::StoreOptions options;
  options.retention = std::chrono::seconds(60);
  options.partition = std::chrono::seconds(10);
  auto store = drain::Store::open(db, options);
  ASSERT_TRUE(store) << store.error().message;
  // Early in a 10 s window, so that now + 1 s below falls in the same one.
  const std::int64_t now = now_ns() / (10 * kSecond) * (10 * kSecond) + kSecond;
  // Three windows: 5 minutes ago (expired), 30 s ago and now (kept).
  for (auto [id, at] : {std::pair{0, now - 300 * kSecond}, std::pair{1000, now - 30 * kSecond}, std::pair{2000, now}}) {
    ASSERT_TRUE(store->write(spans_at("seg.a", id, at, 500)));
  }
  // A batch stored twice (a drain killed before handing slots back) adds nothing.
  ASSERT_TRUE(store->write(spans_at("seg.a", 2000, now, 500)));
  EXPECT_EQ(store->partition_count(), 3u);
  {
    Database d(db);
    ASSERT_EQ(d.error, "");
    EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 1500);
    EXPECT_EQ(d.number("SELECT count(*) FROM span_data"), 1500);
    EXPECT_EQ(d.number("SELECT count(*) FROM processes"), 1);
  }
  auto expired = store->expire(now);
  ASSERT_TRUE(expired) << expired.error().message;
  EXPECT_EQ(expired->partitions_removed, 1u);
  EXPECT_EQ(store->partition_count(), 2u);
  // Ingestion goes on after (and beside) expiry.
  ASSERT_TRUE(store->write(spans_at("seg.a", 3000, now + kSecond, 10)));
  Database d(db);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 1010);
  EXPECT_EQ(d.number("SELECT min(span_id) FROM spans"), 1000);
  EXPECT_EQ(d.number("SELECT count(*) FROM partitions"), 2);
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(db.path + ".parts")) files += e.path().extension() == ".db";
  EXPECT_EQ(files, 2u) << "the expired partition's file is gone";
}

TEST(StoreRetention, ExpiredPartitionsAreArchivedWhenAsked) {
  const TempDb db("archive");
  const std::string archive = db.path + ".archive";
  std::filesystem::remove_all(archive);
  drain::StoreOptions options;
  options.retention = std::chrono::seconds(60);
  options.partition = std::chrono::seconds(10);
  options.archive_dir = archive;
  {
    auto store = drain::Store::open(db, options);
    ASSERT_TRUE(store);
    const std::int64_t now = now_ns();
    ASSERT_TRUE(store->write(spans_at("seg.b", 0, now - 600 * kSecond, 250)));
    ASSERT_TRUE(store->write(spans_at("seg.b", 1000, now, 5)));
    auto expired = store->expire(now);
    ASSERT_TRUE(expired);
    EXPECT_EQ(expired->partitions_archived, 1u);
  }
  // The archive is a plain SQLite file with the expired rows.
  std::vector<std::filesystem::path> archived;
  for (const auto& e : std::filesystem::directory_iterator(archive)) archived.push_back(e.path());
  ASSERT_EQ(archived.size(), 1u);
  sqlite3* a = nullptr;
  ASSERT_EQ(sqlite3_open_v2(archived[0].c_str(), &a, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(a, "SELECT count(*) FROM spans", -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(s, 0), 250);
  sqlite3_finalize(s);
  sqlite3_close(a);
  std::filesystem::remove_all(archive);
}

TEST(StoreRetention, OpenSpansAreCompletedByTheirEndInALaterBatch) {
  const TempDb db("open-spans");
  auto store = drain::Store::open(db);
  ASSERT_TRUE(store);
  const std::int64_t now = now_ns();
  Batch begin = spans_at("seg.c", 7, now, 1);
  begin.segments[0].spans[0].duration_ns.reset();
  ASSERT_TRUE(store->write(begin));
  {
    Database d(db);
    EXPECT_EQ(d.number("SELECT count(*) FROM spans WHERE duration_ns IS NULL"), 1);
  }
  Batch end = spans_at("seg.c", 7, now, 1);
  end.segments[0].spans[0].status = 1;
  ASSERT_TRUE(store->write(end));
  ASSERT_TRUE(store->write(begin));  // a begin stored again never undoes its end
  Database d(db);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 1);
  EXPECT_EQ(d.number("SELECT duration_ns FROM spans"), 100);
  EXPECT_EQ(d.number("SELECT status FROM spans"), 1);
}

TEST(StoreRetention, ReopenedStoreFindsItsPartitionsAndLeavesFilesItDoesNotOwn) {
  const TempDb db("reopen");
  const std::int64_t now = now_ns();
  {
    auto store = drain::Store::open(db);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->write(spans_at("seg.d", 0, now, 20)));
  }
  // A file no catalog row names (expiry renames a file before its row goes,
  // so this is nothing the store left): not ours to delete. A file set aside
  // for expiry is.
  std::filesystem::copy_file(db.path + ".parts/p1.db", db.path + ".parts/p99.db");
  std::filesystem::copy_file(db.path + ".parts/p1.db", db.path + ".parts/p98.db.expired");
  auto store = drain::Store::open(db);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store->partition_count(), 1u);
  EXPECT_TRUE(std::filesystem::exists(db.path + ".parts/p99.db"));
  EXPECT_FALSE(std::filesystem::exists(db.path + ".parts/p98.db.expired"));
  ASSERT_TRUE(store->write(spans_at("seg.d", 100, now, 20)));
  Database d(db);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 40);
}

}  // namespace
}  // namespace shmtrace::test
