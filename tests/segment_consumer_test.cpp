// The drain's segment consumer on a segment built in memory: which thread a
// ring's records are credited to when a drain resumes a segment whose ring
// still begins with records of a thread that has ended since.
#include <gtest/gtest.h>

#include <map>

#include "store/segment_consumer.hpp"
#include "store/store.hpp"
#include "support/segment_builder.hpp"
#include "support/test_database.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

// One collect + store + hand-back, as a drain cycle does.
void drain_once(drain::SegmentConsumer& consumer, drain::Store& store) {
  drain::Batch batch;
  auto collected = consumer.collect(batch, 1024);
  ASSERT_TRUE(collected) << collected.error().message;
  auto stored = store.write(batch);
  ASSERT_TRUE(stored) << stored.error().message;
  auto released = consumer.release();
  ASSERT_TRUE(released) << released.error().message;
}

TEST(SegmentConsumer, AResumedRingCreditsTheEndedThreadsRecordsToIt) {
  constexpr std::uint32_t kFirst = 1111, kSecond = 2222;
  const TempDb db("consumer-resume");
  auto store = drain::Store::open(db);
  ASSERT_TRUE(store) << store.error().message;
  SegmentBuilder b;
  const std::uint32_t name = b.intern("work");
  auto span = [&](std::uint64_t id, std::uint64_t at) {
    b.push(0, make_record(RecordKind::kSpanBegin, at, name, id));
    b.push(0, make_record(RecordKind::kSpanEnd, at + 5, name, id, at));
  };
  b.ring(0).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
  b.ring(0).tid = kFirst;
  b.push(0, make_record(RecordKind::kThreadStart, 10, 0, 0, kFirst));
  span(1, 20);
  {
    auto segment = reader::Segment::from_memory(b.base(), b.size(), reader::Access::kConsume);
    ASSERT_TRUE(segment) << segment.error().message;
    drain::SegmentConsumer first(std::move(*segment), std::nullopt, nullptr);
    drain_once(first, *store);
  }
  // The drain is gone. The first thread writes once more and ends; the
  // second claims the ring and writes after its own ThreadStart.
  span(2, 40);
  b.push(0, make_record(RecordKind::kThreadEnd, 50, 0, 0, kFirst));
  b.ring(0).tid = kSecond;
  b.push(0, make_record(RecordKind::kThreadStart, 60, 0, 0, kSecond));
  span(3, 70);
  auto known = store->ring_threads(b.name());
  ASSERT_TRUE(known) << known.error().message;
  EXPECT_EQ(*known, (std::map<std::uint32_t, std::uint32_t>{{0, kFirst}}));
  {
    auto segment = reader::Segment::from_memory(b.base(), b.size(), reader::Access::kConsume);
    ASSERT_TRUE(segment) << segment.error().message;
    drain::SegmentConsumer resumed(std::move(*segment), std::nullopt, nullptr, std::chrono::seconds(1), *known);
    drain_once(resumed, *store);
  }
  Database d(db);
  EXPECT_EQ(d.number("SELECT tid FROM spans WHERE span_id = 1"), kFirst);
  EXPECT_EQ(d.number("SELECT tid FROM spans WHERE span_id = 2"), kFirst) << "written before the second thread started";
  EXPECT_EQ(d.number("SELECT tid FROM spans WHERE span_id = 3"), kSecond);
  auto now_known = store->ring_threads(b.name());
  ASSERT_TRUE(now_known);
  EXPECT_EQ(now_known->at(0), kSecond);
}

}  // namespace
}  // namespace shmtrace::test
