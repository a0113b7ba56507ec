// Call-site statistics in the database (SPEC P13, D3): the store turns
// cumulative snapshots into per-interval rows, exactly once whatever is
// stored twice; the histogram blob's layout; the SQL functions, registered
// by the drain library and loadable into any SQLite as libshmtrace_sqlite.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>

#include "store/histogram_blob.hpp"
#include "store/spill_file.hpp"
#include "store/store.hpp"
#include "support/test_database.hpp"

namespace shmtrace::test {
namespace {

using drain::Batch;
using drain::CallStatsSnapshot;
namespace histogram = drain::histogram;
constexpr std::int64_t kSecond = 1'000'000'000;

// ns_per_tick 0.5: a bucket below 64 ticks is one exact tick value.
histogram::Histogram hist(std::vector<histogram::Bucket> buckets, double ns_per_tick = 0.5) {
  return histogram::Histogram{ns_per_tick, std::move(buckets)};
}

CallStatsSnapshot snapshot(std::uint32_t slot, const std::string& name, std::int64_t ts_ns, std::uint64_t calls,
                           std::uint64_t errors, const histogram::Histogram& h, std::uint64_t min_ticks,
                           std::uint64_t max_ticks) {
  CallStatsSnapshot s;
  s.ring = 1;
  s.slot = slot;
  s.tid = 77;
  s.kind = "name";
  s.name = name;
  s.ts_ns = ts_ns;
  s.calls = calls;
  s.errors = errors;
  s.completed = h.total();
  for (const histogram::Bucket& b : h.buckets) s.total_ticks += b.count * abi::stats_bucket_lower(b.index);
  s.min_ticks = min_ticks;
  s.max_ticks = max_ticks;
  s.histogram = histogram::encode(h);
  return s;
}

Batch batch_of(std::vector<CallStatsSnapshot> snapshots, std::int64_t process_start_ns = 10 * kSecond) {
  Batch b;
  b.segments.emplace_back();
  b.segments.back().process.segment = "shmtrace.4242.0001";
  b.segments.back().process.pid = 4242;
  b.segments.back().process.start_ns = process_start_ns;
  b.segments.back().call_stats = std::move(snapshots);
  return b;
}

std::string blob_column(const Database& d, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    out.assign(static_cast<const char*>(sqlite3_column_blob(s, 0)), static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
  }
  sqlite3_finalize(s);
  return out;
}

double real(const Database& d, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  double v = -1;
  if (sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
    v = sqlite3_column_type(s, 0) == SQLITE_NULL ? -2 : sqlite3_column_double(s, 0);
  }
  sqlite3_finalize(s);
  return v;
}

TEST(HistogramBlob, RoundTripsAndRefusesWhatIsNotOne) {
  const histogram::Histogram h = hist({{3, 5}, {64, 1}, {1215, 2}}, 0.37);
  const std::string blob = histogram::encode(h);
  EXPECT_EQ(blob.size(), histogram::kHeaderBytes + 3 * histogram::kEntryBytes);
  auto back = histogram::decode(blob);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->ns_per_tick, 0.37);
  EXPECT_EQ(back->buckets, h.buckets);
  EXPECT_EQ(back->total(), 8u);

  EXPECT_FALSE(histogram::decode(blob.substr(0, blob.size() - 1))) << "torn entry";
  EXPECT_FALSE(histogram::decode(std::string_view(blob).substr(0, 8))) << "short header";
  std::string wrong_version = blob;
  wrong_version[0] = 2;
  EXPECT_FALSE(histogram::decode(wrong_version));
  EXPECT_FALSE(histogram::decode(histogram::encode(hist({{5, 1}, {5, 1}})))) << "bucket twice";
  EXPECT_FALSE(histogram::decode(histogram::encode(hist({{9, 1}, {5, 1}})))) << "out of order";
  EXPECT_FALSE(histogram::decode(histogram::encode(hist({{abi::kStatsBuckets, 1}})))) << "bucket out of range";
  EXPECT_FALSE(histogram::decode(histogram::encode(hist({{1, 1}}, 0.0)))) << "clock 0";
  EXPECT_FALSE(histogram::decode(histogram::encode(hist({{1, 1}}, std::nan(""))))) << "clock NaN";
}

TEST(HistogramBlob, DifferenceIsPerBucketAndNeverNegative) {
  const auto d = histogram::difference(hist({{1, 5}, {7, 3}, {9, 4}}), hist({{1, 5}, {7, 1}, {8, 2}, {9, 9}}));
  EXPECT_EQ(d.buckets, (std::vector<histogram::Bucket>{{7, 2}}));
}

class CallStatsStore : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = drain::Store::open(db_, drain::StoreOptions{});
    ASSERT_TRUE(opened) << opened.error().message;
    store_.emplace(std::move(*opened));
  }
  void write(const Batch& b) {
    auto ok = store_->write(b);
    ASSERT_TRUE(ok) << ok.error().message;
  }
  TempDb db_{"call-stats"};
  std::optional<drain::Store> store_;
};

