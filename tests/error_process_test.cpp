// The error area across processes: a burst of errors from several threads
// grows the chunk chain and loses nothing; every error carries its context.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

TEST(ErrorProcess, MillionErrorBurstFromFourThreadsLosesNothing) {
  constexpr unsigned long kPerThread = 250000;
  FinishedRun run = run_finished({"errors", "4", std::to_string(kPerThread)}, {{"SHMTRACE_MAX_FRAMES", "2"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const reader::Segment& segment = *run.segment;
  EXPECT_EQ(segment.errors_written(), 4 * kPerThread);
  EXPECT_EQ(segment.errors_spilled(), 0u);
  EXPECT_GT(segment.error_chunk_count(), 10u);  // 1 MiB chunks: the chain grew
  ASSERT_EQ(run.drained->errors.size(), 4 * kPerThread);
  std::set<std::uint64_t> sequences;
  std::vector<std::vector<bool>> seen(4, std::vector<bool>(kPerThread, false));
  for (const auto& e : run.drained->errors) {
    EXPECT_TRUE(sequences.insert(e.sequence).second) << "sequence " << e.sequence << " twice";
    EXPECT_EQ(e.type, "BurstError");
    EXPECT_EQ(e.kind, abi::ErrorKind::kExplicit);
    EXPECT_EQ(e.frames.size(), 2u);
    int thread = -1;
    unsigned long i = 0;
    ASSERT_EQ(std::sscanf(e.message.c_str(), "e%d-%lu", &thread, &i), 2) << e.message;
    ASSERT_TRUE(thread >= 0 && thread < 4 && i < kPerThread) << e.message;
    EXPECT_FALSE(seen[thread][i]) << e.message << " twice";
    seen[thread][i] = true;
  }
  EXPECT_EQ(*sequences.begin(), 1u);
  EXPECT_EQ(*sequences.rbegin(), 4 * kPerThread);
}

TEST(ErrorProcess, ErrorsAreKeptInsideSampledOutTraces) {
  FinishedRun run = run_finished({"sampling", "500"}, {{"SHMTRACE_SAMPLE_RATE", "0"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  std::uint64_t spans = 0;
  for (const auto& d : run.drained->records) {
    spans += d.kind == abi::RecordKind::kSpanBegin || d.kind == abi::RecordKind::kSpanEnd;
  }
  EXPECT_EQ(spans, 0u);
  ASSERT_EQ(run.drained->errors.size(), 500u);
  std::set<std::string> messages;
  for (const auto& e : run.drained->errors) {
    EXPECT_EQ(e.type, "SampledError");
    EXPECT_EQ(e.span_id, 0u);  // its span was not recorded
    messages.insert(e.message);
  }
  EXPECT_EQ(messages.size(), 500u);
  EXPECT_EQ(messages.count("root 0"), 1u);
  EXPECT_EQ(messages.count("root 499"), 1u);
}

TEST(ErrorProcess, ErrorsLinkToTheirSpanAndTrace) {
  FinishedRun run = run_finished({"sampling", "20"});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const reader::Segment& segment = *run.segment;
  ASSERT_EQ(run.drained->errors.size(), 20u);
  std::map<std::uint64_t, reader::DecodedRecord> ends;
  for (const auto& d : run.drained->records) {
    if (d.kind == abi::RecordKind::kSpanEnd) ends[d.span_id] = d;
  }
  for (const auto& e : run.drained->errors) {
    ASSERT_EQ(ends.count(e.span_id), 1u) << e.message;
    const reader::DecodedRecord& end = ends[e.span_id];
    EXPECT_EQ(text(segment, end.name_id), "child");
    EXPECT_EQ(text(segment, e.span_name_id), "child");
    EXPECT_EQ(text(segment, e.group_id), "st_producer");  // default group: the executable
    EXPECT_EQ(end.flags & abi::kStatusErr, abi::kStatusErr);
    EXPECT_EQ(end.span.error_ref, static_cast<std::uint32_t>(e.sequence));
    EXPECT_EQ(0, std::memcmp(end.span.trace_id, e.trace_id, 16));
    EXPECT_EQ(e.tid, run.drained->by_tid.begin()->first);
  }
}

}  // namespace
}  // namespace shmtrace::test
