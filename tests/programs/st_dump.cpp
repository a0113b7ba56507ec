// A traced program for the shmtrace dump and top tests: it writes a known
// set of records and call-site statistics, then waits, so a test can look
// at its segment while it is alive (and after it is killed).
//
//   st_dump records
//     On the main thread: span "alpha" (group "grp"); in it counters
//     "count" = 0..4, event "note" with message "hello", argument "key" =
//     the 100-byte string "k0k1k2..." (continued over records), argument
//     "ratio" = 0.25, result "ret" = -7; span "alpha" ends with status ERR.
//     Then error ("DumpError", "first"). Prints "ready <segment>", then
//     waits: each SIGUSR1 writes counter "more" = 0, 1, ... (one per
//     signal) and prints "more <n>"; SIGTERM exits 0.
//   st_dump exec-records
//     Writes counter "before-exec" = 1, then execs itself as st_dump records
//     (same pid, a second segment).
//   st_dump calls <api> <code> <burst>
//     <api> calls of span "work-a" (each busy-waits 200 us; every 4th ends
//     with status ERR) and <code> calls of the function dump_traced_leaf
//     through the -finstrument-functions hooks (called by hand: this file
//     is not built with the flag). Prints "fn dump_traced_leaf 0x<addr>" and
//     "ready", then waits: each SIGUSR1 makes <burst> more calls of
//     "work-a" (same pattern of errors, counted from the start) and prints
//     "burst <n> done"; SIGTERM exits 0.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shmtrace/shmtrace.h"

extern "C" void __cyg_profile_func_enter(void* fn, void* call_site);
extern "C" void __cyg_profile_func_exit(void* fn, void* call_site);

extern "C" __attribute__((noinline)) int dump_traced_leaf(int x) { return x * 2 + 1; }

namespace {

volatile int g_sink = 0;

long now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000L + ts.tv_nsec;
}

sigset_t blocked_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  return set;
}

// Waits for SIGUSR1 (runs `on_signal` with its count) until SIGTERM.
template <class Fn>
int wait_loop(Fn on_signal) {
  const sigset_t set = blocked_signals();
  for (int n = 0;; ++n) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGTERM) return 0;
    on_signal(n);
  }
}

int records() {
  const shmtrace_span_t alpha = shmtrace_span_begin_group(SHMTRACE_NAME("grp"), SHMTRACE_NAME("alpha"));
  for (int i = 0; i < 5; ++i) shmtrace_counter_i64(SHMTRACE_NAME("count"), i);
  shmtrace_event(SHMTRACE_NAME("note"), "hello");
  std::string key;
  for (int i = 0; key.size() < 100; ++i) key += "k" + std::to_string(i);
  key.resize(100);
  shmtrace_arg_strn(SHMTRACE_NAME("key"), key.data(), key.size());
  shmtrace_arg_f64(SHMTRACE_NAME("ratio"), 0.25);
  shmtrace_result_i64(SHMTRACE_NAME("ret"), -7);
  shmtrace_span_end_status(alpha, SHMTRACE_ERR);
  shmtrace_error("DumpError", "first");
  std::printf("ready %s\n", shmtrace_segment_name());
  std::fflush(stdout);
  return wait_loop([](int n) {
    shmtrace_counter_i64(SHMTRACE_NAME("more"), n);
    std::printf("more %d\n", n);
    std::fflush(stdout);
  });
}

unsigned long g_api_calls = 0;

void api_calls(unsigned long n) {
  const shmtrace_name_t name = SHMTRACE_NAME("work-a");
  for (unsigned long i = 0; i < n; ++i) {
    const shmtrace_span_t span = shmtrace_span_enter(0, name);
    const long start = now_ns();
    while (now_ns() - start < 200'000) {
    }
    shmtrace_span_leave(span, ++g_api_calls % 4 == 0 ? SHMTRACE_ERR : SHMTRACE_OK);
  }
}

__attribute__((noinline)) void code_calls(unsigned long n) {
  void* fn = reinterpret_cast<void*>(&dump_traced_leaf);
  for (unsigned long i = 0; i < n; ++i) {
    __cyg_profile_func_enter(fn, nullptr);
    g_sink = dump_traced_leaf(static_cast<int>(i));
    __cyg_profile_func_exit(fn, nullptr);
  }
}

int calls(unsigned long api, unsigned long code, unsigned long burst) {
  api_calls(api);
  code_calls(code);
  std::printf("fn dump_traced_leaf %p\nready\n", reinterpret_cast<void*>(&dump_traced_leaf));
  std::fflush(stdout);
  return wait_loop([burst](int n) {
    api_calls(burst);
    std::printf("burst %d done\n", n);
    std::fflush(stdout);
  });
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before anything else, so sigwait() gets them.
  const sigset_t set = blocked_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "records" && argc == 2) return records();
  if (mode == "exec-records" && argc == 2) {
    // One counter in this image, then the same pid becomes st_dump records:
    // two segments of one pid (an exec chain).
    shmtrace_counter_i64(SHMTRACE_NAME("before-exec"), 1);
    // By its own path, not /proc/self/exe: the thread name stays "st_dump".
    char self[4096] = {};
    if (::readlink("/proc/self/exe", self, sizeof self - 1) <= 0) return 127;
    char records_mode[] = "records";
    char* args[] = {argv[0], records_mode, nullptr};
    ::execv(self, args);
    return 127;
  }
  if (mode == "calls" && argc == 5) {
    return calls(std::strtoul(argv[2], nullptr, 10), std::strtoul(argv[3], nullptr, 10),
                 std::strtoul(argv[4], nullptr, 10));
  }
  std::fprintf(stderr, "usage: st_dump records | exec-records | calls <api> <code> <burst>\n");
  return 2;
}
