// Producer side of the shared overflow area (the MPSC protocol in abi.hpp).
// Slow path only: a thread comes here when its own ring is full, or when it
// has no ring at all.
#ifndef SHMTRACE_RUNTIME_OVERFLOW_WRITER_HPP
#define SHMTRACE_RUNTIME_OVERFLOW_WRITER_HPP

#include <cstdint>

#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

struct OverflowOrigin {
  std::uint32_t ring_index = abi::kNoRing;
  std::uint32_t generation = 0;
  std::uint32_t tid = 0;
};

class OverflowWriter {
 public:
  OverflowWriter() = default;
  explicit OverflowWriter(void* area);

  // Stores `count` records as one group, all or nothing. False when the area
  // has no room for the whole group (the caller counts the drop).
  [[nodiscard]] bool try_write(const abi::Record* records, std::uint32_t count,
                               const OverflowOrigin& origin) noexcept;

  std::uint32_t capacity() const { return capacity_; }

 private:
  abi::OverflowControl* control_ = nullptr;
  abi::OverflowSlot* slots_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t lap_shift_ = 0;
};

}  // namespace shmtrace::runtime

#endif
