/* A program that knows nothing of shmtrace, for the preload tests: the
 * runtime gets into it only through LD_PRELOAD.
 *
 *   st_plain hello <code>   prints "hello" and exits with <code>
 *   st_plain tree           starts three children of itself ("leaf"): one by
 *                           fork + execl, one by posix_spawn, one by vfork +
 *                           execv; prints "<how> <pid> <exit code>" for each
 *   st_plain leaf           prints "leaf <pid> <ppid>" and _exit(5)s
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static int wait_for(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int tree(const char* self) {
  char* const leaf[] = {(char*)self, "leaf", NULL};
  fflush(stdout);
  pid_t forked = fork();
  if (forked == 0) {
    execl(self, self, "leaf", (char*)NULL); /* the variadic family, too */
    _exit(127);
  }
  printf("fork %d %d\n", forked, wait_for(forked));
  fflush(stdout);
  pid_t spawned = 0;
  if (posix_spawn(&spawned, self, NULL, NULL, leaf, environ) != 0) return 1;
  printf("spawn %d %d\n", spawned, wait_for(spawned));
  fflush(stdout);
  pid_t vforked = vfork();
  if (vforked == 0) {
    execv(self, leaf);
    _exit(127);
  }
  printf("vfork %d %d\n", vforked, wait_for(vforked));
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "hello") == 0) {
    printf("hello\n");
    return argc >= 3 ? atoi(argv[2]) : 0;
  }
  if (argc >= 2 && strcmp(argv[1], "tree") == 0) return tree("/proc/self/exe");
  if (argc >= 2 && strcmp(argv[1], "leaf") == 0) {
    printf("leaf %d %d\n", getpid(), getppid());
    fflush(stdout);
    _exit(5);
  }
  fprintf(stderr, "usage: st_plain hello <code> | tree | leaf\n");
  return 2;
}
