// Helpers for the tests of `shmtrace run` (run_test, run_field_test): a
// private temporary directory, the command line of a run, and the database
// a run wrote.
#ifndef SHMTRACE_TESTS_RUN_SUPPORT_HPP
#define SHMTRACE_TESTS_RUN_SUPPORT_HPP

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace shmtrace::test {

// A fresh directory under /tmp, removed with everything in it at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    std::string pattern = "/tmp/shmtrace-" + name + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

inline constexpr bool kSanitizedRuntime = SHMTRACE_SANITIZED_RUNTIME != 0;

// `shmtrace run <options> -- <command>` as an argv.
inline std::vector<std::string> run_argv(const std::vector<std::string>& options,
                                         const std::vector<std::string>& command) {
  std::vector<std::string> argv = {SHMTRACE_CLI_PATH, "run"};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

// `text` as one word for sh -c.
inline std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The lines of `text` that start with "shmtrace run:".
inline std::size_t run_lines(const std::string& text) {
  std::size_t n = 0, at = 0;
  while ((at = text.find("shmtrace run:", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') ++n;
    at += 1;
  }
  return n;
}

}  // namespace shmtrace::test

#endif
