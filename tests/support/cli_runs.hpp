// Helpers for the tests of the reading commands (report, replay, sql): run
// traced programs in a session of their own, store their segments with the
// real drain (--once), run the real `shmtrace` binary on the database and
// read its output back.
#ifndef SHMTRACE_TESTS_CLI_RUNS_HPP
#define SHMTRACE_TESTS_CLI_RUNS_HPP

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test::cli {

// `shmtrace ARGS...`.
inline RunResult shmtrace(const std::vector<std::string>& args, const std::vector<EnvChange>& env = {}) {
  std::vector<std::string> argv = {SHMTRACE_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, env);
}

// The session of every program these tests start and of the drain that
// stores them: one per test process (ctest runs each test case in a process
// of its own), set before main so no program starts outside it. Tests beside
// these, and their drains, never see each other's segments.
inline const SessionScope& cli_session() {
  static const SessionScope session;
  return session;
}
inline const bool kCliSessionSet = (cli_session(), true);

// Stores every finished program's segment of this test's session in `db`
// (the drain's --once).
inline void drain_into(const std::string& db) {
  const RunResult r = run(cli_session().drain({"--db", db, "--once"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// Lines of `text`, without their ends.
inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Whitespace-separated words of each non-empty line.
inline std::vector<std::vector<std::string>> words(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  for (const std::string& l : lines(text)) {
    std::istringstream in(l);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    if (!w.empty()) out.push_back(std::move(w));
  }
  return out;
}

// Parsed JSON, or a failed expectation and null.
inline nlohmann::json json_of(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text.substr(0, 400);
  return j.is_discarded() ? nlohmann::json() : j;
}

// RFC 4180 records (quoted fields, doubled quotes, CRLF or LF ends).
inline std::vector<std::vector<std::string>> csv_records(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
      continue;
    }
    if (c == '"') quoted = any = true;
    else if (c == ',') record.push_back(std::move(field)), field.clear(), any = true;
    else if (c == '\r') continue;
    else if (c == '\n') {
      record.push_back(std::move(field));
      field.clear();
      out.push_back(std::move(record));
      record.clear();
      any = false;
    } else field += c, any = true;
  }
  if (any || !record.empty()) record.push_back(std::move(field)), out.push_back(std::move(record));
  return out;
}

// One line on stderr, nothing on stdout, and the exit code.
inline void expect_one_line_failure(const RunResult& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

}  // namespace shmtrace::test::cli

#endif
