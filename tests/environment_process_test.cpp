// Configuration from the environment (P11) and never hurting the host (P12):
// malformed values are reported once and replaced by defaults; a disabled
// runtime, or one whose segment cannot be created, leaves the program's
// output and exit code exactly as without it.
#include <gtest/gtest.h>

#include <sstream>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(EnvironmentProcess, MalformedValuesAreReportedOnceAndDefaultsKept) {
  FinishedRun run = run_finished({"spans", "1"}, {{"SHMTRACE_RING_RECORDS", "1000"},
                                                  {"SHMTRACE_POLICY", "fast"},
                                                  {"SHMTRACE_SAMPLE_RATE", "2"},
                                                  {"SHMTRACE_MAX_THREADS", "lots"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0);
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  EXPECT_EQ(lines(run.result.err),
            (std::vector<std::string>{
                "shmtrace: SHMTRACE_RING_RECORDS=1000: expected a power of two from 64 to 16777216; using default 16384",
                "shmtrace: SHMTRACE_MAX_THREADS=lots: expected an integer from 1 to 4096; using default 64",
                "shmtrace: SHMTRACE_POLICY=fast: expected drop or block; using default drop",
                "shmtrace: SHMTRACE_SAMPLE_RATE=2: expected a number from 0 to 1; using default 1"}));
  const abi::SegmentHeader& h = run.segment->header();
  EXPECT_EQ(h.ring_capacity, 16384u);
  EXPECT_EQ(h.max_rings, 64u);
  EXPECT_EQ(h.policy, static_cast<std::uint32_t>(abi::FullPolicy::kDrop));
  EXPECT_EQ(h.sample_rate_ppm, 1000000u);
  std::uint64_t ends = 0;
  for (const auto& d : run.drained->records) ends += d.kind == abi::RecordKind::kSpanEnd;
  EXPECT_EQ(ends, 1u);
}

TEST(EnvironmentProcess, ValidValuesReachTheSegmentHeader) {
  FinishedRun run = run_finished({"exit", "0"}, {{"SHMTRACE_RING_RECORDS", "256"},
                                                 {"SHMTRACE_MAX_THREADS", "3"},
                                                 {"SHMTRACE_OVERFLOW_RECORDS", "128"},
                                                 {"SHMTRACE_POLICY", "block"},
                                                 {"SHMTRACE_BLOCK_TIMEOUT_MS", "250"},
                                                 {"SHMTRACE_MAX_REPR", "64"},
                                                 {"SHMTRACE_MAX_FRAMES", "4"},
                                                 {"SHMTRACE_SAMPLE_RATE", "0.5"},
                                                 {"SHMTRACE_SPILL_DIR", "/var/tmp"}});
  SegmentGuard guard(run.segment_name);
  EXPECT_EQ(run.result.err, "");
  ASSERT_TRUE(run.segment);
  const abi::SegmentHeader& h = run.segment->header();
  EXPECT_EQ(h.ring_capacity, 256u);
  EXPECT_EQ(h.max_rings, 3u);
  EXPECT_EQ(h.overflow_capacity, 128u);
  EXPECT_EQ(h.policy, static_cast<std::uint32_t>(abi::FullPolicy::kBlock));
  EXPECT_EQ(h.block_timeout_ms, 250u);
  EXPECT_EQ(h.max_repr, 64u);
  EXPECT_EQ(h.max_frames, 4u);
  EXPECT_EQ(h.sample_rate_ppm, 500000u);
  EXPECT_STREQ(h.spill_dir, "/var/tmp");
  EXPECT_EQ(h.pid, static_cast<std::uint32_t>(run.result.pid));
  EXPECT_EQ(h.ppid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(std::string(h.exe), program_path("st_producer"));
  EXPECT_EQ(std::string(h.cmdline, h.cmdline_size), program_path("st_producer") + std::string("\0exit\0" "0", 7));
  EXPECT_EQ(run.segment->state(), abi::ProcessState::kExited);
  EXPECT_EQ(run.segment->exit_status(), 0);
}

TEST(EnvironmentProcess, ExitCodeIsRecordedInTheSegment) {
  FinishedRun run = run_finished({"exit", "7"});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 7);
  ASSERT_TRUE(run.segment);
  EXPECT_EQ(run.segment->state(), abi::ProcessState::kExited);
  EXPECT_EQ(run.segment->exit_status(), 7);
}

TEST(EnvironmentProcess, DisabledRuntimeChangesNothingAndCreatesNoSegment) {
  const RunResult plain = run({program_path("st_producer"), "exit", "3"});
  SegmentGuard plain_guard(find_segment(plain.pid, 0));
  const RunResult off = run({program_path("st_producer"), "exit", "3"}, {{"SHMTRACE_DISABLE", "1"}});
  EXPECT_EQ(off.exit_code, 3);
  EXPECT_EQ(off.out, plain.out);
  EXPECT_EQ(off.out, "hello\n");
  EXPECT_EQ(off.err, "");
  EXPECT_EQ(find_segment(off.pid, 0), "");
}

TEST(EnvironmentProcess, UnwritableSharedMemorySaysSoOnceAndTheHostRunsOn) {
  // A private mount namespace with a read-only /dev/shm (root only, as CI is).
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root for unshare(1) and mount(8)";
  const RunResult r = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                           "mount -t tmpfs -o ro,size=1M tmpfs /dev/shm && exec \"$0\" exit 3",
                           program_path("st_producer")});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "hello\n");
  const auto err = lines(r.err);
  ASSERT_EQ(err.size(), 1u) << r.err;
  EXPECT_EQ(err[0].rfind("shmtrace: cannot create shared memory /dev/shm/shmtrace.", 0), 0u) << err[0];
  EXPECT_NE(err[0].find("Read-only file system; tracing is off for this process"), std::string::npos) << err[0];
}

}  // namespace
}  // namespace shmtrace::test
