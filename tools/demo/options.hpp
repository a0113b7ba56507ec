// The workload's options, shared by the program that runs it and the one
// that checks what it left in the database (both must agree on the counts).
#ifndef SHMTRACE_TOOLS_DEMO_OPTIONS_HPP
#define SHMTRACE_TOOLS_DEMO_OPTIONS_HPP

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "workload.hpp"

namespace shmtrace::demo {

inline bool parse_int(const char* text, int lo, int hi, int& out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  out = static_cast<int>(v);
  return true;
}

// --workers, --threads, --requests, and --db when `database` is given. The
// exit status to leave with (--help: 0, bad usage: 2), or nothing to go on.
inline std::optional<int> parse_workload_options(int argc, char** argv, Workload& w, const char* program,
                                                 const char* purpose, std::string* database = nullptr) {
  auto say = [&](const std::string& line) { std::fprintf(stderr, "%s: %s\n", program, line.c_str()); };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--workers 1..32 (3)] [--threads 1..16 (2)] [--requests 1..100000 (2000)]%s\n%s",
                  program, database != nullptr ? " --db FILE" : "", purpose);
      return 0;
    }
    const bool known = a == "--workers" || a == "--threads" || a == "--requests" || (database && a == "--db");
    if (!known) {
      say("unknown argument '" + a + "' (see --help)");
      return 2;
    }
    if (i + 1 >= argc) {
      say(a + " needs a value (see --help)");
      return 2;
    }
    const char* value = argv[++i];
    bool ok = true;
    if (a == "--workers") ok = parse_int(value, 1, 32, w.workers);
    if (a == "--threads") ok = parse_int(value, 1, 16, w.threads);
    if (a == "--requests") ok = parse_int(value, 1, 100000, w.requests);
    if (a == "--db") {
      ok = *value != '\0';
      *database = value;
    }
    if (!ok) {
      say("bad value '" + std::string(value) + "' for " + a + " (see --help)");
      return 2;
    }
  }
  if (database != nullptr && database->empty()) {
    say("--db FILE is required (see --help)");
    return 2;
  }
  return std::nullopt;
}

}  // namespace shmtrace::demo

#endif
