#include "module_map.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "runtime.hpp"
#include "shmtrace/shmtrace.h"

namespace shmtrace::runtime {
namespace {

// Serialises appends (start and concurrent dlopens); never taken on the hot path.
std::mutex g_map_mutex;

struct Walk {
  Runtime* rt;
  abi::ModuleMapHeader* header;
  abi::ModuleEntry* entries;
  bool first = true;
};

// The GNU build id, from the object's PT_NOTE segments already in memory.
std::uint32_t build_id_of(const dl_phdr_info* info, std::uint8_t (&out)[20]) noexcept {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* at = reinterpret_cast<const std::uint8_t*>(info->dlpi_addr + ph.p_vaddr);
    const std::uint8_t* end = at + ph.p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      const auto* note = reinterpret_cast<const ElfW(Nhdr)*>(at);
      const std::uint8_t* name = at + sizeof(ElfW(Nhdr));
      const std::uint8_t* desc = name + ((note->n_namesz + 3u) & ~3u);
      if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0 &&
          desc + note->n_descsz <= end) {
        const std::uint32_t n = std::min<std::uint32_t>(note->n_descsz, sizeof out);
        std::memcpy(out, desc, n);
        return n;
      }
      at = desc + ((note->n_descsz + 3u) & ~3u);
    }
  }
  return 0;
}

int visit(dl_phdr_info* info, std::size_t, void* data) noexcept {
  auto& walk = *static_cast<Walk*>(data);
  Runtime& rt = *walk.rt;
  // The first object is the main program (its name is empty).
  std::string path = info->dlpi_name != nullptr ? info->dlpi_name : "";
  if (walk.first && path.empty()) path = rt.process.exe;
  walk.first = false;
  if (path.empty()) return 0;
  std::uint64_t size = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD) size = std::max<std::uint64_t>(size, ph.p_vaddr + ph.p_memsz);
  }
  const std::uint32_t count = walk.header->count;  // we are the only writer (mutex)
  for (std::uint32_t i = 0; i < count; ++i) {
    if (walk.entries[i].base == info->dlpi_addr && walk.entries[i].size == size) return 0;  // already listed
  }
  if (count >= walk.header->capacity) return 1;  // full: stop walking
  abi::ModuleEntry& entry = walk.entries[count];
  entry = abi::ModuleEntry{};
  entry.base = info->dlpi_addr;
  entry.size = size;
  entry.path_id = rt.intern(path);
  entry.build_id_size = build_id_of(info, entry.build_id);
  // Publishes the entry; pairs with the reader's acquire load of count.
  abi::atomic_store(walk.header->count, count + 1, std::memory_order_release);
  return 0;
}

}  // namespace

void record_modules(Runtime& rt) noexcept {
  try {
    std::lock_guard<std::mutex> lock(g_map_mutex);
    auto* header = reinterpret_cast<abi::ModuleMapHeader*>(rt.base + rt.layout.modules_offset);
    Walk walk{&rt, header, reinterpret_cast<abi::ModuleEntry*>(header + 1)};
    ::dl_iterate_phdr(visit, &walk);
    abi::atomic_fetch_add(header->generation, std::uint64_t{1}, std::memory_order_relaxed);
  } catch (...) {
    // A mutex that cannot be taken, an allocation that failed: the map stays
    // as it was; the drain names such addresses by number.
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
