// Crash capture (P6): a process killed by a fatal signal still leaves every
// record it wrote, a crash record with the signal and the fault, and a
// segment marked crashed; and it dies exactly as it would have.
#include <gtest/gtest.h>
#include <signal.h>


#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

struct Crashed {
  FinishedRun run;
  std::uint64_t counters = 0;
  std::uint64_t doomed_span = 0;
};

Crashed run_crash(const std::string& how, unsigned long records) {
  Crashed c{run_finished({"crash", how, std::to_string(records)}, without_sanitizer_signal_handlers()), 0, 0};
  if (!c.run.drained) return c;
  long expect = 0;
  for (const auto& d : c.run.drained->records) {
    if (d.kind == RecordKind::kCounter) {
      EXPECT_EQ(static_cast<long>(d.aux), expect++);
      ++c.counters;
    }
    if (d.kind == RecordKind::kSpanBegin) c.doomed_span = d.span_id;
    EXPECT_NE(d.kind, RecordKind::kSpanEnd) << "the span never ended";
  }
  return c;
}

TEST(CrashProcess, SegfaultLeavesItsRecordsACrashRecordAndTheSameDeath) {
  Crashed c = run_crash("segv", 5000);
  SegmentGuard guard(c.run.segment_name);
  EXPECT_EQ(c.run.result.signal, SIGSEGV) << "exit code " << c.run.result.exit_code;
  ASSERT_TRUE(c.run.drained) << c.run.drained.error().message;
  EXPECT_EQ(c.counters, 5000u);
  EXPECT_NE(c.doomed_span, 0u);
  const reader::Segment& segment = *c.run.segment;
  EXPECT_EQ(segment.state(), abi::ProcessState::kCrashed);
  EXPECT_EQ(segment.exit_status(), SIGSEGV);
  ASSERT_EQ(c.run.drained->errors.size(), 1u);
  const reader::ErrorRecord& e = c.run.drained->errors[0];
  EXPECT_EQ(e.kind, abi::ErrorKind::kCrash);
  EXPECT_EQ(e.signal, static_cast<std::uint32_t>(SIGSEGV));
  EXPECT_EQ(e.fault_address, 0x10u);
  EXPECT_EQ(e.type, "SIGSEGV");
  EXPECT_EQ(e.message, "SIGSEGV at 0x10");
  EXPECT_EQ(e.span_id, c.doomed_span);
  EXPECT_EQ(text(segment, e.span_name_id), "doomed");
  EXPECT_GE(e.frames.size(), 2u);
  EXPECT_LE(e.frames.size(), 10u);
}

TEST(CrashProcess, AbortIsRecordedAndStillAborts) {
  Crashed c = run_crash("abort", 10);
  SegmentGuard guard(c.run.segment_name);
  EXPECT_EQ(c.run.result.signal, SIGABRT);
  ASSERT_TRUE(c.run.drained) << c.run.drained.error().message;
  EXPECT_EQ(c.counters, 10u);
  EXPECT_EQ(c.run.segment->state(), abi::ProcessState::kCrashed);
  EXPECT_EQ(c.run.segment->exit_status(), SIGABRT);
  ASSERT_EQ(c.run.drained->errors.size(), 1u);
  EXPECT_EQ(c.run.drained->errors[0].signal, static_cast<std::uint32_t>(SIGABRT));
  EXPECT_EQ(c.run.drained->errors[0].type, "SIGABRT");
}

TEST(CrashProcess, TheProgramsOwnHandlerStillRuns) {
  Crashed c = run_crash("own-handler", 10);
  SegmentGuard guard(c.run.segment_name);
  EXPECT_EQ(c.run.result.signal, 0);
  EXPECT_EQ(c.run.result.exit_code, 42);
  EXPECT_EQ(c.run.result.out, "handled\n");
  ASSERT_TRUE(c.run.drained) << c.run.drained.error().message;
  EXPECT_EQ(c.counters, 10u);
}

}  // namespace
}  // namespace shmtrace::test
