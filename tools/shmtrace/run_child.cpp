// The traced command: started like a shell starts a foreground job's only
// process, except that it stays in `run`'s own process group (which the
// shell made the terminal's foreground group), so the terminal, job control
// and stdin/stdout/stderr are exactly what the command would have had.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "run.hpp"

extern char** environ;

namespace shmtrace::cli::run {
namespace {

// The mask `run` started with, which the command gets back.
sigset_t g_original_mask;

sigset_t taken_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kForwardedSignals) sigaddset(&set, sig);
  sigaddset(&set, SIGCHLD);
  return set;
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

void block_signals() {
  const sigset_t set = taken_signals();
  ::sigprocmask(SIG_BLOCK, &set, &g_original_mask);
}

std::optional<std::pair<int, std::string>> check_command(const std::string& command) {
  if (command.empty()) return std::pair{127, std::string("'': command not found")};
  if (command.find('/') != std::string::npos) {
    struct stat st {};
    if (::stat(command.c_str(), &st) != 0) return std::pair{127, command + ": " + std::strerror(errno)};
    if (!is_executable_file(command)) {
      return std::pair{126, command + ": " + (S_ISDIR(st.st_mode) ? "is a directory" : std::strerror(EACCES))};
    }
    return std::nullopt;
  }
  // As execvp searches: PATH, or the system's default path when unset.
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr ? path : "/usr/local/bin:/bin:/usr/bin";
  bool found_unexecutable = false;
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    std::string dir = dirs.substr(start, end - start);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + command;
    if (is_executable_file(candidate)) return std::nullopt;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) found_unexecutable = true;
    start = end + 1;
  }
  if (found_unexecutable) return std::pair{126, command + ": " + std::strerror(EACCES)};
  return std::pair{127, command + ": command not found"};
}

std::expected<pid_t, std::string> start_command(const std::vector<std::string>& argv,
                                                const std::vector<EnvSetting>& env) {
  // The environment is built before fork(): the child only execs.
  std::map<std::string, std::string> changes;
  for (const EnvSetting& e : env) changes[e.name] = e.value;
  std::vector<std::string> entries;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (!changes.contains(name)) entries.push_back(entry);
  }
  for (const auto& [name, value] : changes) entries.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (std::string& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(std::string("fork: ") + std::strerror(errno));
  if (pid != 0) return pid;
  ::sigprocmask(SIG_SETMASK, &g_original_mask, nullptr);
  ::execvpe(cargv[0], cargv.data(), envp.data());
  const int e = errno;
  const std::string line = "shmtrace run: " + args[0] + ": " + std::strerror(e) + "\n";
  if (::write(STDERR_FILENO, line.data(), line.size()) < 0) {}
  ::_exit(e == ENOENT ? 127 : 126);
}

std::optional<TakenSignal> take_signal(std::chrono::milliseconds within) {
  const sigset_t set = taken_signals();
  siginfo_t info {};
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(within).count();
  const timespec timeout{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  const int sig = ::sigtimedwait(&set, &info, &timeout);
  if (sig <= 0 || sig == SIGCHLD) return std::nullopt;
  return TakenSignal{sig, info.si_code == SI_KERNEL};
}

int exit_status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

}  // namespace shmtrace::cli::run
