// Process lifecycle wrappers (P8, P9): fork, the exec family, posix_spawn and
// _exit are interposed so that
//   * the process tree can be rebuilt: kFork/kExec/kExit records, and the
//     segment's state says an image exec'd (into what) or exited (with what);
//   * a child started from a traced process joins its trace: TRACEPARENT in
//     the new image's environment carries the current span.
// Exec and spawn build the new environment on the stack, without malloc: a
// vfork child runs in its parent's memory, where it must not allocate, and
// must not mark its parent's segment (it checks the pid first).
//
// Events: every child started here gets one Fork record in its parent
// (flags: fork, vfork, spawn, clone), and every exec one exec event:
//   * an image that execs itself (a fork child, the program) marks its
//     header (state kExeced, exec_target_id) and writes no record: the drain
//     makes the exec event from the header, so a successful exec is told
//     once and a failed one is not told as one. A failed exec writes one
//     Exec record with kStatusErr (the header goes back to running);
//   * a vfork child must not write its parent's ring. It runs on its
//     parent's thread, in its memory: it leaves what it tried to exec, and
//     whether that failed, in the thread's VforkHandoff, and the parent
//     writes the Fork and Exec records once vfork returns;
//   * a posix_spawn child execs inside glibc: its parent writes the Fork
//     (kForkViaSpawn) and, on success, the Exec record.
// Exec records carry the pid that exec'd in aux.
#include <dlfcn.h>
#include <spawn.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "clock.hpp"
#include "shmtrace/shmtrace.h"
#include "lifecycle.hpp"
#include "thread_state.hpp"

extern char** environ;

// What a vfork child leaves for its parent (see the top of this file), per
// thread. `return_address` and `active` are used by the vfork wrapper's
// assembly below, so the layout is fixed.
extern "C" {
struct VforkHandoff {
  std::uint64_t return_address;  // the vfork caller's, kept off the shared stack
  std::uint64_t active;          // 1 between the vfork call and its return in the parent
  std::uint8_t tried;            // the child called an exec
  std::uint8_t failed;           // ... and the last one failed
  char target[246];              // the last exec's path, NUL-terminated, truncated
};
__attribute__((visibility("hidden"))) constinit thread_local VforkHandoff
    g_vfork_handoff __attribute__((tls_model("initial-exec"))) = {};
}
static_assert(offsetof(VforkHandoff, active) == 8);

