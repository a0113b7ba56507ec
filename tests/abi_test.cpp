// ABI facts beyond the header's static_asserts: the record kind table, the
// version and magic values as bytes, segment names, and the invariants of
// every layout compute_layout produces.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "reader/segment_impl.hpp"
#include "segment_layout.hpp"
#include "shmtrace/abi.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

struct KindRow {
  std::uint8_t value;
  const char* name;
  bool continued;
};

// The format as documented: a change here is an ABI change.
const std::vector<KindRow> kKinds = {
    {1, "span_begin", false}, {2, "span_end", false},   {3, "event", true},
    {4, "counter", false},    {5, "arg", true},         {6, "continuation", false},
    {7, "drop_marker", false}, {8, "thread_start", false}, {9, "thread_end", false},
    {16, "process_start", false}, {17, "fork", false},  {18, "exec", false},
    {19, "exit", false},
};

TEST(RecordKinds, EveryKindHasItsNameValueAndContinuationFlag) {
  std::set<std::string> names;
  for (const KindRow& row : kKinds) {
    const auto kind = static_cast<RecordKind>(row.value);
    EXPECT_TRUE(abi::record_kind_known(row.value)) << row.name;
    EXPECT_STREQ(abi::record_kind_name(kind), row.name);
    EXPECT_EQ(abi::record_kind_continued(kind), row.continued) << row.name;
    EXPECT_TRUE(names.insert(row.name).second) << "duplicate name " << row.name;
  }
  EXPECT_EQ(static_cast<int>(RecordKind::kSpanBegin), 1);
  EXPECT_EQ(static_cast<int>(RecordKind::kSpanEnd), 2);
  EXPECT_EQ(static_cast<int>(RecordKind::kEvent), 3);
  EXPECT_EQ(static_cast<int>(RecordKind::kCounter), 4);
  EXPECT_EQ(static_cast<int>(RecordKind::kArg), 5);
  EXPECT_EQ(static_cast<int>(RecordKind::kContinuation), 6);
  EXPECT_EQ(static_cast<int>(RecordKind::kDropMarker), 7);
  EXPECT_EQ(static_cast<int>(RecordKind::kThreadStart), 8);
  EXPECT_EQ(static_cast<int>(RecordKind::kThreadEnd), 9);
  EXPECT_EQ(static_cast<int>(RecordKind::kProcessStart), 16);
  EXPECT_EQ(static_cast<int>(RecordKind::kFork), 17);
  EXPECT_EQ(static_cast<int>(RecordKind::kExec), 18);
  EXPECT_EQ(static_cast<int>(RecordKind::kExit), 19);
}

TEST(RecordKinds, EveryOtherByteIsUnknown) {
  std::set<int> listed;
  for (const KindRow& row : kKinds) listed.insert(row.value);
  int known = 0;
  for (int v = 0; v < 256; ++v) {
    const bool is_known = abi::record_kind_known(static_cast<std::uint8_t>(v));
    EXPECT_EQ(is_known, listed.count(v) == 1) << "value " << v;
    if (!is_known) {
      EXPECT_STREQ(abi::record_kind_name(static_cast<RecordKind>(v)), "unknown") << v;
      EXPECT_FALSE(abi::record_kind_continued(static_cast<RecordKind>(v))) << v;
    }
    known += is_known;
  }
  EXPECT_EQ(known, 13);
  EXPECT_FALSE(abi::record_kind_known(0));  // zero memory is never a record
  static_assert(!abi::record_kind_known(0) && abi::record_kind_known(1));
}

TEST(AbiVersion, MajorAndMinor) {
  EXPECT_EQ(abi::kAbiMajor, 2);
  EXPECT_EQ(abi::kAbiMinor, 2);
}

