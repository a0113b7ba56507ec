// A traced program for the multi-process tests. It links libshmtrace.so like
// any instrumented program and writes a known pattern chosen by its
// arguments, so a test can compare what it reads back exactly.
//
//   st_producer [--wait-signal] <mode> <args...>
//     sequence <threads> <per_thread>   counters seq=0..n-1 per thread, and a
//                                       string arg every 16th record
//     errors <threads> <per_thread>     explicit errors "e<thread>-<i>"
//     sampling <roots>                  roots with 2 children each; every root
//                                       records one error in its second child
//     args                              one argument of each type, sensitive
//                                       names, a 3000-byte value
//     spans <depth>                     nested spans, events and counters
//     forked <threads> <per_thread>     opens span "parent", forks; the child
//                                       opens span "child" and runs sequence;
//                                       prints "child <pid>"
//     exit <code>                       prints "hello" and exits with <code>
//     crash <how> <records>             writes <records> counters, opens span
//                                       "doomed", then dies: how = segv (a
//                                       write to address 0x10), abort, or
//                                       own-handler (installs its own SIGSEGV
//                                       handler that prints "handled" and
//                                       exits 42, then faults)
// --wait-signal: wait for SIGUSR1 before writing (the test attaches first).
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shmtrace/shmtrace.h"

