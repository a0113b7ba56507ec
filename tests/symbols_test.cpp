// The symbol resolver (drain/symbols): addresses of functions of this very
// process, resolved from its module list and the files alone; a child that
// has exited, resolved afterwards; files missing, foreign or rebuilt.
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "symbols/resolver.hpp"

extern char** environ;

// ---------------------------------------------------------------------------
// Functions to find. Bodies differ from each other so identical-code folding
// cannot merge two of them under one name.
// ---------------------------------------------------------------------------
namespace app::db {

[[gnu::noinline]] int lookup(int key) {
  volatile int acc = key;
  for (int i = 0; i < key % 7; ++i) acc = acc * 31 + i;
  return acc;
}

class Store {
 public:
  [[gnu::noinline]] static int create(int shards) {
    volatile int total = 0;
    for (int i = 0; i < shards; ++i) total = total + i * 3 + 11;
    return total;
  }
};

}  // namespace app::db

namespace app {

[[gnu::noinline]] static int scramble(int x) {
  volatile int v = x;
  v = v ^ 0x5a5a;
  v = v * 17 - 3;
  return v;
}

template <class T>
[[gnu::noinline]] T twice(T value) {
  volatile T v = value;
  return v + v + static_cast<T>(1000003);
}

using IntFunction = int (*)(int);
[[gnu::noinline]] IntFunction make_lambda() {
  return [](int x) {
    volatile int v = x;
    return v * 7 + 12345;
  };
}

}  // namespace app

extern "C" [[gnu::noinline]] int shmtrace_symbols_test_c_function(int x) {
  volatile int v = x;
  return v * v - 77;
}

