// Call-site statistics (P13): the per-thread slow paths (call_stats.hpp).
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "thread_state.hpp"

namespace shmtrace::runtime {
namespace {

constexpr std::size_t kCacheBytes = kStatsCacheEntries * sizeof(StatsCacheEntry);
// The cache, then the dummy slot of a thread without a ring.
constexpr std::size_t kPrivateBytes = kCacheBytes + sizeof(abi::StatsSlot);

// Initial values of a slot about to be published: "no end yet" for min.
void prepare_slot(abi::StatsSlot& slot, std::uint64_t key) noexcept {
  // Relaxed: published by the release store of kind that follows.
  abi::atomic_store(slot.key, key, std::memory_order_relaxed);
  abi::atomic_store(slot.min_ticks, ~std::uint64_t{0}, std::memory_order_relaxed);
}

abi::StatsSlot* find_or_assign(ThreadState& t, std::uint64_t key) noexcept {
  if (t.stats_table == nullptr || t.control == nullptr) return t.stats_dummy;
  const auto kind = static_cast<std::uint32_t>((key & kNameKeyTag) != 0 ? abi::CallSiteKind::kName
                                                                          : abi::CallSiteKind::kCode);
  const std::uint64_t value = key & ~kNameKeyTag;
  // Relaxed: the ring's owner is the only writer (a previous owner's
  // stores are visible through the claim's acquire CAS).
  const std::uint32_t used =
      std::min(abi::atomic_load(t.control->stats_used, std::memory_order_relaxed), t.stats_sites);
  for (std::uint32_t i = 0; i < used; ++i) {
    abi::StatsSlot& s = t.stats_table[i];
    if (s.kind == kind && s.key == value) return &s;
  }
  if (used == t.stats_sites) return &t.stats_table[t.stats_sites];  // full: "other"
  abi::StatsSlot& fresh = t.stats_table[used];
  prepare_slot(fresh, value);
  // Publishes key and min; pairs with the reader's acquire load of kind.
  abi::atomic_store(fresh.kind, kind, std::memory_order_release);
  // Pairs with the reader's acquire load of stats_used.
  abi::atomic_store(t.control->stats_used, used + 1, std::memory_order_release);
  return &fresh;
}

}  // namespace

bool prepare_thread_stats(ThreadState& t, Runtime& rt) noexcept {
  t.stats_pending = nullptr;
  t.stats_table = nullptr;
  t.stats_sites = 0;
  if (rt.stats_sites == 0) {
    t.stats_cache = nullptr;
    return true;
  }
  if (t.stats_cache == nullptr) {
    void* p = ::mmap(nullptr, kPrivateBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    t.stats_cache = static_cast<StatsCacheEntry*>(p);
    t.stats_dummy = reinterpret_cast<abi::StatsSlot*>(static_cast<std::byte*>(p) + kCacheBytes);
  }
  // A thread inherited through fork() held slots of the parent's segment.
  std::memset(t.stats_cache, 0, kCacheBytes);
  return true;
}

void attach_ring_stats(ThreadState& t, Runtime& rt, std::uint32_t ring) noexcept {
  if (t.stats_cache == nullptr || rt.stats_sites == 0) return;
  abi::StatsSlot* table = rt.ring_stats(ring);
  abi::StatsSlot& other = table[rt.stats_sites];
  // Relaxed: we own the ring; the first owner sets the "other" slot up.
  if (abi::atomic_load(other.kind, std::memory_order_relaxed) == 0) {
    prepare_slot(other, 0);
    // Pairs with the reader's acquire load of kind.
    abi::atomic_store(other.kind, static_cast<std::uint32_t>(abi::CallSiteKind::kOther),
                      std::memory_order_release);
  }
  t.stats_table = table;
  t.stats_sites = rt.stats_sites;
}

abi::StatsSlot* stats_slot_slow(ThreadState& t, std::uint64_t key) noexcept {
  abi::StatsSlot* slot = find_or_assign(t, key);
  // Relaxed: informational, single writer.
  abi::atomic_store(slot->last_tid, t.tid, std::memory_order_relaxed);
  t.stats_cache[stats_cache_index(key)] = StatsCacheEntry{key, slot};
  return slot;
}

void detach_thread_stats(ThreadState& t) noexcept {
  // The ring goes to another thread: frames still open on this one (their
  // ends may run in later TLS destructors) must not write its slots.
  flush_stats(t.stats_pending);
  for (std::uint32_t i = 0; i < t.depth; ++i) t.stack[i].stats = nullptr;
  if (t.stats_cache != nullptr) std::memset(t.stats_cache, 0, kCacheBytes);
  t.stats_table = nullptr;
}

}  // namespace shmtrace::runtime
