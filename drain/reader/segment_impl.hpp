// Private to the reader library: the state behind Segment, and the helpers
// its translation units share (careful file opening, mappings, copies out of
// shared memory, segment names).
#ifndef SHMTRACE_READER_SEGMENT_IMPL_HPP
#define SHMTRACE_READER_SEGMENT_IMPL_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "reader/reader.hpp"

namespace shmtrace::reader::detail {

// An owned mmap; unmapped on destruction. Listed in the fault registry
// (install_fault_handler) from construction to destruction, so a SIGBUS in
// it is survived and remembered (faulted()).
class Mapping {
 public:
  Mapping() = default;
  // Takes `base` (an mmap of `size` bytes) over; guarded() false when the
  // registry is full or the handler could not be installed.
  Mapping(void* base, std::uint64_t size, bool writable);
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::byte* base() const { return base_; }
  std::uint64_t size() const { return size_; }
  explicit operator bool() const { return base_ != nullptr; }
  bool guarded() const { return guard_ >= 0; }
  // A SIGBUS hit it: from the faulting page on it reads zeros.
  bool faulted() const;

 private:
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  int guard_ = -1;  // slot in the fault registry, -1: none
};

// The fault registry behind Mapping (shm_file.cpp): a slot index, or -1.
int guard_mapping(const void* base, std::uint64_t size, bool writable) noexcept;
void unguard_mapping(int slot) noexcept;
bool mapping_faulted(int slot) noexcept;

// True when every byte of [offset, offset + size) of the file lies in
// allocated pages (SEEK_HOLE finds no hole there), so reading it through a
// mapping allocates nothing.
bool file_written(int fd, std::uint64_t offset, std::uint64_t size) noexcept;

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

// Opens `path` (in a directory other users can write: /dev/shm, a spill
// directory) without following a symlink and without blocking (a FIFO opens
// at once and is refused), then insists on a regular file owned by
// `allowed_uid`, with exactly one link, from `min_size` to `max_size` bytes
// long. A missing file (or one unlinked meanwhile) is reported with
// `missing` set, so callers can tell "absent" from "bad".
struct OpenError {
  Error error;
  bool missing = false;
};
std::expected<OpenedFile, OpenError> open_checked(const std::string& path, bool writable,
                                                  std::uint32_t allowed_uid, std::uint64_t min_size,
                                                  std::uint64_t max_size = UINT64_MAX);

// What lies at `path`, seen without following a symlink (lstat): nothing,
// the owner's own regular file with one link (one we may remove), or
// anything else, which another user may have planted and is left alone. In
// a sticky directory (/dev/shm, /tmp) no one else can replace the owner's
// file between this look and an unlink.
enum class PathKind { kAbsent, kOwners, kForeign };
PathKind classify_path(const std::string& path, std::uint32_t owner_uid);

// Maps an opened file whole, MAP_SHARED, guarded against SIGBUS (an error
// when the fault registry is full).
Result<Mapping> map_file(const OpenedFile& file, bool writable, const std::string& path);

// Copies bytes out of shared memory with relaxed 8-byte atomic loads, so a
// field another thread stores atomically meanwhile is never a data race.
// `src` must be 8-aligned and `size` a multiple of 8.
void copy_shared(void* dst, const std::byte* src, std::size_t size);

// "shmtrace.<pid>.<nonce as 16 lowercase hex digits>".
std::string segment_name(std::uint32_t pid, std::uint64_t nonce, std::string_view session = {});
// Parses such a name; nullopt when it does not match the pattern exactly.
struct ParsedName {
  std::string session;  // "" for a segment of no session
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
  UniqueFd fd;           // the mapped file, for residency queries; -1 for from_memory()
  std::uint32_t allowed_uid = 0;  // owner required of error chunks and the spill file
  abi::SegmentHeader header{};    // validated copy

  // The header's session id ("" for none); validate_header checked it.
  std::string session() const {
    return std::string(header.session, ::strnlen(header.session, sizeof header.session));
  }
  std::optional<ClockConverter> clock;
  // Per ring (attach only): 1 once its whole slot was seen allocated. Sticky:
  // tmpfs pages stay allocated (a truncation is the fault handler's case).
  std::unique_ptr<std::atomic<std::uint8_t>[]> ring_whole;

  // Caches, filled lazily by const readers; guarded by `mutex`.
  mutable std::mutex mutex;
  // By chunk index; null = not mapped yet. Boxed so a mapping handed out
  // stays put while another reader grows the vector.
  mutable std::vector<std::unique_ptr<Mapping>> chunks;
  mutable std::unordered_map<std::uint32_t, std::string> strings;  // ready strings never change
  // Rings [hole_from, hole_until) start in a hole the file showed while a
  // walk asked for ring hole_from; valid for the later rings of that walk
  // only: while each ring asked for is above the one asked before
  // (last_ring). See Segment::attach in reader.hpp.
  mutable std::uint32_t hole_from = 0;
  mutable std::uint32_t hole_until = 0;
  mutable std::uint32_t last_ring = UINT32_MAX;
  // Set once a refused spill file was reported (ErrorBatch::warning), so
  // the drain says it once per segment, not at every read.
  mutable std::atomic<bool> spill_refusal_reported{false};

  // How much of a ring slot the file holds: nothing of its control block
  // (the ring reads as free and empty, untouched), its control block but
  // not the whole slot (check each range before reading it), or all of it.
  enum class Residency { kNone, kControl, kWhole };
  Residency ring_residency(std::uint32_t ring) const;  // ring < max_rings (ring_reader.cpp)
  // file_written() for the mapped file; always true for from_memory().
  bool written(std::uint64_t offset, std::uint64_t size) const {
    return fd.get() < 0 || file_written(fd.get(), offset, size);
  }

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