namespace {

std::uint64_t address_of(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
template <class F>
std::uint64_t function_address(F* f) {
  return reinterpret_cast<std::uintptr_t>(f);
}

// ---------------------------------------------------------------------------
// The child: when started with SHMTRACE_SYMBOLS_TEST_CHILD=1 this executable
// prints its module list and the addresses of two functions, then exits
// before GoogleTest starts.
//   module <base hex> <size hex> <build id hex or -> <path>
//   address <label> <hex>
// ---------------------------------------------------------------------------
constexpr char kChildVariable[] = "SHMTRACE_SYMBOLS_TEST_CHILD";

[[maybe_unused]] const bool kIsChild = [] {
  if (std::getenv(kChildVariable) == nullptr) return false;
  for (const auto& m : shmtrace::symbols::modules_of_this_process()) {
    std::printf("module %llx %llx %s %s\n", static_cast<unsigned long long>(m.base),
                static_cast<unsigned long long>(m.size),
                m.build_id_hex.empty() ? "-" : m.build_id_hex.c_str(), m.path.c_str());
  }
  std::printf("address lookup %llx\n",
              static_cast<unsigned long long>(function_address(&app::db::lookup)));
  std::printf("address create %llx\n",
              static_cast<unsigned long long>(function_address(&app::db::Store::create)));
  std::fflush(stdout);
  std::_Exit(0);
}();

struct ChildReport {
  pid_t pid = 0;
  std::vector<shmtrace::symbols::Module> modules;
  std::map<std::string, std::uint64_t> addresses;
};

// Runs this executable as the child above, reads its report, waits for it.
ChildReport run_child() {
  ChildReport report;
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.push_back(std::string(kChildVariable) + "=1");
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  char* argv[] = {exe.data(), nullptr};
  const int spawned = ::posix_spawn(&report.pid, exe.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  EXPECT_EQ(spawned, 0) << std::strerror(spawned);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) output.append(buffer, n);
  ::close(fds[0]);
  int status = 0;
  EXPECT_EQ(::waitpid(report.pid, &status, 0), report.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "module") {
      shmtrace::symbols::Module m;
      std::string id;
      in >> std::hex >> m.base >> m.size >> id;
      std::getline(in >> std::ws, m.path);
      m.build_id_hex = id == "-" ? "" : id;
      report.modules.push_back(m);
    } else if (kind == "address") {
      std::string label;
      std::uint64_t address = 0;
      in >> label >> std::hex >> address;
      report.addresses[label] = address;
    }
  }
  return report;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------
using shmtrace::symbols::Module;
using shmtrace::symbols::Resolver;
using shmtrace::symbols::Symbol;

Resolver make_resolver(std::vector<Module> modules) {
  auto resolver = Resolver::create(std::move(modules));
  if (!resolver) throw std::runtime_error(resolver.error());
  return std::move(*resolver);
}

std::string function_at(Resolver& resolver, std::uint64_t address) {
  auto symbol = resolver.resolve(address);
  return symbol ? symbol->function : "<error: " + symbol.error() + ">";
}

std::string error_at(Resolver& resolver, std::uint64_t address) {
  auto symbol = resolver.resolve(address);
  return symbol ? "<resolved to " + symbol->function + ">" : symbol.error();
}

const Module* module_containing(const std::vector<Module>& modules, std::uint64_t address) {
  for (const Module& m : modules) {
    if (address >= m.base && address - m.base < m.size) return &m;
  }
  return nullptr;
}

std::uint64_t terminate_address() {
  // The definition in libstdc++ itself, whatever the executable's own
  // relocation of &std::terminate would say.
  return address_of(::dlsym(RTLD_DEFAULT, "_ZSt9terminatev"));
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "shmtrace-symbols-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------
TEST(ModulesOfThisProcess, ExecutableFirstThenLibrariesWithBuildIds) {
  const auto modules = shmtrace::symbols::modules_of_this_process();
  ASSERT_GE(modules.size(), 2u);
  EXPECT_EQ(modules[0].path, std::filesystem::read_symlink("/proc/self/exe").string());
  const Module* exe = module_containing(modules, function_address(&app::db::lookup));
  ASSERT_NE(exe, nullptr);
  EXPECT_EQ(exe, &modules[0]);
  // Debian's toolchain links with --build-id (sha1: 20 bytes).
  EXPECT_EQ(modules[0].build_id_hex.size(), 40u);
  const Module* libstdcxx = module_containing(modules, terminate_address());
  ASSERT_NE(libstdcxx, nullptr);
  EXPECT_TRUE(contains(libstdcxx->path, "libstdc++.so")) << libstdcxx->path;
  EXPECT_EQ(libstdcxx->build_id_hex.size(), 40u);
  for (const Module& m : modules) {
    EXPECT_EQ(m.path.front(), '/') << m.path;
    EXPECT_GT(m.size, 0u) << m.path;
  }
}

TEST(Resolver, EveryModuleOfThisProcessIsUsable) {
  const auto modules = shmtrace::symbols::modules_of_this_process();
  Resolver resolver = make_resolver(modules);
  const auto errors = resolver.module_errors();
  ASSERT_EQ(errors.size(), modules.size());
  for (std::size_t i = 0; i < errors.size(); ++i) {
    EXPECT_EQ(errors[i], "") << modules[i].path;
  }
}

TEST(Resolver, FunctionsOfTheExecutable) {
  Resolver resolver = make_resolver(shmtrace::symbols::modules_of_this_process());
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();

  auto lookup = resolver.resolve(function_address(&app::db::lookup));
  ASSERT_TRUE(lookup.has_value()) << lookup.error();
  EXPECT_EQ(lookup->function, "app::db::lookup(int)");
  EXPECT_EQ(lookup->module, exe);
  EXPECT_EQ(lookup->offset_in_function, 0u);

  EXPECT_EQ(function_at(resolver, function_address(&app::db::Store::create)),
            "app::db::Store::create(int)");
  EXPECT_EQ(function_at(resolver, function_address(&app::scramble)), "app::scramble(int)");
  EXPECT_EQ(function_at(resolver, function_address(&app::twice<long>)),
            "long app::twice<long>(long)");
  EXPECT_EQ(function_at(resolver, function_address(&shmtrace_symbols_test_c_function)),
            "shmtrace_symbols_test_c_function");

  const std::string lambda = function_at(resolver, function_address(app::make_lambda()));
  EXPECT_TRUE(lambda.starts_with("app::make_lambda()::{lambda(int)#1}")) << lambda;
}

TEST(Resolver, AddressInsideAFunctionGivesItsOffset) {
  Resolver resolver = make_resolver(shmtrace::symbols::modules_of_this_process());
  auto symbol = resolver.resolve(function_address(&app::db::lookup) + 3);
  ASSERT_TRUE(symbol.has_value()) << symbol.error();
  EXPECT_EQ(symbol->function, "app::db::lookup(int)");
  EXPECT_EQ(symbol->offset_in_function, 3u);
}

TEST(Resolver, FunctionOfASharedLibrary) {
  Resolver resolver = make_resolver(shmtrace::symbols::modules_of_this_process());
  auto symbol = resolver.resolve(terminate_address());
  ASSERT_TRUE(symbol.has_value()) << symbol.error();
  EXPECT_EQ(symbol->function, "std::terminate()");
  EXPECT_TRUE(contains(symbol->module, "libstdc++.so")) << symbol->module;
  EXPECT_EQ(symbol->offset_in_function, 0u);
}

TEST(Resolver, AddressInNoModuleIsAnError) {
  Resolver resolver = make_resolver(shmtrace::symbols::modules_of_this_process());
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  const std::uint64_t address = address_of(page) + 16;
  ::munmap(page, 4096);
  const std::string error = error_at(resolver, address);
  EXPECT_TRUE(contains(error, "is in none of the process's")) << error;
  EXPECT_TRUE(contains(error, "modules")) << error;
  // The same answer again, from the cache.
  EXPECT_EQ(error_at(resolver, address), error);
  EXPECT_TRUE(contains(error_at(resolver, 0), "is in none of")) << error_at(resolver, 0);
}

// One frame as a line: "function+0xoffset" (this test is built without line
// information unless -g: then " file:line" follows), or "0xADDR (why)".
TEST(Resolver, DescribeFrameFormatsFunctionOffsetOrAddressAndWhy) {
  Resolver resolver = make_resolver(shmtrace::symbols::modules_of_this_process());
  const std::uint64_t lookup = function_address(&app::db::lookup);
  const std::string exact = resolver.describe_frame(lookup + 3, false);
  EXPECT_TRUE(exact.starts_with("app::db::lookup(int)+0x3")) << exact;
  auto symbol = resolver.resolve(lookup + 3);
  ASSERT_TRUE(symbol.has_value());
  EXPECT_EQ(exact, symbol->file.empty() ? "app::db::lookup(int)+0x3"
                                        : "app::db::lookup(int)+0x3 " + symbol->file + ":" +
                                              std::to_string(symbol->line));
  // A return address right after a function's last byte (a call to a
  // noreturn function at its end) is looked up one byte back: still the
  // caller, with the address's own offset.
  EXPECT_TRUE(resolver.describe_frame(lookup + 1, true).starts_with("app::db::lookup(int)+0x1"))
      << resolver.describe_frame(lookup + 1, true);
  EXPECT_FALSE(resolver.describe_frame(lookup, true).starts_with("app::db::lookup(int)"))
      << "one byte back of a function's start is another function";

  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  const std::uint64_t nowhere = address_of(page) + 16;
  ::munmap(page, 4096);
  char hex[24];
  std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(nowhere));
  const std::string unknown = resolver.describe_frame(nowhere, false);
  EXPECT_EQ(unknown.rfind(std::string(hex) + " (is in none of the process's ", 0), 0u) << unknown;
  EXPECT_TRUE(unknown.ends_with(" modules)")) << unknown;
}

TEST(Resolver, ResultsAreCachedPerAddress) {
  Resolver resolver = make_resolver(shmtrace::symbols::modules_of_this_process());
  const std::uint64_t address = function_address(&app::db::lookup) + 1;
  auto first = resolver.resolve(address);
  auto second = resolver.resolve(address);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->function, second->function);
  EXPECT_EQ(second->offset_in_function, 1u);
}

TEST(Resolver, ExitedProcessIsResolvedFromItsModuleListAlone) {
  ChildReport child = run_child();
  ASSERT_FALSE(child.modules.empty());
  ASSERT_EQ(child.addresses.count("lookup"), 1u);
  ASSERT_EQ(child.addresses.count("create"), 1u);
  // Gone: reaped by run_child, so nothing can be asked of it any more.
  errno = 0;
  EXPECT_EQ(::kill(child.pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_EQ(child.modules[0].path, std::filesystem::read_symlink("/proc/self/exe").string());

  {
    Resolver resolver = make_resolver(child.modules);
    EXPECT_EQ(function_at(resolver, child.addresses["lookup"]), "app::db::lookup(int)");
    EXPECT_EQ(function_at(resolver, child.addresses["create"] + 2), "app::db::Store::create(int)");
  }
  // A fresh resolver (no cache carried over) gives the same names from the
  // files; the child's addresses, not ours, are what it maps.
  Resolver again = make_resolver(child.modules);
  auto symbol = again.resolve(child.addresses["create"] + 2);
  ASSERT_TRUE(symbol.has_value()) << symbol.error();
  EXPECT_EQ(symbol->function, "app::db::Store::create(int)");
  EXPECT_EQ(symbol->offset_in_function, 2u);
  const std::uint64_t child_offset = child.addresses["lookup"] - child.modules[0].base;
  const auto ours = shmtrace::symbols::modules_of_this_process();
  EXPECT_EQ(child_offset, function_address(&app::db::lookup) - ours[0].base);
}

TEST(Resolver, MissingForeignAndIrregularFilesAreErrorsForTheirRangeOnly) {
  TempDir dir;
  const std::string missing = (dir.path() / "gone.so").string();
  const std::string text = (dir.path() / "notes.txt").string();
  std::ofstream(text) << "not an ELF file\n";
  std::vector<Module> modules = shmtrace::symbols::modules_of_this_process();
  modules.push_back(Module{missing, 0x100000000000, 0x10000, ""});
  modules.push_back(Module{text, 0x100000100000, 0x10000, ""});
  modules.push_back(Module{"/dev/null", 0x100000200000, 0x10000, ""});
  modules.push_back(Module{"relative/lib.so", 0x100000300000, 0x10000, ""});
  Resolver resolver = make_resolver(modules);

  std::string error = error_at(resolver, 0x100000000010);
  EXPECT_TRUE(contains(error, "address 0x100000000010: cannot open " + missing + ": No such file"))
      << error;
  error = error_at(resolver, 0x100000100010);
  EXPECT_TRUE(contains(error, "cannot read " + text + " as ELF")) << error;
  error = error_at(resolver, 0x100000200010);
  EXPECT_TRUE(contains(error, "/dev/null is not a regular file")) << error;
  error = error_at(resolver, 0x100000300010);
  EXPECT_TRUE(contains(error, "path 'relative/lib.so' is not absolute")) << error;
  // The good modules still answer.
  EXPECT_EQ(function_at(resolver, function_address(&app::db::lookup)), "app::db::lookup(int)");
}

TEST(Resolver, BuildIdMismatchIsAnErrorNotAWrongName) {
  const auto modules = shmtrace::symbols::modules_of_this_process();
  const std::uint64_t address = terminate_address();
  const Module* original = module_containing(modules, address);
  ASSERT_NE(original, nullptr);
  ASSERT_EQ(original->build_id_hex.size(), 40u);
  TempDir dir;
  const std::filesystem::path copy = dir.path() / "libcopy.so";
  std::filesystem::copy_file(original->path, copy);

  {  // The same bytes elsewhere: resolved through the copy.
    Resolver resolver = make_resolver({Module{copy.string(), original->base, original->size,
                                              original->build_id_hex}});
    auto symbol = resolver.resolve(address);
    ASSERT_TRUE(symbol.has_value()) << symbol.error();
    EXPECT_EQ(symbol->function, "std::terminate()");
    EXPECT_EQ(symbol->module, copy.string());
  }
  {  // The process recorded another build id.
    std::string wrong = original->build_id_hex;
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    Resolver resolver = make_resolver({Module{copy.string(), original->base, original->size, wrong}});
    const std::string error = error_at(resolver, address);
    EXPECT_TRUE(contains(error, "build id of " + copy.string() + " is " + original->build_id_hex +
                                    " but the process loaded build id " + wrong))
        << error;
    EXPECT_FALSE(contains(error, "terminate")) << error;
  }
  {  // The file was rebuilt since: its build id note now differs.
    std::string bytes;
    {
      std::ifstream in(copy, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::string id;
    for (std::size_t i = 0; i < original->build_id_hex.size(); i += 2) {
      id += static_cast<char>(std::stoi(original->build_id_hex.substr(i, 2), nullptr, 16));
    }
    const std::size_t at = bytes.find(id);
    ASSERT_NE(at, std::string::npos);
    bytes[at + id.size() - 1] = static_cast<char>(bytes[at + id.size() - 1] ^ 0x01);
    std::ofstream(copy, std::ios::binary | std::ios::trunc) << bytes;
    Resolver resolver = make_resolver({Module{copy.string(), original->base, original->size,
                                              original->build_id_hex}});
    const std::string error = error_at(resolver, address);
    EXPECT_TRUE(contains(error, "build id of " + copy.string())) << error;
    EXPECT_TRUE(contains(error, "rebuilt or replaced")) << error;
    EXPECT_EQ(resolver.module_errors().at(0), error.substr(error.find(": ") + 2));
  }
}

TEST(Resolver, DuplicateEntriesAreOneModuleOverlapsAreAmbiguous) {
  const auto modules = shmtrace::symbols::modules_of_this_process();
  const std::uint64_t lookup = function_address(&app::db::lookup);
  {  // The append-only map may list one object twice.
    auto twice = modules;
    twice.push_back(modules[0]);
    Resolver resolver = make_resolver(twice);
    EXPECT_EQ(function_at(resolver, lookup), "app::db::lookup(int)");
    EXPECT_EQ(resolver.module_errors().back(), "");
  }
  {  // Another object recorded at the executable's addresses (dlclose, then
     // dlopen of something else there): no guess between the two.
    const Module* libstdcxx = module_containing(modules, terminate_address());
    ASSERT_NE(libstdcxx, nullptr);
    auto overlapping = modules;
    overlapping.push_back(
        Module{libstdcxx->path, modules[0].base, libstdcxx->size, libstdcxx->build_id_hex});
    Resolver resolver = make_resolver(overlapping);
    const std::string error = error_at(resolver, lookup);
    EXPECT_TRUE(contains(error, "is claimed by 2 modules loaded at overlapping addresses (" +
                                    modules[0].path + ", " + libstdcxx->path + ")"))
        << error;
    // Addresses outside the overlap still resolve.
    EXPECT_EQ(function_at(resolver, terminate_address()), "std::terminate()");
  }
}

TEST(Resolver, WrongSizeForAFileWithoutRecordedBuildIdIsAnError) {
  const auto modules = shmtrace::symbols::modules_of_this_process();
  Module exe = modules[0];
  exe.build_id_hex.clear();
  exe.size += 0x1000;
  Resolver resolver = make_resolver({exe});
  const std::string error = error_at(resolver, function_address(&app::db::lookup));
  EXPECT_TRUE(contains(error, "the file changed since, or base/size are wrong")) << error;
}

TEST(Demangle, MangledNamesOnlyPlainNamesAsIs) {
  using shmtrace::symbols::demangle;
  EXPECT_EQ(demangle("_ZN3app2db6lookupEi"), "app::db::lookup(int)");
  EXPECT_EQ(demangle("_ZSt9terminatev"), "std::terminate()");
  EXPECT_EQ(demangle("sqlite3_libversion"), "sqlite3_libversion");
  EXPECT_EQ(demangle("i"), "i");  // a C function named like a mangled type
  EXPECT_EQ(demangle("_Z!bad"), "_Z!bad");
  EXPECT_EQ(demangle(""), "");
}

TEST(ProcessGroup, NamespaceOfADemangledFunction) {
  using shmtrace::symbols::process_group_of;
  EXPECT_EQ(process_group_of("app::db::Store::get(int)"), "app::db");
  EXPECT_EQ(process_group_of("app::db::lookup(int)"), "app::db");
  EXPECT_EQ(process_group_of("app::db::Store<int>::get(int) const"), "app::db");
  EXPECT_EQ(process_group_of("long app::twice<long>(long)"), "app");
  EXPECT_EQ(process_group_of("app::make_lambda()::{lambda(int)#1}::_FUN(int)"), "app");
  EXPECT_EQ(process_group_of("std::terminate()"), "std");
  EXPECT_EQ(process_group_of("app::(anonymous namespace)::helper(int)"), "app");
  EXPECT_EQ(process_group_of("(anonymous namespace)::helper(int)"), "");
  EXPECT_EQ(process_group_of("Store::get(int)"), "");
  EXPECT_EQ(process_group_of("main"), "");
  EXPECT_EQ(process_group_of("shmtrace_symbols_test_c_function"), "");
}

}  // namespace
