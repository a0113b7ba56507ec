#include "segment_layout.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "clock.hpp"

namespace shmtrace::runtime {
namespace {

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

template <std::size_t N>
void copy_text(char (&dst)[N], const std::string& src) {
  const std::size_t n = std::min(src.size(), N - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

}  // namespace

SegmentLayout compute_layout(const Config& config) {
  SegmentLayout l;
  std::uint64_t at = abi::kHeaderSize;
  l.strings_offset = at;
  l.strings_size = round_up(config.string_table_bytes, abi::kPageSize);
  at += l.strings_size;
  l.modules_offset = at;
  l.modules_size = round_up(sizeof(abi::ModuleMapHeader) + kModuleCapacity * sizeof(abi::ModuleEntry),
                            abi::kPageSize);
  at += l.modules_size;
  l.overflow_offset = at;
  l.overflow_size = round_up(sizeof(abi::OverflowControl) +
                                 static_cast<std::uint64_t>(config.overflow_records) * sizeof(abi::OverflowSlot),
                             abi::kPageSize);
  at += l.overflow_size;
  l.rings_offset = at;
  // P13: the call sites, then the "other" slot.
  l.ring_stats_bytes = config.stats_sites == 0 ? 0 : (config.stats_sites + 1ull) * sizeof(abi::StatsSlot);
  l.ring_stride = round_up(sizeof(abi::RingControl) +
                               static_cast<std::uint64_t>(config.ring_records) * sizeof(abi::Record) +
                               l.ring_stats_bytes,
                           abi::kPageSize);
  l.total_size = at + l.ring_stride * config.max_threads;
  return l;
}

ClockReference read_clock_reference() noexcept {
  ClockReference c;
  // Bracket the tick read between the two clock reads so they describe one
  // instant to within a few hundred nanoseconds.
  c.mono_ns = clock_ns(CLOCK_MONOTONIC);
  c.wall_ns = clock_ns(CLOCK_REALTIME);
  c.ticks = now_ticks();
  return c;
}

std::string segment_name(std::uint32_t pid, std::uint64_t nonce, const std::string& session) {
  char buf[96];
  if (session.empty()) {
    std::snprintf(buf, sizeof buf, "%s%u.%016llx", abi::kSegmentNamePrefix, pid,
                  static_cast<unsigned long long>(nonce));
  } else {
    std::snprintf(buf, sizeof buf, "%s%s.%u.%016llx", abi::kSegmentNamePrefix, session.c_str(), pid,
                  static_cast<unsigned long long>(nonce));
  }
  return buf;
}

void initialize_segment(void* base, const SegmentLayout& layout, const Config& config,
                        const ProcessInfo& process, std::uint64_t nonce, const ClockReference& clock,
                        const TraceContextSeed& context) {
  auto* bytes = static_cast<std::byte*>(base);
  auto& h = *static_cast<abi::SegmentHeader*>(base);
  h.abi_major = abi::kAbiMajor;
  h.abi_minor = abi::kAbiMinor;
  h.header_size = abi::kHeaderSize;
  h.total_size = layout.total_size;
  h.nonce = nonce;
  h.pid = process.pid;
  h.ppid = process.ppid;
  h.uid = process.uid;
  h.process_start_ticks = process.start_ticks;

  h.clock_kind = static_cast<std::uint32_t>(kClockKind);
  h.clock_ref_ticks = clock.ticks;
  h.clock_ref_mono_ns = clock.mono_ns;
  h.clock_ref_wall_ns = clock.wall_ns;
  h.ticks_per_second = kClockKind == abi::ClockKind::kMonotonicNs ? 1000000000ull : 0;

  h.ring_capacity = config.ring_records;
  h.max_rings = config.max_threads;
  h.overflow_capacity = config.overflow_records;
  h.error_chunk_bytes = config.error_chunk_bytes;
  h.string_table_bytes = static_cast<std::uint32_t>(layout.strings_size);
  h.max_repr = config.max_repr;
  h.policy = static_cast<std::uint32_t>(config.policy);
  h.block_timeout_ms = config.block_timeout_ms;
  h.max_frames = config.max_frames;
  h.sample_rate_ppm = static_cast<std::uint32_t>(config.sample_rate * 1e6 + 0.5);

  h.strings_offset = layout.strings_offset;
  h.strings_size = layout.strings_size;
  h.modules_offset = layout.modules_offset;
  h.modules_size = layout.modules_size;
  h.overflow_offset = layout.overflow_offset;
  h.overflow_size = layout.overflow_size;
  h.rings_offset = layout.rings_offset;
  h.ring_stride = layout.ring_stride;
  h.ring_stats_bytes = layout.ring_stats_bytes;

  std::memcpy(h.trace_id, context.trace_id, sizeof h.trace_id);
  h.parent_span_id = context.parent_span_id;
  h.trace_flags = context.flags;

  copy_text(h.spill_dir, config.spill_dir);
  copy_text(h.exe, process.exe);
  copy_text(h.session, config.session);
  const std::size_t cmd = std::min(process.cmdline.size(), sizeof h.cmdline);
  std::memcpy(h.cmdline, process.cmdline.data(), cmd);
  h.cmdline_size = static_cast<std::uint32_t>(cmd);

  auto& strings = *reinterpret_cast<abi::StringTableHeader*>(bytes + layout.strings_offset);
  strings.capacity = static_cast<std::uint32_t>(layout.strings_size);
  strings.used = sizeof(abi::StringTableHeader);

  auto& modules = *reinterpret_cast<abi::ModuleMapHeader*>(bytes + layout.modules_offset);
  modules.capacity = kModuleCapacity;

  auto& overflow = *reinterpret_cast<abi::OverflowControl*>(bytes + layout.overflow_offset);
  overflow.capacity = config.overflow_records;

  // Publishes every field above; pairs with the reader's acquire load of magic.
  abi::atomic_store(h.magic, abi::kSegmentMagic, std::memory_order_release);
}

}  // namespace shmtrace::runtime