TEST_F(CallStatsStore, SnapshotsBecomeIntervalsWithExactDifferences) {
  // Interval 1: 4 calls of "parse" (1 error) ending in 10, 10, 12 ticks, one
  // still running; "idle" never called. Interval 2: 3 more calls, 2 of them
  // 30 ticks, 1 of 5 ticks (a new minimum), one error.
  write(batch_of({snapshot(0, "parse", 11 * kSecond, 4, 1, hist({{10, 2}, {12, 1}}), 10, 12),
                  snapshot(1, "idle", 11 * kSecond, 0, 0, hist({}), 0, 0)}));
  write(batch_of({snapshot(0, "parse", 12 * kSecond, 7, 2, hist({{5, 1}, {10, 2}, {12, 1}, {30, 2}}), 5, 30)}));
  Database d(db_);
  ASSERT_EQ(d.error, "");
  EXPECT_EQ(d.number("SELECT count(*) FROM call_stats"), 2);
  EXPECT_EQ(d.number("SELECT count(*) FROM call_sites"), 1) << "a site with no call has no row";
  const std::string first = " FROM call_stats WHERE end_ns = " + std::to_string(11 * kSecond);
  const std::string second = " FROM call_stats WHERE end_ns = " + std::to_string(12 * kSecond);
  EXPECT_EQ(d.number("SELECT start_ns" + first), 10 * kSecond) << "the first interval starts with the process";
  EXPECT_EQ(d.number("SELECT start_ns" + second), 11 * kSecond);
  EXPECT_EQ(d.text("SELECT name || ' ' || tid || ' ' || calls || ' ' || errors || ' ' || completed" + first),
            "parse 77 4 1 3");
  EXPECT_EQ(d.text("SELECT name || ' ' || tid || ' ' || calls || ' ' || errors || ' ' || completed" + second),
            "parse 77 3 1 3");
  EXPECT_EQ(real(d, "SELECT total_ns" + first), 16.0);  // (10 + 10 + 12) ticks * 0.5
  EXPECT_EQ(real(d, "SELECT total_ns" + second), 32.5);  // (5 + 30 + 30) * 0.5
  EXPECT_EQ(real(d, "SELECT min_ns" + first), 5.0);
  EXPECT_EQ(real(d, "SELECT max_ns" + first), 6.0);
  EXPECT_EQ(real(d, "SELECT min_ns" + second), 2.5) << "a new running minimum is exact";
  EXPECT_EQ(real(d, "SELECT max_ns" + second), 15.0);
  auto delta = histogram::decode(blob_column(d, "SELECT histogram" + second));
  ASSERT_TRUE(delta);
  EXPECT_EQ(delta->buckets, (std::vector<histogram::Bucket>{{5, 1}, {30, 2}}));
  EXPECT_EQ(d.number("SELECT sum(shmtrace_histogram_count(histogram)) FROM call_stats"), 6);
  EXPECT_EQ(d.text("SELECT calls || ' ' || completed || ' ' || last_ns FROM call_sites"),
            "7 6 " + std::to_string(12 * kSecond));
}

TEST_F(CallStatsStore, ASnapshotStoredAgainOrOutOfOrderAddsNothing) {
  const Batch one = batch_of({snapshot(0, "f", 11 * kSecond, 4, 0, hist({{10, 4}}), 10, 10)});
  const Batch two = batch_of({snapshot(0, "f", 12 * kSecond, 9, 0, hist({{10, 9}}), 10, 10)});
  write(one);
  write(one);  // a drain killed between its commit and the hand-back
  write(two);
  write(one);  // an older snapshot after a newer one (a spill replayed late)
  write(two);
  Database d(db_);
  EXPECT_EQ(d.number("SELECT count(*) FROM call_stats"), 2);
  EXPECT_EQ(d.number("SELECT sum(calls) FROM call_stats"), 9);
  EXPECT_EQ(d.number("SELECT sum(completed) FROM call_stats"), 9);
}

