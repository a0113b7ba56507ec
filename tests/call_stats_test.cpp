// Call-site statistics (P13): the histogram's bucket math shared by the
// runtime and the reader, and the reader's validation of a statistics table
// another process wrote (built here in memory, as tests/reader_test.cpp does).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "call_stats.hpp"
#include "config.hpp"
#include "reader/reader.hpp"
#include "segment_layout.hpp"
#include "support/segment_builder.hpp"

namespace shmtrace {
namespace {

using test::Geometry;
using test::SegmentBuilder;

// ---------------------------------------------------------------------------
// Bucket layout
// ---------------------------------------------------------------------------
TEST(StatsBuckets, EveryBoundaryRoundTrips) {
  for (std::uint32_t b = 0; b < abi::kStatsBuckets; ++b) {
    const std::uint64_t lower = abi::stats_bucket_lower(b);
    const std::uint64_t upper = abi::stats_bucket_upper(b);
    ASSERT_LE(lower, upper) << b;
    ASSERT_EQ(abi::stats_bucket_of(lower), b) << b;
    ASSERT_EQ(abi::stats_bucket_of(upper), b) << b;
    if (lower > 0) ASSERT_EQ(abi::stats_bucket_of(lower - 1), b - 1) << b;
    if (b + 1 < abi::kStatsBuckets) {
      ASSERT_EQ(upper + 1, abi::stats_bucket_lower(b + 1)) << b;  // contiguous, no gap
    }
  }
  EXPECT_EQ(abi::stats_bucket_lower(0), 0u);
  EXPECT_EQ(abi::stats_bucket_upper(abi::kStatsBuckets - 1), ~0ull);
  EXPECT_EQ(abi::stats_bucket_of(~0ull), abi::kStatsBuckets - 1);
  EXPECT_EQ(abi::stats_bucket_of(1ull << 42), abi::kStatsBuckets - 1);
}

TEST(StatsBuckets, ExactBelow64AndWidthAtMostOne32ndAbove) {
  for (std::uint64_t v = 0; v < 64; ++v) {
    EXPECT_EQ(abi::stats_bucket_lower(abi::stats_bucket_of(v)), v);
    EXPECT_EQ(abi::stats_bucket_upper(abi::stats_bucket_of(v)), v);
  }
  for (std::uint32_t b = 64; b + 1 < abi::kStatsBuckets; ++b) {
    const double width = static_cast<double>(abi::stats_bucket_upper(b) - abi::stats_bucket_lower(b) + 1);
    ASSERT_LE(width / static_cast<double>(abi::stats_bucket_lower(b)), 1.0 / 32 + 1e-12) << b;
  }
}

// The midpoint of a value's bucket, converted at a clock rate, stays within
// 3 % of the value from 1 ns to 10 minutes: at 1 tick/ns (monotonic clock)
// and at TSC rates.
TEST(StatsBuckets, RelativeErrorWithinThreePercentFrom1nsTo10min) {
  for (const double ticks_per_ns : {1.0, 2.6, 3.7, 5.0}) {
    double worst = 0;
    for (double ns = 1; ns <= 600e9; ns *= 1.0007) {
      const auto ticks = static_cast<std::uint64_t>(std::llround(ns * ticks_per_ns));
      const std::uint32_t b = abi::stats_bucket_of(ticks);
      ASSERT_LT(b, abi::kStatsBuckets - 1) << ns;  // 10 minutes is below the open last bucket
      const double mid = (static_cast<double>(abi::stats_bucket_lower(b)) +
                          static_cast<double>(abi::stats_bucket_upper(b))) / 2;
      const double exact = static_cast<double>(ticks) / ticks_per_ns;  // what the clock said
      const double error = std::abs(mid / ticks_per_ns - exact) / exact;
      worst = std::max(worst, error);
    }
    EXPECT_LE(worst, 0.03) << ticks_per_ns;
    EXPECT_LE(worst, 0.016) << ticks_per_ns;  // the layout's own bound: half of 1/32
  }
}

TEST(StatsBuckets, SlotLayout) {
  EXPECT_EQ(sizeof(abi::StatsSlot), 9856u);
  EXPECT_EQ(offsetof(abi::StatsSlot, buckets), 128u);
  // 96 sites + "other" with the default ring stay under 2 MiB per thread.
  EXPECT_LE(sizeof(abi::RingControl) + 16384 * sizeof(abi::Record) + 97 * sizeof(abi::StatsSlot), 2u << 20);
  EXPECT_EQ(offsetof(abi::RingControl, stats_used), 192u);
}

// ---------------------------------------------------------------------------
// Configuration and layout: SHMTRACE_STATS_SITES
// ---------------------------------------------------------------------------
runtime::Config config_with(const char* sites, std::vector<std::string>& problems) {
  return runtime::parse_config(
      [sites](const char* name) { return std::string(name) == "SHMTRACE_STATS_SITES" ? sites : nullptr; },
      problems);
}

TEST(StatsConfig, SitesVariableSizesTheTable) {
  std::vector<std::string> problems;
  EXPECT_EQ(config_with(nullptr, problems).stats_sites, 96u);
  EXPECT_EQ(config_with("8", problems).stats_sites, 8u);
  EXPECT_EQ(config_with("0", problems).stats_sites, 0u);
  EXPECT_EQ(config_with("4096", problems).stats_sites, 4096u);
  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(config_with("4097", problems).stats_sites, 96u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0], "SHMTRACE_STATS_SITES=4097: expected an integer from 0 to 4096; using default 96");

