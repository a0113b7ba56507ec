/* A program that knows nothing of shmtrace and counts the SIGINTs it gets,
 * for the test that a terminal's Ctrl-C reaches a command under
 * `shmtrace run` exactly once: prints "ready", waits for a first SIGINT,
 * then 500 ms more for any other, prints "sigint <n>" and exits with n. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t count = 0;

static void on_sigint(int sig) {
  (void)sig;
  count = count + 1;
}

int main(void) {
  struct sigaction action = {0};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < 3000 && count == 0; ++i) usleep(10000); /* at most 30 s */
  for (int i = 0; i < 50; ++i) usleep(10000); /* a signal cuts one short, not all */
  printf("sigint %d\n", (int)count);
  return (int)count;
}
