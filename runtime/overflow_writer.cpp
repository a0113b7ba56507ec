#include "overflow_writer.hpp"

#include <bit>

namespace shmtrace::runtime {

OverflowWriter::OverflowWriter(void* area)
    : control_(static_cast<abi::OverflowControl*>(area)),
      slots_(reinterpret_cast<abi::OverflowSlot*>(static_cast<std::byte*>(area) + sizeof(abi::OverflowControl))),
      capacity_(control_->capacity),
      lap_shift_(static_cast<std::uint32_t>(std::countr_zero(control_->capacity))) {}

bool OverflowWriter::try_write(const abi::Record* records, std::uint32_t count,
                               const OverflowOrigin& origin) noexcept {
  if (control_ == nullptr || count == 0 || count > capacity_ || count > 0xffff) return false;
  const std::uint64_t mask = capacity_ - 1;
  std::uint64_t pos = abi::atomic_load(control_->enqueue_pos, std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t last = pos + count - 1;
    const abi::OverflowSlot& last_slot = slots_[last & mask];
    // Pairs with the consumer's release store that freed the slot: once the
    // last slot of the group is free for its lap, all before it are too (the
    // consumer frees in order).
    const std::uint64_t seq = abi::atomic_load(last_slot.sequence, std::memory_order_acquire);
    const std::uint64_t want = 2 * (last >> lap_shift_);
    if (seq != want) {
      if (seq < want) return false;  // not yet consumed: full
      // Another producer already moved past `pos`; reload and retry.
      pos = abi::atomic_load(control_->enqueue_pos, std::memory_order_relaxed);
      continue;
    }
    // Claims positions pos..last; on failure `pos` holds the new value.
    if (abi::atomic_cas(control_->enqueue_pos, pos, pos + count, std::memory_order_acq_rel)) break;
  }
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t p = pos + i;
    abi::OverflowSlot& slot = slots_[p & mask];
    slot.ring_index = origin.ring_index;
    slot.generation = origin.generation;
    slot.tid = origin.tid;
    slot.group_count = static_cast<std::uint16_t>(i == 0 ? count : 0);
    slot.group_index = static_cast<std::uint16_t>(i);
    slot.record = records[i];
    // Publishes the slot; pairs with the consumer's acquire load.
    abi::atomic_store(slot.sequence, 2 * (p >> lap_shift_) + 1, std::memory_order_release);
  }
  return true;
}

}  // namespace shmtrace::runtime
