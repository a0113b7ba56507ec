// LD_PRELOAD=libshmtrace.so on a program that knows nothing of shmtrace
// (tests/plain/st_plain.c): every process image gets its own segment, the
// segments rebuild the process tree, children join the parent's trace through
// TRACEPARENT, and the program's output and exit code never change.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <sstream>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

constexpr char kTrace[] = "0123456789abcdef0123456789abcdef";

EnvChange preload() { return {"LD_PRELOAD", SHMTRACE_LIBRARY_PATH}; }

struct SegmentView {
  std::string name;
  abi::SegmentHeader header{};
  abi::ProcessState state = abi::ProcessState::kRunning;
  std::int32_t exit_status = 0;
  std::string exec_target;
  std::vector<reader::DecodedRecord> records;
};

std::vector<SegmentView> segments_of(pid_t pid) {
  std::vector<SegmentView> out;
  auto listed = reader::list_segments(static_cast<std::uint32_t>(pid));
  if (!listed) return out;
  for (const auto& l : *listed) {
    auto s = reader::Segment::attach(l.name, reader::Access::kConsume);
    if (!s) continue;
    // The processes have ended: the header copy taken now is final.
    SegmentView v{l.name, s->header(), s->state(), s->exit_status(), text(*s, s->header().exec_target_id), {}};
    if (auto d = drain_segment(*s)) v.records = d->records;
    (void)s->unlink();
    out.push_back(std::move(v));
  }
  return out;
}

std::uint64_t count_kind(const SegmentView& v, RecordKind kind) {
  std::uint64_t n = 0;
  for (const auto& d : v.records) n += d.kind == kind;
  return n;
}

TEST(PreloadProcess, EveryImageHasASegmentAndTheTreeAndTraceHoldTogether) {
  const std::string traceparent = std::string("00-") + kTrace + "-00000000000000aa-01";
  const RunResult r = run({program_path("st_plain"), "tree"}, {preload(), {"TRACEPARENT", traceparent}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  std::map<std::string, pid_t> child;
  std::istringstream in(r.out);
  for (std::string how; in >> how;) {
    if (how == "leaf") {
      std::string rest;
      std::getline(in, rest);
      continue;
    }
    int pid = 0;
    int code = 0;
    in >> pid >> code;
    child[how] = pid;
    EXPECT_EQ(code, 5) << how << " child's exit code passed through unchanged";
  }
  ASSERT_EQ(child.size(), 3u) << r.out;

  std::uint8_t trace[16];
  for (int i = 0; i < 16; ++i) trace[i] = static_cast<std::uint8_t>(std::stoi(std::string(kTrace + 2 * i, 2), nullptr, 16));

  const auto parent = segments_of(r.pid);
  ASSERT_EQ(parent.size(), 1u);
  EXPECT_EQ(parent[0].state, abi::ProcessState::kExited);
  EXPECT_EQ(parent[0].exit_status, 0);
  EXPECT_EQ(0, std::memcmp(parent[0].header.trace_id, trace, 16));
  EXPECT_EQ(count_kind(parent[0], RecordKind::kProcessStart), 1u);
  // Every child is recorded in the parent, with its pid and how it was
  // started; the execs of the spawn and vfork children too (by the parent:
  // the vfork child must not write its parent's ring).
  using Started = std::pair<std::uint64_t, std::uint8_t>;  // child pid, flags
  std::vector<Started> forks;
  std::vector<Started> execs;
  for (const auto& d : parent[0].records) {
    if (d.kind == RecordKind::kFork) forks.emplace_back(d.aux, d.flags);
    if (d.kind == RecordKind::kExec) execs.emplace_back(d.aux, d.flags);
  }
  const auto pid_of = [&](const char* how) { return static_cast<std::uint64_t>(child[how]); };
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  const std::uint8_t vfork_flags = 0;  // a sanitizer build's runtime makes vfork a fork
#else
  const std::uint8_t vfork_flags = abi::kForkViaVfork;
#endif
  EXPECT_EQ(forks, (std::vector<Started>{{pid_of("fork"), 0},
                                         {pid_of("spawn"), abi::kForkViaSpawn},
                                         {pid_of("vfork"), vfork_flags}}));
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(execs, (std::vector<Started>{{pid_of("spawn"), 0}, {pid_of("vfork"), 0}}));
#endif

  for (const auto& [how, pid] : child) {
    SCOPED_TRACE(how);
    const auto images = segments_of(pid);
    // fork: the post-fork image (exec'd) and the new one; spawn and vfork:
    // only the new image (no fork handlers run in them). A sanitizer build's
    // runtime makes vfork a fork.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    const bool forks = how == "fork" || how == "vfork";
#else
    const bool forks = how == "fork";
#endif
    ASSERT_EQ(images.size(), forks ? 2u : 1u);
    int leaves = 0;
    for (const auto& v : images) {
      EXPECT_EQ(v.header.ppid, static_cast<std::uint32_t>(r.pid));
      EXPECT_EQ(0, std::memcmp(v.header.trace_id, trace, 16)) << "joined the parent's trace";
      if (v.state == abi::ProcessState::kExeced) {
        EXPECT_TRUE(forks);
        EXPECT_EQ(v.exec_target, "/proc/self/exe");
        // A successful exec leaves no record: the header tells it.
        EXPECT_EQ(count_kind(v, RecordKind::kExec), 0u);
        continue;
      }
      ++leaves;
      EXPECT_EQ(v.state, abi::ProcessState::kExited);
      EXPECT_EQ(v.exit_status, 5) << "_exit(5) recorded";
      EXPECT_EQ(count_kind(v, RecordKind::kProcessStart), 1u);
      EXPECT_EQ(count_kind(v, RecordKind::kExit), 1u);
      EXPECT_EQ(std::string(v.header.cmdline, v.header.cmdline_size), std::string("/proc/self/exe\0leaf", 19));
    }
    EXPECT_EQ(leaves, 1);
  }
}

TEST(PreloadProcess, OutputAndExitCodeAreThoseOfTheProgramAlone) {
  const RunResult alone = run({program_path("st_plain"), "hello", "3"});
  const RunResult traced = run({program_path("st_plain"), "hello", "3"}, {preload()});
  remove_segments_of(traced.pid);
  const RunResult off = run({program_path("st_plain"), "hello", "3"}, {preload(), {"SHMTRACE_DISABLE", "1"}});
  EXPECT_EQ(find_segment(off.pid, 0), "");
  for (const RunResult* r : {&traced, &off}) {
    EXPECT_EQ(r->exit_code, alone.exit_code);
    EXPECT_EQ(r->out, alone.out);
    EXPECT_EQ(r->err, alone.err);
  }
  EXPECT_EQ(alone.exit_code, 3);
  EXPECT_EQ(alone.out, "hello\n");
}

TEST(PreloadProcess, UnwritableSharedMemoryLeavesOutputAndExitCodeAlone) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root for unshare(1) and mount(8)";
  // Only the program is preloaded (unshare, sh and mount are not), inside a
  // private mount namespace with a read-only /dev/shm.
  const RunResult r = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                           "mount -t tmpfs -o ro,size=1M tmpfs /dev/shm && LD_PRELOAD=\"$1\" exec \"$0\" hello 3",
                           program_path("st_plain"), SHMTRACE_LIBRARY_PATH});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "hello\n");
  std::istringstream in(r.err);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_EQ(lines[0].rfind("shmtrace: cannot create shared memory /dev/shm/shmtrace.", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("; tracing is off for this process"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace shmtrace::test
