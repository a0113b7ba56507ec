// Interning into the segment's string table (abi::StringTableHeader).
// Lock-free: many threads may intern at once. A process-local open-addressed
// index maps text to ids, so the same text gets the same id; two threads
// racing on one new text may each append an entry, and one entry wins the
// index slot (the other is wasted space, never a wrong id).
#ifndef SHMTRACE_RUNTIME_STRING_TABLE_HPP
#define SHMTRACE_RUNTIME_STRING_TABLE_HPP

#include <cstdint>
#include <memory>
#include <string_view>

#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

class StringTable {
 public:
  // `table` is the start of the string region, already initialised.
  StringTable(void* table, abi::SegmentHeader* header);
  ~StringTable();
  StringTable(const StringTable&) = delete;
  StringTable& operator=(const StringTable&) = delete;

  // Returns the id of `text` (truncated to kMaxStringLength), 0 when the
  // table is full (counted in SegmentHeader.strings_rejected).
  std::uint32_t intern(std::string_view text, std::uint8_t flags) noexcept;

  // Reads back an entry this process wrote (ids come from intern()).
  std::string_view text(std::uint32_t id) const noexcept;
  std::uint8_t flags(std::uint32_t id) const noexcept;

 private:
  std::uint32_t append(std::string_view text, std::uint8_t flags) noexcept;
  bool equals(std::uint32_t id, std::string_view text) const noexcept;

  static constexpr std::uint32_t kIndexSize = 1u << 16;  // ids per process before linear fallback
  std::byte* table_;
  abi::StringTableHeader* control_;
  abi::SegmentHeader* header_;
  std::unique_ptr<std::uint32_t[]> index_;  // 0 = empty; atomic_ref access
};

}  // namespace shmtrace::runtime

#endif