// Major 2: self_ticks in the slot's first cache line with every other field
// a call's end writes; unfinished and the reserved words in the second.
TEST(AbiStatsSlot, EndFieldsShareTheFirstCacheLine) {
  EXPECT_EQ(sizeof(abi::StatsSlot), 9856u);
  EXPECT_EQ(sizeof(abi::StatsSlot) % abi::kCacheLine, 0u);
  for (const std::size_t at : {offsetof(abi::StatsSlot, calls), offsetof(abi::StatsSlot, errors),
                               offsetof(abi::StatsSlot, self_ticks), offsetof(abi::StatsSlot, total_ticks),
                               offsetof(abi::StatsSlot, min_ticks), offsetof(abi::StatsSlot, max_ticks)}) {
    EXPECT_LT(at, abi::kCacheLine);
  }
  EXPECT_EQ(offsetof(abi::StatsSlot, unfinished), abi::kCacheLine);
  EXPECT_EQ(offsetof(abi::StatsSlot, buckets), 2 * abi::kCacheLine);
}

TEST(AbiMagic, ValuesSpellTheirNamesInMemory) {
  char text[9] = {};
  std::memcpy(text, &abi::kSegmentMagic, 8);
  EXPECT_STREQ(text, "TSHMAGE1");
  std::memcpy(text, &abi::kErrorChunkMagic, 8);
  EXPECT_STREQ(text, "ERRCHNK1");
  char state[5] = {};
  const auto committed = static_cast<std::uint32_t>(abi::ErrorState::kCommitted);
  const auto padding = static_cast<std::uint32_t>(abi::ErrorState::kPadding);
  std::memcpy(state, &committed, 4);
  EXPECT_STREQ(state, "1RRE");
  std::memcpy(state, &padding, 4);
  EXPECT_STREQ(state, "1PAD");
  EXPECT_EQ(static_cast<std::uint32_t>(abi::ErrorState::kUnwritten), 0u);
  // Zero memory reads as empty everywhere.
  EXPECT_EQ(static_cast<std::uint32_t>(abi::RingState::kFree), 0u);
  EXPECT_EQ(static_cast<std::uint32_t>(abi::ProcessState::kRunning), 0u);
  EXPECT_EQ(static_cast<std::uint32_t>(abi::FullPolicy::kDrop), 0u);
  EXPECT_EQ(static_cast<std::uint8_t>(RecordKind::kEmpty), 0);
}

TEST(AbiConstants, NamesAndSizes) {
  EXPECT_STREQ(abi::kSegmentNamePrefix, "shmtrace.");
  EXPECT_STREQ(abi::kErrorChunkInfix, ".err.");
  EXPECT_STREQ(abi::kSpillSuffix, ".errors");
  EXPECT_EQ(abi::kHeaderSize, abi::kPageSize);
  EXPECT_EQ(abi::kErrorChunkHeaderSize, sizeof(abi::ErrorChunkHeader));
  EXPECT_EQ(abi::kMaxErrorMessage, 500u);  // SPEC P5: first 500 chars
  EXPECT_GE(abi::kMaxErrorFrames, 10u);    // SPEC P5: up to 10 frames by default
  EXPECT_EQ(abi::kInlinePayload + 32u, sizeof(abi::Record));
  EXPECT_EQ(abi::kContinuationPayload + 8u, sizeof(abi::ContinuationRecord));
  // The header's text fields fit the runtime's limits.
  EXPECT_EQ(sizeof(abi::SegmentHeader::spill_dir), 192u);
  EXPECT_EQ(sizeof(abi::SegmentHeader::exe), 256u);
  EXPECT_EQ(sizeof(abi::SegmentHeader::cmdline), 1020u);
  EXPECT_EQ(offsetof(abi::SegmentHeader, reserved_tail) + sizeof(abi::SegmentHeader::reserved_tail),
            abi::kHeaderSize);
  EXPECT_EQ(offsetof(abi::SegmentHeader, cmdline) + sizeof(abi::SegmentHeader::cmdline),
            offsetof(abi::SegmentHeader, session));
  EXPECT_EQ(offsetof(abi::SegmentHeader, session) + sizeof(abi::SegmentHeader::session),
            offsetof(abi::SegmentHeader, reserved_tail));
}

