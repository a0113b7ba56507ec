// Span begin+end on the hot path, beside the machine's floor (SPEC §7).
//
// Figures (each the median of 5 repetitions unless --benchmark_repetitions
// says otherwise), all in one binary so the ratios hold across machines:
//   BM_Floor              two rdtsc + two 64-byte record stores into a
//                         16384-record ring in memory + a release store of
//                         the head after each record: what any tracer pays.
//   BM_EmptyScope         the benchmark loop alone (baseline 0).
//   BM_MutexQueue         the old (Python) design: a std::mutex-protected
//                         std::deque, one push per begin and one per end.
//   BM_SpanBeginEnd       shmtrace_span_enter + shmtrace_span_leave (the
//                         inline fast path of shmtrace.h that the macros and
//                         the C++ Scope use) into libshmtrace.so, nested
//                         under a long-lived root.
//   BM_SpanBeginEndRoot   the same, each span a new root (a new trace).
//   BM_SpanWithArgs       a nested span with one int and one short string arg.
//   BM_SpanDisabled       SHMTRACE_DISABLE=1 (child process, see below).
//   BM_SpanSampledOut     nested spans under a sampled-out root, and
//   BM_SpanSampledOutRoot sampled-out roots (SHMTRACE_SAMPLE_RATE=0, child).
// Call-site statistics (P13) are on by default, so the figures above include
// them; the same benchmarks run again in children with SHMTRACE_STATS_SITES=0:
//   BM_SpanBeginEndNoStats, BM_SpanBeginEndRootNoStats   (child "nostats",
//                         with its own null drain), and
//   BM_SpanSampledOutNoStats, BM_SpanSampledOutRootNoStats (child
//                         "sampled-nostats"): the inline fast path that
//                         never calls into the library.
//
// The runtime reads its configuration once, at library load, so the disabled
// and sampled-out cases run in children: main() re-executes /proc/self/exe
// with the variable set and --shmtrace_bench_child=<mode>, echoes the child's
// table and takes its medians from "@@figure" lines into the summary.
//
// The rings must never fill during the measured runs, or we would measure the
// overflow/drop path: a "null drain" thread in this process attaches to our
// own segment as the consumer and keeps every ring's tail at its head. The
// summary says whether any record was dropped or overflowed while the
// benchmarks ran; if so, the figures are marked INVALID.
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "bench_support.hpp"

extern char** environ;

