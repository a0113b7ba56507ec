// Per-function decisions for -finstrument-functions (P9): for each function
// address, once per process, its interned name, its process group and
// whether the include/exclude filters keep it. Lock-free open addressing;
// a lookup is a hash, a few probes and two acquire loads.
#ifndef SHMTRACE_RUNTIME_FUNCTION_CACHE_HPP
#define SHMTRACE_RUNTIME_FUNCTION_CACHE_HPP

#include <cstdint>
#include <memory>

#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

struct Runtime;

// Three 32-bit fields, returned in two registers. (With a bool third field
// GCC assembled the struct on the stack with a one-byte store and read it
// back four bytes wide: a failed store forwarding, ~4 ns on every entry hook.)
struct FunctionInfo {
  std::uint32_t name_id = 0;
  std::uint32_t group_id = 0;
  std::uint32_t traced = 0;  // 1: the filters keep it
};

class FunctionCache {
 public:
  // The tables are mapped, not allocated and zeroed: a page is touched only
  // once a function hashed into it is called (zeroing 1 MiB up front was
  // most of a traced fork's cost: each child starts with an empty cache).
  // Throws std::bad_alloc when they cannot be mapped.
  FunctionCache();
  ~FunctionCache();
  FunctionCache(const FunctionCache&) = delete;
  FunctionCache& operator=(const FunctionCache&) = delete;

  // The decision for `fn`, computed (symbol lookup, filters) on first use.
  FunctionInfo lookup(Runtime& rt, std::uintptr_t fn) noexcept {
    std::uint64_t i = slot_of(fn);
    for (std::uint32_t probe = 0; probe < kProbes; ++probe, i = (i + 1) & (kSlots - 1)) {
      // Pairs with the release store of the key in remember().
      const std::uint64_t key = abi::atomic_load(keys_[i], std::memory_order_acquire);
      if (key == fn) {
        // Pairs with the release store of the info in remember().
        const std::uint64_t info = abi::atomic_load(infos_[i], std::memory_order_acquire);
        if (info != 0) return unpack(info);
        break;
      }
      if (key == 0) break;
    }
    return decide(rt, fn);
  }

 private:
  static constexpr std::uint32_t kSlots = 1u << 16;
  static constexpr std::uint32_t kProbes = 64;
  static constexpr std::uint64_t kReady = 1ull << 63;
  static constexpr std::uint64_t kTraced = 1ull << 62;

  static std::uint64_t slot_of(std::uintptr_t fn) noexcept {
    return ((fn >> 4) * 0x9e3779b97f4a7c15ull) >> (64 - 16);
  }
  static FunctionInfo unpack(std::uint64_t info) noexcept {
    return {static_cast<std::uint32_t>(info), static_cast<std::uint32_t>(info >> 32) & 0x3fffffffu,
            (info & kTraced) != 0 ? 1u : 0u};
  }
  FunctionInfo decide(Runtime& rt, std::uintptr_t fn) noexcept;
  void remember(std::uintptr_t fn, const FunctionInfo& info) noexcept;

  std::uint64_t* keys_ = nullptr;   // kSlots each, in one mapping
  std::uint64_t* infos_ = nullptr;
};

}  // namespace shmtrace::runtime

#endif
