// The run's private drain: shmtrace-drain --session <id>, which takes only
// the segments the runtime names shmtrace.<id>.<pid>.<nonce> (SHMTRACE_SESSION
// in the command's environment), so two runs, or a run beside a drain of the
// whole machine, never take each other's processes.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "reader/reader.hpp"
#include "run.hpp"
#include "shmtrace/abi.hpp"

namespace shmtrace::cli::run {
namespace {

namespace fs = std::filesystem;
constexpr auto kPollInterval = std::chrono::milliseconds(10);

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }
bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

fs::path own_directory() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : self.parent_path();
}

// Running, not a zombie: a descendant that outlived the command.
bool alive(std::uint32_t pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  // "pid (comm) S ...": the state follows the last ')' (comm may hold any byte).
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' && line[close + 2] != 'X';
}

}  // namespace

std::string find_drain(const std::string& given) {
  if (!given.empty()) return given;
  const fs::path dir = own_directory();
  if (!dir.empty() && executable((dir / "shmtrace-drain").string())) return (dir / "shmtrace-drain").string();
  return SHMTRACE_BUILD_DRAIN_PATH;
}

std::string find_library(const std::string& given) {
  if (!given.empty()) return given;
  const fs::path dir = own_directory();
  if (!dir.empty()) {
    // <prefix>/bin/shmtrace: <prefix>/lib, or the install's library
    // directory (lib/x86_64-linux-gnu on Debian); the SONAME's file first.
    for (const char* libdir : {"lib", SHMTRACE_INSTALL_LIBDIR}) {
      for (const char* file : {SHMTRACE_RUNTIME_SONAME, "libshmtrace.so"}) {
        const fs::path installed = (dir.parent_path() / libdir / file).lexically_normal();
        if (readable(installed.string())) return installed.string();
      }
    }
  }
  return SHMTRACE_BUILD_LIBRARY_PATH;
}

std::string new_session_id() {
  std::uint32_t bits = 0;
  if (::getrandom(&bits, sizeof bits, 0) != static_cast<ssize_t>(sizeof bits)) {
    bits = static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  char id[abi::kMaxSessionLength + 1];
  std::snprintf(id, sizeof id, "run%d-%08x", static_cast<int>(::getpid()), bits);
  return id;
}

std::expected<Drain, std::string> Drain::start(const DrainStart& how, std::chrono::milliseconds ready_within) {
  if (!executable(how.drain)) return std::unexpected("no shmtrace-drain at " + how.drain + " (pass --drain PATH)");
  const std::string log = how.verbose ? "" : how.database + ".log";
  int log_fd = -1;
  if (!log.empty()) {
    log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (log_fd < 0) return std::unexpected("cannot create " + log + ": " + std::strerror(errno));
  }
  std::vector<std::string> args = {how.drain, "--session", how.session, "--db", how.database};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    if (log_fd >= 0) ::close(log_fd);
    return std::unexpected(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Its own process group: out of the terminal's foreground group. Ends
    // with `run` (PR_SET_PDEATHSIG), so a killed `run` leaves no drain.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    } else if (null >= 0) {
      ::dup2(null, STDOUT_FILENO);  // the drain prints on stderr; stdout stays the command's
    }
    ::execv(argv[0], argv.data());
    const std::string line = "shmtrace run: cannot start " + args[0] + ": " + std::strerror(errno) + "\n";
    if (::write(STDERR_FILENO, line.data(), line.size()) < 0) {}
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  ::setpgid(pid, pid);  // also here: whichever runs first, the group exists before the command starts
  Drain drain(pid, log);
  const auto deadline = std::chrono::steady_clock::now() + ready_within;
  struct stat st {};
  while (::stat(how.database.c_str(), &st) != 0) {
    if (auto why = drain.died()) {
      return std::unexpected(*why + " before it was up" + (log.empty() ? "" : " (see " + log + ")"));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") did not create " + how.database +
                             " within " + std::to_string(ready_within.count()) + " ms");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return drain;
}

Drain::~Drain() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::optional<std::string> Drain::died() {
  if (pid_ <= 0) return "shmtrace-drain is not running";
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == 0) return std::nullopt;
  const pid_t pid = std::exchange(pid_, -1);
  if (reaped < 0) return "shmtrace-drain (pid " + std::to_string(pid) + ") is lost: " + std::strerror(errno);
  return "shmtrace-drain (pid " + std::to_string(pid) + ") ended with " + describe_wait_status(status);
}

std::expected<void, std::string> Drain::stop(std::chrono::milliseconds within) {
  if (pid_ <= 0) return std::unexpected(std::string("shmtrace-drain is not running"));
  const pid_t pid = pid_;
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + within;
  int status = 0;
  for (;;) {
    const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
    if (reaped == pid) break;
    if (reaped < 0) {
      pid_ = -1;
      return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") is lost: " + std::strerror(errno));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") did not stop within " +
                             std::to_string(within.count()) + " ms of SIGTERM; killed");  // by the destructor
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  pid_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") stopped with " +
                           describe_wait_status(status) + (log_.empty() ? "" : " (see " + log_ + ")"));
  }
  return {};
}

Leftovers session_leftovers(const std::string& session) {
  Leftovers left;
  auto listed = reader::list_segments();
  if (!listed) return left;
  for (const reader::SegmentListing& l : *listed) {
    if (l.session != session) continue;
    auto segment = reader::Segment::attach(l.name, reader::Access::kReadOnly);
    // An exec'd image's segment waits for the drain even though its pid lives on.
    const bool execed = segment && segment->state() == abi::ProcessState::kExeced;
    if (!execed && alive(l.pid)) {
      left.live_pids.push_back(l.pid);
      continue;
    }
    ++left.segments;
    if (!segment) continue;
    for (std::uint32_t ring = 0; ring < segment->ring_count(); ++ring) {
      auto info = segment->ring_info(ring);
      if (info && info->head > info->tail) left.records += info->head - info->tail;
    }
  }
  return left;
}

}  // namespace shmtrace::cli::run
