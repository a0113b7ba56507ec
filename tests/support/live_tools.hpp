// Helpers of the tests of the live views (shmtrace dump, shmtrace top): the
// shmtrace command of this build, and st_dump (tests/programs) started and
// waited for until its records are written and it waits for signals.
#ifndef SHMTRACE_TESTS_LIVE_TOOLS_HPP
#define SHMTRACE_TESTS_LIVE_TOOLS_HPP

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace shmtrace::test {

// build/tools/shmtrace, beside build/tests where the test programs are.
inline std::string shmtrace_cli() { return std::string(SHMTRACE_PROGRAM_DIR) + "/../tools/shmtrace"; }

inline RunResult run_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{shmtrace_cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

// st_dump running and waiting for signals, its records written.
struct LiveProducer {
  Child child;
  std::string segment;
  std::string session;
  pid_t pid() const { return child.pid(); }
};

// A session id of its own for each producer a test starts: the tests of one
// build run in parallel, and other tests plant broken segments in /dev/shm;
// listing one session sees only this test's segments.
inline std::string unique_session() {
  static int counter = 0;
  return "live" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// st_dump with `args`, in a session of its own unless `env` sets or erases
// SHMTRACE_SESSION.
inline LiveProducer start_st_dump(const std::vector<std::string>& args, std::vector<EnvChange> env = {}) {
  std::vector<std::string> argv{program_path("st_dump")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string session;
  bool named = false;
  for (const EnvChange& e : env) {
    if (e.name != "SHMTRACE_SESSION") continue;
    named = true;
    session = e.erase ? "" : e.value;
  }
  if (!named) {
    session = unique_session();
    env.push_back({"SHMTRACE_SESSION", session});
  }
  LiveProducer p{Child::start(argv, env), {}, session};
  if (!p.child.wait_for_output("ready", 10000)) throw std::runtime_error("st_dump never got ready");
  p.segment = find_segment(p.child.pid());
  if (p.segment.empty()) throw std::runtime_error("st_dump has no segment");
  return p;
}

// Waits (polling, up to timeout_ms) until `pid` has exited, without reaping
// it (Child::wait() does); false on timeout.
inline bool exits_within(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace shmtrace::test

#endif
