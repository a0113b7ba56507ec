// Read-only peeking: what a tool (shmtrace dump, shmtrace top) may read of a
// segment it does not consume, without writing a byte of it and without
// disturbing the drain that may be consuming it meanwhile.
//
// Which records can be trusted. A ring's producer writes position q only
// once q < tail + capacity (it loads the consumer's tail, acquire, before it
// reuses a slot). So the positions [tail, head) are stable for as long as
// tail stays where it is; positions below tail were handed back and may be
// overwritten at any moment, even when they still look whole. A peek copies
// [max(from, tail), head), loads tail again after the copy, and drops every
// copied position below the new tail: what is left was not handed back
// before the copy ended, so the producer had not started on its slot (it
// stores nothing into a slot before it has seen the tail that frees it, and
// the acquire fence keeps our second load of tail after the copy's loads;
// on x86-64's total store order and ARMv8's multi-copy atomicity, a store
// the copy saw implies the tail that allowed it is visible to that load).
// The copy itself is made of relaxed 8-byte atomic loads, never a plain
// memcpy, since a slot the drain hands back mid-copy may be written under it.
//
// The overflow area is the same with each slot's own sequence number: a
// slot is read when it shows "published for this lap" before and after the
// copy; "freed" (the consumer passed it) is skipped, never printed.
#include <algorithm>
#include <atomic>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {
namespace {

using Residency = detail::SegmentState::Residency;

template <class T>
T relaxed(const T& field) {
  return abi::atomic_load(field, std::memory_order_relaxed);
}

}  // namespace

LiveFields Segment::peek_live() const {
  const abi::SegmentHeader& h = *impl_->live_header();
  LiveFields f;
  // Acquire: pairs with the runtime's release store of state, published
  // after exit_status, end_ticks and exec_target_id.
  f.state = static_cast<abi::ProcessState>(abi::atomic_load(h.state, std::memory_order_acquire));
  // Relaxed below: ordered by the acquire above, or counters whose
  // staleness a snapshot tolerates.
  f.exit_status = relaxed(h.exit_status);
  f.end_ticks = relaxed(h.end_ticks);
  f.exec_target_id = relaxed(h.exec_target_id);
  f.error_chunk_count = relaxed(h.error_chunk_count);
  f.errors_written = relaxed(h.errors_written);
  f.errors_spilled = relaxed(h.errors_spilled);
  f.errors_lost = relaxed(h.errors_lost);
  f.no_ring_threads = relaxed(h.no_ring_threads);
  f.no_ring_overflowed = relaxed(h.no_ring_overflowed);
  f.no_ring_dropped = relaxed(h.no_ring_dropped);
  f.strings_rejected = relaxed(h.strings_rejected);
  f.drain_pid = relaxed(h.drain_pid);
  f.drain_heartbeat_ns = relaxed(h.drain_heartbeat_ns);
  const auto& control = *impl_->at<abi::OverflowControl>(impl_->header.overflow_offset);
  f.overflow_enqueue = relaxed(control.enqueue_pos);
  f.overflow_dequeue = relaxed(control.dequeue_pos);
  return f;
}

Result<RingPeek> Segment::peek_ring(std::uint32_t ring, std::uint64_t from, std::size_t max_records) const {
  const detail::SegmentState& impl = *impl_;
  if (ring >= impl.header.max_rings) {
    return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) + " out of range (max_rings " +
                                 std::to_string(impl.header.max_rings) + ")"});
  }
  RingPeek peek;
  peek.ring = ring;
  peek.first_position = peek.end_position = from;
  const Residency residency = impl.ring_residency(ring);
  if (residency == Residency::kNone) return peek;  // never written: nothing there, nothing touched
  const std::uint64_t at = abi::ring_offset(impl.header, ring);
  const auto& control = *impl.at<abi::RingControl>(at);
  // Acquire: pairs with the producer's release store of head, which
  // publishes the records before it; tail likewise with the consumer's.
  const std::uint64_t head = abi::atomic_load(control.head, std::memory_order_acquire);
  const std::uint64_t tail = abi::atomic_load(control.tail, std::memory_order_acquire);
  const std::uint64_t capacity = impl.header.ring_capacity;
  if (head < tail || head - tail > capacity) {
    return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) + " untrusted: head " +
                                 std::to_string(head) + " - tail " + std::to_string(tail) + " exceeds capacity " +
                                 std::to_string(capacity)});
  }
  std::uint64_t start = std::max(from, tail);
  if (start > head) start = head;  // `from` beyond head: nothing new yet
  peek.skipped = start > from ? start - from : 0;
  const std::uint64_t count = std::min<std::uint64_t>(head - start, max_records);
  peek.first_position = start;
  peek.end_position = start + count;
  if (count == 0) return peek;
  const std::uint64_t records_at = at + abi::ring_records_offset();
  const std::uint64_t first_slot = start & (capacity - 1);
  const std::uint64_t first_run = std::min(count, capacity - first_slot);
  if (residency == Residency::kControl &&
      !(impl.written(records_at + first_slot * sizeof(abi::Record), first_run * sizeof(abi::Record)) &&
        impl.written(records_at, (count - first_run) * sizeof(abi::Record)))) {
    return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) + " untrusted: records [" +
                                 std::to_string(start) + ", " + std::to_string(start + count) +
                                 ") lie in pages never written"});
  }
  peek.records.resize(static_cast<std::size_t>(count));
  detail::copy_shared(peek.records.data(), impl.base + records_at + first_slot * sizeof(abi::Record),
                      static_cast<std::size_t>(first_run) * sizeof(abi::Record));
  if (count > first_run) {
    detail::copy_shared(peek.records.data() + first_run, impl.base + records_at,
                        static_cast<std::size_t>(count - first_run) * sizeof(abi::Record));
  }
  // Keeps the copy's loads before the second load of tail (see the top).
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::uint64_t tail_after = abi::atomic_load(control.tail, std::memory_order_acquire);
  if (tail_after > start) {
    const std::uint64_t lost = std::min(tail_after, peek.end_position) - start;
    peek.records.erase(peek.records.begin(), peek.records.begin() + static_cast<std::ptrdiff_t>(lost));
    peek.first_position += lost;
    peek.skipped += lost;
  }
  return peek;
}