TEST_F(CallStatsStore, SnapshotsSurviveTheSpillFile) {
  const Batch b = batch_of({snapshot(3, "spilled", 11 * kSecond, 2, 1, hist({{40, 2}}, 0.25), 40, 40)});
  const std::vector<std::uint8_t> bytes = drain::serialize(b);
  auto back = drain::deserialize(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.error();
  ASSERT_EQ(back->segments.size(), 1u);
  ASSERT_EQ(back->segments[0].call_stats.size(), 1u);
  const CallStatsSnapshot& s = back->segments[0].call_stats[0];
  EXPECT_EQ(s.slot, 3u);
  EXPECT_EQ(s.name, "spilled");
  EXPECT_EQ(s.calls, 2u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.histogram, b.segments[0].call_stats[0].histogram);
  write(*back);
  Database d(db_);
  EXPECT_EQ(d.number("SELECT calls FROM call_stats WHERE name = 'spilled'"), 2);
}

// Self time: call_sites keeps the cumulative self_ticks, call_stats each
// interval's difference in ns (the clock's ns_per_tick, as total_ns), and
// function_stats sums it per function.
TEST_F(CallStatsStore, SelfTimeIsCumulativePerSiteAndPerIntervalInNs) {
  CallStatsSnapshot first = snapshot(0, "outer", 11 * kSecond, 2, 0, hist({{40, 2}}), 40, 40);
  first.self_ticks = 30;  // of 80 ticks, 50 in callees
  CallStatsSnapshot second = snapshot(0, "outer", 12 * kSecond, 5, 0, hist({{40, 5}}), 40, 40);
  second.self_ticks = 104;
  write(batch_of({first}));
  write(batch_of({second}));
  write(batch_of({first}));  // older: adds nothing
  Database d(db_);
  ASSERT_EQ(d.error, "");
  EXPECT_EQ(d.number("SELECT self_ticks FROM call_sites"), 104);
  EXPECT_EQ(real(d, "SELECT self_ns FROM call_stats WHERE end_ns = " + std::to_string(11 * kSecond)), 15.0);
  EXPECT_EQ(real(d, "SELECT self_ns FROM call_stats WHERE end_ns = " + std::to_string(12 * kSecond)), 37.0);
  EXPECT_EQ(real(d, "SELECT self_ns FROM function_stats WHERE name = 'outer'"), 52.0);
  EXPECT_EQ(real(d, "SELECT total_ns FROM function_stats WHERE name = 'outer'"), 100.0);
}

// A batch spilled by a drain before self time (an "SPL1" payload) still
// reads back and stores, with self time 0; the current format keeps it.
TEST_F(CallStatsStore, SelfTimeSurvivesTheSpillFileAndOlderFormatsStillRead) {
  CallStatsSnapshot s = snapshot(2, "kept", 11 * kSecond, 3, 0, hist({{10, 3}}), 10, 10);
  s.self_ticks = 21;
  const Batch b = batch_of({s});
  const auto now = drain::serialize(b);
  auto back = drain::deserialize(now.data(), now.size());
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->segments[0].call_stats[0].self_ticks, 21u);
  const auto old = drain::serialize(b, 1);
  EXPECT_EQ(old.size() + 8, now.size()) << "version 1 has no self_ticks word";
  EXPECT_FALSE(drain::deserialize(old.data(), old.size())) << "a v1 payload is not a v2 one";
  auto older = drain::deserialize(old.data(), old.size(), 1);
  ASSERT_TRUE(older) << older.error();
  EXPECT_EQ(older->segments[0].call_stats[0].self_ticks, 0u);
  EXPECT_EQ(older->segments[0].call_stats[0].calls, 3u);
  EXPECT_FALSE(drain::deserialize(now.data(), now.size(), 3));
  write(*older);
  Database d(db_);
  EXPECT_EQ(real(d, "SELECT self_ns FROM call_stats WHERE name = 'kept'"), 0.0);
  EXPECT_EQ(d.number("SELECT calls FROM call_stats WHERE name = 'kept'"), 3);
}

