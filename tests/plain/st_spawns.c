/* A program that knows nothing of shmtrace and starts children every way
 * libc offers, for the process-event tests (run under LD_PRELOAD):
 *
 *   st_spawns all
 *     in order: fork + _exit(0); vfork + execv(self, "exit"); posix_spawn
 *     (self, "exit"); posix_spawnp("st_spawns", "exit") through PATH; fork
 *     + execv(self, "chain", "b"): an exec chain A -> B -> C; a failed execv
 *     in this image; vfork + a failed execv + _exit(127). Waits for every
 *     child, then prints one line per child, "<how> <pid>", and exits 0
 *     (1 when something did not go as planned).
 *   st_spawns chain b   execs itself as "chain c"
 *   st_spawns chain c   exits 0
 *   st_spawns exit      exits 0
 *
 * The failed execs use the path /nonexistent/st_missing. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static const char* self;

static int reaped(pid_t child, int expected) {
  int status = 0;
  return waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == expected;
}

int main(int argc, char** argv) {
  self = argv[0];
  if (argc == 2 && strcmp(argv[1], "exit") == 0) return 0;
  if (argc == 3 && strcmp(argv[1], "chain") == 0 && strcmp(argv[2], "c") == 0) return 0;
  if (argc == 3 && strcmp(argv[1], "chain") == 0 && strcmp(argv[2], "b") == 0) {
    execl(self, self, "chain", "c", (char*)NULL);
    return 1;
  }
  if (argc != 2 || strcmp(argv[1], "all") != 0) {
    fprintf(stderr, "usage: st_spawns all | chain b | chain c | exit\n");
    return 2;
  }
  int ok = 1;
  char* exit_argv[] = {(char*)self, "exit", NULL};
  char* spawnp_argv[] = {"st_spawns", "exit", NULL};
  char* chain_argv[] = {(char*)self, "chain", "b", NULL};
  char* missing_argv[] = {"/nonexistent/st_missing", NULL};

  const pid_t forked = fork();
  if (forked == 0) _exit(0);
  ok &= forked > 0 && reaped(forked, 0);

  const pid_t vforked = vfork();
  if (vforked == 0) {
    execv(self, exit_argv);
    _exit(126);
  }
  ok &= vforked > 0 && reaped(vforked, 0);

  pid_t spawned = 0;
  ok &= posix_spawn(&spawned, self, NULL, NULL, exit_argv, environ) == 0 && reaped(spawned, 0);

  pid_t spawnedp = 0;
  ok &= posix_spawnp(&spawnedp, "st_spawns", NULL, NULL, spawnp_argv, environ) == 0 && reaped(spawnedp, 0);

  const pid_t chain = fork();
  if (chain == 0) {
    execv(self, chain_argv);
    _exit(1);
  }
  ok &= chain > 0 && reaped(chain, 0);

  ok &= execv(missing_argv[0], missing_argv) == -1;

  const pid_t vfork_failed = vfork();
  if (vfork_failed == 0) {
    execv(missing_argv[0], missing_argv);
    _exit(127);
  }
  ok &= vfork_failed > 0 && reaped(vfork_failed, 127);

  printf("fork %d\nvfork %d\nspawn %d\nspawnp %d\nchain %d\nvfork_failed %d\n", (int)forked, (int)vforked,
         (int)spawned, (int)spawnedp, (int)chain, (int)vfork_failed);
  return ok ? 0 : 1;
}
