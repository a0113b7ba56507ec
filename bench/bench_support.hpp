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

// argv (program name first) with our defaults added where the caller did not choose: five
// repetitions, aggregates only (mean/median/stddev/cv), so each figure is a
// median. The returned strings live as long as the returned vector.
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

inline Args with_defaults(const std::string& program, const std::vector<std::string>& in) {
  Args out;
  out.storage.push_back(program);
  out.storage.insert(out.storage.end(), in.begin(), in.end());
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
  double ns = 0;
  std::map<std::string, double> counters;
  long repetitions = 0;
  std::string aggregate;  // "median", or "single" when run without repetitions
};

// The console output as usual, plus the medians kept by function name.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
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
