// Error and crash frames symbolized by the real drain when it stores them
// (errors.symbols): a plain C program crashing (SIGSEGV) under LD_PRELOAD
// and a C++ program throwing, both built with line information; the first
// frames must name the right function and exactly the file and line that
// the programs' marker comments are on.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The 1-based number of the only line of `file` holding `marker`; 0 if none
// or several.
int marker_line(const std::string& file, const std::string& marker) {
  std::ifstream in(file);
  int at = 0, found = 0, count = 0;
  for (std::string line; std::getline(in, line);) {
    ++at;
    if (line.find(marker) != std::string::npos) {
      found = at;
      ++count;
    }
  }
  return count == 1 ? found : 0;
}

// "function+0xoffset file:line" with the function and file's name given;
// checks the line is the marker's line in that very file.
void expect_frame(const std::string& frame, const std::string& function, const std::string& file_name,
                  const std::string& marker) {
  static const std::regex kFrame(R"(^(.+)\+0x([0-9a-f]+) (/[^ ]+):([0-9]+)$)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(frame, m, kFrame)) << frame;
  // GCC may move a cold path (a throw) to a part of its own, named after
  // its function: "f [clone .cold]".
  EXPECT_TRUE(m[1].str() == function || m[1].str() == function + " [clone .cold]") << frame;
  const std::string file = m[3].str();
  EXPECT_EQ(std::filesystem::path(file).filename().string(), file_name) << frame;
  ASSERT_TRUE(std::filesystem::exists(file)) << frame;
  const int line = marker_line(file, marker);
  ASSERT_NE(line, 0) << marker << " in " << file;
  EXPECT_EQ(m[4].str(), std::to_string(line)) << frame;
}

std::string symbols_of(const Database& d, pid_t pid, const std::string& kind) {
  return d.text("SELECT symbols FROM errors e JOIN processes p USING (process_key) WHERE p.pid = " +
                std::to_string(pid) + " AND e.kind = '" + kind + "'");
}

#if !SHMTRACE_SANITIZED_RUNTIME  // UBSan stops at the null store; interceptors add frames
TEST(DrainSymbols, CrashFramesNameTheFaultingFunctionAndLine) {
  const SessionScope session;  // its drain takes only its programs' segments
  const TempDb db("symbols-crash");
  std::vector<EnvChange> env = without_sanitizer_signal_handlers();
  env.push_back({"LD_PRELOAD", SHMTRACE_LIBRARY_PATH});
  const RunResult r = run({program_path("st_faults"), "segv"}, env);
  ASSERT_EQ(r.signal, SIGSEGV) << r.out << r.err;
  const RunResult drained = run(session.drain({"--db", db.path, "--once"}));
  ASSERT_EQ(drained.exit_code, 0) << drained.err;
  Database d(db);
  ASSERT_EQ(d.error, "");
  const std::vector<std::string> frames = lines_of(symbols_of(d, r.pid, "crash"));
  ASSERT_GE(frames.size(), 2u);
  // As many lines as frames, and each frame's address in order.
  const std::vector<std::string> addresses =
      lines_of(std::regex_replace(d.text("SELECT frames FROM errors e JOIN processes p USING (process_key) WHERE "
                                         "p.pid = " + std::to_string(r.pid)),
                                  std::regex(" "), "\n"));
  EXPECT_EQ(frames.size(), addresses.size());
  expect_frame(frames[0], "fault_here", "st_faults.c", "FAULT-LINE");
  expect_frame(frames[1], "main", "st_faults.c", "CALL-LINE");
}
#endif

#if !SHMTRACE_SANITIZED_RUNTIME  // interceptors add frames above the throw
TEST(DrainSymbols, ExceptionFramesNameTheThrowingFunctionAndLine) {
  const SessionScope session;  // its drain takes only its programs' segments
  const TempDb db("symbols-throw");
  const RunResult r = run({program_path("st_throw_line")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const RunResult drained = run(session.drain({"--db", db.path, "--once"}));
  ASSERT_EQ(drained.exit_code, 0) << drained.err;
  Database d(db);
  ASSERT_EQ(d.error, "");
  const std::vector<std::string> frames = lines_of(symbols_of(d, r.pid, "exception"));
  ASSERT_GE(frames.size(), 2u) << symbols_of(d, r.pid, "exception");
  expect_frame(frames[0], "throw_here(int)", "st_throw_line.cpp", "THROW-LINE");
  expect_frame(frames[1], "main", "st_throw_line.cpp", "CALL-LINE");
  // Frames in objects without line information still name their function.
  bool libc = false;
  for (const std::string& f : frames) libc |= f.starts_with("__libc_start_call_main+0x");
  EXPECT_TRUE(libc) << symbols_of(d, r.pid, "exception");
}
#endif

}  // namespace
}  // namespace shmtrace::test
