// Process lifecycle records and states (see lifecycle.cpp for the wrappers).
#ifndef SHMTRACE_RUNTIME_LIFECYCLE_HPP
#define SHMTRACE_RUNTIME_LIFECYCLE_HPP

#include <sys/types.h>

#include <cstdint>

namespace shmtrace::runtime {

// A kProcessStart record (aux = parent pid) from the thread that started the runtime.
void record_process_start() noexcept;
// A kFork record (aux = child pid) after fork succeeded.
void record_fork(pid_t child) noexcept;
// The same for a child started another way (`via`: abi::kForkVia*), with the
// program it runs (or null); `execed`: an Exec record for it too (aux = child).
void record_fork(pid_t child, std::uint8_t via, const char* target, bool execed) noexcept;
// On every way out: exit() (through on_exit), _exit, _Exit. A kExit record,
// the thread's ring released, the segment marked exited with `status`; once.
void record_exit(int status) noexcept;

}  // namespace shmtrace::runtime

#endif
