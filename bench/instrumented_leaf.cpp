// The function the -finstrument-functions benchmark calls: built twice, with
// -finstrument-functions (instrumented_leaf) and without (plain_leaf, via
// SHMTRACE_LEAF_NAME), so the same body is measured with and without hooks.
#ifndef SHMTRACE_LEAF_NAME
#define SHMTRACE_LEAF_NAME instrumented_leaf
#endif

__attribute__((noinline)) int SHMTRACE_LEAF_NAME(int x) {
  asm volatile("" : "+r"(x));  // a body the compiler cannot fold away
  return x + 1;
}
