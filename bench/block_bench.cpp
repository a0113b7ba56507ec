// The `block` full-ring policy (SPEC P4) end to end with the drain: records
// per second from a producer process that writes as fast as it can, through
// its ring, into SQLite, none lost; beside the same drain under the default
// `drop` policy (the drain's capacity on this workload) and beside the
// producer with nothing but a null consumer (how fast it would go alone).
//
// Each iteration is real and multi-process: this program starts itself again
// as a producer (`block_bench --producer <spans>`: spans nested two deep over
// eight interned names through the C API, two records each, as drain_bench's
// producer writes them; default ring of 16384 records and overflow area),
// finds the child's segment, claims it as its one consumer and runs the
// drain's own code on it in this process: SegmentConsumer::collect (which
// also publishes the heartbeat the blocked producer waits on) + Store::write
// into a fresh temporary database + release, until the child is gone and a
// collect finds nothing, then its fate. An iteration is timed from the spawn
// to the last commit. Figures are records stored per second (a span is two),
// per wall second and per CPU second of the drain (this thread).
//
//   BM_BlockEndToEnd   SHMTRACE_POLICY=block: every record stored; any drop
//                      or failed child marks the run INVALID
//   BM_DropEndToEnd    baseline: SHMTRACE_POLICY=drop, same drain, a producer
//                      that outruns it for about as long: the drain at full
//                      speed on full rings, its capacity on this workload;
//                      the drops show how far the producer outruns it
//   BM_ProducerAlone   the producer's own rate: SHMTRACE_POLICY=block with a
//                      null consumer (tails moved to heads, nothing read), so
//                      every record is really written and none dropped (with
//                      drop and no consumer at all, nearly every record
//                      would take the drop path instead)
//
// Counters: produced (the rings' written + overflowed + dropped), stored,
// dropped, blocked% (the rings' blocked_ns over the run), batch (records per
// collect), idle (collects that found nothing), drain_cpu_rate,
// producer_cpu_rate (produced per CPU second of the child, from wait4).
// Every run checks stored == written + overflowed.
//
// The summary prints block / drop (how close lossless tracing gets to the
// drain's capacity) and producer alone / block (how much block slows the
// producer down). Exit status 1 when a figure is invalid.
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <expected>
#include <filesystem>
#include <set>
#include <thread>

#include "bench_support.hpp"
#include "discovery/process_watch.hpp"
#include "store/segment_consumer.hpp"
#include "store/store.hpp"

extern char** environ;

namespace {

namespace reader = shmtrace::reader;
namespace drain = shmtrace::drain;
namespace abi = shmtrace::abi;
using shmtrace::bench::rate;
using Clock = std::chrono::steady_clock;

constexpr char kProducerFlag[] = "--producer";
// Spans per iteration (two records each). Block: ~1-2 s at the drain's
// speed on the 2-core VM. Drop: the producer must keep its ring full for
// about as long; a dropped record costs it ~26 ns of CPU (the slow path every
// time), a written one ~20. Alone: long enough that the process start
// (~5 ms) hardly counts.
constexpr std::uint64_t kBlockSpans = 400'000;
constexpr std::uint64_t kDropSpans = 10'000'000;
constexpr std::uint64_t kAloneSpans = 10'000'000;
constexpr std::uint32_t kBlockTimeoutMs = 30'000;
// The drain service's batch ceiling (kMaxBatchRecords), its wait when a cycle
// moved nothing (DrainOptions::idle_wait).
constexpr std::size_t kMaxPerCollect = 32768;
constexpr auto kIdleWait = std::chrono::milliseconds(2);
constexpr auto kFindDeadline = std::chrono::seconds(10);
constexpr auto kIterationDeadline = std::chrono::seconds(120);

std::string g_dir;  // temporary databases

// ---------------------------------------------------------------------------
// Child mode: the producer.
// ---------------------------------------------------------------------------
int producer_main(std::uint64_t spans) {
  if (shmtrace_enabled() == 0) {
    std::fprintf(stderr, "block_bench --producer: the shmtrace runtime is off; nothing to produce\n");
    return 2;
  }
  shmtrace_name_t group = shmtrace_intern("bench");
  shmtrace_name_t names[8];
  const char* texts[8] = {"orders::load",       "orders::validate", "billing::charge", "billing::refund",
                          "storage::write_row", "storage::read_row", "net::send",       "net::receive"};
  for (int i = 0; i < 8; ++i) names[i] = shmtrace_intern(texts[i]);
  for (std::uint64_t done = 0; done < spans; done += 2) {
    // An outer span and an inner one: two spans, four records.
    shmtrace_span_t outer = shmtrace_span_begin_group(group, names[done % 8]);
    shmtrace_span_t inner = shmtrace_span_begin_group(group, names[(done + 3) % 8]);
    shmtrace_span_end(inner);
    shmtrace_span_end(outer);
  }
  return 0;
}

// ---------------------------------------------------------------------------
// The producer process, seen from here.
// ---------------------------------------------------------------------------
void remove_segments_of(pid_t pid);

class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { (void)finish(); }

