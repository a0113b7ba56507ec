// A traced program for the reading commands' tests (report, replay).
//
//   st_report measure
//     Span "m-outer" around 100 calls of "m-leaf" that busy-wait on
//     CLOCK_MONOTONIC: 60 for 10 us, 36 for 50 us, 4 for 200 us (in a mixed
//     order); every 7th call ends with status ERR. The program times every
//     call itself, inside (first to last clock read of the wait) and outside
//     (before the begin to after the end), and prints
//       calls m-leaf <n> errors <e>
//       quantile <q> inner_ns <ns> outer_ns <ns>     for q = 0.5, 0.95, 0.99, 1
//     (nearest rank over its sorted measurements: a span's own duration lies
//     between its inner and outer time, so its quantiles do too).
//   st_report calls
//     A known call sequence on the main thread (replay's test):
//       main() { parse(path=/etc/x) = 3; work(n=2) { leaf(); leaf(); fail(); } }
//     where fail() records the error "Oops: it failed" and ends with ERR.
//   st_report tree <program>
//     The process tree's test: forks a child that execs `<program> leaf 3`,
//     posix_spawns `<program> leaf 0`, forks a child that dies of SIGSEGV (a
//     write to address 0x10, through the runtime's crash handler),
//     waits for each and prints "fork <pid>", "spawn <pid>", "crash <pid>".
//   st_report leaf <code>
//     One span "leaf-main", then exits with <code>.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shmtrace/shmtrace.h"

extern char** environ;

namespace {

long now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000L + ts.tv_nsec;
}

long nearest_rank(std::vector<long> v, double q) {
  std::sort(v.begin(), v.end());
  std::size_t rank = static_cast<std::size_t>(q * static_cast<double>(v.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

int measure() {
  const shmtrace_name_t leaf = SHMTRACE_NAME("m-leaf");
  const shmtrace_span_t outer = shmtrace_span_begin(SHMTRACE_NAME("m-outer"));
  std::vector<long> inner_times, outer_times;
  int errors = 0;
  for (int i = 0; i < 100; ++i) {
    // 200 us for i % 25 == 3, 50 us for i % 25 in 10..18, else 10 us: 4, 36, 60 calls.
    const int k = i % 25;
    const long wait = k == 3 ? 200'000 : (k >= 10 && k <= 18) ? 50'000 : 10'000;
    const bool err = i % 7 == 0;
    errors += err ? 1 : 0;
    const long before = now_ns();
    const shmtrace_span_t span = shmtrace_span_begin(leaf);
    const long start = now_ns();
    long now = start;
    while (now - start < wait) now = now_ns();
    shmtrace_span_end_status(span, err ? SHMTRACE_ERR : SHMTRACE_OK);
    const long after = now_ns();
    inner_times.push_back(now - start);
    outer_times.push_back(after - before);
  }
  shmtrace_span_end(outer);
  std::printf("calls m-leaf %zu errors %d\n", inner_times.size(), errors);
  for (double q : {0.5, 0.95, 0.99, 1.0}) {
    std::printf("quantile %g inner_ns %ld outer_ns %ld\n", q, nearest_rank(inner_times, q),
                nearest_rank(outer_times, q));
  }
  return 0;
}

int calls() {
  const shmtrace_span_t main_span = shmtrace_span_begin(SHMTRACE_NAME("main"));
  {
    const shmtrace_span_t parse = shmtrace_span_begin(SHMTRACE_NAME("parse"));
    shmtrace_arg_str(SHMTRACE_NAME("path"), "/etc/x");
    shmtrace_result_i64(SHMTRACE_NAME("lines"), 3);
    shmtrace_span_end(parse);
  }
  const shmtrace_span_t work = shmtrace_span_begin(SHMTRACE_NAME("work"));
  shmtrace_arg_i64(SHMTRACE_NAME("n"), 2);
  for (int i = 0; i < 2; ++i) shmtrace_span_end(shmtrace_span_begin(SHMTRACE_NAME("leaf")));
  const shmtrace_span_t fail = shmtrace_span_begin(SHMTRACE_NAME("fail"));
  shmtrace_error("Oops", "it failed");
  shmtrace_span_end_status(fail, SHMTRACE_ERR);
  shmtrace_span_end(work);
  shmtrace_span_end(main_span);
  return 0;
}

bool waited(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid;
}

int tree(const char* program) {
  const shmtrace_span_t span = shmtrace_span_begin(SHMTRACE_NAME("tree"));
  std::fflush(stdout);
  const pid_t forked = ::fork();
  if (forked < 0) return 1;
  if (forked == 0) {
    ::execl(program, program, "leaf", "3", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (!waited(forked)) return 1;
  std::printf("fork %d\n", static_cast<int>(forked));
  pid_t spawned = 0;
  char* const args[] = {const_cast<char*>(program), const_cast<char*>("leaf"), const_cast<char*>("0"), nullptr};
  if (::posix_spawn(&spawned, program, nullptr, nullptr, args, environ) != 0) return 1;
  if (!waited(spawned)) return 1;
  std::printf("spawn %d\n", static_cast<int>(spawned));
  std::fflush(stdout);
  const pid_t crashing = ::fork();
  if (crashing < 0) return 1;
  if (crashing == 0) {
    *static_cast<volatile int*>(reinterpret_cast<void*>(0x10)) = 1;  // the runtime records the crash
    ::_exit(0);
  }
  if (!waited(crashing)) return 1;
  std::printf("crash %d\n", static_cast<int>(crashing));
  shmtrace_span_end(span);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "measure") return measure();
  if (mode == "calls") return calls();
  if (mode == "tree" && argc > 2) return tree(argv[2]);
  if (mode == "leaf" && argc > 2) {
    shmtrace_span_end(shmtrace_span_begin(SHMTRACE_NAME("leaf-main")));
    return std::atoi(argv[2]);
  }
  std::fprintf(stderr, "usage: st_report measure | calls | tree <program> | leaf <code>\n");
  return 2;
}
