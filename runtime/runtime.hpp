// The process-wide runtime: one per process image, created by the library
// constructor (or by the first API call, if that comes earlier), recreated in
// a forked child. A null g_runtime means "no-op": disabled, not yet started,
// or the segment could not be created (P12).
#ifndef SHMTRACE_RUNTIME_RUNTIME_HPP
#define SHMTRACE_RUNTIME_RUNTIME_HPP

#include <pthread.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "config.hpp"
#include "error_area.hpp"
#include "function_cache.hpp"
#include "overflow_writer.hpp"
#include "process_info.hpp"
#include "segment.hpp"
#include "segment_layout.hpp"
#include "shmtrace/abi.hpp"
#include "string_table.hpp"
#include "trace_context.hpp"

namespace shmtrace::runtime {

// Sampling threshold: a root span is kept when a 64-bit random value is below
// it; kKeepAll skips the draw.
inline constexpr std::uint64_t kKeepAll = ~0ull;

struct GroupThreshold {
  std::uint32_t group_id;
  std::uint64_t threshold;
};

struct Runtime {
  Config config;
  ProcessInfo process;
  std::string segment_name;
  SharedObject segment;
  abi::SegmentHeader* header = nullptr;
  std::byte* base = nullptr;
  SegmentLayout layout;
  std::unique_ptr<StringTable> strings;
  OverflowWriter overflow;
  std::unique_ptr<ErrorArea> errors;

  std::uint32_t default_group = 0;     // the executable's name
  std::uint64_t sample_threshold = kKeepAll;
  std::vector<GroupThreshold> group_thresholds;
  bool has_inherited = false;          // TRACEPARENT at start
  TraceParent inherited;
  std::uint32_t max_value_bytes = 0;   // longest argument value a ring can take
  std::uint32_t max_value_records = 0;
  std::uint32_t stats_sites = 0;       // call-site slots per ring (P13), 0 = statistics off
  Runtime* retired_next = nullptr;     // chain of runtimes retired by fork()
  std::unique_ptr<FunctionCache> functions;  // -finstrument-functions decisions
  std::optional<std::regex> include_functions;
  std::optional<std::regex> exclude_functions;

  abi::RingControl* ring(std::uint32_t index) const noexcept {
    return reinterpret_cast<abi::RingControl*>(base + abi::ring_offset(*header, index));
  }
  abi::Record* ring_records(std::uint32_t index) const noexcept {
    return reinterpret_cast<abi::Record*>(base + abi::ring_offset(*header, index) + abi::ring_records_offset());
  }
  // The ring's call-site statistics table (P13); meaningful when stats_sites > 0.
  abi::StatsSlot* ring_stats(std::uint32_t index) const noexcept {
    return reinterpret_cast<abi::StatsSlot*>(base + abi::ring_offset(*header, index) + abi::ring_stats_offset(*header));
  }
  std::uint64_t threshold_for(std::uint32_t group_id) const noexcept;
  std::uint32_t intern(std::string_view text) noexcept;
  // Whether the include/exclude filters keep an instrumented function.
  bool function_traced(const std::string& name) const;
};

// Set once initialisation succeeded; read on every API call.
extern Runtime* g_runtime;

// Its destructor releases a thread's ring at thread exit.
extern pthread_key_t g_thread_key;

enum class InitState : std::uint8_t { kNotStarted = 0, kRunning = 1, kOff = 2, kStarting = 3 };
extern std::uint8_t g_init_state;  // atomic_ref access

// Starts the runtime if nobody has; returns it, or nullptr when off.
Runtime* start_runtime() noexcept;

// The calling thread's runtime, starting it on first use.
inline Runtime* current_runtime() noexcept {
  // Pairs with the release store in start_runtime(): the Runtime is complete.
  Runtime* rt = __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
  if (__builtin_expect(rt != nullptr, 1)) return rt;
  if (__atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE) != static_cast<std::uint8_t>(InitState::kNotStarted)) {
    return nullptr;
  }
  return start_runtime();
}

}  // namespace shmtrace::runtime

#endif
