#include "support/test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace shmtrace::test {

std::string unique_session() {
  static std::atomic<std::uint32_t> counter{0};
  return "t" + std::to_string(::getpid()) + "n" + std::to_string(counter.fetch_add(1) + 1);
}

SessionScope::SessionScope() : id_(unique_session()) {
  if (const char* old = std::getenv("SHMTRACE_SESSION")) previous_ = old;
  ::setenv("SHMTRACE_SESSION", id_.c_str(), 1);
}

SessionScope::~SessionScope() {
  if (previous_) {
    ::setenv("SHMTRACE_SESSION", previous_->c_str(), 1);
  } else {
    ::unsetenv("SHMTRACE_SESSION");
  }
}

std::vector<std::string> SessionScope::drain(std::vector<std::string> args) const {
  args.insert(args.begin(), SHMTRACE_DRAIN_PATH);
  args.push_back("--session");
  args.push_back(id_);
  return args;
}

std::string program_path(const std::string& name) { return std::string(SHMTRACE_PROGRAM_DIR) + "/" + name; }

Child Child::start(const std::vector<std::string>& argv, const std::vector<EnvChange>& env) {
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  // Build argv/envp before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    const bool changed = std::any_of(env.begin(), env.end(), [&](const EnvChange& c) { return c.name == key; });
    if (!changed) env_strings.push_back(entry);
  }
  for (const EnvChange& c : env) {
    if (!c.erase) env_strings.push_back(c.name + "=" + c.value);
  }
#if defined(__SANITIZE_ADDRESS__)
  // The preload tests put libshmtrace.so ahead of ASan's runtime in the
  // children, which ASan refuses unless told the order is fine.
  bool asan_options = false;
  for (std::string& entry : env_strings) {
    if (entry.rfind("ASAN_OPTIONS=", 0) == 0) {
      entry += ":verify_asan_link_order=0";
      asan_options = true;
    }
  }
  if (!asan_options) env_strings.push_back("ASAN_OPTIONS=verify_asan_link_order=0");
#endif
#if defined(__SANITIZE_THREAD__)
  // The children's producers sync with a consumer in this process, which
  // their ThreadSanitizer cannot see (tests/tsan_cross_process.supp).
  for (std::string& entry : env_strings) {
    if (entry.rfind("TSAN_OPTIONS=", 0) == 0) entry += std::string(" suppressions=") + SHMTRACE_TSAN_SUPPRESSIONS;
  }
  if (std::none_of(env_strings.begin(), env_strings.end(),
                   [](const std::string& e) { return e.rfind("TSAN_OPTIONS=", 0) == 0; })) {
    env_strings.push_back(std::string("TSAN_OPTIONS=suppressions=") + SHMTRACE_TSAN_SUPPRESSIONS);
  }
#endif
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (std::string& s : args) argp.push_back(s.data());
  argp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    ::execve(argp[0], argp.data(), envp.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Child c;
  c.pid_ = pid;
  c.out_fd_ = out[0];
  c.err_fd_ = err[0];
  return c;
}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)),
      early_out_(std::move(o.early_out_)),
      out_fd_(std::exchange(o.out_fd_, -1)),
      err_fd_(std::exchange(o.err_fd_, -1)) {}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    (void)wait();
  }
}

bool Child::wait_for_output(const std::string& text, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (early_out_.find(text) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return false;
    early_out_.append(buf, static_cast<std::size_t>(n));
  }
  return true;
}

RunResult Child::wait() {
  RunResult r;
  r.pid = pid_;
  r.out = std::move(early_out_);
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  out_fd_ = err_fd_ = -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  pid_ = 0;
  return r;
}

RunResult run(const std::vector<std::string>& argv, const std::vector<EnvChange>& env) {
  return Child::start(argv, env).wait();
}