TEST(SegmentName, Format) {
  EXPECT_EQ(runtime::segment_name(1234, 0xdeadbeef), "shmtrace.1234.00000000deadbeef");
  EXPECT_EQ(runtime::segment_name(1, 0), "shmtrace.1.0000000000000000");
  EXPECT_EQ(runtime::segment_name(4294967295u, ~0ull), "shmtrace.4294967295.ffffffffffffffff");
  EXPECT_EQ(runtime::segment_name(42, 0x0123456789abcdefull), "shmtrace.42.0123456789abcdef");
  EXPECT_EQ(runtime::segment_name(42, 0x0123456789abcdefull, "run-7_a"), "shmtrace.run-7_a.42.0123456789abcdef");
  EXPECT_EQ(reader::detail::segment_name(42, 0x0123456789abcdefull, "run-7_a"),
            "shmtrace.run-7_a.42.0123456789abcdef");
  const auto in_session = reader::detail::parse_segment_name("shmtrace.run-7_a.42.0123456789abcdef");
  ASSERT_TRUE(in_session);
  EXPECT_EQ(in_session->session, "run-7_a");
  EXPECT_EQ(in_session->pid, 42u);
  EXPECT_EQ(in_session->nonce, 0x0123456789abcdefull);
  EXPECT_EQ(reader::detail::parse_segment_name("shmtrace.42.0123456789abcdef")->session, "");
  EXPECT_FALSE(reader::detail::parse_segment_name("shmtrace.run.7.42.0123456789abcdef"));
  EXPECT_FALSE(reader::detail::parse_segment_name("shmtrace.r$n.42.0123456789abcdef"));
  EXPECT_FALSE(reader::detail::parse_segment_name("shmtrace._r.42.0123456789abcdef"));
  EXPECT_FALSE(reader::detail::parse_segment_name("shmtrace.abcdefghijklmnopqrstuvwxyz0123456.42.0123456789abcdef"));
}

TEST(SegmentName, AgreesWithTheReader) {
  for (std::uint32_t pid : {1u, 77u, 4194304u, 4294967295u}) {
    for (std::uint64_t nonce : {0ull, 1ull, 0xfedcba9876543210ull, ~0ull}) {
      const std::string name = runtime::segment_name(pid, nonce);
      EXPECT_EQ(name, reader::detail::segment_name(pid, nonce));
      const auto parsed = reader::detail::parse_segment_name(name);
      ASSERT_TRUE(parsed.has_value()) << name;
      EXPECT_EQ(parsed->pid, pid);
      EXPECT_EQ(parsed->nonce, nonce);
    }
  }
}

