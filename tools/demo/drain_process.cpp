#include "drain_process.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

extern char** environ;

namespace shmtrace::demo {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(10);

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

}  // namespace

std::string find_drain(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::string beside = (self.parent_path() / "shmtrace-drain").string();
    if (executable(beside)) return beside;
  }
  return SHMTRACE_DRAIN_PATH;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

namespace {

// The running drain child and the demo's own pid, for the signal handler:
// a demo stopped by a signal (SIGTERM to its pid alone, a closed terminal)
// stops its drain too, which would otherwise go on taking every segment on
// the machine. Forked workers inherit the handler; the pid check keeps
// them from acting on it.
volatile sig_atomic_t g_drain_pid = 0;
volatile sig_atomic_t g_demo_pid = 0;

extern "C" void stop_drain_and_die(int sig) {
  if (::getpid() == g_demo_pid && g_drain_pid > 0) ::kill(g_drain_pid, SIGTERM);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void forward_fatal_signals(pid_t drain) {
  g_demo_pid = ::getpid();
  g_drain_pid = drain;
  struct sigaction action {};
  action.sa_handler = stop_drain_and_die;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) ::sigaction(sig, &action, nullptr);
}

}  // namespace

std::expected<DrainProcess, std::string> DrainProcess::start(const std::string& drain, const std::string& database,
                                                             std::chrono::milliseconds ready_within) {
  if (!executable(drain)) {
    return std::unexpected("no shmtrace-drain at " + drain + " (build it, or pass --drain PATH)");
  }
  std::string arg0 = drain, db_flag = "--db", db = database;
  char* argv[] = {arg0.data(), db_flag.data(), db.data(), nullptr};
  pid_t pid = -1;
  if (const int rc = ::posix_spawn(&pid, drain.c_str(), nullptr, nullptr, argv, environ); rc != 0) {
    return std::unexpected("cannot start " + drain + ": " + std::strerror(rc));
  }
  DrainProcess process(pid);
  forward_fatal_signals(pid);
  const auto deadline = std::chrono::steady_clock::now() + ready_within;
  struct stat st {};
  while (::stat(database.c_str(), &st) != 0) {
    if (auto why = process.died()) return std::unexpected(*why + " before it was up");
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") did not create " + database +
                             " within " + std::to_string(ready_within.count()) + " ms");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return process;
}

DrainProcess::DrainProcess(DrainProcess&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}

DrainProcess::~DrainProcess() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  g_drain_pid = 0;
}

std::optional<std::string> DrainProcess::died() {
  if (pid_ <= 0) return "shmtrace-drain is not running";
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == 0) return std::nullopt;
  g_drain_pid = 0;
  const pid_t pid = std::exchange(pid_, -1);
  if (reaped < 0) return "shmtrace-drain (pid " + std::to_string(pid) + ") is lost: " + std::strerror(errno);
  return "shmtrace-drain (pid " + std::to_string(pid) + ") ended with " + describe_wait_status(status);
}

std::expected<void, std::string> DrainProcess::stop(std::chrono::milliseconds within) {
  if (pid_ <= 0) return std::unexpected(std::string("shmtrace-drain is not running"));
  const pid_t pid = pid_;
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + within;
  int status = 0;
  for (;;) {
    const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
    if (reaped == pid) break;
    if (reaped < 0) {
      g_drain_pid = 0;
      pid_ = -1;
      return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") is lost: " + std::strerror(errno));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") did not stop within " +
                             std::to_string(within.count()) + " ms of SIGTERM; killed");  // by the destructor
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  g_drain_pid = 0;
  pid_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return std::unexpected("shmtrace-drain (pid " + std::to_string(pid) + ") stopped with " +
                           describe_wait_status(status) + ", expected exit status 0");
  }
  return {};
}

}  // namespace shmtrace::demo
