// Resolver: one libdwfl session per module list. Each file is reported with
// dwfl_report_elf at its recorded load bias (add_p_vaddr = true: for ET_DYN
// the module then starts at bias + first PT_LOAD's p_vaddr, exactly where the
// loader put it; ET_EXEC files sit at their own addresses, bias 0), after
// which dwfl_module_addrinfo answers in run-time addresses. Which module an
// address is in is decided here, from the ranges libdwfl computed, so that
// overlapping entries of an append-only map are reported, not guessed.
#include "symbols/resolver.hpp"

#include <cxxabi.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "shmtrace/repr.hpp"

namespace shmtrace::symbols {
namespace {

std::string hex_address(std::uint64_t value) {
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "0x%llx", static_cast<unsigned long long>(value));
  return buffer;
}

std::string hex_bytes(const unsigned char* bytes, int size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

std::string dwfl_error() { return dwfl_errmsg(-1); }

// Separate debug info is looked up by build id and .gnu_debuglink under the
// default path (/usr/lib/debug); relocatable files are placed offline. The
// callbacks must outlive every session, hence static storage.
char* g_debuginfo_path = nullptr;
const Dwfl_Callbacks kCallbacks = {
    .find_elf = nullptr,  // unused: every module comes with its opened file
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &g_debuginfo_path,
};

struct DwflDeleter {
  void operator()(Dwfl* dwfl) const { dwfl_end(dwfl); }
};

}  // namespace

std::string demangle(std::string_view name) {
  // Only "_Z..." is a mangled C++ name; __cxa_demangle would also turn a C
  // function called "f" or "i" into a type name.
  if (!name.starts_with("_Z")) return std::string(name);
  const std::string mangled(name);
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  if (status != 0 || demangled == nullptr) {
    std::free(demangled);
    return mangled;
  }
  std::string out(demangled);
  std::free(demangled);
  return out;
}

std::string process_group_of(std::string_view demangled) {
  return std::string(::shmtrace::detail::parse_function_signature(demangled).group);
}

struct Resolver::Impl {
  struct Entry {
    Module module;
    Dwfl_Module* dwfl_module = nullptr;  // null when the file could not be reported
    std::string error;                   // "" when usable
    // Run-time addresses it claims: libdwfl's range once reported, else the
    // recorded [base, base + size).
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::size_t canonical = 0;  // index of the first identical entry (itself if none)
  };

  std::unique_ptr<Dwfl, DwflDeleter> dwfl;
  std::vector<Entry> entries;
  std::unordered_map<std::uint64_t, std::expected<Symbol, std::string>> cache;

