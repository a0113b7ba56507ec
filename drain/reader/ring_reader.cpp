// Per-thread SPSC rings, consumer side (protocol at the top of abi.hpp).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {

detail::SegmentState::Residency detail::SegmentState::ring_residency(std::uint32_t ring) const {
  // Relaxed: a flag about the file, not about memory another thread wrote.
  if (fd.get() < 0 || ring_whole[ring].load(std::memory_order_relaxed) != 0) return Residency::kWhole;
  std::lock_guard lock(mutex);
  const std::uint32_t previous = last_ring;
  last_ring = ring;
  // Holes seen earlier in this ascending walk (see Segment::attach).
  if (previous < ring && ring >= hole_from && ring < hole_until) return Residency::kNone;
  hole_from = hole_until = 0;
  const std::uint64_t offset = abi::ring_offset(header, ring);
  const off_t data = ::lseek(fd.get(), static_cast<off_t>(offset), SEEK_DATA);
  // A file system that cannot tell (none that /dev/shm can be) is read as
  // before: silently skipping a ring would lose its records.
  if (data < 0 && errno != ENXIO) return Residency::kWhole;
  if (data < 0 || static_cast<std::uint64_t>(data) > offset) {
    // The control block's first byte lies in a hole: never written. So are
    // the rings after it that start before the next data (all of them when
    // there is none: ENXIO).
    const std::uint64_t next = data < 0 ? UINT64_MAX : static_cast<std::uint64_t>(data);
    const std::uint64_t until = next == UINT64_MAX
                                    ? header.max_rings
                                    : (next - header.rings_offset + header.ring_stride - 1) / header.ring_stride;
    hole_from = ring;
    hole_until = static_cast<std::uint32_t>(std::min<std::uint64_t>(until, header.max_rings));
    return Residency::kNone;
  }
  if (written(offset, header.ring_stride)) {
    // Relaxed: see the load above.
    ring_whole[ring].store(1, std::memory_order_relaxed);
    return Residency::kWhole;
  }
  return written(offset, sizeof(abi::RingControl)) ? Residency::kControl : Residency::kNone;
}

namespace {

using Residency = detail::SegmentState::Residency;

struct RingView {
  abi::RingControl* control;
  const std::byte* records;  // Record[capacity]
};

Result<RingView> ring_view(const detail::SegmentState& impl, std::uint32_t ring) {
  if (ring >= impl.header.max_rings) {
    return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) +
                                 " out of range (max_rings " +
                                 std::to_string(impl.header.max_rings) + ")"});
  }
  // In range: validate_header checked max_rings * ring_stride fits.
  const std::uint64_t offset = abi::ring_offset(impl.header, ring);
  return RingView{impl.at<abi::RingControl>(offset),
                  impl.base + offset + abi::ring_records_offset()};
}

struct Indices {
  std::uint64_t head;
  std::uint64_t tail;
};

Result<Indices> load_indices(const detail::SegmentState& impl, std::uint32_t ring,
                             const abi::RingControl& control) {
  // Acquire: pairs with the producer's release store of head, which
  // publishes the records before it.
  const std::uint64_t head = abi::atomic_load(control.head, std::memory_order_acquire);
  // Relaxed: the consumer is tail's only writer.
  const std::uint64_t tail = abi::atomic_load(control.tail, std::memory_order_relaxed);
  if (head < tail || head - tail > impl.header.ring_capacity) {
    return std::unexpected(Error{impl.where() + "ring " + std::to_string(ring) +
                                 " untrusted: head " + std::to_string(head) + " - tail " +
                                 std::to_string(tail) + " exceeds capacity " +
                                 std::to_string(impl.header.ring_capacity)});
  }
  return Indices{head, tail};
}

}  // namespace

