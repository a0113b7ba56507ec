// SegmentWatcher: inotify on the shm directory plus periodic rescans.
#include "discovery/segment_watcher.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "reader/segment_impl.hpp"  // parse_segment_name, kShmDir

namespace shmtrace::drain {
namespace {

// The header's default directory mirrors the reader's.
static_assert(std::string_view(reader::detail::kShmDir) == "/dev/shm");

// IN_ATTRIB: an owner change can turn a refused segment into a permitted one.
// IN_DELETE, IN_MOVED_FROM: a name that goes away is forgotten at once.
// IN_EXCL_UNLINK: no events for names already unlinked.
constexpr std::uint32_t kAppearMask = IN_CREATE | IN_MOVED_TO | IN_ATTRIB;
constexpr std::uint32_t kVanishMask = IN_DELETE | IN_MOVED_FROM;
constexpr std::uint32_t kWatchMask = kAppearMask | kVanishMask | IN_ONLYDIR | IN_EXCL_UNLINK;

std::string errno_text(int err) { return std::strerror(err); }

int poll_timeout_ms(std::chrono::steady_clock::duration left) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::clamp<decltype(ms)>(ms, 0, 60'000));
}

void sort_by_name(std::vector<SegmentCandidate>& list) {
  std::ranges::sort(list, {}, &SegmentCandidate::name);
}

}  // namespace

namespace {

// A segment object's name, parsed; nullopt for error chunks, spill files and
// anything out of the standard forms.
std::optional<reader::detail::ParsedName> parse_segment_object(std::string_view name) {
  if (!name.starts_with(abi::kSegmentNamePrefix)) return std::nullopt;
  if (name.find(abi::kErrorChunkInfix) != std::string_view::npos) return std::nullopt;
  return reader::detail::parse_segment_name(name);
}

}  // namespace

std::optional<std::uint32_t> segment_name_pid(std::string_view name) {
  const auto parsed = parse_segment_object(name);
  if (!parsed) return std::nullopt;
  return parsed->pid;
}

std::optional<std::uint32_t> segment_name_pid(std::string_view name, std::string_view session) {
  const auto parsed = parse_segment_object(name);
  if (!parsed || parsed->session != session) return std::nullopt;
  return parsed->pid;
}

SegmentWatcher::SegmentWatcher(SegmentWatcherOptions options) : options_(std::move(options)) {}

SegmentWatcher::Result<SegmentWatcher> SegmentWatcher::open(SegmentWatcherOptions options) {
  if (options.permitted_uids.empty()) {
    options.permitted_uids.push_back(static_cast<std::uint32_t>(::geteuid()));
  }
  if (options.rescan_interval <= std::chrono::milliseconds::zero()) {
    return std::unexpected("segment watcher: rescan interval must be positive");
  }
  if (!options.session.empty() && !abi::session_id_valid(options.session.data(), options.session.size())) {
    return std::unexpected("segment watcher: session id '" + options.session +
                           "' is not 1 to 32 letters, digits, '_' or '-' starting with a letter");
  }
  SegmentWatcher watcher(std::move(options));
  const std::string& dir = watcher.options_.directory;
  watcher.dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (watcher.dir_fd_ < 0) {
    return std::unexpected("cannot open shm directory " + dir + ": " + errno_text(errno));
  }
  if (!watcher.options_.use_inotify) return watcher;
  // The watch is armed before the first rescan, so nothing created between
  // the two slips through; duplicates are dropped by name.
  watcher.inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (watcher.inotify_fd_ < 0) {
    watcher.inotify_error_ = "inotify unavailable (" + errno_text(errno) + "), rescanning " +
                             dir + " only";
    return watcher;
  }
  if (::inotify_add_watch(watcher.inotify_fd_, dir.c_str(), kWatchMask) < 0) {
    watcher.stop_inotify("cannot watch " + dir + " with inotify (" + errno_text(errno) +
                         "), rescanning only");
  }
  return watcher;
}

SegmentWatcher::SegmentWatcher(SegmentWatcher&& other) noexcept
    : options_(std::move(other.options_)),
      dir_fd_(std::exchange(other.dir_fd_, -1)),
      inotify_fd_(std::exchange(other.inotify_fd_, -1)),
      inotify_error_(std::move(other.inotify_error_)),
      scanned_(other.scanned_),
      rescan_pending_(other.rescan_pending_),
      next_rescan_(other.next_rescan_),
      found_(std::move(other.found_)),
      refused_(std::move(other.refused_)),
      rescans_(other.rescans_),
      overflows_(other.overflows_) {}

SegmentWatcher& SegmentWatcher::operator=(SegmentWatcher&& other) noexcept {
  if (this != &other) {
    close_fds();
    options_ = std::move(other.options_);
    dir_fd_ = std::exchange(other.dir_fd_, -1);
    inotify_fd_ = std::exchange(other.inotify_fd_, -1);
    inotify_error_ = std::move(other.inotify_error_);
    scanned_ = other.scanned_;
    rescan_pending_ = other.rescan_pending_;
    next_rescan_ = other.next_rescan_;
    found_ = std::move(other.found_);
    refused_ = std::move(other.refused_);
    rescans_ = other.rescans_;
    overflows_ = other.overflows_;
  }
  return *this;
}

SegmentWatcher::~SegmentWatcher() { close_fds(); }

void SegmentWatcher::close_fds() noexcept {
  if (inotify_fd_ >= 0) ::close(std::exchange(inotify_fd_, -1));
  if (dir_fd_ >= 0) ::close(std::exchange(dir_fd_, -1));
}

void SegmentWatcher::stop_inotify(std::string why) noexcept {
  if (inotify_fd_ >= 0) ::close(std::exchange(inotify_fd_, -1));
  inotify_error_ = std::move(why);
}

void SegmentWatcher::forget(std::string_view name) {
  if (auto it = found_.find(std::string(name)); it != found_.end()) found_.erase(it);
}

bool SegmentWatcher::permitted(std::uint32_t uid) const {
  return std::ranges::find(options_.permitted_uids, uid) != options_.permitted_uids.end();
}

void SegmentWatcher::consider(std::string_view name, std::uint32_t pid, WatchBatch& batch) {
  std::string key(name);
  if (found_.contains(key)) return;
  struct stat st {};
  if (::fstatat(dir_fd_, key.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;  // already gone
  if (!S_ISREG(st.st_mode)) return;  // never follow a link, never open a FIFO
  const auto owner = static_cast<std::uint32_t>(st.st_uid);
  if (permitted(owner)) {
    refused_.erase(key);
    batch.found.push_back(SegmentCandidate{key, pid, owner});
    found_.insert(std::move(key));
  } else if (!refused_.contains(key)) {
    batch.refused.push_back(SegmentCandidate{key, pid, owner});
    refused_.insert(std::move(key));
  }
}

SegmentWatcher::Result<void> SegmentWatcher::rescan(WatchBatch& batch) {
  ++rescans_;
  rescan_pending_ = false;
  next_rescan_ = std::chrono::steady_clock::now() + options_.rescan_interval;
  // A fresh descriptor per listing: a DIR stream keeps its position.
  const int fd = ::openat(dir_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* dir = fd < 0 ? nullptr : ::fdopendir(fd);
  if (dir == nullptr) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return std::unexpected("cannot list " + options_.directory + ": " + errno_text(err));
  }
  std::unordered_set<std::string> present;
  int read_errno = 0;
  while (true) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      read_errno = errno;
      break;
    }
    const std::string_view name = entry->d_name;
    const auto pid = segment_name_pid(name, options_.session);
    if (!pid) continue;  // not a segment, or another session's
    present.emplace(name);
    consider(name, *pid, batch);
  }
  ::closedir(dir);
  if (read_errno != 0) {
    return std::unexpected("cannot list " + options_.directory + ": " + errno_text(read_errno));
  }
  // Names no longer there are forgotten, so the sets stay as small as the directory.
  std::erase_if(found_, [&](const std::string& n) { return !present.contains(n); });
  std::erase_if(refused_, [&](const std::string& n) { return !present.contains(n); });
  return {};
}

SegmentWatcher::Result<void> SegmentWatcher::read_events(WatchBatch& batch) {
  alignas(inotify_event) char buffer[16 * 1024];
  while (inotify_fd_ >= 0) {
    const ssize_t n = ::read(inotify_fd_, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return {};
      return std::unexpected("cannot read inotify events for " + options_.directory + ": " +
                             errno_text(errno));
    }
    if (n == 0) return {};
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        ++overflows_;
        rescan_pending_ = true;  // events were lost: look at everything
        continue;
      }
      if ((event->mask & IN_IGNORED) != 0) {
        // The directory was removed or unmounted; the watch is gone for good.
        stop_inotify("inotify watch on " + options_.directory + " ended, rescanning only");
        rescan_pending_ = true;
        return {};
      }
      if (event->len == 0 || (event->mask & IN_ISDIR) != 0) continue;
      const std::string_view name(event->name);  // NUL-padded to event->len
      const auto pid = segment_name_pid(name, options_.session);
      if (!pid) continue;  // not a segment, or another session's
      if ((event->mask & kVanishMask) != 0) {
        const std::string key(name);
        found_.erase(key);
        refused_.erase(key);
      } else if ((event->mask & kAppearMask) != 0) {
        consider(name, *pid, batch);
      }
    }
  }
  return {};
}

