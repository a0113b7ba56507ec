// The module map (P9): every loaded object's base address, size, path and
// build id, written into the segment at start and after each dlopen, so the
// drain can resolve code addresses to symbols after the process has exited.
#ifndef SHMTRACE_RUNTIME_MODULE_MAP_HPP
#define SHMTRACE_RUNTIME_MODULE_MAP_HPP

namespace shmtrace::runtime {

struct Runtime;

// Appends the objects loaded now that the map does not list yet.
void record_modules(Runtime& rt) noexcept;

}  // namespace shmtrace::runtime

#endif
