// Multi-process tests of the producer runtime: real programs linked with
// libshmtrace.so write known patterns; the test reads their segments back
// through the reader library and checks exact counts and contents.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <map>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

std::string expected_payload(unsigned long i) {
  std::string s = "v" + std::to_string(i) + ":";
  while (s.size() < i % 200) s += static_cast<char>('a' + (s.size() % 26));
  return s;
}

// Records the "sequence" mode writes for one thread: ThreadStart, n counters,
// a string arg (head + continuations) every 16th, ThreadEnd.
std::uint64_t text_records(unsigned long i) {
  const std::size_t len = expected_payload(i).size();
  return 1 + (len > abi::kInlinePayload
                  ? (len - abi::kInlinePayload + abi::kContinuationPayload - 1) / abi::kContinuationPayload
                  : 0);
}

std::uint64_t produced_records(unsigned long n) {
  std::uint64_t total = 2 + n;
  for (unsigned long i = 0; i < n; i += 16) total += text_records(i);
  return total;
}

struct ThreadCheck {
  std::uint64_t counters = 0;       // counter records read
  std::uint64_t texts = 0;          // string args read
  std::uint64_t marker_total = 0;   // sum of drop marker counts
  std::uint64_t gaps = 0;           // records missing (counters, args with their continuations)
};

// Walks one thread's records in write order. Counters must be increasing
// values from 0..n-1; each string arg names its index ("v<i>:") and must
// carry exactly the payload written for it, after counter i and before
// counter i+1; whatever is missing counts as a gap. Drop markers must lie
// between the stored records around them.
ThreadCheck check_sequence(const reader::Segment& segment, const std::vector<reader::DecodedRecord>& records,
                           unsigned long per_thread) {
  ThreadCheck c;
  long last_counter = -1;
  long last_text = -16;
  std::uint64_t last_stored_ts = 0;
  for (const auto& d : records) {
    if (d.kind == RecordKind::kDropMarker) {
      c.marker_total += d.aux;
      EXPECT_LE(last_stored_ts, d.drop.first_drop_timestamp);
      EXPECT_LE(d.drop.first_drop_timestamp, d.drop.last_drop_timestamp);
      EXPECT_LE(d.drop.last_drop_timestamp, d.timestamp);
      continue;
    }
    last_stored_ts = d.timestamp;
    if (d.kind == RecordKind::kCounter) {
      EXPECT_EQ(text(segment, d.name_id), "seq");
      const long v = static_cast<long>(d.aux);
      EXPECT_GT(v, last_counter) << "counter went backwards";
      last_counter = v;
      ++c.counters;
    } else if (d.kind == RecordKind::kArg) {
      EXPECT_EQ(text(segment, d.name_id), "text");
      const long i = std::strtol(d.value.c_str() + 1, nullptr, 10);
      EXPECT_EQ(i % 16, 0);
      EXPECT_GT(i, last_text);
      EXPECT_GE(i, last_counter) << "arg " << i << " after counter " << last_counter;
      EXPECT_EQ(d.value, expected_payload(static_cast<unsigned long>(i)));
      last_text = i;
      ++c.texts;
      c.gaps -= text_records(static_cast<unsigned long>(i));
    }
  }
  const std::uint64_t texts_written = (per_thread + 15) / 16;
  EXPECT_LE(c.counters, per_thread);
  EXPECT_LE(c.texts, texts_written);
  // gaps started at minus the stored args' records: add everything written.
  c.gaps += (per_thread - c.counters);
  for (unsigned long i = 0; i < per_thread; i += 16) c.gaps += text_records(i);
  return c;
}

std::uint64_t records_per_thread(unsigned long n) { return n + (n + 15) / 16; }