Result<OverflowPeek> Segment::peek_overflow(std::uint64_t from, std::size_t max_records) const {
  const detail::SegmentState& impl = *impl_;
  const std::uint64_t offset = impl.header.overflow_offset;
  const auto& control = *impl.at<abi::OverflowControl>(offset);
  const auto* slots = impl.at<abi::OverflowSlot>(offset + sizeof(abi::OverflowControl));
  const std::uint64_t capacity = impl.header.overflow_capacity;
  auto slot = [&](std::uint64_t p) -> const abi::OverflowSlot& { return slots[p & (capacity - 1)]; };
  // Acquire: pairs with the consumer's release store after it freed slots.
  const std::uint64_t dequeue = abi::atomic_load(control.dequeue_pos, std::memory_order_acquire);
  OverflowPeek peek;
  std::uint64_t position = std::max(from, dequeue);
  peek.skipped = position - from;
  peek.first_position = position;
  std::size_t taken = 0;
  auto fail = [&](std::uint64_t p, const std::string& what) {
    return std::unexpected(Error{impl.where() + "overflow position " + std::to_string(p) + ": " + what});
  };
  // Bounded: each round takes a group or moves past freed slots, and a
  // hostile dequeue_pos that keeps moving must not keep us here.
  for (std::uint64_t round = 0; taken < max_records && round <= capacity; ++round) {
    // Never more than one lap past the consumer: those slots cannot hold
    // records of this lap.
    const std::uint64_t floor = std::max(dequeue, abi::atomic_load(control.dequeue_pos, std::memory_order_acquire));
    if (position < floor) {  // freed meanwhile: on from where the consumer is
      peek.skipped += floor - position;
      if (peek.groups.empty()) peek.first_position = floor;
      position = floor;
    }
    if (position - floor >= capacity) break;
    std::vector<OverflowEntry> group;
    std::uint64_t count = 1;
    bool gone = false;
    bool unpublished = false;
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint64_t p = position + k;
      if (p - floor >= capacity) {
        unpublished = true;
        break;
      }
      const std::uint64_t lap = p / capacity;
      // Acquire: pairs with the producer's release store of 2*lap+1.
      const std::uint64_t before = abi::atomic_load(slot(p).sequence, std::memory_order_acquire);
      if (before < 2 * lap + 1) {
        // Below 2*lap: the slot's last lap was never freed, yet the
        // consumer is past it.
        if (before != 2 * lap) return fail(p, "sequence " + std::to_string(before) + " is invalid");
        unpublished = true;  // 2*lap: not published yet
        break;
      }
      if (before > 2 * lap + 1) {  // freed (and maybe reused) by the consumer
        gone = true;
        break;
      }
      abi::OverflowSlot copy{};
      detail::copy_shared(&copy, reinterpret_cast<const std::byte*>(&slot(p)), sizeof copy);
      // Keeps the copy's loads before the second load of the sequence.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (abi::atomic_load(slot(p).sequence, std::memory_order_acquire) != before) {
        gone = true;
        break;
      }
      if (k == 0) {
        if (copy.group_index != 0 || copy.group_count == 0 || copy.group_count > capacity) {
          return fail(p, "group_count " + std::to_string(copy.group_count) + " / group_index " +
                             std::to_string(copy.group_index) + " invalid");
        }
        count = copy.group_count;
      } else if (copy.group_index != k || copy.group_count != 0) {
        return fail(p, "group_index " + std::to_string(copy.group_index) + ", expected " + std::to_string(k));
      }
      group.push_back(OverflowEntry{p, copy.ring_index, copy.generation, copy.tid, copy.record});
    }
    if (gone) {
      // The consumer passed this group while we read it: it is in its
      // database. Go on from where the consumer is now, next round.
      const std::uint64_t now = abi::atomic_load(control.dequeue_pos, std::memory_order_acquire);
      if (now <= position) break;  // freed, but dequeue_pos not stored yet
      continue;
    }
    if (unpublished) break;
    taken += group.size();
    position += count;
    peek.groups.push_back(std::move(group));
  }
  peek.end_position = position;
  return peek;
}

}  // namespace shmtrace::reader
