// -finstrument-functions cost (SPEC §7, issue 3): one call of a trivial
// function, uninstrumented (plain_leaf), and instrumented (instrumented_leaf)
// with libshmtrace.so's hooks; the same binary built with empty hooks
// (instrument_bench_empty_hooks, started by this one) gives the cost of the
// hook calls themselves. Target: the traced call pair costs at most 25 ns
// over the uninstrumented call.
//
// Also the process start overhead of the preload: fork + exec + exit of a
// small program with and without LD_PRELOAD=libshmtrace.so.
//
// The ring must not fill: every 2048 calls (4096 records, a quarter of the
// default ring) the benchmark hands the ring back with the clock stopped.
#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reader/reader.hpp"
#include "shmtrace/shmtrace.h"

extern "C" char** environ;
int instrumented_leaf(int x);
int plain_leaf(int x);

namespace {

#ifdef SHMTRACE_EMPTY_HOOKS
constexpr bool kRealHooks = false;
#else
constexpr bool kRealHooks = true;
#endif

std::optional<shmtrace::reader::Segment> g_segment;
std::uint64_t g_dropped_before = 0;

// Consumes everything written so far (clock stopped by the caller).
void hand_back_ring() {
  if (!g_segment) return;
  for (std::uint32_t r = 0; r < g_segment->ring_count(); ++r) {
    auto info = g_segment->ring_info(r);
    if (info && info->head != info->tail) (void)g_segment->commit_ring(r, info->head);
  }
}

std::uint64_t dropped_now() {
  std::uint64_t d = 0;
  if (!g_segment) return d;
  for (std::uint32_t r = 0; r < g_segment->ring_count(); ++r) {
    if (auto info = g_segment->ring_info(r)) d += info->dropped + info->overflowed;
  }
  return d;
}

void BM_PlainCall(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = plain_leaf(x));
}

// Nested under an open span, as every call of an instrumented program is
// (main is instrumented too); a call at depth 0 would start a new trace each
// time.
void BM_InstrumentedCall(benchmark::State& state) {
#ifndef SHMTRACE_EMPTY_HOOKS
  const shmtrace_span_t root = shmtrace_span_begin(shmtrace_intern("bench"));
#endif
  int x = 0;
  std::uint64_t n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x = instrumented_leaf(x));
    if (kRealHooks && (++n & 2047) == 0) {
      state.PauseTiming();
      hand_back_ring();
      state.ResumeTiming();
    }
  }
#ifndef SHMTRACE_EMPTY_HOOKS
  shmtrace_span_end(root);
#endif
}

