// A C API program for the call-site statistics tests (P13).
//
//   st_stats_api busy <calls>
//     Spans "busy-2us", "busy-20us", "busy-200us", <calls> each, nested
//     under a root span "busy"; inside each span the program busy-waits on
//     CLOCK_MONOTONIC for the named time. It times every span twice itself:
//     inside (first to last clock read of the wait) and outside (just before
//     the begin to just after the end): the span's own duration lies between.
//     Prints per span name:
//       measured <name> inner_p50_ns <ns> outer_p50_ns <ns>
//   st_stats_api sites <names> <threads>
//     On each of <threads> threads, one after another (each thread exits
//     before the next starts, so later ones reuse the first's ring), span
//     "site-<i>" is begun and ended i + 1 times for i < <names>, in order of
//     i; every 3rd call ends with status ERR. Prints nothing.
//   st_stats_api nest <roots>
//     <roots> times: span "f" calls span "g" twice, each "g" calls span "h";
//     each of them busy-waits ~2 us of its own before and after its
//     callees, so every span has self time and child time. Prints nothing:
//     the test derives self time from the stored spans themselves.
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shmtrace/shmtrace.h"

namespace {

long now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000L + ts.tv_nsec;
}

long median(std::vector<long> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int busy(int calls) {
  struct Kind {
    const char* name;
    long ns;
  };
  const Kind kinds[] = {{"busy-2us", 2'000}, {"busy-20us", 20'000}, {"busy-200us", 200'000}};
  const shmtrace_span_t root = shmtrace_span_begin(shmtrace_intern("busy"));
  for (const Kind& k : kinds) {
    const shmtrace_name_t name = shmtrace_intern(k.name);
    std::vector<long> inner;
    std::vector<long> outer;
    for (int i = 0; i < calls; ++i) {
      const long before = now_ns();
      const shmtrace_span_t span = shmtrace_span_enter(0, name);
      const long start = now_ns();
      long now = start;
      while (now - start < k.ns) now = now_ns();
      shmtrace_span_leave(span, SHMTRACE_OK);
      const long after = now_ns();
      inner.push_back(now - start);
      outer.push_back(after - before);
    }
    std::printf("measured %s inner_p50_ns %ld outer_p50_ns %ld\n", k.name, median(inner), median(outer));
  }
  shmtrace_span_end(root);
  return 0;
}

void spin(long ns) {
  const long start = now_ns();
  while (now_ns() - start < ns) {
  }
}

int nest(int roots) {
  const shmtrace_name_t f = shmtrace_intern("f"), g = shmtrace_intern("g"), h = shmtrace_intern("h");
  for (int i = 0; i < roots; ++i) {
    const shmtrace_span_t fs = shmtrace_span_begin(f);
    spin(2'000);
    for (int k = 0; k < 2; ++k) {
      const shmtrace_span_t gs = shmtrace_span_begin(g);
      spin(2'000);
      const shmtrace_span_t hs = shmtrace_span_begin(h);
      spin(3'000);
      shmtrace_span_end(hs);
      spin(1'000);
      shmtrace_span_end(gs);
    }
    spin(1'000);
    shmtrace_span_end(fs);
  }
  return 0;
}

void sites_thread(int names) {
  unsigned call = 0;
  for (int i = 0; i < names; ++i) {
    const shmtrace_name_t name = shmtrace_intern(("site-" + std::to_string(i)).c_str());
    for (int n = 0; n <= i; ++n) {
      const shmtrace_span_t span = shmtrace_span_enter(0, name);
      shmtrace_span_leave(span, ++call % 3 == 0 ? SHMTRACE_ERR : SHMTRACE_OK);
    }
  }
}

int sites(int names, int threads) {
  for (int t = 0; t < threads; ++t) std::thread(sites_thread, names).join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "busy" && argc == 3) return busy(std::atoi(argv[2]));
  if (mode == "sites" && argc == 4) return sites(std::atoi(argv[2]), std::atoi(argv[3]));
  if (mode == "nest" && argc == 3) return nest(std::atoi(argv[2]));
  std::fprintf(stderr, "usage: st_stats_api busy <calls> | sites <names> <threads> | nest <roots>\n");
  return 2;
}
