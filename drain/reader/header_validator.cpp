// validate_header: every write-once field of a SegmentHeader checked against
// the bytes actually mapped, before any offset in it is used.
#include <array>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "reader/reader.hpp"

namespace shmtrace::reader {
namespace {

using abi::SegmentHeader;

std::unexpected<Error> fail(const std::string& message) {
  return std::unexpected(Error{"invalid header: " + message});
}

std::string hex(std::uint64_t value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "0x%016" PRIx64, value);
  return buffer;
}

constexpr bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// segment_limits(): set once by a program's main, read by every attach.
// Relaxed: each is a value on its own, set before any reader runs.
constinit std::atomic<std::uint32_t> g_max_rings{SegmentLimits::kDefaultMaxRings};
constinit std::atomic<std::uint64_t> g_max_segment_bytes{SegmentLimits::kDefaultMaxSegmentBytes};

struct Region {
  const char* name;
  std::uint64_t offset;
  std::uint64_t size;
};

// Checks one region lies inside [header_size, total_size) and is 8-aligned
// (atomics inside it need natural alignment).
Result<void> check_region(const Region& r, const SegmentHeader& h) {
  const std::string name = r.name;
  if (r.offset % 8 != 0) {
    return fail(name + "_offset " + std::to_string(r.offset) + " is not 8-byte aligned");
  }
  if (r.offset < h.header_size) {
    return fail(name + "_offset " + std::to_string(r.offset) + " lies inside the header");
  }
  if (r.offset > h.total_size || r.size > h.total_size - r.offset) {
    return fail(name + "_offset " + std::to_string(r.offset) + " + size " +
                std::to_string(r.size) + " is out of range of total_size " +
                std::to_string(h.total_size));
  }
  return {};
}

bool nul_terminated(const char* text, std::size_t capacity) {
  return std::memchr(text, '\0', capacity) != nullptr;
}

}  // namespace

void set_segment_limits(const SegmentLimits& limits) {
  g_max_rings.store(limits.max_rings, std::memory_order_relaxed);
  g_max_segment_bytes.store(limits.max_segment_bytes, std::memory_order_relaxed);
}

SegmentLimits segment_limits() {
  SegmentLimits limits;
  limits.max_rings = g_max_rings.load(std::memory_order_relaxed);
  limits.max_segment_bytes = g_max_segment_bytes.load(std::memory_order_relaxed);
  return limits;
}

