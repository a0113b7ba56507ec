/* A program that knows nothing of shmtrace and crashes at a known line, for
 * the symbolization tests (run under LD_PRELOAD; built with -g, see
 * tests/CMakeLists.txt): `st_faults segv` writes through a null pointer in
 * fault_here(), called from main; the test finds both lines by the marker
 * comments. */
#include <stdio.h>
#include <string.h>

__attribute__((noinline)) int fault_here(volatile int* where, int value) {
  *where = value; /* FAULT-LINE */
  return value + 1;
}

int main(int argc, char** argv) {
  if (argc != 2 || strcmp(argv[1], "segv") != 0) {
    fprintf(stderr, "usage: st_faults segv\n");
    return 2;
  }
  volatile int* nowhere = NULL;
  const int result = fault_here(nowhere, argc); /* CALL-LINE */
  printf("survived %d\n", result);
  return 0;
}