  // /proc/self/exe --producer <spans>, its SHMTRACE_* settings ours only.
  // posix_spawn, not fork: glibc's posix_spawn runs no pthread_atfork
  // handler, so our runtime creates no segment for a child about to exec.
  std::expected<void, std::string> start(const char* policy, std::uint64_t spans) {
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      if (entry.starts_with("SHMTRACE_") || entry.starts_with("TRACEPARENT=")) continue;
      env_storage.emplace_back(entry);
    }
    env_storage.push_back(std::string("SHMTRACE_POLICY=") + policy);
    env_storage.push_back("SHMTRACE_BLOCK_TIMEOUT_MS=" + std::to_string(kBlockTimeoutMs));
    std::vector<char*> envp;
    for (std::string& s : env_storage) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string arg0 = "block_bench", arg1 = kProducerFlag, arg2 = std::to_string(spans);
    char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
    std::fflush(stdout);
    const int rc = ::posix_spawn(&pid_, "/proc/self/exe", nullptr, nullptr, argv, envp.data());
    if (rc != 0) {
      pid_ = -1;
      return std::unexpected(std::string("posix_spawn: ") + std::strerror(rc));
    }
    return {};
  }

  pid_t pid() const { return pid_; }

  // Whether it has exited; it stays a zombie (not reaped), so its pid names
  // it until finish().
  bool exited() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_;
  }

  // Kills it if it still runs, removes what it left in /dev/shm (while its
  // pid is still its own), reaps it; returns its wait status.
  int finish() {
    if (pid_ <= 0) return status_;
    if (!exited()) ::kill(pid_, SIGKILL);
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
    }
    remove_segments_of(pid_);
    rusage usage{};
    while (::wait4(pid_, &status_, 0, &usage) < 0 && errno == EINTR) {
    }
    cpu_seconds_ = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    pid_ = -1;
    return status_;
  }
  // The reaped child's CPU time, user and system.
  double cpu_seconds() const { return cpu_seconds_; }

 private:
  static double seconds(const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; }
  pid_t pid_ = -1;
  int status_ = -1;
  double cpu_seconds_ = 0;
};