// This process's environment without LD_PRELOAD, and with it set to the
// runtime next to the benchmarks when `preload`.
class Environment {
 public:
  Environment(const std::string& bench_dir, bool preload) {
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0) storage_.emplace_back(*e);
    }
    if (preload) storage_.push_back("LD_PRELOAD=" + bench_dir + "/../runtime/libshmtrace.so");
    for (auto& s : storage_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  char* const* get() const { return pointers_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> pointers_;
};

// fork + exec + wait of `argv`, with or without the preload.
void BM_ProcessStart(benchmark::State& state, bool preload) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : std::string();
  dir = dir.substr(0, dir.rfind('/'));
  const std::string program = dir + "/../tests/st_plain";
  const Environment env(dir, preload);
  char* const* envp = env.get();
  std::string a0 = program, a1 = "hello", a2 = "0";
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  posix_spawn_file_actions_t quiet;
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  for (auto _ : state) {
    pid_t pid = 0;
    if (::posix_spawn(&pid, program.c_str(), &quiet, nullptr, argv, envp) != 0) {
      state.SkipWithError("cannot start tests/st_plain (build the tests too)");
      break;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (preload) {
      state.PauseTiming();
      if (auto listed = shmtrace::reader::list_segments(static_cast<std::uint32_t>(pid))) {
        for (const auto& l : *listed) {
          if (auto s = shmtrace::reader::Segment::attach(l.name, shmtrace::reader::Access::kReadOnly)) (void)s->unlink();
        }
      }
      state.ResumeTiming();
    }
  }
  posix_spawn_file_actions_destroy(&quiet);
}

// fork + exit + wait in a program that forks (tests/st_forks), with or
// without the preload: what a traced fork costs, beside an untraced one
// (the target: at most 100 us more). Each child of the preloaded run creates its
// own segment (the runtime's atfork handler), which the benchmark removes
// with the clock stopped: the segments whose parent is the forking program.
constexpr int kForksPerRun = 50;
void BM_ForkExit(benchmark::State& state, bool preload) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : std::string();
  dir = dir.substr(0, dir.rfind('/'));
  const std::string program = dir + "/../tests/st_forks";
  const Environment env(dir, preload);
  char* const* envp = env.get();
  std::string a0 = program, a1 = std::to_string(kForksPerRun);
  char* argv[] = {a0.data(), a1.data(), nullptr};
  for (auto _ : state) {
    pid_t pid = 0;
    if (::posix_spawn(&pid, program.c_str(), nullptr, nullptr, argv, envp) != 0) {
      state.SkipWithError("cannot start tests/st_forks (build the tests too)");
      break;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("tests/st_forks failed");
      break;
    }
    if (preload) {
      state.PauseTiming();
      if (auto listed = shmtrace::reader::list_segments()) {
        for (const auto& l : *listed) {
          auto s = shmtrace::reader::Segment::attach(l.name, shmtrace::reader::Access::kReadOnly);
          if (s && (s->header().pid == static_cast<std::uint32_t>(pid) ||
                    s->header().ppid == static_cast<std::uint32_t>(pid))) {
            (void)s->unlink();
          }
        }
      }
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * kForksPerRun);  // forks
}

constexpr const char kChildFlag[] = "--shmtrace_bench_child";

// Runs `program` (the empty-hooks sibling, or this binary again with
// `extra_env` set) and returns its median CPU ns for the call.
double child_ns(const std::string& program, const std::vector<std::string>& extra_env) {
  std::string sibling = program;
  std::string filter = "--benchmark_filter=BM_InstrumentedCall";
  std::string reps = "--benchmark_repetitions=5";
  std::string agg = "--benchmark_report_aggregates_only=true";
  std::string fmt = "--benchmark_format=csv";
  std::string child = kChildFlag;
  char* argv[] = {sibling.data(), filter.data(), reps.data(), agg.data(), fmt.data(), child.data(), nullptr};
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const std::string& v : extra_env) env_storage.push_back(v);
  std::vector<char*> envp;
  for (auto& v : env_storage) envp.push_back(v.data());
  envp.push_back(nullptr);
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, sibling.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  double ns = -1;
  if (rc == 0) {
    FILE* in = ::fdopen(fds[0], "r");
    char line[1024];
    while (std::fgets(line, sizeof line, in) != nullptr) {
      // "BM_InstrumentedCall_median",iterations,real_time,cpu_time,...
      if (std::strstr(line, "_median\"") == nullptr) continue;
      double real = 0, cpu = 0;
      long iterations = 0;
      if (std::sscanf(std::strchr(line, ',') + 1, "%ld,%lf,%lf", &iterations, &real, &cpu) == 3) ns = cpu;
    }
    std::fclose(in);
    ::waitpid(pid, nullptr, 0);
  } else {
    ::close(fds[0]);
  }
  return ns;
}

class Medians : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> cpu_ns;
  std::map<std::string, double> real_ns;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.aggregate_name != "median") continue;
      cpu_ns[r.run_name.function_name + r.run_name.args] = r.GetAdjustedCPUTime();
      real_ns[r.run_name.function_name + r.run_name.args] = r.GetAdjustedRealTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

