// shmtrace-demo-workload: the quick start's example multi-process program,
// the command `scripts/demo.sh` traces with `shmtrace run`. It forks worker
// processes, each of which runs threads of requests: nested spans with
// arguments (a password among them), results, counters and errors
// (workload.cpp). It knows nothing of drains or databases: tracing it is
// `shmtrace run`'s job, checking what was stored shmtrace-demo-check's.
//
//   shmtrace-demo-workload [--workers 1..32] [--threads 1..16] [--requests 1..100000]
// Prints one line of what it ran on stdout. Exit status: 0 when every worker
// exited 0, 1 otherwise (one stderr line per worker that did not), 2 on bad
// usage.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "options.hpp"
#include "workload.hpp"

namespace {

void say(const std::string& line) { std::fprintf(stderr, "shmtrace-demo-workload: %s\n", line.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  shmtrace::demo::Workload w;
  if (auto status = shmtrace::demo::parse_workload_options(
          argc, argv, w, "shmtrace-demo-workload",
          "Forks worker processes that run threads of traced requests (trace it with shmtrace run).\n");
      status) {
    return *status;
  }
  std::printf("shmtrace demo workload: %d worker processes x %d threads x %d requests\n", w.workers, w.threads,
              w.requests);
  std::fflush(stdout);  // the workers inherit the buffer
  std::vector<pid_t> workers;
  int failed = 0;
  for (int i = 0; i < w.workers; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // A worker ends with the workload, whatever ends it.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() == 1) ::_exit(1);  // the parent died before the line above
      ::_exit(shmtrace::demo::run_worker(i, w));
    }
    if (pid < 0) {
      say(std::string("fork: ") + std::strerror(errno));
      ++failed;
      break;
    }
    workers.push_back(pid);
  }
  for (pid_t pid : workers) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      say("worker " + std::to_string(pid) + " ended with wait status " + std::to_string(status));
      ++failed;
    }
  }
  return failed == 0 ? 0 : 1;
}
