// Multi-process tests of the producer runtime: real programs linked with
// libshmtrace.so write known patterns; the test reads their segments back
// through the reader library and checks exact counts and contents.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <map>
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

struct ThreadCheck {
  std::uint64_t counters = 0;       // counter records read
  std::uint64_t texts = 0;          // string args read
  std::uint64_t marker_total = 0;   // sum of drop marker counts
  std::uint64_t gaps = 0;           // records missing between read counters
};

// Walks one thread's records in write order: counters must be 0..n-1 with
// holes only where a drop marker says so, each string arg must follow its
// counter with the exact payload.
ThreadCheck check_sequence(const reader::Segment& segment, const std::vector<reader::DecodedRecord>& records,
                           unsigned long per_thread) {
  ThreadCheck c;
  long expect = 0;
  long last_counter = -1;
  for (const auto& d : records) {
    if (d.kind == RecordKind::kDropMarker) {
      c.marker_total += d.aux;
      EXPECT_LE(d.drop.first_drop_timestamp, d.drop.last_drop_timestamp);
      EXPECT_LE(d.drop.last_drop_timestamp, d.timestamp);
      continue;
    }
    if (d.kind == RecordKind::kCounter) {
      EXPECT_EQ(*segment.string(d.name_id), "seq");
      const long v = static_cast<long>(d.aux);
      EXPECT_GE(v, expect) << "counter went backwards";
      // Each skipped value lost one counter, plus its string arg every 16th.
      for (long missing = expect; missing < v; ++missing) c.gaps += (missing % 16 == 0) ? 2 : 1;
      expect = v + 1;
      last_counter = v;
      ++c.counters;
      continue;
    }
    if (d.kind == RecordKind::kArg) {
      EXPECT_EQ(*segment.string(d.name_id), "text");
      EXPECT_EQ(d.value, expected_payload(static_cast<unsigned long>(last_counter)));
      EXPECT_EQ(last_counter % 16, 0);
      ++c.texts;
      continue;
    }
  }
  for (long missing = expect; missing < static_cast<long>(per_thread); ++missing) {
    c.gaps += (missing % 16 == 0) ? 2 : 1;
  }
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

// Starts st_producer waiting for SIGUSR1, attaches as the consumer, lets it
// go, and drains until it exits.
struct LiveRun {
  RunResult result;
  std::string segment_name;
  reader::Result<Drained> drained = std::unexpected(reader::Error{"not run"});
};

LiveRun run_live(const std::vector<std::string>& args, const std::vector<EnvChange>& env) {
  LiveRun live;
  std::vector<std::string> argv{program_path("st_producer"), "--wait-signal"};
  argv.insert(argv.end(), args.begin(), args.end());
  Child child = Child::start(argv, env);
  live.segment_name = find_segment(child.pid());
  if (live.segment_name.empty()) return live;
  // Waits until the header is published before attaching.
  std::optional<reader::Segment> segment;
  for (int i = 0; i < 5000 && !segment; ++i) {
    if (auto s = reader::Segment::attach(live.segment_name, reader::Access::kConsume)) {
      segment.emplace(std::move(*s));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (!segment) return live;
  segment->heartbeat();
  if (!child.wait_for_output("ready\n")) return live;
  ::kill(child.pid(), SIGUSR1);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    live.result = child.wait();
    done = true;
  });
  live.drained = drain_until(*segment, [&] { return !done.load(); });
  waiter.join();
  return live;
}

TEST(ProducerProcess, TwoProcessesExchangeMillionsOfRecordsLosslesslyUnderBlockPolicy) {
  constexpr unsigned long kRecords = 2'000'000;
  LiveRun live = run_live({"sequence", "1", std::to_string(kRecords)},
                          {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_RING_RECORDS", "1024"},
                           {"SHMTRACE_OVERFLOW_RECORDS", "64"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "10000"}});
  SegmentGuard guard(live.segment_name);
  ASSERT_FALSE(live.segment_name.empty());
  ASSERT_TRUE(live.drained) << live.drained.error().message;
  ASSERT_EQ(live.result.exit_code, 0) << live.result.err;
  reader::Segment segment = attach_consumer(live.segment_name);
  std::uint64_t dropped = 0;
  for (std::uint32_t ring = 0; ring < segment.ring_count(); ++ring) dropped += segment.ring_info(ring)->dropped;
  EXPECT_EQ(dropped, 0u);
  int workers = 0;
  for (const auto& [tid, records] : live.drained->by_tid) {
    if (records.empty() || records.front().kind != RecordKind::kThreadStart ||
        std::string(records.front().thread.name) != "worker-0") {
      continue;
    }
    ++workers;
    const ThreadCheck c = check_sequence(segment, records, kRecords);
    EXPECT_EQ(c.counters, kRecords);
    EXPECT_EQ(c.texts, kRecords / 16);
    EXPECT_EQ(c.gaps, 0u);
  }
  EXPECT_EQ(workers, 1);
}

}  // namespace
}  // namespace shmtrace::test
