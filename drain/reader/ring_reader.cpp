// Per-thread SPSC rings, consumer side (protocol at the top of abi.hpp).
#include <algorithm>
#include <cstring>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {
namespace {

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
  const abi::RingControl& c = *view->control;
  RingInfo info;
  info.index = ring;
  // Acquire: pairs with the claim CAS / release store of state, so the
  // generation, tid and name written with the claim are visible.
  const std::uint32_t state = abi::atomic_load(c.state, std::memory_order_acquire);
  if (state > static_cast<std::uint32_t>(abi::RingState::kReleased)) {
    return std::unexpected(Error{impl_->where() + "ring " + std::to_string(ring) + " state " +
                                 std::to_string(state) + " is unknown"});
  }
  info.state = static_cast<abi::RingState>(state);
  // Relaxed below: snapshots of fields ordered by the acquire above, or
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
  auto indices = load_indices(*impl_, ring, *view->control);
  if (!indices) return std::unexpected(indices.error());
  const std::uint64_t capacity = impl_->header.ring_capacity;
  const std::uint64_t available = indices->head - indices->tail;
  const std::uint64_t count = std::min<std::uint64_t>(available, max_records);
  RingBatch batch;
  batch.ring = ring;
  batch.first_position = indices->tail;
  batch.end_position = indices->tail + count;
  batch.records.resize(static_cast<std::size_t>(count));
  // Copy in at most two runs: up to the end of the array, then from slot 0.
  const std::uint64_t first_slot = indices->tail & (capacity - 1);
  const std::uint64_t first_run = std::min(count, capacity - first_slot);
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