// Our children's segments only (ppid checked), error chunks and spill file too.
void remove_segments_of(pid_t pid) {
  auto listed = reader::list_segments(static_cast<std::uint32_t>(pid));
  if (!listed) return;
  for (const auto& l : *listed) {
    auto s = reader::Segment::attach(l.name, reader::Access::kReadOnly);
    if (!s || s->header().ppid != static_cast<std::uint32_t>(::getpid())) continue;
    if (auto r = s->unlink(); !r) std::fprintf(stderr, "block_bench: %s\n", r.error().message.c_str());
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + ::strsignal(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// The child's segment, attached as its one consumer. A stray shmtrace-drain
// may have claimed it first: that is an error (it would take records from us).
std::expected<reader::Segment, std::string> attach_child(const Child& child, abi::FullPolicy policy) {
  const auto deadline = Clock::now() + kFindDeadline;
  const std::uint64_t start_ticks = drain::process_start_ticks(static_cast<std::uint32_t>(child.pid()));
  std::string last_error = "no segment appeared";
  for (;;) {
    if (auto listed = reader::list_segments(static_cast<std::uint32_t>(child.pid()))) {
      for (const auto& l : *listed) {
        auto s = reader::Segment::attach(l.name, reader::Access::kConsume);
        if (!s) {
          last_error = s.error().message;  // header not yet published: retried
          continue;
        }
        const abi::SegmentHeader& h = s->header();
        if (h.ppid != static_cast<std::uint32_t>(::getpid()) || h.process_start_ticks != start_ticks) continue;
        if (h.policy != static_cast<std::uint32_t>(policy)) {
          return std::unexpected(l.name + ": the child runs another full-ring policy than asked");
        }
        if (!s->claim_consumer()) {
          return std::unexpected(l.name + " is consumed by another process (pid " + std::to_string(s->consumer_pid()) +
                                 ", a shmtrace-drain?): stop it and run again");
        }
        return std::move(*s);
      }
    }
    if (child.exited()) return std::unexpected("the producer exited before its segment could be attached");
    if (Clock::now() > deadline) return std::unexpected("producer's segment not found: " + last_error);
    const timespec pause{0, 100'000};
    ::nanosleep(&pause, nullptr);
  }
}

// ---------------------------------------------------------------------------
// One iteration.
// ---------------------------------------------------------------------------
struct Iteration {
  double seconds = 0;           // spawn to the last commit
  double cpu_seconds = 0;       // this thread's (the drain's) CPU time meanwhile
  double producer_cpu_seconds = 0;
  std::uint64_t stored = 0;     // records the consumer took (collect's count)
  std::uint64_t written = 0;    // the rings' counters at the end, summed
  std::uint64_t overflowed = 0;
  std::uint64_t dropped = 0;
  std::uint64_t blocked_ns = 0;
  std::uint64_t collects = 0;   // collects that found records
  std::uint64_t small = 0;      // ... fewer than 1024 of them
  std::uint64_t idle_waits = 0;
  std::uint64_t max_lag = 0;    // null consumer: most records it found waiting
};

double thread_cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

void add_counters(Iteration& it, const reader::Segment& segment) {
  for (std::uint32_t r = 0; r < segment.ring_count(); ++r) {
    const auto info = segment.ring_info(r);
    if (!info) continue;
    it.written += info->written;
    it.overflowed += info->overflowed;
    it.dropped += info->dropped;
    it.blocked_ns += info->blocked_ns;
  }
  it.dropped += segment.no_ring_dropped();
}

// Checks the child's end and the books: what the consumer took must be
// exactly what the producer wrote into the rings and the overflow area.
std::expected<void, std::string> check(const Iteration& it, int status) {
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::unexpected("producer: " + describe_status(status));
  if (it.stored != it.written + it.overflowed) {
    return std::unexpected("stored " + std::to_string(it.stored) + " records, the rings say " +
                           std::to_string(it.written) + " written + " + std::to_string(it.overflowed) + " overflowed");
  }
  return {};
}

// The drain's cycle on one segment (DrainService::cycle, one consumer).
std::expected<Iteration, std::string> drain_iteration(abi::FullPolicy policy, std::uint64_t spans,
                                                      drain::Store& store) {
  Iteration it;
  Child child;
  const auto start = Clock::now();
  const double cpu_start = thread_cpu_seconds();
  if (auto ok = child.start(policy == abi::FullPolicy::kBlock ? "block" : "drop", spans); !ok) {
    return std::unexpected(ok.error());
  }
  auto segment = attach_child(child, policy);
  if (!segment) return std::unexpected(segment.error());
  drain::SegmentConsumer consumer(std::move(*segment), std::nullopt, nullptr);
  for (;;) {
    // Decided before reading, as the drain does: nothing is written after.
    const bool gone = child.exited() && consumer.image_gone();
    drain::Batch batch;
    auto got = consumer.collect(batch, kMaxPerCollect);
    if (!got) return std::unexpected(consumer.name() + ": " + got.error().message);
    if (gone && got->records + got->errors == 0) {
      if (auto ok = consumer.collect_fate(batch); !ok) return std::unexpected(ok.error().message);
      if (auto ok = store.write(batch); !ok) return std::unexpected(ok.error().message);
      break;
    }
    if (!batch.empty() && batch.row_count() > 0) {
      if (auto ok = store.write(batch); !ok) return std::unexpected(ok.error().message);
    }
    if (auto ok = consumer.release(); !ok) return std::unexpected(ok.error().message);
    it.stored += got->records;
    if (got->records > 0) {
      ++it.collects;
      if (got->records < 1024) ++it.small;
    } else {
      ++it.idle_waits;
      std::this_thread::sleep_for(kIdleWait);
    }
    if (Clock::now() - start > kIterationDeadline) return std::unexpected("iteration past its deadline");
  }
  it.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  it.cpu_seconds = thread_cpu_seconds() - cpu_start;
  add_counters(it, consumer.segment());
  if (auto ok = consumer.unlink(); !ok) std::fprintf(stderr, "block_bench: %s\n", ok.error().message.c_str());
  if (auto ok = check(it, child.finish()); !ok) return std::unexpected(ok.error());
  it.producer_cpu_seconds = child.cpu_seconds();
  return it;
}

// The producer with a consumer that only moves each tail to its head (and
// empties the overflow area): no reading, no decoding, no store. It spins
// 2 µs between rounds: a sleep lasts 60 µs or more on the VM (the ring holds
// ~0.3 ms of this producer's records), while looking at the head without
// pause would take its cache line away from the producer at every record
// (reader_bench).
std::expected<Iteration, std::string> null_drain_iteration(std::uint64_t spans) {
  Iteration it;
  Child child;
  const auto start = Clock::now();
  if (auto ok = child.start("block", spans); !ok) return std::unexpected(ok.error());
  auto segment = attach_child(child, abi::FullPolicy::kBlock);
  if (!segment) return std::unexpected(segment.error());
  std::uint64_t max_lag = 0;
  for (;;) {
    const bool gone = child.exited();
    segment->heartbeat();
    std::uint64_t moved = 0, lag = 0;
    for (std::uint32_t r = 0; r < segment->ring_count(); ++r) {
      const auto info = segment->ring_info(r);
      if (!info) return std::unexpected(info.error().message);
      if (info->state == abi::RingState::kFree || info->head == info->tail) continue;
      lag = std::max(lag, info->head - info->tail);
      if (auto c = segment->commit_ring(r, info->head); !c) return std::unexpected(c.error().message);
      moved += info->head - info->tail;
    }
    auto overflow = segment->read_overflow(4096);
    if (!overflow) return std::unexpected(overflow.error().message);
    if (!overflow->entries.empty()) {
      moved += overflow->entries.size();
      if (auto c = segment->commit_overflow(*overflow); !c) return std::unexpected(c.error().message);
    }
    it.stored += moved;
    if (gone && moved == 0) break;
    if (moved > 0) ++it.collects;
    max_lag = std::max(max_lag, lag);
    const auto resume = Clock::now() + std::chrono::microseconds(2);
    while (Clock::now() < resume) __builtin_ia32_pause();
    if (Clock::now() - start > kIterationDeadline) return std::unexpected("iteration past its deadline");
  }
  it.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  it.max_lag = max_lag;
  add_counters(it, *segment);
  if (auto ok = segment->unlink(); !ok) std::fprintf(stderr, "block_bench: %s\n", ok.error().message.c_str());
  if (auto ok = check(it, child.finish()); !ok) return std::unexpected(ok.error());
  it.producer_cpu_seconds = child.cpu_seconds();
  return it;
}

// ---------------------------------------------------------------------------
// Benchmarks: one iteration per repetition, manual time = the iteration's.
// ---------------------------------------------------------------------------
void report(benchmark::State& state, const std::vector<Iteration>& runs) {
  Iteration sum;
  for (const Iteration& it : runs) {
    sum.stored += it.stored;
    sum.written += it.written;
    sum.overflowed += it.overflowed;
    sum.dropped += it.dropped;
    sum.blocked_ns += it.blocked_ns;
    sum.seconds += it.seconds;
    sum.cpu_seconds += it.cpu_seconds;
    sum.producer_cpu_seconds += it.producer_cpu_seconds;
    sum.max_lag = std::max(sum.max_lag, it.max_lag);
    sum.collects += it.collects;
    sum.idle_waits += it.idle_waits;
    sum.small += it.small;
  }
  using benchmark::Counter;
  state.SetItemsProcessed(static_cast<std::int64_t>(sum.stored));
  state.counters["produced"] =
      Counter(static_cast<double>(sum.written + sum.overflowed + sum.dropped), Counter::kAvgIterations);
  state.counters["stored"] = Counter(static_cast<double>(sum.stored), Counter::kAvgIterations);
  state.counters["dropped"] = Counter(static_cast<double>(sum.dropped), Counter::kAvgIterations);
  state.counters["blocked%"] = sum.seconds > 0 ? 100.0 * static_cast<double>(sum.blocked_ns) / 1e9 / sum.seconds : 0;
  state.counters["batch"] = sum.collects > 0 ? static_cast<double>(sum.stored) / static_cast<double>(sum.collects) : 0;
  state.counters["idle"] = Counter(static_cast<double>(sum.idle_waits), Counter::kAvgIterations);
  state.counters["small"] = Counter(static_cast<double>(sum.small), Counter::kAvgIterations);
  if (sum.cpu_seconds > 0) state.counters["drain_cpu_rate"] = static_cast<double>(sum.stored) / sum.cpu_seconds;
  if (sum.producer_cpu_seconds > 0) {
    state.counters["producer_cpu_rate"] =
        static_cast<double>(sum.written + sum.overflowed + sum.dropped) / sum.producer_cpu_seconds;
  }
  if (sum.max_lag > 0) state.counters["max_lag"] = static_cast<double>(sum.max_lag);
}

// Every failure, kept here as well as reported: with aggregates only, Google
// Benchmark does not show a failed repetition when others succeeded. And
// once a repetition failed the later ones are not run: Google Benchmark 1.7.1
// crashes computing the aggregates when the first repetition failed and
// later ones did not (google/benchmark#1406).
std::vector<std::string> g_problems;
std::set<std::string> g_failed;

void fail(benchmark::State& state, const char* benchmark, const std::string& what) {
  g_problems.push_back(std::string(benchmark) + ": " + what);
  g_failed.insert(benchmark);
  state.SkipWithError(what.c_str());
}

bool failed_before(benchmark::State& state, const char* benchmark) {
  if (g_failed.count(benchmark) == 0) return false;
  state.SkipWithError("not run: an earlier repetition failed");
  return true;
}

// A temporary database, removed with its WAL, lock and partitions.
class TempDatabase {
 public:
  explicit TempDatabase(const std::string& name) : path_(g_dir + "/" + name + ".db") { remove(); }
  TempDatabase(const TempDatabase&) = delete;
  TempDatabase& operator=(const TempDatabase&) = delete;
  ~TempDatabase() { remove(); }
  const std::string& path() const { return path_; }

 private:
  void remove() const {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(path_ + suffix, ignored);
    std::filesystem::remove_all(path_ + ".parts", ignored);
  }
  std::string path_;
};

void run_end_to_end(benchmark::State& state, const char* benchmark, abi::FullPolicy policy, std::uint64_t spans) {
  if (failed_before(state, benchmark)) return;
  const TempDatabase database(policy == abi::FullPolicy::kBlock ? "block" : "drop");
  std::vector<Iteration> runs;
  {
    auto store = drain::Store::open(database.path());
    if (!store) return fail(state, benchmark, store.error().message);
    for (auto _ : state) {
      auto it = drain_iteration(policy, spans, *store);
      if (!it) return fail(state, benchmark, it.error());
      if (policy == abi::FullPolicy::kBlock && it->dropped > 0) {
        return fail(state, benchmark, std::to_string(it->dropped) + " records dropped under the block policy");
      }
      state.SetIterationTime(it->seconds);
      runs.push_back(*it);
    }
  }  // the store closed before its files go
  report(state, runs);
}

void BM_BlockEndToEnd(benchmark::State& state) {
  run_end_to_end(state, "BM_BlockEndToEnd", abi::FullPolicy::kBlock, kBlockSpans);
}
void BM_DropEndToEnd(benchmark::State& state) {
  run_end_to_end(state, "BM_DropEndToEnd", abi::FullPolicy::kDrop, kDropSpans);
}

void BM_ProducerAlone(benchmark::State& state) {
  constexpr const char* kName = "BM_ProducerAlone";
  if (failed_before(state, kName)) return;
  std::vector<Iteration> runs;
  for (auto _ : state) {
    auto it = null_drain_iteration(kAloneSpans);
    if (!it) return fail(state, kName, it.error());
    if (it->dropped > 0) {
      return fail(state, kName, std::to_string(it->dropped) + " records dropped with a null consumer");
    }
    state.SetIterationTime(it->seconds);
    runs.push_back(*it);
  }
  report(state, runs);
}

void remove_dir() {
  if (g_dir.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(g_dir, ignored);
}

double counter(const shmtrace::bench::Figure* f, const char* name) {
  if (f == nullptr) return 0;
  const auto c = f->counters.find(name);
  return c == f->counters.end() ? 0 : c->second;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], kProducerFlag) == 0) {
    char* end = nullptr;
    const unsigned long long spans = std::strtoull(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0') {
      std::fprintf(stderr, "block_bench: %s wants a number of spans, not '%s'\n", kProducerFlag, argv[2]);
      return 2;
    }
    return producer_main(spans);
  }
  // This process's own runtime segment (the bench links libshmtrace.so).
  std::atexit(shmtrace::bench::unlink_own_segment);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto full = shmtrace::bench::with_defaults(argv[0], args);
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;

  g_dir = std::filesystem::temp_directory_path() / ("shmtrace-block-bench-" + std::to_string(::getpid()));
  std::error_code dir_error;
  std::filesystem::create_directories(g_dir, dir_error);
  if (dir_error) {
    std::fprintf(stderr, "block_bench: cannot create %s: %s\n", g_dir.c_str(), dir_error.message().c_str());
    return 1;
  }
  std::atexit(remove_dir);

  benchmark::RegisterBenchmark("BM_ProducerAlone", BM_ProducerAlone)->Iterations(1)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DropEndToEnd", BM_DropEndToEnd)->Iterations(1)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_BlockEndToEnd", BM_BlockEndToEnd)->Iterations(1)->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  shmtrace::bench::CollectingReporter reporter;
  const auto started = Clock::now();
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();

  const auto* block = reporter.find("BM_BlockEndToEnd");
  const auto* drop = reporter.find("BM_DropEndToEnd");
  const auto* alone = reporter.find("BM_ProducerAlone");
  const double block_cpu = counter(block, "drain_cpu_rate"), drop_cpu = counter(drop, "drain_cpu_rate");
  std::printf("\n==== block_bench summary: records stored per second (a span is two), median ====\n");
  std::printf("%-18s %26s %26s\n", "", "per second (end to end)", "per drain CPU second");
  std::printf("%-18s %22.3f M/s %22s       %.3f M records per producer CPU second\n", "BM_ProducerAlone",
              rate(alone) / 1e6, "", counter(alone, "producer_cpu_rate") / 1e6);
  std::printf("%-18s %22.3f M/s %22.3f M/s   %.0f of %.0f records dropped\n", "BM_DropEndToEnd", rate(drop) / 1e6,
              drop_cpu / 1e6, counter(drop, "dropped"), counter(drop, "produced"));
  std::printf("%-18s %22.3f M/s %22.3f M/s   %.0f dropped, producer blocked %.0f%% of its run\n",
              "BM_BlockEndToEnd", rate(block) / 1e6, block_cpu / 1e6, counter(block, "dropped"),
              counter(block, "blocked%"));
  if (rate(block) > 0 && rate(drop) > 0) {
    std::printf("ratio Block / Drop: lossless share of the drain's capacity   %6.3f %26.3f\n",
                rate(block) / rate(drop), drop_cpu > 0 ? block_cpu / drop_cpu : 0.0);
  }
  if (rate(block) > 0 && rate(alone) > 0) {
    std::printf("ratio ProducerAlone / Block: how much block slows the producer %5.1fx\n", rate(alone) / rate(block));
  }
  const double alone_cpu = counter(alone, "producer_cpu_rate");
  if (block_cpu > 0 && alone_cpu > 0) {
    std::printf("ratio producer / drain, each per CPU second of its own        %5.1fx\n", alone_cpu / block_cpu);
  }
  std::printf("(under drop the producer never sleeps: on a loaded machine it takes CPU from the drain, so compare\n"
              " per CPU second there; end-to-end ProducerAlone is low whenever the null consumer loses its core)\n");
  // Every SkipWithError goes through fail(), so g_problems has them all.
  const std::vector<std::string>& problems = g_problems.empty() ? reporter.errors() : g_problems;
  std::printf("run time %.1f s; figures %s\n", elapsed, problems.empty() ? "VALID" : "INVALID");
  for (const std::string& p : problems) std::printf("  INVALID: %s\n", p.c_str());
  return problems.empty() ? 0 : 1;
}
