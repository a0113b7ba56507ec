// Read-only peeking (drain/reader/segment_peek.cpp), what shmtrace dump and
// top read with: only a ring's [tail, head) and published overflow slots,
// positions the consumer handed back reported as skipped, never returned,
// and not a byte of the segment written.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "reader/reader.hpp"
#include "support/segment_builder.hpp"

namespace shmtrace {
namespace {

using reader::Access;
using reader::Segment;
using test::SegmentBuilder;

Segment open_memory(const SegmentBuilder& b, Access access) {
  auto seg = Segment::from_memory(b.base(), b.size(), access);
  if (!seg) throw std::runtime_error(seg.error().message);
  return std::move(*seg);
}

std::vector<std::uint64_t> timestamps(const std::vector<abi::Record>& records) {
  std::vector<std::uint64_t> out;
  for (const abi::Record& r : records) out.push_back(r.timestamp);
  return out;
}

std::vector<abi::Record> counters(std::uint64_t first, std::size_t n) {
  std::vector<abi::Record> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(test::make_record(abi::RecordKind::kCounter, first + i));
  return out;
}

std::string image(const SegmentBuilder& b) { return std::string(reinterpret_cast<const char*>(b.base()), b.size()); }

TEST(SegmentPeek, RingFromTailToHeadAndWhatTheConsumerHandedBackIsSkipped) {
  SegmentBuilder b(test::Geometry{.ring_capacity = 8});
  Segment peeker = open_memory(b, Access::kReadOnly);
  Segment consumer = open_memory(b, Access::kConsume);
  for (std::uint64_t t = 100; t < 106; ++t) b.push(1, test::make_record(abi::RecordKind::kCounter, t));

  const std::string before = image(b);
  auto all = peeker.peek_ring(1, 0, 100);
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->first_position, 0u);
  EXPECT_EQ(all->end_position, 6u);
  EXPECT_EQ(all->skipped, 0u);
  EXPECT_EQ(timestamps(all->records), (std::vector<std::uint64_t>{100, 101, 102, 103, 104, 105}));
  EXPECT_TRUE(image(b) == before) << "peeking wrote to the segment";
  // At most max_records.
  auto two = peeker.peek_ring(1, 1, 2);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->first_position, 1u);
  EXPECT_EQ(two->end_position, 3u);
  EXPECT_EQ(timestamps(two->records), (std::vector<std::uint64_t>{101, 102}));

  // The consumer takes positions 0..3: a peek from 0 starts at the tail and
  // says it skipped them.
  ASSERT_TRUE(consumer.read_ring(1, 4));
  ASSERT_TRUE(consumer.commit_ring(1, 4));
  auto after = peeker.peek_ring(1, 0, 100);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->first_position, 4u);
  EXPECT_EQ(after->skipped, 4u);
  EXPECT_EQ(timestamps(after->records), (std::vector<std::uint64_t>{104, 105}));

  // The producer reuses the handed-back slots (positions 6..10 wrap into
  // slots 6, 7, 0, 1, 2): a follower at position 6 gets exactly those.
  for (std::uint64_t t = 106; t < 111; ++t) b.push(1, test::make_record(abi::RecordKind::kCounter, t));
  auto follow = peeker.peek_ring(1, 6, 100);
  ASSERT_TRUE(follow);
  EXPECT_EQ(follow->skipped, 0u);
  EXPECT_EQ(follow->first_position, 6u);
  EXPECT_EQ(timestamps(follow->records), (std::vector<std::uint64_t>{106, 107, 108, 109, 110}));
  // Nothing new past head.
  auto none = peeker.peek_ring(1, 11, 100);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->records.empty());
  EXPECT_EQ(none->first_position, 11u);
  // A ring never claimed reads empty; one out of range is an error.
  auto zero = peeker.peek_ring(0, 0, 100);
  ASSERT_TRUE(zero);
  EXPECT_TRUE(zero->records.empty());
  EXPECT_FALSE(peeker.peek_ring(2, 0, 100));
}

TEST(SegmentPeek, RingWithHeadTooFarAheadOfTailIsUntrusted) {
  SegmentBuilder b(test::Geometry{.ring_capacity = 8});
  Segment peeker = open_memory(b, Access::kReadOnly);
  b.ring(0).head = 20;
  b.ring(0).tail = 3;
  auto peek = peeker.peek_ring(0, 0, 100);
  ASSERT_FALSE(peek);
  EXPECT_NE(peek.error().message.find("ring 0 untrusted"), std::string::npos) << peek.error().message;
}