Result<RingInfo> Segment::ring_info(std::uint32_t ring) const {
  auto view = ring_view(*impl_, ring);
  if (!view) return std::unexpected(view.error());
  RingInfo info;
  info.index = ring;
  // Never written: all zero, which reads as a free, empty ring.
  if (impl_->ring_residency(ring) == Residency::kNone) return info;
  const abi::RingControl& c = *view->control;
  // Acquire: pairs with the release of state when a ring is given back, so
  // its last owner's head and counters are visible.
  const std::uint32_t state = abi::atomic_load(c.state, std::memory_order_acquire);
  // Acquire: pairs with the claim's release store of claimed_ticks, written
  // after its generation, tid and name, so the three read below belong to
  // the claim (or a later one).
  info.claimed_ticks = abi::atomic_load(c.claimed_ticks, std::memory_order_acquire);
  if (state > static_cast<std::uint32_t>(abi::RingState::kReleased)) {
    return std::unexpected(Error{impl_->where() + "ring " + std::to_string(ring) + " state " +
                                 std::to_string(state) + " is unknown"});
  }
  info.state = static_cast<abi::RingState>(state);
  // Relaxed below: snapshots of fields ordered by the acquires above, or
  // single-writer counters whose staleness is tolerated.
  info.generation = abi::atomic_load(c.generation, std::memory_order_relaxed);
  info.tid = abi::atomic_load(c.tid, std::memory_order_relaxed);
  char name[sizeof c.thread_name + 8] = {};
  detail::copy_shared(name, reinterpret_cast<const std::byte*>(c.thread_name),
                      sizeof c.thread_name);
  info.thread_name.assign(name, ::strnlen(name, sizeof c.thread_name));
  info.head = abi::atomic_load(c.head, std::memory_order_acquire);  // pairs with producer's release
  info.tail = abi::atomic_load(c.tail, std::memory_order_relaxed);  // consumer-owned
  info.written = info.head;  // head counts every record ever stored in the ring
  info.overflowed = abi::atomic_load(c.overflowed, std::memory_order_relaxed);
  info.dropped = abi::atomic_load(c.dropped, std::memory_order_relaxed);
  info.blocked_ns = abi::atomic_load(c.blocked_ns, std::memory_order_relaxed);
  return info;
}

Result<RingBatch> Segment::read_ring(std::uint32_t ring, std::size_t max_records) const {
  auto view = ring_view(*impl_, ring);
  if (!view) return std::unexpected(view.error());
  RingBatch batch;
  batch.ring = ring;
  const Residency residency = impl_->ring_residency(ring);
  if (residency == Residency::kNone) return batch;  // never written: empty at position 0
  auto indices = load_indices(*impl_, ring, *view->control);
  if (!indices) return std::unexpected(indices.error());
  const std::uint64_t capacity = impl_->header.ring_capacity;
  const std::uint64_t available = indices->head - indices->tail;
  const std::uint64_t count = std::min<std::uint64_t>(available, max_records);
  batch.first_position = indices->tail;
  batch.end_position = indices->tail + count;
  // Copy in at most two runs: up to the end of the array, then from slot 0.
  const std::uint64_t first_slot = indices->tail & (capacity - 1);
  const std::uint64_t first_run = std::min(count, capacity - first_slot);
  if (residency == Residency::kControl) {
    // Part of the slot is a hole: the records claimed must all be in pages
    // the producer wrote (zero pages would be records of kind 0 anyway).
    const std::uint64_t records_at = abi::ring_offset(impl_->header, ring) + abi::ring_records_offset();
    const bool written =
        impl_->written(records_at + first_slot * sizeof(abi::Record), first_run * sizeof(abi::Record)) &&
        impl_->written(records_at, (count - first_run) * sizeof(abi::Record));
    if (!written) {
      return std::unexpected(Error{impl_->where() + "ring " + std::to_string(ring) + " untrusted: records [" +
                                   std::to_string(batch.first_position) + ", " + std::to_string(batch.end_position) +
                                   ") lie in pages never written"});
    }
  }
  batch.records.resize(static_cast<std::size_t>(count));
  if (first_run != 0) {
    std::memcpy(batch.records.data(), view->records + first_slot * sizeof(abi::Record),
                static_cast<std::size_t>(first_run) * sizeof(abi::Record));
  }
  if (count > first_run) {
    std::memcpy(batch.records.data() + first_run, view->records,
                static_cast<std::size_t>(count - first_run) * sizeof(abi::Record));
  }
  return batch;
}

Result<void> Segment::commit_ring(std::uint32_t ring, std::uint64_t end_position) {
  if (impl_->access != Access::kConsume) {
    return std::unexpected(Error{impl_->where() + "commit_ring needs consume access"});
  }
  auto view = ring_view(*impl_, ring);
  if (!view) return std::unexpected(view.error());
  if (impl_->ring_residency(ring) == Residency::kNone) {
    // Never written, so nothing was read from it: position 0 is all it has,
    // and storing that tail would only allocate the page.
    if (end_position == 0) return {};
    return std::unexpected(Error{impl_->where() + "ring " + std::to_string(ring) + ": commit position " +
                                 std::to_string(end_position) + " in a ring never written"});
  }
  auto indices = load_indices(*impl_, ring, *view->control);
  if (!indices) return std::unexpected(indices.error());
  if (end_position < indices->tail || end_position > indices->head) {
    return std::unexpected(Error{impl_->where() + "ring " + std::to_string(ring) +
                                 ": commit position " + std::to_string(end_position) +
                                 " outside [tail " + std::to_string(indices->tail) + ", head " +
                                 std::to_string(indices->head) + "]"});
  }
  // Release: pairs with the producer's acquire load of tail; our reads of
  // the slots happen before it may overwrite them.
  abi::atomic_store(view->control->tail, end_position, std::memory_order_release);
  return {};
}

}  // namespace shmtrace::reader
