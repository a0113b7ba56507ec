// modules_of_this_process(): dl_iterate_phdr, and the build id from the
// PT_NOTE segments the loader already mapped. libc only (see the header).
#include "symbols/process_modules.hpp"

#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <cstring>

#include "reader/hex.hpp"

namespace shmtrace::symbols {
namespace {

constexpr std::size_t align_up(std::size_t value, std::size_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

// NT_GNU_BUILD_ID in one mapped PT_NOTE segment, or "". Each note is an
// Nhdr, then the name and the descriptor, each padded to the segment's
// alignment (4, or 8 for segments like .note.gnu.property).
std::string build_id_in_notes(const unsigned char* notes, std::size_t size, std::size_t alignment) {
  std::size_t at = 0;
  while (size - at >= sizeof(ElfW(Nhdr))) {
    ElfW(Nhdr) note;
    std::memcpy(&note, notes + at, sizeof note);
    const std::size_t name_at = at + sizeof note;
    if (note.n_namesz > size - name_at) break;
    const std::size_t desc_at = name_at + align_up(note.n_namesz, alignment);
    if (desc_at > size || note.n_descsz > size - desc_at) break;
    if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
        std::memcmp(notes + name_at, "GNU", 4) == 0) {
      return reader::to_hex(notes + desc_at, note.n_descsz);
    }
    at = desc_at + align_up(note.n_descsz, alignment);
    if (at > size) break;
  }
  return {};
}

std::string executable_path() {
  char buffer[4096];
  const ssize_t length = ::readlink("/proc/self/exe", buffer, sizeof buffer);
  if (length <= 0 || static_cast<std::size_t>(length) >= sizeof buffer) return {};
  return std::string(buffer, static_cast<std::size_t>(length));
}

int add_module(dl_phdr_info* info, std::size_t, void* data) {
  auto& modules = *static_cast<std::vector<Module>*>(data);
  Module module;
  // The main program comes first with an empty name; the vDSO has a name
  // that is not a path.
  const bool main_program = modules.empty() && (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0');
  if (main_program) {
    module.path = executable_path();
  } else if (info->dlpi_name != nullptr && info->dlpi_name[0] == '/') {
    module.path = info->dlpi_name;
  }
  if (module.path.empty()) {
    // Keep the slot of the main program taken, so a nameless object that
    // follows is not mistaken for it.
    if (modules.empty()) modules.push_back(Module{});
    return 0;
  }
  module.base = info->dlpi_addr;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && ph.p_vaddr + ph.p_memsz > module.size) {
      module.size = ph.p_vaddr + ph.p_memsz;
    }
    if (ph.p_type == PT_NOTE && module.build_id_hex.empty()) {
      const auto* notes = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
      module.build_id_hex = build_id_in_notes(notes, ph.p_filesz, ph.p_align == 8 ? 8 : 4);
    }
  }
  modules.push_back(std::move(module));
  return 0;
}

}  // namespace

std::vector<Module> modules_of_this_process() {
  std::vector<Module> modules;
  ::dl_iterate_phdr(add_module, &modules);
  std::erase_if(modules, [](const Module& m) { return m.path.empty(); });
  return modules;
}

}  // namespace shmtrace::symbols