Result<void> validate_header(const SegmentHeader& h, std::uint64_t mapped_size) {
  if (h.magic != abi::kSegmentMagic) {
    return fail("bad magic " + hex(h.magic) + ", expected " + hex(abi::kSegmentMagic));
  }
  if (h.abi_major != abi::kAbiMajor) {
    return fail("abi_major " + std::to_string(h.abi_major) + " is not supported (reader speaks " +
                std::to_string(abi::kAbiMajor) + ")");
  }
  if (h.abi_minor < abi::kAbiMinor) {
    return fail("abi_minor " + std::to_string(h.abi_minor) + " is older than the reader's " +
                std::to_string(abi::kAbiMinor));
  }
  if (h.header_size != abi::kHeaderSize) {
    return fail("header_size " + std::to_string(h.header_size) + ", expected " +
                std::to_string(abi::kHeaderSize));
  }
  if (h.total_size < h.header_size) {
    return fail("total_size " + std::to_string(h.total_size) + " is smaller than the header");
  }
  if (h.total_size > mapped_size) {
    return fail("total_size " + std::to_string(h.total_size) + " is larger than the " +
                std::to_string(mapped_size) + " bytes mapped");
  }
  if (h.clock_kind != static_cast<std::uint32_t>(abi::ClockKind::kTsc) &&
      h.clock_kind != static_cast<std::uint32_t>(abi::ClockKind::kMonotonicNs)) {
    return fail("clock_kind " + std::to_string(h.clock_kind) + " is unknown");
  }
  if (h.policy != static_cast<std::uint32_t>(abi::FullPolicy::kDrop) &&
      h.policy != static_cast<std::uint32_t>(abi::FullPolicy::kBlock)) {
    return fail("policy " + std::to_string(h.policy) + " is unknown");
  }
  if (h.state > static_cast<std::uint32_t>(abi::ProcessState::kExeced)) {
    return fail("state " + std::to_string(h.state) + " is unknown");
  }
  if (h.sample_rate_ppm > 1'000'000) {
    return fail("sample_rate_ppm " + std::to_string(h.sample_rate_ppm) + " exceeds 1000000");
  }
  if (h.max_frames > abi::kMaxErrorFrames) {
    return fail("max_frames " + std::to_string(h.max_frames) + " exceeds " +
                std::to_string(abi::kMaxErrorFrames));
  }

  // Ring geometry. Bounds keep every product below 2^64.
  if (!is_power_of_two(h.ring_capacity) || h.ring_capacity > (1u << 30)) {
    return fail("ring_capacity " + std::to_string(h.ring_capacity) +
                " is not a power of two (up to 2^30)");
  }
  if (h.max_rings == 0) return fail("max_rings is 0");
  // Every pass over the rings is bounded by it: a segment may not make its
  // reader walk millions of them (nor fault in their pages).
  if (const std::uint32_t bound = g_max_rings.load(std::memory_order_relaxed); h.max_rings > bound) {
    return fail("max_rings " + std::to_string(h.max_rings) + " exceeds the bound " + std::to_string(bound) +
                " (shmtrace-drain --max-rings)");
  }
  if (h.ring_stats_bytes > h.total_size) {
    return fail("ring_stats_bytes " + std::to_string(h.ring_stats_bytes) + " exceeds total_size");
  }
  if (h.ring_stats_bytes != 0 &&
      (h.ring_stats_bytes % sizeof(abi::StatsSlot) != 0 || h.ring_stats_bytes / sizeof(abi::StatsSlot) < 2)) {
    return fail("ring_stats_bytes " + std::to_string(h.ring_stats_bytes) + " is not a whole number (>= 2) of " +
                std::to_string(sizeof(abi::StatsSlot)) + "-byte statistics slots");
  }
  const std::uint64_t ring_needed = sizeof(abi::RingControl) +
                                    std::uint64_t{h.ring_capacity} * sizeof(abi::Record) +
                                    h.ring_stats_bytes;
  if (h.ring_stride < ring_needed) {
    return fail("ring_stride " + std::to_string(h.ring_stride) + " is too small for " +
                std::to_string(h.ring_capacity) + " records and " +
                std::to_string(h.ring_stats_bytes) + " stats bytes (needs " +
                std::to_string(ring_needed) + ")");
  }
  if (h.ring_stride % abi::kPageSize != 0) {
    return fail("ring_stride " + std::to_string(h.ring_stride) + " is not page-aligned");
  }
  if (h.ring_stride > h.total_size || h.max_rings > h.total_size / h.ring_stride) {
    return fail("max_rings " + std::to_string(h.max_rings) + " x ring_stride " +
                std::to_string(h.ring_stride) + " exceeds total_size");
  }
  const std::uint64_t rings_size = std::uint64_t{h.max_rings} * h.ring_stride;

  // Overflow and string table geometry.
  if (!is_power_of_two(h.overflow_capacity) || h.overflow_capacity > (1u << 30)) {
    return fail("overflow_capacity " + std::to_string(h.overflow_capacity) +
                " is not a power of two (up to 2^30)");
  }
  const std::uint64_t overflow_needed =
      sizeof(abi::OverflowControl) + std::uint64_t{h.overflow_capacity} * sizeof(abi::OverflowSlot);
  if (h.overflow_size < overflow_needed) {
    return fail("overflow_size " + std::to_string(h.overflow_size) + " is too small for " +
                std::to_string(h.overflow_capacity) + " slots (needs " +
                std::to_string(overflow_needed) + ")");
  }
  if (h.strings_size < sizeof(abi::StringTableHeader) || h.strings_size > UINT32_MAX) {
    return fail("strings_size " + std::to_string(h.strings_size) + " is out of range");
  }
  if (h.string_table_bytes != h.strings_size) {
    return fail("string_table_bytes " + std::to_string(h.string_table_bytes) +
                " differs from strings_size " + std::to_string(h.strings_size));
  }
  if (h.modules_size != 0 && h.modules_size < sizeof(abi::ModuleMapHeader)) {
    return fail("modules_size " + std::to_string(h.modules_size) + " is too small");
  }
  if (h.error_chunk_bytes < abi::kErrorChunkHeaderSize + sizeof(abi::ErrorEntry) ||
      h.error_chunk_bytes % 8 != 0) {
    return fail("error_chunk_bytes " + std::to_string(h.error_chunk_bytes) +
                " is too small or not a multiple of 8");
  }

  // Regions: inside the segment, after the header, pairwise disjoint.
  const std::array<Region, 4> regions{{
      {"strings", h.strings_offset, h.strings_size},
      {"modules", h.modules_offset, h.modules_size},
      {"overflow", h.overflow_offset, h.overflow_size},
      {"rings", h.rings_offset, rings_size},
  }};
  for (const Region& r : regions) {
    if (r.size == 0) continue;
    if (auto ok = check_region(r, h); !ok) return ok;
  }
  for (std::size_t i = 0; i < regions.size(); ++i) {
    for (std::size_t j = i + 1; j < regions.size(); ++j) {
      const Region& a = regions[i];
      const Region& b = regions[j];
      if (a.size == 0 || b.size == 0) continue;
      // Both ends are known to fit in total_size, so these sums cannot wrap.
      if (a.offset < b.offset + b.size && b.offset < a.offset + a.size) {
        return fail(std::string(a.name) + " region [" + std::to_string(a.offset) + ", " +
                    std::to_string(a.offset + a.size) + ") overlaps " + b.name + " region [" +
                    std::to_string(b.offset) + ", " + std::to_string(b.offset + b.size) + ")");
      }
    }
  }

  // Text fields.
  if (!nul_terminated(h.spill_dir, sizeof h.spill_dir)) {
    return fail("spill_dir is not NUL-terminated");
  }
  if (!nul_terminated(h.exe, sizeof h.exe)) return fail("exe is not NUL-terminated");
  if (!nul_terminated(h.session, sizeof h.session)) return fail("session is not NUL-terminated");
  if (const std::size_t n = ::strnlen(h.session, sizeof h.session); n != 0 && !abi::session_id_valid(h.session, n)) {
    return fail("session id is not 1 to 32 letters, digits, '_' or '-' starting with a letter");
  }
  if (h.cmdline_size > sizeof h.cmdline) {
    return fail("cmdline_size " + std::to_string(h.cmdline_size) + " exceeds " +
                std::to_string(sizeof h.cmdline));
  }
  return {};
}

}  // namespace shmtrace::reader
