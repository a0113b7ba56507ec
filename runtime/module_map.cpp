#include "module_map.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "runtime.hpp"
#include "symbols/process_modules.hpp"
#include "shmtrace/shmtrace.h"

namespace shmtrace::runtime {
namespace {

// Serialises appends (start and concurrent dlopens); never taken on the hot path.
std::mutex g_map_mutex;

std::uint32_t build_id_bytes(const std::string& hex, std::uint8_t (&out)[20]) noexcept {
  std::uint32_t n = 0;
  for (std::size_t i = 0; i + 1 < hex.size() && n < sizeof out; i += 2) {
    out[n++] = static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return n;
}

}  // namespace

void record_modules(Runtime& rt) noexcept {
  try {
    std::lock_guard<std::mutex> lock(g_map_mutex);
    auto* header = reinterpret_cast<abi::ModuleMapHeader*>(rt.base + rt.layout.modules_offset);
    auto* entries = reinterpret_cast<abi::ModuleEntry*>(header + 1);
    for (const symbols::Module& m : symbols::modules_of_this_process()) {
      const std::uint32_t count = header->count;  // we are the only writer (mutex)
      const bool listed = std::any_of(entries, entries + count, [&](const abi::ModuleEntry& e) {
        return e.base == m.base && e.size == m.size;
      });
      if (listed) continue;
      if (count >= header->capacity) break;
      abi::ModuleEntry& entry = entries[count];
      entry = abi::ModuleEntry{};
      entry.base = m.base;
      entry.size = m.size;
      entry.path_id = rt.intern(m.path);
      entry.build_id_size = build_id_bytes(m.build_id_hex, entry.build_id);
      // Publishes the entry; pairs with the reader's acquire load of count.
      abi::atomic_store(header->count, count + 1, std::memory_order_release);
    }
    abi::atomic_fetch_add(header->generation, std::uint64_t{1}, std::memory_order_relaxed);
  } catch (...) {
    // An allocation that failed: the map stays as it was; the drain names
    // such addresses by number.
  }
}

}  // namespace shmtrace::runtime

// Interposed: a library loaded later joins the module map.
extern "C" SHMTRACE_API void* dlopen(const char* file, int mode) {
  using Open = void* (*)(const char*, int);
  static Open real = reinterpret_cast<Open>(::dlsym(RTLD_NEXT, "dlopen"));
  void* handle = real(file, mode);
  if (handle != nullptr) {
    if (shmtrace::runtime::Runtime* rt = __atomic_load_n(&shmtrace::runtime::g_runtime, __ATOMIC_ACQUIRE)) {
      shmtrace::runtime::record_modules(*rt);
    }
  }
  return handle;
}
