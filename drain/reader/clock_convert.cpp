// ClockConverter: segment ticks to nanoseconds. The TSC is machine-wide, so
// a segment that left ticks_per_second at 0 is served by one calibration per
// reader process.
#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "reader/reader.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define SHMTRACE_READER_HAVE_TSC 1
#else
#define SHMTRACE_READER_HAVE_TSC 0
#endif

namespace shmtrace::reader {
namespace {

std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Ticks per nanosecond of this machine's TSC: a few ~20 ms windows of
// nanosleep against CLOCK_MONOTONIC, median taken against a preempted round.
double calibrate_tsc() {
#if SHMTRACE_READER_HAVE_TSC
  constexpr int kRounds = 3;
  std::array<double, kRounds> rates{};
  for (double& rate : rates) {
    const std::int64_t t0 = monotonic_ns();
    const std::uint64_t c0 = __rdtsc();
    timespec pause{0, 20'000'000};
    while (::nanosleep(&pause, &pause) != 0) {
    }
    const std::uint64_t c1 = __rdtsc();
    const std::int64_t t1 = monotonic_ns();
    rate = t1 > t0 ? static_cast<double>(c1 - c0) / static_cast<double>(t1 - t0) : 0.0;
  }
  std::sort(rates.begin(), rates.end());
  const double median = rates[kRounds / 2];
  return median > 0.0 && std::isfinite(median) ? median : 1.0;
#else
  return 1.0;
#endif
}

double calibrated_ticks_per_ns() {
  static const double rate = calibrate_tsc();  // once per process, thread-safe
  return rate;
}

std::int64_t saturate(double value) {
  constexpr double kMax = 9.2e18;  // just below 2^63
  if (!(value < kMax)) return std::numeric_limits<std::int64_t>::max();
  if (!(value > -kMax)) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(value);
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  }
  return sum;
}

// b - a as a signed count: b may lie before a.
std::int64_t signed_difference(std::uint64_t a, std::uint64_t b) {
  if (b >= a) {
    const std::uint64_t d = b - a;
    return d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
               ? std::numeric_limits<std::int64_t>::max()
               : static_cast<std::int64_t>(d);
  }
  const std::uint64_t d = a - b;
  return d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
             ? std::numeric_limits<std::int64_t>::min()
             : -static_cast<std::int64_t>(d);
}

}  // namespace

ClockConverter::ClockConverter(const abi::SegmentHeader& header)
    : ref_ticks_(header.clock_ref_ticks),
      ref_wall_ns_(header.clock_ref_wall_ns >
                           static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                       ? std::numeric_limits<std::int64_t>::max()
                       : static_cast<std::int64_t>(header.clock_ref_wall_ns)),
      ticks_per_ns_(1.0) {
  if (header.clock_kind == static_cast<std::uint32_t>(abi::ClockKind::kTsc)) {
    ticks_per_ns_ = header.ticks_per_second != 0
                        ? static_cast<double>(header.ticks_per_second) / 1e9
                        : calibrated_ticks_per_ns();
  }
}

std::int64_t ClockConverter::duration_ns(std::uint64_t a, std::uint64_t b) const {
  const std::int64_t ticks = signed_difference(a, b);
  if (ticks_per_ns_ == 1.0) return ticks;  // kMonotonicNs: exact integers
  return saturate(static_cast<double>(ticks) / ticks_per_ns_);
}

std::int64_t ClockConverter::to_wall_ns(std::uint64_t ticks) const {
  return saturating_add(ref_wall_ns_, duration_ns(ref_ticks_, ticks));
}

}  // namespace shmtrace::reader
