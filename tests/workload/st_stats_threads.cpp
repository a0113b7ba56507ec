// st_stats_threads: a multi-threaded program built with -finstrument-functions
// for the call-site statistics tests (P13). Each of its instrumented
// functions counts its own calls per thread, so a test can compare the
// runtime's statistics with what really ran, whatever the ring dropped or
// sampling left out.
//
//   st_stats_threads <threads> <iterations>
//     Each thread calls outer(i) for i < iterations, each call a root span;
//     outer calls middle (which calls leaf twice) and, every 5th time,
//     recurses through deep. All threads wait for each other before they
//     exit, so each owns a ring of its own. Prints, after joining them:
//       fn <name> <address in hex>          once per function
//       thread <index> tid <tid>
//       thread <index> count <name> <calls> per thread and function
//
// Thread entry and bookkeeping are not instrumented (no_instrument_function),
// and the counters are TLS arrays bumped by a macro, never by a function.
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#define NOT_TRACED __attribute__((no_instrument_function))
#define TRACED __attribute__((noinline))

namespace {

enum Function { kOuter, kMiddle, kLeaf, kDeep, kFunctionCount };
constexpr const char* kNames[kFunctionCount] = {"outer", "middle", "leaf", "deep"};

__thread unsigned long t_calls[kFunctionCount];
#define COUNT(f) (++t_calls[f])

__thread volatile unsigned t_sink;  // keeps results alive; per thread, no race

TRACED int leaf(int x) {
  COUNT(kLeaf);
  return x * 3 + 1;
}

TRACED int middle(int x) {
  COUNT(kMiddle);
  return leaf(x) + leaf(x + 1);
}

TRACED int deep(int n) {
  COUNT(kDeep);
  return n == 0 ? 0 : deep(n - 1) + 1;
}

TRACED int outer(int i) {
  COUNT(kOuter);
  int sum = middle(i);
  if (i % 5 == 0) sum += deep(i % 7);
  return sum;
}

struct Worker {
  int index = 0;
  int iterations = 0;
  pid_t tid = 0;
  unsigned long calls[kFunctionCount] = {};
};

pthread_barrier_t g_barrier;

NOT_TRACED void* run_worker(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  w->tid = ::gettid();
  unsigned sum = 0;  // wraps (defined for unsigned) over millions of iterations
  for (int i = 0; i < w->iterations; ++i) sum += static_cast<unsigned>(outer(i));
  t_sink = sum;
  for (int f = 0; f < kFunctionCount; ++f) w->calls[f] = t_calls[f];
  // Every thread still holds its ring here: none reuses another's.
  pthread_barrier_wait(&g_barrier);
  return nullptr;
}

}  // namespace

NOT_TRACED int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: st_stats_threads <threads> <iterations>\n");
    return 2;
  }
  const int threads = std::atoi(argv[1]);
  const int iterations = std::atoi(argv[2]);
  std::vector<Worker> workers(static_cast<std::size_t>(threads));
  std::vector<pthread_t> ids(workers.size());
  pthread_barrier_init(&g_barrier, nullptr, static_cast<unsigned>(threads));
  for (int i = 0; i < threads; ++i) {
    workers[i].index = i;
    workers[i].iterations = iterations;
    pthread_create(&ids[i], nullptr, run_worker, &workers[i]);
  }
  for (pthread_t id : ids) pthread_join(id, nullptr);
  const void* addresses[kFunctionCount] = {reinterpret_cast<const void*>(&outer),
                                           reinterpret_cast<const void*>(&middle),
                                           reinterpret_cast<const void*>(&leaf),
                                           reinterpret_cast<const void*>(&deep)};
  for (int f = 0; f < kFunctionCount; ++f) std::printf("fn %s %p\n", kNames[f], addresses[f]);
  for (const Worker& w : workers) {
    std::printf("thread %d tid %d\n", w.index, static_cast<int>(w.tid));
    for (int f = 0; f < kFunctionCount; ++f) std::printf("thread %d count %s %lu\n", w.index, kNames[f], w.calls[f]);
  }
  return 0;
}
