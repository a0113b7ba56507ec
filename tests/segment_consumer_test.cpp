// The drain's segment consumer on a segment built in memory: which thread a
// ring's records are credited to when a drain resumes a segment whose ring
// still begins with records of a thread that has ended since.
#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>

#include "redact/redactor.hpp"
#include "store/segment_consumer.hpp"
#include "store/store.hpp"
#include "support/segment_builder.hpp"
#include "support/test_database.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

// One collect() of a consumer over the segment built in b.
struct Collected {
  std::optional<drain::SegmentConsumer> consumer;
  drain::Batch batch;
  reader::Result<drain::CollectStats> stats = std::unexpected(reader::Error{"not collected"});
};
void collect_once(const SegmentBuilder& b, Collected& out, const drain::Redactor* redactor = nullptr) {
  auto segment = reader::Segment::from_memory(b.base(), b.size(), reader::Access::kConsume);
  ASSERT_TRUE(segment) << segment.error().message;
  out.consumer.emplace(std::move(*segment), std::nullopt, redactor);
  out.stats = out.consumer->collect(out.batch, 1024);
  ASSERT_TRUE(out.stats) << out.stats.error().message;
}

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

// A segment's records are checked against the segment before anything of
// them is stored: a string id it does not hold, a time outside the
// process's life, a drop marker counting more than its ring ever dropped and
// an all-zero record are refused, counted and reported once; the records
// around them are stored.
TEST(SegmentConsumer, ImplausibleRecordsAreRefusedCountedAndTheRestStored) {
  const TempDb db("consumer-refused");
  auto store = drain::Store::open(db);
  ASSERT_TRUE(store) << store.error().message;
  SegmentBuilder b;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  b.header().clock_ref_ticks = 0;
  b.header().clock_ref_wall_ns = static_cast<std::uint64_t>(now);  // the process started now, at tick 0
  const std::uint32_t name = b.intern("work");
  b.ring(0).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
  b.ring(0).dropped = 5;
  auto span = [&](std::uint64_t id, std::uint64_t at, std::uint32_t with_name) {
    b.push(0, make_record(RecordKind::kSpanBegin, at, with_name, id));
    b.push(0, make_record(RecordKind::kSpanEnd, at + 5, with_name, id, at));
  };
  span(1, 100, name);
  span(2, 200, 4096);                         // a string id past the table: 2 records refused
  span(3, 3'000'000'000'000'000ull, name);    // 95 years from now: 2 records refused
  b.push(0, abi::Record{});                   // all zero: 1
  abi::Record marker = make_record(RecordKind::kDropMarker, 400, 0, 0, 1'000'000);  // 1 M of 5 dropped: 1
  b.push(0, marker);
  abi::Record honest = make_record(RecordKind::kDropMarker, 500, 0, 0, 5);
  b.push(0, honest);
  span(4, 600, name);
  Collected c;
  collect_once(b, c);
  if (HasFatalFailure()) return;
  drain::SegmentConsumer& consumer = *c.consumer;
  drain::Batch& batch = c.batch;
  auto& collected = c.stats;
  EXPECT_EQ(collected->refused, 6u);
  EXPECT_NE(collected->refused_note.find("refused 6 implausible records"), std::string::npos) << collected->refused_note;
  EXPECT_NE(collected->refused_note.find("string id 4096"), std::string::npos) << collected->refused_note;
  ASSERT_TRUE(store->write(batch));
  ASSERT_TRUE(consumer.release());
  Database d(db);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 2);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans WHERE span_id IN (1, 4) AND name = 'work'"), 2);
  EXPECT_EQ(d.number("SELECT count(*) FROM gaps"), 1);
  EXPECT_EQ(d.number("SELECT sum(dropped) FROM gaps"), 5);
  EXPECT_EQ(d.number("SELECT records_dropped FROM processes"), 5);
  EXPECT_EQ(d.number("SELECT count(*) FROM partitions WHERE start_ns > " + std::to_string(now + 3600'000'000'000LL)), 0)
      << "no partition for a time that never was";
  // Reported once per segment: the next refusal is counted, not said again.
  span(5, 700, 8192);
  drain::Batch next;
  auto again = consumer.collect(next, 1024);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->refused, 2u);
  EXPECT_EQ(again->refused_note, "");
}

// Secrets in what a program names (span, argument and event names, error
// types, groups) are redacted like values; a value or message the runtime cut
// at its limit loses the token it ends in, which may be a secret's first
// bytes.
TEST(SegmentConsumer, NamesAreRedactedAndCutValuesLoseTheirLastToken) {
  const TempDb db("consumer-redact");
  auto store = drain::Store::open(db);
  ASSERT_TRUE(store) << store.error().message;
  auto redactor = drain::Redactor::create();
  ASSERT_TRUE(redactor) << redactor.error();
  SegmentBuilder b;
  const std::uint32_t span_name = b.intern("login token=s3cr3tT0ken99");
  const std::uint32_t arg_name = b.intern("note");
  const std::uint32_t cut_arg = b.intern("key");
  b.ring(0).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
  b.push(0, make_record(RecordKind::kSpanBegin, 10, span_name, 1));
  auto string_arg = [&](std::uint32_t name, const std::string& value, std::uint8_t extra_flags) {
    abi::Record r = make_record(RecordKind::kArg, 11, name, 1);
    r.flags = static_cast<std::uint8_t>(static_cast<std::uint8_t>(abi::ValueType::kString) | extra_flags);
    r.aux = value.size();  // fits inline (abi::kInlinePayload): no continuation
    r.size = static_cast<decltype(r.size)>(value.size());
    std::memcpy(r.payload, value.data(), value.size());
    b.push(0, r);
  };
  string_arg(arg_name, "uses AKIA04QWER", 0);                     // not cut: the partial key is not a key
  string_arg(cut_arg, "config AKIA04QWER", abi::kArgTruncated);  // cut: its last token goes
  b.push(0, make_record(RecordKind::kSpanEnd, 20, span_name, 1, 10));
  Collected c;
  collect_once(b, c, &*redactor);
  if (HasFatalFailure()) return;
  auto& collected = c.stats;
  ASSERT_TRUE(store->write(c.batch));
  Database d(db);
  EXPECT_EQ(d.text("SELECT name FROM spans"), "login token=[REDACTED]");
  EXPECT_EQ(d.text("SELECT value FROM span_data WHERE name = 'note'"), "uses AKIA04QWER");
  EXPECT_EQ(d.text("SELECT value FROM span_data WHERE name = 'key'"), "config [REDACTED]");
  EXPECT_GE(collected->redactions, 2u);
}

// The wall clock stepped backwards or forwards by an hour since a process
// started: its records are on its own time line (its wall reference plus
// the monotonic time since), so every one is stored; a record past its own
// now is still refused.
TEST(SegmentConsumer, AWallClockSteppedSinceTheProcessStartedRefusesNothing) {
  for (const std::int64_t step_s : {-3600, 3600}) {
    SCOPED_TRACE(step_s);
    const TempDb db("consumer-clock");
    auto store = drain::Store::open(db);
    ASSERT_TRUE(store) << store.error().message;
    SegmentBuilder b;
    timespec mono{};
    ::clock_gettime(CLOCK_MONOTONIC, &mono);
    const std::int64_t mono_now = static_cast<std::int64_t>(mono.tv_sec) * 1'000'000'000LL + mono.tv_nsec;
    const std::int64_t wall_now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    // Started 10 s ago by its own clocks; the wall clock has moved by step_s since.
    b.header().clock_ref_ticks = 0;
    b.header().clock_ref_mono_ns = static_cast<std::uint64_t>(mono_now - 10'000'000'000LL);
    b.header().clock_ref_wall_ns = static_cast<std::uint64_t>(wall_now - step_s * 1'000'000'000LL - 10'000'000'000LL);
    const std::uint32_t name = b.intern("work");
    b.ring(0).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
    for (std::uint64_t id = 1; id <= 10; ++id) {
      const std::uint64_t at = id * 1'000'000'000ull;  // 1 to 10 s after the start: all in its past
      b.push(0, make_record(RecordKind::kSpanBegin, at, name, id));
      b.push(0, make_record(RecordKind::kSpanEnd, at + 5, name, id, at));
    }
    b.push(0, make_record(RecordKind::kEvent, 200'000'000'000ull, name, 1));  // 190 s in its future
    Collected c;
    collect_once(b, c);
    if (HasFatalFailure()) return;
    EXPECT_EQ(c.stats->refused, 1u);
    ASSERT_TRUE(store->write(c.batch));
    Database d(db);
    EXPECT_EQ(d.number("SELECT count(*) FROM spans"), 10);
  }
}

}  // namespace
}  // namespace shmtrace::test