// Trace context (P8): 128-bit trace ids in UUIDv7 layout, 64-bit span ids,
// and the W3C traceparent text form "00-<32 hex trace>-<16 hex span>-<2 hex flags>".
#ifndef SHMTRACE_RUNTIME_TRACE_CONTEXT_HPP
#define SHMTRACE_RUNTIME_TRACE_CONTEXT_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace shmtrace::runtime {

struct TraceId {
  std::uint8_t bytes[16] = {};
  bool empty() const noexcept;
};

struct TraceParent {
  TraceId trace;
  std::uint64_t span_id = 0;
  std::uint8_t flags = 0;  // bit 0: sampled
};

// A UUIDv7: 48-bit Unix milliseconds, version 7, variant 10, and 74 bits
// from `random_a`/`random_b`.
TraceId make_uuid_v7(std::uint64_t unix_ms, std::uint64_t random_a, std::uint64_t random_b) noexcept;

// Parses a W3C traceparent (version 00; all-zero ids and version ff are
// invalid). Surrounding whitespace is ignored.
std::optional<TraceParent> parse_traceparent(std::string_view text) noexcept;

// Writes the 55-character form plus a NUL; false when size < 56.
bool format_traceparent(const TraceParent& context, char* out, std::size_t size) noexcept;

// xorshift64*: the per-thread generator for sampling and ids (never 0 state).
inline std::uint64_t next_random(std::uint64_t& state) noexcept {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dull;
}

}  // namespace shmtrace::runtime

#endif
