// list_segments(): the segment objects in /dev/shm, without following links.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {

Result<std::vector<SegmentListing>> list_segments(std::optional<std::uint32_t> pid) {
  DIR* dir = ::opendir(detail::kShmDir);
  if (dir == nullptr) {
    return std::unexpected(Error{std::string("cannot list ") + detail::kShmDir + ": " +
                                 std::strerror(errno)});
  }
  std::vector<SegmentListing> found;
  const int dir_fd = ::dirfd(dir);
  while (true) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) break;
    const std::string_view name = entry->d_name;
    if (!name.starts_with(abi::kSegmentNamePrefix)) continue;
    if (name.find(abi::kErrorChunkInfix) != std::string_view::npos) continue;
    const auto parsed = detail::parse_segment_name(name);
    if (!parsed) continue;  // not ours, or not in the standard form
    if (pid && parsed->pid != *pid) continue;
    struct stat st {};
    if (::fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone
    if (!S_ISREG(st.st_mode)) continue;  // symlinks and the like are never followed
    found.push_back(SegmentListing{std::string(name), parsed->session, parsed->pid,
                                   static_cast<std::uint32_t>(st.st_uid)});
  }
  const int read_errno = errno;
  ::closedir(dir);
  if (read_errno != 0) {
    return std::unexpected(Error{std::string("cannot list ") + detail::kShmDir + ": " +
                                 std::strerror(read_errno)});
  }
  std::sort(found.begin(), found.end(),
            [](const SegmentListing& a, const SegmentListing& b) { return a.name < b.name; });
  return found;
}

}  // namespace shmtrace::reader