// ---------------------------------------------------------------------------
// compute_layout.
// ---------------------------------------------------------------------------
void expect_layout_invariants(const runtime::Config& c, const std::string& what) {
  SCOPED_TRACE(what);
  const runtime::SegmentLayout l = runtime::compute_layout(c);
  // Regions in order, each right after the previous, page-aligned.
  EXPECT_EQ(l.strings_offset, abi::kHeaderSize);
  EXPECT_EQ(l.modules_offset, l.strings_offset + l.strings_size);
  EXPECT_EQ(l.overflow_offset, l.modules_offset + l.modules_size);
  EXPECT_EQ(l.rings_offset, l.overflow_offset + l.overflow_size);
  for (std::uint64_t v : {l.strings_offset, l.strings_size, l.modules_offset, l.modules_size, l.overflow_offset,
                          l.overflow_size, l.rings_offset, l.ring_stride, l.total_size}) {
    EXPECT_EQ(v % abi::kPageSize, 0u) << v;
  }
  EXPECT_EQ(l.fixed_size(), l.rings_offset);
  // Each region holds what it must, and no more than a page of slack.
  EXPECT_GE(l.strings_size, c.string_table_bytes);
  EXPECT_LT(l.strings_size, std::uint64_t{c.string_table_bytes} + abi::kPageSize);
  const std::uint64_t modules = sizeof(abi::ModuleMapHeader) + runtime::kModuleCapacity * sizeof(abi::ModuleEntry);
  EXPECT_GE(l.modules_size, modules);
  EXPECT_LT(l.modules_size, modules + abi::kPageSize);
  const std::uint64_t overflow =
      sizeof(abi::OverflowControl) + std::uint64_t{c.overflow_records} * sizeof(abi::OverflowSlot);
  EXPECT_GE(l.overflow_size, overflow);
  EXPECT_LT(l.overflow_size, overflow + abi::kPageSize);
  const std::uint64_t ring =
      sizeof(abi::RingControl) + std::uint64_t{c.ring_records} * sizeof(abi::Record) + l.ring_stats_bytes;
  EXPECT_GE(l.ring_stride, ring);
  EXPECT_LT(l.ring_stride, ring + abi::kPageSize);
  EXPECT_EQ(l.total_size, l.rings_offset + l.ring_stride * c.max_threads);
  // The string table's capacity is a 32-bit field.
  EXPECT_LE(l.strings_size, 0xffffffffull);
}

TEST(ComputeLayout, InvariantsOverTheWholeConfigRange) {
  expect_layout_invariants(runtime::Config{}, "defaults");
  runtime::Config small;
  small.ring_records = 64;
  small.max_threads = 1;
  small.overflow_records = 64;
  small.string_table_bytes = 65536;
  expect_layout_invariants(small, "smallest");
  runtime::Config large;
  large.ring_records = 1u << 24;
  large.max_threads = 4096;
  large.overflow_records = 1u << 22;
  large.string_table_bytes = 1u << 28;
  expect_layout_invariants(large, "largest");
  runtime::Config odd;
  odd.string_table_bytes = 65600;  // not a page multiple
  odd.max_threads = 3;
  expect_layout_invariants(odd, "odd string table");
  for (std::uint32_t records = 64; records <= (1u << 24); records <<= 1) {
    runtime::Config c;
    c.ring_records = records;
    c.overflow_records = records <= (1u << 22) ? records : (1u << 22);
    expect_layout_invariants(c, "ring_records " + std::to_string(records));
  }
}

TEST(ComputeLayout, ExactDefaultGeometry) {
  const runtime::SegmentLayout l = runtime::compute_layout(runtime::Config{});
  EXPECT_EQ(l.strings_offset, 4096u);
  EXPECT_EQ(l.strings_size, 1u << 20);
  EXPECT_EQ(l.modules_offset, 4096u + (1u << 20));
  EXPECT_EQ(l.modules_size, 36864u);  // 64 + 512 * 64, rounded up to pages
  EXPECT_EQ(l.overflow_size, (1u << 20) + 4096u);  // 192 + 8192 * 128, rounded up
  EXPECT_EQ(l.ring_stats_bytes, 97u * sizeof(abi::StatsSlot));  // 96 call sites + "other" (P13)
  EXPECT_EQ(l.ring_stride, 2007040u);  // 256 + 16384 * 64 + 97 * 9856, rounded up
  EXPECT_EQ(l.total_size, l.rings_offset + 64 * l.ring_stride);
}

// SPEC §7: default shared memory per thread <= 2 MiB, counting the thread's
// ring and its share of the fixed regions.
TEST(ComputeLayout, DefaultMemoryPerThreadWithinTwoMiB) {
  const runtime::Config c;
  const runtime::SegmentLayout l = runtime::compute_layout(c);
  EXPECT_LE(l.ring_stride, 2u << 20);
  EXPECT_LE(l.total_size / c.max_threads, 2u << 20);
}

}  // namespace
}  // namespace shmtrace::test
