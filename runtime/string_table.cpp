#include "string_table.hpp"

#include <cstring>

namespace shmtrace::runtime {
namespace {

std::uint64_t hash_text(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : s) {
    h = (h ^ c) * 0x100000001b3ull;
  }
  return h ^ (h >> 29);
}

constexpr std::uint32_t entry_bytes(std::size_t length) {
  return static_cast<std::uint32_t>((sizeof(abi::StringEntry) + length + 3) & ~std::size_t{3});
}

}  // namespace

StringTable::StringTable(void* table, abi::SegmentHeader* header)
    : table_(static_cast<std::byte*>(table)),
      control_(static_cast<abi::StringTableHeader*>(table)),
      header_(header),
      index_(new std::uint32_t[kIndexSize]()) {}

StringTable::~StringTable() = default;

std::uint32_t StringTable::append(std::string_view text, std::uint8_t flags) noexcept {
  const std::uint32_t bytes = entry_bytes(text.size());
  // A full table stays full: checking first keeps `used` from wrapping
  // around under a storm of rejected interns.
  if (abi::atomic_load(control_->used, std::memory_order_relaxed) >= control_->capacity) {
    abi::atomic_fetch_add(header_->strings_rejected, std::uint64_t{1}, std::memory_order_relaxed);
    return 0;
  }
  // Claims space; the entry becomes readable once `ready` is stored below.
  const std::uint32_t offset = abi::atomic_fetch_add(control_->used, bytes, std::memory_order_relaxed);
  if (offset > control_->capacity || bytes > control_->capacity - offset) {
    abi::atomic_fetch_add(header_->strings_rejected, std::uint64_t{1}, std::memory_order_relaxed);
    return 0;
  }
  auto* entry = reinterpret_cast<abi::StringEntry*>(table_ + offset);
  entry->length = static_cast<std::uint16_t>(text.size());
  entry->flags = flags;
  std::memcpy(table_ + offset + sizeof(abi::StringEntry), text.data(), text.size());
  // Publishes length, flags and text; pairs with the reader's acquire load.
  abi::atomic_store(entry->ready, std::uint8_t{1}, std::memory_order_release);
  abi::atomic_fetch_add(control_->count, std::uint32_t{1}, std::memory_order_relaxed);
  return offset;
}

bool StringTable::equals(std::uint32_t id, std::string_view text) const noexcept {
  return this->text(id) == text;
}

std::string_view StringTable::text(std::uint32_t id) const noexcept {
  if (id == 0) return {};
  const auto* entry = reinterpret_cast<const abi::StringEntry*>(table_ + id);
  return {reinterpret_cast<const char*>(table_ + id + sizeof(abi::StringEntry)), entry->length};
}

std::uint8_t StringTable::flags(std::uint32_t id) const noexcept {
  if (id == 0) return 0;
  return reinterpret_cast<const abi::StringEntry*>(table_ + id)->flags;
}

std::uint32_t StringTable::intern(std::string_view text, std::uint8_t flags) noexcept {
  if (text.size() > abi::kMaxStringLength) text = text.substr(0, abi::kMaxStringLength);
  const std::uint64_t h = hash_text(text);
  for (std::uint32_t probe = 0; probe < kIndexSize; ++probe) {
    std::uint32_t& slot = index_[(h + probe) & (kIndexSize - 1)];
    // Pairs with the release CAS below: the entry's text is visible.
    std::uint32_t id = abi::atomic_load(slot, std::memory_order_acquire);
    if (id == 0) {
      const std::uint32_t fresh = append(text, flags);
      if (fresh == 0) return 0;
      std::uint32_t expected = 0;
      // Publishes the entry to other interning threads.
      if (abi::atomic_cas(slot, expected, fresh, std::memory_order_acq_rel)) return fresh;
      id = expected;  // another thread filled the slot first
    }
    if (equals(id, text)) return id;
  }
  // Index full: still correct, just not deduplicated.
  return append(text, flags);
}

}  // namespace shmtrace::runtime