namespace {

using shmtrace::bench::Figure;
namespace abi = shmtrace::abi;
namespace reader = shmtrace::reader;

constexpr const char kChildFlag[] = "--shmtrace_bench_child=";
constexpr const char kFigureTag[] = "@@figure ";
// 0.2 s per run x 5 repetitions keeps the whole binary (children included)
// well under a minute on the 2-core VM.
constexpr const char kMinTime[] = "0.2";

// ---------------------------------------------------------------------------
// BM_Floor: the work any tracer must do for a span, and nothing more.
// ---------------------------------------------------------------------------
struct alignas(64) FloorRecord {
  std::uint64_t word[8];
};
static_assert(sizeof(FloorRecord) == 64);
constexpr std::uint64_t kFloorRecords = 16384;  // same size as a default shmtrace ring (1 MiB)
alignas(4096) FloorRecord g_floor_ring[kFloorRecords];
alignas(64) std::uint64_t g_floor_head = 0;
alignas(64) std::uint64_t g_floor_tail = 0;  // kept at the head by the null drain, as a real ring's tail

void BM_Floor(benchmark::State& state) {
  FloorRecord* ring = g_floor_ring;
  benchmark::DoNotOptimize(ring);  // the ring escapes: its stores cannot be elided
  std::uint64_t head = std::atomic_ref<std::uint64_t>(g_floor_head).load(std::memory_order_relaxed);
  std::uint64_t span = 0x1234;
  const std::uint64_t trace_hi = 0x0190'0000'0000'7000ull;
  const std::uint64_t trace_lo = 0x8000'0000'0000'0001ull;
  std::uint64_t checks = 0;
  for (auto _ : state) {
    const std::uint64_t begin = __rdtsc();
    ring[head & (kFloorRecords - 1)] = FloorRecord{{1 | (7ull << 32), begin, span, span - 1, trace_hi, trace_lo, 0, 3}};
    ++head;
    std::atomic_ref<std::uint64_t>(g_floor_head).store(head, std::memory_order_release);
    const std::uint64_t end = __rdtsc();
    ring[head & (kFloorRecords - 1)] = FloorRecord{{2 | (7ull << 32), end, span, begin, trace_hi, trace_lo, span - 1, 3}};
    ++head;
    std::atomic_ref<std::uint64_t>(g_floor_head).store(head, std::memory_order_release);
    ++span;
    shmtrace::bench::keep_room(state, checks, &g_floor_head, &g_floor_tail, kFloorRecords);
  }
}

void BM_EmptyScope(benchmark::State& state) {
  for (auto _ : state) {
  }
}

// ---------------------------------------------------------------------------
// BM_MutexQueue: the old design. One event per begin and one per end, pushed
// under a std::mutex onto a std::deque. Its consumer is folded into the
// producer: every 4096 spans the queue is cleared under the same lock, which
// keeps memory bounded and the lock uncontended. A separate consumer thread
// would add lock contention and cache-line transfers, so this is the most
// favourable case for the old design: the ratio is a lower bound.
// ---------------------------------------------------------------------------
struct QueueEvent {
  std::uint64_t timestamp;
  std::uint64_t span_id;
  std::uint32_t name;
  std::uint32_t kind;
};

void BM_MutexQueue(benchmark::State& state) {
  std::mutex mutex;
  std::deque<QueueEvent> queue;
  std::uint64_t span = 1;
  std::uint32_t pending = 0;
  for (auto _ : state) {
    {
      std::lock_guard lock(mutex);
      queue.push_back(QueueEvent{__rdtsc(), span, 7, 1});
    }
    {
      std::lock_guard lock(mutex);
      queue.push_back(QueueEvent{__rdtsc(), span, 7, 2});
    }
    ++span;
    if (++pending == 4096) {
      std::lock_guard lock(mutex);
      queue.clear();
      pending = 0;
    }
  }
  benchmark::DoNotOptimize(queue);
}

// ---------------------------------------------------------------------------
// The real API.
// ---------------------------------------------------------------------------
shmtrace_name_t g_root_name = 0;
shmtrace_name_t g_span_name = 0;
shmtrace_name_t g_int_name = 0;
shmtrace_name_t g_str_name = 0;

// Our own segment seen read-only, to count the main thread's slow-path
// records (dropped or overflowed) around each benchmark.
std::optional<reader::Segment> g_view;
std::uint32_t g_main_ring = abi::kNoRing;
shmtrace::bench::RingWatch g_watch;  // the main thread's ring, for keep_room()

void keep_room(benchmark::State& state, std::uint64_t& checks) {
  shmtrace::bench::keep_room(state, checks, g_watch.head(), g_watch.tail(), g_watch.capacity());
}

std::uint64_t main_ring_lost() {
  if (!g_view || g_main_ring == abi::kNoRing) return 0;
  const auto info = g_view->ring_info(g_main_ring);
  return info ? info->dropped + info->overflowed : 0;
}

void set_lost_counter(benchmark::State& state, std::uint64_t before) {
  state.counters["lost"] = static_cast<double>(main_ring_lost() - before);
}

void BM_SpanBeginEnd(benchmark::State& state) {
  const shmtrace_span_t root = shmtrace_span_begin(g_root_name);
  if (root == 0) state.SkipWithError("the root span was not recorded");
  const std::uint64_t lost = main_ring_lost();
  std::uint64_t checks = 0;
  for (auto _ : state) {
    const shmtrace_span_t span = shmtrace_span_enter(0, g_span_name);
    shmtrace_span_leave(span, SHMTRACE_OK);
    keep_room(state, checks);
  }
  set_lost_counter(state, lost);
  shmtrace_span_end(root);
}

void BM_SpanBeginEndRoot(benchmark::State& state) {
  const std::uint64_t lost = main_ring_lost();
  std::uint64_t checks = 0;
  for (auto _ : state) {
    const shmtrace_span_t span = shmtrace_span_enter(0, g_span_name);
    shmtrace_span_leave(span, SHMTRACE_OK);
    keep_room(state, checks);
  }
  set_lost_counter(state, lost);
}

void BM_SpanWithArgs(benchmark::State& state) {
  const shmtrace_span_t root = shmtrace_span_begin(g_root_name);
  if (root == 0) state.SkipWithError("the root span was not recorded");
  const std::uint64_t lost = main_ring_lost();
  std::int64_t value = 0;
  std::uint64_t checks = 0;
  for (auto _ : state) {
    const shmtrace_span_t span = shmtrace_span_enter(0, g_span_name);
    shmtrace_arg_i64(g_int_name, ++value);
    shmtrace_arg_str(g_str_name, "GET /index.html");
    shmtrace_span_leave(span, SHMTRACE_OK);
    keep_room(state, checks);
  }
  set_lost_counter(state, lost);
  shmtrace_span_end(root);
}

// Child "disabled": SHMTRACE_DISABLE=1, every call is a no-op.
void BM_SpanDisabled(benchmark::State& state) {
  if (shmtrace_enabled() != 0) state.SkipWithError("the runtime is enabled in the disabled child");
  const shmtrace_span_t root = shmtrace_span_begin(g_root_name);
  for (auto _ : state) {
    const shmtrace_span_t span = shmtrace_span_enter(0, g_span_name);
    shmtrace_span_leave(span, SHMTRACE_OK);
  }
  shmtrace_span_end(root);
}

// Child "disabled", baseline: two calls into libshmtrace.so that only load
// the runtime pointer; what any no-op begin+end through the C ABI pays.
void BM_TwoLibraryCalls(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(shmtrace_enabled());
    benchmark::DoNotOptimize(shmtrace_enabled());
  }
}

