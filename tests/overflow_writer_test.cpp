// The overflow area: the runtime's MPSC writer against the reader's in-order
// consumer, over a segment laid out in memory.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "overflow_writer.hpp"
#include "support/memory_segment.hpp"

namespace shmtrace::test {
namespace {

abi::Record counter(std::uint64_t value) {
  abi::Record r{};
  r.kind = static_cast<std::uint8_t>(abi::RecordKind::kCounter);
  r.aux = value;
  return r;
}

TEST(OverflowWriter, FillsThenRefusesThenReusesAfterCommit) {
  MemorySegment seg(small_config());
  runtime::OverflowWriter writer(seg.overflow());
  reader::Segment consumer = seg.reader();
  const runtime::OverflowOrigin origin{1, 1, 77};
  for (std::uint64_t lap = 0; lap < 5; ++lap) {
    for (std::uint64_t i = 0; i < 64; ++i) {
      const abi::Record r = counter(lap * 64 + i);
      ASSERT_TRUE(writer.try_write(&r, 1, origin)) << "lap " << lap << " i " << i;
    }
    const abi::Record extra = counter(999);
    EXPECT_FALSE(writer.try_write(&extra, 1, origin));
    auto batch = consumer.read_overflow(1000);
    ASSERT_TRUE(batch) << batch.error().message;
    ASSERT_EQ(batch->entries.size(), 64u);
    for (std::uint64_t i = 0; i < 64; ++i) {
      EXPECT_EQ(batch->entries[i].record.aux, lap * 64 + i);
      EXPECT_EQ(batch->entries[i].tid, 77u);
      EXPECT_EQ(batch->entries[i].ring_index, 1u);
    }
    ASSERT_TRUE(consumer.commit_overflow(*batch));
  }
}

TEST(OverflowWriter, GroupsStayWholeAcrossTheWrap) {
  MemorySegment seg(small_config());
  runtime::OverflowWriter writer(seg.overflow());
  reader::Segment consumer = seg.reader();
  const runtime::OverflowOrigin origin{abi::kNoRing, 0, 5};
  std::uint64_t next = 0;
  std::uint64_t expect = 0;
  for (int round = 0; round < 50; ++round) {
    abi::Record group[3] = {counter(next), counter(next + 1), counter(next + 2)};
    while (writer.try_write(group, 3, origin)) {
      next += 3;
      for (auto& r : group) r.aux += 3;
    }
    auto batch = consumer.read_overflow(7);  // odd sizes: groups must not split
    ASSERT_TRUE(batch) << batch.error().message;
    ASSERT_EQ(batch->entries.size() % 3, 0u);
    for (const auto& e : batch->entries) EXPECT_EQ(e.record.aux, expect++);
    ASSERT_TRUE(consumer.commit_overflow(*batch));
  }
  EXPECT_GT(next, 64u * 3);
}

TEST(OverflowWriter, ManyProducersOneConsumerLoseNothing) {
  MemorySegment seg(small_config());
  runtime::OverflowWriter writer(seg.overflow());
  reader::Segment consumer = seg.reader();
  constexpr int kThreads = 4;
  constexpr std::uint64_t kPer = 20000;
  std::atomic<int> finished{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      const runtime::OverflowOrigin origin{static_cast<std::uint32_t>(t), 1, static_cast<std::uint32_t>(100 + t)};
      for (std::uint64_t i = 0; i < kPer; ++i) {
        const abi::Record r = counter(i);
        while (!writer.try_write(&r, 1, origin)) std::this_thread::yield();
      }
      finished.fetch_add(1);
    });
  }
  std::map<std::uint32_t, std::uint64_t> next;
  std::uint64_t total = 0;
  while (total < kThreads * kPer) {
    auto batch = consumer.read_overflow(50);
    ASSERT_TRUE(batch) << batch.error().message;
    for (const auto& e : batch->entries) {
      ASSERT_EQ(e.record.aux, next[e.tid]++) << "thread " << e.tid;
      ++total;
    }
    ASSERT_TRUE(consumer.commit_overflow(*batch));
  }
  for (auto& p : producers) p.join();
  EXPECT_EQ(finished.load(), kThreads);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[100 + t], kPer);
}

}  // namespace
}  // namespace shmtrace::test
