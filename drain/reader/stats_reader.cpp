// Call-site statistics (P13), consumer side: each ring's StatsSlot table read
// without locks while its owner may be writing (protocol in abi.hpp).
#include <algorithm>
#include <cmath>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {
namespace {

std::unexpected<Error> bad(const detail::SegmentState& impl, std::uint32_t ring, const std::string& what) {
  return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) + " statistics: " + what});
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) { return a > ~b ? ~std::uint64_t{0} : a + b; }

// Reads one published slot. Order matters: histogram and unfinished first
// (acquire: pairs with the producer's release bumps, so their calls += 1 at
// entry is visible), calls after them.
Result<CallSiteStats> read_slot(const detail::SegmentState& impl, std::uint32_t ring, std::uint32_t index,
                                const abi::StatsSlot& slot, abi::CallSiteKind kind, double ns_per_tick) {
  CallSiteStats out;
  out.ring = ring;
  out.slot = index;
  out.kind = kind;
  out.ns_per_tick = ns_per_tick;
  const std::string where = "slot " + std::to_string(index) + ": ";
  // Relaxed: written before kind, which the caller loaded with acquire.
  const std::uint64_t key = abi::atomic_load(slot.key, std::memory_order_relaxed);
  if (kind == abi::CallSiteKind::kName) {
    if (key > UINT32_MAX) return bad(impl, ring, where + "name key " + std::to_string(key) + " is not a string id");
    out.name_id = static_cast<std::uint32_t>(key);
  } else if (kind == abi::CallSiteKind::kCode) {
    if (key == 0) return bad(impl, ring, where + "code address is 0");
    out.address = key;
  } else if (key != 0) {
    return bad(impl, ring, where + "\"other\" slot has key " + std::to_string(key));
  }
  for (std::uint32_t b = 0; b < abi::kStatsBuckets; ++b) {
    // Acquire: pairs with the producer's release bump of the bucket.
    const std::uint64_t count = abi::atomic_load(slot.buckets[b], std::memory_order_acquire);
    if (count == 0) continue;
    out.histogram.push_back({b, count});
    out.completed = saturating_add(out.completed, count);
  }
  // Acquire: pairs with the producer's release bump of unfinished.
  out.unfinished = abi::atomic_load(slot.unfinished, std::memory_order_acquire);
  // Relaxed below: single-writer counters ordered by the acquires above.
  out.calls = abi::atomic_load(slot.calls, std::memory_order_relaxed);
  out.errors = abi::atomic_load(slot.errors, std::memory_order_relaxed);
  out.total_ticks = abi::atomic_load(slot.total_ticks, std::memory_order_relaxed);
  out.self_ticks = abi::atomic_load(slot.self_ticks, std::memory_order_relaxed);
  out.tid = abi::atomic_load(slot.last_tid, std::memory_order_relaxed);
  if (saturating_add(out.completed, out.unfinished) > out.calls) {
    return bad(impl, ring, where + "histogram count " + std::to_string(out.completed) + " + unfinished " +
                               std::to_string(out.unfinished) + " exceed calls " + std::to_string(out.calls));
  }
  if (out.completed > 0) {
    out.min_ticks = abi::atomic_load(slot.min_ticks, std::memory_order_relaxed);
    out.max_ticks = abi::atomic_load(slot.max_ticks, std::memory_order_relaxed);
    if (out.min_ticks > out.max_ticks) {
      return bad(impl, ring, where + "min_ticks " + std::to_string(out.min_ticks) + " exceeds max_ticks " +
                                 std::to_string(out.max_ticks));
    }
  }
  out.total_ns = static_cast<double>(out.total_ticks) * ns_per_tick;
  out.self_ns = static_cast<double>(out.self_ticks) * ns_per_tick;
  out.min_ns = static_cast<double>(out.min_ticks) * ns_per_tick;
  out.max_ns = static_cast<double>(out.max_ticks) * ns_per_tick;
  return out;
}

}  // namespace