std::string find_segment(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto listed = reader::list_segments(static_cast<std::uint32_t>(pid));
    if (listed && !listed->empty()) return listed->front().name;
    if (std::chrono::steady_clock::now() > deadline) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

SegmentGuard::~SegmentGuard() {
  if (name_.empty()) return;
  if (auto s = reader::Segment::attach(name_, reader::Access::kReadOnly)) (void)s->unlink();
}

void remove_segments_of(pid_t pid) {
  auto listed = reader::list_segments(static_cast<std::uint32_t>(pid));
  if (!listed) return;
  for (const auto& l : *listed) SegmentGuard guard(l.name);
}

reader::Segment attach_consumer(const std::string& name) {
  auto s = reader::Segment::attach(name, reader::Access::kConsume);
  if (!s) throw std::runtime_error("attach " + name + ": " + s.error().message);
  return std::move(*s);
}

namespace {

// One pass over rings, overflow and errors; returns whether anything moved.
reader::Result<bool> drain_once(reader::Segment& segment, Drained& out, reader::ErrorCursor& cursor,
                                std::map<std::uint64_t, std::uint32_t>& ring_tid) {
  bool moved = false;
  for (std::uint32_t ring = 0; ring < segment.ring_count(); ++ring) {
    for (;;) {
      auto batch = segment.read_ring(ring, 65536);
      if (!batch) return std::unexpected(batch.error());
      if (batch->records.empty()) break;
      moved = true;
      out.ring_records += batch->records.size();
      auto decoded = reader::decode(batch->records, out.stats);
      for (auto& d : decoded) {
        if (d.kind == abi::RecordKind::kThreadStart) ring_tid[ring] = static_cast<std::uint32_t>(d.aux);
        out.by_tid[ring_tid[ring]].push_back(d);
        out.records.push_back(std::move(d));
      }
      if (auto c = segment.commit_ring(ring, batch->end_position); !c) return std::unexpected(c.error());
    }
  }
  for (;;) {
    auto batch = segment.read_overflow(65536);
    if (!batch) return std::unexpected(batch.error());
    if (batch->entries.empty()) break;
    moved = true;
    out.overflow_records += batch->entries.size();
    // Decode each producer's group separately: groups of different threads interleave.
    std::size_t i = 0;
    while (i < batch->entries.size()) {
      std::vector<abi::Record> group{batch->entries[i].record};
      const std::uint32_t tid = batch->entries[i].tid;
      std::size_t j = i + 1;
      while (j < batch->entries.size() && batch->entries[j].record.kind ==
                                              static_cast<std::uint8_t>(abi::RecordKind::kContinuation) &&
             batch->entries[j].tid == tid) {
        group.push_back(batch->entries[j].record);
        ++j;
      }
      for (auto& d : reader::decode(group, out.stats)) {
        out.by_tid[tid].push_back(d);
        out.records.push_back(std::move(d));
      }
      i = j;
    }
    if (auto c = segment.commit_overflow(*batch); !c) return std::unexpected(c.error());
  }
  for (;;) {
    auto errors = segment.read_errors(cursor, 100000);
    if (!errors) return std::unexpected(errors.error());
    if (errors->errors.empty()) break;
    moved = true;
    cursor = errors->next;
    for (auto& e : errors->errors) out.errors.push_back(std::move(e));
  }
  return moved;
}

void order_by_time(Drained& out) {
  for (auto& [tid, records] : out.by_tid) {
    std::stable_sort(records.begin(), records.end(),
                     [](const reader::DecodedRecord& a, const reader::DecodedRecord& b) {
                       return a.timestamp < b.timestamp;
                     });
  }
}

}  // namespace

reader::Result<Drained> drain_segment(reader::Segment& segment) {
  return drain_until(segment, [] { return false; });
}

reader::Result<Drained> drain_until(reader::Segment& segment, const std::function<bool()>& running) {
  Drained out;
  reader::ErrorCursor cursor;
  std::map<std::uint64_t, std::uint32_t> ring_tid;
  for (;;) {
    const bool still_running = running();
    segment.heartbeat();
    auto moved = drain_once(segment, out, cursor, ring_tid);
    if (!moved) return std::unexpected(moved.error());
    if (!still_running) {
      // One last pass after the producer stopped: nothing can appear later.
      while (true) {
        auto again = drain_once(segment, out, cursor, ring_tid);
        if (!again) return std::unexpected(again.error());
        if (!*again) break;
      }
      break;
    }
    if (!*moved) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  order_by_time(out);
  return out;
}

LiveRun run_live(const std::vector<std::string>& args, const std::vector<EnvChange>& env) {
  LiveRun live;
  std::vector<std::string> argv{program_path("st_producer"), "--wait-signal"};
  argv.insert(argv.end(), args.begin(), args.end());
  Child child = Child::start(argv, env);
  live.segment_name = find_segment(child.pid());
  if (live.segment_name.empty()) return live;
  // The header is published just after the object appears: retry briefly.
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

FinishedRun run_finished(const std::vector<std::string>& args, const std::vector<EnvChange>& env) {
  FinishedRun out;
  std::vector<std::string> argv{program_path("st_producer")};
  argv.insert(argv.end(), args.begin(), args.end());
  out.result = run(argv, env);
  out.segment_name = find_segment(out.result.pid, 0);
  if (out.segment_name.empty()) return out;
  auto s = reader::Segment::attach(out.segment_name, reader::Access::kConsume);
  if (!s) {
    out.drained = std::unexpected(s.error());
    return out;
  }
  out.segment.emplace(std::move(*s));
  out.drained = drain_segment(*out.segment);
  return out;
}

std::vector<EnvChange> without_sanitizer_signal_handlers() {
  const std::string flags = "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0";
  std::vector<EnvChange> env;
  for (const char* name : {"ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"}) {
    const char* current = std::getenv(name);
    env.push_back({name, current != nullptr && *current != '\0' ? std::string(current) + ":" + flags : flags});
  }
  return env;
}

std::map<int, WorkloadWorker> parse_workload_output(const std::string& out) {
  std::map<int, WorkloadWorker> workers;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    int index = 0;
    char what[16] = {};
    int consumed = 0;
    if (std::sscanf(line.c_str(), "worker %d %15s %n", &index, what, &consumed) != 2) continue;
    const std::string rest = line.substr(static_cast<std::size_t>(consumed));
    if (std::strcmp(what, "pid") == 0) {
      int pid = 0;
      char status[32] = {};
      if (std::sscanf(rest.c_str(), "%d status %31s", &pid, status) == 2) {
        workers[index].pid = pid;
        workers[index].status = status;
      }
    } else if (std::strcmp(what, "count") == 0) {
      const std::size_t space = rest.rfind(' ');
      workers[index].counts[rest.substr(0, space)] = std::stoull(rest.substr(space + 1));
    }
  }
  return workers;
}

std::string text(const reader::Segment& segment, std::uint32_t id) {
  auto t = segment.string(id);
  return t ? std::string(*t) : std::string();
}

}  // namespace shmtrace::test
