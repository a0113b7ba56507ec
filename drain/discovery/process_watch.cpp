// ProcessWatch: pidfd liveness, with a /proc + kill(pid, 0) fallback.
#include "discovery/process_watch.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace shmtrace::drain {
namespace {

struct ProcStat {
  char state = '?';  // field 3: R, S, D, T, Z, X, ...
  std::uint64_t start_ticks = 0;
};

// Fields 3 and 22 of /proc/<pid>/stat; nullopt when it cannot be read.
std::optional<ProcStat> read_proc_stat(std::uint32_t pid) {
  const std::string file = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buffer[2048];
  std::size_t size = 0;
  while (size < sizeof buffer) {
    const ssize_t n = ::read(fd, buffer + size, sizeof buffer - size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size += static_cast<std::size_t>(n);
  }
  ::close(fd);
  const std::string_view text(buffer, size);
  // The command name (field 2) is in parentheses and may hold spaces or ')'.
  const std::size_t close_paren = text.rfind(')');
  if (close_paren == std::string_view::npos || close_paren + 2 >= text.size()) return std::nullopt;
  std::string_view rest = text.substr(close_paren + 2);  // starts at field 3
  ProcStat stat;
  stat.state = rest.front();
  for (int field = 3; field < 22; ++field) {
    const std::size_t space = rest.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(space + 1);
  }
  const auto [end, err] = std::from_chars(rest.data(), rest.data() + rest.size(), stat.start_ticks);
  if (err != std::errc{} || end == rest.data()) return std::nullopt;
  return stat;
}

bool exited_state(char state) { return state == 'Z' || state == 'X'; }

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

std::uint64_t process_start_ticks(std::uint32_t pid) {
  const auto stat = read_proc_stat(pid);
  return stat ? stat->start_ticks : 0;
}

const char* to_string(ProcessStatus status) {
  switch (status) {
    case ProcessStatus::kAlive:
      return "alive";
    case ProcessStatus::kExited:
      return "exited";
    case ProcessStatus::kNoProcess:
      return "no such process";
    case ProcessStatus::kStartMismatch:
      return "pid reused by another process";
  }
  return "unknown";
}

std::expected<ProcessWatch, std::string> ProcessWatch::open(std::uint32_t pid,
                                                           std::uint64_t expected_start_ticks,
                                                           Backend backend) {
  if (pid == 0 || pid > static_cast<std::uint32_t>(INT_MAX)) {
    return std::unexpected("cannot watch pid " + std::to_string(pid) + ": not a valid pid");
  }
  ProcessWatch watch(pid, expected_start_ticks, backend);
  if (backend == Backend::kPidfd) {
    watch.pidfd_ = pidfd_open(static_cast<pid_t>(pid));  // always close-on-exec
    if (watch.pidfd_ < 0) {
      const int err = errno;
      if (err == ESRCH) {
        watch.status_ = ProcessStatus::kNoProcess;
        return watch;
      }
      if (err != ENOSYS && err != EPERM) {
        return std::unexpected("cannot watch pid " + std::to_string(pid) +
                               ": pidfd_open: " + std::strerror(err));
      }
      watch.backend_ = Backend::kPolling;
    }
  }
  // Only now, with the pidfd held, does a matching start time prove that the
  // pidfd is the expected process and not a later one with the same pid.
  const auto stat = read_proc_stat(pid);
  if (!stat) {
    // pidfd open: it exited and was reaped meanwhile; polling: never there.
    watch.status_ = watch.pidfd_ >= 0 ? ProcessStatus::kExited : ProcessStatus::kNoProcess;
  } else if (expected_start_ticks != 0 && stat->start_ticks != expected_start_ticks) {
    watch.status_ = ProcessStatus::kStartMismatch;
  } else if (watch.backend_ == Backend::kPolling && exited_state(stat->state)) {
    watch.status_ = ProcessStatus::kExited;
  }
  if (watch.status_ != ProcessStatus::kAlive && watch.pidfd_ >= 0) {
    ::close(std::exchange(watch.pidfd_, -1));  // nothing left to watch
  }
  return watch;
}

ProcessWatch::ProcessWatch(ProcessWatch&& other) noexcept
    : pid_(other.pid_),
      start_ticks_(other.start_ticks_),
      backend_(other.backend_),
      pidfd_(std::exchange(other.pidfd_, -1)),
      status_(other.status_) {}

ProcessWatch& ProcessWatch::operator=(ProcessWatch&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) ::close(pidfd_);
    pid_ = other.pid_;
    start_ticks_ = other.start_ticks_;
    backend_ = other.backend_;
    pidfd_ = std::exchange(other.pidfd_, -1);
    status_ = other.status_;
  }
  return *this;
}

ProcessWatch::~ProcessWatch() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

ProcessStatus ProcessWatch::status() const {
  if (status_ != ProcessStatus::kAlive) return status_;
  status_ = backend_ == Backend::kPidfd && pidfd_ >= 0 ? poll_pidfd() : poll_proc();
  return status_;
}

ProcessStatus ProcessWatch::poll_pidfd() const {
  pollfd pfd{pidfd_, POLLIN, 0};
  while (true) {
    const int ready = ::poll(&pfd, 1, 0);
    if (ready > 0) return ProcessStatus::kExited;  // POLLIN at exit (POLLHUP once reaped)
    if (ready == 0) return ProcessStatus::kAlive;
    if (errno != EINTR) return poll_proc();  // cannot poll: ask /proc this once
  }
}

ProcessStatus ProcessWatch::poll_proc() const {
  if (::kill(static_cast<pid_t>(pid_), 0) != 0 && errno == ESRCH) return ProcessStatus::kExited;
  // EPERM: a process exists but is not ours to signal; /proc tells whose.
  const auto stat = read_proc_stat(pid_);
  if (!stat || exited_state(stat->state)) return ProcessStatus::kExited;
  if (start_ticks_ != 0 && stat->start_ticks != start_ticks_) return ProcessStatus::kExited;
  return ProcessStatus::kAlive;
}

}  // namespace shmtrace::drain
