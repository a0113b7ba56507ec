// Shared helpers for the multi-process tests: run a real program (with the
// runtime linked or preloaded) under a chosen environment, find its segment,
// and drain everything it wrote through the reader library.
#ifndef SHMTRACE_TESTS_TEST_SUPPORT_HPP
#define SHMTRACE_TESTS_TEST_SUPPORT_HPP

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reader/reader.hpp"

// Tests compiled in the plain build only (CI runs it beside the sanitizer
// builds) say why where they are guarded; the causes are sanitizer builds
// themselves: a sanitized runtime preloaded into the system's own programs
// (sh, make, gcc, sqlite3) reports false errors or cannot load, a sanitized
// runtime makes vfork a fork, UndefinedBehaviorSanitizer stops a program at
// the null store that would have raised SIGSEGV, and interceptors add stack
// frames above the ones a symbolization test names.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHMTRACE_SANITIZED_RUNTIME 1
#else
#define SHMTRACE_SANITIZED_RUNTIME 0
#endif

namespace shmtrace::test {

// Path of a helper program built from tests/programs/<name>.cpp.
std::string program_path(const std::string& name);

struct RunResult {
  pid_t pid = 0;
  int exit_code = -1;  // when exited normally
  int signal = 0;      // when killed by a signal
  std::string out;
  std::string err;
};

// Environment changes for a child: value set, or std::nullopt-like "" erase.
struct EnvChange {
  std::string name;
  std::string value;
  bool erase = false;
};

// A started child whose output is collected by wait().
class Child {
 public:
  static Child start(const std::vector<std::string>& argv, const std::vector<EnvChange>& env);
  Child(Child&&) noexcept;
  ~Child();
  pid_t pid() const { return pid_; }
  // Reads stdout until it contains `text` (kept for wait()); false on EOF or timeout.
  bool wait_for_output(const std::string& text, int timeout_ms = 5000);
  RunResult wait();

 private:
  Child() = default;
  pid_t pid_ = 0;
  std::string early_out_;
  int out_fd_ = -1;
  int err_fd_ = -1;
};

RunResult run(const std::vector<std::string>& argv, const std::vector<EnvChange>& env = {});

// The segment of `pid` (waits up to timeout_ms for it to appear).
std::string find_segment(pid_t pid, int timeout_ms = 5000);

// Removes the named segment (and its error chunks and spill file) at scope exit.
class SegmentGuard {
 public:
  explicit SegmentGuard(std::string name) : name_(std::move(name)) {}
  ~SegmentGuard();
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;

 private:
  std::string name_;
};

// Removes every segment of `pid` (for tests whose child may not finish).
void remove_segments_of(pid_t pid);

// Everything read back from one segment.
struct Drained {
  std::vector<reader::DecodedRecord> records;    // rings then overflow, each in order
  std::map<std::uint32_t, std::vector<reader::DecodedRecord>> by_tid;  // in write order per thread
  std::vector<reader::ErrorRecord> errors;
  std::uint64_t ring_records = 0;      // raw records read from rings
  std::uint64_t overflow_records = 0;  // raw records read from the overflow area
  reader::DecodeStats stats;
};

// Consumes rings, overflow and errors once, committing as it goes. Records
// of one thread keep their write order within the ring and within the
// overflow area; by_tid merges the two by timestamp.
reader::Result<Drained> drain_segment(reader::Segment& segment);

// Keeps draining while `running()` is true, then once more; also publishes
// the consumer heartbeat (block policy).
reader::Result<Drained> drain_until(reader::Segment& segment, const std::function<bool()>& running);

// Attaches to the segment of a finished (or running) process as consumer.
reader::Segment attach_consumer(const std::string& name);

// Runs st_producer with --wait-signal: attaches as the consumer (and
// publishes the heartbeat) before letting it go, then drains it live until
// it exits.
struct LiveRun {
  RunResult result;
  std::string segment_name;
  reader::Result<Drained> drained = std::unexpected(reader::Error{"not run"});
};
LiveRun run_live(const std::vector<std::string>& args, const std::vector<EnvChange>& env);

// Runs st_producer to completion and drains its segment afterwards.
struct FinishedRun {
  RunResult result;
  std::string segment_name;
  std::optional<reader::Segment> segment;  // consumer access, for ring_info and strings
  reader::Result<Drained> drained = std::unexpected(reader::Error{"not run"});
};
FinishedRun run_finished(const std::vector<std::string>& args, const std::vector<EnvChange>& env = {});

// The environment for a child that must die by its fatal signal: under a
// sanitizer build the sanitizer's own fatal-signal handler would be the
// "previous handler" the runtime hands the signal to, and it reports and
// exits instead; this turns it off (appended to any options already set).
std::vector<EnvChange> without_sanitizer_signal_handlers();

// One worker of tests/workload (st_workload), from the program's output:
// "worker <i> pid <pid> status <s>" and "worker <i> count <name> <n>" (a
// name may contain spaces: the count is the last field).
struct WorkloadWorker {
  pid_t pid = 0;
  std::string status;
  std::map<std::string, std::uint64_t> counts;  // function -> calls, from the worker itself
};
std::map<int, WorkloadWorker> parse_workload_output(const std::string& out);

// Runs that do not see each other. A drain takes only the segments of its
// session (--session ID; none: only segments of no session), so tests that
// start drains run in parallel when each gives its drains and producers a
// session no other test uses at the same time.
//
// unique_session(): "t<pid>n<counter>": unique on the machine while this
// process lives (pids are not reused before), distinct on every call.
std::string unique_session();

// For a test's duration: SHMTRACE_SESSION=<unique_session()> in this
// process's own environment, so every producer the test starts (run,
// Child::start, harness::spawn, and all their descendants) is of that
// session; drain() gives the argv of a shmtrace-drain of the same session.
// The previous value comes back at scope exit. Not for threads that start
// processes meanwhile (setenv).
class SessionScope {
 public:
  SessionScope();
  ~SessionScope();
  SessionScope(const SessionScope&) = delete;
  SessionScope& operator=(const SessionScope&) = delete;
  const std::string& id() const { return id_; }
  // {SHMTRACE_DRAIN_PATH, args..., "--session", id()}.
  std::vector<std::string> drain(std::vector<std::string> args) const;

 private:
  std::string id_;
  std::optional<std::string> previous_;
};

// Text of a string id, "" when missing.
std::string text(const reader::Segment& segment, std::uint32_t id);

}  // namespace shmtrace::test

#endif