SegmentWatcher::Result<WatchBatch> SegmentWatcher::wait(std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  WatchBatch batch;
  auto finish = [&]() -> Result<WatchBatch> {
    sort_by_name(batch.found);
    sort_by_name(batch.refused);
    return std::move(batch);
  };
  if (!scanned_ || rescan_pending_ || Clock::now() >= next_rescan_) {
    scanned_ = true;
    if (auto ok = rescan(batch); !ok) return std::unexpected(ok.error());
  }
  while (batch.empty()) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    const int ms = poll_timeout_ms(std::min(deadline, next_rescan_) - now);
    pollfd pfd{inotify_fd_, POLLIN, 0};
    // Without inotify, poll() on no descriptor is a sleep that a signal ends.
    const int ready = inotify_fd_ >= 0 ? ::poll(&pfd, 1, ms) : ::poll(nullptr, 0, ms);
    if (ready < 0) {
      if (errno == EINTR) break;  // let the caller look at its signal
      return std::unexpected("cannot poll inotify for " + options_.directory + ": " +
                             errno_text(errno));
    }
    if (ready > 0) {
      if (auto ok = read_events(batch); !ok) return std::unexpected(ok.error());
    }
    if (rescan_pending_ || Clock::now() >= next_rescan_) {
      if (auto ok = rescan(batch); !ok) return std::unexpected(ok.error());
    }
  }
  return finish();
}

}  // namespace shmtrace::drain
