// What the segment header records about the process that owns it (P1).
#ifndef SHMTRACE_RUNTIME_PROCESS_INFO_HPP
#define SHMTRACE_RUNTIME_PROCESS_INFO_HPP

#include <cstdint>
#include <string>

namespace shmtrace::runtime {

struct ProcessInfo {
  std::uint32_t pid = 0;
  std::uint32_t ppid = 0;
  std::uint32_t uid = 0;
  std::uint64_t start_ticks = 0;  // /proc/self/stat field 22 (clock ticks since boot)
  std::string exe;                // /proc/self/exe
  std::string cmdline;            // argv joined by NUL bytes
  std::string exe_name;           // basename of exe: the default process group
};

// Reads /proc/self; missing pieces stay empty, it never fails.
ProcessInfo read_process_info();

// 64 random bits from getrandom, falling back to clock mixing.
std::uint64_t random_u64() noexcept;

}  // namespace shmtrace::runtime

#endif