TEST(SegmentPeek, OverflowGroupsPublishedWholeAndFreedOnesSkipped) {
  SegmentBuilder b;  // overflow capacity 8
  Segment peeker = open_memory(b, Access::kReadOnly);
  Segment consumer = open_memory(b, Access::kConsume);
  b.push_overflow_group(counters(0, 3), 1, 1, 10);
  b.push_overflow_group(counters(3, 2), 0, 1, 11);
  b.push_overflow_group(counters(5, 2), 0, 1, 11, /*publish=*/1);  // half published

  const std::string before = image(b);
  auto peek = peeker.peek_overflow(0, 100);
  ASSERT_TRUE(peek) << peek.error().message;
  EXPECT_TRUE(image(b) == before) << "peeking wrote to the segment";
  ASSERT_EQ(peek->groups.size(), 2u);
  EXPECT_EQ(peek->groups[0].size(), 3u);
  EXPECT_EQ(peek->groups[1].size(), 2u);
  EXPECT_EQ(peek->groups[0][0].tid, 10u);
  EXPECT_EQ(peek->groups[1][1].record.timestamp, 4u);
  EXPECT_EQ(peek->end_position, 5u);  // stops before the group not yet whole
  EXPECT_EQ(peek->skipped, 0u);

  // A slot freed by the consumer before dequeue_pos says so is not read.
  abi::atomic_store(b.overflow_slot(0).sequence, std::uint64_t{2}, std::memory_order_release);
  auto freed = peeker.peek_overflow(0, 100);
  ASSERT_TRUE(freed);
  EXPECT_TRUE(freed->groups.empty());
  abi::atomic_store(b.overflow_slot(0).sequence, std::uint64_t{1}, std::memory_order_release);

  // The consumer takes the first group: a peek from 0 skips it.
  auto batch = consumer.read_overflow(3);
  ASSERT_TRUE(batch);
  ASSERT_TRUE(consumer.commit_overflow(*batch));
  auto after = peeker.peek_overflow(0, 100);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->skipped, 3u);
  EXPECT_EQ(after->first_position, 3u);
  ASSERT_EQ(after->groups.size(), 1u);
  EXPECT_EQ(after->groups[0][0].position, 3u);
  // A follower past the published groups gets nothing yet, then the group
  // once it is whole.
  auto waiting = peeker.peek_overflow(5, 100);
  ASSERT_TRUE(waiting);
  EXPECT_TRUE(waiting->groups.empty());
  b.publish_overflow(6);
  auto whole = peeker.peek_overflow(5, 100);
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->groups.size(), 1u);
  EXPECT_EQ(whole->groups[0][1].record.timestamp, 6u);
}

TEST(SegmentPeek, LiveFieldsReadBack) {
  SegmentBuilder b;
  Segment peeker = open_memory(b, Access::kReadOnly);
  abi::SegmentHeader& h = b.header();
  h.exit_status = 3;
  h.state = static_cast<std::uint32_t>(abi::ProcessState::kExited);
  h.errors_written = 7;
  h.errors_spilled = 2;
  h.errors_lost = 1;
  h.no_ring_overflowed = 5;
  h.no_ring_dropped = 4;
  h.drain_pid = 1234;
  h.drain_heartbeat_ns = 999;
  b.push_overflow_group(counters(0, 2), 0, 1, 1);
  const reader::LiveFields live = peeker.peek_live();
  EXPECT_EQ(live.state, abi::ProcessState::kExited);
  EXPECT_EQ(live.exit_status, 3);
  EXPECT_EQ(live.errors_written, 7u);
  EXPECT_EQ(live.errors_spilled, 2u);
  EXPECT_EQ(live.errors_lost, 1u);
  EXPECT_EQ(live.no_ring_overflowed, 5u);
  EXPECT_EQ(live.no_ring_dropped, 4u);
  EXPECT_EQ(live.drain_pid, 1234u);
  EXPECT_EQ(live.drain_heartbeat_ns, 999u);
  EXPECT_EQ(live.overflow_enqueue, 2u);
  EXPECT_EQ(live.overflow_dequeue, 0u);
}

}  // namespace
}  // namespace shmtrace