namespace shmtrace::runtime {
namespace {

// Stack arrays, so kept small (a thread may have a small stack): a larger
// environment passes unchanged (without TRACEPARENT), a longer execl*
// argument list fails with E2BIG.
constexpr std::size_t kMaxEnvironment = 1024;
constexpr std::size_t kMaxArguments = 512;

template <class Fn>
Fn real(const char* name) noexcept {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

// The runtime of this process image, or null: off, or a vfork child (which
// shares its parent's runtime and must not write to it).
Runtime* own_runtime() noexcept {
  Runtime* rt = __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
  if (rt == nullptr || rt->header->pid != static_cast<std::uint32_t>(::syscall(SYS_getpid))) return nullptr;
  return rt;
}

void emit_lifecycle(Runtime& rt, abi::RecordKind kind, std::uint8_t flags, std::uint32_t name,
                    std::uint64_t aux) noexcept {
  ThreadState& t = tls_state;
  if (t.status != ThreadStatus::kReady && !ensure_thread(t, rt)) return;
  abi::Record r{};
  r.kind = static_cast<std::uint8_t>(kind);
  r.flags = flags;
  r.name_id = name;
  r.timestamp = now_ticks();
  r.span_id = current_span(t);
  r.aux = aux;
  emit_one(t, rt, r);
}

// `envp` with TRACEPARENT set to the current context, in `out` (room for
// kMaxEnvironment + 2 pointers) and `entry` (room for the "TRACEPARENT=..."
// text). Returns envp itself when there is no context or no room.
char* const* with_traceparent(char* const* envp, char** out, char* entry) noexcept {
  static constexpr char kPrefix[] = "TRACEPARENT=";
  constexpr std::size_t kPrefixLength = sizeof kPrefix - 1;
  if (envp == nullptr || shmtrace_traceparent(entry + kPrefixLength, SHMTRACE_TRACEPARENT_SIZE) != 0) return envp;
  std::memcpy(entry, kPrefix, kPrefixLength);
  std::size_t n = 0;
  for (char* const* e = envp; *e != nullptr; ++e) {
    if (std::strncmp(*e, kPrefix, kPrefixLength) == 0) continue;  // replaced below
    if (n == kMaxEnvironment) return envp;
    out[n++] = *e;
  }
  out[n++] = entry;
  out[n] = nullptr;
  return out;
}

// A vfork child: the runtime is its parent's and the thread is inside vfork.
bool in_vfork_child() noexcept {
  return __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE) != nullptr && own_runtime() == nullptr &&
         g_vfork_handoff.active != 0;
}

std::uint64_t own_pid() noexcept { return static_cast<std::uint64_t>(::syscall(SYS_getpid)); }

// Before an exec: mark the image (or, in a vfork child, tell the parent);
// returns whether it marked the image, so a failed exec can be undone.
bool before_exec(const char* path) noexcept {
  Runtime* rt = own_runtime();
  if (rt == nullptr) {
    if (in_vfork_child()) {
      VforkHandoff& h = g_vfork_handoff;
      const std::size_t n = path != nullptr ? ::strnlen(path, sizeof h.target - 1) : 0;
      if (n > 0) std::memcpy(h.target, path, n);
      h.target[n] = '\0';
      h.tried = 1;
      h.failed = 0;
    }
    return false;
  }
  const std::uint32_t target = path != nullptr ? rt->intern(path) : 0;
  rt->header->exec_target_id = target;
  rt->header->end_ticks = now_ticks();
  // Publishes exec_target_id; pairs with the reader's acquire load of state.
  abi::atomic_store(rt->header->state, static_cast<std::uint32_t>(abi::ProcessState::kExeced),
                    std::memory_order_release);
  return true;
}

void after_failed_exec(bool marked) noexcept {
  Runtime* rt = own_runtime();
  if (rt == nullptr && in_vfork_child()) g_vfork_handoff.failed = 1;
  if (!marked || rt == nullptr) return;
  abi::atomic_store(rt->header->state, static_cast<std::uint32_t>(abi::ProcessState::kRunning),
                    std::memory_order_release);
  emit_lifecycle(*rt, abi::RecordKind::kExec, abi::kStatusErr, rt->header->exec_target_id, own_pid());
}

using ExecFn = int (*)(const char*, char* const[], char* const[]);

int traced_exec(ExecFn exec, const char* path, char* const argv[], char* const envp[]) noexcept {
  char* environment[kMaxEnvironment + 2];
  char entry[16 + SHMTRACE_TRACEPARENT_SIZE];
  char* const* env = with_traceparent(envp, environment, entry);
  const bool marked = before_exec(path);
  const int rc = exec(path, argv, env);
  const int saved = errno;
  after_failed_exec(marked);
  errno = saved;
  return rc;
}

// Collects an execl-style argument list (the first argument already read).
bool collect_arguments(const char* first, va_list& rest, char** out) noexcept {
  std::size_t n = 0;
  for (const char* a = first;; a = va_arg(rest, const char*)) {
    if (n == kMaxArguments) return false;
    out[n++] = const_cast<char*>(a);
    if (a == nullptr) return true;
  }
}

}  // namespace

void record_process_start() noexcept {
  if (Runtime* rt = own_runtime()) emit_lifecycle(*rt, abi::RecordKind::kProcessStart, 0, 0, rt->header->ppid);
}

void record_fork(pid_t child, std::uint8_t via, const char* target, bool execed) noexcept {
  Runtime* rt = own_runtime();
  if (rt == nullptr) return;
  const std::uint32_t name = target != nullptr && target[0] != '\0' ? rt->intern(target) : 0;
  emit_lifecycle(*rt, abi::RecordKind::kFork, via, name, static_cast<std::uint64_t>(child));
  if (execed) emit_lifecycle(*rt, abi::RecordKind::kExec, 0, name, static_cast<std::uint64_t>(child));
}

void record_fork(pid_t child) noexcept { record_fork(child, 0, nullptr, false); }

void record_exit(int status) noexcept {
  Runtime* rt = own_runtime();
  if (rt == nullptr) return;
  const auto state = abi::atomic_load(rt->header->state, std::memory_order_acquire);
  if (state != static_cast<std::uint32_t>(abi::ProcessState::kRunning)) return;  // recorded already
  emit_lifecycle(*rt, abi::RecordKind::kExit, 0, 0, static_cast<std::uint64_t>(static_cast<std::uint32_t>(status)));
  end_thread(tls_state, *rt);
  rt->header->exit_status = status;
  rt->header->end_ticks = now_ticks();
  // Publishes exit_status and end_ticks; pairs with the reader's acquire load.
  abi::atomic_store(rt->header->state, static_cast<std::uint32_t>(abi::ProcessState::kExited),
                    std::memory_order_release);
}

}  // namespace shmtrace::runtime