BENCHMARK(BM_PlainCall);
BENCHMARK(BM_InstrumentedCall);
#ifndef SHMTRACE_EMPTY_HOOKS
BENCHMARK_CAPTURE(BM_ProcessStart, plain, false)->Unit(benchmark::kMicrosecond)->Iterations(200);
BENCHMARK_CAPTURE(BM_ProcessStart, preloaded, true)->Unit(benchmark::kMicrosecond)->Iterations(200);
BENCHMARK_CAPTURE(BM_ForkExit, plain, false)->Unit(benchmark::kMillisecond)->Iterations(20)->UseRealTime();
BENCHMARK_CAPTURE(BM_ForkExit, preloaded, true)->Unit(benchmark::kMillisecond)->Iterations(20)->UseRealTime();
#endif

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool child = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], kChildFlag) == 0) {
      child = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  std::string reps = "--benchmark_repetitions=5", agg = "--benchmark_report_aggregates_only=true";
  bool has_reps = false;
  for (int i = 1; i < argc; ++i) has_reps |= std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0;
  if (!has_reps) {
    args.push_back(reps.data());
    args.push_back(agg.data());
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
#ifndef SHMTRACE_EMPTY_HOOKS
  if (auto s = shmtrace::reader::Segment::attach(shmtrace_segment_name(), shmtrace::reader::Access::kConsume)) {
    g_segment.emplace(std::move(*s));
  }
  g_dropped_before = dropped_now();
#endif
  Medians medians;
  const bool summary = kRealHooks && !child;
  benchmark::RunSpecifiedBenchmarks(summary ? static_cast<benchmark::BenchmarkReporter*>(&medians) : nullptr);
  if (kRealHooks && child && g_segment) (void)g_segment->unlink();
  if (summary) {
    const double plain = medians.cpu_ns["BM_PlainCall"];
    const double traced = medians.cpu_ns["BM_InstrumentedCall"];
    const double empty = child_ns(std::string(argv[0]) + "_empty_hooks", {});
    // Call-site statistics (P13) are on by default; the same binary again
    // with them off.
    const double no_stats = child_ns("/proc/self/exe", {"SHMTRACE_STATS_SITES=0"});
    std::printf("\n==== instrument_bench summary (median of 5, CPU ns per call) ====\n");
    std::printf("uninstrumented call              %8.2f ns\n", plain);
    std::printf("instrumented, empty hooks        %8.2f ns  (sibling binary)\n", empty);
    std::printf("instrumented, shmtrace hooks     %8.2f ns  (with call-site statistics)\n", traced);
    std::printf("instrumented, no statistics      %8.2f ns  (SHMTRACE_STATS_SITES=0, child)\n", no_stats);
    std::printf("statistics cost per call pair    %8.2f ns  (P13 budget <= 3 ns)\n", traced - no_stats);
    std::printf("call pair over uninstrumented    %8.2f ns  (target <= 25 ns: %s)\n", traced - plain,
                traced - plain <= 25.0 ? "PASS" : "FAIL");
    std::printf("call pair over empty hooks       %8.2f ns\n", traced - empty);
    const double p = medians.cpu_ns["BM_ProcessStart/plain"], q = medians.cpu_ns["BM_ProcessStart/preloaded"];
    std::printf("process start: plain %.1f us, preloaded %.1f us, overhead %.1f us (the spawning parent's CPU)\n", p,
                q, q - p);
    // Wall time of a run of kForksPerRun forks (ms), per fork in us.
    const double f = medians.real_ns["BM_ForkExit/plain"] * 1e3 / kForksPerRun;
    const double g = medians.real_ns["BM_ForkExit/preloaded"] * 1e3 / kForksPerRun;
    std::printf("fork + exit + wait: plain %.1f us, preloaded %.1f us, overhead %.1f us (target <= 100 us: %s)\n", f,
                g, g - f, g - f <= 100.0 ? "PASS" : "FAIL");
    const std::uint64_t lost = dropped_now() - g_dropped_before;
    std::printf("records dropped or overflowed during the runs: %llu (%s)\n", static_cast<unsigned long long>(lost),
                lost == 0 ? "figures VALID" : "figures INVALID");
    if (g_segment) (void)g_segment->unlink();
  }
  return 0;
}
