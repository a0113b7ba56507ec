// The real shmtrace-drain as a child process of the demo: started with
// posix_spawn (no fork handlers run, so the runtime gives it no segment of
// its own), watched while the workload runs, stopped with SIGTERM (the
// drain stores everything pending and exits 0). A demo stopped by a signal
// (SIGTERM, SIGINT, SIGHUP, SIGQUIT) sends its drain SIGTERM first. Errors
// are one line each.
#ifndef SHMTRACE_TOOLS_DEMO_DRAIN_PROCESS_HPP
#define SHMTRACE_TOOLS_DEMO_DRAIN_PROCESS_HPP

#include <sys/types.h>

#include <chrono>
#include <expected>
#include <optional>
#include <string>

namespace shmtrace::demo {

// The drain binary: `explicit_path` when given, else shmtrace-drain beside
// this executable (an installed demo), else the one this build made.
std::string find_drain(const std::string& explicit_path);

class DrainProcess {
 public:
  // Spawns `drain --db database` and waits until the database file exists
  // (the drain has opened its store), at most `ready_within`.
  static std::expected<DrainProcess, std::string> start(const std::string& drain, const std::string& database,
                                                        std::chrono::milliseconds ready_within);
  DrainProcess(DrainProcess&& o) noexcept;
  DrainProcess& operator=(DrainProcess&&) = delete;
  DrainProcess(const DrainProcess&) = delete;
  DrainProcess& operator=(const DrainProcess&) = delete;
  // Kills a drain still running (an early return on an error).
  ~DrainProcess();

  pid_t pid() const { return pid_; }
  // Set, as one line, once the drain has died: it must run until stop().
  std::optional<std::string> died();
  // SIGTERM, then waits at most `within` for exit status 0.
  std::expected<void, std::string> stop(std::chrono::milliseconds within);

 private:
  explicit DrainProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;  // -1 once reaped
};

// "exit status 3", "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

}  // namespace shmtrace::demo

#endif
