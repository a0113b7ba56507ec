// Where each region of a segment goes, computed from the configuration, and
// the initialisation of a fresh (all-zero) segment image. Pure functions over
// memory, so tests build segments in anonymous memory exactly as the runtime
// builds them in shared memory.
#ifndef SHMTRACE_RUNTIME_SEGMENT_LAYOUT_HPP
#define SHMTRACE_RUNTIME_SEGMENT_LAYOUT_HPP

#include <cstdint>
#include <string>

#include "config.hpp"
#include "process_info.hpp"
#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

inline constexpr std::uint32_t kModuleCapacity = 512;

struct SegmentLayout {
  std::uint64_t strings_offset = 0;
  std::uint64_t strings_size = 0;
  std::uint64_t modules_offset = 0;
  std::uint64_t modules_size = 0;
  std::uint64_t overflow_offset = 0;
  std::uint64_t overflow_size = 0;
  std::uint64_t rings_offset = 0;
  std::uint64_t ring_stride = 0;
  std::uint64_t ring_stats_bytes = 0;
  std::uint64_t total_size = 0;
  // Bytes from the start that are reserved and touched at creation: header,
  // strings, modules, overflow. Rings are reserved when claimed.
  std::uint64_t fixed_size() const { return rings_offset; }
};

SegmentLayout compute_layout(const Config& config);

struct ClockReference {
  std::uint64_t ticks = 0;
  std::uint64_t mono_ns = 0;
  std::uint64_t wall_ns = 0;
};
ClockReference read_clock_reference() noexcept;

struct TraceContextSeed {
  std::uint8_t trace_id[16] = {};
  std::uint64_t parent_span_id = 0;
  std::uint32_t flags = 0;
};

// Fills a zeroed segment image: header fields, region headers. The magic is
// stored last, with release, so a reader that sees it sees everything else.
void initialize_segment(void* base, const SegmentLayout& layout, const Config& config,
                        const ProcessInfo& process, std::uint64_t nonce, const ClockReference& clock,
                        const TraceContextSeed& context);

// "shmtrace.<pid>.<16 hex nonce>"
// shmtrace.<pid>.<nonce>, or shmtrace.<session>.<pid>.<nonce> in a session.
std::string segment_name(std::uint32_t pid, std::uint64_t nonce, const std::string& session = {});

}  // namespace shmtrace::runtime

#endif
