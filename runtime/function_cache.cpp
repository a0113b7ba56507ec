#include "function_cache.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#include "runtime.hpp"
#include "shmtrace/repr.hpp"

namespace shmtrace::runtime {

FunctionCache::FunctionCache() {
  void* p = ::mmap(nullptr, 2 * kSlots * sizeof(std::uint64_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  keys_ = static_cast<std::uint64_t*>(p);
  infos_ = keys_ + kSlots;
}

FunctionCache::~FunctionCache() { ::munmap(keys_, 2 * kSlots * sizeof(std::uint64_t)); }

FunctionInfo FunctionCache::decide(Runtime& rt, std::uintptr_t fn) noexcept {
  FunctionInfo info;
  std::string name;
  try {
    // The dynamic symbol table only (dladdr): exported functions, and every
    // function of a program linked with -rdynamic. Others are named by
    // address and resolved by the drain through the module map.
    Dl_info where{};
    if (::dladdr(reinterpret_cast<void*>(fn), &where) != 0 && where.dli_sname != nullptr &&
        reinterpret_cast<std::uintptr_t>(where.dli_saddr) == fn) {
      int status = 0;
      char* demangled = ::abi::__cxa_demangle(where.dli_sname, nullptr, nullptr, &status);
      name = demangled != nullptr ? demangled : where.dli_sname;
      std::free(demangled);
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "@0x%llx", static_cast<unsigned long long>(fn));
      name = buf;
    }
    info.traced = rt.function_traced(name) ? 1 : 0;
    info.name_id = rt.intern(name);
    const std::string_view group = detail::parse_function_signature(name).group;
    info.group_id = group.empty() ? 0 : rt.intern(group);
  } catch (...) {
    info = FunctionInfo{0, 0, true};  // out of memory: trace it, unnamed
  }
  remember(fn, info);
  return info;
}

void FunctionCache::remember(std::uintptr_t fn, const FunctionInfo& info) noexcept {
  const std::uint64_t packed = kReady | (info.traced ? kTraced : 0) |
                               (static_cast<std::uint64_t>(info.group_id & 0x3fffffffu) << 32) | info.name_id;
  std::uint64_t i = slot_of(fn);
  for (std::uint32_t probe = 0; probe < kProbes; ++probe, i = (i + 1) & (kSlots - 1)) {
    std::uint64_t key = 0;
    // Claims an empty slot for fn; a loser that finds fn there shares it.
    if (abi::atomic_cas(keys_[i], key, static_cast<std::uint64_t>(fn), std::memory_order_acq_rel) || key == fn) {
      // Publishes the decision; pairs with lookup()'s acquire load.
      abi::atomic_store(infos_[i], packed, std::memory_order_release);
      return;
    }
  }
  // Neighbourhood full: decided again on every call, still correct.
}

}  // namespace shmtrace::runtime