// The percentiles of several intervals and threads of one function, from
// SQL: rank ceil(q * n) in the merged histogram, the midpoint of its bucket.
TEST_F(CallStatsStore, QuantilesComeFromTheMergedHistogramsOfAllRows) {
  // Buckets below 64 hold one tick value each; from 64 on, 32 per power of
  // two: bucket 64 + k covers ticks [64 + 2k, 65 + 2k]. At 1 ns a tick:
  ASSERT_EQ(abi::stats_bucket_lower(70), 76u);
  ASSERT_EQ(abi::stats_bucket_upper(70), 77u);
  write(batch_of({snapshot(0, "g", 11 * kSecond, 50, 0, hist({{20, 50}}, 1.0), 20, 20),
                  snapshot(1, "g", 11 * kSecond, 45, 0, hist({{70, 45}}, 1.0), 76, 77)}));
  write(batch_of({snapshot(1, "g", 12 * kSecond, 50, 0, hist({{70, 45}, {abi::kStatsBuckets - 2, 5}}, 1.0), 76,
                           abi::stats_bucket_upper(abi::kStatsBuckets - 2))}));
  Database d(db_);
  EXPECT_EQ(d.number("SELECT sum(completed) FROM call_stats WHERE name = 'g'"), 100);
  EXPECT_EQ(real(d, "SELECT shmtrace_quantile(histogram, 0.5) FROM call_stats WHERE name = 'g'"), 20.0);
  EXPECT_EQ(real(d, "SELECT shmtrace_quantile(histogram, 0.51) FROM call_stats WHERE name = 'g'"), 76.5);
  EXPECT_EQ(real(d, "SELECT shmtrace_quantile(histogram, 0.95) FROM call_stats WHERE name = 'g'"), 76.5);
  const double top = (static_cast<double>(abi::stats_bucket_lower(abi::kStatsBuckets - 2)) +
                      static_cast<double>(abi::stats_bucket_upper(abi::kStatsBuckets - 2))) / 2;
  EXPECT_EQ(real(d, "SELECT shmtrace_quantile(histogram, 0.99) FROM call_stats WHERE name = 'g'"), top);
  EXPECT_EQ(real(d, "SELECT shmtrace_quantile(histogram, 0) FROM call_stats WHERE name = 'g'"), 20.0);
  EXPECT_EQ(real(d, "SELECT shmtrace_quantile(histogram, 0.5) FROM call_stats WHERE name = 'none'"), -2.0)
      << "no call: NULL";
  // The view sums per function over all time.
  EXPECT_EQ(d.text("SELECT calls || ' ' || completed || ' ' || p50_ns || ' ' || p95_ns FROM function_stats "
                   "WHERE name = 'g'"),
            "100 100 20.0 76.5");
  EXPECT_EQ(real(d, "SELECT min_ns FROM function_stats WHERE name = 'g'"), 20.0);
}

TEST_F(CallStatsStore, QuantileRefusesBadArgumentsWithOneLine) {
  write(batch_of({snapshot(0, "h", 11 * kSecond, 1, 0, hist({{9, 1}}), 9, 9)}));
  Database d(db_);
  sqlite3_stmt* s = nullptr;
  auto error_of = [&](const std::string& sql) {
    std::string message;
    if (sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK) {
      if (sqlite3_step(s) == SQLITE_ERROR) message = sqlite3_errmsg(d.db);
    }
    sqlite3_finalize(s);
    return message;
  };
  EXPECT_EQ(error_of("SELECT shmtrace_quantile(histogram, 1.5) FROM call_stats"),
            "shmtrace_quantile: q must be a number from 0 to 1");
  EXPECT_EQ(error_of("SELECT shmtrace_quantile(histogram, 'half') FROM call_stats"),
            "shmtrace_quantile: q must be a number from 0 to 1");
  EXPECT_EQ(error_of("SELECT shmtrace_quantile(x'0102', 0.5)"),
            "shmtrace_quantile: not a shmtrace histogram (2 bytes; expected the call_stats.histogram layout)");
  EXPECT_EQ(error_of("SELECT shmtrace_histogram_count('text')"),
            "shmtrace_histogram_count: not a shmtrace histogram (4 bytes; expected the call_stats.histogram layout)");
}

// The extension gives a plain SQLite connection (the sqlite3 shell, Python)
// the same functions.
TEST_F(CallStatsStore, TheLoadableExtensionServesAPlainConnection) {
  write(batch_of({snapshot(0, "k", 11 * kSecond, 3, 0, hist({{9, 3}}, 1.0), 9, 9)}));
  sqlite3* plain = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_.path.c_str(), &plain, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  auto query = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(plain, sql, -1, &s, nullptr) != SQLITE_OK) return std::string(sqlite3_errmsg(plain));
    if (sqlite3_step(s) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  };
  EXPECT_EQ(query("SELECT p50_ns FROM function_stats"), "no such function: shmtrace_quantile");
  ASSERT_EQ(sqlite3_enable_load_extension(plain, 1), SQLITE_OK);
  char* message = nullptr;
  ASSERT_EQ(sqlite3_load_extension(plain, SHMTRACE_SQLITE_EXTENSION_PATH, nullptr, &message), SQLITE_OK)
      << (message != nullptr ? message : "");
  EXPECT_EQ(query("SELECT calls || ' ' || p50_ns FROM function_stats WHERE name = 'k'"), "3 9.0");
  sqlite3_close(plain);
}

TEST_F(CallStatsStore, IntervalsExpireWithTheRetention) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  const std::int64_t old = now - 7 * 3600 * kSecond;  // past the default 6 h
  write(batch_of({snapshot(0, "old", old, 1, 0, hist({{9, 1}}), 9, 9)}, old - kSecond));
  write(batch_of({snapshot(0, "old", now, 3, 0, hist({{9, 3}}), 9, 9)}, old - kSecond));
  auto expired = store_->expire(now);
  ASSERT_TRUE(expired) << expired.error().message;
  Database d(db_);
  EXPECT_EQ(d.number("SELECT count(*) FROM call_stats"), 1);
  EXPECT_EQ(d.number("SELECT calls FROM call_stats"), 2);
}

}  // namespace
}  // namespace shmtrace::test
