// Helpers for the tests that run the real shmtrace-drain as a long-lived
// process: start it with its stderr in a file the test reads while it runs,
// poll a condition against a deadline (never sleep-then-assert), wait for its
// exit with a bound, and small file, /dev/shm and HTTP helpers.
#ifndef SHMTRACE_TESTS_DRAIN_HARNESS_HPP
#define SHMTRACE_TESTS_DRAIN_HARNESS_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/test_database.hpp"

namespace shmtrace::test::harness {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// -1 when the file does not exist.
inline std::int64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<std::int64_t>(st.st_size);
}

// Lines of `text` that contain `needle`.
inline std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

// Polls `done` every 20 ms until it holds or `limit` passes; its last answer.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// fork/exec of argv with stdout to /dev/null and stderr appended to
// stderr_path; the pid, or -1.
inline pid_t spawn(const std::vector<std::string>& argv, const std::string& stderr_path,
                   const std::vector<std::pair<std::string, std::string>>& env = {}) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (err < 0 || null < 0) ::_exit(126);
  ::dup2(null, STDIN_FILENO);
  ::dup2(null, STDOUT_FILENO);
  ::dup2(err, STDERR_FILENO);
  for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  ::_exit(127);
}

struct Exit {
  bool exited = false;  // false: still running at the deadline (then killed) or not ours
  int code = -1;
  int signal = 0;
};

// Waits for pid with a bound; a child still running at the deadline is
// SIGKILLed and reaped (exited stays false).
inline Exit wait_exit(pid_t pid, std::chrono::milliseconds limit) {
  Exit e;
  int status = 0;
  const bool done = wait_until(
      [&] {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        return r == pid || (r < 0 && errno != EINTR);
      },
      limit);
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return e;
  }
  if (WIFEXITED(status)) {
    e.exited = true;
    e.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.exited = true;
    e.signal = WTERMSIG(status);
  }
  return e;
}

inline bool pid_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// The side of a test's forked child that reports to its parent in lines
// over a pipe: what it found (say), or what failed (fail: with errno's text
// for a failed call; stops what it started and exits 1).
class ChildReport {
 public:
  explicit ChildReport(int fd) : fd_(fd) {}
  void say(const std::string& line) const {
    const std::string text = line + "\n";
    [[maybe_unused]] const ssize_t n = ::write(fd_, text.data(), text.size());
  }
  [[noreturn]] void fail(const std::string& what, bool call = true) const {
    say("ERROR " + what + (call ? std::string(": ") + std::strerror(errno) : std::string()));
    for (pid_t pid : started_) ::kill(pid, SIGKILL);
    for (pid_t pid : started_) wait_exit(pid, std::chrono::seconds(10));
    ::_exit(1);
  }
  // Processes fail() stops; forget() one once it has been waited for.
  std::vector<pid_t> started_;

 private:
  int fd_;
};

// Gives the calling process (a test's forked child, as root) a mount
// namespace of its own with a fresh tmpfs on /dev/shm (`shm_options`, e.g.
// "size=64m,mode=1777"), and on /tmp too when `private_tmp`: its drain then
// sees only its own segments and nothing it plants reaches the machine.
// "" when done, else what failed, with errno's text.
inline std::string isolate_shm(const char* shm_options = "size=256m,mode=1777", bool private_tmp = false) {
  const auto failed = [](const std::string& what) { return what + ": " + std::strerror(errno); };
  // Alone in its /dev/shm, the caller runs drains of no session: what it
  // starts must be of no session too, whatever the environment said.
  ::unsetenv("SHMTRACE_SESSION");
  if (::unshare(CLONE_NEWNS) != 0) return failed("unshare(CLONE_NEWNS) (this test needs root: CAP_SYS_ADMIN)");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return failed("making / private");
  if (::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, shm_options) != 0) {
    return failed("mounting a private tmpfs on /dev/shm");
  }
  if (!private_tmp) return {};
  // The build (programs, the drain, the runtime) may itself live under /tmp
  // (a CI checkout): the directory holding it is carried over into the new
  // /tmp, bound from a view of the old one kept meanwhile under /dev/shm.
  std::string kept;
  const std::string programs = SHMTRACE_PROGRAM_DIR;
  if (programs.rfind("/tmp/", 0) == 0) kept = programs.substr(0, programs.find('/', 5));
  const std::string old_tmp = "/dev/shm/.old-tmp";
  if (!kept.empty()) {
    if (::mkdir(old_tmp.c_str(), 0700) != 0 || ::mount("/tmp", old_tmp.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return failed("keeping a view of /tmp");
    }
  }
  if (::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777") != 0) {
    return failed("mounting a private tmpfs on /tmp");
  }
  if (!kept.empty()) {
    const std::string from = old_tmp + kept.substr(4);
    if (::mkdir(kept.c_str(), 0755) != 0 || ::mount(from.c_str(), kept.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return failed("carrying " + kept + " into the private /tmp");
    }
    if (::umount2(old_tmp.c_str(), MNT_DETACH) != 0 || ::rmdir(old_tmp.c_str()) != 0) {
      return failed("dropping the view of /tmp");
    }
  }
  return {};
}

// One GET over a plain socket (HTTP/1.0, connection closed by the server);
// the body when the status is 200, nullopt otherwise.
inline std::optional<std::string> http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return std::nullopt;
  }
  std::string response;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto end = response.find("\r\n\r\n");
  if (end == std::string::npos || response.find(" 200 ") == std::string::npos ||
      response.find(" 200 ") > response.find("\r\n")) {
    return std::nullopt;
  }
  return response.substr(end + 4);
}

// The value of an unlabelled sample "name value" in Prometheus text; nullopt
// when absent.
inline std::optional<double> metric_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return std::nullopt;
}

// Each thread's counters are exactly 0..n-1, each once (as drain_process_test).
inline std::string counters_of(pid_t pid) {
  return " FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " + std::to_string(pid) +
         " AND r.kind = 'counter'";
}
inline std::int64_t threads_with_exact_counters(const Database& d, pid_t pid, long n) {
  return d.number("SELECT count(*) FROM (SELECT tid, count(*) total, count(DISTINCT value) c, "
                  "min(CAST(value AS INTEGER)) lo, max(CAST(value AS INTEGER)) hi" +
                  counters_of(pid) + " GROUP BY tid) WHERE total = " + std::to_string(n) +
                  " AND c = " + std::to_string(n) + " AND lo = 0 AND hi = " + std::to_string(n - 1));
}

// sequence mode writes a text argument every 16th counter.
inline long sequence_text_args(long n) { return (n + 15) / 16; }

}  // namespace shmtrace::test::harness

#endif
