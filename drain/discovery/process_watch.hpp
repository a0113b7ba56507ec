// ProcessWatch: is a segment's producer still alive? (SPEC D7)
//
// A pid alone cannot say: the kernel recycles pids, so "kill(pid, 0)
// succeeds" may be about a stranger. A pidfd names one process for good.
// open() takes the pidfd first and only then compares /proc/<pid>/stat's start
// time (field 22, clock ticks since boot) with the one the producer wrote
// into its segment header: if they match after the pidfd exists, the pidfd
// is that producer's, and it becomes readable when the producer exits
// (zombies included: exited but not yet reaped counts as gone).
//
// Where pidfd_open() is refused (ENOSYS on kernels before 5.3, EPERM under
// some seccomp filters), the watch falls back to kill(pid, 0) plus the start
// time on each call, and says so with polling().
#ifndef SHMTRACE_DRAIN_DISCOVERY_PROCESS_WATCH_HPP
#define SHMTRACE_DRAIN_DISCOVERY_PROCESS_WATCH_HPP

#include <cstdint>
#include <expected>
#include <string>

namespace shmtrace::drain {

// /proc/<pid>/stat field 22 (start time in clock ticks since boot); 0 when
// the pid does not exist or its stat cannot be read.
std::uint64_t process_start_ticks(std::uint32_t pid);

enum class ProcessStatus : std::uint8_t {
  kAlive,          // still running (or stopped): the same process as at open()
  kExited,         // exited since open() (zombie or reaped)
  kNoProcess,      // at open(): no process with that pid
  kStartMismatch,  // at open(): the pid runs another process (pid reused)
};
const char* to_string(ProcessStatus status);

class ProcessWatch {
 public:
  enum class Backend : std::uint8_t { kPidfd, kPolling };

  // Watches `pid`, whose start time must be `expected_start_ticks` (0: not
  // known, taken as matching). A process already gone is no error: the
  // watch reports it (status() kNoProcess, kStartMismatch or kExited).
  // Errors: an impossible pid, or pidfd_open() failing for another reason
  // than ENOSYS/EPERM (EMFILE and the like). kPolling forces the fallback.
  static std::expected<ProcessWatch, std::string> open(std::uint32_t pid,
                                                       std::uint64_t expected_start_ticks,
                                                       Backend backend = Backend::kPidfd);

  ProcessWatch(ProcessWatch&& other) noexcept;
  ProcessWatch& operator=(ProcessWatch&& other) noexcept;
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;
  ~ProcessWatch();

  // Never blocks. Once not kAlive, stays so.
  ProcessStatus status() const;
  bool gone() const { return status() != ProcessStatus::kAlive; }

  bool polling() const { return backend_ == Backend::kPolling; }
  // The pidfd (readable once the process exited), for a caller's poll set;
  // -1 when polling or gone at open().
  int fd() const { return pidfd_; }
  std::uint32_t pid() const { return pid_; }
  std::uint64_t expected_start_ticks() const { return start_ticks_; }

 private:
  ProcessWatch(std::uint32_t pid, std::uint64_t start_ticks, Backend backend)
      : pid_(pid), start_ticks_(start_ticks), backend_(backend) {}
  ProcessStatus poll_pidfd() const;
  ProcessStatus poll_proc() const;

  std::uint32_t pid_ = 0;
  std::uint64_t start_ticks_ = 0;
  Backend backend_ = Backend::kPidfd;
  int pidfd_ = -1;
  mutable ProcessStatus status_ = ProcessStatus::kAlive;  // sticky once not alive
};

}  // namespace shmtrace::drain

#endif  // SHMTRACE_DRAIN_DISCOVERY_PROCESS_WATCH_HPP
