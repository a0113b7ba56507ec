// The module list of a process: what it takes to symbolize its code addresses
// later, from the files alone, after the process is gone (SPEC P9).
//
// process_modules.cpp depends on nothing but libc (dl_iterate_phdr and the
// notes the loader mapped), so the runtime can use the same walk to fill the
// segment's module map; the resolver (resolver.hpp) reads the list back.
#ifndef SHMTRACE_SYMBOLS_PROCESS_MODULES_HPP
#define SHMTRACE_SYMBOLS_PROCESS_MODULES_HPP

#include <cstdint>
#include <string>
#include <vector>

namespace shmtrace::symbols {

// One loaded object, in the terms of dl_iterate_phdr. For an address `a` in
// it, `a - base` is the address the object's own symbol tables use.
struct Module {
  std::string path;          // absolute path of the ELF file
  std::uint64_t base = 0;    // load bias (dlpi_addr): the PIE or DSO load address, 0 for non-PIE
  std::uint64_t size = 0;    // end of the highest PT_LOAD (p_vaddr + p_memsz), relative to base
  std::string build_id_hex;  // NT_GNU_BUILD_ID as lowercase hex; "" when the object has none
};

// The objects loaded in this process now: the main executable first (its path
// from /proc/self/exe), then each shared object. Objects without a file (the
// vDSO) are left out.
std::vector<Module> modules_of_this_process();

}  // namespace shmtrace::symbols

#endif  // SHMTRACE_SYMBOLS_PROCESS_MODULES_HPP