  // Opens and reports one module; returns "" or why it cannot be used.
  std::string report(Entry& entry);
  // Compares the file with what the process had loaded.
  std::string check_loaded_file(const Entry& entry) const;
  std::expected<Symbol, std::string> lookup(std::uint64_t address) const;
};

std::string Resolver::Impl::report(Entry& entry) {
  const Module& m = entry.module;
  if (m.path.empty() || m.path.front() != '/') return "path '" + m.path + "' is not absolute";
  if (m.size == 0 || m.base > UINT64_MAX - m.size) {
    return "size " + std::to_string(m.size) + " at base " + hex_address(m.base) +
           " is empty or wraps";
  }
  // O_NONBLOCK: the path came from another process; a FIFO there must not
  // hang the drain before fstat refuses it.
  const int fd = ::open(m.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return "cannot open " + m.path + ": " + std::strerror(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return m.path + " is not a regular file";
  }
  // On success libdwfl owns fd (closed by dwfl_end); on failure it is ours.
  Dwfl_Module* mod = dwfl_report_elf(dwfl.get(), m.path.c_str(), m.path.c_str(), fd, m.base,
                                     /*add_p_vaddr=*/true);
  if (mod == nullptr) {
    const std::string why = dwfl_error();
    ::close(fd);
    return "cannot read " + m.path + " as ELF: " + why;
  }
  entry.dwfl_module = mod;
  Dwarf_Addr start = 0;
  Dwarf_Addr end = 0;
  dwfl_module_info(mod, nullptr, &start, &end, nullptr, nullptr, nullptr, nullptr);
  entry.start = start;
  entry.end = end;
  return check_loaded_file(entry);
}

std::string Resolver::Impl::check_loaded_file(const Entry& entry) const {
  const Module& m = entry.module;
  const unsigned char* bits = nullptr;
  GElf_Addr bits_vaddr = 0;
  const int length = dwfl_module_build_id(entry.dwfl_module, &bits, &bits_vaddr);
  const std::string file_id = length > 0 ? hex_bytes(bits, length) : std::string();
  if (!m.build_id_hex.empty() && file_id != m.build_id_hex) {
    return "build id of " + m.path + " is " + (file_id.empty() ? "absent" : file_id) +
           " but the process loaded build id " + m.build_id_hex +
           ": the file was rebuilt or replaced since; its names would be wrong";
  }
  // Without a build id to compare, the layout still tells a different file.
  if (entry.end != m.base + m.size) {
    return "the load segments of " + m.path + " end at " + hex_address(entry.end) +
           " but the process mapped it up to " + hex_address(m.base + m.size) +
           ": the file changed since, or base/size are wrong";
  }
  return {};
}

std::expected<Resolver, std::string> Resolver::create(std::vector<Module> modules) {
  auto impl = std::make_unique<Impl>();
  impl->dwfl.reset(dwfl_begin(&kCallbacks));
  if (!impl->dwfl) return std::unexpected("cannot start libdwfl: " + dwfl_error());
  impl->entries.reserve(modules.size());
  dwfl_report_begin(impl->dwfl.get());
  for (Module& module : modules) {
    const std::size_t index = impl->entries.size();
    Impl::Entry& entry = impl->entries.emplace_back();
    entry.module = std::move(module);
    entry.canonical = index;
    // The map is append-only, so the same object may be listed twice; it is
    // one object, reported once.
    for (std::size_t i = 0; i < index; ++i) {
      const Module& other = impl->entries[i].module;
      if (other.path == entry.module.path && other.base == entry.module.base &&
          other.size == entry.module.size && other.build_id_hex == entry.module.build_id_hex) {
        entry.canonical = i;
        break;
      }
    }
    if (entry.canonical != index) {
      const Impl::Entry& first = impl->entries[entry.canonical];
      entry.dwfl_module = first.dwfl_module;
      entry.error = first.error;
      entry.start = first.start;
      entry.end = first.end;
      continue;
    }
    entry.error = impl->report(entry);
    if (entry.dwfl_module == nullptr) {
      entry.start = entry.module.base;
      // report() refused a wrapping range; clamp so the range stays valid.
      entry.end = entry.module.base > UINT64_MAX - entry.module.size ? UINT64_MAX
                                                                      : entry.module.base + entry.module.size;
    }
  }
  if (dwfl_report_end(impl->dwfl.get(), nullptr, nullptr) != 0) {
    return std::unexpected("libdwfl rejected the module list: " + dwfl_error());
  }
  return Resolver(std::move(impl));
}

std::expected<Symbol, std::string> Resolver::Impl::lookup(std::uint64_t address) const {
  const std::string where = "address " + hex_address(address);
  // Every distinct object that claims the address. More than one happens when
  // an object was dlclosed and another loaded at its addresses: the map keeps
  // both, with nothing to tell which was there when the address was taken,
  // so no name is better than a wrong one. (dwfl_addrmodule would silently
  // pick one of them, hence the lookup in our own table.)
  std::vector<std::size_t> claimants;
  for (const Entry& e : entries) {
    if (address < e.start || address >= e.end) continue;
    if (std::find(claimants.begin(), claimants.end(), e.canonical) == claimants.end()) {
      claimants.push_back(e.canonical);
    }
  }
  if (claimants.empty()) {
    return std::unexpected(where + " is in none of the process's " +
                           std::to_string(entries.size()) + " modules");
  }
  if (claimants.size() > 1) {
    std::string paths;
    for (std::size_t i : claimants) paths += (paths.empty() ? "" : ", ") + entries[i].module.path;
    return std::unexpected(where + " is claimed by " + std::to_string(claimants.size()) +
                           " modules loaded at overlapping addresses (" + paths +
                           "); cannot tell which was mapped there");
  }
  const Entry& entry = entries[claimants.front()];
  if (!entry.error.empty()) return std::unexpected(where + ": " + entry.error);
  GElf_Off offset = 0;
  GElf_Sym sym{};
  const char* name =
      dwfl_module_addrinfo(entry.dwfl_module, address, &offset, &sym, nullptr, nullptr, nullptr);
  if (name == nullptr || name[0] == '\0') {
    return std::unexpected(where + " (" + hex_address(address - entry.module.base) + " in " +
                           entry.module.path + ") is in no function of its symbol table");
  }
  Symbol symbol{demangle(name), entry.module.path, offset, {}, 0};
  if (Dwfl_Line* source = dwfl_module_getsrc(entry.dwfl_module, address)) {
    int line = 0;
    if (const char* file = dwfl_lineinfo(source, nullptr, &line, nullptr, nullptr, nullptr);
        file != nullptr && file[0] != '\0' && line > 0) {
      // A relative name is relative to the compilation's directory.
      std::filesystem::path path(file);
      const char* directory = dwfl_line_comp_dir(source);
      if (path.is_relative() && directory != nullptr && directory[0] != '\0') path = directory / path;
      symbol.file = path.lexically_normal().string();
      symbol.line = line;
    }
  }
  return symbol;
}

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Resolver::Resolver(Resolver&&) noexcept = default;
Resolver& Resolver::operator=(Resolver&&) noexcept = default;
Resolver::~Resolver() = default;

std::expected<Symbol, std::string> Resolver::resolve(std::uint64_t address) {
  if (auto it = impl_->cache.find(address); it != impl_->cache.end()) return it->second;
  auto result = impl_->lookup(address);
  impl_->cache.emplace(address, result);
  return result;
}

std::string Resolver::describe_frame(std::uint64_t address, bool return_address) {
  const std::uint64_t at = return_address && address > 0 ? address - 1 : address;
  auto symbol = resolve(at);
  if (!symbol) {
    // The lookup's message starts with the address it looked up.
    std::string why = symbol.error();
    const std::string prefix = "address " + hex_address(at);
    if (why.starts_with(prefix)) why.erase(0, prefix.size() + (why.compare(prefix.size(), 2, ": ") == 0 ? 2 : 1));
    return hex_address(address) + " (" + why + ")";
  }
  std::string out = symbol->function + "+" + hex_address(symbol->offset_in_function + (address - at));
  if (!symbol->file.empty()) out += " " + symbol->file + ":" + std::to_string(symbol->line);
  return out;
}

std::vector<std::string> Resolver::module_errors() const {
  std::vector<std::string> out;
  out.reserve(impl_->entries.size());
  for (const Impl::Entry& e : impl_->entries) out.push_back(e.error);
  return out;
}

}  // namespace shmtrace::symbols
