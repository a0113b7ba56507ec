/* A program that knows nothing of shmtrace and forks: `st_forks N` forks N
 * children one after the other, each of which exits at once, and waits for
 * each. bench/instrument_bench.cpp runs it with and without
 * LD_PRELOAD=libshmtrace.so to price what the preload adds to a fork. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 1;
  for (int i = 0; i < n; ++i) {
    const pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) _exit(0);
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return 1;
  }
  return 0;
}
