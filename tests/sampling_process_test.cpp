// Sampling (P10): decided at the root span, so a trace is kept or dropped
// whole; per-group rates; errors always kept.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

std::string trace_key(const std::uint8_t (&id)[16]) { return std::string(reinterpret_cast<const char*>(id), 16); }

TEST(SamplingProcess, KeptTracesAreWholeAndTheRateHolds) {
  constexpr int kRoots = 4000;
  FinishedRun run = run_finished({"sampling", std::to_string(kRoots)}, {{"SHMTRACE_SAMPLE_RATE", "0.25"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const reader::Segment& segment = *run.segment;
  std::map<std::string, std::vector<reader::DecodedRecord>> traces;
  std::uint64_t begins = 0;
  for (const auto& d : run.drained->records) {
    if (d.kind == RecordKind::kSpanBegin) ++begins;
    if (d.kind == RecordKind::kSpanEnd) traces[trace_key(d.span.trace_id)].push_back(d);
  }
  // Binomial(4000, 0.25): mean 1000, sd 27.4; 6 sd either way.
  EXPECT_GT(traces.size(), 835u);
  EXPECT_LT(traces.size(), 1165u);
  EXPECT_EQ(begins, 3 * traces.size());
  for (const auto& [trace, ends] : traces) {
    ASSERT_EQ(ends.size(), 3u) << "a kept trace must be whole";
    // Write order: child a, child b, root.
    EXPECT_EQ(text(segment, ends[0].name_id), "child");
    EXPECT_EQ(text(segment, ends[1].name_id), "child");
    EXPECT_EQ(text(segment, ends[2].name_id), "root");
    EXPECT_EQ(ends[0].span.parent_span_id, ends[2].span_id);
    EXPECT_EQ(ends[1].span.parent_span_id, ends[2].span_id);
    EXPECT_EQ(ends[2].span.parent_span_id, 0u);
    EXPECT_EQ(ends[1].flags & abi::kStatusErr, abi::kStatusErr);
    EXPECT_EQ(trace[6] >> 4, 7) << "UUIDv7 version nibble";
  }
  // Every error is kept, sampled or not.
  EXPECT_EQ(run.drained->errors.size(), static_cast<std::size_t>(kRoots));
  std::uint64_t linked = 0;
  for (const auto& e : run.drained->errors) linked += e.span_id != 0;
  EXPECT_EQ(linked, traces.size());
}

TEST(SamplingProcess, GroupRateOverridesTheGlobalRate) {
  FinishedRun off = run_finished({"sampling", "300"}, {{"SHMTRACE_SAMPLE_RATES", "st_producer=0"}});
  SegmentGuard guard_off(off.segment_name);
  ASSERT_TRUE(off.drained) << off.drained.error().message;
  for (const auto& d : off.drained->records) EXPECT_NE(d.kind, RecordKind::kSpanEnd);
  EXPECT_EQ(off.drained->errors.size(), 300u);

  FinishedRun on = run_finished({"sampling", "300"},
                                {{"SHMTRACE_SAMPLE_RATE", "0"}, {"SHMTRACE_SAMPLE_RATES", "other=0,st_producer=1"}});
  SegmentGuard guard_on(on.segment_name);
  ASSERT_TRUE(on.drained) << on.drained.error().message;
  std::uint64_t ends = 0;
  for (const auto& d : on.drained->records) ends += d.kind == RecordKind::kSpanEnd;
  EXPECT_EQ(ends, 900u);
}

TEST(SamplingProcess, InheritedUnsampledContextDropsTheWholeTrace) {
  FinishedRun run = run_finished({"sampling", "50"},
                                 {{"TRACEPARENT", "00-0123456789abcdef0123456789abcdef-00000000000000aa-00"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  for (const auto& d : run.drained->records) EXPECT_NE(d.kind, RecordKind::kSpanEnd);
  EXPECT_EQ(run.drained->errors.size(), 50u);
}

}  // namespace
}  // namespace shmtrace::test