using namespace shmtrace::runtime;
namespace abi = shmtrace::abi;

#define SHMTRACE_WRAPPER extern "C" SHMTRACE_API

SHMTRACE_WRAPPER pid_t fork(void) {
  static auto real_fork = real<pid_t (*)()>("fork");
  const pid_t child = real_fork();  // runs the runtime's atfork handlers
  if (child > 0) record_fork(child);
  return child;
}

SHMTRACE_WRAPPER int execve(const char* path, char* const argv[], char* const envp[]) {
  static auto exec = real<ExecFn>("execve");
  return traced_exec(exec, path, argv, envp);
}

SHMTRACE_WRAPPER int execv(const char* path, char* const argv[]) { return execve(path, argv, environ); }

SHMTRACE_WRAPPER int execvpe(const char* file, char* const argv[], char* const envp[]) {
  static auto exec = real<ExecFn>("execvpe");
  return traced_exec(exec, file, argv, envp);
}

SHMTRACE_WRAPPER int execvp(const char* file, char* const argv[]) { return execvpe(file, argv, environ); }

namespace {

// The execl* family: gathers the argument list (and, for execle, the
// environment after it), then calls the vector form.
int exec_list(int (*exec)(const char*, char* const[], char* const[]), const char* file, const char* arg,
              va_list& rest, bool environment_follows) {
  char* argv[kMaxArguments];
  if (!collect_arguments(arg, rest, argv)) {
    errno = E2BIG;
    return -1;
  }
  char* const* envp = environment_follows ? va_arg(rest, char* const*) : environ;
  return exec(file, argv, envp);
}

}  // namespace

SHMTRACE_WRAPPER int execl(const char* path, const char* arg, ...) {
  va_list rest;
  va_start(rest, arg);
  const int rc = exec_list(execve, path, arg, rest, false);
  va_end(rest);
  return rc;
}

SHMTRACE_WRAPPER int execlp(const char* file, const char* arg, ...) {
  va_list rest;
  va_start(rest, arg);
  const int rc = exec_list(execvpe, file, arg, rest, false);
  va_end(rest);
  return rc;
}

SHMTRACE_WRAPPER int execle(const char* path, const char* arg, ...) {
  va_list rest;
  va_start(rest, arg);
  const int rc = exec_list(execve, path, arg, rest, true);
  va_end(rest);
  return rc;
}

namespace {

using SpawnFn = int (*)(pid_t*, const char*, const posix_spawn_file_actions_t*, const posix_spawnattr_t*,
                        char* const[], char* const[]);

int traced_spawn(SpawnFn spawn, pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                 const posix_spawnattr_t* attributes, char* const argv[], char* const envp[]) {
  char* environment[kMaxEnvironment + 2];
  char entry[16 + SHMTRACE_TRACEPARENT_SIZE];
  pid_t child = 0;
  const int rc = spawn(&child, path, actions, attributes, argv, with_traceparent(envp, environment, entry));
  if (rc == 0) {
    if (pid != nullptr) *pid = child;
    // glibc reports a failed exec of the child as spawn's own failure: a
    // child spawned is a program exec'd.
    record_fork(child, abi::kForkViaSpawn, path, true);
  }
  return rc;
}

}  // namespace

SHMTRACE_WRAPPER int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                                 const posix_spawnattr_t* attributes, char* const argv[], char* const envp[]) {
  static auto spawn = real<SpawnFn>("posix_spawn");
  return traced_spawn(spawn, pid, path, actions, attributes, argv, envp);
}

SHMTRACE_WRAPPER int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* actions,
                                  const posix_spawnattr_t* attributes, char* const argv[], char* const envp[]) {
  static auto spawn = real<SpawnFn>("posix_spawnp");
  return traced_spawn(spawn, pid, file, actions, attributes, argv, envp);
}