TEST(ProducerProcess, ThreadsWriteExactSequencesIntoTheirOwnRings) {
  const RunResult r = run({program_path("st_producer"), "sequence", "4", "2000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string name = find_segment(r.pid, 0);
  ASSERT_FALSE(name.empty());
  SegmentGuard guard(name);
  reader::Segment segment = attach_consumer(name);
  auto drained = drain_segment(segment);
  ASSERT_TRUE(drained) << drained.error().message;
  EXPECT_EQ(segment.state(), abi::ProcessState::kExited);
  EXPECT_EQ(segment.exit_status(), 0);

  std::set<std::uint32_t> rings_used;
  int worker_threads = 0;
  for (std::uint32_t ring = 0; ring < segment.ring_count(); ++ring) {
    auto info = segment.ring_info(ring);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->dropped, 0u);
    EXPECT_EQ(info->overflowed, 0u);
    if (info->state != abi::RingState::kFree) rings_used.insert(ring);
  }
  EXPECT_EQ(drained->overflow_records, 0u);
  for (const auto& [tid, records] : drained->by_tid) {
    const bool is_worker = std::any_of(records.begin(), records.end(), [](const auto& d) {
      return d.kind == RecordKind::kThreadStart && std::string(d.thread.name).rfind("worker-", 0) == 0;
    });
    if (!is_worker) continue;
    ++worker_threads;
    const ThreadCheck c = check_sequence(segment, records, 2000);
    EXPECT_EQ(c.counters, 2000u);
    EXPECT_EQ(c.texts, 125u);
    EXPECT_EQ(c.gaps, 0u);
    EXPECT_EQ(c.marker_total, 0u);
    EXPECT_EQ(records.front().kind, RecordKind::kThreadStart);
    EXPECT_EQ(records.back().kind, RecordKind::kThreadEnd);
  }
  EXPECT_EQ(worker_threads, 4);
  EXPECT_GE(rings_used.size(), 1u);
  EXPECT_EQ(drained->stats.unknown_kinds, 0u);
  EXPECT_EQ(drained->stats.broken_continuations, 0u);
}

// A forked child gets its own segment, ready before the child's threads
// start (they would otherwise race to create it and lose records), and its
// first span continues the parent's trace under the parent's open span.
TEST(ProducerProcess, ForkedChildHasItsOwnSegmentAndContinuesTheTrace) {
  FinishedRun parent = run_finished({"forked", "2", "3000"});
  SegmentGuard parent_guard(parent.segment_name);
  ASSERT_EQ(parent.result.exit_code, 0) << parent.result.err;
  ASSERT_TRUE(parent.drained) << parent.drained.error().message;
  const pid_t child_pid = static_cast<pid_t>(std::atoi(parent.result.out.c_str() + 6));
  ASSERT_GT(child_pid, 0) << parent.result.out;
  const std::string child_name = find_segment(child_pid, 0);
  ASSERT_FALSE(child_name.empty());
  ASSERT_NE(child_name, parent.segment_name);
  SegmentGuard child_guard(child_name);
  reader::Segment child = attach_consumer(child_name);
  auto drained = drain_segment(child);
  ASSERT_TRUE(drained) << drained.error().message;
  EXPECT_EQ(child.header().pid, static_cast<std::uint32_t>(child_pid));
  EXPECT_EQ(child.header().ppid, static_cast<std::uint32_t>(parent.result.pid));
  EXPECT_EQ(child.state(), abi::ProcessState::kExited);

  reader::DecodedRecord parent_span{};
  for (const auto& d : parent.drained->records) {
    if (d.kind == RecordKind::kSpanBegin) parent_span = d;
  }
  ASSERT_EQ(text(*parent.segment, parent_span.name_id), "parent");
  int workers = 0;
  for (const auto& [tid, records] : drained->by_tid) {
    for (const auto& d : records) {
      if (d.kind != RecordKind::kSpanBegin) continue;
      EXPECT_EQ(text(child, d.name_id), "child");
      EXPECT_EQ(d.aux, parent_span.span_id) << "the child's root continues the parent's open span";
      EXPECT_EQ(0, std::memcmp(d.span.trace_id, parent_span.span.trace_id, 16));
    }
    if (records.empty() || std::string(records.front().thread.name).rfind("worker-", 0) != 0) continue;
    ++workers;
    const ThreadCheck c = check_sequence(child, records, 3000);
    EXPECT_EQ(c.counters, 3000u);
    EXPECT_EQ(c.gaps, 0u);
  }
  EXPECT_EQ(workers, 2);
}

// Two processes, the producer far faster than the consumer: under the block
// policy every record arrives, in order, with its exact content, whatever the
// ring size.
class LosslessExchange : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(LosslessExchange, ThreadsExchangeRecordsWithExactSequencesUnderBlockPolicy) {
  const std::uint32_t ring = GetParam();
  const unsigned long per_thread = ring >= 16384 ? 1'000'000 : 400'000;
  LiveRun live = run_live({"sequence", "2", std::to_string(per_thread)},
                          {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", std::to_string(ring)},
                           {"SHMTRACE_OVERFLOW_RECORDS", "64"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "30000"}});
  SegmentGuard guard(live.segment_name);
  ASSERT_FALSE(live.segment_name.empty());
  ASSERT_TRUE(live.drained) << live.drained.error().message;
  ASSERT_EQ(live.result.exit_code, 0) << live.result.err;
  reader::Segment segment = attach_consumer(live.segment_name);
  EXPECT_EQ(segment.header().ring_capacity, ring);
  std::uint64_t dropped = 0;
  std::uint64_t stored = 0;
  std::uint64_t stored_by_workers = 0;
  for (std::uint32_t r = 0; r < segment.ring_count(); ++r) {
    const reader::RingInfo info = *segment.ring_info(r);
    dropped += info.dropped;
    stored += info.head + info.overflowed;
    if (info.thread_name.rfind("worker-", 0) == 0) stored_by_workers += info.head + info.overflowed;
  }
  EXPECT_EQ(dropped, 0u);
  EXPECT_EQ(stored, live.drained->ring_records + live.drained->overflow_records);
  EXPECT_EQ(stored_by_workers, 2 * produced_records(per_thread));
  int workers = 0;
  for (const auto& [tid, records] : live.drained->by_tid) {
    if (records.empty() || std::string(records.front().thread.name).rfind("worker-", 0) != 0) continue;
    ++workers;
    const ThreadCheck c = check_sequence(segment, records, per_thread);
    EXPECT_EQ(c.counters, per_thread);
    EXPECT_EQ(c.texts, (per_thread + 15) / 16);
    EXPECT_EQ(c.gaps, 0u);
    EXPECT_EQ(c.marker_total, 0u);
    EXPECT_EQ(records.back().kind, RecordKind::kThreadEnd);
  }
  EXPECT_EQ(workers, 2);
  EXPECT_EQ(live.drained->stats.broken_continuations, 0u);
}

INSTANTIATE_TEST_SUITE_P(RingSizes, LosslessExchange, ::testing::Values(64u, 1024u, 16384u),
                         [](const auto& info) { return "ring" + std::to_string(info.param); });

TEST(ProducerProcess, FullRingOverflowsThenDropsWithExactAccounting) {
  constexpr unsigned long kCounters = 1000;
  FinishedRun run = run_finished({"sequence", "1", std::to_string(kCounters)},
                                 {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const reader::Segment& segment = *run.segment;
  int workers = 0;
  std::uint64_t heads = 0;
  std::uint64_t overflowed = 0;
  for (std::uint32_t ring = 0; ring < segment.ring_count(); ++ring) {
    const reader::RingInfo info = *segment.ring_info(ring);
    heads += info.head;
    overflowed += info.overflowed;
    // The main thread's ring holds only its lifecycle records.
    if (info.thread_name.rfind("worker-", 0) != 0) continue;
    ++workers;
    EXPECT_EQ(info.head, 64u);  // the ring filled once and nobody consumed it
    EXPECT_GT(info.overflowed, 0u);
    EXPECT_LE(info.overflowed, 64u);
    EXPECT_GT(info.dropped, 0u);
    const auto& records = run.drained->by_tid.at(info.tid);
    // Every record the thread tried to write is stored or counted dropped;
    // drop markers are stored records the thread added itself. (A marker can
    // reach the overflow area: after a long value did not fit, a shorter
    // record still may.)
    std::uint64_t markers = 0;
    std::uint64_t reported = 0;
    for (const auto& d : records) {
      if (d.kind != RecordKind::kDropMarker) continue;
      ++markers;
      reported += d.aux;
    }
    EXPECT_EQ(info.head + info.overflowed + info.dropped, produced_records(kCounters) + markers);
    EXPECT_LE(reported, info.dropped);
    const ThreadCheck c = check_sequence(segment, records, kCounters);
    EXPECT_EQ(c.gaps + 1, info.dropped);  // ThreadEnd was dropped too: nothing fit at the end
    EXPECT_EQ(c.marker_total, reported);
  }
  EXPECT_EQ(workers, 1);
  EXPECT_EQ(run.drained->ring_records, heads);
  EXPECT_EQ(run.drained->overflow_records, overflowed);
}

TEST(ProducerProcess, DropMarkersReportEveryGapWhileALiveConsumerFallsBehind) {
  constexpr unsigned long kCounters = 200000;
  LiveRun live = run_live({"sequence", "2", std::to_string(kCounters)},
                          {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"}});
  SegmentGuard guard(live.segment_name);
  ASSERT_TRUE(live.drained) << live.drained.error().message;
  ASSERT_EQ(live.result.exit_code, 0) << live.result.err;
  reader::Segment segment = attach_consumer(live.segment_name);
  std::map<std::uint32_t, reader::RingInfo> ring_of_tid;
  for (std::uint32_t ring = 0; ring < segment.ring_count(); ++ring) {
    const reader::RingInfo info = *segment.ring_info(ring);
    if (info.state != abi::RingState::kFree) ring_of_tid[info.tid] = info;
  }
  std::uint64_t total_dropped = 0;
  int workers = 0;
  for (const auto& [tid, records] : live.drained->by_tid) {
    if (records.empty() || std::string(records.front().thread.name).rfind("worker-", 0) != 0) continue;
    ++workers;
    ASSERT_EQ(ring_of_tid.count(tid), 1u);
    const reader::RingInfo& info = ring_of_tid[tid];
    const ThreadCheck c = check_sequence(segment, records, kCounters);
    const bool end_stored = records.back().kind == RecordKind::kThreadEnd;
    // Each missing record is one counted drop; markers report all of them
    // unless the thread's last records (ThreadEnd included) were dropped.
    EXPECT_EQ(c.gaps + (end_stored ? 0 : 1), info.dropped);
    if (end_stored) EXPECT_EQ(c.marker_total, info.dropped);
    EXPECT_LE(c.marker_total, info.dropped);
    std::uint64_t markers = 0;
    for (const auto& d : records) markers += d.kind == RecordKind::kDropMarker ? 1 : 0;
    EXPECT_EQ(info.head + info.overflowed + info.dropped, produced_records(kCounters) + markers);
    total_dropped += info.dropped;
  }
  EXPECT_EQ(workers, 2);
  EXPECT_GT(total_dropped, 0u) << "the consumer kept up: the test did not exercise drops";
  EXPECT_EQ(live.drained->stats.broken_continuations, 0u);
}

}  // namespace
}  // namespace shmtrace::test
