// Private to the reader library: the state behind Segment, and the helpers
// its translation units share (careful file opening, mappings, copies out of
// shared memory, segment names).
#ifndef SHMTRACE_READER_SEGMENT_IMPL_HPP
#define SHMTRACE_READER_SEGMENT_IMPL_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "reader/reader.hpp"

namespace shmtrace::reader::detail {

// An owned mmap; unmapped on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* base, std::uint64_t size) : base_(static_cast<std::byte*>(base)), size_(size) {}
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::byte* base() const { return base_; }
  std::uint64_t size() const { return size_; }
  explicit operator bool() const { return base_ != nullptr; }

 private:
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
};

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

struct OpenedFile {
  UniqueFd fd;
  std::uint64_t size = 0;
};

// Opens `path` without following a symlink, then insists on a regular file
// owned by `allowed_uid` and at least `min_size` bytes long. A missing file
// is reported with `missing` set, so callers can tell "absent" from "bad".
struct OpenError {
  Error error;
  bool missing = false;
};
std::expected<OpenedFile, OpenError> open_checked(const std::string& path, bool writable,
                                                  std::uint32_t allowed_uid,
                                                  std::uint64_t min_size);

// Maps an opened file whole, MAP_SHARED.
Result<Mapping> map_file(const OpenedFile& file, bool writable, const std::string& path);

// Copies bytes out of shared memory with relaxed 8-byte atomic loads, so a
// field another thread stores atomically meanwhile is never a data race.
// `src` must be 8-aligned and `size` a multiple of 8.
void copy_shared(void* dst, const std::byte* src, std::size_t size);

// "shmtrace.<pid>.<nonce as 16 lowercase hex digits>".
std::string segment_name(std::uint32_t pid, std::uint64_t nonce);
// Parses such a name; nullopt when it does not match the pattern exactly.
struct ParsedName {
  std::uint32_t pid = 0;
  std::uint64_t nonce = 0;
};
std::optional<ParsedName> parse_segment_name(std::string_view name);

inline constexpr char kShmDir[] = "/dev/shm";

}  // namespace shmtrace::reader::detail

namespace shmtrace::reader::detail {

// Everything a Segment holds. A plain struct in detail (Segment::Impl derives
// from it) so the helpers in each reader file can take it by reference.
struct SegmentState {
  std::string name;
  Access access = Access::kReadOnly;
  std::byte* base = nullptr;  // the mapped segment (owned by `mapping`, or by the caller)
  std::uint64_t mapped_size = 0;
  Mapping mapping;       // empty for from_memory()
  std::uint32_t allowed_uid = 0;  // owner required of error chunks and the spill file
  abi::SegmentHeader header{};    // validated copy
  std::optional<ClockConverter> clock;

  // Caches, filled lazily by const readers; guarded by `mutex`.
  mutable std::mutex mutex;
  // By chunk index; null = not mapped yet. Boxed so a mapping handed out
  // stays put while another reader grows the vector.
  mutable std::vector<std::unique_ptr<Mapping>> chunks;
  mutable std::unordered_map<std::uint32_t, std::string> strings;  // ready strings never change

  std::string where() const { return "segment " + name + ": "; }
  template <class T>
  T* at(std::uint64_t offset) const {
    return reinterpret_cast<T*>(base + offset);
  }
  abi::SegmentHeader* live_header() const { return at<abi::SegmentHeader>(0); }
};

}  // namespace shmtrace::reader::detail

namespace shmtrace::reader {

struct Segment::Impl : detail::SegmentState {};

}  // namespace shmtrace::reader

#endif  // SHMTRACE_READER_SEGMENT_IMPL_HPP