namespace {

std::string payload_for(unsigned long i) {
  std::string s = "v" + std::to_string(i) + ":";
  while (s.size() < i % 200) s += static_cast<char>('a' + (s.size() % 26));
  return s;
}

void sequence_worker(int index, unsigned long count) {
  const std::string name = "worker-" + std::to_string(index);
  pthread_setname_np(pthread_self(), name.c_str());
  const shmtrace_name_t seq = SHMTRACE_NAME("seq");
  const shmtrace_name_t text = SHMTRACE_NAME("text");
  for (unsigned long i = 0; i < count; ++i) {
    shmtrace_counter_i64(seq, static_cast<int64_t>(i));
    if (i % 16 == 0) {
      const std::string p = payload_for(i);
      shmtrace_arg_strn(text, p.data(), p.size());
    }
  }
}

void errors_worker(int index, unsigned long count) {
  char message[64];
  for (unsigned long i = 0; i < count; ++i) {
    std::snprintf(message, sizeof message, "e%d-%lu", index, i);
    shmtrace_error("BurstError", message);
  }
}

template <class Fn>
void run_threads(int threads, Fn fn) {
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(fn, i);
  for (auto& t : pool) t.join();
}

void sampling(unsigned long roots) {
  const shmtrace_name_t root = SHMTRACE_NAME("root");
  const shmtrace_name_t child = SHMTRACE_NAME("child");
  for (unsigned long i = 0; i < roots; ++i) {
    const shmtrace_span_t r = shmtrace_span_begin(root);
    const shmtrace_span_t a = shmtrace_span_begin(child);
    shmtrace_span_end(a);
    const shmtrace_span_t b = shmtrace_span_begin(child);
    char message[32];
    std::snprintf(message, sizeof message, "root %lu", i);
    shmtrace_error("SampledError", message);
    shmtrace_span_end_status(b, SHMTRACE_ERR);
    shmtrace_span_end(r);
  }
}

void args() {
  const shmtrace_span_t s = shmtrace_span_begin(SHMTRACE_NAME("with_args"));
  shmtrace_arg_i64(SHMTRACE_NAME("i"), -42);
  shmtrace_arg_u64(SHMTRACE_NAME("u"), 18446744073709551615ull);
  shmtrace_arg_f64(SHMTRACE_NAME("d"), 2.5);
  shmtrace_arg_bool(SHMTRACE_NAME("b"), 1);
  shmtrace_arg_str(SHMTRACE_NAME("s"), "hello");
  shmtrace_arg_bytes(SHMTRACE_NAME("raw"), "\x00\x01\x02", 3);
  shmtrace_arg_str(SHMTRACE_NAME("password"), "hunter2");
  shmtrace_arg_i64(SHMTRACE_NAME("api_key"), 12345);
  shmtrace_arg_str(SHMTRACE_NAME("user_token"), "abc");
  shmtrace_arg_str(SHMTRACE_NAME("custom_pin"), "0000");
  std::string big(3000, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('A' + i % 26);
  shmtrace_arg_strn(SHMTRACE_NAME("big"), big.data(), big.size());
  shmtrace_result_i64(SHMTRACE_NAME("ret"), 7);
  shmtrace_span_end(s);
}

void spans(int depth) {
  std::vector<shmtrace_span_t> open;
  const shmtrace_name_t group = SHMTRACE_NAME("app.core");
  for (int i = 0; i < depth; ++i) {
    const std::string name = "level" + std::to_string(i);
    open.push_back(shmtrace_span_begin_group(i == 0 ? group : 0, shmtrace_intern(name.c_str())));
    shmtrace_event(SHMTRACE_NAME("tick"), i == 0 ? "a message longer than thirty-two bytes, continued" : "short");
    shmtrace_counter_f64(SHMTRACE_NAME("ratio"), i * 0.5);
  }
  while (!open.empty()) {
    shmtrace_span_end(open.back());
    open.pop_back();
  }
}

void own_segv_handler(int) {
  static const char kText[] = "handled\n";
  [[maybe_unused]] const ssize_t n = write(STDOUT_FILENO, kText, sizeof kText - 1);
  _exit(42);
}

int crash(const std::string& how, unsigned long records) {
  const shmtrace_name_t seq = SHMTRACE_NAME("seq");
  for (unsigned long i = 0; i < records; ++i) shmtrace_counter_i64(seq, static_cast<int64_t>(i));
  if (how == "own-handler") {
    struct sigaction action {};
    action.sa_handler = own_segv_handler;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, nullptr);
  }
  shmtrace_span_begin(SHMTRACE_NAME("doomed"));
  std::fflush(stdout);
  if (how == "abort") std::abort();
  *reinterpret_cast<volatile int*>(0x10) = 1;
  return 0;
}

int forked(int threads, unsigned long per) {
  const shmtrace_span_t parent = shmtrace_span_begin(SHMTRACE_NAME("parent"));
  const pid_t pid = fork();
  if (pid == 0) {
    const shmtrace_span_t child = shmtrace_span_begin(SHMTRACE_NAME("child"));
    run_threads(threads, [per](int i) { sequence_worker(i, per); });
    shmtrace_span_end(child);
    std::exit(0);  // not _exit: the runtime records the exit status through on_exit
  }
  int status = 0;
  waitpid(pid, &status, 0);
  shmtrace_span_end(parent);
  std::printf("child %d\n", pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

void wait_for_go() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  int sig = 0;
  sigwait(&set, &sig);
}

}  // namespace

int main(int argc, char** argv) {
  int at = 1;
  bool wait_signal = false;
  if (at < argc && std::strcmp(argv[at], "--wait-signal") == 0) {
    wait_signal = true;
    ++at;
  }
  if (wait_signal) {
    // Block before any thread exists so every thread inherits the mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::printf("ready\n");
    std::fflush(stdout);
    wait_for_go();
  }
  if (at >= argc) {
    std::fprintf(stderr, "usage: st_producer [--wait-signal] mode args...\n");
    return 2;
  }
  const std::string mode = argv[at];
  auto arg = [&](int i) { return at + i < argc ? std::strtoul(argv[at + i], nullptr, 10) : 0ul; };
  if (mode == "sequence") {
    const unsigned long per = arg(2);
    run_threads(static_cast<int>(arg(1)), [per](int i) { sequence_worker(i, per); });
  } else if (mode == "errors") {
    const unsigned long per = arg(2);
    run_threads(static_cast<int>(arg(1)), [per](int i) { errors_worker(i, per); });
  } else if (mode == "sampling") {
    sampling(arg(1));
  } else if (mode == "args") {
    args();
  } else if (mode == "spans") {
    spans(static_cast<int>(arg(1)));
  } else if (mode == "crash") {
    return crash(at + 1 < argc ? argv[at + 1] : "segv", arg(2));
  } else if (mode == "forked") {
    return forked(static_cast<int>(arg(1)), arg(2));
  } else if (mode == "exit") {
    std::printf("hello\n");
    return static_cast<int>(arg(1));
  } else {
    std::fprintf(stderr, "st_producer: unknown mode %s\n", mode.c_str());
    return 2;
  }
  std::printf("done %s\n", shmtrace_segment_name());
  return 0;
}
