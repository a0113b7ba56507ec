// st_workload: a small multi-process program of our own, built with
// -finstrument-functions and using the C++ API; what the README's main job
// and the end-to-end tests run.
//
//   st_workload [--workers N] [--iterations N] [--crash]
//       (defaults: 3 workers, 1000 iterations) The parent opens span
//       workload/run, forks and execs itself once per worker, waits for
//       all, then prints per worker, in index order:
//         worker <index> pid <pid> status <exit code | signal:<N>>
//       and exits 0 when every worker exited 0 (with --crash: every worker
//       but worker 1 exited 0 and worker 1 died of SIGSEGV), else 1.
//       --crash needs at least 2 workers. Usage errors exit 2.
//   st_workload --worker <index> --iterations N [--crash]
//       One worker (shop.cpp). Unless it crashes, it prints before exiting 0,
//       one line per function of workload.h, in that list's order:
//         worker <index> count <name> <calls>
//       <name> is the symbol as the drain resolves it and may hold spaces;
//       <calls> is the last field. Workers share the parent's stdout and
//       write line-buffered, so lines of different workers never mix.
//   st_workload --list-functions
//       The <name>s of the count lines, one a line (check_names.sh).
//
// Bookkeeping (options, printing) is not instrumented, so the counts cover
// every instrumented function a worker runs. The parent-only functions
// (run_parent, start_worker) are instrumented but run in the parent only.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmtrace/shmtrace.hpp"
#include "shop.hpp"
#include "workload.h"

#define WORKLOAD_NOT_TRACED __attribute__((no_instrument_function))

unsigned long workload_calls[workload_function_count];

namespace workload {

constexpr const char* kFunctionNames[] = {
#define WORKLOAD_NAME_(id, name) name,
    WORKLOAD_FUNCTIONS(WORKLOAD_NAME_)
#undef WORKLOAD_NAME_
};
static_assert(sizeof kFunctionNames / sizeof kFunctionNames[0] == workload_function_count);

constexpr int kCrashingWorker = 1;

struct Options {
  int workers = 3;
  int iterations = 1000;
  bool crash = false;
  int worker = -1;  // >= 0: run as that worker
  bool list_functions = false;
};

WORKLOAD_NOT_TRACED bool parse_count(const char* text, int minimum, int* out) {
  if (text == nullptr) return false;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < minimum || value > 100'000'000) return false;
  *out = static_cast<int>(value);
  return true;
}

WORKLOAD_NOT_TRACED bool parse_options(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--workers" && parse_count(value, 1, &options->workers)) {
      ++i;
    } else if (arg == "--iterations" && parse_count(value, 0, &options->iterations)) {
      ++i;
    } else if (arg == "--worker" && parse_count(value, 0, &options->worker)) {
      ++i;
    } else if (arg == "--crash") {
      options->crash = true;
    } else if (arg == "--list-functions") {
      options->list_functions = true;
    } else {
      std::fprintf(stderr, "st_workload: bad argument '%s'\n", arg.c_str());
      return false;
    }
  }
  if (options->crash && options->worker < 0 && options->workers <= kCrashingWorker) {
    std::fprintf(stderr, "st_workload: --crash needs --workers %d or more\n", kCrashingWorker + 1);
    return false;
  }
  return true;
}

WORKLOAD_NOT_TRACED void print_counts(int worker) {
  for (int id = 0; id < workload_function_count; ++id) {
    std::printf("worker %d count %s %lu\n", worker, kFunctionNames[id], workload_calls[id]);
  }
  std::fflush(stdout);
}

// Runs in the parent; the child between fork and exec returns through it too.
pid_t start_worker(const char* self, int worker, const Options& options) {
  const std::string index = std::to_string(worker);
  const std::string iterations = std::to_string(options.iterations);
  std::vector<const char*> args = {self, "--worker", index.c_str(), "--iterations", iterations.c_str()};
  if (options.crash && worker == kCrashingWorker) args.push_back("--crash");
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv("/proc/self/exe", const_cast<char* const*>(args.data()));
    std::fprintf(stderr, "st_workload: exec failed: %s\n", std::strerror(errno));
    _exit(127);
  }
  if (pid < 0) std::fprintf(stderr, "st_workload: fork failed: %s\n", std::strerror(errno));
  return pid;
}

int run_parent(const char* self, const Options& options) {
  SHMTRACE_SCOPE_NAMED(span, "workload", "run");
  SHMTRACE_ARG("workers", options.workers);
  SHMTRACE_ARG("iterations", options.iterations);
  std::fflush(stdout);  // nothing buffered may reach a child
  std::vector<pid_t> pids;
  for (int worker = 0; worker < options.workers; ++worker) pids.push_back(start_worker(self, worker, options));

  bool ok = true;
  std::vector<std::string> statuses;
  for (int worker = 0; worker < options.workers; ++worker) {
    int status = 0;
    pid_t pid = pids[worker];
    while (pid > 0 && waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) {
        pid = -1;
        break;
      }
    }
    const bool crashing = options.crash && worker == kCrashingWorker;
    if (pid < 0) {
      statuses.push_back("unknown");
      ok = false;
    } else if (WIFSIGNALED(status)) {
      statuses.push_back("signal:" + std::to_string(WTERMSIG(status)));
      ok = ok && crashing && WTERMSIG(status) == SIGSEGV;
    } else {
      statuses.push_back(std::to_string(WEXITSTATUS(status)));
      ok = ok && !crashing && WEXITSTATUS(status) == 0;
    }
  }
  for (int worker = 0; worker < options.workers; ++worker) {
    std::printf("worker %d pid %d status %s\n", worker, static_cast<int>(pids[worker]),
                statuses[worker].c_str());
  }
  std::fflush(stdout);
  if (!ok) span.fail();
  return ok ? 0 : 1;
}

}  // namespace workload

int main(int argc, char** argv) {
  WORKLOAD_COUNT(main);
  workload::Options options;
  if (!workload::parse_options(argc, argv, &options)) {
    std::fprintf(stderr,
                 "usage: st_workload [--workers N] [--iterations N] [--crash]\n"
                 "       st_workload --worker INDEX [--iterations N] [--crash]\n");
    return 2;
  }
  if (options.list_functions) {
    for (const char* name : workload::kFunctionNames) std::printf("%s\n", name);
    return 0;
  }
  // Line-buffered: each line reaches the shared stdout in one write.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (options.worker < 0) return workload::run_parent(argv[0], options);

  if (options.crash) {
    const rlimit no_core = {0, 0};  // die of SIGSEGV without writing a core file
    setrlimit(RLIMIT_CORE, &no_core);
  }
  try {
    shop::api::run_worker(options.worker, options.iterations, options.crash);
  } catch (const std::logic_error&) {
    // Expected: close_books's exception, after it left its span.
  }
  workload::print_counts(options.worker);
  return 0;
}