// fexecve: the target is what the descriptor names in /proc (no malloc).
SHMTRACE_WRAPPER int fexecve(int fd, char* const argv[], char* const envp[]) {
  static auto exec = real<int (*)(int, char* const[], char* const[])>("fexecve");
  char link[32];
  char target[256];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  target[n > 0 ? n : 0] = '\0';
  char* environment[kMaxEnvironment + 2];
  char entry[16 + SHMTRACE_TRACEPARENT_SIZE];
  char* const* env = with_traceparent(envp, environment, entry);
  const bool marked = before_exec(n > 0 ? target : link);
  const int rc = exec(fd, argv, env);
  const int saved = errno;
  after_failed_exec(marked);
  errno = saved;
  return rc;
}

// clone() through libc without CLONE_THREAD starts a process (its child
// runs no atfork handler: it keeps the parent's runtime, which it never
// writes, as own_runtime() checks the pid). The optional arguments are
// passed on whether or not the caller gave them, as glibc reads them.
SHMTRACE_WRAPPER int clone(int (*fn)(void*), void* stack, int flags, void* arg, ...) {
  static auto real_clone = real<int (*)(int (*)(void*), void*, int, void*, ...)>("clone");
  va_list rest;
  va_start(rest, arg);
  pid_t* parent_tid = va_arg(rest, pid_t*);
  void* tls = va_arg(rest, void*);
  pid_t* child_tid = va_arg(rest, pid_t*);
  va_end(rest);
  const int rc = real_clone(fn, stack, flags, arg, parent_tid, tls, child_tid);
  if (rc > 0 && (flags & CLONE_THREAD) == 0) {
    const int saved = errno;
    record_fork(rc, abi::kForkViaClone, nullptr, false);
    errno = saved;
  }
  return rc;
}

// The parent's side of vfork, called by the wrapper below once vfork
// returned a child: the Fork record and, if the child tried an exec, its
// Exec record (kStatusErr when the last one failed).
extern "C" __attribute__((visibility("hidden"))) void shmtrace_after_vfork(pid_t child) noexcept {
  VforkHandoff& h = g_vfork_handoff;
  const int saved = errno;
  h.active = 0;
  if (Runtime* rt = own_runtime()) {
    const std::uint32_t name = h.tried != 0 ? rt->intern(h.target) : 0;
    emit_lifecycle(*rt, abi::RecordKind::kFork, abi::kForkViaVfork, name, static_cast<std::uint64_t>(child));
    if (h.tried != 0) {
      emit_lifecycle(*rt, abi::RecordKind::kExec, h.failed != 0 ? abi::kStatusErr : 0, name,
                     static_cast<std::uint64_t>(child));
    }
  }
  h.tried = 0;
  h.failed = 0;
  errno = saved;
}

// vfork cannot be wrapped by a C function: the child returns from it and
// goes on in the caller's frame, overwriting the wrapper's frame (return
// address included) before the parent resumes. So, as glibc's own vfork
// does, the wrapper keeps the return address off the stack (in the
// thread's VforkHandoff, which the child never changes) and the parent
// records the child once glibc's __vfork returned to it. `active` tells
// the exec wrappers in the child that they run in a vfork child.
#if (defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)) && defined(__x86_64__)
// A sanitizer build of the runtime: the vfork child would run sanitized code
// on its parent's stack (AddressSanitizer then reports the parent's frames
// as overflowed), so vfork is a fork, as POSIX allows, and records as one.
SHMTRACE_WRAPPER pid_t vfork() { return fork(); }
#elif defined(__x86_64__)
asm(R"(
  .text
  .globl vfork
  .type vfork, @function
  .p2align 4
vfork:
  popq %rcx
  movq g_vfork_handoff@gottpoff(%rip), %rdx
  movq %rcx, %fs:(%rdx)
  movq $1, %fs:8(%rdx)
  call __vfork@PLT
  movq g_vfork_handoff@gottpoff(%rip), %rdx
  movq %fs:(%rdx), %rcx
  testl %eax, %eax
  jle 1f
  pushq %rcx
  pushq %rax
  movl %eax, %edi
  call shmtrace_after_vfork@PLT
  popq %rax
  popq %rcx
  jmp 2f
1:
  jz 2f
  movq $0, %fs:8(%rdx)
2:
  pushq %rcx
  ret
  .size vfork, .-vfork
)");
#endif

SHMTRACE_WRAPPER [[noreturn]] void _exit(int status) {
  record_exit(status);
  ::syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

SHMTRACE_WRAPPER [[noreturn]] void _Exit(int status) { _exit(status); }
