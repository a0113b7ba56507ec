// Code addresses -> demangled function names, offline (SPEC P9).
//
// A traced process records its module map (path, load bias, size and build
// id of every loaded object) in its segment; the drain hands that list to a
// Resolver, which reads the files themselves through elfutils' libdwfl (the
// symbol table, .symtab or else .dynsym, and separate debug info found by
// build id where installed). Nothing here needs the process alive.
//
// A file that changed since the process loaded it would give wrong names, so
// its build id is compared with the recorded one and a mismatch is an error,
// not a guess. Every failure (address in no module, missing, unreadable or
// rebuilt file, no symbol) is a one-line error string; nothing aborts.
#ifndef SHMTRACE_SYMBOLS_RESOLVER_HPP
#define SHMTRACE_SYMBOLS_RESOLVER_HPP

#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "symbols/process_modules.hpp"

namespace shmtrace::symbols {

struct Symbol {
  std::string function;                  // demangled ("app::db::Store::get(int)"); C names as is
  std::string module;                    // path of the object it is in
  std::uint64_t offset_in_function = 0;  // address - the function's start
  // The source line of the address, from the object's DWARF line table (or
  // its separate debug info): the file as the compiler named it, joined to
  // the compilation's directory when relative, made lexically normal
  // ("a/b/../c.c" -> "a/c.c"). Empty and 0 when the object
  // has no line information for it.
  std::string file;
  int line = 0;
};

// Not thread-safe: one Resolver per thread (libdwfl sessions are not shared).
class Resolver {
 public:
  // Opens every module's file and places it at its recorded base. A module
  // that cannot be used (missing or unreadable file, not ELF, build id
  // differs, overlaps another) does not fail the whole list: its error is
  // kept and returned for each address inside it. Fails only when libdwfl
  // itself cannot start.
  static std::expected<Resolver, std::string> create(std::vector<Module> modules);

  Resolver(Resolver&&) noexcept;
  Resolver& operator=(Resolver&&) noexcept;
  ~Resolver();

  // The function containing `address`. Results, errors included, are cached
  // per address.
  std::expected<Symbol, std::string> resolve(std::uint64_t address);

  // One frame of a stack as a line of text:
  //   "function+0xoffset file:line"  with line information,
  //   "function+0xoffset"            without,
  //   "0xADDR (why)"                 when the address cannot be named.
  // `return_address`: the frame is a return address (every frame of a
  // backtrace but a fault's own instruction): it is looked up one byte
  // back, inside the call, so that a call at a function's very end (to a
  // noreturn function: a throw) names the caller and the call's line, not
  // what follows; the offset printed is still the address's own.
  std::string describe_frame(std::uint64_t address, bool return_address);

  // Per module, in the order given: "" when usable, else why not.
  std::vector<std::string> module_errors() const;

 private:
  struct Impl;
  explicit Resolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The C++ namespace of a demangled function name, the default process group
// (SPEC P9): "app::db::Store::get(int)" -> "app::db"; "main" -> "". Same rule
// as the C++ API's groups (shmtrace/repr.hpp, parse_function_signature):
// parameters and template arguments dropped, then the leading components
// that read as namespaces (lowercase identifiers); a class, a function or
// "(anonymous namespace)" ends the group.
std::string process_group_of(std::string_view demangled);

// The demangled form of a symbol name; a name that is not a mangled C++ name
// (a C function) comes back as is.
std::string demangle(std::string_view name);

}  // namespace shmtrace::symbols

#endif  // SHMTRACE_SYMBOLS_RESOLVER_HPP