  runtime::Config c;
  c.stats_sites = 8;
  EXPECT_EQ(runtime::compute_layout(c).ring_stats_bytes, 9u * sizeof(abi::StatsSlot));
  c.stats_sites = 0;
  EXPECT_EQ(runtime::compute_layout(c).ring_stats_bytes, 0u);
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------
constexpr std::uint32_t kSites = 2;

Geometry stats_geometry() {
  Geometry g;
  g.ring_stats_bytes = (kSites + 1) * sizeof(abi::StatsSlot);
  return g;
}

abi::StatsSlot* table(const SegmentBuilder& b, std::uint32_t ring) {
  return b.at<abi::StatsSlot>(abi::ring_offset(b.header(), ring) + abi::ring_stats_offset(b.header()));
}

void record(abi::StatsSlot& s, std::uint64_t ticks, bool error = false, std::uint64_t children = 0) {
  s.calls += 1;
  s.errors += error ? 1 : 0;
  s.total_ticks += ticks;
  s.self_ticks += ticks - children;
  s.min_ticks = std::min(s.min_ticks, ticks);
  s.max_ticks = std::max(s.max_ticks, ticks);
  s.buckets[abi::stats_bucket_of(ticks)] += 1;
}

// Ring 0 claimed by tid 77: slot 0 = name "parse" (3 ends, 1 ERR, 1 in
// flight), slot 1 = code 0x401000 (1 unfinished), "other" with 2 ends.
struct Fixture {
  SegmentBuilder b{stats_geometry()};
  std::uint32_t name = 0;
  Fixture() {
    name = b.intern("parse");
    b.ring(0).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
    b.ring(0).tid = 77;
    b.ring(0).stats_used = 2;
    abi::StatsSlot* t = table(b, 0);
    for (std::uint32_t i = 0; i <= kSites; ++i) t[i].min_ticks = ~0ull;
    t[0].kind = static_cast<std::uint32_t>(abi::CallSiteKind::kName);
    t[0].key = name;
    t[0].last_tid = 77;
    record(t[0], 1000);
    record(t[0], 2000, true, 1500);
    record(t[0], 100000, false, 99000);
    t[0].calls += 1;  // in flight
    t[1].kind = static_cast<std::uint32_t>(abi::CallSiteKind::kCode);
    t[1].key = 0x401000;
    t[1].calls = 1;
    t[1].unfinished = 1;
    t[2].kind = static_cast<std::uint32_t>(abi::CallSiteKind::kOther);
    record(t[2], 5);
    record(t[2], 7);
  }
  reader::Result<std::vector<reader::CallSiteStats>> read(std::uint32_t ring = 0) const {
    auto seg = reader::Segment::from_memory(b.base(), b.size(), reader::Access::kReadOnly);
    if (!seg) return std::unexpected(seg.error());
    return seg->call_site_stats(ring);
  }
};

TEST(StatsReader, ReadsEverySlotAndTheOtherSlot) {
  Fixture f;
  auto stats = f.read();
  ASSERT_TRUE(stats) << stats.error().message;
  ASSERT_EQ(stats->size(), 3u);
  const reader::CallSiteStats& parse = (*stats)[0];
  EXPECT_EQ(parse.kind, abi::CallSiteKind::kName);
  EXPECT_EQ(parse.name_id, f.name);
  EXPECT_EQ(parse.tid, 77u);
  EXPECT_EQ(parse.calls, 4u);
  EXPECT_EQ(parse.completed, 3u);
  EXPECT_EQ(parse.errors, 1u);
  EXPECT_EQ(parse.unfinished, 0u);
  EXPECT_EQ(parse.min_ticks, 1000u);
  EXPECT_EQ(parse.max_ticks, 100000u);
  EXPECT_DOUBLE_EQ(parse.total_ns, 103000.0);  // monotonic clock: 1 tick = 1 ns
  EXPECT_EQ(parse.self_ticks, 2500u);            // 1000 + 500 + 1000
  EXPECT_DOUBLE_EQ(parse.self_ns, 2500.0);
  EXPECT_EQ(parse.histogram.size(), 3u);
  EXPECT_NEAR(parse.quantile_ns(0.5), 2000.0, 2000.0 * 0.016);
  EXPECT_DOUBLE_EQ(parse.quantile_ns(0.0), 1000.0);    // clamped to min
  EXPECT_NEAR(parse.quantile_ns(1.0), 100000.0, 100000.0 * 0.016);  // the max's bucket
  EXPECT_LE(parse.quantile_ns(1.0), 100000.0);
  const reader::CallSiteStats& code = (*stats)[1];
  EXPECT_EQ(code.kind, abi::CallSiteKind::kCode);
  EXPECT_EQ(code.address, 0x401000u);
  EXPECT_EQ(code.unfinished, 1u);
  EXPECT_EQ(code.completed, 0u);
  EXPECT_EQ(code.min_ticks, 0u);  // no end yet
  EXPECT_EQ(code.quantile_ns(0.5), 0.0);
  const reader::CallSiteStats& other = (*stats)[2];
  EXPECT_EQ(other.kind, abi::CallSiteKind::kOther);
  EXPECT_EQ(other.slot, kSites);
  EXPECT_EQ(other.calls, 2u);
  EXPECT_EQ(other.min_ticks, 5u);
  EXPECT_EQ(other.max_ticks, 7u);
  EXPECT_EQ(other.self_ticks, 12u);  // no children: self = total
}

// ---------------------------------------------------------------------------
// Producer: what a call's end adds to its slot
// ---------------------------------------------------------------------------
TEST(StatsEnd, AddsSelfAndTotalAndDefersTheBucket) {
  abi::StatsSlot slot{};
  slot.min_ticks = ~0ull;
  std::uint64_t* pending = nullptr;
  runtime::stats_end(slot, 900, 300, false, pending);  // 600 ticks in callees
  EXPECT_EQ(slot.total_ticks, 900u);
  EXPECT_EQ(slot.self_ticks, 300u);
  EXPECT_EQ(slot.min_ticks, 900u);
  EXPECT_EQ(slot.max_ticks, 900u);
  EXPECT_EQ(slot.buckets[abi::stats_bucket_of(900)], 0u) << "deferred to the next end";
  EXPECT_EQ(pending, &slot.buckets[abi::stats_bucket_of(900)]);
  runtime::stats_end(slot, 40, 40, true, pending);  // a leaf: all of it its own
  EXPECT_EQ(slot.total_ticks, 940u);
  EXPECT_EQ(slot.self_ticks, 340u);
  EXPECT_EQ(slot.errors, 1u);
  EXPECT_EQ(slot.buckets[abi::stats_bucket_of(900)], 1u);
  runtime::flush_stats(pending);
  EXPECT_EQ(slot.buckets[abi::stats_bucket_of(40)], 1u);
  EXPECT_EQ(slot.unfinished, 0u);
  runtime::stats_unfinished(slot);  // no duration: neither total nor self moves
  EXPECT_EQ(slot.unfinished, 1u);
  EXPECT_EQ(slot.self_ticks, 340u);
  EXPECT_EQ(slot.total_ticks, 940u);
}

TEST(StatsReader, FreeRingAndStatisticsOffReadEmpty) {
  Fixture f;
  auto free_ring = f.read(1);
  ASSERT_TRUE(free_ring) << free_ring.error().message;
  EXPECT_TRUE(free_ring->empty());
  SegmentBuilder plain;
  auto seg = reader::Segment::from_memory(plain.base(), plain.size(), reader::Access::kReadOnly);
  ASSERT_TRUE(seg);
  auto none = seg->call_site_stats();
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto out_of_range = seg->call_site_stats(2);
  ASSERT_FALSE(out_of_range);
  EXPECT_NE(out_of_range.error().message.find("ring 2 out of range"), std::string::npos);
}

TEST(StatsReader, AllRingsInOrder) {
  Fixture f;
  f.b.ring(1).state = static_cast<std::uint32_t>(abi::RingState::kReleased);
  abi::StatsSlot* t = table(f.b, 1);
  t[kSites].kind = static_cast<std::uint32_t>(abi::CallSiteKind::kOther);
  t[kSites].calls = 9;
  auto seg = reader::Segment::from_memory(f.b.base(), f.b.size(), reader::Access::kReadOnly);
  ASSERT_TRUE(seg);
  auto all = seg->call_site_stats();
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[3].ring, 1u);
  EXPECT_EQ((*all)[3].calls, 9u);
}

struct StatsCorruption {
  const char* name;
  std::function<void(Fixture&)> corrupt;
  std::string expected;
};

class StatsReaderCorruption : public ::testing::TestWithParam<StatsCorruption> {};

TEST_P(StatsReaderCorruption, RejectedWithMessageNamingSlotAndField) {
  Fixture f;
  GetParam().corrupt(f);
  auto stats = f.read();
  ASSERT_FALSE(stats) << "accepted";
  EXPECT_NE(stats.error().message.find(GetParam().expected), std::string::npos) << stats.error().message;
  EXPECT_EQ(stats.error().message.rfind("segment ", 0), 0u) << stats.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, StatsReaderCorruption,
    ::testing::Values(
        StatsCorruption{"StatsUsedTooLarge", [](Fixture& f) { f.b.ring(0).stats_used = 3; },
                        "ring 0 statistics: stats_used 3 exceeds the 2 call-site slots"},
        StatsCorruption{"StatsUsedHuge", [](Fixture& f) { f.b.ring(0).stats_used = 0xffffffffu; },
                        "stats_used 4294967295 exceeds"},
        StatsCorruption{"UnknownKind", [](Fixture& f) { table(f.b, 0)[1].kind = 9; },
                        "slot 1: kind 9 is not a call site"},
        StatsCorruption{"UsedSlotUnassigned", [](Fixture& f) { table(f.b, 0)[0].kind = 0; },
                        "slot 0: kind 0 is not a call site"},
        StatsCorruption{"OtherKindInSiteSlot",
                        [](Fixture& f) { table(f.b, 0)[0].kind = static_cast<std::uint32_t>(abi::CallSiteKind::kOther); },
                        "slot 0: kind 3 is not a call site"},
        StatsCorruption{"OtherSlotKind", [](Fixture& f) { table(f.b, 0)[kSites].kind = 1; },
                        "slot 2: kind 1 is not \"other\""},
        StatsCorruption{"NameKeyTooLarge", [](Fixture& f) { table(f.b, 0)[0].key = 1ull << 40; },
                        "slot 0: name key 1099511627776 is not a string id"},
        StatsCorruption{"CodeKeyZero", [](Fixture& f) { table(f.b, 0)[1].key = 0; },
                        "slot 1: code address is 0"},
        StatsCorruption{"OtherWithKey", [](Fixture& f) { table(f.b, 0)[kSites].key = 5; },
                        "slot 2: \"other\" slot has key 5"},
        StatsCorruption{"HistogramExceedsCalls", [](Fixture& f) { table(f.b, 0)[0].calls = 2; },
                        "slot 0: histogram count 3 + unfinished 0 exceed calls 2"},
        StatsCorruption{"UnfinishedExceedsCalls", [](Fixture& f) { table(f.b, 0)[1].unfinished = 2; },
                        "slot 1: histogram count 0 + unfinished 2 exceed calls 1"},
        StatsCorruption{"HugeBucketsDoNotWrap",
                        [](Fixture& f) {
                          table(f.b, 0)[0].buckets[5] = ~0ull;
                          table(f.b, 0)[0].buckets[6] = 2;
                        },
                        "slot 0: histogram count 18446744073709551615"},
        StatsCorruption{"MinAboveMax", [](Fixture& f) { table(f.b, 0)[0].min_ticks = 200000; },
                        "slot 0: min_ticks 200000 exceeds max_ticks 100000"}),
    [](const ::testing::TestParamInfo<StatsCorruption>& info) { return std::string(info.param.name); });

TEST(StatsReaderHeader, StatsBytesMustBeWholeSlots) {
  for (const std::uint64_t bytes : {std::uint64_t{sizeof(abi::StatsSlot)}, std::uint64_t{sizeof(abi::StatsSlot) * 2 + 8},
                                    std::uint64_t{100}}) {
    Geometry g;
    g.ring_stats_bytes = bytes;
    SegmentBuilder b(g);
    auto seg = reader::Segment::from_memory(b.base(), b.size(), reader::Access::kReadOnly);
    ASSERT_FALSE(seg) << bytes;
    EXPECT_NE(seg.error().message.find("ring_stats_bytes " + std::to_string(bytes) +
                                       " is not a whole number (>= 2) of 9856-byte statistics slots"),
              std::string::npos)
        << seg.error().message;
  }
}

TEST(StatsReaderHeader, StatsMustFitTheStride) {
  Fixture f;
  f.b.header().ring_stats_bytes = 4 * sizeof(abi::StatsSlot);  // more than the stride holds
  auto seg = reader::Segment::from_memory(f.b.base(), f.b.size(), reader::Access::kReadOnly);
  ASSERT_FALSE(seg);
  EXPECT_NE(seg.error().message.find("is too small for 64 records and"), std::string::npos) << seg.error().message;
}

}  // namespace
}  // namespace shmtrace
