// A named POSIX shared-memory object created with Boost.Interprocess, mode
// 0600, mapped read-write for the life of the process. Used for the segment
// and for each error chunk. Creation failures come back as a message; the
// runtime turns the segment's into its single stderr line (P12).
#ifndef SHMTRACE_RUNTIME_SEGMENT_HPP
#define SHMTRACE_RUNTIME_SEGMENT_HPP

#include <cstdint>
#include <expected>
#include <memory>
#include <string>

namespace boost::interprocess {
class shared_memory_object;
class mapped_region;
}  // namespace boost::interprocess

namespace shmtrace::runtime {

class SharedObject {
 public:
  enum class Mode { kCreate, kCreateOrOpen };

  // Creates (or, with kCreateOrOpen, opens an existing) object of exactly
  // `size` bytes, reserves the first `reserve_bytes` of it in the shm
  // filesystem (fallocate, so a full /dev/shm is an error here and never a
  // SIGBUS later) and maps it. `created` tells which happened.
  static std::expected<SharedObject, std::string> create(const std::string& name, std::uint64_t size,
                                                         std::uint64_t reserve_bytes, Mode mode,
                                                         bool* created = nullptr);

  SharedObject();
  SharedObject(SharedObject&& other) noexcept;
  SharedObject& operator=(SharedObject&& other) noexcept;
  ~SharedObject();

  // Reserves [offset, offset+length) in the filesystem and touches its pages
  // so later writes take no page fault. False when shared memory is full.
  bool reserve(std::uint64_t offset, std::uint64_t length) noexcept;

  void* base() const { return base_; }
  std::uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::unique_ptr<boost::interprocess::shared_memory_object> shm_;
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  void* base_ = nullptr;
  std::uint64_t size_ = 0;
  int fd_ = -1;
};

}  // namespace shmtrace::runtime

#endif