double CallSiteStats::quantile_ns(double q) const {
  if (completed == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the q-quantile among the completed calls, 1-based.
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(completed))));
  std::uint64_t seen = 0;
  for (const HistogramBucket& b : histogram) {
    seen += b.count;
    if (seen < rank) continue;
    const double lower = static_cast<double>(abi::stats_bucket_lower(b.index));
    const double upper = b.index == abi::kStatsBuckets - 1 ? static_cast<double>(max_ticks)
                                                           : static_cast<double>(abi::stats_bucket_upper(b.index));
    const double mid = (lower + upper) / 2;
    return std::clamp(mid, static_cast<double>(min_ticks), static_cast<double>(max_ticks)) * ns_per_tick;
  }
  return max_ns;
}

Result<std::vector<CallSiteStats>> Segment::call_site_stats(std::uint32_t ring) const {
  const detail::SegmentState& impl = *impl_;
  const abi::SegmentHeader& h = impl.header;
  if (ring >= h.max_rings) {
    return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) + " out of range (max_rings " +
                                 std::to_string(h.max_rings) + ")"});
  }
  std::vector<CallSiteStats> out;
  // validate_header checked ring_stats_bytes is 0 or >= 2 whole slots, and
  // that the table fits in the ring stride inside the segment.
  const std::uint64_t slots = abi::stats_slot_count(h);
  if (slots == 0) return out;
  const std::uint64_t ring_at = abi::ring_offset(h, ring);
  // A ring never written was never claimed: nothing to read, nothing touched.
  const auto residency = impl.ring_residency(ring);
  if (residency == detail::SegmentState::Residency::kNone) return out;
  const auto& control = *impl.at<abi::RingControl>(ring_at);
  // Acquire: pairs with the claim; a never-claimed ring's table is zero.
  if (abi::atomic_load(control.state, std::memory_order_acquire) ==
      static_cast<std::uint32_t>(abi::RingState::kFree)) {
    return out;
  }
  // A thread claims its ring (the state above) before it reserves the
  // ring's pages: a table still in holes is one being set up, with nothing
  // counted yet. Read later, never touched now (reading a hole allocates it).
  if (residency == detail::SegmentState::Residency::kControl &&
      !impl.written(ring_at + abi::ring_stats_offset(h), h.ring_stats_bytes)) {
    return out;
  }
  const auto* table = impl.at<const abi::StatsSlot>(ring_at + abi::ring_stats_offset(h));
  const auto sites = static_cast<std::uint32_t>(slots - 1);
  // Acquire: pairs with the producer's release store after a slot's kind.
  const std::uint32_t used = abi::atomic_load(control.stats_used, std::memory_order_acquire);
  if (used > sites) {
    return bad(impl, ring, "stats_used " + std::to_string(used) + " exceeds the " + std::to_string(sites) +
                               " call-site slots");
  }
  const double ns_per_tick = 1.0 / impl.clock->ticks_per_ns();
  for (std::uint32_t i = 0; i <= sites; ++i) {
    if (i == used && i < sites) i = sites;  // on to "other"
    // Acquire: pairs with the producer's release store of kind.
    const std::uint32_t kind = abi::atomic_load(table[i].kind, std::memory_order_acquire);
    const bool other = i == sites;
    if (other && kind == static_cast<std::uint32_t>(abi::CallSiteKind::kUnused)) break;  // being claimed
    const bool valid = other ? kind == static_cast<std::uint32_t>(abi::CallSiteKind::kOther)
                             : kind == static_cast<std::uint32_t>(abi::CallSiteKind::kName) ||
                                   kind == static_cast<std::uint32_t>(abi::CallSiteKind::kCode);
    if (!valid) {
      return bad(impl, ring, "slot " + std::to_string(i) + ": kind " + std::to_string(kind) +
                                 (other ? " is not \"other\"" : " is not a call site"));
    }
    auto stats = read_slot(impl, ring, i, table[i], static_cast<abi::CallSiteKind>(kind), ns_per_tick);
    if (!stats) return std::unexpected(stats.error());
    out.push_back(std::move(*stats));
  }
  return out;
}

Result<std::vector<CallSiteStats>> Segment::call_site_stats() const {
  std::vector<CallSiteStats> all;
  for (std::uint32_t r = 0; r < impl_->header.max_rings; ++r) {
    auto ring = call_site_stats(r);
    if (!ring) return std::unexpected(ring.error());
    for (CallSiteStats& s : *ring) all.push_back(std::move(s));
  }
  return all;
}

}  // namespace shmtrace::reader
