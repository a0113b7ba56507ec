// Careful opening and mapping of files another user may have planted, and the
// small helpers every reader file shares.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader::detail {

Mapping::Mapping(Mapping&& other) noexcept : base_(other.base_), size_(other.size_) {
  other.base_ = nullptr;
  other.size_ = 0;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) ::munmap(base_, size_);
    base_ = other.base_;
    size_ = other.size_;
    other.base_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<OpenedFile, OpenError> open_checked(const std::string& path, bool writable,
                                                  std::uint32_t allowed_uid,
                                                  std::uint64_t min_size) {
  const int flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY;
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    const int err = errno;
    OpenError failure;
    failure.missing = err == ENOENT;
    if (err == ELOOP) {
      failure.error.message = path + ": is a symbolic link, refused";
    } else {
      failure.error.message = path + ": cannot open: " + std::strerror(err);
    }
    return std::unexpected(std::move(failure));
  }
  OpenedFile file;
  file.fd = UniqueFd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return std::unexpected(OpenError{{path + ": cannot stat: " + std::strerror(errno)}, false});
  }
  if (!S_ISREG(st.st_mode)) {
    return std::unexpected(OpenError{{path + ": not a regular file, refused"}, false});
  }
  if (st.st_uid != allowed_uid) {
    return std::unexpected(OpenError{{path + ": owned by uid " + std::to_string(st.st_uid) +
                                      ", only uid " + std::to_string(allowed_uid) +
                                      " is permitted, refused"},
                                     false});
  }
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < min_size) {
    return std::unexpected(OpenError{{path + ": file size " + std::to_string(st.st_size) +
                                      " is smaller than the minimum " + std::to_string(min_size)},
                                     false});
  }
  file.size = static_cast<std::uint64_t>(st.st_size);
  return file;
}

Result<Mapping> map_file(const OpenedFile& file, bool writable, const std::string& path) {
  if (file.size > SIZE_MAX) {
    return std::unexpected(Error{path + ": file too large to map"});
  }
  const int prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ;
  void* base = ::mmap(nullptr, static_cast<std::size_t>(file.size), prot, MAP_SHARED,
                      file.fd.get(), 0);
  if (base == MAP_FAILED) {
    return std::unexpected(Error{path + ": cannot map: " + std::strerror(errno)});
  }
  return Mapping(base, file.size);
}

void copy_shared(void* dst, const std::byte* src, std::size_t size) {
  auto* out = static_cast<std::byte*>(dst);
  for (std::size_t i = 0; i < size; i += sizeof(std::uint64_t)) {
    // Relaxed: only atomicity is needed; the caller's earlier acquire (magic,
    // state) is what orders the write-once fields before this copy.
    const std::uint64_t word = abi::atomic_load(
        *reinterpret_cast<const std::uint64_t*>(src + i), std::memory_order_relaxed);
    std::memcpy(out + i, &word, sizeof word);
  }
}

std::string segment_name(std::uint32_t pid, std::uint64_t nonce) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%s%" PRIu32 ".%016" PRIx64, abi::kSegmentNamePrefix, pid,
                nonce);
  return buffer;
}

std::optional<ParsedName> parse_segment_name(std::string_view name) {
  const std::string_view prefix = abi::kSegmentNamePrefix;
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  const auto dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 10) return std::nullopt;
  const std::string_view pid_text = name.substr(0, dot);
  const std::string_view nonce_text = name.substr(dot + 1);
  if (nonce_text.size() != 16) return std::nullopt;
  ParsedName parsed;
  for (char c : pid_text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  auto [pid_end, pid_err] =
      std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), parsed.pid);
  if (pid_err != std::errc{} || pid_end != pid_text.data() + pid_text.size()) return std::nullopt;
  for (char c : nonce_text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return std::nullopt;
  }
  auto [nonce_end, nonce_err] = std::from_chars(
      nonce_text.data(), nonce_text.data() + nonce_text.size(), parsed.nonce, 16);
  if (nonce_err != std::errc{} || nonce_end != nonce_text.data() + nonce_text.size()) {
    return std::nullopt;
  }
  return parsed;
}

}  // namespace shmtrace::reader::detail
