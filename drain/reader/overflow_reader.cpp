// The shared overflow area, consumer side (protocol at the top of abi.hpp):
// slot sequence 2*lap is free, 2*lap+1 published; groups are taken whole.
#include <cstring>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {
namespace {

struct OverflowView {
  abi::OverflowControl* control;
  abi::OverflowSlot* slots;
  std::uint64_t capacity;

  abi::OverflowSlot& slot(std::uint64_t position) const {
    return slots[position & (capacity - 1)];
  }
  std::uint64_t lap(std::uint64_t position) const { return position / capacity; }
};

OverflowView overflow_view(const detail::SegmentState& impl) {
  // validate_header checked the control block and capacity slots fit.
  const std::uint64_t offset = impl.header.overflow_offset;
  return OverflowView{impl.at<abi::OverflowControl>(offset),
                      impl.at<abi::OverflowSlot>(offset + sizeof(abi::OverflowControl)),
                      impl.header.overflow_capacity};
}

enum class SlotState { kFree, kPublished };

// Reads one slot's sequence for `position`; anything but "free for this lap"
// or "published for this lap" means the area cannot be trusted.
Result<SlotState> slot_state(const detail::SegmentState& impl, const OverflowView& view,
                             std::uint64_t position) {
  // Acquire: pairs with the producer's release store of 2*lap+1 after it
  // wrote the slot.
  const std::uint64_t sequence =
      abi::atomic_load(view.slot(position).sequence, std::memory_order_acquire);
  const std::uint64_t lap = view.lap(position);
  if (sequence == 2 * lap + 1) return SlotState::kPublished;
  if (sequence == 2 * lap) return SlotState::kFree;
  return std::unexpected(Error{impl.where() + "overflow slot " +
                               std::to_string(position & (view.capacity - 1)) + " sequence " +
                               std::to_string(sequence) + " is invalid at position " +
                               std::to_string(position)});
}

}  // namespace

Result<OverflowBatch> Segment::read_overflow(std::size_t max_records) const {
  const OverflowView view = overflow_view(*impl_);
  // Relaxed: the consumer is dequeue_pos's only writer.
  const std::uint64_t start = abi::atomic_load(view.control->dequeue_pos, std::memory_order_relaxed);
  OverflowBatch batch;
  batch.first_position = start;
  std::uint64_t position = start;
  // Never look more than one lap ahead of dequeue_pos: slots past it still
  // hold this batch's own, not yet committed, records.
  while (batch.entries.size() < max_records && position - start < view.capacity) {
    auto first_state = slot_state(*impl_, view, position);
    if (!first_state) return std::unexpected(first_state.error());
    if (*first_state != SlotState::kPublished) break;
    abi::OverflowSlot first{};
    std::memcpy(&first, &view.slot(position), sizeof first);
    if (first.group_count == 0 || first.group_count > view.capacity || first.group_index != 0) {
      return std::unexpected(Error{impl_->where() + "overflow group at position " +
                                   std::to_string(position) + ": group_count " +
                                   std::to_string(first.group_count) + " / group_index " +
                                   std::to_string(first.group_index) + " invalid (capacity " +
                                   std::to_string(view.capacity) + ")"});
    }
    // Whole groups only; a group larger than max_records is still taken
    // alone, or the reader could never move past it.
    if (!batch.entries.empty() && batch.entries.size() + first.group_count > max_records) break;
    if (position + first.group_count - start > view.capacity) break;
    std::vector<OverflowEntry> group;
    group.reserve(first.group_count);
    bool complete = true;
    for (std::uint64_t k = 0; k < first.group_count; ++k) {
      const std::uint64_t p = position + k;
      abi::OverflowSlot copy{};
      if (k == 0) {
        copy = first;
      } else {
        auto state = slot_state(*impl_, view, p);
        if (!state) return std::unexpected(state.error());
        if (*state != SlotState::kPublished) {
          complete = false;
          break;
        }
        std::memcpy(&copy, &view.slot(p), sizeof copy);
        if (copy.group_index != k || copy.group_count != 0) {
          return std::unexpected(Error{impl_->where() + "overflow slot at position " +
                                       std::to_string(p) + ": group_index " +
                                       std::to_string(copy.group_index) + ", expected " +
                                       std::to_string(k)});
        }
      }
      OverflowEntry entry;
      entry.position = p;
      entry.ring_index = copy.ring_index;
      entry.generation = copy.generation;
      entry.tid = copy.tid;
      entry.record = copy.record;
      group.push_back(entry);
    }
    if (!complete) break;
    batch.entries.insert(batch.entries.end(), group.begin(), group.end());
    position += first.group_count;
  }
  batch.end_position = position;
  return batch;
}

Result<void> Segment::commit_overflow(const OverflowBatch& batch) {
  if (impl_->access != Access::kConsume) {
    return std::unexpected(Error{impl_->where() + "commit_overflow needs consume access"});
  }
  const OverflowView view = overflow_view(*impl_);
  // Relaxed: the consumer is dequeue_pos's only writer.
  const std::uint64_t current =
      abi::atomic_load(view.control->dequeue_pos, std::memory_order_relaxed);
  if (batch.first_position != current || batch.end_position < batch.first_position ||
      batch.end_position - batch.first_position != batch.entries.size() ||
      batch.end_position - batch.first_position > view.capacity) {
    return std::unexpected(Error{impl_->where() + "overflow batch [" +
                                 std::to_string(batch.first_position) + ", " +
                                 std::to_string(batch.end_position) +
                                 ") does not start at dequeue_pos " + std::to_string(current) +
                                 " or does not match its entries"});
  }
  for (std::uint64_t p = batch.first_position; p < batch.end_position; ++p) {
    auto state = slot_state(*impl_, view, p);
    if (!state) return std::unexpected(state.error());
    if (*state != SlotState::kPublished) {
      return std::unexpected(Error{impl_->where() + "overflow position " + std::to_string(p) +
                                   " is not published, cannot commit"});
    }
  }
  for (std::uint64_t p = batch.first_position; p < batch.end_position; ++p) {
    // Release: pairs with the producer's acquire load of the sequence that
    // finds the slot free for the next lap; our copy happens before.
    abi::atomic_store(view.slot(p).sequence, 2 * (view.lap(p) + 1), std::memory_order_release);
  }
  // Release: informational for producers and tools; pairs with their acquire
  // loads of dequeue_pos.
  abi::atomic_store(view.control->dequeue_pos, batch.end_position, std::memory_order_release);
  return {};
}

}  // namespace shmtrace::reader
