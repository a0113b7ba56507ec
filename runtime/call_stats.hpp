// Call-site statistics (P13), producer side: per thread, per call site,
// calls, errors, unfinished frames, durations and a latency histogram, kept
// in the StatsSlot table at the end of the thread's ring (abi.hpp says who
// writes what, in which order).
//
// A thread finds a call site's slot through a private direct-mapped cache
// keyed by the call site (an API span's name id, tagged, or an instrumented
// function's address): one multiply, one load and one compare on the hot
// path. A miss (a thread's first call of a site, or a collision) searches
// the ring's table and assigns a slot, or the "other" slot once the table is
// full. The slot found at span begin stays in the span's stack entry, so the
// end needs no lookup.
#ifndef SHMTRACE_RUNTIME_CALL_STATS_HPP
#define SHMTRACE_RUNTIME_CALL_STATS_HPP

#include <cstdint>

#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

struct StatsCacheEntry {
  std::uint64_t key;  // 0: empty
  abi::StatsSlot* slot;
};

inline constexpr std::uint32_t kStatsCacheBits = 10;
inline constexpr std::uint32_t kStatsCacheEntries = 1u << kStatsCacheBits;  // 16 KiB per thread

// API span names and code addresses share the cache: names carry the top bit
// (user-space addresses never do).
inline constexpr std::uint64_t kNameKeyTag = 1ull << 63;
inline constexpr std::uint64_t name_key(std::uint32_t name) noexcept { return kNameKeyTag | name; }

inline std::uint32_t stats_cache_index(std::uint64_t key) noexcept {
  return static_cast<std::uint32_t>((key * 0x9e3779b97f4a7c15ull) >> (64 - kStatsCacheBits));
}

// Single-writer bump that a reader may pair with: release, so a reader that
// loads the new value (acquire) also sees the calls += 1 made at the entry.
inline void counter_add_release(std::uint64_t& field) noexcept {
  abi::atomic_store(field, abi::atomic_load(field, std::memory_order_relaxed) + 1, std::memory_order_release);
}

// A call ended after `ticks`, `self` of them outside its traced callees;
// `error`: with status ERR.
//
// The histogram bump is deferred to the thread's next end (`pending`, kept
// in the thread state): the bucket's address depends on the end timestamp,
// and a store whose address waits for rdtsc (~40 cycles) held up the span's
// record stores behind it (+3.5 ns per span, bench/README.md). Deferred, the
// address is known long before the store. flush_stats() bumps the last one
// when the thread ends (and so at process exit, for the exiting thread).
inline void stats_end(abi::StatsSlot& s, std::uint64_t ticks, std::uint64_t self, bool error,
                      std::uint64_t*& pending) noexcept {
  if (error) abi::counter_add(s.errors, 1);
  abi::counter_add(s.self_ticks, self);
  abi::counter_add(s.total_ticks, ticks);
  // Relaxed: only this thread writes them; readers tolerate staleness.
  if (ticks < abi::atomic_load(s.min_ticks, std::memory_order_relaxed)) {
    abi::atomic_store(s.min_ticks, ticks, std::memory_order_relaxed);
  }
  if (ticks > abi::atomic_load(s.max_ticks, std::memory_order_relaxed)) {
    abi::atomic_store(s.max_ticks, ticks, std::memory_order_relaxed);
  }
  if (pending != nullptr) counter_add_release(*pending);
  pending = &s.buckets[abi::stats_bucket_of(ticks)];
}

// Bumps a deferred histogram bucket now.
inline void flush_stats(std::uint64_t*& pending) noexcept {
  if (pending != nullptr) counter_add_release(*pending);
  pending = nullptr;
}

// A frame closed without its own end: counted, its duration unknown.
inline void stats_unfinished(abi::StatsSlot& s) noexcept { counter_add_release(s.unfinished); }

}  // namespace shmtrace::runtime

#endif