// Child "sampled": SHMTRACE_SAMPLE_RATE=0, every root is sampled out.
void BM_SpanSampledOut(benchmark::State& state) {
  if (shmtrace_enabled() == 0) state.SkipWithError("the runtime is off in the sampled-out child");
  const shmtrace_span_t root = shmtrace_span_begin(g_root_name);
  if (root != 0) state.SkipWithError("the root span was recorded although SHMTRACE_SAMPLE_RATE=0");
  for (auto _ : state) {
    const shmtrace_span_t span = shmtrace_span_enter(0, g_span_name);
    shmtrace_span_leave(span, SHMTRACE_OK);
  }
  shmtrace_span_end(root);
}

void BM_SpanSampledOutRoot(benchmark::State& state) {
  if (shmtrace_enabled() == 0) state.SkipWithError("the runtime is off in the sampled-out child");
  for (auto _ : state) {
    const shmtrace_span_t span = shmtrace_span_enter(0, g_span_name);
    shmtrace_span_leave(span, SHMTRACE_OK);
  }
}

// ---------------------------------------------------------------------------
// Null drain: the consumer of our own segment, discarding every record.
// ---------------------------------------------------------------------------
class NullDrain {
 public:
  explicit NullDrain(reader::Segment segment) : segment_(std::move(segment)) {}
  ~NullDrain() { stop(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_.store(true, std::memory_order_relaxed);
    if (thread_.joinable()) thread_.join();
  }
  std::uint64_t max_lag() const { return max_lag_; }
  std::uint64_t rounds() const { return rounds_; }
  std::uint64_t committed() const { return committed_; }
  std::uint64_t overflow_entries() const { return overflow_entries_; }
  const std::string& error() const { return error_; }
  std::uint32_t capacity() const { return segment_.header().ring_capacity; }

 private:
  void fail(const std::string& message) {
    if (error_.empty()) error_ = message;
  }

  void run() {
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // short sleeps really are short
    const std::uint64_t capacity = segment_.header().ring_capacity;
    const timespec pause{0, 10'000};  // 10 µs; a ring of 16384 takes >= 160 µs to fill
    while (!stop_.load(std::memory_order_relaxed)) {
      std::uint64_t round_lag = 0;
      for (std::uint32_t r = 0; r < segment_.ring_count(); ++r) {
        const auto info = segment_.ring_info(r);
        if (!info) {
          fail(info.error().message);
          continue;
        }
        if (info->state == abi::RingState::kFree || info->head == info->tail) continue;
        const std::uint64_t lag = info->head - info->tail;
        round_lag = std::max(round_lag, lag);
        if (auto c = segment_.commit_ring(r, info->head); !c) {
          fail(c.error().message);
          continue;
        }
        committed_ += lag;
      }
      // The floor's ring, so BM_Floor sees the same consumer traffic.
      const std::uint64_t floor_head = abi::atomic_load(g_floor_head, std::memory_order_acquire);
      round_lag = std::max(round_lag, floor_head - abi::atomic_load(g_floor_tail, std::memory_order_relaxed));
      abi::atomic_store(g_floor_tail, floor_head, std::memory_order_release);
      if (auto batch = segment_.read_overflow(4096); !batch) {
        fail(batch.error().message);
      } else if (!batch->entries.empty()) {
        overflow_entries_ += batch->entries.size();
        if (auto c = segment_.commit_overflow(*batch); !c) fail(c.error().message);
      }
      max_lag_ = std::max(max_lag_, round_lag);
      ++rounds_;
      // Sleep only while the rings are far from full; otherwise poll again.
      if (round_lag < capacity / 8) ::nanosleep(&pause, nullptr);
    }
  }

  reader::Segment segment_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::uint64_t max_lag_ = 0;
  std::uint64_t rounds_ = 0;
  std::uint64_t committed_ = 0;
  std::uint64_t overflow_entries_ = 0;
  std::string error_;
};

// ---------------------------------------------------------------------------
// Children for the configurations chosen at library load.
// ---------------------------------------------------------------------------
struct ChildResult {
  int status = -1;
  std::map<std::string, Figure> figures;
};

// Runs /proc/self/exe with `mode` and the variables in `set` (removing any
// inherited SHMTRACE_* or TRACEPARENT value), echoes its output, and parses
// its "@@figure" lines.
ChildResult run_child(const std::string& mode, const std::vector<std::string>& set,
                      const std::vector<std::string>& forwarded) {
  ChildResult result;
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.rfind("SHMTRACE_", 0) == 0 || entry.rfind("TRACEPARENT=", 0) == 0) continue;
    env_storage.emplace_back(entry);
  }
  for (const std::string& s : set) env_storage.push_back(s);
  std::vector<char*> envp;
  for (std::string& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> arg_storage{"span_bench"};
  for (const std::string& a : forwarded) arg_storage.push_back(a);
  arg_storage.push_back(std::string(kChildFlag) + mode);
  std::vector<char*> argv;
  for (std::string& s : arg_storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("span_bench: pipe");
    return result;
  }
  std::fflush(stdout);
  // posix_spawn, not fork: glibc's posix_spawn runs no pthread_atfork
  // handlers, so the runtime does not create a segment for a child that is
  // about to exec (a fork()ed child would get one, left behind by the exec).
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    std::fprintf(stderr, "span_bench: posix_spawn: %s\n", std::strerror(rc));
    ::close(fds[0]);
    return result;
  }
  FILE* in = ::fdopen(fds[0], "r");
  char line[4096];
  while (in != nullptr && std::fgets(line, sizeof line, in) != nullptr) {
    if (std::strncmp(line, kFigureTag, sizeof kFigureTag - 1) == 0) {
      char name[256] = {};
      char aggregate[32] = {};
      Figure f;
      if (std::sscanf(line + sizeof kFigureTag - 1, "%255s %lf %lf %31s %ld", name, &f.ns, &f.cpu_ns, aggregate,
                      &f.repetitions) == 5) {
        f.aggregate = aggregate;
        result.figures[name] = f;
      }
      continue;
    }
    std::fputs(line, stdout);
  }
  if (in != nullptr) std::fclose(in);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.status = status;
  return result;
}

