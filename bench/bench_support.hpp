// Shared helpers of the shmtrace benchmark programs (bench/*_bench.cpp).
//
// Every figure is reported as the median of several repetitions, beside its
// baseline from the same binary, and the ratios are printed by a summary at
// the end of main(). The helpers here: default flags (repetitions, aggregates
// only), a console reporter that also keeps the medians for the summary, and
// the removal of this process's own segment at exit (benchmarks must leave no
// /dev/shm/shmtrace.* objects behind).
#ifndef SHMTRACE_BENCH_SUPPORT_HPP
#define SHMTRACE_BENCH_SUPPORT_HPP

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reader/reader.hpp"
#include "shmtrace/shmtrace.h"

namespace shmtrace::bench {

inline constexpr int kDefaultRepetitions = 5;

// argv (program name first) with our defaults added where the caller did
// not choose: five repetitions, aggregates only (mean/median/stddev/cv), so
// each figure is a median, and optionally a shorter minimum time per run. The returned strings live as long as the returned vector.
struct Args {
  std::vector<std::string> storage;
  std::vector<char*> argv;
  int argc() const { return static_cast<int>(argv.size()) - 1; }
};

inline bool has_flag(const std::vector<std::string>& args, std::string_view flag) {
  for (const std::string& a : args) {
    if (a.rfind(flag, 0) == 0) return true;
  }
  return false;
}

inline Args with_defaults(const std::string& program, const std::vector<std::string>& in,
                          const char* min_time = nullptr) {
  Args out;
  out.storage.push_back(program);
  out.storage.insert(out.storage.end(), in.begin(), in.end());
  if (min_time != nullptr && !has_flag(in, "--benchmark_min_time")) {
    out.storage.push_back(std::string("--benchmark_min_time=") + min_time);
  }
  if (!has_flag(in, "--benchmark_repetitions")) {
    out.storage.push_back("--benchmark_repetitions=" + std::to_string(kDefaultRepetitions));
  }
  if (!has_flag(in, "--benchmark_report_aggregates_only") && !has_flag(in, "--benchmark_display_aggregates_only")) {
    out.storage.push_back("--benchmark_report_aggregates_only=true");
  }
  for (std::string& s : out.storage) out.argv.push_back(s.data());
  out.argv.push_back(nullptr);
  return out;
}

// One benchmark's summary figures: the median real time per iteration (ns)
// and the median of each user counter (items_per_second included), and the
// number of repetitions that produced them.
struct Figure {
  double ns = 0;      // real time
  double cpu_ns = 0;  // the benchmark thread's CPU time
  std::map<std::string, double> counters;
  long repetitions = 0;
  std::string aggregate;  // "median", or "single" when run without repetitions
};

// The console output as usual, plus the medians kept by function name.
// No colour: the output is meant to be kept in logs and READMEs.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  CollectingReporter() : benchmark::ConsoleReporter(OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    benchmark::ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) {
        errors_.push_back(run.benchmark_name() + ": " + run.error_message);
        continue;
      }
      const std::string name = run.run_name.function_name;
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      if (!median && !single) continue;
      Figure f;
      f.ns = to_ns(run.GetAdjustedRealTime(), run.time_unit);
      f.cpu_ns = to_ns(run.GetAdjustedCPUTime(), run.time_unit);
      for (const auto& [key, counter] : run.counters) f.counters[key] = counter.value;
      f.repetitions = static_cast<long>(run.repetitions);
      f.aggregate = median ? "median" : "single";
      figures_[name] = f;
    }
  }

  const Figure* find(const std::string& name) const {
    const auto it = figures_.find(name);
    return it == figures_.end() ? nullptr : &it->second;
  }
  const std::map<std::string, Figure>& figures() const { return figures_; }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  static double to_ns(double value, benchmark::TimeUnit unit) {
    switch (unit) {
      case benchmark::kNanosecond:
        return value;
      case benchmark::kMicrosecond:
        return value * 1e3;
      case benchmark::kMillisecond:
        return value * 1e6;
      case benchmark::kSecond:
        return value * 1e9;
    }
    return value;
  }
  std::map<std::string, Figure> figures_;
  std::vector<std::string> errors_;
};

// A figure's items per second (its median), 0 when it did not run.
inline double rate(const Figure* f) {
  if (f == nullptr) return 0;
  const auto it = f->counters.find("items_per_second");
  return it == f->counters.end() ? 0 : it->second;
}

// The calling thread's ring in `segment` (after it wrote a record), or
// kNoRing.
inline std::uint32_t ring_of_tid(const reader::Segment& segment, std::uint32_t tid) {
  for (std::uint32_t r = 0; r < segment.ring_count(); ++r) {
    const auto info = segment.ring_info(r);
    if (info && info->state == abi::RingState::kClaimed && info->tid == tid) return r;
  }
  return abi::kNoRing;
}

