// The tick source of every record timestamp. On x86-64 it is the invariant
// TSC (one rdtsc, ~10 ns on the dev VM, no syscall); elsewhere the vDSO
// CLOCK_MONOTONIC in nanoseconds. The segment header says which
// (abi::ClockKind) and holds the reference instant the reader converts from.
#ifndef SHMTRACE_RUNTIME_CLOCK_HPP
#define SHMTRACE_RUNTIME_CLOCK_HPP

#include <time.h>

#include <cstdint>

#include "shmtrace/abi.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace shmtrace::runtime {

inline std::uint64_t clock_ns(clockid_t id) noexcept {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

#if defined(__x86_64__) || defined(__i386__)
inline constexpr abi::ClockKind kClockKind = abi::ClockKind::kTsc;
inline std::uint64_t now_ticks() noexcept { return __rdtsc(); }
inline void cpu_relax() noexcept { _mm_pause(); }
#else
inline constexpr abi::ClockKind kClockKind = abi::ClockKind::kMonotonicNs;
inline std::uint64_t now_ticks() noexcept { return clock_ns(CLOCK_MONOTONIC); }
inline void cpu_relax() noexcept {}
#endif

}  // namespace shmtrace::runtime

#endif
