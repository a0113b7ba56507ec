// The spill file (SPEC D5): while the database fails, committed-to-disk
// batches go here so the producers' slots can be handed back; when the
// database returns, replay() stores them in order and empties the file.
//
// Format: a sequence of frames [magic u32][length u32][FNV-1a 64 of the
// payload][payload], the payload a serialized Batch; the magic names the
// payload's format ("SPL1", "SPL2": spill_file.cpp), and every known one is
// read back. A frame is durable once
// append() returns (fdatasync). A torn frame at the end (the drain died in
// the middle of an append) is cut off at open: its records were never handed
// back, so shared memory still holds them. Replaying twice is harmless: the
// store's inserts are idempotent.
#ifndef SHMTRACE_DRAIN_SPILL_FILE_HPP
#define SHMTRACE_DRAIN_SPILL_FILE_HPP

#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <vector>

#include "store/batch.hpp"

namespace shmtrace::drain {

// Batch <-> bytes (exposed for the tests). `version`: the payload format,
// 1 ("SPL1" frames: no self time, no error symbols) or 2 ("SPL2", written).
inline constexpr std::uint32_t kSpillFormatVersion = 2;
std::vector<std::uint8_t> serialize(const Batch& batch, std::uint32_t version = kSpillFormatVersion);
std::expected<Batch, std::string> deserialize(const std::uint8_t* data, std::size_t size,
                                              std::uint32_t version = kSpillFormatVersion);

class SpillFile {
 public:
  static std::expected<SpillFile, std::string> open(const std::string& path, std::uint64_t max_bytes);
  SpillFile(SpillFile&& o) noexcept;
  SpillFile& operator=(SpillFile&& o) noexcept;
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;
  ~SpillFile();

  // Appends a batch durably. Fails, writing nothing, when the file would
  // grow past max_bytes or the disk refuses.
  std::expected<void, std::string> append(const Batch& batch);
  // Hands every batch to store, in order; stops at the first failure (the
  // file keeps everything). Empties the file once all are stored. A frame
  // that is whole (checksum right) but not a batch this drain can read (an
  // older drain's format) cannot ever be stored: it is appended to
  // <path>.rejected, reported through `rejected` (what, offset), and passed
  // over, so it does not block the batches after it.
  std::expected<std::uint64_t, std::string> replay(
      const std::function<std::expected<void, std::string>(const Batch&)>& store,
      const std::function<void(const std::string& why)>& rejected = {});

  std::uint64_t bytes() const { return size_; }
  std::uint64_t batches() const { return batches_; }
  const std::string& path() const { return path_; }

 private:
  SpillFile() = default;
  std::expected<void, std::string> keep_rejected(std::uint64_t at, std::size_t payload_size) const;
  int fd_ = -1;
  std::string path_;
  std::uint64_t max_bytes_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t batches_ = 0;
};

}  // namespace shmtrace::drain

#endif