// Attaches to our own segment: the read-only view (loss counters), the main
// thread's ring watch (keep_room) and a consumer for the null drain.
std::optional<reader::Segment> attach_own_segment() {
  shmtrace_span_end(shmtrace_span_begin(g_span_name));  // claims the main thread's ring
  const std::string segment_name = shmtrace_segment_name();
  auto view = reader::Segment::attach(segment_name, reader::Access::kReadOnly);
  auto consumer = reader::Segment::attach(segment_name, reader::Access::kConsume);
  if (!view || !consumer) {
    std::fprintf(stderr, "span_bench: cannot attach to %s: %s\n", segment_name.c_str(),
                 (!view ? view.error() : consumer.error()).message.c_str());
    return std::nullopt;
  }
  g_view.emplace(std::move(*view));
  g_main_ring = shmtrace::bench::ring_of_tid(*g_view, static_cast<std::uint32_t>(::gettid()));
  if (g_main_ring == abi::kNoRing || !g_watch.open(segment_name, g_main_ring)) {
    std::fprintf(stderr, "span_bench: the main thread has no ring in %s\n", segment_name.c_str());
    return std::nullopt;
  }
  return std::move(*consumer);
}

int child_main(const std::string& mode, std::vector<std::string> args) {
  g_root_name = shmtrace_intern("bench.root");
  g_span_name = shmtrace_intern("bench.span");
  std::optional<NullDrain> drain;
  if (mode == "disabled") {
    benchmark::RegisterBenchmark("BM_TwoLibraryCalls", BM_TwoLibraryCalls);
    benchmark::RegisterBenchmark("BM_SpanDisabled", BM_SpanDisabled);
  } else if (mode == "sampled") {
    benchmark::RegisterBenchmark("BM_SpanSampledOut", BM_SpanSampledOut);
    benchmark::RegisterBenchmark("BM_SpanSampledOutRoot", BM_SpanSampledOutRoot);
  } else if (mode == "sampled-nostats") {
    benchmark::RegisterBenchmark("BM_SpanSampledOutNoStats", BM_SpanSampledOut);
    benchmark::RegisterBenchmark("BM_SpanSampledOutRootNoStats", BM_SpanSampledOutRoot);
  } else if (mode == "nostats") {
    auto consumer = attach_own_segment();
    if (!consumer) return 1;
    if (g_view->header().ring_stats_bytes != 0) {
      std::fprintf(stderr, "span_bench: statistics are on in the nostats child\n");
      return 1;
    }
    drain.emplace(std::move(*consumer));
    benchmark::RegisterBenchmark("BM_SpanBeginEndNoStats", BM_SpanBeginEnd);
    benchmark::RegisterBenchmark("BM_SpanBeginEndRootNoStats", BM_SpanBeginEndRoot);
  } else {
    std::fprintf(stderr, "span_bench: unknown child mode '%s'\n", mode.c_str());
    return 2;
  }
  auto full = shmtrace::bench::with_defaults("span_bench", args, kMinTime);
  int argc = full.argc();
  benchmark::Initialize(&argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(argc, full.argv.data())) return 1;
  shmtrace::bench::CollectingReporter reporter;
  const shmtrace::bench::LossTotals before =
      g_view ? shmtrace::bench::loss_totals(*g_view) : shmtrace::bench::LossTotals{};
  if (drain) drain->start();
  benchmark::RunSpecifiedBenchmarks(&reporter);
  if (drain) drain->stop();
  benchmark::Shutdown();
  std::fflush(stdout);
  bool valid = true;
  if (g_view) {
    const shmtrace::bench::LossTotals after = shmtrace::bench::loss_totals(*g_view);
    valid = after.dropped == before.dropped && after.overflowed == before.overflowed && drain->error().empty();
    std::printf("child %s: %s\n", mode.c_str(),
                valid ? "no drops (figures VALID)" : "DROPS (figures INVALID: the slow path was measured)");
  }
  for (const auto& [name, f] : reporter.figures()) {
    std::printf("%s%s %.6f %.6f %s %ld\n", kFigureTag, name.c_str(), f.ns, f.cpu_ns, f.aggregate.c_str(),
                f.repetitions);
  }
  std::fflush(stdout);
  shmtrace::bench::unlink_own_segment();
  return reporter.errors().empty() && valid ? 0 : 1;
}

