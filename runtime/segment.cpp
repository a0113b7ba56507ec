#include "segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>

namespace bip = boost::interprocess;

namespace shmtrace::runtime {

std::expected<SharedObject, std::string> SharedObject::create(const std::string& name, std::uint64_t size,
                                                              std::uint64_t reserve_bytes, Mode mode,
                                                              bool* created) {
  SharedObject out;
  out.name_ = name;
  out.size_ = size;
  bool made = false;
  try {
    bip::permissions perms;
    perms.set_permissions(0600);
    try {
      out.shm_ = std::make_unique<bip::shared_memory_object>(bip::create_only, name.c_str(), bip::read_write,
                                                             perms);
      made = true;
    } catch (const bip::interprocess_exception& e) {
      if (mode != Mode::kCreateOrOpen || e.get_error_code() != bip::already_exists_error) throw;
      out.shm_ = std::make_unique<bip::shared_memory_object>(bip::open_only, name.c_str(), bip::read_write);
    }
    bip::offset_t existing = 0;
    if (made || !out.shm_->get_size(existing) || static_cast<std::uint64_t>(existing) != size) {
      // A concurrent creator of the same error chunk sizes it identically.
      out.shm_->truncate(static_cast<bip::offset_t>(size));
    }
    out.region_ = std::make_unique<bip::mapped_region>(*out.shm_, bip::read_write, 0,
                                                       static_cast<std::size_t>(size));
    out.base_ = out.region_->get_address();
    out.fd_ = out.shm_->get_mapping_handle().handle;
  } catch (const std::exception& e) {
    if (made) bip::shared_memory_object::remove(name.c_str());
    return std::unexpected(std::string("cannot create shared memory /dev/shm/") + name + ": " + e.what());
  }
  if (reserve_bytes > 0 && !out.reserve(0, reserve_bytes)) {
    const int err = errno;
    if (made) bip::shared_memory_object::remove(name.c_str());
    return std::unexpected("cannot reserve " + std::to_string(reserve_bytes) + " bytes of /dev/shm/" + name +
                           ": " + std::strerror(err));
  }
  if (created != nullptr) *created = made;
  return out;
}

SharedObject::SharedObject() = default;
SharedObject::SharedObject(SharedObject&& other) noexcept = default;
SharedObject& SharedObject::operator=(SharedObject&& other) noexcept = default;
SharedObject::~SharedObject() = default;

bool SharedObject::reserve(std::uint64_t offset, std::uint64_t length) noexcept {
  if (base_ == nullptr || offset > size_ || length > size_ - offset) return false;
  const int rc = ::posix_fallocate(fd_, static_cast<off_t>(offset), static_cast<off_t>(length));
  if (rc != 0) {
    errno = rc;
    return false;
  }
  // Touch every page through the mapping so the first records take no fault.
  // An atomic add of zero: another thread may be writing the same page (a
  // shared error chunk), and a plain read-then-write could undo its store.
  auto* p = static_cast<std::uint8_t*>(base_);
  for (std::uint64_t at = offset; at < offset + length; at += 4096) {
    __atomic_fetch_add(p + at, std::uint8_t{0}, __ATOMIC_RELAXED);
  }
  return true;
}

}  // namespace shmtrace::runtime