// Sums of every ring's loss counters (plus the no-ring ones are not visible
// through RingInfo; rings cover every thread here).
struct LossTotals {
  std::uint64_t dropped = 0;
  std::uint64_t overflowed = 0;
  std::uint64_t written = 0;
};
inline LossTotals loss_totals(const reader::Segment& segment) {
  LossTotals t;
  for (std::uint32_t r = 0; r < segment.ring_count(); ++r) {
    const auto info = segment.ring_info(r);
    if (!info) continue;
    t.dropped += info->dropped;
    t.overflowed += info->overflowed;
    t.written += info->written;
  }
  return t;
}

// A read-only mapping of a segment, to watch one ring's head and tail from
// inside a benchmark loop at the cost of two loads.
class RingWatch {
 public:
  RingWatch() = default;
  RingWatch(const RingWatch&) = delete;
  RingWatch& operator=(const RingWatch&) = delete;
  ~RingWatch() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  bool open(const std::string& name, std::uint32_t ring) {
    const int fd = ::shm_open(("/" + name).c_str(), O_RDONLY | O_NOFOLLOW, 0);
    if (fd < 0) return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(abi::SegmentHeader))) {
      ::close(fd);
      return false;
    }
    size_ = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return false;
    base_ = p;
    const auto* header = static_cast<const abi::SegmentHeader*>(base_);
    if (ring >= header->max_rings || abi::ring_offset(*header, ring) + sizeof(abi::RingControl) > size_) return false;
    control_ = reinterpret_cast<const abi::RingControl*>(static_cast<const std::byte*>(base_) +
                                                         abi::ring_offset(*header, ring));
    capacity_ = header->ring_capacity;
    return true;
  }
  const std::uint64_t* head() const { return &control_->head; }
  const abi::Record* records() const {
    return reinterpret_cast<const abi::Record*>(reinterpret_cast<const std::byte*>(control_) +
                                                abi::ring_records_offset());
  }
  const std::uint64_t* tail() const { return &control_->tail; }
  std::uint64_t capacity() const { return capacity_; }

 private:
  void* base_ = nullptr;
  std::size_t size_ = 0;
  const abi::RingControl* control_ = nullptr;
  std::uint64_t capacity_ = 0;
};

// Keeps a measured loop off the full-ring path when the drain thread lost
// its core for a while (the dev VM has two, shared with everything else):
// every kRoomCheckEvery iterations the loop looks at its ring, and when more
// than half of it is unconsumed it stops the clock and waits for the drain.
// The check is the same in the floor and in the real cases.
inline constexpr std::uint64_t kRoomCheckEvery = 1024;

struct RoomStats {
  std::uint64_t pauses = 0;    // times a loop stopped the clock for the drain
  std::uint64_t timeouts = 0;  // waits given up after 2 s (drain stuck)
};
inline RoomStats g_room_stats;

[[gnu::noinline, gnu::cold]] inline void wait_for_room(benchmark::State& state, const std::uint64_t* head,
                                                       const std::uint64_t* tail, std::uint64_t capacity) {
  state.PauseTiming();
  ++g_room_stats.pauses;
  const timespec pause{0, 20'000};
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t h = abi::atomic_load(*head, std::memory_order_relaxed);
    const std::uint64_t t = abi::atomic_load(*tail, std::memory_order_acquire);
    if (h - t <= capacity / 8) {
      state.ResumeTiming();
      return;
    }
    ::nanosleep(&pause, nullptr);
  }
  ++g_room_stats.timeouts;
  state.ResumeTiming();
}

inline void keep_room(benchmark::State& state, std::uint64_t& counter, const std::uint64_t* head,
                      const std::uint64_t* tail, std::uint64_t capacity) {
  if (__builtin_expect((++counter & (kRoomCheckEvery - 1)) == 0, 0)) {
    const std::uint64_t h = abi::atomic_load(*head, std::memory_order_relaxed);
    const std::uint64_t t = abi::atomic_load(*tail, std::memory_order_relaxed);
    if (h - t > capacity / 2) wait_for_room(state, head, tail, capacity);
  }
}

// Unlinks this process's own segment (its error chunks and spill file too).
// Safe to call more than once and when the runtime is off.
inline void unlink_own_segment() {
  const char* name = shmtrace_segment_name();
  if (name == nullptr || name[0] == '\0') return;
  auto segment = reader::Segment::attach(name, reader::Access::kReadOnly);
  if (!segment) {
    // Already gone (a second call), or not attachable: nothing to say then.
    return;
  }
  if (auto r = segment->unlink(); !r) std::fprintf(stderr, "bench: %s\n", r.error().message.c_str());
}

}  // namespace shmtrace::bench

#endif  // SHMTRACE_BENCH_SUPPORT_HPP
