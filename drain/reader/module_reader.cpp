// The module map (P9), consumer side: ModuleMapHeader then ModuleEntry[capacity]
// at header.modules_offset. The runtime fills an entry, then raises count
// with a release store; everything below count is therefore complete and,
// the map being append-only, never changes again.
#include <string>
#include <string_view>

#include "reader/hex.hpp"
#include "reader/segment_impl.hpp"

namespace shmtrace::reader {

Result<std::vector<ModuleRecord>> Segment::modules() const {
  const detail::SegmentState& impl = *impl_;
  const abi::SegmentHeader& h = impl.header;
  std::vector<ModuleRecord> out;
  if (h.modules_size == 0) return out;  // a segment laid out without a module map
  // validate_header: modules_offset is 8-aligned and the region, at least one
  // ModuleMapHeader long, lies inside the mapping.
  const auto* map = impl.at<abi::ModuleMapHeader>(h.modules_offset);
  const std::string where = impl.where() + "module map: ";

  // Relaxed: written once by the creator before magic, which load_header
  // loaded with acquire.
  const std::uint32_t capacity = abi::atomic_load(map->capacity, std::memory_order_relaxed);
  const std::uint64_t room = (h.modules_size - sizeof(abi::ModuleMapHeader)) / sizeof(abi::ModuleEntry);
  if (capacity > room) {
    return std::unexpected(Error{where + "capacity " + std::to_string(capacity) +
                                 " does not fit modules_size " + std::to_string(h.modules_size) +
                                 " (room for " + std::to_string(room) + " entries)"});
  }
  // Acquire: pairs with the runtime's release store of count after it wrote
  // entry count-1, so entries [0, count) are complete.
  const std::uint32_t count = abi::atomic_load(map->count, std::memory_order_acquire);
  if (count > capacity) {
    return std::unexpected(Error{where + "count " + std::to_string(count) + " exceeds capacity " +
                                 std::to_string(capacity)});
  }

  out.reserve(count);
  const std::uint64_t entries_offset = h.modules_offset + sizeof(abi::ModuleMapHeader);
  for (std::uint32_t i = 0; i < count; ++i) {
    // A private copy: nothing read below can change between check and use.
    abi::ModuleEntry entry{};
    detail::copy_shared(&entry, impl.base + entries_offset + std::uint64_t{i} * sizeof entry,
                        sizeof entry);
    const std::string field = where + "entry " + std::to_string(i) + ": ";
    if (entry.build_id_size > sizeof entry.build_id) {
      return std::unexpected(Error{field + "build_id_size " + std::to_string(entry.build_id_size) +
                                   " exceeds " + std::to_string(sizeof entry.build_id)});
    }
    if (entry.size == 0 || entry.base > UINT64_MAX - entry.size) {
      return std::unexpected(Error{field + "size " + std::to_string(entry.size) + " at base " +
                                   std::to_string(entry.base) + " is empty or wraps"});
    }
    if (entry.path_id == 0) {
      return std::unexpected(Error{field + "path_id is 0 (no path)"});
    }
    auto path = string(entry.path_id);
    if (!path) {
      // Its message starts with the segment's name, already in `field`.
      std::string_view why = path.error().message;
      if (why.starts_with(impl.where())) why.remove_prefix(impl.where().size());
      return std::unexpected(Error{field + "path_id " + std::to_string(entry.path_id) + ": " +
                                   std::string(why)});
    }
    if (path->empty()) {
      return std::unexpected(Error{field + "path_id " + std::to_string(entry.path_id) +
                                   " names an empty path"});
    }
    out.push_back(ModuleRecord{entry.base, entry.size, std::string(*path),
                               to_hex(entry.build_id, entry.build_id_size)});
  }
  return out;
}

}  // namespace shmtrace::reader
