/* st_longjmp: an instrumented C program (-finstrument-functions) that leaves
 * nested frames with longjmp, then recurses deep, for the call-stack tests
 * (P13). Every instrumented function counts its own calls.
 *
 *   st_longjmp <recursion depth> <dive depth>...
 *     For each dive depth d: session(d) calls guarded(d), which setjmp()s
 *     and calls dive(d); dive recurses to depth 0 and longjmp()s back, so
 *     d + 1 dive frames never run their exit hook. guarded then calls
 *     after_jump() (before its own exit) and returns; session then calls
 *     settle(), which busy-waits about 50 us on CLOCK_MONOTONIC. Finally
 *     recurse(<recursion depth>). Prints:
 *       fn <function> <address in hex>  for each function
 *       count <function> <calls>        for each function
 *       settle_ns <i> <ns>            what each settle() measured itself
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOT_TRACED __attribute__((no_instrument_function))
#define TRACED __attribute__((noinline))

enum { kSession, kGuarded, kDive, kAfterJump, kSettle, kRecurse, kFunctionCount };
static const char* const kNames[kFunctionCount] = {"session", "guarded", "dive", "after_jump", "settle", "recurse"};
static unsigned long g_calls[kFunctionCount];
#define COUNT(f) (++g_calls[f])

static jmp_buf g_env;
static long g_settle_ns[64];
static int g_settles;
static volatile int g_sink;

NOT_TRACED static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

TRACED void dive(int depth) {
  COUNT(kDive);
  if (depth <= 0) longjmp(g_env, 1);
  if (depth < 100000) dive(depth - 1);
  g_sink = depth;
}

TRACED void after_jump(void) {
  COUNT(kAfterJump);
  g_sink = 1;
}

TRACED int guarded(int depth) {
  COUNT(kGuarded);
  if (setjmp(g_env) == 0) {
    dive(depth);
  } else {
    after_jump();
  }
  return depth;
}

TRACED void settle(void) {
  COUNT(kSettle);
  const long start = now_ns();
  long now = start;
  while (now - start < 50000) now = now_ns();
  if (g_settles < 64) g_settle_ns[g_settles++] = now - start;
}

TRACED void session(int depth) {
  COUNT(kSession);
  g_sink = guarded(depth);
  settle();
}

TRACED int recurse(int n) {
  COUNT(kRecurse);
  return n == 0 ? 0 : 1 + recurse(n - 1);
}

NOT_TRACED int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: st_longjmp <recursion depth> <dive depth>...\n");
    return 2;
  }
  for (int i = 2; i < argc; ++i) session(atoi(argv[i]));
  g_sink = recurse(atoi(argv[1]));
  const uintptr_t addresses[kFunctionCount] = {(uintptr_t)session, (uintptr_t)guarded,    (uintptr_t)dive,
                                               (uintptr_t)after_jump, (uintptr_t)settle, (uintptr_t)recurse};
  for (int f = 0; f < kFunctionCount; ++f) printf("fn %s %lx\n", kNames[f], (unsigned long)addresses[f]);
  for (int f = 0; f < kFunctionCount; ++f) printf("count %s %lu\n", kNames[f], g_calls[f]);
  for (int i = 0; i < g_settles; ++i) printf("settle_ns %d %ld\n", i, g_settle_ns[i]);
  return 0;
}