// ---------------------------------------------------------------------------
// Summary.
// ---------------------------------------------------------------------------
const Figure* lookup(const shmtrace::bench::CollectingReporter& reporter, const std::map<std::string, Figure>& extra,
                     const std::string& name) {
  if (const Figure* f = reporter.find(name)) return f;
  const auto it = extra.find(name);
  return it == extra.end() ? nullptr : &it->second;
}

// Ratios use the benchmark thread's CPU time: on the shared 2-core VM the
// real time also counts the moments another process held our core. Both are
// printed; on a quiet machine they agree.
void print_ratio(const char* label, const Figure* num, const Figure* den, const char* note) {
  if (num == nullptr || den == nullptr || den->cpu_ns <= 0 || den->ns <= 0) {
    std::printf("ratio %-28s n/a (not run)\n", label);
    return;
  }
  std::printf("ratio %-28s %6.2fx  (cpu %.2f / %.2f ns; real-time ratio %.2fx) %s\n", label,
              num->cpu_ns / den->cpu_ns, num->cpu_ns, den->cpu_ns, num->ns / den->ns, note);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  std::string child_mode;
  bool children = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind(kChildFlag, 0) == 0) {
      child_mode = a.substr(sizeof kChildFlag - 1);
    } else if (a == "--shmtrace_bench_no_children") {
      children = false;
    } else {
      args.push_back(a);
    }
  }
  if (!child_mode.empty()) return child_main(child_mode, args);

  std::atexit(shmtrace::bench::unlink_own_segment);
  if (shmtrace_enabled() == 0) {
    std::fprintf(stderr, "span_bench: the shmtrace runtime is off in this process (SHMTRACE_DISABLE set, or its "
                         "segment could not be created); nothing to measure\n");
    return 1;
  }
  if (std::getenv("TRACEPARENT") != nullptr) {
    std::fprintf(stderr, "span_bench: note: TRACEPARENT is set; root spans follow its sampled flag\n");
  }
  g_root_name = shmtrace_intern("bench.root");
  g_span_name = shmtrace_intern("bench.span");
  g_int_name = shmtrace_intern("bench.count");
  g_str_name = shmtrace_intern("bench.path");
  auto consumer = attach_own_segment();
  if (!consumer) return 1;

  benchmark::RegisterBenchmark("BM_EmptyScope", BM_EmptyScope);
  benchmark::RegisterBenchmark("BM_Floor", BM_Floor);
  benchmark::RegisterBenchmark("BM_MutexQueue", BM_MutexQueue);
  benchmark::RegisterBenchmark("BM_SpanBeginEnd", BM_SpanBeginEnd);
  benchmark::RegisterBenchmark("BM_SpanBeginEndRoot", BM_SpanBeginEndRoot);
  benchmark::RegisterBenchmark("BM_SpanWithArgs", BM_SpanWithArgs);

  auto full = shmtrace::bench::with_defaults(argv[0], args, kMinTime);
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;

  NullDrain drain(std::move(*consumer));
  const shmtrace::bench::LossTotals before = shmtrace::bench::loss_totals(*g_view);
  drain.start();
  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  drain.stop();
  const shmtrace::bench::LossTotals after = shmtrace::bench::loss_totals(*g_view);

  std::map<std::string, Figure> child_figures;
  bool children_ok = true;
  if (children) {
    struct ChildMode {
      std::string mode;
      std::vector<std::string> variables;
    };
    for (const ChildMode& c : {ChildMode{"nostats", {"SHMTRACE_STATS_SITES=0"}},
                               ChildMode{"disabled", {"SHMTRACE_DISABLE=1"}},
                               ChildMode{"sampled", {"SHMTRACE_SAMPLE_RATE=0"}},
                               ChildMode{"sampled-nostats", {"SHMTRACE_SAMPLE_RATE=0", "SHMTRACE_STATS_SITES=0"}}}) {
      const std::string& mode = c.mode;
      std::string joined;
      for (const std::string& v : c.variables) joined += (joined.empty() ? "" : " ") + v;
      std::printf("\n--- child process: %s (%s) ---\n", mode.c_str(), joined.c_str());
      std::fflush(stdout);
      ChildResult r = run_child(mode, c.variables, args);
      if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        children_ok = false;
        std::printf("child %s failed (wait status %d)\n", mode.c_str(), r.status);
      }
      child_figures.insert(r.figures.begin(), r.figures.end());
    }
  }
  benchmark::Shutdown();

  // --- the summary -----------------------------------------------------------
  const auto get = [&](const char* name) { return lookup(reporter, child_figures, name); };
  const Figure* any = get("BM_SpanBeginEnd");
  std::printf("\n==== span_bench summary: time per span (begin+end), %s of %ld repetition(s) ====\n",
              any != nullptr ? any->aggregate.c_str() : "median", any != nullptr ? any->repetitions : 0L);
  std::printf("%-24s %10s %10s\n", "benchmark", "cpu ns", "real ns");
  for (const char* name : {"BM_EmptyScope", "BM_Floor", "BM_MutexQueue", "BM_SpanBeginEnd", "BM_SpanBeginEndNoStats",
                           "BM_SpanBeginEndRoot", "BM_SpanBeginEndRootNoStats", "BM_SpanWithArgs",
                           "BM_TwoLibraryCalls", "BM_SpanDisabled", "BM_SpanSampledOut", "BM_SpanSampledOutNoStats",
                           "BM_SpanSampledOutRoot", "BM_SpanSampledOutRootNoStats"}) {
    if (const Figure* f = get(name)) {
      std::printf("%-24s %10.2f %10.2f\n", name, f->cpu_ns, f->ns);
    } else {
      std::printf("%-24s %10s %10s\n", name, "n/a", "n/a");
    }
  }
  const Figure* floor = get("BM_Floor");
  const Figure* span = get("BM_SpanBeginEnd");
  print_ratio("SpanBeginEnd / Floor", span, floor, "SPEC target <= 1.2x");
  print_ratio("SpanBeginEndNoStats / Floor", get("BM_SpanBeginEndNoStats"), floor,
              "(SHMTRACE_STATS_SITES=0)");
  print_ratio("SpanBeginEndRoot / Floor", get("BM_SpanBeginEndRoot"), floor, "(a new trace per span)");
  for (const auto& [with, without] : {std::pair<const char*, const char*>{"BM_SpanBeginEnd", "BM_SpanBeginEndNoStats"},
                                      {"BM_SpanBeginEndRoot", "BM_SpanBeginEndRootNoStats"},
                                      {"BM_SpanSampledOut", "BM_SpanSampledOutNoStats"},
                                      {"BM_SpanSampledOutRoot", "BM_SpanSampledOutRootNoStats"}}) {
    const Figure* a = get(with);
    const Figure* b = get(without);
    if (a != nullptr && b != nullptr) {
      std::printf("statistics cost %-22s %+6.2f ns cpu (%.2f with, %.2f without)%s\n", with, a->cpu_ns - b->cpu_ns,
                  a->cpu_ns, b->cpu_ns,
                  std::string_view(with).find("Sampled") == std::string_view::npos ? "  (P13 budget <= 3 ns)" : "");
    }
  }
  print_ratio("SpanWithArgs / Floor", get("BM_SpanWithArgs"), floor, "(information: 4 records per span)");
  print_ratio("SpanDisabled / TwoLibraryCalls", get("BM_SpanDisabled"), get("BM_TwoLibraryCalls"),
              "(the no-op path over the bare cost of two calls into the library)");
  print_ratio("MutexQueue / SpanBeginEnd", get("BM_MutexQueue"), span, "(how much cheaper than the old design)");
  if (span != nullptr && floor != nullptr) {
    std::printf("verdict SpanBeginEnd within 1.2x of the floor: %s\n",
                span->cpu_ns <= 1.2 * floor->cpu_ns ? "PASS" : "FAIL");
  }
  for (const char* name : {"BM_SpanDisabled", "BM_SpanSampledOut", "BM_SpanSampledOutRoot"}) {
    if (const Figure* f = get(name)) {
      std::printf("absolute %-22s %6.2f ns cpu, %6.2f ns real  (target <= 2 ns: %s)\n", name, f->cpu_ns, f->ns,
                  f->cpu_ns <= 2.0 ? "PASS" : "FAIL");
    }
  }
  const std::uint64_t dropped = after.dropped - before.dropped;
  const std::uint64_t overflowed = after.overflowed - before.overflowed;
  std::printf("rings during the measured runs: %" PRIu64 " records written, %" PRIu64 " dropped, %" PRIu64
              " overflowed; null drain: %" PRIu64 " polls, max lag %" PRIu64 " of %u records\n",
              after.written - before.written, dropped, overflowed, drain.rounds(), drain.max_lag(), drain.capacity());
  if (!drain.error().empty()) std::printf("null drain error: %s\n", drain.error().c_str());
  std::printf("clock stopped to wait for the drain: %" PRIu64 " time(s), %" PRIu64 " timed out\n",
              shmtrace::bench::g_room_stats.pauses, shmtrace::bench::g_room_stats.timeouts);
  const bool valid =
      dropped == 0 && overflowed == 0 && drain.error().empty() && shmtrace::bench::g_room_stats.timeouts == 0;
  std::printf("drops during measured runs: %s\n",
              valid ? "none (figures VALID)" : "YES (figures INVALID: the slow path was measured)");
  std::fflush(stdout);
  shmtrace::bench::unlink_own_segment();
  return valid && children_ok && reporter.errors().empty() ? 0 : 1;
}
